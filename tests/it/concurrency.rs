//! Concurrent calls are linearized: one quorum, one grant, one timer, one open request.

use std::fmt::Write;
use std::time::Duration;

use elevate::model::RequestId;
use elevate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};
use tonic::Code;

use super::harness::*;

const APPROVERS: usize = 50;

fn policy() -> String {
    format!(
        "{}\n{}",
        elevate::dev::POLICY,
        r#"
[resources.shared-db]
description = "Approved by any one DBA"
provisioner = "files"
eligible_groups = ["engineering"]
default_duration = "1h"
max_duration = "2h"
[[resources.shared-db.stages]]
name = "dba"
approvers = ["group:dba"]
"#
    )
}

fn directory() -> String {
    let mut text = elevate::dev::DIRECTORY.to_owned();
    for n in 0..APPROVERS {
        writeln!(text, "[principals.dba{n}]\ngroups = [\"dba\"]").unwrap();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_approvals_give_exactly_one_grant() {
    let env = Env::new().policy(&policy()).directory(&directory());
    for n in 0..APPROVERS {
        issue::issue(
            &env.layout.certs.0,
            &format!("dba{n}"),
            DEFAULT_TRUST_DOMAIN,
            1,
            false,
        )
        .unwrap();
    }
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let pending = request(&mut engineer, "shared-db", "1h", "", "")
        .await
        .unwrap();

    let mut clients = Vec::new();
    for n in 0..APPROVERS {
        clients.push(daemon.client(&format!("dba{n}")).await);
    }
    let calls = clients.into_iter().map(|mut client| {
        let id = pending.id.clone();
        tokio::spawn(async move { approve(&mut client, &id).await })
    });
    let mut approved = 0;
    let mut refused = 0;
    for call in calls.collect::<Vec<_>>() {
        match call.await.unwrap() {
            Ok(_) => approved += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(approved + refused, APPROVERS);
    assert_eq!(
        approved, 1,
        "only the approval that met the quorum succeeds"
    );

    let active = until_state(&engineer, &pending.id, "active").await;
    assert_eq!(
        active.decisions.len(),
        1,
        "the quorum of one was reached exactly once"
    );
    assert_eq!(env.grants(), 1, "exactly one grant on the target");
    assert_eq!(env.holders("shared-db"), ["engineer"]);
    let actions = daemon.actions(&pending.id).await;
    assert_eq!(actions.iter().filter(|a| *a == "lease.granted").count(), 1);
    assert_eq!(
        actions.iter().filter(|a| *a == "request.approved").count(),
        1
    );
    let id: RequestId = pending.id.parse().unwrap();
    assert_eq!(daemon.expiry.inspect(id).await.0, 1, "one timer");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_repeats_of_one_approval_count_once() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let manager = daemon.client("manager").await;
    let pending = request(&mut engineer, "prod-db-read", "1h", "debug", "")
        .await
        .unwrap();
    let calls: Vec<_> = (0..APPROVERS)
        .map(|_| {
            let mut client = manager.clone();
            let id = pending.id.clone();
            tokio::spawn(async move { approve(&mut client, &id).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let active = until_state(&engineer, &pending.id, "active").await;
    assert_eq!(active.decisions.len(), 1);
    assert_eq!(env.grants(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_resource_open_one_lease() {
    let env = Env::new();
    let daemon = env.start().await;
    let engineer = daemon.client("engineer").await;
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let mut client = engineer.clone();
            tokio::spawn(async move { request(&mut client, "staging-db", "1h", "", "").await })
        })
        .collect();
    let mut granted = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(request) => {
                assert_eq!(state(&request), "active");
                granted += 1;
            }
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists),
        }
    }
    assert_eq!(granted, 1);
    assert_eq!(env.grants(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    daemon.stop().await;
}
