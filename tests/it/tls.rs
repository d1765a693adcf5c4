//! Mutual TLS is mandatory and identity comes only from the verified certificate.

use elevate::proto::v1 as pb;
use elevate::proto::v1::access_service_client::AccessServiceClient;
use elevate::tls::issue::{self, DEFAULT_TRUST_DOMAIN};
use tonic::Code;
use tonic::transport::Channel;

use super::harness::*;

/// Whether an RPC over `channel` gets through (a channel that failed to connect counts as no).
async fn who_am_i(channel: Result<Channel, String>) -> Result<pb::WhoAmIResponse, String> {
    let channel = channel?;
    AccessServiceClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

#[tokio::test]
async fn a_connection_without_a_client_certificate_gets_no_rpc_through() {
    let env = Env::new();
    let daemon = env.start().await;
    let result =
        who_am_i(channel(&daemon.endpoint(), &env.layout.certs.ca_cert(), None).await).await;
    assert!(result.is_err(), "{result:?}");
    let mut engineer = daemon.client("engineer").await;
    let listed = engineer
        .access
        .list_requests(pb::ListRequestsRequest {
            all: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.into_inner().requests.is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_rejected() {
    let env = Env::new();
    let daemon = env.start().await;
    let other = tempfile::tempdir().unwrap();
    issue::init(other.path(), &[], false).unwrap();
    issue::issue(other.path(), "engineer", DEFAULT_TRUST_DOMAIN, 1, false).unwrap();
    let result = who_am_i(
        channel(
            &daemon.endpoint(),
            &env.layout.certs.ca_cert(),
            Some((
                &other.path().join("engineer.crt"),
                &other.path().join("engineer.key"),
            )),
        )
        .await,
    )
    .await;
    assert!(result.is_err(), "{result:?}");
    // Refused, not crashed: a proper client still gets through.
    let mut engineer = daemon.client("engineer").await;
    let me = engineer
        .access
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap();
    assert_eq!(me.into_inner().principal, "engineer");
    daemon.stop().await;
}

#[tokio::test]
async fn a_valid_certificate_grants_no_role_without_the_directory() {
    let env = Env::new();
    issue::issue(
        &env.layout.certs.0,
        "stranger",
        DEFAULT_TRUST_DOMAIN,
        1,
        false,
    )
    .unwrap();
    issue::issue(&env.layout.certs.0, "outsider", "other.domain", 1, false).unwrap();
    let daemon = env.start().await;
    let mut stranger = daemon.client("stranger").await;
    let error = request(&mut stranger, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("not in the directory"),
        "{}",
        error.message()
    );

    let mut outsider = daemon.client("outsider").await;
    let error = outsider
        .access
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
    assert!(
        error.message().contains("trust domain"),
        "{}",
        error.message()
    );

    let me = who_am_i(
        channel(
            &daemon.endpoint(),
            &env.layout.certs.ca_cert(),
            Some((
                &env.layout.certs.client_cert("oncall"),
                &env.layout.certs.client_key("oncall"),
            )),
        )
        .await,
    )
    .await
    .unwrap();
    assert_eq!(me.principal, "oncall");
    assert_eq!(me.groups, ["sre"]);

    // The refused stranger is in the audit trail once, however often they retry.
    for _ in 0..3 {
        let _ = request(&mut stranger, "staging-db", "1h", "", "").await;
    }
    let refused = until("the refusal to be audited", || async {
        let events = daemon.all_events().await;
        let refused: Vec<_> = events
            .into_iter()
            .filter(|e| e.action == "auth.refused")
            .collect();
        (!refused.is_empty()).then_some(refused)
    })
    .await;
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].principal.as_ref().unwrap().as_str(), "stranger");
    assert_eq!(refused[0].details["reason"], "not in the directory");
    daemon.stop().await;
}

#[tokio::test]
async fn suspended_principals_can_do_nothing() {
    let env = Env::new().directory(&elevate::dev::DIRECTORY.replace(
        "[principals.engineer]\ngroups = [\"engineering\"]",
        "[principals.engineer]\nstatus = \"suspended\"\ngroups = [\"engineering\"]",
    ));
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let error = request(&mut engineer, "staging-db", "1h", "", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(error.message().contains("suspended"), "{}", error.message());
    daemon.stop().await;
}

#[tokio::test]
async fn the_standard_health_service_answers_over_mtls() {
    let env = Env::new();
    let daemon = env.start().await;
    let files = daemon.files("engineer");
    let channel = channel(
        &daemon.endpoint(),
        &files.ca,
        Some((&files.cert, &files.key)),
    )
    .await
    .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "elevate.v1.AccessService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    daemon.stop().await;
}
