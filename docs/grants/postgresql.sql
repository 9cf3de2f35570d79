-- Least privilege for the edx-agent sync account on PostgreSQL 11+ (openGauss/Kingbase: same idea).
-- The agent owns what it writes, so owning is enough to insert, update, delete, rename and drop: the
-- synced tables, their shadow (edx_new_*) and old (edx_old_*) copies during a snapshot, and its own
-- edx_checkpoint, edx_lineage, edx_quarantine and edx_schema tables. Change batches stage into a
-- TEMPORARY table. `edx-agent doctor` tries each step on a scratch table and prints the missing GRANT.
-- Run as a superuser or the database owner; replace names and the password.

CREATE ROLE edx_sync LOGIN PASSWORD 'change-me';
CREATE SCHEMA IF NOT EXISTS edu_sync AUTHORIZATION edx_sync;      -- USAGE + CREATE come with ownership
-- (or, for an existing schema: GRANT USAGE, CREATE ON SCHEMA edu_sync TO edx_sync;)
GRANT CONNECT, TEMPORARY ON DATABASE unitdb TO edx_sync;           -- TEMPORARY: the staging table
ALTER ROLE edx_sync IN DATABASE unitdb SET search_path = edu_sync; -- meta tables land next to the data

-- Joint debugging (`edx-agent test`) writes to a sandbox schema:
-- CREATE SCHEMA IF NOT EXISTS edu_sync_sandbox AUTHORIZATION edx_sync;

-- The database must be UTF8 (CREATE DATABASE unitdb ENCODING 'UTF8' TEMPLATE template0): doctor checks.

-- Unit applications read the synced tables. A snapshot replaces a table by a new one, so give readers
-- SELECT through default privileges (they apply to every table edx_sync creates), not table by table:
CREATE ROLE edu_readers NOLOGIN;
GRANT USAGE ON SCHEMA edu_sync TO edu_readers;
ALTER DEFAULT PRIVILEGES FOR ROLE edx_sync IN SCHEMA edu_sync GRANT SELECT ON TABLES TO edu_readers;
GRANT SELECT ON ALL TABLES IN SCHEMA edu_sync TO edu_readers;     -- tables that exist already
-- GRANT edu_readers TO app_user;
-- Views on synced tables block the snapshot swap (DROP of the old table fails, the snapshot rolls back):
-- build them on a schema the agent does not write, or recreate them after a resync.

-- Not needed and not to be granted: SUPERUSER, CREATEDB, CREATEROLE, pg_write_server_files,
-- pg_read_server_files (COPY FROM STDIN needs none of them).
