//! Signed checkpoints leave the host: every one also goes to a witness notifier, and a store or
//! an export that was cut back, or rewritten with the audit key at hand, verifies on its own but
//! not against what the witness kept.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use elevate::notify::FileNotifier;

use super::audit::{elevated, export, pubkey, stderr, stdout};
use super::harness::*;

/// Every checkpoint of `env`'s daemons also goes to the file notifier `witness` writing `file`.
fn witnessed_by(env: &Env, file: PathBuf) {
    env.tweak(move |options| {
        options
            .notifiers
            .insert("witness", Arc::new(FileNotifier::new(file.clone())));
        options.audit.witness = Some("witness".to_owned());
    });
}

/// The highest entry a checkpoint in the witness file covers.
fn witnessed(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["kind"] == "audit.checkpoint")
        .filter_map(|event| event["checkpoint"]["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Some work, then waits until the witness holds the store's latest checkpoint.
async fn work_and_witness(env: &Env, daemon: &Daemon, witness: &Path, rounds: usize) -> u64 {
    let mut engineer = daemon.client("engineer").await;
    for round in 0..rounds {
        let lease = request(
            &mut engineer,
            "staging-db",
            "30m",
            &format!("round {round}"),
            "",
        )
        .await
        .unwrap();
        release(&mut engineer, &lease.id).await.unwrap();
    }
    let latest = daemon
        .store
        .read(|r| r.latest_checkpoint())
        .await
        .unwrap()
        .expect("checkpoints were signed")
        .seq;
    until("the witness to hold the latest checkpoint", || async {
        (witnessed(witness) >= latest).then_some(())
    })
    .await;
    let _ = env;
    latest
}

async fn verify_db(db: &Path, witness: Option<&Path>) -> Output {
    let mut args = vec!["audit", "verify", "--db", db.to_str().unwrap()];
    if let Some(witness) = witness {
        args.extend(["--witness", witness.to_str().unwrap()]);
    }
    elevated(&args).await
}

async fn verify_export(bytes: &[u8], key: &str, witness: &Path) -> Output {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(["audit", "verify", "--file", file.path().to_str().unwrap()])
        .args(["--pubkey", key, "--witness", witness.to_str().unwrap()])
        .env("ELEVATE_ENDPOINT", "https://127.0.0.1:1")
        .env_remove("ELEVATE_CERT_DIR")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_cut_back_or_rewritten_is_caught_by_its_witness() {
    let elsewhere = tempfile::tempdir().unwrap();
    let witness = elsewhere.path().join("witness.jsonl");
    let env = Env::new();
    witnessed_by(&env, witness.clone());
    // A day's work; the store as it was then is kept aside.
    let daemon = env.start().await;
    let key = pubkey(&env).await;
    let early = work_and_witness(&env, &daemon, &witness, 3).await;
    daemon.stop().await;
    let saved = elsewhere.path().join("saved.redb");
    std::fs::copy(&env.layout.store, &saved).unwrap();

    // More work, witnessed; the honest store and its export agree with the witness.
    let daemon = env.start().await;
    let late = work_and_witness(&env, &daemon, &witness, 4).await;
    assert!(late > early + 5, "{early} → {late}");
    let honest_export = export(&daemon, &["--format", "jsonl"]).await;
    daemon.stop().await;
    let honest = verify_db(&env.layout.store, Some(&witness)).await;
    assert!(honest.status.success(), "{}", stderr(&honest));
    assert!(
        stdout(&honest).contains("witnessed checkpoint(s) agree"),
        "{}",
        stdout(&honest)
    );
    let output = verify_export(&honest_export, &key, &witness).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("agree"), "{}", stdout(&output));

    // Attack 1: the store is cut back to the copy. Alone it verifies; its witness says no.
    let cut = elsewhere.path().join("cut.redb");
    std::fs::copy(&saved, &cut).unwrap();
    let alone = verify_db(&cut, None).await;
    assert!(alone.status.success(), "{}", stderr(&alone));
    let caught = verify_db(&cut, Some(&witness)).await;
    assert!(!caught.status.success());
    assert!(
        stderr(&caught).contains("behind its witness"),
        "{}",
        stderr(&caught)
    );

    // Attack 2: the tail is rewritten with the key at hand: the cut-back store is run on,
    // growing a different history past what the witness saw, signed with the same key.
    std::fs::copy(&saved, &env.layout.store).unwrap();
    let forger = tempfile::tempdir().unwrap();
    let forged_witness = forger.path().join("other.jsonl");
    env.tweak(move |options| {
        options.notifiers.insert(
            "witness",
            Arc::new(FileNotifier::new(forged_witness.clone())),
        );
    });
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    for round in 0..12 {
        let lease = request(
            &mut oncall,
            "staging-db",
            "1h",
            &format!("forged {round}"),
            "",
        )
        .await
        .unwrap();
        release(&mut oncall, &lease.id).await.unwrap();
    }
    let forged_export = export(&daemon, &["--format", "jsonl"]).await;
    daemon.stop().await;
    let alone = verify_db(&env.layout.store, None).await;
    assert!(alone.status.success(), "{}", stderr(&alone));
    let caught = verify_db(&env.layout.store, Some(&witness)).await;
    assert!(!caught.status.success());
    assert!(
        stderr(&caught).contains("disagrees with its witness at entry"),
        "{}",
        stderr(&caught)
    );
    // The same, for an export of the rewritten log.
    let output = verify_export(&forged_export, &key, &witness).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("disagrees with its witness at entry"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn a_witness_that_is_not_a_notifier_is_refused_at_load() {
    let env = Env::new();
    env.tweak(|options| options.audit.witness = Some("nowhere".to_owned()));
    let error = env.try_start().await.err().expect("refused").to_string();
    assert!(
        error.contains("audit.witness") && error.contains("nowhere"),
        "{error}"
    );
}
