//! The `salesmetrics` binary's client commands, run as a user would run them
//! against a real server: import with a reject file, export round trip, KPIs
//! as JSON checked against hand-computed numbers, the catalog and the demo.

use std::path::Path;
use std::process::Output;

use chrono::Datelike;
use salesmetrics::proto::v1::{CalendarPeriod, Date, GetKpisRequest, Granularity, Period, period};
use serde_json::Value;

use super::harness::TestServer;

/// Runs the binary with `SALESMETRICS_SERVER` pointing at `server`, off the
/// async runtime so the in-process server keeps answering.
async fn cli(server: &TestServer, args: &[&str]) -> Output {
    let url = format!("http://{}", server.addr);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
            .args(&args)
            .env("SALESMETRICS_SERVER", url)
            .env_remove("SALESMETRICS_API_KEY")
            .output()
            .expect("run the salesmetrics binary")
    })
    .await
    .expect("join the CLI run")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the binary and expects success.
async fn cli_ok(server: &TestServer, args: &[&str]) -> String {
    let output = cli(server, args).await;
    assert!(
        output.status.success(),
        "salesmetrics {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// The KPI values of a `kpis --json` output, by id.
fn values(json: &str) -> std::collections::HashMap<String, Value> {
    let bundle: Value = serde_json::from_str(json).expect("kpis --json prints JSON");
    bundle["values"]
        .as_array()
        .expect("values array")
        .iter()
        .map(|v| (v["id"].as_str().expect("id").to_string(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_rejects_a_bad_row_stores_the_rest_and_kpis_match_by_hand() {
    let server = TestServer::sqlite().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let orders = dir.path().join("orders.csv");
    std::fs::write(
        &orders,
        "id,amount,ordered_at,kind,customer_id,rep_id\n\
         o1,1250.50,2025-03-10T14:30:00Z,new,c1,r1\n\
         o2,12.345,2025-03-11,new,c1,r1\n\
         o3,99.5,2025-03-31T23:59:59Z,UPSELL,c2,r2\n\
         o4,2000,2025-04-01,ORDER_KIND_RENEWAL,c2,r2\n",
    )
    .expect("write orders.csv");

    let output = cli(&server, &["import", path_str(&orders), "--type", "orders"]).await;
    assert!(
        !output.status.success(),
        "a rejected row makes the exit code non-zero"
    );
    assert!(
        stderr(&output).contains("3 accepted"),
        "summary: {}",
        stderr(&output)
    );
    let rejects =
        std::fs::read_to_string(dir.path().join("orders.csv.rejects.csv")).expect("reject file");
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(
        lines[0],
        "line,reason,id,amount,ordered_at,kind,customer_id,rep_id"
    );
    assert_eq!(lines.len(), 2, "one rejected row: {rejects}");
    assert!(
        lines[1].starts_with("3,"),
        "line number of o2: {}",
        lines[1]
    );
    assert!(
        lines[1].contains("3 decimals") && lines[1].contains("o2,12.345"),
        "{}",
        lines[1]
    );

    let export = cli_ok(&server, &["export", "--type", "orders"]).await;
    assert_eq!(
        export,
        "id,amount,currency,ordered_at,kind,customer_id,rep_id,deal_id,version\n\
         o1,1250.50,USD,2025-03-10T14:30:00Z,new,c1,r1,,\n\
         o3,99.50,USD,2025-03-31T23:59:59Z,upsell,c2,r2,,\n\
         o4,2000.00,USD,2025-04-01T00:00:00Z,renewal,c2,r2,,\n"
    );

    // March (UTC): o1 and o3; o4 is at April 1 00:00, outside.
    let json = cli_ok(
        &server,
        &[
            "kpis",
            "--period",
            "2025-03",
            "--kpi",
            "revenue,orders,average_order_value,upsell_cross_sell_rate",
            "--json",
        ],
    )
    .await;
    let v = values(&json);
    assert_eq!(v["revenue"]["exact_value"], 125_050 + 9_950);
    assert_eq!(v["revenue"]["unit"], "money");
    assert_eq!(v["orders"]["exact_value"], 2);
    let aov = v["average_order_value"]["value"].as_f64().expect("aov");
    assert!((aov - 135_000.0 / 2.0).abs() < 1e-6, "{aov}");
    // c1 bought only NEW, c2 an UPSELL: 1 of 2 customers.
    assert_eq!(v["upsell_cross_sell_rate"]["value"], 0.5);

    // Rep scope and a custom range that takes in April 1.
    let json = cli_ok(
        &server,
        &[
            "kpis",
            "--scope",
            "rep:r2",
            "--period",
            "2025-03-15..2025-04-02",
            "--kpi",
            "revenue",
            "--json",
        ],
    )
    .await;
    assert_eq!(values(&json)["revenue"]["exact_value"], 9_950 + 200_000);

    // The table shows money in major units.
    let table = cli_ok(
        &server,
        &["kpis", "--period", "2025-03", "--kpi", "revenue,orders"],
    )
    .await;
    assert!(table.contains("1,350.00 USD"), "{table}");
    // April (o4, 2000.00) against March (1350.00): +48.1 %.
    let compared = cli_ok(
        &server,
        &[
            "kpis",
            "--period",
            "2025-04",
            "--compare",
            "previous",
            "--kpi",
            "revenue",
        ],
    )
    .await;
    assert!(
        compared.contains("2,000.00 USD") && compared.contains("1,350.00 USD"),
        "{compared}"
    );
    assert!(compared.contains("▲ 48.1%"), "{compared}");
    // Revenue is better higher: the CLI says so (from ListKpis's direction).
    assert!(compared.contains("▲ 48.1% better"), "{compared}");
    server.stop().await;
}

/// A row with the wrong number of fields and a row with an unclosed quote are
/// rejected like any other bad row: the rows around them are stored, the
/// summary is printed and the reject file names their lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_rejects_malformed_csv_rows_and_goes_on() {
    let server = TestServer::sqlite().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let orders = dir.path().join("orders.csv");
    std::fs::write(
        &orders,
        "id,amount,ordered_at\n\
         o1,10,2025-03-10\n\
         o2,20,2025-03-11,extra\n\
         o3,30\n\
         o4,40,2025-03-12\n\
         o5,\"50,2025-03-13\n\
         o6,60,2025-03-14\n",
    )
    .expect("write orders.csv");
    let output = cli(&server, &["import", path_str(&orders), "--type", "orders"]).await;
    let err = stderr(&output);
    assert!(
        !output.status.success(),
        "rejected rows: exit code 1: {err}"
    );
    assert!(err.contains("3 accepted"), "summary: {err}");
    let rejects =
        std::fs::read_to_string(dir.path().join("orders.csv.rejects.csv")).expect("reject file");
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines.len(), 4, "three rejected rows: {rejects}");
    assert!(
        lines[1].starts_with("3,") && lines[1].contains("o2"),
        "{rejects}"
    );
    assert!(
        lines[2].starts_with("4,") && lines[2].contains("o3"),
        "{rejects}"
    );
    assert!(
        lines[3].starts_with("6,") && lines[3].contains("quote"),
        "{rejects}"
    );
    let export = cli_ok(&server, &["export", "--type", "orders"]).await;
    let ids: Vec<&str> = export
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(ids, ["o1", "o4", "o6"], "{export}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_round_trips_every_sample_file() {
    let server = TestServer::sqlite().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data");
    for (kind, file) in [
        ("teams", "teams.csv"),
        ("reps", "reps.csv"),
        ("memberships", "memberships.csv"),
        ("customers", "customers.csv"),
        ("leads", "leads.csv"),
        ("deals", "deals.csv"),
        ("stage-changes", "stage-changes.csv"),
        ("orders", "orders.csv"),
        ("subscriptions", "subscriptions.csv"),
        ("activities", "activities.csv"),
        ("inquiries", "inquiries.csv"),
        ("csat", "csat.csv"),
        ("targets", "targets.csv"),
        ("spend", "spend.csv"),
    ] {
        let sample = samples.join(file);
        cli_ok(&server, &["import", path_str(&sample), "--type", kind]).await;
        let first = cli_ok(&server, &["export", "--type", kind]).await;
        let sample_rows = std::fs::read_to_string(&sample)
            .expect("sample")
            .lines()
            .count();
        assert_eq!(
            first.lines().count(),
            sample_rows,
            "{kind}: every sample row is stored\n{first}"
        );

        // Import the export again (as CSV and as NDJSON): nothing changes.
        let csv = dir.path().join(format!("{kind}.csv"));
        std::fs::write(&csv, &first).expect("write export");
        cli_ok(&server, &["import", path_str(&csv), "--type", kind]).await;
        assert_eq!(
            cli_ok(&server, &["export", "--type", kind]).await,
            first,
            "{kind} CSV round trip"
        );

        let ndjson = dir.path().join(format!("{kind}.ndjson"));
        cli_ok(
            &server,
            &["export", "--type", kind, "--output", path_str(&ndjson)],
        )
        .await;
        cli_ok(&server, &["import", path_str(&ndjson), "--type", kind]).await;
        assert_eq!(
            cli_ok(&server, &["export", "--type", kind]).await,
            first,
            "{kind} NDJSON round trip"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_the_kpis() {
    let server = TestServer::sqlite().await;
    let json: Value =
        serde_json::from_str(&cli_ok(&server, &["catalog", "--json"]).await).expect("JSON");
    let kpis = json.as_array().expect("array");
    let revenue = kpis
        .iter()
        .find(|k| k["id"] == "revenue")
        .expect("revenue in the catalog");
    assert_eq!(revenue["unit"], "money");
    assert_eq!(revenue["direction"], "higher_is_better");
    assert!(
        kpis.iter()
            .any(|k| k["id"] == "win_rate" && k["unit"] == "ratio")
    );
    let table = cli_ok(&server, &["catalog"]).await;
    assert!(table.lines().any(|l| l.starts_with("win_rate ")), "{table}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_loads_data_with_revenue_last_month() {
    let server = TestServer::sqlite().await;
    let shown = cli_ok(&server, &["demo"]).await;
    assert!(shown.contains("revenue"), "{shown}");
    let today = chrono::Utc::now().date_naive();
    let last_month = chrono::Months::new(1);
    let month = today
        .checked_sub_months(last_month)
        .expect("last month")
        .format("%Y-%m")
        .to_string();
    let json = cli_ok(
        &server,
        &[
            "kpis",
            "--period",
            &month,
            "--kpi",
            "revenue,orders,win_rate",
            "--json",
        ],
    )
    .await;
    let v = values(&json);
    assert!(
        v["revenue"]["exact_value"].as_i64().expect("revenue") > 0,
        "{json}"
    );
    assert!(
        v["orders"]["exact_value"].as_i64().expect("orders") > 0,
        "{json}"
    );
    // The CLI shows what the API computes.
    let first_day =
        chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").expect("month");
    let bundle = server
        .kpi()
        .await
        .get_kpis(GetKpisRequest {
            period: Some(Period {
                period: Some(period::Period::Calendar(CalendarPeriod {
                    granularity: Granularity::Month as i32,
                    date: Some(Date {
                        year: first_day.year(),
                        month: first_day.month() as i32,
                        day: 1,
                    }),
                })),
            }),
            kpi_ids: vec!["revenue".into()],
            ..Default::default()
        })
        .await
        .expect("GetKpis")
        .into_inner()
        .bundle
        .expect("bundle");
    assert_eq!(
        v["revenue"]["exact_value"],
        bundle.values[0].exact_value.expect("exact revenue")
    );
    // Running it again (the tenant now has data: only with --force) replaces
    // the same records.
    cli_ok(&server, &["demo", "--force"]).await;
    assert_eq!(
        values(
            &cli_ok(
                &server,
                &[
                    "kpis",
                    "--period",
                    &month,
                    "--kpi",
                    "revenue,orders,win_rate",
                    "--json"
                ]
            )
            .await
        ),
        v
    );
    server.stop().await;
}

/// `demo` refuses a tenant that has data (writing nothing) unless `--force`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_refuses_a_tenant_with_data_unless_forced() {
    let server = TestServer::sqlite().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let orders = dir.path().join("orders.csv");
    std::fs::write(&orders, "id,amount,ordered_at\nmine,10,2025-03-10\n").expect("write");
    cli_ok(&server, &["import", path_str(&orders), "--type", "orders"]).await;

    let output = cli(&server, &["demo"]).await;
    let err = stderr(&output);
    assert!(!output.status.success(), "demo on a tenant with data fails");
    assert!(
        err.contains("already has data") && err.contains("--force"),
        "{err}"
    );
    // Nothing was written: the tenant still holds its one order, and no team.
    let export = cli_ok(&server, &["export", "--type", "orders"]).await;
    assert_eq!(export.lines().count(), 2, "{export}");
    let teams = cli_ok(&server, &["export", "--type", "teams"]).await;
    assert_eq!(teams.lines().count(), 1, "{teams}");

    // --force loads the sample next to the tenant's own records.
    cli_ok(&server, &["demo", "--force"]).await;
    let export = cli_ok(&server, &["export", "--type", "orders"]).await;
    assert!(export.lines().any(|l| l.starts_with("mine,")), "{export}");
    assert!(export.lines().any(|l| l.starts_with("demo-")), "{export}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_periods_and_unknown_columns_are_clear_errors() {
    let server = TestServer::sqlite().await;
    let output = cli(&server, &["kpis", "--period", "2025-13"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid month"),
        "{}",
        stderr(&output)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("o.csv");
    std::fs::write(&file, "id,amount,ordered_at,colour\no1,1,2025-03-01,red\n").expect("write");
    let output = cli(&server, &["import", path_str(&file), "--type", "orders"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown column \"colour\""),
        "{}",
        stderr(&output)
    );
    // Close misspellings get a suggestion.
    std::fs::write(&file, "id,amout,ordered_at\no1,1,2025-03-01\n").expect("write");
    let output = cli(&server, &["import", path_str(&file), "--type", "orders"]).await;
    assert!(
        stderr(&output).contains("unknown column \"amout\" for orders; did you mean \"amount\"?"),
        "{}",
        stderr(&output)
    );
    let output = cli(&server, &["kpis", "--period", "2025-03", "--kpi", "revenu"]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("unknown KPI id \"revenu\"; did you mean \"revenue\"?"),
        "{}",
        stderr(&output)
    );
    server.stop().await;
}

/// `series` prints one row per period with the KPIs in `--kpi` order,
/// `breakdown` sorts by a KPI (highest first, ties in natural key order:
/// r2 before r10), `--format csv` prints raw numbers, and `catalog` needs no
/// server. Values computed by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_rows_breakdown_sorting_csv_and_an_offline_catalog() {
    let server = TestServer::sqlite().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let orders = dir.path().join("orders.csv");
    // r1: 100.00 in March; r2: 50.00 in January; r10: 30.00 + 20.00 in February.
    std::fs::write(
        &orders,
        "id,amount,ordered_at,customer_id,rep_id\n\
         o1,50.00,2025-01-10,c1,r2\n\
         o2,30.00,2025-02-05,c1,r10\n\
         o3,20.00,2025-02-06,c2,r10\n\
         o4,100.00,2025-03-01,c3,r1\n",
    )
    .expect("write orders.csv");
    cli_ok(&server, &["import", path_str(&orders), "--type", "orders"]).await;

    let series = [
        "series",
        "--granularity",
        "month",
        "--from",
        "2025-01",
        "--count",
        "3",
        "--kpi",
        "orders,revenue",
    ];
    let csv = cli_ok(&server, &[&series[..], &["--format", "csv"]].concat()).await;
    assert_eq!(
        csv,
        "start_date,end_date,orders,revenue\n\
         2025-01-01,2025-02-01,1,5000\n\
         2025-02-01,2025-03-01,2,5000\n\
         2025-03-01,2025-04-01,1,10000\n"
    );
    let table = cli_ok(&server, &series).await;
    let lines: Vec<&str> = table.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("period"))
        .expect("header row");
    let squeeze = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(squeeze(lines[header]), "period orders revenue", "{table}");
    assert_eq!(
        lines[header + 2..header + 5]
            .iter()
            .map(|l| squeeze(l))
            .collect::<Vec<_>>(),
        [
            "2025-01-01 1 50.00 USD",
            "2025-02-01 2 50.00 USD",
            "2025-03-01 1 100.00 USD",
        ],
        "{table}"
    );

    // Default: sorted by the first KPI (orders), highest first.
    let by_orders = cli_ok(
        &server,
        &[
            "breakdown",
            "--by",
            "rep",
            "--period",
            "2025-Q1",
            "--kpi",
            "orders,revenue",
            "--format",
            "csv",
        ],
    )
    .await;
    assert_eq!(
        by_orders,
        "key,label,orders,revenue\nr10,r10,2,5000\nr1,r1,1,10000\nr2,r2,1,5000\n"
    );
    // By revenue: r1 first; r2 and r10 tie at 50.00 and keep natural order.
    let by_revenue = cli_ok(
        &server,
        &[
            "breakdown",
            "--by",
            "rep",
            "--period",
            "2025-Q1",
            "--kpi",
            "orders,revenue",
            "--sort",
            "revenue",
            "--json",
        ],
    )
    .await;
    let json: Value = serde_json::from_str(&by_revenue).expect("JSON");
    let keys: Vec<&str> = json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["key"].as_str().expect("key"))
        .collect();
    assert_eq!(keys, ["r1", "r2", "r10"]);
    let output = cli(
        &server,
        &[
            "breakdown",
            "--by",
            "rep",
            "--period",
            "2025-Q1",
            "--sort",
            "nps",
        ],
    )
    .await;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--sort"), "{}", stderr(&output));

    let kpis_csv = cli_ok(
        &server,
        &[
            "kpis",
            "--period",
            "2025-Q1",
            "--kpi",
            "revenue,orders",
            "--format",
            "csv",
        ],
    )
    .await;
    assert_eq!(
        kpis_csv,
        "kpi,unit,value,currency,undefined_reason,comparison_value,relative_change,absolute_change\n\
         revenue,money,20000,USD,,,,\n\
         orders,count,4,USD,,,,\n"
    );

    // The catalog is built in: it works with no server listening.
    server.stop().await;
    let stopped = TestServer::sqlite().await;
    let address = stopped.addr;
    stopped.stop().await;
    let catalog = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
            .args(["catalog", "--json"])
            .env("SALESMETRICS_SERVER", format!("http://{address}"))
            .output()
            .expect("run catalog")
    })
    .await
    .expect("join");
    assert!(catalog.status.success(), "{}", stderr(&catalog));
    let kpis: Value = serde_json::from_slice(&catalog.stdout).expect("catalog JSON");
    assert_eq!(kpis[0]["id"], "revenue");
}

/// The reject file example of docs/import.md is what `import` writes for the
/// rows it shows (with valid rows on the other lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_reject_file_is_what_import_writes() {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/import.md"))
            .expect("docs/import.md");
    let block = docs
        .split("```text\n")
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.starts_with("line,reason,"))
        .expect("the reject file example");
    let mut lines = block.lines();
    let header = lines.next().expect("reject header");
    let columns = header
        .strip_prefix("line,reason,")
        .expect("line,reason first");
    // The input: the rejected rows on their lines, valid orders elsewhere.
    let mut rejected: Vec<(usize, String)> = Vec::new();
    for line in lines {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_bytes());
        let record = reader.records().next().expect("a row").expect("CSV");
        let number: usize = record[0].parse().expect("line number");
        let cells: Vec<&str> = record.iter().skip(2).collect();
        rejected.push((number, cells.join(",")));
    }
    let last = rejected.iter().map(|(n, _)| *n).max().expect("rows");
    let mut input = format!("{columns}\n");
    for number in 2..=last {
        match rejected.iter().find(|(n, _)| *n == number) {
            Some((_, row)) => input.push_str(row),
            None => input.push_str(&format!("ok{number},10.00,2025-03-0{number},new,c1,r1")),
        }
        input.push('\n');
    }
    let server = TestServer::sqlite().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let orders = dir.path().join("orders.csv");
    std::fs::write(&orders, &input).expect("write orders.csv");
    let output = cli(&server, &["import", path_str(&orders), "--type", "orders"]).await;
    assert!(!output.status.success(), "rows were rejected");
    let written =
        std::fs::read_to_string(dir.path().join("orders.csv.rejects.csv")).expect("reject file");
    assert_eq!(written, block, "input:\n{input}");
    server.stop().await;
}

/// Runs the binary on a pseudo-terminal `columns` wide (util-linux `script`),
/// as a person at a terminal would; returns what the terminal received, with
/// its `\r\n` line ends made `\n`.
pub(crate) fn on_terminal(args: &[&str], columns: u16, envs: &[(&str, &str)]) -> String {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_salesmetrics"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let command = format!("stty cols {columns} rows 50; {}", quoted.join(" "));
    let mut run = std::process::Command::new("script");
    run.args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .env_remove("NO_COLOR");
    for (key, value) in envs {
        run.env(key, value);
    }
    let output = run.output().expect("run script (util-linux)");
    assert!(
        output.status.success(),
        "salesmetrics {args:?} on a terminal failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n")
}

/// On a terminal the catalog fits the screen (its long formulas wrap inside
/// their column, the ids never); through a pipe nothing wraps: one line per
/// KPI under the header and its rule.
#[test]
fn tables_fit_the_terminal_and_stay_on_one_line_in_a_pipe() {
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
            .args(args)
            .output()
            .expect("run catalog");
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let json: Value = serde_json::from_str(&run(&["catalog", "--json"])).expect("JSON");
    let ids: Vec<&str> = json
        .as_array()
        .expect("array")
        .iter()
        .map(|k| k["id"].as_str().expect("id"))
        .collect();

    let piped = run(&["catalog"]);
    let lines: Vec<&str> = piped.lines().collect();
    assert_eq!(lines.len(), ids.len() + 2, "{piped}");
    assert!(lines[1].chars().all(|c| c == '─'), "{piped}");
    for (line, id) in lines[2..].iter().zip(&ids) {
        assert!(line.starts_with(&format!("{id} ")), "{line}");
    }
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(widest > 80, "the formulas make a wide table: {widest}");

    for columns in [80u16, 120] {
        let screen = on_terminal(&["catalog"], columns, &[]);
        let lines: Vec<&str> = screen.lines().collect();
        for line in &lines {
            assert!(
                line.chars().count() <= usize::from(columns),
                "{line:?} is wider than {columns} columns:\n{screen}"
            );
        }
        assert!(lines.len() > ids.len() + 2, "long text wraps:\n{screen}");
        // Every id starts a row, whole and in catalog order.
        let starts: Vec<&str> = lines[2..]
            .iter()
            .filter(|l| !l.starts_with(' '))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(starts, ids, "{screen}");
    }
}

/// `text` without its ANSI escape sequences (`ESC [ … letter`).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// On a 40-column terminal the import's progress bar is redrawn in place and
/// never wider than the terminal; the summary line follows. Through a pipe
/// (every other test) there is no bar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_bar_fits_a_narrow_terminal() {
    let server = TestServer::sqlite().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let orders = dir.path().join("orders.csv");
    let mut text = String::from("id,amount,ordered_at\n");
    for i in 0..3000 {
        text.push_str(&format!("o{i},1.00,2025-03-10\n"));
    }
    std::fs::write(&orders, text).expect("write orders.csv");
    let url = format!("http://{}", server.addr);
    let path = path_str(&orders).to_string();
    let screen = tokio::task::spawn_blocking(move || {
        on_terminal(
            &["import", &path, "--type", "orders", "--batch-size", "100"],
            40,
            &[("SALESMETRICS_SERVER", &url)],
        )
    })
    .await
    .expect("join");
    let shown = without_ansi(&screen);
    let drawn: Vec<&str> = shown
        .split(['\r', '\n'])
        .filter(|s| s.contains("░") || s.contains("█"))
        .collect();
    assert!(!drawn.is_empty(), "no progress drawn: {screen:?}");
    for segment in &drawn {
        assert!(
            segment.chars().count() <= 40,
            "{segment:?} is wider than 40 columns: {screen:?}"
        );
    }
    // The figures, cut at the edge: "2,600 of 3,000 reco".
    assert!(
        drawn.iter().any(|s| s.contains(" of 3,000 rec")),
        "{screen:?}"
    );
    for segment in &drawn {
        assert!(
            !segment.contains("rows:"),
            "the summary is a line of its own"
        );
    }
    assert!(
        shown.contains(": 3000 rows: 3000 accepted, 0 stale, 0 rejected"),
        "{screen:?}"
    );
    server.stop().await;
}
