//! Nobody learns about requests they may not see: every call about one request answers a
//! stranger exactly as it answers an id that does not exist — same code, same message — so that
//! no state, stage, approver or break-glass nature leaks.

use elevate::proto::v1 as pb;
use elevate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};
use tonic::Code;

use super::harness::*;

/// Every call that names one request, made by `clients` on `id`: the status each answered.
async fn every_call(
    clients: &mut elevate::cli::client::Clients,
    id: &str,
) -> Vec<(&'static str, tonic::Status)> {
    let mut answers = Vec::new();
    let mut push = |name, result: Result<(), tonic::Status>| {
        answers.push((name, result.expect_err(name)));
    };
    push("approve", approve(clients, id).await.map(drop));
    push("deny", deny(clients, id, "no").await.map(drop));
    push(
        "cancel",
        clients
            .access
            .cancel_request(pb::CancelRequestRequest { id: id.into() })
            .await
            .map(drop),
    );
    push(
        "review",
        review(clients, id, "justified", "").await.map(drop),
    );
    push("extend", extend(clients, id, "10m", "more").await.map(drop));
    push("release", release(clients, id).await.map(drop));
    push(
        "credentials",
        clients
            .access
            .get_credentials(pb::GetCredentialsRequest { id: id.into() })
            .await
            .map(drop),
    );
    push(
        "status",
        clients
            .access
            .get_request(pb::GetRequestRequest { id: id.into() })
            .await
            .map(drop),
    );
    push(
        "history",
        clients
            .audit
            .get_history(pb::GetHistoryRequest {
                request_id: id.into(),
            })
            .await
            .map(drop),
    );
    push(
        "watch",
        clients
            .access
            .watch_request(pb::WatchRequestRequest { id: id.into() })
            .await
            .map(drop),
    );
    answers
}

#[tokio::test]
async fn a_hidden_request_answers_exactly_like_a_missing_one() {
    let directory = format!(
        "{}\n[principals.stranger]\ngroups = [\"engineering\"]\n",
        elevate::dev::DIRECTORY
    );
    let env = Env::new().directory(&directory);
    issue::issue(
        &env.layout.certs.0,
        "stranger",
        DEFAULT_TRUST_DOMAIN,
        1,
        false,
    )
    .unwrap();
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut oncall = daemon.client("oncall").await;
    let mut stranger = daemon.client("stranger").await;

    let pending = request(&mut engineer, "prod-db-admin", "30m", "fix", "INC-1")
        .await
        .unwrap();
    let active = request(&mut engineer, "staging-db", "30m", "", "")
        .await
        .unwrap();
    let glass = break_glass(&mut oncall, "prod-db-admin", "30m", "primary down", "INC-7")
        .await
        .unwrap();
    let before = daemon.all_events().await.len();

    let missing = "req-999999";
    let expected = every_call(&mut stranger, missing).await;
    for (call, status) in &expected {
        assert_eq!(status.code(), Code::NotFound, "{call}: {status:?}");
        assert_eq!(status.message(), format!("no request {missing}"), "{call}");
    }
    for hidden in [&pending.id, &active.id, &glass.id] {
        let answers = every_call(&mut stranger, hidden).await;
        for ((call, got), (_, wanted)) in answers.iter().zip(&expected) {
            assert_eq!(got.code(), wanted.code(), "{call} on {hidden}: {got:?}");
            assert_eq!(
                got.message().replace(hidden.as_str(), "ID"),
                wanted.message().replace(missing, "ID"),
                "{call} on {hidden}"
            );
        }
    }
    // Nothing changed, nothing was granted or revoked.
    let after = daemon.all_events().await.len();
    assert_eq!(after, before);
    assert_eq!(state(&status(&mut engineer, &active.id).await), "active");
    assert_eq!(state(&status(&mut engineer, &pending.id).await), "pending");

    // Those with a part in a request still get the specific answer.
    let mut manager = daemon.client("manager").await;
    let error = release(&mut manager, &pending.id).await.unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    let mut security = daemon.client("security").await;
    let error = review(&mut security, &glass.id, "unjustified", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    daemon.stop().await;
}
