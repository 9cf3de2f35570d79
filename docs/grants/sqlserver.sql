-- Least privilege for the edx-agent sync account on SQL Server 2016+ (and Azure SQL Database).
-- The agent writes only one schema: the synced tables, their shadow (edx_new_*) and old (edx_old_*)
-- copies during a snapshot, and its own edx_checkpoint, edx_lineage, edx_quarantine and edx_schema
-- tables. Staging is a #temp table, which every login may create in tempdb.
-- Run in the target database as its owner; replace the names and the password.

CREATE LOGIN edx_sync WITH PASSWORD = 'change-me', CHECK_POLICY = ON;   -- at the server (master)
CREATE USER edx_sync FOR LOGIN edx_sync WITH DEFAULT_SCHEMA = edx;      -- in the target database
-- A schema of its own keeps the agent's tables apart and bounds what ALTER ON SCHEMA allows:
-- CREATE SCHEMA edx AUTHORIZATION dbo;

GRANT CREATE TABLE TO edx_sync;                                  -- database level: create tables...
GRANT ALTER, SELECT, INSERT, UPDATE, DELETE ON SCHEMA::edx TO edx_sync;   -- ...in this schema only;
-- ALTER covers sp_rename, ALTER TABLE ADD/ALTER COLUMN and DROP TABLE of the schema's tables.

-- Optional, read by `edx-agent doctor`: fn_my_permissions and sys.databases need nothing more;
-- VIEW DATABASE STATE is not needed.

-- Unit applications read the synced tables:
-- GRANT SELECT ON SCHEMA::edx TO app_role;

-- Not needed and not to be granted: db_owner, db_ddladmin, CONTROL, ALTER ANY SCHEMA.
