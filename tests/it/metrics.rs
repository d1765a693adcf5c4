//! Prometheus metrics over real HTTP: what a scrape says after a day's work, that promtool
//! accepts it, that gauges come from the store across a restart, and that the listener stops
//! with the daemon.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use elevate::metrics::rpc::code_name;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::*;

/// One HTTP/1.1 request on a fresh connection: the status code, the headers (lowercase names)
/// and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    (status, headers, body.to_owned())
}

/// `GET /metrics`, which must succeed, as sample → value. The gauges a scrape reads from the
/// store may be up to `CENSUS_TTL` old: that long is waited out first, so that they show every
/// change made before.
async fn scrape(daemon: &Daemon) -> (String, BTreeMap<String, f64>) {
    tokio::time::sleep(elevate::metrics::CENSUS_TTL).await;
    let (status, headers, body) = http(daemon.metrics, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let samples = body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| {
            let (sample, value) = line.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                value => value.parse().unwrap(),
            };
            (sample.to_owned(), value)
        })
        .collect();
    (body, samples)
}

/// The value of `sample`, which must be present.
fn value(samples: &BTreeMap<String, f64>, sample: &str) -> f64 {
    *samples
        .get(sample)
        .unwrap_or_else(|| panic!("{sample} is not in the scrape: {samples:#?}"))
}

/// Asserts each sample's value.
fn assert_samples(samples: &BTreeMap<String, f64>, expected: &[(&str, f64)]) {
    for (sample, wanted) in expected {
        assert_eq!(value(samples, sample), *wanted, "{sample}");
    }
}

/// Runs `promtool check metrics` on `text`; skipped, saying so, when promtool is missing.
pub fn promtool_accepts(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            println!("promtool is not installed: skipping `promtool check metrics`");
            return;
        }
        Err(error) => panic!("cannot run promtool: {error}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const ACCESS: &str = "elevate.v1.AccessService";

#[tokio::test]
async fn a_scrape_counts_the_workflow_and_passes_promtool() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let mut oncall = daemon.client("oncall").await;

    // Before anything happened: gauges at zero, histograms without labels at zero.
    let (text, samples) = scrape(&daemon).await;
    promtool_accepts(&text);
    assert_samples(
        &samples,
        &[
            ("elevate_leases_active", 0.0),
            ("elevate_requests_open{state=\"pending\"}", 0.0),
            ("elevate_revocation_lag_seconds_count", 0.0),
            ("elevate_reviews_open", 0.0),
        ],
    );

    // Auto-approved and granted at once; expires in 30 minutes.
    let staging = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    assert_eq!(state(&staging), "active");
    let read = request(&mut engineer, "prod-db-read", "1h", "slow queries", "")
        .await
        .unwrap();
    let admin = request(&mut engineer, "prod-db-admin", "30m", "fix index", "INC-1")
        .await
        .unwrap();
    let too_long = request(&mut engineer, "staging-db", "9h", "", "")
        .await
        .unwrap_err();

    let (text, samples) = scrape(&daemon).await;
    promtool_accepts(&text);
    assert_samples(
        &samples,
        &[
            ("elevate_requests_open{state=\"pending\"}", 2.0),
            ("elevate_requests_open{state=\"active\"}", 1.0),
            ("elevate_leases_active", 1.0),
        ],
    );

    // Decisions after 90 and 120 seconds.
    env.advance(Duration::from_secs(90));
    assert_eq!(
        state(&approve(&mut manager, &read.id).await.unwrap()),
        "active"
    );
    env.advance(Duration::from_secs(30));
    deny(&mut manager, &admin.id, "use the runbook")
        .await
        .unwrap();
    let glass = break_glass(&mut oncall, "prod-db-admin", "30m", "primary down", "INC-7")
        .await
        .unwrap();
    assert_eq!(state(&glass), "active");

    // The staging lease expires; its first revoke fails, 5 seconds after its expiry time.
    env.targets.fail_revokes.store(1, Ordering::SeqCst);
    env.advance(Duration::from_secs(30 * 60 - 120 + 5));
    until_state(&engineer, &staging.id, "revoke_failing").await;
    let (_, samples) = scrape(&daemon).await;
    assert_samples(
        &samples,
        &[
            ("elevate_leases_revoke_failing", 1.0),
            ("elevate_requests_open{state=\"revoke_failing\"}", 1.0),
            (
                "elevate_revoke_failures_total{resource=\"staging-db\"}",
                1.0,
            ),
            ("elevate_revocation_lag_seconds_count", 0.0),
        ],
    );
    // The retry succeeds 13 seconds after the expiry time.
    env.advance(RETRY_MAX);
    until_state(&engineer, &staging.id, "expired").await;

    let (text, samples) = until("the outbox to drain", || async {
        let (text, samples) = scrape(&daemon).await;
        (value(&samples, "elevate_notification_outbox_depth") == 0.0).then_some((text, samples))
    })
    .await;
    promtool_accepts(&text);
    let outcome = |resource: &str, outcome: &str| {
        format!("elevate_requests_total{{resource=\"{resource}\",outcome=\"{outcome}\"}}")
    };
    let mut expected = vec![
        (outcome("staging-db", "submitted"), 1.0),
        (outcome("staging-db", "auto_approved"), 1.0),
        (outcome("staging-db", "granted"), 1.0),
        (outcome("staging-db", "expired"), 1.0),
        (outcome("prod-db-read", "submitted"), 1.0),
        (outcome("prod-db-read", "approved"), 1.0),
        (outcome("prod-db-read", "granted"), 1.0),
        (outcome("prod-db-admin", "submitted"), 2.0),
        (outcome("prod-db-admin", "denied"), 1.0),
        (outcome("prod-db-admin", "auto_approved"), 1.0),
        (outcome("prod-db-admin", "granted"), 1.0),
    ];
    for (sample, wanted) in [
        (
            "elevate_time_to_decision_seconds_count{decision=\"approved\"}",
            1.0,
        ),
        (
            "elevate_time_to_decision_seconds_sum{decision=\"approved\"}",
            90.0,
        ),
        (
            "elevate_time_to_decision_seconds_bucket{decision=\"approved\",le=\"60\"}",
            0.0,
        ),
        (
            "elevate_time_to_decision_seconds_bucket{decision=\"approved\",le=\"120\"}",
            1.0,
        ),
        (
            "elevate_time_to_decision_seconds_count{decision=\"denied\"}",
            1.0,
        ),
        (
            "elevate_time_to_decision_seconds_sum{decision=\"denied\"}",
            120.0,
        ),
        ("elevate_revocation_lag_seconds_count", 1.0),
        ("elevate_revocation_lag_seconds_sum", 13.0),
        ("elevate_revocation_lag_seconds_bucket{le=\"10\"}", 0.0),
        ("elevate_revocation_lag_seconds_bucket{le=\"30\"}", 1.0),
        ("elevate_revocation_lag_seconds_bucket{le=\"+Inf\"}", 1.0),
        (
            "elevate_revoke_failures_total{resource=\"staging-db\"}",
            1.0,
        ),
        (
            "elevate_break_glass_grants_total{resource=\"prod-db-admin\"}",
            1.0,
        ),
        ("elevate_requests_open{state=\"pending\"}", 0.0),
        ("elevate_requests_open{state=\"approved\"}", 0.0),
        ("elevate_requests_open{state=\"active\"}", 2.0),
        ("elevate_requests_open{state=\"revoke_failing\"}", 0.0),
        ("elevate_leases_active", 2.0),
        ("elevate_leases_revoke_failing", 0.0),
        ("elevate_reviews_open", 1.0),
        ("elevate_reviews_overdue", 0.0),
    ] {
        expected.push((sample.to_owned(), wanted));
    }
    let rpc = |method: &str, code: &str| {
        format!("elevate_rpc_duration_seconds_count{{method=\"{method}\",code=\"{code}\"}}")
    };
    expected.extend([
        (rpc(&format!("{ACCESS}/SubmitRequest"), "OK"), 3.0),
        (
            rpc(
                &format!("{ACCESS}/SubmitRequest"),
                code_name(too_long.code()),
            ),
            1.0,
        ),
        (rpc("elevate.v1.ApprovalService/Approve", "OK"), 1.0),
        (rpc("elevate.v1.ApprovalService/Deny", "OK"), 1.0),
        (rpc("elevate.v1.BreakGlassService/BreakGlass", "OK"), 1.0),
    ]);
    for (sample, wanted) in &expected {
        assert_eq!(value(&samples, sample), *wanted, "{sample}");
    }
    assert_eq!(code_name(too_long.code()), "InvalidArgument");
    // Nothing else was counted as a step of a request.
    let steps: f64 = samples
        .iter()
        .filter(|(sample, _)| sample.starts_with("elevate_requests_total"))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(steps, 12.0);
    // Every commit is observed once, with its size.
    let commits = value(&samples, "elevate_store_commit_duration_seconds_count");
    assert!(commits >= 10.0, "{commits} commits");
    assert_eq!(
        value(&samples, "elevate_store_commit_batch_jobs_count"),
        commits
    );
    assert!(value(&samples, "elevate_store_commit_batch_jobs_sum") >= commits);

    daemon.stop().await;
}

#[tokio::test]
async fn gauges_come_from_the_store_after_a_restart_and_counters_start_again() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut oncall = daemon.client("oncall").await;
    request(&mut engineer, "staging-db", "2h", "", "")
        .await
        .unwrap();
    request(&mut engineer, "prod-db-read", "1h", "slow queries", "")
        .await
        .unwrap();
    break_glass(&mut oncall, "prod-db-admin", "1h", "primary down", "INC-9")
        .await
        .unwrap();
    // The review is due in a day: a day and a second later it is overdue.
    env.advance(Duration::from_secs(24 * 3600 + 1));
    let expected = [
        ("elevate_requests_open{state=\"pending\"}", 0.0),
        ("elevate_leases_active", 0.0),
        ("elevate_reviews_open", 1.0),
        ("elevate_reviews_overdue", 1.0),
    ];
    until(
        "the review to become overdue and the rest to end",
        || async {
            let (_, samples) = scrape(&daemon).await;
            expected
                .iter()
                .all(|(sample, wanted)| value(&samples, sample) == *wanted)
                .then_some(())
        },
    )
    .await;
    let old = daemon.metrics;
    daemon.stop().await;
    // The listener stopped with the daemon.
    assert!(tokio::net::TcpStream::connect(old).await.is_err());

    let daemon = env.start().await;
    let (text, after) = scrape(&daemon).await;
    promtool_accepts(&text);
    assert_samples(&after, &expected);
    assert!(
        !after
            .keys()
            .any(|sample| sample.starts_with("elevate_requests_total")),
        "counters start from zero at each start"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn only_get_metrics_is_served() {
    let env = Env::new();
    let daemon = env.start().await;
    let (status, _, body) = http(daemon.metrics, "GET", "/").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(http(daemon.metrics, "GET", "/metrics/x").await.0, 404);
    let (status, headers, _) = http(daemon.metrics, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET");
    assert_eq!(http(daemon.metrics, "GET", "/metrics").await.0, 200);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_binary_announces_its_metrics_address_and_serves_it() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_elevated"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let address: SocketAddr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("metrics on http://") {
                return url.strip_suffix("/metrics").unwrap().parse().unwrap();
            }
        }
        panic!("elevated exited without announcing its metrics address");
    })
    .await
    .unwrap();
    let (status, _, body) = http(address, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.lines().any(|line| line == "elevate_leases_active 0"),
        "{body}"
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_succeeds_while_connections_pipeline_and_never_read() {
    let env = Env::new();
    let daemon = env.start().await;
    // 64 connections, more than the listener serves at once, each pipelining 500 scrapes and
    // never reading an answer.
    let pipelined =
        format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", daemon.metrics).repeat(500);
    let mut hostages = Vec::new();
    for _ in 0..64 {
        let mut stream = tokio::net::TcpStream::connect(daemon.metrics)
            .await
            .unwrap();
        stream.write_all(pipelined.as_bytes()).await.unwrap();
        hostages.push(stream);
    }
    // A fresh scraper is served meanwhile, promptly.
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(10),
        http(daemon.metrics, "GET", "/metrics"),
    )
    .await
    .expect("a scrape during the attack");
    assert_eq!(status, 200);
    assert!(body.contains("elevate_requests_open"), "{body}");
    // Each connection got one answer at most, then was closed: none is held.
    let mut last = hostages.pop().unwrap();
    let mut answers = String::new();
    tokio::time::timeout(Duration::from_secs(15), last.read_to_string(&mut answers))
        .await
        .expect("the connection is closed")
        .unwrap();
    assert_eq!(
        answers.matches("HTTP/1.1 ").count(),
        1,
        "one request per connection"
    );
    daemon.stop().await;
}
