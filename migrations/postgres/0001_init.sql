-- Initial schema, PostgreSQL flavour. Kept column for column identical to
-- migrations/sqlite/0001_init.sql so both backends return the same rows.
--
-- * Every text column is COLLATE "C": ids, references and categories then sort
--   and compare by bytes, exactly like SQLite's default BINARY collation, so
--   paging by id and ties broken by id agree across backends (a locale
--   collation would put 'a' before 'B').
-- * Instants are BIGINT nanoseconds since the Unix epoch (UTC); local dates are
--   TEXT 'YYYY-MM-DD' (sorts chronologically byte for byte).
-- * References between records are deliberately not foreign keys: records
--   arrive in any order (SPEC section 2).
-- * version is NULL when the client sent none.

-- A tenant and its settings (JSON written by src/store/rows.rs; the time
-- zone is kept by IANA name). created_at: nanoseconds since the Unix epoch.
CREATE TABLE tenants (
    id TEXT COLLATE "C" PRIMARY KEY,
    settings TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE teams (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    name TEXT COLLATE "C" NOT NULL,
    parent_team_id TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE team_memberships (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    rep_id TEXT COLLATE "C" NOT NULL,
    team_id TEXT COLLATE "C",
    effective_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX team_memberships_tenant_effective_at ON team_memberships (tenant_id, effective_at);
CREATE INDEX team_memberships_tenant_rep_id ON team_memberships (tenant_id, rep_id);

CREATE TABLE reps (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    name TEXT COLLATE "C" NOT NULL,
    email TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE customers (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    acquired_at BIGINT NOT NULL,
    churned_at BIGINT,
    owner_rep_id TEXT COLLATE "C",
    source TEXT COLLATE "C",
    name TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customers_tenant_acquired_at ON customers (tenant_id, acquired_at);
CREATE INDEX customers_tenant_churned_at ON customers (tenant_id, churned_at);

CREATE TABLE leads (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    source TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    owner_rep_id TEXT COLLATE "C",
    first_response_at BIGINT,
    converted_at BIGINT,
    customer_id TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX leads_tenant_created_at ON leads (tenant_id, created_at);

CREATE TABLE deals (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    amount BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    closed_at BIGINT,
    stage TEXT COLLATE "C",
    owner_rep_id TEXT COLLATE "C",
    customer_id TEXT COLLATE "C",
    lead_id TEXT COLLATE "C",
    CHECK (status IN ('OPEN', 'WON', 'LOST')),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX deals_tenant_created_at ON deals (tenant_id, created_at);
CREATE INDEX deals_tenant_closed_at ON deals (tenant_id, closed_at);

CREATE TABLE deal_stage_changes (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    deal_id TEXT COLLATE "C" NOT NULL,
    stage TEXT COLLATE "C" NOT NULL,
    entered_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX deal_stage_changes_tenant_entered_at ON deal_stage_changes (tenant_id, entered_at);
CREATE INDEX deal_stage_changes_tenant_deal_id ON deal_stage_changes (tenant_id, deal_id);

CREATE TABLE orders (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    amount BIGINT NOT NULL,
    ordered_at BIGINT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C",
    rep_id TEXT COLLATE "C",
    deal_id TEXT COLLATE "C",
    CHECK (kind IN ('NEW', 'UPSELL', 'CROSS_SELL', 'RENEWAL')),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX orders_tenant_ordered_at ON orders (tenant_id, ordered_at);

CREATE TABLE subscription_changes (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    subscription_id TEXT COLLATE "C" NOT NULL,
    customer_id TEXT COLLATE "C" NOT NULL,
    mrr BIGINT NOT NULL,
    effective_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX subscription_changes_tenant_effective_at ON subscription_changes (tenant_id, effective_at);
CREATE INDEX subscription_changes_tenant_customer_id ON subscription_changes (tenant_id, customer_id);

CREATE TABLE activities (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    rep_id TEXT COLLATE "C" NOT NULL,
    activity_type TEXT COLLATE "C" NOT NULL,
    occurred_at BIGINT NOT NULL,
    duration_seconds BIGINT,
    lead_id TEXT COLLATE "C",
    deal_id TEXT COLLATE "C",
    customer_id TEXT COLLATE "C",
    CHECK (activity_type IN ('CALL', 'EMAIL', 'MEETING', 'FOLLOW_UP', 'PROPOSAL', 'DEMO', 'NETWORKING_EVENT', 'SOCIAL')),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX activities_tenant_occurred_at ON activities (tenant_id, occurred_at);

CREATE TABLE inquiries (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    channel TEXT COLLATE "C" NOT NULL,
    received_at BIGINT NOT NULL,
    first_response_at BIGINT,
    customer_id TEXT COLLATE "C",
    rep_id TEXT COLLATE "C",
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX inquiries_tenant_received_at ON inquiries (tenant_id, received_at);

CREATE TABLE csat_responses (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    score BIGINT NOT NULL,
    responded_at BIGINT NOT NULL,
    customer_id TEXT COLLATE "C",
    rep_id TEXT COLLATE "C",
    CHECK (score BETWEEN 1 AND 5),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX csat_responses_tenant_responded_at ON csat_responses (tenant_id, responded_at);

CREATE TABLE targets (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    metric TEXT COLLATE "C" NOT NULL,
    value BIGINT NOT NULL,
    start_date TEXT COLLATE "C" NOT NULL,
    end_date TEXT COLLATE "C" NOT NULL,
    scope_kind TEXT COLLATE "C" NOT NULL,
    scope_id TEXT COLLATE "C",
    CHECK (metric IN ('REVENUE', 'BOOKINGS', 'NEW_CUSTOMERS', 'DEALS_WON')),
    CHECK ((scope_kind = 'COMPANY' AND scope_id IS NULL) OR (scope_kind IN ('TEAM', 'REP') AND scope_id IS NOT NULL)),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX targets_tenant_start_date ON targets (tenant_id, start_date);

CREATE TABLE spends (
    tenant_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    version BIGINT,
    category TEXT COLLATE "C" NOT NULL,
    amount BIGINT NOT NULL,
    start_date TEXT COLLATE "C" NOT NULL,
    end_date TEXT COLLATE "C" NOT NULL,
    team_id TEXT COLLATE "C",
    CHECK (category IN ('MARKETING', 'SALES')),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX spends_tenant_start_date ON spends (tenant_id, start_date);
