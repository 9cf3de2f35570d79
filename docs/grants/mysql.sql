-- Least privilege for the edx-agent sync account on MySQL 5.7+/8.x and MariaDB 10.3+.
-- The agent writes one database: the synced tables, their shadow (edx_new_*) and old (edx_old_*) copies
-- during a snapshot, a staging table per change batch (edx_stg_*), a temporary table when a batch repeats a
-- key, and its own edx_checkpoint, edx_lineage, edx_quarantine and edx_schema tables.
-- `edx-agent doctor` tries each of these on a scratch table and prints the GRANT that is missing.
-- Run as an administrator; replace the database, the host pattern and the password.

CREATE DATABASE IF NOT EXISTS edu_sync CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER 'edx_sync'@'127.0.0.1' IDENTIFIED BY 'change-me';

GRANT SELECT, INSERT, UPDATE, DELETE,   -- rows, checkpoint, lineage, quarantine
      CREATE, DROP, ALTER,              -- tables, snapshot swap (RENAME TABLE needs ALTER+DROP on the old
                                        -- name, CREATE+INSERT on the new), evolution (ADD/MODIFY COLUMN)
      CREATE TEMPORARY TABLES           -- de-duplication of a key repeated within a batch
   ON `edu_sync`.* TO 'edx_sync'@'127.0.0.1';

-- Joint debugging (`edx-agent test`) writes to a sandbox database: same grants there.
-- CREATE DATABASE IF NOT EXISTS edu_sync_sandbox CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
-- GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, CREATE TEMPORARY TABLES
--    ON `edu_sync_sandbox`.* TO 'edx_sync'@'127.0.0.1';

-- Server settings (my.cnf, [mysqld]); not privileges, but doctor checks them:
--   local_infile = 1                  -- LOAD DATA LOCAL INFILE; without it batches load as multi-row INSERTs
--   character-set-server = utf8mb4
--   innodb_buffer_pool_size = ...     -- room for the synced tables' keys (50-70% of RAM if dedicated)
-- LOAD DATA LOCAL needs no FILE privilege (the client sends the rows).

-- Unit applications read the synced tables; give them SELECT, never write access:
-- GRANT SELECT ON `edu_sync`.* TO 'app'@'%';   -- database-level: survives the snapshot swap

-- Not needed and not to be granted: FILE, SUPER, PROCESS, RELOAD, GRANT OPTION, ALL PRIVILEGES.
