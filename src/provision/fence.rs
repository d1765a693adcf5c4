//! Whether a call may still reach its target. A cluster node runs every provisioner call with
//! its leadership in force ([`within`], from `cluster::Fenced`). A provisioner that waits before
//! it acts — for its lock on a resource, a file or a login, behind other calls that may take
//! up to their timeout — asks again once it holds the lock, right before the target
//! ([`check`]): a node that stopped leading meanwhile (it was paused, its lease lapsed) must
//! not act on the strength of a check made before the wait. Outside a cluster there is nothing
//! in force and every call may act.

use std::future::Future;
use std::sync::Arc;

use super::ProvisionError;

/// Says whether this node may still act.
pub type Allowed = Arc<dyn Fn() -> bool + Send + Sync>;

tokio::task_local! {
    static ALLOWED: Allowed;
}

/// Runs `call` with `allowed` in force.
pub async fn within<F: Future>(allowed: Allowed, call: F) -> F::Output {
    ALLOWED.scope(allowed, call).await
}

/// Fails when the call runs for a node that may no longer act.
pub fn check() -> Result<(), ProvisionError> {
    match ALLOWED.try_with(|allowed| allowed()) {
        Ok(false) => Err(ProvisionError(
            "this node is no longer the leader; the target was not called".to_owned(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_may_act_until_what_is_in_force_says_no() {
        assert!(check().is_ok(), "nothing in force: a single daemon");
        let leading = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let allowed: Allowed = {
            let leading = leading.clone();
            Arc::new(move || leading.load(std::sync::atomic::Ordering::SeqCst))
        };
        within(allowed, async {
            assert!(check().is_ok());
            leading.store(false, std::sync::atomic::Ordering::SeqCst);
            let refused = check().unwrap_err();
            assert!(refused.0.contains("no longer the leader"), "{refused:?}");
        })
        .await;
    }
}
