-- A per-tenant counter of committed changes to its records: every write or
-- delete transaction that changes a record adds one, in the same
-- transaction. KPI queries compare it with the version of the tenant's
-- in-memory snapshot to know whether the snapshot is still current (it is
-- never decremented, so equal means unchanged). Kept identical to
-- migrations/sqlite/0003_data_version.sql.
ALTER TABLE tenants ADD COLUMN data_version BIGINT NOT NULL DEFAULT 0;
