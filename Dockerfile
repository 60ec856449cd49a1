# syntax=docker/dockerfile:1
#
# salesmetrics container image.
#
#   docker build -t salesmetrics .
#   docker run --rm -p 50051:50051 -v salesmetrics-data:/data \
#       -v "$PWD/secrets:/run/secrets:ro" \
#       -e SALESMETRICS_ADMIN_TOKEN_FILE=/run/secrets/admin_token salesmetrics
#   docker run --rm -p 50051:50051 salesmetrics serve --listen 0.0.0.0:50051 \
#       --database-url postgres://user:pass@db:5432/salesmetrics
#
# The build needs no system protoc (build.rs uses protox) and no OpenSSL
# (sqlx is built without TLS; SQLite is compiled in).

# ---- build --------------------------------------------------------------------
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit cache mounts);
# the binary is copied out of the cached target/ into /out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package salesmetrics \
    && install -D -m 0755 target/release/salesmetrics /out/salesmetrics

# ---- runtime ------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates only (for TLS to a managed PostgreSQL). Not pinned on purpose:
# the CA bundle gets security updates (bookworm and bookworm-security carry
# different versions), and a pin would either freeze stale roots or break the
# build when the archive moves on.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 salesmetrics \
    && useradd --system --uid 10001 --gid salesmetrics --home-dir /data \
        --no-create-home --shell /usr/sbin/nologin salesmetrics \
    && mkdir -p /data \
    && chown salesmetrics:salesmetrics /data

COPY --from=build /out/salesmetrics /usr/local/bin/salesmetrics

USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 50051

# The image listens on all interfaces, so authentication is on (docs/security.md):
# the admin token comes from the environment, SALESMETRICS_ADMIN_TOKEN_FILE (a
# mounted secret, preferred) or SALESMETRICS_ADMIN_TOKEN; without one the
# service refuses to start. TLS files are mounted the same way and named by
# SALESMETRICS_TLS_CERT / SALESMETRICS_TLS_KEY (and SALESMETRICS_TLS_CLIENT_CA
# for mutual TLS). Nothing secret is baked into the image.
ENV SALESMETRICS_AUTH=on

ENTRYPOINT ["salesmetrics"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--database-url", "sqlite:///data/salesmetrics.db"]
