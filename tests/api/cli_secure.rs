//! The `salesmetrics` binary against a production-like server: authentication
//! on with a tenant API key (import, export, kpis, series, breakdown, demo and
//! fiscal periods, values computed by hand), TLS with a private CA, and
//! mutual TLS with a client certificate.

use std::path::Path;
use std::process::Output;

use salesmetrics::config::{AuthMode, ServeConfig};
use salesmetrics::proto::v1 as pb;
use serde_json::Value;
use tonic::Request;

use super::db;
use super::harness::TestServer;
use super::security::{pki, tls_server};

/// The admin token of the servers started here.
pub(super) const ADMIN: &str = "cli-admin-token-0123456789";

/// Runs the binary with exactly the given `SALESMETRICS_*` variables, off
/// the async runtime so the in-process server keeps answering.
async fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_salesmetrics"));
        for (name, _) in std::env::vars() {
            if name.starts_with("SALESMETRICS_") {
                command.env_remove(name);
            }
        }
        command
            .args(&args)
            .envs(env)
            .output()
            .expect("run the salesmetrics binary")
    })
    .await
    .expect("join the CLI run")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn run_ok(env: &[(&str, &str)], args: &[&str]) -> String {
    let output = run(env, args).await;
    assert!(
        output.status.success(),
        "salesmetrics {args:?} failed: {}",
        stderr(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `value` of KPI `id` in a bundle's JSON.
fn exact(bundle: &Value, id: &str) -> Value {
    bundle["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {bundle}"))["exact_value"]
        .clone()
}

fn admin<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {ADMIN}").parse().expect("ascii"),
    );
    request
}

/// Creates `tenant` with `currency` and fiscal years starting in April, and
/// returns a new API key for it.
async fn tenant_key(server: &TestServer, tenant: &str, currency: &str) -> String {
    tenant_key_through(server.admin().await, tenant, currency).await
}

/// [`tenant_key`] through a given AdminService client (e.g. over TLS), with
/// [`ADMIN`] as the admin token.
pub(super) async fn tenant_key_through(
    mut admin_client: pb::admin_service_client::AdminServiceClient<tonic::transport::Channel>,
    tenant: &str,
    currency: &str,
) -> String {
    let mut settings = admin_client
        .create_tenant(admin(pb::CreateTenantRequest {
            tenant_id: tenant.into(),
            settings: None,
        }))
        .await
        .expect("create tenant")
        .into_inner()
        .settings
        .expect("settings");
    settings.currency_code = currency.into();
    settings.fiscal_year_start_month = 4;
    admin_client
        .update_tenant_settings(admin(pb::UpdateTenantSettingsRequest {
            tenant_id: tenant.into(),
            settings: Some(settings),
        }))
        .await
        .expect("update settings");
    admin_client
        .create_api_key(admin(pb::CreateApiKeyRequest {
            tenant_id: tenant.into(),
            name: "cli".into(),
        }))
        .await
        .expect("create key")
        .into_inner()
        .key
}

/// With authentication on and a tenant API key, every documented command
/// works: money imports and exports in the tenant's currency (EUR), fiscal
/// periods resolved by the server (fiscal years start in April), series,
/// breakdowns and the demo. Values computed by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_with_a_tenant_key_when_auth_is_on() {
    let mut config = ServeConfig::for_database("");
    config.auth = AuthMode::On;
    config.admin_token = Some(ADMIN.into());
    let (dir, url) = db::fresh_sqlite().await;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let key = tenant_key(&server, "acme", "EUR").await;
    let address = format!("http://{}", server.addr);
    let env = [
        ("SALESMETRICS_SERVER", address.as_str()),
        ("SALESMETRICS_API_KEY", key.as_str()),
    ];

    let files = tempfile::tempdir().expect("temp dir");
    let orders = files.path().join("orders.csv");
    // Fiscal year 2025 is 2025-04-01 .. 2026-04-01: o2, o3 and o4.
    std::fs::write(
        &orders,
        "id,amount,ordered_at,customer_id,rep_id\n\
         o1,100.00,2025-03-31,c1,r1\n\
         o2,200.50,2025-04-01,c1,r1\n\
         o3,300,2025-12-15,c2,r2\n\
         o4,400.00,2026-02-01,c3,r10\n\
         o5,50.00,2026-04-01,c2,r2\n",
    )
    .expect("write orders");
    run_ok(&env, &["import", path_str(&orders), "--type", "orders"]).await;
    let targets = files.path().join("targets.csv");
    std::fs::write(
        &targets,
        "id,metric,value,start_date,end_date,company,team_id,rep_id\n\
         t1,revenue,40000.50,2025-04-01,2026-04-01,true,,\n",
    )
    .expect("write targets");
    run_ok(&env, &["import", path_str(&targets), "--type", "targets"]).await;

    // Amounts come back in the tenant's currency, the target in major units.
    let exported = run_ok(&env, &["export", "--type", "orders"]).await;
    assert!(
        exported.contains("\no2,200.50,EUR,2025-04-01T00:00:00Z,new,c1,r1,,"),
        "{exported}"
    );
    let exported = run_ok(&env, &["export", "--type", "targets"]).await;
    assert_eq!(
        exported.lines().nth(1),
        Some("t1,revenue,40000.50,2025-04-01,2026-04-01,true,,,"),
        "{exported}"
    );

    // FY2025: 200.50 + 300 + 400 = 900.50 EUR in 3 orders.
    let fy = json(
        &run_ok(
            &env,
            &[
                "kpis",
                "--period",
                "FY2025",
                "--kpi",
                "revenue,orders",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(fy["period"]["start_date"], "2025-04-01");
    assert_eq!(fy["period"]["end_date"], "2026-04-01");
    assert_eq!(fy["currency"], "EUR");
    assert_eq!(exact(&fy, "revenue"), 90_050);
    assert_eq!(exact(&fy, "orders"), 3);
    let table = run_ok(&env, &["kpis", "--period", "FY2025", "--kpi", "revenue"]).await;
    assert!(table.contains("900.50 EUR"), "{table}");
    // FY2025-Q4 is 2026-01-01 .. 2026-04-01: o4 only.
    let q4 = json(
        &run_ok(
            &env,
            &[
                "kpis",
                "--period",
                "FY2025-Q4",
                "--kpi",
                "revenue",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(q4["period"]["start_date"], "2026-01-01");
    assert_eq!(q4["period"]["end_date"], "2026-04-01");
    assert_eq!(exact(&q4, "revenue"), 40_000);

    // The four fiscal quarters of FY2025: 200.50, nothing, 300, 400.
    let series = json(
        &run_ok(
            &env,
            &[
                "series",
                "--granularity",
                "fiscal-quarter",
                "--from",
                "FY2025",
                "--count",
                "4",
                "--kpi",
                "revenue",
                "--json",
            ],
        )
        .await,
    );
    let periods = series["periods"].as_array().expect("periods");
    let starts: Vec<&str> = periods
        .iter()
        .map(|p| p["period"]["start_date"].as_str().expect("start"))
        .collect();
    assert_eq!(
        starts,
        ["2025-04-01", "2025-07-01", "2025-10-01", "2026-01-01"]
    );
    let revenue: Vec<Value> = periods.iter().map(|p| exact(p, "revenue")).collect();
    assert_eq!(revenue, [20_050, 0, 30_000, 40_000]);

    // By rep in FY2025, with the currency of the response.
    let breakdown = json(
        &run_ok(
            &env,
            &[
                "breakdown",
                "--by",
                "rep",
                "--period",
                "FY2025",
                "--kpi",
                "revenue",
                "--json",
            ],
        )
        .await,
    );
    assert_eq!(breakdown["currency"], "EUR");
    let rows: Vec<(String, Value)> = breakdown["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["key"].as_str().expect("key").to_string(),
                exact(r, "revenue"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("r10".to_string(), Value::from(40_000)),
            ("r2".to_string(), Value::from(30_000)),
            ("r1".to_string(), Value::from(20_050)),
        ]
    );
    let table = run_ok(
        &env,
        &[
            "breakdown",
            "--by",
            "rep",
            "--period",
            "FY2025",
            "--kpi",
            "revenue",
        ],
    )
    .await;
    assert!(table.contains("400.00 EUR"), "{table}");

    // The demo loads into the key's tenant, in its currency (JPY: no decimals).
    let demo_key = tenant_key(&server, "demo-tenant", "JPY").await;
    let demo_env = [
        ("SALESMETRICS_SERVER", address.as_str()),
        ("SALESMETRICS_API_KEY", demo_key.as_str()),
    ];
    let shown = run_ok(&demo_env, &["demo"]).await;
    assert!(shown.contains("JPY"), "{shown}");
    let demo_orders = run_ok(&demo_env, &["export", "--type", "orders"]).await;
    let first = demo_orders.lines().nth(1).expect("a demo order");
    let amount = first.split(',').nth(1).expect("amount");
    assert!(
        !amount.contains('.') && first.split(',').nth(2) == Some("JPY"),
        "{first}"
    );
    // The demo went to its own tenant: acme still has its 5 orders.
    let acme_orders = run_ok(&env, &["export", "--type", "orders"]).await;
    assert_eq!(acme_orders.lines().count(), 6, "{acme_orders}");

    // Without a key: a clear error naming the fix.
    let output = run(
        &[("SALESMETRICS_SERVER", address.as_str())],
        &["kpis", "--period", "FY2025"],
    )
    .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--api-key"), "{}", stderr(&output));
    server.stop().await;
}

/// TLS with a private CA: `https://` plus `--ca-cert` (or the environment
/// variable) works, `host:port` (plaintext) against the TLS server fails
/// with a hint at https://, and a refused connection says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_talks_tls_with_a_private_ca() {
    let pki = pki();
    let (server, _certs) = tls_server(&pki, false).await;
    let files = tempfile::tempdir().expect("temp dir");
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca).expect("write CA");
    let https = format!("https://localhost:{}", server.addr.port());
    let orders = files.path().join("orders.csv");
    std::fs::write(&orders, "id,amount,ordered_at\no1,12.50,2025-03-10\n").expect("write");

    run_ok(
        &[("SALESMETRICS_SERVER", https.as_str())],
        &[
            "import",
            path_str(&orders),
            "--type",
            "orders",
            "--ca-cert",
            path_str(&ca),
        ],
    )
    .await;
    let env = [
        ("SALESMETRICS_SERVER", https.as_str()),
        ("SALESMETRICS_CA_CERT", path_str(&ca)),
    ];
    let march = json(
        &run_ok(
            &env,
            &["kpis", "--period", "2025-03", "--kpi", "revenue", "--json"],
        )
        .await,
    );
    assert_eq!(exact(&march, "revenue"), 1_250);

    // The system's roots do not know the private CA.
    let output = run(
        &[("SALESMETRICS_SERVER", https.as_str())],
        &["kpis", "--period", "2025-03"],
    )
    .await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("--ca-cert"), "{err}");

    // host:port means plaintext, which a TLS server does not serve.
    let plain = format!("127.0.0.1:{}", server.addr.port());
    let output = run(
        &[("SALESMETRICS_SERVER", plain.as_str())],
        &["kpis", "--period", "2025-03"],
    )
    .await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("https://"), "{err}");
    server.stop().await;

    // Nothing listens any more: refused, with the hints.
    let output = run(
        &[("SALESMETRICS_SERVER", plain.as_str())],
        &["kpis", "--period", "2025-03"],
    )
    .await;
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "cannot connect to http://{plain}: connection refused"
        )) && err.contains("is the server running?")
            && err.contains("use https:// for a TLS server"),
        "{err}"
    );
}

/// Mutual TLS: with `--client-cert`/`--client-key` (or their environment
/// variables) the CLI is served; without them it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_presents_a_client_certificate_for_mutual_tls() {
    let pki = pki();
    let (server, _certs) = tls_server(&pki, true).await;
    let files = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, pem: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path.to_str().expect("UTF-8").to_string()
    };
    let ca = write("ca.pem", &pki.ca);
    let cert = write("client.pem", &pki.client_cert);
    let key = write("client.key", &pki.client_key);
    let https = format!("https://localhost:{}", server.addr.port());
    let orders = files.path().join("orders.csv");
    std::fs::write(&orders, "id,amount,ordered_at\no1,7,2025-03-10\n").expect("write");

    let with_flags = [
        "import",
        path_str(&orders),
        "--type",
        "orders",
        "--ca-cert",
        &ca,
        "--client-cert",
        &cert,
        "--client-key",
        &key,
    ];
    run_ok(&[("SALESMETRICS_SERVER", https.as_str())], &with_flags).await;
    let env = [
        ("SALESMETRICS_SERVER", https.as_str()),
        ("SALESMETRICS_CA_CERT", ca.as_str()),
        ("SALESMETRICS_CLIENT_CERT", cert.as_str()),
        ("SALESMETRICS_CLIENT_KEY", key.as_str()),
    ];
    let march = json(
        &run_ok(
            &env,
            &["kpis", "--period", "2025-03", "--kpi", "revenue", "--json"],
        )
        .await,
    );
    assert_eq!(exact(&march, "revenue"), 700);

    let output = run(
        &[
            ("SALESMETRICS_SERVER", https.as_str()),
            ("SALESMETRICS_CA_CERT", ca.as_str()),
        ],
        &["kpis", "--period", "2025-03"],
    )
    .await;
    assert!(!output.status.success(), "no client certificate: refused");
    server.stop().await;
}

/// A mistyped team or rep scope: NOT_FOUND names the closest id of the
/// caller's own tenant, through the gRPC client and through the CLI; a
/// far-off id gets no suggestion, another tenant's id is never suggested
/// (though its own tenant is offered it), and a long suggestion is cut like
/// any echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_scopes_suggest_only_the_callers_own_ids() {
    let mut config = ServeConfig::for_database("");
    config.auth = AuthMode::On;
    config.admin_token = Some(ADMIN.into());
    let (dir, url) = db::fresh_sqlite().await;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let acme = tenant_key(&server, "acme", "EUR").await;
    let rival = tenant_key(&server, "rival", "EUR").await;
    let address = format!("http://{}", server.addr);
    let files = tempfile::tempdir().expect("temp dir");
    let load = async |key: &str, name: &str, text: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, text).expect("write CSV");
        let env = [
            ("SALESMETRICS_SERVER", address.as_str()),
            ("SALESMETRICS_API_KEY", key),
        ];
        let kind = name.split('-').next().expect("record type");
        run_ok(&env, &["import", path_str(&path), "--type", kind]).await;
    };
    load(
        &acme,
        "teams-acme.csv",
        "id,name,parent_team_id\nemea,EMEA,\napac,APAC,\n\
         emea-north-europe-region,Northern Europe,emea\n",
    )
    .await;
    load(&acme, "reps-acme.csv", "id,name\nrep-alice,Alice\n").await;
    load(
        &rival,
        "teams-rival.csv",
        "id,name,parent_team_id\nlatam,LATAM,\n",
    )
    .await;

    let mut client = server.kpi().await;
    let mut not_found = async |key: &str, kind: pb::ScopeKind, id: &str| {
        let mut request = Request::new(pb::GetKpisRequest {
            scope: Some(pb::Scope {
                kind: kind as i32,
                id: id.into(),
            }),
            period: Some(pb::Period {
                period: Some(pb::period::Period::Calendar(pb::CalendarPeriod {
                    granularity: pb::Granularity::Month as i32,
                    date: Some(pb::Date {
                        year: 2025,
                        month: 3,
                        day: 1,
                    }),
                })),
            }),
            kpi_ids: vec!["revenue".into()],
            ..Default::default()
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ascii"),
        );
        let status = client.get_kpis(request).await.expect_err("unknown scope");
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
        status.message().to_string()
    };
    // Two letters swapped: the close team and rep are named.
    assert_eq!(
        not_found(&acme, pb::ScopeKind::Team, "emae").await,
        "team \"emae\" not found; did you mean \"emea\"?"
    );
    assert_eq!(
        not_found(&acme, pb::ScopeKind::Rep, "rep-alcie").await,
        "rep \"rep-alcie\" not found; did you mean \"rep-alice\"?"
    );
    // Nothing close: no suggestion.
    assert_eq!(
        not_found(&acme, pb::ScopeKind::Team, "zz-9").await,
        "team \"zz-9\" not found"
    );
    // "latma" is close to rival's "latam", which acme never sees; rival does.
    assert_eq!(
        not_found(&acme, pb::ScopeKind::Team, "latma").await,
        "team \"latma\" not found"
    );
    assert_eq!(
        not_found(&rival, pb::ScopeKind::Team, "latma").await,
        "team \"latma\" not found; did you mean \"latam\"?"
    );
    assert_eq!(
        not_found(&rival, pb::ScopeKind::Team, "emae").await,
        "team \"emae\" not found"
    );
    // The long id and its suggestion are both cut after 16 characters.
    assert_eq!(
        not_found(&acme, pb::ScopeKind::Team, "emea-north-europe-regoin").await,
        "team \"emea-north-europ\"… not found; did you mean \"emea-north-europ\"…?"
    );

    // The CLI says the same.
    let env = [
        ("SALESMETRICS_SERVER", address.as_str()),
        ("SALESMETRICS_API_KEY", acme.as_str()),
    ];
    let output = run(
        &env,
        &["kpis", "--period", "2025-03", "--scope", "team:emae"],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("team \"emae\" not found; did you mean \"emea\"?"),
        "{}",
        stderr(&output)
    );
    let output = run(
        &env,
        &["kpis", "--period", "2025-03", "--scope", "team:latma"],
    )
    .await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("team \"latma\" not found"), "{err}");
    assert!(!err.contains("did you mean"), "{err}");
    server.stop().await;
}
