//! What is checked outside a write transaction is checked again inside it, and what a failed
//! commit would have changed stays unchanged in memory too: a reviewer, holder or approver who
//! left between being authenticated and the commit changes nothing, and a reinstatement or
//! offboarding whose commit fails is not in force.

use std::future::Future;

use elevate::proto::v1 as pb;
use elevate::store::{Changes, StoreError};
use tonic::Code;

use super::harness::*;

/// Runs `call` while the store's writer is held, so that its commit waits in the queue; once
/// it waits there, `change` is made (as a concurrent offboarding or reload would), and the
/// writer let go. Returns what `call` answered.
async fn racing<T: Send + 'static>(
    daemon: &Daemon,
    call: impl Future<Output = T> + Send + 'static,
    change: impl FnOnce(),
) -> T {
    racing_jobs(daemon, call, 1, change).await
}

/// [`racing`], once `jobs` commits wait in the queue.
async fn racing_jobs<T: Send + 'static>(
    daemon: &Daemon,
    call: impl Future<Output = T> + Send + 'static,
    jobs: usize,
    change: impl FnOnce(),
) -> T {
    let store = daemon.store.clone();
    let (holding, held) = tokio::sync::oneshot::channel::<()>();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let blocker = tokio::spawn(async move {
        store
            .write(move |_| {
                let _ = holding.send(());
                let _ = released.recv();
                Ok::<_, StoreError>((Changes::default(), ()))
            })
            .await
    });
    held.await.unwrap();
    let call = tokio::spawn(call);
    let store = daemon.store.clone();
    until("the call's commit to wait for the writer", || {
        let queued = store.queued_jobs();
        async move { (queued >= jobs).then_some(()) }
    })
    .await;
    change();
    release.send(()).unwrap();
    blocker.await.unwrap().unwrap();
    call.await.unwrap()
}

/// Puts `directory` in force at once, as a reload does (without its sweep).
fn directory_in_force(env: &Env, daemon: &Daemon, directory: &str) {
    std::fs::write(&env.layout.directory, directory).unwrap();
    let snapshot =
        elevate::policy::Snapshot::load(&env.layout.policy, &env.layout.directory).unwrap();
    daemon.broker.rules().replace(snapshot);
}

fn suspended(who: &str) -> String {
    elevate::dev::DIRECTORY.replace(
        &format!("[principals.{who}]\n"),
        &format!("[principals.{who}]\nstatus = \"suspended\"\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_who_leaves_before_the_commit_closes_nothing() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    let glass = break_glass(&mut oncall, "prod-db-admin", "30m", "primary down", "INC-7")
        .await
        .unwrap();
    let id = glass.id.clone();
    let answer = racing(
        &daemon,
        async move { review(&mut security, &id, "justified", "").await },
        || {
            // Another stays in the review group, so the directory is valid without them.
            let directory = format!(
                "{}\n[principals.security2]\ngroups = [\"security\"]\n",
                suspended("security")
            );
            directory_in_force(&env, &daemon, &directory);
        },
    )
    .await;
    let refused = answer.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("suspended"),
        "{}",
        refused.message()
    );
    let mut auditor = daemon.client("auditor").await;
    let review = status(&mut auditor, &glass.id).await.review.unwrap();
    assert_eq!(review.state, pb::ReviewState::Pending as i32, "{review:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_who_leaves_before_the_commit_extends_nothing() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let lease = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    let id = lease.id.clone();
    let answer = racing(
        &daemon,
        async move { extend(&mut engineer, &id, "10m", "more").await },
        || directory_in_force(&env, &daemon, &suspended("engineer")),
    )
    .await;
    let refused = answer.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let actions = daemon.actions(&lease.id).await;
    assert!(
        !actions.iter().any(|a| a.starts_with("lease.extension")),
        "{actions:?}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_who_leaves_before_the_commit_denies_no_extension() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut manager = daemon.client("manager").await;
    let lease = request(&mut engineer, "prod-db-read", "1h", "read", "")
        .await
        .unwrap();
    approve(&mut manager, &lease.id).await.unwrap();
    // prod-db-read's extensions wait for the manager.
    let asked = extend(&mut engineer, &lease.id, "30m", "longer")
        .await
        .unwrap();
    assert!(
        asked
            .extensions
            .last()
            .is_some_and(|e| e.state == "pending"),
        "{asked:?}"
    );
    let id = lease.id.clone();
    let answer = racing(
        &daemon,
        async move { deny(&mut manager, &id, "no").await },
        || directory_in_force(&env, &daemon, &suspended("manager")),
    )
    .await;
    let refused = answer.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let actions = daemon.actions(&lease.id).await;
    assert!(
        !actions.iter().any(|a| a == "lease.extension_denied"),
        "{actions:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_reinstatement_or_offboarding_whose_commit_fails_is_not_in_force() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut admin = daemon.client("admin").await;
    let mut oncall = daemon.client("oncall").await;

    // An offboarding that is not stored does not lock anybody out.
    daemon.store.refuse_commits(true);
    assert!(
        offboard(&mut admin, "oncall", "left the company")
            .await
            .is_err()
    );
    daemon.store.refuse_commits(false);
    assert_eq!(who_am_i(&mut oncall).await.unwrap(), "oncall");

    offboard(&mut admin, "oncall", "left the company")
        .await
        .unwrap();
    assert_eq!(
        who_am_i(&mut oncall).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // A reinstatement that is not stored lets nobody back in.
    daemon.store.refuse_commits(true);
    assert!(reinstate(&mut admin, "oncall").await.is_err());
    daemon.store.refuse_commits(false);
    let refused = who_am_i(&mut oncall).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("offboarded"),
        "{}",
        refused.message()
    );
    // Once stored, it is in force.
    reinstate(&mut admin, "oncall").await.unwrap();
    assert_eq!(who_am_i(&mut oncall).await.unwrap(), "oncall");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_sent_twice_at_once_makes_one_request() {
    let env = Env::new();
    let daemon = env.start().await;
    let engineer = daemon.client("engineer").await;
    // Both pass the lookup before the writer runs: the key is claimed by neither yet.
    let submits: Vec<_> = (0..2)
        .map(|_| {
            let mut engineer = engineer.clone();
            async move {
                let submit = pb::SubmitRequestRequest {
                    ssh_key: String::new(),
                    resource: "prod-db-read".into(),
                    duration: "1h".into(),
                    reason: "twice at once".into(),
                    ticket: String::new(),
                };
                engineer.access.submit_request(keyed(submit, "both")).await
            }
        })
        .collect();
    let both = async move {
        let handles: Vec<_> = submits.into_iter().map(tokio::spawn).collect();
        let mut answers = Vec::new();
        for handle in handles {
            answers.push(handle.await.unwrap());
        }
        answers
    };
    let calls = racing_jobs(&daemon, both, 2, || {}).await;
    let ids: Vec<String> = calls
        .into_iter()
        .map(|answer| answer.unwrap().into_inner().request.unwrap().id)
        .collect();
    assert_eq!(ids[0], ids[1], "{ids:?}");
    let mut engineer = engineer;
    let listed = listed(&mut engineer).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    daemon.stop().await;
}
