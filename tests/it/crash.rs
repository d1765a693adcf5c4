//! The real `elevated` binary killed with SIGKILL: every acknowledged change survives and the
//! restarted daemon carries on.

use std::process::Stdio;
use std::time::Duration;

use elevate::cli::client::{self, ClientFiles, Clients};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::harness::*;

pub async fn spawn(state: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elevated"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(endpoint) = line.split("listening on ").nth(1) {
                return endpoint.trim().to_owned();
            }
        }
        panic!("elevated exited before listening");
    })
    .await
    .unwrap();
    // Keep reading what else it prints, as a supervisor would.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, endpoint)
}

pub async fn connect(endpoint: &str, state: &std::path::Path, name: &str) -> Clients {
    let certs = state.join("certs");
    client::connect(
        endpoint,
        &ClientFiles {
            ca: certs.join("ca.crt"),
            cert: certs.join(format!("{name}.crt")),
            key: certs.join(format!("{name}.key")),
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (mut child, endpoint) = spawn(&state).await;
    let mut engineer = connect(&endpoint, &state, "engineer").await;
    let mut manager = connect(&endpoint, &state, "manager").await;
    let granted = request(&mut engineer, "staging-db", "2h", "", "")
        .await
        .unwrap();
    let pending = request(&mut engineer, "prod-db-read", "1h", "debug", "")
        .await
        .unwrap();
    let routed = request(&mut engineer, "prod-db-admin", "30m", "fix", "INC-5")
        .await
        .unwrap();
    approve(&mut manager, &routed.id).await.unwrap();

    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let (mut child, endpoint) = spawn(&state).await;
    let mut engineer = connect(&endpoint, &state, "engineer").await;
    let after = status(&mut engineer, &granted.id).await;
    assert_eq!(state_word(&after), "active");
    assert_eq!(after.expires_at_ms, granted.expires_at_ms);
    assert_eq!(
        std::fs::read_to_string(state.join("targets/staging-db"))
            .unwrap()
            .trim(),
        "engineer"
    );
    assert_eq!(
        state_word(&status(&mut engineer, &pending.id).await),
        "pending"
    );
    let routed_after = status(&mut engineer, &routed.id).await;
    assert_eq!(state_word(&routed_after), "pending");
    assert_eq!(
        routed_after.current_stage, 1,
        "the manager's approval survived"
    );

    // The restarted daemon carries on where it stopped.
    let mut security = connect(&endpoint, &state, "security").await;
    assert_eq!(
        state_word(&approve(&mut security, &routed.id).await.unwrap()),
        "active"
    );
    let released = release(&mut engineer, &granted.id).await.unwrap();
    assert_eq!(state_word(&released), "released");
    assert_eq!(
        std::fs::read_to_string(state.join("targets/staging-db")).unwrap(),
        ""
    );
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

fn state_word(request: &elevate::proto::v1::AccessRequest) -> &'static str {
    state(request)
}
