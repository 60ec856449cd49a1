//! Security over real gRPC: tenants and API keys, tenant isolation on every
//! RPC, revocation, the admin token, the start-up rule, TLS and mutual TLS,
//! the per-tenant rate limit and load shedding. Storage-backed tests run on
//! SQLite and (with `TEST_DATABASE_URL`) PostgreSQL.

use std::time::Duration;

use prost_types::Timestamp;
use salesmetrics::config::{AuthMode, ServeConfig};
use salesmetrics::proto::v1 as pb;
use salesmetrics::proto::v1::admin_service_client::AdminServiceClient;
use salesmetrics::proto::v1::ingest_service_client::IngestServiceClient;
use salesmetrics::proto::v1::kpi_service_client::KpiServiceClient;
use salesmetrics::proto::v1::record::Record as R;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::db;
use super::harness::TestServer;

/// The admin token of the servers started here.
const ADMIN: &str = "test-admin-token-0123456789";

/// 2024-03-01T00:00:00Z.
const T0: i64 = 1_709_251_200;

/// Settings with authentication on and [`ADMIN`] as the admin token.
fn secure_config() -> ServeConfig {
    let mut config = ServeConfig::for_database("");
    config.auth = AuthMode::On;
    config.admin_token = Some(ADMIN.into());
    config
}

/// One server per available backend with `config`.
async fn servers_with(config: ServeConfig) -> Vec<TestServer> {
    let (dir, url) = db::fresh_sqlite().await;
    let mut servers = vec![TestServer::start("sqlite", url, config.clone(), Some(dir)).await];
    if let Some(url) = db::fresh_postgres().await {
        servers.push(TestServer::start("postgres", url, config, None).await);
    }
    servers
}

/// A server on a fresh SQLite file with `config`.
async fn sqlite_with(config: ServeConfig) -> TestServer {
    let (dir, url) = db::fresh_sqlite().await;
    TestServer::start("sqlite", url, config, Some(dir)).await
}

/// `message` with `authorization: Bearer <credential>`.
fn bearer<T>(message: T, credential: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {credential}").parse().expect("ascii"),
    );
    request
}

/// Creates `tenant` and one API key for it; returns the key.
async fn tenant_with_key(admin: &mut AdminServiceClient<Channel>, tenant: &str) -> String {
    admin
        .create_tenant(bearer(
            pb::CreateTenantRequest {
                tenant_id: tenant.into(),
                settings: None,
            },
            ADMIN,
        ))
        .await
        .expect("create tenant");
    create_key(admin, tenant).await.key
}

async fn create_key(
    admin: &mut AdminServiceClient<Channel>,
    tenant: &str,
) -> pb::CreateApiKeyResponse {
    admin
        .create_api_key(bearer(
            pb::CreateApiKeyRequest {
                tenant_id: tenant.into(),
                name: format!("{tenant} key"),
            },
            ADMIN,
        ))
        .await
        .expect("create key")
        .into_inner()
}

fn order(id: &str, amount: i64) -> pb::Record {
    pb::Record {
        record: Some(R::Order(pb::Order {
            id: id.into(),
            amount: Some(pb::Money {
                currency_code: "USD".into(),
                minor_units: amount,
            }),
            ordered_at: Some(Timestamp {
                seconds: T0,
                nanos: 0,
            }),
            kind: pb::OrderKind::New as i32,
            customer_id: "c1".into(),
            rep_id: "r1".into(),
            deal_id: String::new(),
            ..Default::default()
        })),
    }
}

fn list_kpis() -> pb::ListKpisRequest {
    pb::ListKpisRequest {}
}

/// (id, amount) of every order the key's tenant can export.
async fn exported_orders(
    ingest: &mut IngestServiceClient<Channel>,
    key: &str,
) -> Vec<(String, i64)> {
    let mut stream = ingest
        .export_records(bearer(
            pb::ExportRecordsRequest {
                record_type: pb::RecordType::Order as i32,
            },
            key,
        ))
        .await
        .expect("export")
        .into_inner();
    let mut orders = Vec::new();
    while let Some(chunk) = stream.message().await.expect("export chunk") {
        for record in chunk.records {
            if let Some(R::Order(o)) = record.record {
                orders.push((o.id, o.amount.map(|m| m.minor_units).unwrap_or_default()));
            }
        }
    }
    orders
}

/// March 2024 revenue of the key's tenant, company-wide.
async fn march_revenue(kpi: &mut KpiServiceClient<Channel>, key: &str) -> Option<i64> {
    let response = kpi
        .get_kpis(bearer(
            pb::GetKpisRequest {
                scope: Some(pb::Scope {
                    kind: pb::ScopeKind::Company as i32,
                    id: String::new(),
                }),
                period: Some(pb::Period {
                    period: Some(pb::period::Period::Calendar(pb::CalendarPeriod {
                        granularity: pb::Granularity::Month as i32,
                        date: Some(pb::Date {
                            year: 2024,
                            month: 3,
                            day: 1,
                        }),
                    })),
                }),
                kpi_ids: vec!["revenue".into()],
                comparison: pb::Comparison::None as i32,
                time_zone: String::new(),
            },
            key,
        ))
        .await
        .expect("get kpis")
        .into_inner();
    let bundle = response.bundle.expect("bundle");
    bundle
        .values
        .iter()
        .find(|v| v.kpi_id == "revenue")
        .and_then(|v| v.exact_value)
}

/// Two tenants with overlapping record ids: every RPC with tenant A's key
/// (unary and streaming ingest, export, delete, GetKpis) sees and changes
/// only A's records.
#[tokio::test]
async fn tenants_are_isolated_on_every_rpc() {
    for server in servers_with(secure_config()).await {
        let b = server.backend;
        let mut admin = server.admin().await;
        let key_a = tenant_with_key(&mut admin, "acme").await;
        let key_b = tenant_with_key(&mut admin, "globex").await;
        let mut ingest = server.ingest().await;
        let mut kpi = server.kpi().await;

        for (key, amounts) in [(&key_a, [100, 200]), (&key_b, [1_000, 2_000])] {
            let result = ingest
                .ingest_batch(bearer(
                    pb::IngestBatchRequest {
                        records: vec![order("o1", amounts[0]), order("o2", amounts[1])],
                        all_or_nothing: true,
                    },
                    key,
                ))
                .await
                .expect("ingest")
                .into_inner()
                .result
                .expect("result");
            assert_eq!(result.accepted_count, 2, "{b}");
        }
        // A streamed batch lands in A only.
        let batch = pb::StreamIngestRequest {
            sequence: 1,
            records: vec![order("o3", 5)],
            all_or_nothing: true,
        };
        let mut acks = ingest
            .stream_ingest(bearer(tokio_stream::iter(vec![batch]), &key_a))
            .await
            .expect("stream")
            .into_inner();
        assert_eq!(acks.message().await.expect("ack").expect("one").sequence, 1);

        assert_eq!(
            exported_orders(&mut ingest, &key_a).await,
            vec![("o1".into(), 100), ("o2".into(), 200), ("o3".into(), 5)],
            "{b}: A exports only A's orders"
        );
        assert_eq!(
            exported_orders(&mut ingest, &key_b).await,
            vec![("o1".into(), 1_000), ("o2".into(), 2_000)],
            "{b}: B exports only B's orders"
        );
        assert_eq!(march_revenue(&mut kpi, &key_a).await, Some(305), "{b}");
        assert_eq!(march_revenue(&mut kpi, &key_b).await, Some(3_000), "{b}");

        // A deletes its o1; B's o1 stays.
        let deleted = ingest
            .delete_records(bearer(
                pb::DeleteRecordsRequest {
                    record_type: pb::RecordType::Order as i32,
                    ids: vec!["o1".into()],
                },
                &key_a,
            ))
            .await
            .expect("delete")
            .into_inner();
        assert_eq!(deleted.deleted_count, 1, "{b}");
        assert_eq!(
            exported_orders(&mut ingest, &key_a).await,
            vec![("o2".into(), 200), ("o3".into(), 5)],
            "{b}"
        );
        assert_eq!(
            exported_orders(&mut ingest, &key_b).await,
            vec![("o1".into(), 1_000), ("o2".into(), 2_000)],
            "{b}: A's delete leaves B's o1"
        );
        assert_eq!(march_revenue(&mut kpi, &key_b).await, Some(3_000), "{b}");

        // The default tenant is not reachable by a tenant key either.
        let mut default_export = exported_orders(&mut ingest, &key_a).await;
        default_export.retain(|(id, _)| id == "o1");
        assert!(default_export.is_empty(), "{b}");
        server.stop().await;
    }
}

/// A revoked key is refused on the very next call; listing shows the key's
/// id, prefix and revocation time but never the key.
#[tokio::test]
async fn revoked_keys_are_refused_at_once() {
    for server in servers_with(secure_config()).await {
        let b = server.backend;
        let mut admin = server.admin().await;
        let key = tenant_with_key(&mut admin, "acme").await;
        let second = create_key(&mut admin, "acme").await;
        let mut kpi = server.kpi().await;
        kpi.list_kpis(bearer(list_kpis(), &key))
            .await
            .expect("valid key");

        let listed = admin
            .list_api_keys(bearer(
                pb::ListApiKeysRequest {
                    tenant_id: "acme".into(),
                },
                ADMIN,
            ))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.api_keys.len(), 2, "{b}");
        let first = listed.api_keys[0].clone();
        assert!(key.starts_with(&first.prefix), "{b}: prefix of the key");
        let secret = key.rsplit('_').next().expect("secret");
        assert!(
            !format!("{listed:?}").contains(secret),
            "{b}: a listing never contains a key"
        );
        assert!(first.revoked_at.is_none(), "{b}");

        let revoked = admin
            .revoke_api_key(bearer(
                pb::RevokeApiKeyRequest {
                    key_id: first.key_id.clone(),
                },
                ADMIN,
            ))
            .await
            .expect("revoke")
            .into_inner()
            .api_key
            .expect("key");
        assert!(revoked.revoked_at.is_some(), "{b}");
        let refused = kpi
            .list_kpis(bearer(list_kpis(), &key))
            .await
            .expect_err("revoked key");
        assert_eq!(refused.code(), Code::Unauthenticated, "{b}");
        // The tenant's other key still works.
        kpi.list_kpis(bearer(list_kpis(), &second.key))
            .await
            .expect("other key");
        let unknown = admin
            .revoke_api_key(bearer(
                pb::RevokeApiKeyRequest {
                    key_id: "00000000deadbeef".into(),
                },
                ADMIN,
            ))
            .await
            .expect_err("unknown key id");
        assert_eq!(unknown.code(), Code::NotFound, "{b}");
        server.stop().await;
    }
}

/// Every malformed, unknown or wrong credential gets the same
/// UNAUTHENTICATED answer; health and reflection need none.
#[tokio::test]
async fn missing_or_bad_keys_are_unauthenticated() {
    let server = sqlite_with(secure_config()).await;
    let mut admin = server.admin().await;
    let key = tenant_with_key(&mut admin, "acme").await;
    let (id_part, secret) = key.rsplit_once('_').expect("key shape");
    let wrong_secret = format!("{id_part}_{}", "0".repeat(secret.len()));
    let unknown_id = format!("sm_0123456789abcdef_{secret}");
    let mut kpi = server.kpi().await;

    let missing = kpi
        .list_kpis(Request::new(list_kpis()))
        .await
        .expect_err("no key");
    assert_eq!(missing.code(), Code::Unauthenticated);
    for bad in [
        "garbage",
        wrong_secret.as_str(),
        unknown_id.as_str(),
        ADMIN,
        "",
    ] {
        let status = kpi
            .list_kpis(bearer(list_kpis(), bad))
            .await
            .expect_err("bad key");
        assert_eq!(status.code(), Code::Unauthenticated, "{bad:?}");
        assert_eq!(
            status.message(),
            missing.message(),
            "same answer for {bad:?}"
        );
    }
    let mut ingest = server.ingest().await;
    let status = ingest
        .ingest_batch(bearer(
            pb::IngestBatchRequest {
                records: vec![order("o1", 1)],
                all_or_nothing: false,
            },
            &wrong_secret,
        ))
        .await
        .expect_err("wrong secret");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(!status.message().contains(id_part));

    let mut health = HealthClient::new(server.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no key");
    server.stop().await;
}

/// AdminService needs the admin token: not a tenant key, not nothing.
#[tokio::test]
async fn admin_service_needs_the_admin_token() {
    let server = sqlite_with(secure_config()).await;
    let mut admin = server.admin().await;
    let key = tenant_with_key(&mut admin, "acme").await;
    let request = || pb::CreateTenantRequest {
        tenant_id: "initech".into(),
        settings: None,
    };
    for credential in [None, Some(key.as_str()), Some("not-the-token")] {
        let request = match credential {
            None => Request::new(request()),
            Some(c) => bearer(request(), c),
        };
        let status = admin.create_tenant(request).await.expect_err("no admin");
        assert_eq!(status.code(), Code::Unauthenticated, "{credential:?}");
    }
    let created = admin
        .create_tenant(bearer(request(), ADMIN))
        .await
        .expect("admin token")
        .into_inner();
    assert_eq!(created.tenant_id, "initech");
    assert_eq!(
        created.settings.expect("defaults").currency_code,
        "USD",
        "absent settings mean the defaults"
    );
    let again = admin
        .create_tenant(bearer(request(), ADMIN))
        .await
        .expect_err("duplicate");
    assert_eq!(again.code(), Code::AlreadyExists);
    let bad_id = admin
        .create_tenant(bearer(
            pb::CreateTenantRequest {
                tenant_id: "no spaces".into(),
                settings: None,
            },
            ADMIN,
        ))
        .await
        .expect_err("bad id");
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    let no_tenant = admin
        .create_api_key(bearer(
            pb::CreateApiKeyRequest {
                tenant_id: "nobody".into(),
                name: "k".into(),
            },
            ADMIN,
        ))
        .await
        .expect_err("unknown tenant");
    assert_eq!(no_tenant.code(), Code::NotFound);
    server.stop().await;
}

/// The start-up rule: no authentication only on loopback (or with
/// `--insecure-no-auth`); authentication needs an admin token. `serve`
/// itself refuses a wildcard address without authentication.
#[tokio::test]
async fn the_start_up_rule_refuses_unauthenticated_public_listeners() {
    let public = "0.0.0.0:50051".parse().expect("addr");
    let loopback = "127.0.0.1:50051".parse().expect("addr");
    let open = ServeConfig::for_database("sqlite://unused.db");
    let refused = open
        .check_security(public)
        .expect_err("0.0.0.0 without auth");
    assert!(refused.to_string().contains("--auth on"), "{refused}");
    open.check_security(loopback).expect("loopback quick start");
    open.check_security("[::1]:50051".parse().expect("addr"))
        .expect("IPv6 loopback");

    let mut insecure = open.clone();
    insecure.insecure_no_auth = true;
    insecure
        .check_security(public)
        .expect("explicitly insecure");

    let mut no_token = open.clone();
    no_token.auth = AuthMode::On;
    let refused = no_token
        .check_security(loopback)
        .expect_err("auth without token");
    assert!(refused.to_string().contains("admin token"), "{refused}");

    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).expect("write token");
    let mut from_file = no_token.clone();
    from_file.admin_token_file = Some(token_file);
    let settings = from_file
        .check_security(public)
        .expect("auth with token file");
    assert!(settings.admin_token.expect("token").matches(ADMIN));
    assert!(!format!("{from_file:?}").contains(ADMIN));

    // The real server refuses to start on a wildcard address without auth.
    let (_dir, url) = db::fresh_sqlite().await;
    let store = salesmetrics::store::connect(&url).await.expect("store");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let result = salesmetrics::server::serve(listener, open, store, async {}).await;
    assert!(result.is_err(), "serve on 0.0.0.0 without auth must fail");
}

/// Certificates for the TLS tests: a CA, a server certificate for
/// `localhost` and a client certificate, all signed by the CA (PEM).
pub(super) struct Pki {
    pub(super) ca: String,
    pub(super) server_cert: String,
    pub(super) server_key: String,
    pub(super) client_cert: String,
    pub(super) client_key: String,
}

pub(super) fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into()]);
    let (client_cert, client_key) = leaf(vec!["client.example".into()]);
    Pki {
        ca: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// A server serving TLS with the PKI's server certificate, requiring client
/// certificates when `mutual`.
pub(super) async fn tls_server(pki: &Pki, mutual: bool) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write pem");
        path
    };
    let mut config = ServeConfig::for_database("");
    config.tls_cert = Some(write("server.pem", &pki.server_cert));
    config.tls_key = Some(write("server.key", &pki.server_key));
    if mutual {
        config.tls_client_ca = Some(write("ca.pem", &pki.ca));
    }
    (sqlite_with(config).await, dir)
}

/// A TLS channel trusting the PKI's CA, with the client certificate when
/// `identity`; the connection error if the handshake fails.
async fn tls_channel(server: &TestServer, pki: &Pki, identity: bool) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if identity {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{}", server.addr.port()))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// TLS: the generated client talks to the server over TLS; a plaintext
/// client gets nowhere.
#[tokio::test]
async fn tls_serves_the_generated_client() {
    let pki = pki();
    let (server, _dir) = tls_server(&pki, false).await;
    let channel = tls_channel(&server, &pki, false)
        .await
        .expect("TLS connect");
    let catalog = KpiServiceClient::new(channel)
        .list_kpis(list_kpis())
        .await
        .expect("ListKpis over TLS")
        .into_inner();
    assert!(!catalog.kpis.is_empty());
    let plain = match Endpoint::from_shared(format!("http://127.0.0.1:{}", server.addr.port()))
        .expect("endpoint")
        .connect()
        .await
    {
        Ok(channel) => KpiServiceClient::new(channel)
            .list_kpis(list_kpis())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain, "plaintext must not be served");
    server.stop().await;
}

/// Mutual TLS: a client with a certificate from the CA is served; one
/// without a certificate is refused.
#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let pki = pki();
    let (server, _dir) = tls_server(&pki, true).await;
    let channel = tls_channel(&server, &pki, true)
        .await
        .expect("mTLS connect");
    KpiServiceClient::new(channel)
        .list_kpis(list_kpis())
        .await
        .expect("client with a certificate");
    let refused = match tls_channel(&server, &pki, false).await {
        Ok(channel) => KpiServiceClient::new(channel)
            .list_kpis(list_kpis())
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate must be refused");
    server.stop().await;
}

/// The per-tenant rate limit: a burst passes, the next call is
/// RESOURCE_EXHAUSTED, and another tenant is not affected.
#[tokio::test]
async fn the_rate_limit_is_per_tenant_and_resource_exhausted() {
    let mut config = secure_config();
    config.rate_limit_per_second = 1;
    config.rate_limit_burst = 3;
    let server = sqlite_with(config).await;
    let mut admin = server.admin().await;
    let key_a = tenant_with_key(&mut admin, "acme").await;
    let key_b = tenant_with_key(&mut admin, "globex").await;
    let mut kpi = server.kpi().await;
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(
            kpi.list_kpis(bearer(list_kpis(), &key_a))
                .await
                .map(|_| ())
                .map_err(|s| s.code()),
        );
    }
    // At 1 token per second, a fast sequence of 6 calls gets the burst of 3
    // (perhaps one more if the machine pauses for a second) and then refusals.
    assert!(outcomes[..3].iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(outcomes[5], Err(Code::ResourceExhausted), "{outcomes:?}");
    kpi.list_kpis(bearer(list_kpis(), &key_b))
        .await
        .expect("another tenant has its own bucket");
    server.stop().await;
}

/// Load shedding: with one call slot taken by an open stream, the next call
/// is RESOURCE_EXHAUSTED at once (not queued); health still answers; when
/// the stream ends, calls are served again.
#[tokio::test]
async fn load_shedding_answers_resource_exhausted() {
    let mut config = ServeConfig::for_database("");
    config.max_concurrent_requests = 1;
    let server = sqlite_with(config).await;
    let mut ingest = server.ingest().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::StreamIngestRequest>(1);
    let stream = ingest
        .stream_ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("open stream")
        .into_inner();

    let mut kpi = server.kpi().await;
    let shed = tokio::time::timeout(Duration::from_secs(5), kpi.list_kpis(list_kpis()))
        .await
        .expect("answered at once, not queued")
        .expect_err("no free slot");
    assert_eq!(shed.code(), Code::ResourceExhausted);
    let mut health = HealthClient::new(server.channel().await);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health is never shed");

    drop(tx);
    drop(stream);
    let mut served = false;
    for _ in 0..100 {
        if kpi.list_kpis(list_kpis()).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "the slot is freed when the stream ends");
    server.stop().await;
}

/// Without authentication (loopback quick start) calls need no key and act
/// on tenant `default`, and AdminService is open when no token is set.
#[tokio::test]
async fn without_auth_calls_act_on_the_default_tenant() {
    let server = TestServer::sqlite().await;
    let mut ingest = server.ingest().await;
    ingest
        .ingest_batch(pb::IngestBatchRequest {
            records: vec![order("o1", 7)],
            all_or_nothing: true,
        })
        .await
        .expect("ingest without key");
    let settings = server
        .admin()
        .await
        .get_tenant_settings(pb::GetTenantSettingsRequest {
            tenant_id: String::new(),
        })
        .await
        .expect("admin open without token and auth")
        .into_inner();
    assert_eq!(settings.tenant_id, "default");
    server.stop().await;
}

/// Hostile input: arbitrary and mutated bytes through protobuf decoding, the
/// proto → domain conversions and the key parser never panic, and whatever
/// converts is valid by construction (an id a record of the domain accepts).
/// 3 000 cases per run (1 500 random byte strings, 1 500 mutations of a
/// valid batch), plus arbitrary strings through the key parser.
mod hostile_input {
    use proptest::prelude::*;
    use prost::Message;
    use salesmetrics::api::convert;
    use salesmetrics::auth::keys;
    use salesmetrics::proto::v1 as pb;

    fn valid_batch() -> Vec<u8> {
        let mut records: Vec<pb::Record> = (0..4)
            .map(|i| super::order(&format!("o{i}"), 100 + i))
            .collect();
        records.push(pb::Record {
            record: Some(pb::record::Record::Team(pb::Team {
                id: "t1".into(),
                version: Some(3),
                name: "Team".into(),
                parent_team_id: "t0".into(),
            })),
        });
        pb::IngestBatchRequest {
            records,
            all_or_nothing: true,
        }
        .encode_to_vec()
    }

    /// Feeds `bytes` to every decoder and converter.
    fn exercise(bytes: &[u8]) {
        if let Ok(batch) = pb::IngestBatchRequest::decode(bytes) {
            for (index, record) in batch.records.into_iter().enumerate() {
                if let Ok(record) = convert::record_from_proto(index, record, "USD") {
                    let id = record.id();
                    assert!(!id.is_empty() && id.len() <= 128, "{id:?}");
                }
            }
        }
        if let Ok(request) = pb::StreamIngestRequest::decode(bytes) {
            for (index, record) in request.records.into_iter().enumerate() {
                let _ = convert::record_from_proto(index, record, "EUR");
            }
        }
        if let Ok(request) = pb::UpdateTenantSettingsRequest::decode(bytes)
            && let Some(settings) = request.settings
        {
            let _ = convert::settings_from_proto("settings", settings);
        }
        if let Ok(request) = pb::CreateApiKeyRequest::decode(bytes) {
            let _ = convert::parse_id("tenant_id", request.tenant_id);
            let _ = keys::parse(&request.name);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_500))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            exercise(&bytes);
        }

        #[test]
        fn mutated_batches_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..12),
            cut in any::<usize>(),
        ) {
            let mut bytes = valid_batch();
            for (at, byte) in edits {
                let len = bytes.len();
                bytes[at % len] = byte;
            }
            let keep = bytes.len() - cut % (bytes.len() / 4 + 1);
            bytes.truncate(keep);
            exercise(&bytes);
        }

        #[test]
        fn the_key_parser_takes_any_string(s in ".{0,120}") {
            if let Some((id, secret)) = keys::parse(&s) {
                prop_assert_eq!(id.len(), 16);
                prop_assert_eq!(secret.len(), 64);
            }
        }
    }
}
