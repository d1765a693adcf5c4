//! The `exec` notifier: runs a configured program with the event as JSON on stdin (and its kind
//! and id in `ELEVATE_EVENT_KIND` and `ELEVATE_EVENT_ID`), the way [`crate::process`] runs
//! programs. Exit status 0 is a delivery.

use super::{Event, Notifier, NotifyError};
use crate::process::Program;
use crate::provision::BoxFuture;

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
