//! Every `salesmetrics` command shown in README.md and docs/*.md, run as
//! written against ONE production-like server: authentication on (a tenant
//! API key made through AdminService) and TLS with a private CA made here,
//! both at once. The commands are read from the markdown when the test runs,
//! so a command added to the docs is covered without touching this file.
//!
//! What counts as a command: a line of a fenced code block that starts with
//! `salesmetrics ` (a line ending in `\` goes on on the next), its trailing
//! `# comment` removed. The CLI finds the server, the CA and the key in the
//! environment variables the README describes (`SALESMETRICS_SERVER`,
//! `SALESMETRICS_CA_CERT`, `SALESMETRICS_API_KEY`). Each command runs in a
//! temporary directory holding copies of the files it names from
//! `examples/data/` (`orders.csv` is `examples/data/orders.csv`), so what it
//! writes (`> orders.csv`, `--output report.html`, reject files) stays there.

use std::path::{Path, PathBuf};
use std::process::Output;

use salesmetrics::config::{AuthMode, ServeConfig};
use salesmetrics::proto::v1::admin_service_client::AdminServiceClient;
use serde_json::Value;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::cli_secure::{ADMIN, tenant_key_through};
use super::db;
use super::harness::TestServer;
use super::security::pki;

/// The repository's root.
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A command found in the docs: where, and its words.
#[derive(Debug)]
struct DocCommand {
    /// `docs/import.md:10`.
    place: String,
    /// The line as written (comment removed).
    text: String,
    /// Its words, shell quotes removed; the first is `salesmetrics`.
    words: Vec<String>,
}

/// Splits a command line into words: blanks separate, `'…'` and `"…"` quote.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    words
}

/// The `salesmetrics` commands and `cargo run` lines of the fenced code
/// blocks of README.md and docs/*.md, in file order.
fn doc_commands() -> Vec<DocCommand> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut commands = Vec::new();
    for file in files {
        let name = file
            .strip_prefix(repo())
            .expect("in the repository")
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file).expect("read markdown");
        let mut fenced = false;
        let mut lines = text.lines().enumerate();
        while let Some((i, line)) = lines.next() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            if !fenced || !(line.starts_with("salesmetrics ") || line.starts_with("cargo run")) {
                continue;
            }
            let mut full = line.to_string();
            while full.trim_end().ends_with('\\') {
                full = full.trim_end().trim_end_matches('\\').to_string();
                match lines.next() {
                    Some((_, next)) => full.push_str(next),
                    None => break,
                }
            }
            let command = full
                .split_once(" #")
                .map_or(full.as_str(), |(command, _)| command)
                .trim()
                .to_string();
            commands.push(DocCommand {
                place: format!("{name}:{}", i + 1),
                words: shell_words(&command),
                text: command,
            });
        }
    }
    commands
}

/// Why a docs command is not run here, if it is not.
fn skipped(command: &DocCommand) -> Option<&'static str> {
    if command.words.first().is_some_and(|w| w == "cargo") {
        Some(
            "builds and runs the binary from source; the commands it runs are shown as `salesmetrics` lines too",
        )
    } else if command.words.get(1).is_some_and(|w| w == "serve") {
        Some("starts a server; this suite's server (TLS and auth on) is already running")
    } else {
        None
    }
}

/// The server and the client files every command shares.
struct Setup {
    /// `https://localhost:PORT`.
    url: String,
    /// The private CA's certificate (PEM file).
    ca: PathBuf,
}

impl Setup {
    /// Runs `salesmetrics` with `args` in `dir` with the tenant `key`, stdout
    /// into `stdout_to` when given (a `> FILE` of the docs).
    async fn run(
        &self,
        key: &str,
        dir: &Path,
        args: &[String],
        stdout_to: Option<PathBuf>,
    ) -> Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_salesmetrics"));
        for (name, _) in std::env::vars() {
            if name.starts_with("SALESMETRICS_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .current_dir(dir)
            .env("SALESMETRICS_SERVER", &self.url)
            .env("SALESMETRICS_CA_CERT", &self.ca)
            .env("SALESMETRICS_API_KEY", key)
            .env("NO_COLOR", "1");
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join the CLI run")
            .expect("run the salesmetrics binary");
        if let Some(path) = stdout_to {
            std::fs::write(path, &output.stdout).expect("write the redirected output");
        }
        output
    }

    /// Like [`Setup::run`], and expects success; returns stdout.
    async fn run_ok(&self, key: &str, dir: &Path, args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let output = self.run(key, dir, &args, None).await;
        assert!(
            output.status.success(),
            "salesmetrics {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// The exact value of KPI `id` in a `kpis --format json` output.
fn exact(json: &str, id: &str) -> Value {
    let bundle: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    bundle["values"]
        .as_array()
        .expect("values")
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {json}"))["exact_value"]
        .clone()
}

/// Copies into `dir` the example files a command names: an argument ending
/// in `.csv` or `.ndjson` that is not an output (after `>` or `--output`)
/// is `examples/data/<its file name>`, at the path the command uses.
fn stage_inputs(words: &[String], dir: &Path) -> Result<(), String> {
    for (i, word) in words.iter().enumerate() {
        let output = i > 0 && matches!(words[i - 1].as_str(), ">" | "--output" | "-o");
        if output || !(word.ends_with(".csv") || word.ends_with(".ndjson")) {
            continue;
        }
        let name = Path::new(word).file_name().expect("a file name");
        let example = repo().join("examples/data").join(name);
        if !example.exists() {
            return Err(format!(
                "{word}: no examples/data/{} to use",
                name.display()
            ));
        }
        let target = dir.join(word);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).expect("create the input's folder");
        }
        std::fs::copy(&example, &target).expect("copy the example file");
    }
    Ok(())
}

/// Every `salesmetrics` command of the docs succeeds against a server with
/// TLS and authentication on, after the example data is loaded as
/// docs/import.md shows; March 2025's revenue is the hand-computed sum of
/// examples/data/orders.csv.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_docs_command_works_against_a_tls_server_with_auth_on() {
    let commands = doc_commands();
    assert!(
        commands
            .iter()
            .any(|c| c.text.starts_with("salesmetrics kpis")),
        "no commands found in the docs: {commands:#?}"
    );

    // One server: TLS with a private CA, and authentication on.
    let pki = pki();
    let certs = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, pem: &str| {
        let path = certs.path().join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path
    };
    let mut config = ServeConfig::for_database("");
    config.tls_cert = Some(write("server.pem", &pki.server_cert));
    config.tls_key = Some(write("server.key", &pki.server_key));
    config.auth = AuthMode::On;
    config.admin_token = Some(ADMIN.into());
    let ca = write("ca.pem", &pki.ca);
    let (dir, url) = db::fresh_sqlite().await;
    let server = TestServer::start("sqlite", url, config, Some(dir)).await;
    let admin = || async {
        let channel = Endpoint::from_shared(format!("https://127.0.0.1:{}", server.addr.port()))
            .expect("endpoint")
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&pki.ca))
                    .domain_name("localhost"),
            )
            .expect("TLS config")
            .connect()
            .await
            .expect("connect over TLS");
        AdminServiceClient::new(channel)
    };
    let examples_key = tenant_key_through(admin().await, "examples", "USD").await;
    let demo_key = tenant_key_through(admin().await, "demo", "USD").await;
    let setup = Setup {
        url: format!("https://localhost:{}", server.addr.port()),
        ca,
    };

    // The example data, in the order docs/import.md gives (its `for` loop).
    let import_doc =
        std::fs::read_to_string(repo().join("docs/import.md")).expect("docs/import.md");
    let loop_text: String = import_doc
        .lines()
        .skip_while(|l| !l.starts_with("for t in "))
        .take_while(|l| !l.starts_with("done"))
        .collect::<Vec<_>>()
        .join(" ");
    let types: Vec<&str> = loop_text
        .trim_start_matches("for t in ")
        .split("; do")
        .next()
        .expect("the loop's list")
        .split_whitespace()
        .filter(|w| *w != "\\")
        .collect();
    assert_eq!(types.len(), 14, "one type per example file: {types:?}");
    let work = tempfile::tempdir().expect("temp dir");
    for t in &types {
        let file = repo().join(format!("examples/data/{t}.csv"));
        let copy = work.path().join(format!("{t}.csv"));
        std::fs::copy(&file, &copy).expect("copy the example file");
        setup
            .run_ok(
                &examples_key,
                work.path(),
                &["import", copy.to_str().expect("UTF-8"), "--type", t],
            )
            .await;
    }
    // examples/data/orders.csv, in a UTC tenant: March 2025 holds
    // o1 12000.00 + o2 1250.50 + o3 799.99 = 14050.49 USD = 1,405,049 cents
    // (o4, 300 on 2025-02-28, is February's).
    let march = [
        "kpis", "--period", "2025-03", "--kpi", "revenue", "--format", "json",
    ];
    let json = setup.run_ok(&examples_key, work.path(), &march).await;
    assert_eq!(exact(&json, "revenue"), 1_405_049, "{json}");

    // Every docs command, as written.
    let mut ran = Vec::new();
    let mut skips = Vec::new();
    let mut failures = Vec::new();
    for command in &commands {
        if let Some(reason) = skipped(command) {
            skips.push(format!(
                "{}: {}  — skipped: {reason}",
                command.place, command.text
            ));
            continue;
        }
        // `demo` needs an empty tenant (the examples tenant has data): it
        // gets a tenant of its own.
        let key = if command.words.get(1).is_some_and(|w| w == "demo") {
            &demo_key
        } else {
            &examples_key
        };
        let dir = tempfile::tempdir().expect("temp dir");
        if let Err(why) = stage_inputs(&command.words, dir.path()) {
            failures.push(format!("{}: {}\n  {why}", command.place, command.text));
            continue;
        }
        let mut args: Vec<String> = command.words[1..].to_vec();
        let mut stdout_to = None;
        if let Some(at) = args.iter().position(|w| w == ">") {
            let Some(target) = args.get(at + 1) else {
                failures.push(format!(
                    "{}: {}\n  `>` without a file",
                    command.place, command.text
                ));
                continue;
            };
            stdout_to = Some(dir.path().join(target));
            args.truncate(at);
        }
        if let Some(shell) = args
            .iter()
            .find(|w| matches!(w.as_str(), "|" | "&" | "&&" | ";" | "<"))
        {
            failures.push(format!(
                "{}: {}\n  shell syntax {shell:?} is not run by this suite",
                command.place, command.text
            ));
            continue;
        }
        let output = setup.run(key, dir.path(), &args, stdout_to).await;
        if output.status.success() {
            ran.push(format!("{}: {}", command.place, command.text));
        } else {
            failures.push(format!(
                "{}: {}\n  exit {:?}: {}",
                command.place,
                command.text,
                output.status.code(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    println!(
        "ran:\n  {}\nskipped:\n  {}",
        ran.join("\n  "),
        skips.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "docs commands that failed against the TLS + auth server:\n{}",
        failures.join("\n")
    );
    assert!(
        ran.len() >= 10,
        "ran only {} docs commands:\n{}",
        ran.len(),
        ran.join("\n")
    );

    // The docs re-import examples/data/orders.csv (same ids: replaced), so
    // March 2025 is still 14050.49 USD.
    let json = setup.run_ok(&examples_key, work.path(), &march).await;
    assert_eq!(exact(&json, "revenue"), 1_405_049, "{json}");
    server.stop().await;
}
