//! The real binary as a child process: `serve` starts, answers, and on
//! SIGTERM drains and exits cleanly within its grace period.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Starts `salesmetrics serve` on an ephemeral port with JSON logs and returns
/// the child and the address it logged.
fn start_binary(dir: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_salesmetrics"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.join("salesmetrics.db").display()
        ))
        .env_remove("SALESMETRICS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the salesmetrics binary");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server logs until it listens")
            .expect("read the log");
        let entry: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if entry["fields"]["message"] == "listening" {
            break entry["fields"]["address"]
                .as_str()
                .expect("address field")
                .to_string();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

/// SIGTERM stops a serving process with exit code 0 well within the default
/// 10 s grace period, and the SQLite file it created is left in place.
#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (mut child, address) = start_binary(dir.path());

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

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait for the child") {
            break exit;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("the server did not stop within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
