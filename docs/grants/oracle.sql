-- Least privilege for the edx-agent sync account on Oracle (12.2+; 11.2 works with 30-byte names).
-- The agent writes only its own schema: the synced tables, their shadow (EDX_NEW_*) and old (EDX_OLD_*)
-- copies during a snapshot, one global temporary staging table per synced table (EDX_STG_*), and its
-- own EDX_CHECKPOINT, EDX_LINEAGE, EDX_QUARANTINE and EDX_SCHEMA tables. Owning them is enough to
-- insert, update, delete, rename and drop them: no ANY privilege is needed.
-- Run as a DBA; replace EDX_SYNC, the password and the tablespace.

CREATE USER edx_sync IDENTIFIED BY "change-me" DEFAULT TABLESPACE users TEMPORARY TABLESPACE temp;
GRANT CREATE SESSION TO edx_sync;
GRANT CREATE TABLE TO edx_sync;                 -- synced, shadow, staging (GTT) and edx_* tables
ALTER USER edx_sync QUOTA UNLIMITED ON users;   -- or a size: QUOTA 20G ON users (ORA-01950/01536 otherwise)

-- Optional, read by `edx-agent doctor` only (each is PUBLIC on a default install):
--   NLS_DATABASE_PARAMETERS, SESSION_PRIVS, V$VERSION.

-- Unit applications read the synced tables; give them SELECT, never write access:
-- GRANT SELECT ON edx_sync.students TO app_user;

-- Not needed and not to be granted: CREATE ANY TABLE, DROP ANY TABLE, ALTER ANY TABLE, DBA, RESOURCE
-- (RESOURCE also brings UNLIMITED TABLESPACE on older versions).
