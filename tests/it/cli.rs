//! The `elevate` binary as users and scripts run it: JSON fields, exit status, one-line errors.

use std::process::Output;

use serde_json::Value;

use super::harness::*;

/// `elevate ARGS` against `daemon`, with the demo certificates and nothing else from the
/// environment.
pub fn elevate_command(daemon: &Daemon, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_elevate"));
    command
        .args(args)
        .env("ELEVATE_ENDPOINT", daemon.endpoint())
        .env("ELEVATE_CERT_DIR", &daemon.certs)
        .env_remove("ELEVATE_CA")
        .env_remove("ELEVATE_CERT")
        .env_remove("ELEVATE_KEY")
        .env_remove("ELEVATE_AS")
        .kill_on_drop(true);
    command
}

pub async fn elevate(daemon: &Daemon, args: &[&str]) -> Output {
    elevate_command(daemon, args).output().await.unwrap()
}

pub fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_and_inspect_through_the_cli() {
    let env = Env::new();
    let daemon = env.start().await;

    let submitted = json(
        &elevate(
            &daemon,
            &[
                "--as",
                "engineer",
                "-o",
                "json",
                "request",
                "prod-db-read",
                "--for",
                "45m",
                "--reason",
                "INC-4411 slow queries",
            ],
        )
        .await,
    );
    for field in [
        "id",
        "state",
        "requester",
        "resource",
        "reason",
        "created_at",
        "expires_at",
        "approvals",
    ] {
        assert!(
            submitted.get(field).is_some(),
            "missing {field}: {submitted}"
        );
    }
    assert_eq!(submitted["state"], "pending");
    assert_eq!(submitted["expires_at"], Value::Null);
    let id = submitted["id"].as_str().unwrap().to_owned();

    let pending = json(&elevate(&daemon, &["--as", "manager", "-o", "json", "pending"]).await);
    assert_eq!(pending.as_array().unwrap().len(), 1);

    let approved = json(
        &elevate(
            &daemon,
            &[
                "--as",
                "manager",
                "-o",
                "json",
                "approve",
                &id,
                "--comment",
                "ok",
            ],
        )
        .await,
    );
    assert_eq!(approved["state"], "active");
    assert_eq!(approved["approvals"][0]["approver"], "manager");
    assert_eq!(approved["approvals"][0]["decision"], "approve");
    assert!(
        approved["approvals"][0]["at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let expires = approved["expires_at"].as_str().unwrap();
    assert!(
        elevate::model::Timestamp::parse_rfc3339(expires).is_ok(),
        "{expires}"
    );

    let listed = json(
        &elevate(
            &daemon,
            &[
                "--as", "engineer", "-o", "json", "list", "--state", "active",
            ],
        )
        .await,
    );
    assert_eq!(listed[0]["id"], id.as_str());

    let table = elevate(&daemon, &["--as", "engineer", "status", &id]).await;
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("state      active"), "{text}");
    assert!(text.contains("granted until"), "{text}");

    let released =
        json(&elevate(&daemon, &["--as", "engineer", "-o", "json", "release", &id]).await);
    assert_eq!(released["state"], "released");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_and_exit_non_zero() {
    let env = Env::new();
    let daemon = env.start().await;
    let output = elevate(
        &daemon,
        &["--as", "engineer", "request", "staging-db", "--for", "9h"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("duration 9h exceeds the maximum of 8h for staging-db"),
        "{stderr}"
    );

    let output = elevate(&daemon, &["--as", "engineer", "status", "banana"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid request id 'banana'"));

    let output = elevate(&daemon, &["list"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no client certificate"));

    let output = elevate(&daemon, &["--as", "engineer", "list", "--state", "happy"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown state 'happy'"));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_the_request_until_it_is_decided() {
    let env = Env::new();
    let daemon = env.start().await;
    let waiting = {
        let endpoint = daemon.endpoint();
        let certs = daemon.certs.clone();
        tokio::spawn(async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_elevate"))
                .args([
                    "--as",
                    "oncall",
                    "-o",
                    "json",
                    "request",
                    "prod-db-read",
                    "--reason",
                    "check",
                    "--wait",
                ])
                .env("ELEVATE_ENDPOINT", endpoint)
                .env("ELEVATE_CERT_DIR", certs)
                .output()
                .await
                .unwrap()
        })
    };
    let mut manager = daemon.client("manager").await;
    let id = until("the request to arrive", || {
        let mut manager = manager.clone();
        async move {
            let pending = manager
                .approval
                .list_pending(elevate::proto::v1::ListPendingRequest {})
                .await
                .unwrap()
                .into_inner()
                .requests;
            pending.first().map(|r| r.id.clone())
        }
    })
    .await;
    deny(&mut manager, &id, "not now").await.unwrap();
    let output = waiting.await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(3),
        "denied ends the wait with status 3"
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("pending: waiting for stage 'manager'"),
        "{stderr}"
    );
    assert!(stderr.contains("denied by manager: not now"), "{stderr}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed["state"], "denied");
    daemon.stop().await;
}

#[test]
fn completions_are_printed_without_a_daemon_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _elevate"),
        ("zsh", "#compdef elevate"),
        ("fish", "complete -c elevate"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_elevate"))
            .args(["completions", shell])
            .env("ELEVATE_ENDPOINT", "https://127.0.0.1:1")
            .env_remove("ELEVATE_CERT_DIR")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("break-glass") && script.contains("request"),
            "{shell}"
        );
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a usage error");
}
