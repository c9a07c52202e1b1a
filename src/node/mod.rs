//! One node as a job sees it: the room below the verbs. It holds what a verb may use on a
//! node and nothing of the run around it: the context a job gets ([`Cx`]: run a command, ask
//! the executor, stat a path, report), the session with the node's executor ([`session`]),
//! the node cache ([`cache`]) and what a plan knows of it before it is written ([`preview`]),
//! what the nodes of a run share (QUERY rendezvous, per-node state: [`shared`]), file diffs
//! ([`diff`]), the event sink every event leaves through ([`Sink`]) and the cancel level
//! ([`CancelLevel`]). The engine above drives the nodes; the verbs above use one node each.

pub(crate) mod cache;
pub(crate) mod cx;
pub(crate) mod diff;
pub(crate) mod preview;
pub(crate) mod session;
pub(crate) mod shared;

pub(crate) use cx::{Checked, Cx, Finish, JobRef, Relink, Relinked};

use crate::event::Event;
use crate::secret::Secrets;
use std::sync::Arc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// How far a run is being cancelled; it only goes up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum CancelLevel {
    /// Not cancelled.
    #[default]
    None,
    /// No new job starts; running ones finish (Ctrl-C once).
    Drain,
    /// Running jobs are killed on the nodes too (Ctrl-C twice, `manage --cancel`).
    Kill,
}

/// Where a job learns that the run is being cancelled.
pub(crate) type Cancel = watch::Receiver<CancelLevel>;

/// Where events go; a closed receiver (the frontend is gone) does not stop the run. Every
/// event passes the run's [`Secrets`] on its way out: nothing downstream sees a secret.
/// Output on its way is bounded in bytes ([`OUTPUT_IN_FLIGHT`]), not only in events: jobs
/// that print faster than the frontend reads wait for it.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Emitted>,
    pub secrets: Arc<Secrets>,
    output: Arc<Semaphore>,
}

/// Bytes of job output sent and not yet taken by the frontend, for the whole run.
pub(crate) const OUTPUT_IN_FLIGHT: usize = 4 * 1024 * 1024;

/// An event on its way to the frontend; an output holds its share of [`OUTPUT_IN_FLIGHT`]
/// until it is taken ([`Emitted::take`]).
pub struct Emitted {
    event: Event,
    _held: Option<OwnedSemaphorePermit>,
}

impl Emitted {
    /// The event, its bytes given back to the sink.
    pub fn take(self) -> Event {
        self.event
    }
}

impl Sink {
    pub fn new(tx: mpsc::Sender<Emitted>, secrets: Arc<Secrets>) -> Self {
        Sink { tx, secrets, output: Arc::new(Semaphore::new(OUTPUT_IN_FLIGHT)) }
    }

    /// Sends `event` on its way (masked). What the frontends' queue has room for goes at once,
    /// before the first await: a node's future then holds no send of its own (a tokio send's
    /// future is 440 bytes, in every state of every node's job that emits). What must wait for
    /// room waits in its turn, in order, in a future of its own.
    pub fn emit(&self, event: Event) -> impl std::future::Future<Output = ()> + Send + '_ {
        let mut events = self.secrets.filter(event).into_iter();
        let mut waiting = None;
        while let Some(event) = events.next() {
            if let Some(event) = self.try_send(event) {
                waiting = Some((event, events));
                break;
            }
        }
        async move {
            if let Some((first, rest)) = waiting {
                Box::pin(self.send_waiting(std::iter::once(first).chain(rest))).await;
            }
        }
    }

    /// Sends `event` if there is room for it now; gives it back when it must wait.
    fn try_send(&self, event: Event) -> Option<Event> {
        let held = match share(&event) {
            Some(bytes) => match self.output.clone().try_acquire_many_owned(bytes) {
                Ok(permit) => Some(permit),
                Err(TryAcquireError::NoPermits) => return Some(event),
                Err(TryAcquireError::Closed) => None,
            },
            None => None,
        };
        match self.tx.try_send(Emitted { event, _held: held }) {
            Ok(()) | Err(TrySendError::Closed(_)) => None,
            Err(TrySendError::Full(emitted)) => Some(emitted.event),
        }
    }

    async fn send_waiting(&self, events: impl Iterator<Item = Event>) {
        for event in events {
            let held = match share(&event) {
                Some(bytes) => self.output.clone().acquire_many_owned(bytes).await.ok(),
                None => None,
            };
            let _ = self.tx.send(Emitted { event, _held: held }).await;
        }
    }
}

/// The share of [`OUTPUT_IN_FLIGHT`] `event` holds on its way: an output's bytes.
fn share(event: &Event) -> Option<u32> {
    match event {
        Event::JobOutput { data, .. } => Some(data.len().clamp(1, OUTPUT_IN_FLIGHT) as u32),
        _ => None,
    }
}

/// `len` bytes no compressor makes smaller (xorshift), for the packing tests.
#[cfg(test)]
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stream;
    use std::time::Duration;

    fn notice(n: usize) -> Event {
        Event::NodeNotice { node: "n1".into(), message: format!("notice {n}") }
    }

    fn output(data: String) -> Event {
        Event::JobOutput { node: "n1".into(), job: 0, stream: Stream::Stdout, data }
    }

    fn sink(depth: usize) -> (Sink, mpsc::Receiver<Emitted>) {
        let (tx, rx) = mpsc::channel(depth);
        (Sink::new(tx, Arc::new(Secrets::new(Vec::new()))), rx)
    }

    /// What the frontends' queue has room for goes at once; what must wait goes in its turn,
    /// in order.
    #[tokio::test]
    async fn events_wait_for_room_and_keep_their_order() {
        let (sink, mut rx) = sink(1);
        sink.emit(notice(1)).await;
        let later = sink.clone();
        let waiting = tokio::spawn(async move {
            for n in 2..=4 {
                later.emit(notice(n)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "three events cannot fit in a queue of one");
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(rx.recv().await.expect("an event").take());
        }
        waiting.await.expect("the emitting task");
        assert_eq!(got, (1..=4).map(notice).collect::<Vec<_>>());
    }

    /// Output is bounded in bytes, not only in events: a chunk waits while the run's share of
    /// output is on its way, and goes once the frontend takes what holds it.
    #[tokio::test]
    async fn output_waits_while_its_bytes_are_on_their_way() {
        let (sink, mut rx) = sink(16);
        sink.emit(output("x".repeat(OUTPUT_IN_FLIGHT))).await;
        let later = sink.clone();
        let waiting = tokio::spawn(async move { later.emit(output("y".into())).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "4 MiB of output are on their way");
        assert!(rx.try_recv().is_ok_and(|first| first.take() == output("x".repeat(OUTPUT_IN_FLIGHT))));
        waiting.await.expect("the emitting task");
        assert_eq!(rx.recv().await.expect("the second chunk").take(), output("y".into()));
    }
}
