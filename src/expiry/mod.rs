//! Time-driven work: one task owns the timer wheel and hands out request ids whose deadline
//! came (a pending request's time-out, a grant or revoke retry, a lease's expiry). It knows
//! nothing of what the ids mean; the broker receives them and acts.

mod backoff;
mod wheel;

pub use backoff::Backoff;
pub use wheel::Wheel;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::model::{RequestId, Timestamp};

enum Command {
    Schedule(RequestId, Timestamp),
    ScheduleMany(Vec<(Timestamp, RequestId)>),
    Cancel(RequestId),
    Inspect(RequestId, oneshot::Sender<(usize, Option<Timestamp>)>),
}

/// A cheap handle to the wheel's owner task. Sending never blocks.
#[derive(Clone, Debug)]
pub struct Expiry {
    commands: mpsc::UnboundedSender<Command>,
}

impl Expiry {
    /// Starts the wheel task. Due ids arrive on the returned receiver; the task stops when
    /// `shutdown` is cancelled or every handle is dropped.
    pub fn spawn(
        clock: SharedClock,
        shutdown: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<RequestId>) {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (due, due_receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(clock, shutdown, receiver, due));
        (Self { commands }, due_receiver)
    }

    /// Schedules `id` at `deadline`, replacing its previous deadline.
    pub fn schedule(&self, id: RequestId, deadline: Timestamp) {
        let _ = self.commands.send(Command::Schedule(id, deadline));
    }

    /// Schedules every `(deadline, id)` at once (startup recovery): one message for the lot.
    pub fn schedule_many(&self, deadlines: Vec<(Timestamp, RequestId)>) {
        let _ = self.commands.send(Command::ScheduleMany(deadlines));
    }

    /// Forgets `id`'s deadline.
    pub fn cancel(&self, id: RequestId) {
        let _ = self.commands.send(Command::Cancel(id));
    }

    /// How many ids are scheduled, and `id`'s deadline. Answers after every command sent
    /// before it has been applied.
    pub async fn inspect(&self, id: RequestId) -> (usize, Option<Timestamp>) {
        let (answer, answered) = oneshot::channel();
        if self.commands.send(Command::Inspect(id, answer)).is_err() {
            return (0, None);
        }
        answered.await.unwrap_or((0, None))
    }

    /// Whether the wheel's task is running and answering (for the service watchdog).
    pub async fn is_running(&self) -> bool {
        let (answer, answered) = oneshot::channel();
        self.commands
            .send(Command::Inspect(RequestId::FIRST, answer))
            .is_ok()
            && answered.await.is_ok()
    }
}

async fn run(
    clock: SharedClock,
    shutdown: CancellationToken,
    mut commands: mpsc::UnboundedReceiver<Command>,
    due: mpsc::UnboundedSender<RequestId>,
) {
    let mut wheel = Wheel::new(clock.now());
    loop {
        for id in wheel.poll(clock.now()) {
            if due.send(id).is_err() {
                return;
            }
        }
        let sleep = wheel
            .next_wake()
            .map(|deadline| clock.sleep_until(deadline));
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            command = commands.recv() => {
                let Some(command) = command else { return };
                apply(&mut wheel, command);
                // Drain what else is queued before polling again.
                while let Ok(command) = commands.try_recv() {
                    apply(&mut wheel, command);
                }
            }
            () = async {
                match sleep {
                    Some(sleep) => sleep.await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

fn apply(wheel: &mut Wheel, command: Command) {
    match command {
        Command::Schedule(id, deadline) => wheel.insert(id, deadline),
        Command::ScheduleMany(deadlines) => {
            wheel.reserve(deadlines.len());
            for (deadline, id) in deadlines {
                wheel.insert(id, deadline);
            }
        }
        Command::Cancel(id) => wheel.remove(id),
        Command::Inspect(id, answer) => {
            let _ = answer.send((wheel.len(), wheel.deadline(id)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn hands_out_ids_when_the_clock_reaches_them() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000_000));
        let (expiry, mut due) = Expiry::spawn(Arc::new(clock.clone()), CancellationToken::new());
        expiry.schedule(
            RequestId::from_raw(1),
            Timestamp::from_unix_millis(1_060_000),
        );
        expiry.schedule(
            RequestId::from_raw(2),
            Timestamp::from_unix_millis(1_120_000),
        );
        assert_eq!(expiry.inspect(RequestId::from_raw(1)).await.0, 2);
        clock.advance(Duration::from_secs(60));
        assert_eq!(due.recv().await, Some(RequestId::from_raw(1)));
        assert!(due.try_recv().is_err());
        expiry.cancel(RequestId::from_raw(2));
        clock.advance(Duration::from_secs(3600));
        assert_eq!(expiry.inspect(RequestId::from_raw(2)).await, (0, None));
        assert!(due.try_recv().is_err());
    }
}
