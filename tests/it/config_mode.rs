//! Config mode as an operator runs it: the shipped example configuration, policy and directory,
//! certificates from `elevated certs`, and the example `exec` hook granting for real.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use elevate::cli::client::{self, ClientFiles};
use elevate::clock::ManualClock;
use elevate::config::Config;
use elevate::server::{Options, Server};
use tonic::Code;

use super::harness::*;

fn elevated(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_elevated"))
        .args(args)
        .output()
        .unwrap()
}

pub fn copy_examples(to: &Path) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::create_dir_all(to.join("hooks")).unwrap();
    for file in [
        "elevated.toml",
        "policy.toml",
        "directory.toml",
        "hooks/holders.sh",
    ] {
        std::fs::copy(examples.join(file), to.join(file)).unwrap();
    }
    let config = std::fs::read_to_string(to.join("elevated.toml"))
        .unwrap()
        .replace("listen = \"127.0.0.1:7443\"", "listen = \"127.0.0.1:0\"");
    std::fs::write(to.join("elevated.toml"), config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_examples_run_with_the_exec_hook() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_examples(root);
    let certs = root.join("certs");
    let certs_arg = certs.to_str().unwrap();
    let made = elevated(&["certs", "init", "--dir", certs_arg]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for name in ["olga", "pat", "priya", "lee"] {
        let made = elevated(&["certs", "issue", "--dir", certs_arg, "--name", name]);
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    std::fs::create_dir_all(root.join("state")).unwrap();
    let config_file = root.join("elevated.toml");
    let checked = elevated(&["check-config", "--config", config_file.to_str().unwrap()]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(String::from_utf8_lossy(&checked.stdout).contains("4 resources"));

    let config = Config::load(&config_file).unwrap();
    let clock = ManualClock::starting_now();
    let server = Server::build(Options::from_config(&config, Arc::new(clock.clone())).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    let connect = |name: &str| {
        let files = ClientFiles {
            ca: certs.join("ca.crt"),
            cert: certs.join(format!("{name}.crt")),
            key: certs.join(format!("{name}.key")),
        };
        let endpoint = endpoint.clone();
        async move { client::connect(&endpoint, &files).await.unwrap() }
    };

    let mut olga = connect("olga").await;
    let pending = request(&mut olga, "ops-shell", "2h", "rotate keys", "")
        .await
        .unwrap();
    assert_eq!(pending.route[0].approvers, ["pat", "priya"]);
    let mut pat = connect("pat").await;
    let mut priya = connect("priya").await;
    assert_eq!(
        state(&approve(&mut pat, &pending.id).await.unwrap()),
        "pending"
    );
    assert_eq!(
        state(&approve(&mut priya, &pending.id).await.unwrap()),
        "active"
    );
    let allow = root.join("state/hook-targets/ops-shell.allow");
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), "olga\n");

    clock.advance(Duration::from_secs(2 * 3600));
    until_state(&olga, &pending.id, "expired").await;
    assert_eq!(std::fs::read_to_string(&allow).unwrap(), "");

    // The suspended leaver can do nothing, even with a valid certificate.
    let mut lee = connect("lee").await;
    let error = request(&mut lee, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[test]
fn a_broken_policy_stops_the_daemon_before_it_serves_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    copy_examples(dir.path());
    let certs = dir.path().join("certs");
    assert!(
        elevated(&["certs", "init", "--dir", certs.to_str().unwrap()])
            .status
            .success()
    );
    let policy = dir.path().join("policy.toml");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("quorum = 2", "quorum = 0");
    std::fs::write(&policy, text).unwrap();
    let config = dir.path().join("elevated.toml");
    for args in [
        vec!["check-config", "--config", config.to_str().unwrap()],
        vec![
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--allow-root",
        ],
    ] {
        let output = elevated(&args);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(
                "policy.toml: resources.ops-shell.stages[0].quorum: must be between 1 and 32"
            ),
            "{stderr}"
        );
    }
}
