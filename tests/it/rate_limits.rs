//! One engineer cannot flood the daemon with grant/revoke cycles: submissions and extensions
//! are rate limited per principal (a global rate, and a resource's own), refused with
//! `RESOURCE_EXHAUSTED` and a retry-after, counted in a metric and audited once per window.

use std::time::Duration;

use elevate::model::Rate;
use tonic::Code;

use super::harness::*;

fn rate(text: &str) -> Rate {
    text.parse().unwrap()
}

async fn audited(daemon: &Daemon, action: &str) -> usize {
    daemon
        .all_events()
        .await
        .iter()
        .filter(|e| e.action == action)
        .count()
}

#[tokio::test]
async fn grant_and_revoke_cycles_are_rate_limited_per_principal() {
    let env = Env::new();
    env.tweak(|options| options.settings.rate_limits.submit = rate("3/1m"));
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let mut oncall = daemon.client("oncall").await;
    for _ in 0..3 {
        let granted = request(&mut engineer, "staging-db", "30m", "cycle", "")
            .await
            .unwrap();
        release(&mut engineer, &granted.id).await.unwrap();
    }
    let grants = env.grants();
    let before = daemon.all_events().await.len();
    for _ in 0..5 {
        let refused = request(&mut engineer, "staging-db", "30m", "cycle", "")
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        assert!(
            refused.message().contains("at most 3/1m") && refused.message().contains("retry in"),
            "{}",
            refused.message()
        );
        let retry_after: u64 = refused
            .metadata()
            .get("retry-after")
            .expect("a retry-after")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&retry_after), "{retry_after}");
    }
    // Nothing was granted or stored for the refused asks but one audit entry.
    assert_eq!(env.grants(), grants);
    until("the refusal audited", || async {
        (audited(&daemon, "rate.limited").await == 1).then_some(())
    })
    .await;
    let after = daemon.all_events().await.len();
    assert_eq!(
        after,
        before + 1,
        "one audit entry for five refusals in the window"
    );
    let metrics = metrics_text(&daemon).await;
    assert!(
        metrics.contains("elevate_rate_limited_total{action=\"submit\"} 5"),
        "{metrics}"
    );
    // Others have buckets of their own.
    let theirs = request(&mut oncall, "staging-db", "30m", "mine", "")
        .await
        .unwrap();
    release(&mut oncall, &theirs.id).await.unwrap();

    // A token comes back every 20 s of the daemon's clock.
    env.advance(Duration::from_secs(20));
    let granted = request(&mut engineer, "staging-db", "30m", "later", "")
        .await
        .unwrap();
    release(&mut engineer, &granted.id).await.unwrap();
    assert_eq!(
        request(&mut engineer, "staging-db", "30m", "again", "")
            .await
            .unwrap_err()
            .code(),
        Code::ResourceExhausted
    );
    // A new window: refused again, audited again.
    env.advance(Duration::from_secs(61));
    for _ in 0..4 {
        let _ = request(&mut engineer, "staging-db", "30m", "burst", "").await;
    }
    until("the second window audited", || async {
        (audited(&daemon, "rate.limited").await == 2).then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_resource_sets_its_own_rates_and_extensions_are_limited_too() {
    let policy = elevate::dev::POLICY.replace(
        "[resources.staging-db.extensions]",
        "[resources.staging-db.rate_limits]\nsubmit = \"1/1h\"\nextend = \"1/1h\"\n\n[resources.staging-db.extensions]",
    );
    let env = Env::new().policy(&policy);
    let daemon = env.start().await;
    let mut engineer = daemon.client("engineer").await;
    let granted = request(&mut engineer, "staging-db", "30m", "one", "")
        .await
        .unwrap();
    extend(&mut engineer, &granted.id, "30m", "a bit more")
        .await
        .unwrap();
    let refused = extend(&mut engineer, &granted.id, "30m", "more")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    release(&mut engineer, &granted.id).await.unwrap();
    let refused = request(&mut engineer, "staging-db", "30m", "two", "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("1/1h"), "{}", refused.message());
    // The global rate (20/1m) still governs other resources.
    let other = request(&mut engineer, "prod-db-read", "30m", "read", "").await;
    assert!(other.is_ok(), "{other:?}");
    daemon.stop().await;
}

#[tokio::test]
async fn a_malformed_rate_in_the_policy_is_refused_naming_the_field() {
    let policy = elevate::dev::POLICY.replace(
        "[resources.staging-db.extensions]",
        "[resources.staging-db.rate_limits]\nsubmit = \"lots\"\n\n[resources.staging-db.extensions]",
    );
    let env = Env::new().policy(&policy);
    let error = env.try_start().await.err().expect("refused").to_string();
    assert!(
        error.contains("staging-db")
            && error.contains("rate_limits.submit")
            && error.contains("COUNT/DURATION"),
        "{error}"
    );
}
