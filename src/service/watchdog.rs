//! The service watchdog: with `WatchdogSec=` the service manager sets `WATCHDOG_USEC` (and
//! `WATCHDOG_PID`, the process meant), and restarts the service when no `WATCHDOG=1` arrives
//! within that time. The keep-alive runs as a task on the daemon's runtime and is sent only when
//! a liveness probe (the expiry timer answering) succeeds in time, so a stuck runtime or a dead
//! timer — the part that takes access away on time — leads to a restart. Once shutdown has
//! begun the probe is skipped: the timer stops on purpose while the daemon drains.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::service::Notifier;

/// The watchdog interval the service manager asked for, if it asked this process:
/// `WATCHDOG_USEC`, unless `WATCHDOG_PID` names another process.
pub fn interval_from_env() -> Option<Duration> {
    interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// The interval of `WATCHDOG_USEC=usec` and `WATCHDOG_PID=pid` for process `own`.
fn interval(usec: Option<&str>, pid: Option<&str>, own: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(own) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Sends `WATCHDOG=1` every half `interval` while `probe` answers `true` within a quarter of
/// it (or shutdown has begun). Ends when the runtime does.
pub fn spawn<P, F>(notifier: Notifier, interval: Duration, mut probe: P) -> JoinHandle<()>
where
    P: FnMut() -> F + Send + 'static,
    F: Future<Output = bool> + Send,
{
    let period = (interval / 2).max(Duration::from_millis(1));
    let patience = interval / 4;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticks.tick().await;
            let alive =
                notifier.is_stopping() || tokio::time::timeout(patience, probe()).await == Ok(true);
            if !alive {
                if !failing {
                    tracing::error!(
                        "the expiry timer does not answer; withholding the watchdog keep-alive"
                    );
                }
                failing = true;
                continue;
            }
            failing = false;
            if let Err(error) = notifier.watchdog() {
                tracing::warn!(%error, "cannot send the watchdog keep-alive");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn the_interval_is_for_this_process_only() {
        let ms = Some(Duration::from_millis(30_000));
        assert_eq!(interval(Some("30000000"), None, 7), ms);
        assert_eq!(interval(Some("30000000"), Some("7"), 7), ms);
        assert_eq!(interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(interval(Some("30000000"), Some("x"), 7), None);
        assert_eq!(interval(None, Some("7"), 7), None);
        assert_eq!(interval(Some("0"), None, 7), None);
        assert_eq!(interval(Some("soon"), None, 7), None);
    }

    #[tokio::test]
    async fn keep_alives_stop_while_the_probe_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        let notifier = Notifier::for_address(path.as_os_str().as_bytes()).unwrap();
        let healthy = Arc::new(AtomicBool::new(true));
        let probe = {
            let healthy = healthy.clone();
            move || {
                let healthy = healthy.load(Ordering::SeqCst);
                async move { healthy }
            }
        };
        let task = spawn(notifier.clone(), Duration::from_millis(40), probe);
        let count = |socket: &UnixDatagram| {
            let mut buffer = [0u8; 64];
            let mut count = 0;
            while let Ok(length) = socket.recv(&mut buffer) {
                assert_eq!(&buffer[..length], b"WATCHDOG=1\n");
                count += 1;
            }
            count
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(count(&socket) >= 2);
        healthy.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        count(&socket);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(count(&socket), 0, "no keep-alive while the probe fails");
        notifier.stopping("stopping");
        let _ = socket.recv(&mut [0u8; 64]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(count(&socket) >= 2, "keep-alives while draining");
        task.abort();
    }
}
