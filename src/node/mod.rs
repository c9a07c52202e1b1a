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
use tokio::sync::{mpsc, watch};

/// How far a run is being cancelled; it only goes up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
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
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::Sender<Event>,
    pub secrets: Arc<Secrets>,
}

impl Sink {
    pub fn new(tx: mpsc::Sender<Event>, secrets: Arc<Secrets>) -> Self {
        Sink { tx, secrets }
    }

    pub async fn emit(&self, event: Event) {
        for e in self.secrets.filter(event) {
            let _ = self.tx.send(e).await;
        }
    }
}
