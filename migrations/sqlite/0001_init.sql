-- Initial schema, SQLite flavour. Kept column for column identical to
-- migrations/postgres/0001_init.sql so both backends return the same rows.
--
-- * Text compares with SQLite's default BINARY collation (byte order); the
--   PostgreSQL schema uses COLLATE "C" to match.
-- * Instants are INTEGER nanoseconds since the Unix epoch (UTC); local dates are
--   TEXT 'YYYY-MM-DD' (sorts chronologically byte for byte).
-- * References between records are deliberately not foreign keys: records
--   arrive in any order (SPEC section 2).
-- * version is NULL when the client sent none.
-- * Record tables are WITHOUT ROWID: clustered on (tenant_id, id), so export
--   pages and per-tenant loads in id order read the table in place.

-- A tenant and its settings (JSON written by src/store/rows.rs; the time
-- zone is kept by IANA name). created_at: nanoseconds since the Unix epoch.
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE teams (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    name TEXT NOT NULL,
    parent_team_id TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

CREATE TABLE team_memberships (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    rep_id TEXT NOT NULL,
    team_id TEXT,
    effective_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX team_memberships_tenant_effective_at ON team_memberships (tenant_id, effective_at);
CREATE INDEX team_memberships_tenant_rep_id ON team_memberships (tenant_id, rep_id);

CREATE TABLE reps (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    name TEXT NOT NULL,
    email TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;

CREATE TABLE customers (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    acquired_at INTEGER NOT NULL,
    churned_at INTEGER,
    owner_rep_id TEXT,
    source TEXT,
    name TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX customers_tenant_acquired_at ON customers (tenant_id, acquired_at);
CREATE INDEX customers_tenant_churned_at ON customers (tenant_id, churned_at);

CREATE TABLE leads (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    owner_rep_id TEXT,
    first_response_at INTEGER,
    converted_at INTEGER,
    customer_id TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX leads_tenant_created_at ON leads (tenant_id, created_at);

CREATE TABLE deals (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    amount INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    closed_at INTEGER,
    stage TEXT,
    owner_rep_id TEXT,
    customer_id TEXT,
    lead_id TEXT,
    CHECK (status IN ('OPEN', 'WON', 'LOST')),
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX deals_tenant_created_at ON deals (tenant_id, created_at);
CREATE INDEX deals_tenant_closed_at ON deals (tenant_id, closed_at);

CREATE TABLE deal_stage_changes (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    deal_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    entered_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX deal_stage_changes_tenant_entered_at ON deal_stage_changes (tenant_id, entered_at);
CREATE INDEX deal_stage_changes_tenant_deal_id ON deal_stage_changes (tenant_id, deal_id);

CREATE TABLE orders (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    amount INTEGER NOT NULL,
    ordered_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    customer_id TEXT,
    rep_id TEXT,
    deal_id TEXT,
    CHECK (kind IN ('NEW', 'UPSELL', 'CROSS_SELL', 'RENEWAL')),
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX orders_tenant_ordered_at ON orders (tenant_id, ordered_at);

CREATE TABLE subscription_changes (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    subscription_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    mrr INTEGER NOT NULL,
    effective_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX subscription_changes_tenant_effective_at ON subscription_changes (tenant_id, effective_at);
CREATE INDEX subscription_changes_tenant_customer_id ON subscription_changes (tenant_id, customer_id);

CREATE TABLE activities (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    rep_id TEXT NOT NULL,
    activity_type TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    duration_seconds INTEGER,
    lead_id TEXT,
    deal_id TEXT,
    customer_id TEXT,
    CHECK (activity_type IN ('CALL', 'EMAIL', 'MEETING', 'FOLLOW_UP', 'PROPOSAL', 'DEMO', 'NETWORKING_EVENT', 'SOCIAL')),
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX activities_tenant_occurred_at ON activities (tenant_id, occurred_at);

CREATE TABLE inquiries (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    channel TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    first_response_at INTEGER,
    customer_id TEXT,
    rep_id TEXT,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX inquiries_tenant_received_at ON inquiries (tenant_id, received_at);

CREATE TABLE csat_responses (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    score INTEGER NOT NULL,
    responded_at INTEGER NOT NULL,
    customer_id TEXT,
    rep_id TEXT,
    CHECK (score BETWEEN 1 AND 5),
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX csat_responses_tenant_responded_at ON csat_responses (tenant_id, responded_at);

CREATE TABLE targets (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    metric TEXT NOT NULL,
    value INTEGER NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,
    scope_kind TEXT NOT NULL,
    scope_id TEXT,
    CHECK (metric IN ('REVENUE', 'BOOKINGS', 'NEW_CUSTOMERS', 'DEALS_WON')),
    CHECK ((scope_kind = 'COMPANY' AND scope_id IS NULL) OR (scope_kind IN ('TEAM', 'REP') AND scope_id IS NOT NULL)),
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX targets_tenant_start_date ON targets (tenant_id, start_date);

CREATE TABLE spends (
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER,
    category TEXT NOT NULL,
    amount INTEGER NOT NULL,
    start_date TEXT NOT NULL,
    end_date TEXT NOT NULL,
    team_id TEXT,
    CHECK (category IN ('MARKETING', 'SALES')),
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
CREATE INDEX spends_tenant_start_date ON spends (tenant_id, start_date);
