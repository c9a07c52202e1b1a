//! What the nodes of one run share: each node's cache (in memory, mirrored to the node, with
//! the changes on their way there), the fingerprints that failed there, the node's clock, and
//! the QUERY rendezvous.
//!
//! A QUERY job needs a value from every one of its targets, so it is the one place where
//! nodes wait for each other: each target arrives with its value (or leaves: it failed
//! earlier, was skipped, or is unreachable), and the job completes on all of them once every
//! target has done one or the other. A node's task leaves every rendezvous it has not reached
//! when it ends, so a lost node never blocks the others. Across relays, each engine has every
//! target of a QUERY in its rendezvous: its own nodes arrive themselves, the others' arrivals
//! come in through [`Shared::arrive`], and an [`Observer`] hears every arrival to pass on.

use super::cache::NodeCache;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::Notify;

pub struct NodeState {
    /// The node's catalog name.
    pub name: String,
    pub cache: Mutex<NodeCache>,
    /// Fingerprints of jobs that failed on the node in this run (JOB_WAIT sees them).
    pub failed: Mutex<HashSet<String>>,
    /// Files written on the node in this run: content sha3 → path, so content goes once.
    pub sent: Mutex<HashMap<String, String>>,
    /// Journal lines waiting to be sent to the node, oldest first ([`super::Cx::save_soon`]).
    pub unsaved: Mutex<Vec<Unsaved>>,
    /// Sends to the node take turns, so lines arrive in the order they were queued.
    pub save: tokio::sync::Mutex<()>,
    /// Wakes the node's saver ([`super::Cx::saving`]).
    pub wake: Notify,
    /// The node's task has ended.
    pub done: AtomicBool,
    /// Wakes whoever waits on this node's cache or jobs.
    pub changed: Notify,
    /// In a plan: jobs that would run and capture args the plan cannot foresee.
    pub pending: Mutex<Vec<super::preview::Pending>>,
    /// What the executor said of the node (`hostname`, `arch`, `os`, `kernel`): templates see
    /// it as `facts`.
    pub facts: Mutex<serde_json::Map<String, Value>>,
    /// Stat requests sent before the jobs that need them ([`super::Cx::look_ahead`]).
    pub ahead: Mutex<Ahead>,
    clock: Mutex<Option<(u64, Instant)>>,
}

/// What was asked of the node ahead of its jobs: valid while no job has changed the node
/// since it was asked.
#[derive(Default)]
pub struct Ahead {
    /// Moves on whenever a job may have changed the node.
    generation: u64,
    /// By path: the generation it was asked in, and its answer to come.
    stats: HashMap<String, (u64, super::session::Asked)>,
}

impl Ahead {
    /// A job may change the node: what was asked before no longer holds (the answers are
    /// thrown away as they come).
    pub fn moved(&mut self) {
        self.generation += 1;
        self.stats.clear();
    }

    /// How many times the node may have changed so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The stat of `path` asked of `session` since the node last changed, once.
    pub fn take_stat(&mut self, path: &str, session: &super::session::Session) -> Option<super::session::Asked> {
        match self.stats.remove(path) {
            Some((generation, asked)) if generation == self.generation && asked.is_of(session) => Some(asked),
            _ => None,
        }
    }

    /// Of `paths`, those not asked since the node last changed, without repeats; and the
    /// generation to file their answers under.
    pub fn unasked(&self, paths: Vec<String>) -> (Vec<String>, u64) {
        let mut seen = HashSet::new();
        let fresh = paths
            .into_iter()
            .filter(|p| self.stats.get(p).is_none_or(|(g, _)| *g != self.generation) && seen.insert(p.clone()))
            .collect();
        (fresh, self.generation)
    }

    /// Files `answers` asked in `generation`, unless the node has changed since.
    pub fn file(&mut self, generation: u64, answers: impl IntoIterator<Item = (String, super::session::Asked)>) {
        if generation == self.generation {
            self.stats.extend(answers.into_iter().map(|(path, asked)| (path, (generation, asked))));
        }
    }
}

/// Changes of the node cache not yet on the node (or on their way).
pub struct Unsaved {
    /// Taken when they are sent; the entry stays queued until the node has them.
    pub lines: Vec<String>,
    /// The job whose record they carry (`job 3 (RUN …)`), named if they cannot be saved.
    pub job: Option<String>,
    /// Events that wait for these changes to be on the node: a job is reported finished
    /// once its record is saved ([`super::Cx::report`]).
    pub reports: Vec<crate::event::Event>,
}

impl NodeState {
    fn new(name: String) -> Self {
        NodeState {
            name,
            cache: Mutex::default(),
            failed: Mutex::default(),
            sent: Mutex::default(),
            unsaved: Mutex::default(),
            save: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            done: AtomicBool::new(false),
            changed: Notify::new(),
            pending: Mutex::default(),
            facts: Mutex::default(),
            ahead: Mutex::default(),
            clock: Mutex::new(None),
        }
    }

    pub fn set_clock(&self, node_now: u64) {
        *lock(&self.clock) = Some((node_now, Instant::now()));
    }

    /// The node's time now, seconds since the epoch.
    pub fn now(&self) -> u64 {
        match *lock(&self.clock) {
            Some((at, since)) => at + since.elapsed().as_secs(),
            None => {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
            }
        }
    }

    pub fn cache(&self) -> std::sync::MutexGuard<'_, NodeCache> {
        lock(&self.cache)
    }

    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until `ready` holds, re-checking whenever `notify` fires.
pub(crate) async fn until<T>(notify: &Notify, mut ready: impl FnMut() -> Option<T>) -> T {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(v) = ready() {
            return v;
        }
        notified.await;
    }
}

struct Rendezvous {
    participants: Vec<usize>,
    members: HashSet<usize>,
    seen: Mutex<Seen>,
    /// What every target gets, built once by the first to see the rendezvous complete.
    answer: OnceLock<Arc<Value>>,
    /// Fired once, when the last participant arrives or leaves: the targets waiting are not
    /// woken by each arrival (at 1,000 targets, each of them checking every participant at
    /// each arrival was 9 % of the operator's CPU in the deploy). It wakes one target, which
    /// wakes the next as it goes on ([`Shared::query`]): woken all at once, a thousand targets
    /// each stored the answer and wrote their record to their connection before any
    /// connection's task had a turn to send one (the runtime has one thread), 10 MB held at
    /// once at 1,000 nodes; woken one by one, each connection's task runs between two targets.
    notify: Notify,
}

/// `Some(value)`: the node arrived (the value may be absent); `None`: it left.
type Arrived = Option<Option<Value>>;

#[derive(Default)]
struct Seen {
    by_node: HashMap<usize, Arrived>,
    /// How many participants are in `by_node`.
    participants: usize,
}

impl Rendezvous {
    fn new(participants: Vec<usize>) -> Rendezvous {
        let members = participants.iter().copied().collect();
        Rendezvous { participants, members, seen: Mutex::default(), answer: OnceLock::new(), notify: Notify::new() }
    }

    /// Notes what `node` brought, unless something is noted of it already and `replaces`
    /// (given what) says no; whether it was noted. Wakes the targets waiting when that
    /// completed the rendezvous.
    fn note(&self, node: usize, brought: Arrived, replaces: impl FnOnce(&Arrived) -> bool) -> bool {
        let complete = {
            let mut seen = lock(&self.seen);
            match seen.by_node.get(&node) {
                Some(held) if !replaces(held) => return false,
                Some(_) => {}
                None => seen.participants += usize::from(self.members.contains(&node)),
            }
            seen.by_node.insert(node, brought);
            self.complete(&seen)
        };
        if complete {
            self.notify.notify_one();
        }
        true
    }

    /// Whether every participant arrived or left.
    fn complete(&self, seen: &Seen) -> bool {
        seen.participants == self.members.len()
    }
}

/// A node arriving at a QUERY with its value (which may be absent), or leaving it (`None`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Arrival {
    pub job: usize,
    pub node: String,
    pub value: Option<Option<Value>>,
}

/// Hears every arrival at a QUERY of this run (the relays' engines and the operator's pass
/// them on to each other).
pub(crate) type Observer = Box<dyn Fn(Arrival) + Send + Sync>;

pub struct Shared {
    pub nodes: Vec<NodeState>,
    queries: HashMap<usize, Rendezvous>,
    observer: Option<Observer>,
}

impl Shared {
    /// The shared state of nodes `names` (in the run's order), with a rendezvous for each
    /// QUERY job: its id and its targets (indices into `names`).
    pub fn new(names: Vec<String>, queries: impl IntoIterator<Item = (usize, Vec<usize>)>) -> Self {
        let queries = queries.into_iter().map(|(job, participants)| (job, Rendezvous::new(participants))).collect();
        Shared { nodes: names.into_iter().map(NodeState::new).collect(), queries, observer: None }
    }

    /// These shared states, with `observer` hearing every QUERY arrival.
    pub fn observed(self, observer: Observer) -> Self {
        Shared { observer: Some(observer), ..self }
    }

    /// Another engine's node arrived at (or left) QUERY `job`.
    pub fn arrive(&self, arrival: Arrival) {
        let (Some(r), Some(node)) = (self.queries.get(&arrival.job), self.position(&arrival.node)) else { return };
        let arrived = arrival.value.is_some();
        if r.note(node, arrival.value.clone(), |held| held.is_none() && arrived) {
            self.tell(arrival);
        }
    }

    fn tell(&self, arrival: Arrival) {
        if let Some(observer) = &self.observer {
            observer(arrival);
        }
    }

    /// The place of the node named `name` among the run's nodes.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// `node` brings its value to QUERY `job` and waits for the other targets; the answer is
    /// `build` of every target that arrived (in target order, with its value), built once and
    /// shared by all the targets.
    pub async fn query(
        &self,
        job: usize,
        node: usize,
        value: Option<Value>,
        build: impl Fn(&[(usize, &Option<Value>)]) -> Value,
    ) -> Arc<Value> {
        let Some(r) = self.queries.get(&job) else { return Arc::new(build(&[(node, &value)])) };
        r.note(node, Some(value.clone()), |_| true);
        self.tell(Arrival { job, node: self.nodes[node].name.clone(), value: Some(value) });
        let answer = until(&r.notify, || {
            let seen = lock(&r.seen);
            r.complete(&seen).then(|| {
                let answer = r.answer.get_or_init(|| {
                    let arrived: Vec<_> =
                        r.participants.iter().filter_map(|p| seen.by_node[p].as_ref().map(|v| (*p, v))).collect();
                    Arc::new(build(&arrived))
                });
                answer.clone()
            })
        })
        .await;
        // The next target waiting goes on after this one (a target that gave up waiting
        // passes its turn on as it is dropped).
        r.notify.notify_one();
        answer
    }

    /// `node` will not reach QUERY `job`.
    pub fn leave(&self, job: usize, node: usize) {
        if let Some(r) = self.queries.get(&job) {
            if r.note(node, None, |_| false) {
                self.tell(Arrival { job, node: self.nodes[node].name.clone(), value: None });
            }
        }
    }

    /// `node`'s task ended: it leaves every QUERY it did not reach.
    pub fn leave_all(&self, node: usize) {
        for (&job, r) in &self.queries {
            if r.participants.contains(&node) {
                self.leave(job, node);
            }
        }
        self.nodes[node].finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Targets waiting at a QUERY are woken one after another, each connection's task (here a
    /// task each target wakes when it goes on) getting its turn between two of them, and all
    /// get the one answer; a target that gave up waiting holds none of them back.
    #[test]
    fn targets_waiting_at_a_query_go_on_one_by_one_and_all_get_the_answer() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let n = 40;
        let names = (0..n).map(|i| format!("n{i}")).collect();
        let shared = Arc::new(Shared::new(names, [(7, (0..n).collect())]));
        let build = |arrived: &[(usize, &Option<Value>)]| Value::from(arrived.len());
        let (went_on, seen_first) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(None)));
        runtime.block_on(async {
            let gave_up = {
                let shared = shared.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_millis(1), shared.query(7, 0, None, build)).await.is_err()
                })
            };
            let mut waiting = Vec::new();
            for node in 1..n - 1 {
                let (shared, went_on, seen_first) = (shared.clone(), went_on.clone(), seen_first.clone());
                waiting.push(tokio::spawn(async move {
                    let answer = shared.query(7, node, Some(Value::from(node)), build).await;
                    went_on.fetch_add(1, Ordering::SeqCst);
                    let (tell, told) = tokio::sync::oneshot::channel::<()>();
                    let connection = tokio::spawn(async move {
                        let _ = told.await;
                        lock(&seen_first).get_or_insert(went_on.load(Ordering::SeqCst));
                    });
                    let _ = tell.send(());
                    connection.await.unwrap();
                    answer
                }));
            }
            assert!(gave_up.await.unwrap(), "node 0 gave up before the others arrived");
            // The last one arrives: the rendezvous is complete.
            let last = shared.query(7, n - 1, None, build).await;
            let answers: Vec<_> = futures::future::join_all(waiting).await.into_iter().map(Result::unwrap).collect();
            assert!(answers.iter().all(|a| Arc::ptr_eq(a, &last)), "one answer, shared");
            assert_eq!(*last, Value::from(n));
        });
        assert_eq!(went_on.load(Ordering::SeqCst), n - 2);
        let first = lock(&seen_first).unwrap();
        // Woken all at once, every one of the 38 went on first.
        assert!(first <= 4, "{first} targets went on before the first connection's task ran");
    }
}
