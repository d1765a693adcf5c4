//! The `exec` notifier: runs a configured program with the event as JSON on stdin (and its kind
//! and id in `ELEVATE_EVENT_KIND` and `ELEVATE_EVENT_ID`), the way [`crate::process`] runs
//! programs. Exit status 0 is a delivery.

use super::{Event, Notifier, NotifyError};
use crate::BoxFuture;
use crate::process::Program;

/// Hands events to a program.
#[derive(Debug)]
pub struct ExecNotifier {
    program: Program,
}

impl ExecNotifier {
    /// A notifier running `program`.
    pub fn new(program: Program) -> Self {
        Self { program }
    }
}

impl Notifier for ExecNotifier {
    fn deliver<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(event).unwrap_or_default();
            self.program
                .run(
                    "notify",
                    &[],
                    &[
                        ("ELEVATE_EVENT_KIND", &event.kind),
                        ("ELEVATE_EVENT_ID", &event.id),
                    ],
                    Some(&body),
                )
                .await
                .map_err(|error| NotifyError(error.0))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::notify::{Priority, RequestSummary};

    pub(crate) fn event() -> Event {
        Event {
            id: "req-1:access.granted:1".into(),
            kind: "access.granted".into(),
            priority: Priority::Normal,
            at: "2026-11-22T10:00:00.000Z".into(),
            recipients: vec!["engineer".into()],
            text: "engineer has staging-db".into(),
            checkpoint: None,
            request: Some(RequestSummary {
                id: "req-1".into(),
                requester: "engineer".into(),
                resource: "staging-db".into(),
                state: "active".into(),
                reason: None,
                ticket: None,
                break_glass: false,
                incident: None,
                expires_at: None,
                review: None,
                review_due_at: None,
            }),
        }
    }

    #[tokio::test]
    async fn hands_the_event_to_the_program_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let notifier = ExecNotifier::new(Program {
            path: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                format!(
                    "echo \"$ELEVATE_EVENT_KIND\" > {0}; cat >> {0}",
                    out.display()
                ),
            ],
            env: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            working_dir: None,
        });
        notifier.deliver(&event()).await.unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let (kind, json) = text.split_once('\n').unwrap();
        assert_eq!(kind, "access.granted");
        let delivered: Event = serde_json::from_str(json).unwrap();
        assert_eq!(delivered, event());
    }
}
