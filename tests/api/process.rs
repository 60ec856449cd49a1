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

/// CPU time (user + system) a process has used so far, from `/proc`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: `sysconf` only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Started with a soft open-files limit of 96 and a hard one of 128, the
/// server raises the soft limit to 128 and says so; with the connection caps
/// off, 200 silent connections run it out of file descriptors, and its
/// accept loop backs off instead of spinning (under half a core over 2 s);
/// once they are gone a new client is served.
#[tokio::test]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new("prlimit")
        .arg("--nofile=96:128")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_salesmetrics"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--max-connections", "0", "--max-connections-per-peer", "0"])
        .arg("--database-url")
        .arg(format!("sqlite://{}", dir.path().join("s.db").display()))
        .env_remove("SALESMETRICS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("SALESMETRICS_METRICS_LISTEN")
        .env_remove("SALESMETRICS_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the salesmetrics binary under prlimit");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(entry) = serde_json::from_str(&line) {
                let _ = tx.send(entry);
            }
        }
    });
    let (mut address, mut raised) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while address.is_none() || raised.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let entry = rx.recv_timeout(left).expect("the server logs its start");
        let fields = &entry["fields"];
        if fields["message"] == "listening" {
            address = fields["address"].as_str().map(str::to_string);
        }
        if fields["message"] == "raised the open-files limit" {
            raised = Some((fields["from"].as_u64(), fields["open_files"].as_u64()));
        }
    }
    assert_eq!(raised, Some((Some(96), Some(128))));
    let address = address.expect("address");

    let silent: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    assert!(silent.len() > 128, "{} connections", silent.len());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(child.id()) - before;
    assert!(
        spent < Duration::from_secs(1),
        "the accept loop spins: {spent:?} of CPU in 2 s"
    );
    // The accept loop did run out (and said so, sampled).
    let logged: Vec<serde_json::Value> = rx.try_iter().collect();
    let paused = logged
        .iter()
        .find(|entry| {
            entry["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot accept connections; pausing"))
        })
        .unwrap_or_else(|| panic!("a log line for the failed accepts: {logged:?}"));
    assert!(
        paused["fields"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Too many open files")),
        "{paused}"
    );
    drop(silent);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let served = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
                .ok()?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
                .ok()?;
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()
        }
        .await;
        if served.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let exit = terminate(&mut child).await;
    assert!(exit.success(), "{exit:?}");
}
