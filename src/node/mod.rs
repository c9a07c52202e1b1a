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
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

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

    pub async fn emit(&self, event: Event) {
        for event in self.secrets.filter(event) {
            let held = match &event {
                Event::JobOutput { data, .. } => {
                    let bytes = data.len().clamp(1, OUTPUT_IN_FLIGHT) as u32;
                    self.output.clone().acquire_many_owned(bytes).await.ok()
                }
                _ => None,
            };
            let _ = self.tx.send(Emitted { event, _held: held }).await;
        }
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
