-- The change feed: which rows changed after a given tenant data version.
--
-- Every record row carries `changed_version`, the tenant's data version of
-- the transaction that last wrote it (rows written before this migration
-- carry 0: every snapshot taken since has them). A delete leaves a tombstone
-- with the version of the deleting transaction. So "everything of tenant T
-- changed after version V" is one indexed range read per table, and a KPI
-- snapshot at version V catches up by reading just that.
--
-- Tombstones older than the retention window are pruned;
-- `tenants.tombstones_pruned_version` is the highest version whose tombstones
-- may be gone, so a snapshot older than it must load the tenant in full.
-- Kept identical to migrations/sqlite/0004_change_feed.sql.

ALTER TABLE teams ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX teams_tenant_changed_version ON teams (tenant_id, changed_version);

ALTER TABLE team_memberships ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX team_memberships_tenant_changed_version ON team_memberships (tenant_id, changed_version);

ALTER TABLE reps ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX reps_tenant_changed_version ON reps (tenant_id, changed_version);

ALTER TABLE customers ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX customers_tenant_changed_version ON customers (tenant_id, changed_version);

ALTER TABLE leads ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX leads_tenant_changed_version ON leads (tenant_id, changed_version);

ALTER TABLE deals ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX deals_tenant_changed_version ON deals (tenant_id, changed_version);

ALTER TABLE deal_stage_changes ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX deal_stage_changes_tenant_changed_version ON deal_stage_changes (tenant_id, changed_version);

ALTER TABLE orders ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX orders_tenant_changed_version ON orders (tenant_id, changed_version);

ALTER TABLE subscription_changes ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX subscription_changes_tenant_changed_version ON subscription_changes (tenant_id, changed_version);

ALTER TABLE activities ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX activities_tenant_changed_version ON activities (tenant_id, changed_version);

ALTER TABLE inquiries ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX inquiries_tenant_changed_version ON inquiries (tenant_id, changed_version);

ALTER TABLE csat_responses ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX csat_responses_tenant_changed_version ON csat_responses (tenant_id, changed_version);

ALTER TABLE targets ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX targets_tenant_changed_version ON targets (tenant_id, changed_version);

ALTER TABLE spends ADD COLUMN changed_version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX spends_tenant_changed_version ON spends (tenant_id, changed_version);

CREATE TABLE tombstones (
    tenant_id TEXT NOT NULL,
    -- The record type's table name, e.g. 'orders'.
    record_table TEXT NOT NULL,
    id TEXT NOT NULL,
    -- The tenant's data version of the deleting transaction.
    changed_version BIGINT NOT NULL,
    -- When it was deleted, nanoseconds since the Unix epoch (for pruning).
    deleted_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, record_table, id)
);
CREATE INDEX tombstones_tenant_changed_version ON tombstones (tenant_id, changed_version);
CREATE INDEX tombstones_tenant_deleted_at ON tombstones (tenant_id, deleted_at);

ALTER TABLE tenants ADD COLUMN tombstones_pruned_version BIGINT NOT NULL DEFAULT 0;
