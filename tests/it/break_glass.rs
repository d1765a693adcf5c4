//! Break-glass: access at once, a review nobody can skip, escalation, consequences, limits.

use std::time::Duration;

use elevate::model::RequestId;
use elevate::proto::v1 as pb;
use tonic::Code;

use super::harness::*;

async fn reviews(
    clients: &mut elevate::cli::client::Clients,
    overdue_only: bool,
) -> Vec<pb::Review> {
    clients
        .break_glass
        .list_reviews(pb::ListReviewsRequest {
            overdue_only,
            all: false,
        })
        .await
        .unwrap()
        .into_inner()
        .reviews
}

fn review_state(request: &pb::AccessRequest) -> &'static str {
    elevate::cli::output::review_state_word(request.review.as_ref().unwrap().state)
}

/// Waits until the review of `id` is overdue; returns the request.
async fn until_overdue(clients: &elevate::cli::client::Clients, id: &str) -> pb::AccessRequest {
    until("the review to become overdue", || {
        let mut clients = clients.clone();
        let id = id.to_owned();
        async move {
            let request = status(&mut clients, &id).await;
            (review_state(&request) == "overdue").then_some(request)
        }
    })
    .await
}

const DAY: Duration = Duration::from_secs(24 * 3600);
const REMIND: Duration = Duration::from_secs(4 * 3600);

#[tokio::test]
async fn break_glass_grants_at_once_and_opens_a_review() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;

    let granted = break_glass(&mut oncall, "prod-db-admin", "30m", "primary down", "INC-7")
        .await
        .unwrap();
    assert_eq!(state(&granted), "active");
    assert!(granted.break_glass);
    assert_eq!(granted.incident, "INC-7");
    assert_eq!(env.holders("prod-db-admin"), ["oncall"]);
    let opened = granted.review.as_ref().unwrap();
    assert_eq!(review_state(&granted), "pending");
    assert_eq!(opened.reviewing_group, "security");
    assert_eq!(opened.escalate_to, ["admin", "manager"]);
    assert_eq!(
        at(opened.due_at_ms).saturating_duration_since(at(granted.granted_at_ms.unwrap())),
        DAY
    );
    // Reviewers hear about it at once, as a high-priority event.
    let told = env.delivered("break_glass.granted", &granted.id).await;
    assert_eq!(told["priority"], "high");
    assert_eq!(told["recipients"], serde_json::json!(["security"]));
    assert_eq!(told["request"]["incident"], "INC-7");
    let actions = daemon.actions(&granted.id).await;
    assert_eq!(
        actions,
        ["request.submitted", "request.approved", "lease.granted"]
    );
    let submitted = &daemon.events(&granted.id).await[0];
    assert_eq!(submitted.details["break_glass"], "true");
    assert_eq!(submitted.details["incident"], "INC-7");

    // Everyone else, and every bad input, is refused.
    let cases = [
        (
            "engineer",
            "prod-db-admin",
            Code::PermissionDenied,
            "only members of sre",
        ),
        (
            "oncall",
            "staging-db",
            Code::PermissionDenied,
            "not allowed on staging-db",
        ),
        ("oncall", "no-such-db", Code::NotFound, "unknown resource"),
    ];
    for (who, resource, code, message) in cases {
        let mut client = daemon.client(who).await;
        let error = break_glass(&mut client, resource, "30m", "x", "INC-1")
            .await
            .unwrap_err();
        assert_eq!(error.code(), code, "{}", error.message());
        assert!(error.message().contains(message), "{}", error.message());
    }
    let mut oncall2 = daemon.client("oncall").await;
    for (duration, reason, incident, message) in [
        ("2h", "x", "INC-1", "exceeds the break-glass maximum of 1h"),
        ("30m", "", "INC-1", "a reason is required"),
        ("30m", "x", "", "an incident reference is required"),
        ("30m", "x", "inc 1", "must not contain whitespace"),
        ("30m", "x", "inc1", "does not match ^[A-Z]+-[0-9]+$"),
    ] {
        let error = break_glass(&mut oncall2, "prod-db-admin", duration, reason, incident)
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{}", error.message());
        assert!(error.message().contains(message), "{}", error.message());
    }
    assert_eq!(env.grants(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn only_a_reviewer_other_than_the_holder_closes_a_review_and_it_stays_closed() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut engineer = daemon.client("engineer").await;
    let mut security = daemon.client("security").await;
    let granted = break_glass(&mut oncall, "prod-db-admin", "30m", "primary down", "INC-7")
        .await
        .unwrap();
    assert_eq!(reviews(&mut security, false).await.len(), 1);
    assert!(
        reviews(&mut oncall, false).await.is_empty(),
        "nobody reviews their own"
    );

    let error = review(&mut oncall, &granted.id, "justified", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("your own break-glass"),
        "{}",
        error.message()
    );
    // Somebody with no part in it: the break-glass does not exist for them.
    let error = review(&mut engineer, &granted.id, "justified", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.message(), format!("no request {}", granted.id));
    // An auditor sees it, but only its review group closes the review.
    let mut auditor = daemon.client("auditor").await;
    let error = review(&mut auditor, &granted.id, "justified", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("only members of security"),
        "{}",
        error.message()
    );
    let error = review(&mut security, &granted.id, "unjustified", "")
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Code::InvalidArgument,
        "notes are required for unjustified"
    );
    let error = review(&mut security, &granted.id, "maybe", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);

    let closed = review(
        &mut security,
        &granted.id,
        "justified",
        "failover was needed",
    )
    .await
    .unwrap();
    assert_eq!(review_state(&closed), "justified");
    assert_eq!(closed.review.as_ref().unwrap().reviewer, "security");
    assert_eq!(
        state(&closed),
        "active",
        "a justified verdict leaves the lease alone"
    );

    let error = review(&mut security, &granted.id, "unjustified", "changed my mind")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("cannot be changed"),
        "{}",
        error.message()
    );
    let again = review(
        &mut security,
        &granted.id,
        "justified",
        "failover was needed",
    )
    .await
    .unwrap();
    assert_eq!(
        review_state(&again),
        "justified",
        "repeating the verdict is idempotent"
    );
    assert!(reviews(&mut security, false).await.is_empty());

    let told = env.delivered("review.closed", &granted.id).await;
    assert!(
        told["recipients"]
            .as_array()
            .unwrap()
            .contains(&"oncall".into())
    );
    let closed_event = daemon.events(&granted.id).await.pop().unwrap();
    assert_eq!(closed_event.action, "review.closed");
    assert_eq!(closed_event.details["verdict"], "justified");
    assert_eq!(closed_event.details["notes"], "failover was needed");
    let error = review(&mut security, "req-999", "justified", "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    daemon.stop().await;
}

#[tokio::test]
async fn an_overdue_review_escalates_and_is_reminded_until_closed() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    let granted = break_glass(&mut oncall, "prod-db-admin", "30m", "primary down", "INC-7")
        .await
        .unwrap();
    let due = at(granted.review.as_ref().unwrap().due_at_ms);

    // Dev mode warns 2 hours before the deadline.
    env.advance(DAY - Duration::from_secs(2 * 3600));
    let warned = env.delivered("review.due", &granted.id).await;
    assert_eq!(
        warned["recipients"],
        serde_json::json!(["admin", "manager", "security"])
    );
    env.advance(Duration::from_secs(2 * 3600));
    let overdue = until_overdue(&oncall, &granted.id).await;
    assert_eq!(
        state(&overdue),
        "expired",
        "the lease itself ended long before"
    );
    assert_eq!(
        at(overdue.review.as_ref().unwrap().overdue_since_ms.unwrap()),
        due
    );
    let escalated = env.delivered("review.overdue", &granted.id).await;
    assert_eq!(escalated["priority"], "high");
    assert_eq!(
        escalated["recipients"],
        serde_json::json!(["admin", "manager", "security"])
    );
    assert_eq!(
        reviews(&mut security, true).await.len(),
        1,
        "listed with --overdue"
    );
    assert!(
        daemon
            .actions(&granted.id)
            .await
            .contains(&"review.overdue".to_owned())
    );

    for expected in 1..=2 {
        env.advance(REMIND);
        until("a reminder", || async {
            (env.count("review.reminder", &granted.id) == expected).then_some(())
        })
        .await;
    }
    review(&mut security, &granted.id, "justified", "late, but fine")
        .await
        .unwrap();
    let id: RequestId = granted.id.parse().unwrap();
    assert_eq!(daemon.expiry.inspect(id).await.1, None, "no timer left");
    env.advance(REMIND * 3);
    daemon.expiry.inspect(id).await;
    assert_eq!(
        env.count("review.reminder", &granted.id),
        2,
        "reminders stop with the verdict"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn with_an_overdue_review_the_next_break_glass_waits_for_one_approval() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    let first = break_glass(&mut oncall, "prod-db-admin", "30m", "primary down", "INC-7")
        .await
        .unwrap();
    env.advance(DAY);
    until_overdue(&oncall, &first.id).await;

    let waiting = break_glass(&mut oncall, "prod-db-admin", "30m", "again down", "INC-8")
        .await
        .unwrap();
    assert_eq!(state(&waiting), "pending");
    assert!(waiting.break_glass_needed_approval);
    assert_eq!(
        waiting.route.len(),
        1,
        "break-glass's short path, not the normal route"
    );
    assert_eq!(waiting.route[0].approvers, ["security"]);
    assert!(env.holders("prod-db-admin").is_empty());
    let told = env.delivered("request.waiting", &waiting.id).await;
    assert_eq!(told["priority"], "high");
    assert_eq!(told["recipients"], serde_json::json!(["security"]));

    let active = approve(&mut security, &waiting.id).await.unwrap();
    assert_eq!(state(&active), "active");
    assert_eq!(env.holders("prod-db-admin"), ["oncall"]);
    assert_eq!(
        review_state(&active),
        "pending",
        "its own review opened with the grant"
    );

    // An unjustified verdict keeps the consequence for a while; a justified one would lift it.
    release(&mut oncall, &active.id).await.unwrap();
    review(
        &mut security,
        &first.id,
        "unjustified",
        "no incident at that time",
    )
    .await
    .unwrap();
    let still = break_glass(&mut oncall, "prod-db-admin", "30m", "third", "INC-9")
        .await
        .unwrap();
    assert_eq!(state(&still), "pending");
    daemon.stop().await;
}

#[tokio::test]
async fn break_glass_is_rate_limited_per_principal() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    for n in 0..3 {
        let granted = break_glass(
            &mut oncall,
            "prod-db-admin",
            "30m",
            "flapping",
            &format!("INC-{n}"),
        )
        .await
        .unwrap();
        assert_eq!(state(&granted), "active");
        release(&mut oncall, &granted.id).await.unwrap();
    }
    let error = break_glass(&mut oncall, "prod-db-admin", "30m", "flapping", "INC-3")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted);
    assert!(
        error
            .message()
            .contains("broke glass 3 time(s) within 1day"),
        "{}",
        error.message()
    );
    assert_eq!(env.grants(), 3);
    daemon.stop().await;
}

#[tokio::test]
async fn an_unjustified_verdict_can_revoke_the_lease_at_once() {
    let policy = elevate::dev::POLICY.replace(
        "escalate_to = [\"manager\", \"group:admins\"]",
        "escalate_to = [\"manager\", \"group:admins\"]\nrevoke_on_unjustified = true",
    );
    let env = Env::new().policy(&policy);
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    let granted = break_glass(&mut oncall, "prod-db-admin", "1h", "curious", "INC-7")
        .await
        .unwrap();
    let revoked = review(&mut security, &granted.id, "unjustified", "no incident")
        .await
        .unwrap();
    assert_eq!(state(&revoked), "revoked");
    assert!(env.holders("prod-db-admin").is_empty());
    env.delivered("access.revoked", &granted.id).await;
    // The reviewer decided (in the verdict's transaction); the daemon carried it out.
    let story = daemon.events(&granted.id).await;
    let (closed, last) = (&story[story.len() - 2], &story[story.len() - 1]);
    assert_eq!(closed.action, "review.closed");
    assert_eq!(closed.actor.to_string(), "security");
    assert_eq!(closed.details["revoke"], "true");
    assert_eq!(last.action, "lease.revoked");
    assert_eq!(last.details["break_glass"], "true");
    assert_eq!(
        revoked.end_reason,
        "revoked: security found the break-glass unjustified"
    );
    assert_eq!(
        env.count("revoke.failing", &granted.id),
        0,
        "a decided revoke is not a failure"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn break_glass_supersedes_a_pending_request_for_the_same_resource() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let pending = request(&mut oncall, "prod-db-admin", "30m", "migration", "CHG-1")
        .await
        .unwrap();
    let granted = break_glass(&mut oncall, "prod-db-admin", "30m", "primary down", "INC-7")
        .await
        .unwrap();
    assert_eq!(state(&granted), "active");
    let cancelled = status(&mut oncall, &pending.id).await;
    assert_eq!(state(&cancelled), "cancelled");
    let last = daemon.events(&pending.id).await.pop().unwrap();
    assert_eq!(last.details["superseded_by"], granted.id);
    // An active lease is not superseded.
    let error = break_glass(&mut oncall, "prod-db-admin", "30m", "again", "INC-8")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::AlreadyExists);
    daemon.stop().await;
}

/// The demo directory with a second responder.
fn two_responders() -> String {
    format!(
        "{}\n[principals.oncall2]\ngroups = [\"sre\"]\nmanager = \"manager\"\n",
        elevate::dev::DIRECTORY
    )
}

#[tokio::test]
async fn the_rate_limit_is_per_principal_and_slides() {
    let env = Env::new().directory(&two_responders());
    elevate::tls::issue::issue(
        &env.layout.certs.0,
        "oncall2",
        elevate::tls::issue::DEFAULT_TRUST_DOMAIN,
        1,
        false,
    )
    .unwrap();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    for n in 0..3 {
        let granted = break_glass(
            &mut oncall,
            "prod-db-admin",
            "30m",
            "flapping",
            &format!("INC-{n}"),
        )
        .await
        .unwrap();
        release(&mut oncall, &granted.id).await.unwrap();
        // Reviewed in time, so no consequence interferes with the limit.
        review(&mut security, &granted.id, "justified", "")
            .await
            .unwrap();
        env.advance(Duration::from_secs(3600));
    }
    let error = break_glass(&mut oncall, "prod-db-admin", "30m", "again", "INC-3")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::ResourceExhausted);
    // Somebody else is not limited by oncall's use.
    let mut oncall2 = daemon.client("oncall2").await;
    let other = break_glass(&mut oncall2, "prod-db-admin", "30m", "helping", "INC-3")
        .await
        .unwrap();
    assert_eq!(state(&other), "active");
    // A day after the first, one slot is free again; the window slides.
    env.advance(DAY - Duration::from_secs(3 * 3600));
    let again = break_glass(&mut oncall, "prod-db-read", "30m", "again", "INC-4").await;
    assert_eq!(
        again.unwrap_err().code(),
        Code::PermissionDenied,
        "prod-db-read has no break-glass"
    );
    let again = break_glass(&mut oncall, "prod-db-admin", "30m", "again", "INC-4")
        .await
        .unwrap();
    assert_eq!(state(&again), "active");
    daemon.stop().await;
}

#[tokio::test]
async fn a_justified_verdict_lifts_the_consequence_and_the_consequence_can_be_turned_off() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let mut security = daemon.client("security").await;
    let first = break_glass(&mut oncall, "prod-db-admin", "30m", "down", "INC-7")
        .await
        .unwrap();
    env.advance(DAY);
    until_overdue(&oncall, &first.id).await;
    review(&mut security, &first.id, "justified", "late but fine")
        .await
        .unwrap();
    let next = break_glass(&mut oncall, "prod-db-admin", "30m", "down again", "INC-8")
        .await
        .unwrap();
    assert_eq!(state(&next), "active", "nothing unreviewed any more");
    daemon.stop().await;

    let policy = elevate::dev::POLICY.replace(
        "escalate_to = [\"manager\", \"group:admins\"]",
        "escalate_to = [\"manager\", \"group:admins\"]\napproval_when_unreviewed = false",
    );
    let env = Env::new().policy(&policy);
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let first = break_glass(&mut oncall, "prod-db-admin", "30m", "down", "INC-7")
        .await
        .unwrap();
    env.advance(DAY);
    until_overdue(&oncall, &first.id).await;
    let next = break_glass(&mut oncall, "prod-db-admin", "30m", "down again", "INC-8")
        .await
        .unwrap();
    assert_eq!(
        state(&next),
        "active",
        "the consequence is off for this resource"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_review_that_fell_due_while_the_daemon_was_down_is_overdue_at_startup() {
    let env = Env::new();
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let granted = break_glass(&mut oncall, "prod-db-admin", "30m", "down", "INC-7")
        .await
        .unwrap();
    daemon.stop().await;
    env.advance(DAY + Duration::from_secs(60));
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let recovered = status(&mut oncall, &granted.id).await;
    assert_eq!(state(&recovered), "expired");
    assert_eq!(
        review_state(&recovered),
        "overdue",
        "recovery escalated it before serving"
    );
    env.delivered("review.overdue", &granted.id).await;
    daemon.stop().await;
}

#[tokio::test]
async fn break_glass_needs_somebody_else_to_review_it() {
    // The only member of the review group is the responder: nobody could review it.
    let directory = elevate::dev::DIRECTORY
        .replace(
            "[principals.oncall]\ngroups = [\"sre\"]",
            "[principals.oncall]\ngroups = [\"sre\", \"security\"]",
        )
        .replace(
            "[principals.security]\ngroups = [\"security\"]",
            "[principals.security]\ngroups = [\"engineering\"]",
        );
    let env = Env::new().directory(&directory);
    let daemon = env.start().await;
    let mut oncall = daemon.client("oncall").await;
    let error = break_glass(&mut oncall, "prod-db-admin", "30m", "down", "INC-7")
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Code::FailedPrecondition,
        "{}",
        error.message()
    );
    assert!(
        error
            .message()
            .contains("no active member of security other than oncall"),
        "{}",
        error.message()
    );
    assert_eq!(env.grants(), 0);
    daemon.stop().await;
}
