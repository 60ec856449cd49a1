//! The real binary as a child process: `serve` starts, answers, and on
//! SIGTERM drains and exits cleanly within its grace period.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Starts `salesmetrics serve` on an ephemeral port with JSON logs (and
/// `extra_args`) and returns the child, the address it logged and the log
/// entries up to that line.
pub fn start_binary(
    dir: &std::path::Path,
    extra_args: &[&str],
) -> (std::process::Child, String, Vec<serde_json::Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.join("salesmetrics.db").display()
        ))
        .args(extra_args)
        .env_remove("SALESMETRICS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("SALESMETRICS_METRICS_LISTEN")
        .env_remove("SALESMETRICS_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the salesmetrics binary");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut log = Vec::new();
    let address = loop {
        let line = lines
            .next()
            .expect("the server logs until it listens")
            .expect("read the log");
        let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        let listening = entry["fields"]["message"] == "listening";
        log.push(entry);
        if listening {
            break log[log.len() - 1]["fields"]["address"]
                .as_str()
                .expect("address field")
                .to_string();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address, log)
}

/// Sends SIGTERM to `child` and waits (at most 15 s) for it to exit.
pub async fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(exit) = child.try_wait().expect("wait for the child") {
            return exit;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("the server did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM stops a serving process with exit code 0 well within the default
/// 10 s grace period, and the SQLite file it created is left in place.
#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut child, address, _) = start_binary(dir.path(), &[]);

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to the child server");
    let mut health = HealthClient::new(channel);
    let mut serving = false;
    for _ in 0..100 {
        if let Ok(resp) = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            && resp.into_inner().status == ServingStatus::Serving as i32
        {
            serving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serving, "the child reports SERVING");

    let exit = terminate(&mut child).await;
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    assert!(dir.path().join("salesmetrics.db").exists());
}

/// A listen address that is already taken is a clear start-up error, not a panic.
#[test]
fn a_taken_listen_address_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = taken.local_addr().expect("local address").to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
        .args(["serve", "--listen", &address])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("x.db").display()))
        .output()
        .expect("run the binary");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("error: cannot listen on {address}")),
        "stderr: {stderr}"
    );
}
