-- API keys (docs/security.md). A key is `sm_<id>_<secret>`; only a salted
-- SHA-256 of the secret is kept: hash = hex(SHA-256(salt || secret)), salt
-- random per key (hex). Instants are nanoseconds since the Unix epoch;
-- revoked_at is NULL while the key is valid. Kept column for column
-- identical to migrations/sqlite/0002_api_keys.sql.
CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant_id TEXT COLLATE "C" NOT NULL,
    name TEXT NOT NULL,
    salt TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant_id ON api_keys (tenant_id, created_at);
