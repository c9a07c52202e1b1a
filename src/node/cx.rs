//! What a job gets on its node ([`Cx`]) and how a verb says how it ended ([`Finish`]): run a
//! command there and stream its output as events, ask the executor for one thing, stat a
//! path, and reach the node's state (its cache, the other nodes at a QUERY). It also keeps
//! the node cache on the node: changes are queued ([`Cx::save_soon`]) and sent by the node's
//! saver ([`Cx::saving`]) while the next jobs run, and a job is reported finished once its
//! record is there ([`Cx::report`]). It knows nothing of the plan, the engine's settings or
//! the node's other executors: the verbs use it, the engine builds it.

use super::preview::Pending;
use super::session::Session;
use super::shared::{lock, NodeState, Shared, Unsaved};
use super::{Cancel, CancelLevel, Sink};
use crate::catalog::Node;
use crate::event::{Event, JobStatus, Stream};
use director_proto::{Done, FileStat, Outcome, Reply, Request};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// Largest captured output kept for `--stdout-arg`/`--stderr-arg`, per stream.
const CAPTURE_LIMIT: usize = 4 * 1024 * 1024;

/// A job as its node runs it: its place in the run (events name it) and its time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRef {
    pub id: usize,
    pub timeout: Duration,
    /// When the job began (rendering its templates counts against its timeout).
    pub started: Instant,
}

impl JobRef {
    /// What is left of the job's time limit.
    pub fn left(&self) -> Duration {
        self.timeout.saturating_sub(self.started.elapsed())
    }
}

/// When a rebooted node's link dropped and when it answered again, or why it did not.
pub(crate) type Relinked<'a> = Pin<Box<dyn Future<Output = Result<(Duration, Duration), String>> + Send + 'a>>;

/// Reaches a node again after it was told to reboot, its executors started there again
/// (the engine's, which holds the node's connection and executors).
pub trait Relink: Sync {
    /// Waits for the node to go down and come back within `within`; returns when the link
    /// dropped and when the node answered again.
    fn relink<'a>(&'a self, cx: &'a Cx<'a>, within: Duration) -> Relinked<'a>;
}

/// Everything a job on one node can reach.
#[derive(Clone, Copy)]
pub struct Cx<'a> {
    /// The node's place among the run's nodes ([`Shared::nodes`]).
    pub index: usize,
    pub node: &'a Node,
    /// The executor the job runs on (the one of the account it runs as).
    pub session: &'a Session,
    /// The node's own executor, which keeps the node cache.
    pub home: &'a Session,
    pub sink: &'a Sink,
    pub shared: &'a Shared,
    /// The run's id, as the history and other runs know it.
    pub run_id: &'a str,
    /// Seconds cached args and envs live on the node.
    pub args_ttl: u64,
    /// How a REBOOT reaches the node again.
    pub relink: &'a dyn Relink,
}

impl Cx<'_> {
    /// The node's state in this run: its cache, what it sent, who waits on it.
    pub fn state(&self) -> &NodeState {
        &self.shared.nodes[self.index]
    }

    /// In a plan: why `job`, which uses the variables `uses`, cannot be known before a job
    /// that would run first on this node captures one of them.
    pub fn depends(&self, uses: &std::collections::BTreeSet<String>) -> Option<String> {
        Pending::blocking(&lock(&self.state().pending), uses)
    }

    /// Queues what changed in the in-memory cache for the node's journal (see
    /// [`super::cache`]) and wakes the node's saver ([`Cx::saving`]): the job goes on while its
    /// record travels and the node syncs it. `job` names the job whose record it is, for the
    /// notice if the node cannot store it. Refused at once if the cache would outgrow what a
    /// node cache may hold.
    pub fn save_soon(&self, job: Option<String>) -> Result<(), String> {
        let state = self.state();
        let mut cache = state.cache();
        let (lines, size) = cache.take_journal();
        if lines.is_empty() {
            return Ok(());
        }
        let total = cache.size + size;
        if total > director_proto::MAX_CACHE {
            return Err(format!(
                "cannot save the node cache: it would be up to {total} bytes, over the {} MiB a node cache may hold (large --stdout-arg or --stderr-arg captures are the usual cause)",
                director_proto::MAX_CACHE >> 20
            ));
        }
        cache.size = total;
        // Queued under the cache's lock: lines are queued in the order they were taken.
        lock(&state.unsaved).push(Unsaved { lines, job, reports: Vec::new() });
        state.wake.notify_one();
        Ok(())
    }

    /// Queues what changed and waits until everything queued is on the node.
    pub async fn save(&self) -> Result<(), String> {
        self.save_soon(None)?;
        self.flush().await
    }

    /// Emits `event` once every change queued before it is on the node (at once if none is):
    /// a job is reported finished only when its record will survive the executor, and after
    /// the jobs before it.
    pub fn report(&self, event: Event) -> impl std::future::Future<Output = ()> + Send + '_ {
        let unqueued = match lock(&self.state().unsaved).last_mut() {
            Some(last) => {
                last.reports.push(event);
                None
            }
            None => Some(event),
        };
        let now = unqueued.map(|event| self.sink.emit(event));
        async move {
            if let Some(emitting) = now {
                emitting.await;
            }
        }
    }

    /// Sends everything queued, in order, all in one append (the node syncs once for all of
    /// them), then emits the events that waited for it; the jobs whose records could not be
    /// stored are told in a notice.
    pub async fn flush(&self) -> Result<(), String> {
        let state = self.state();
        let _turn = state.save.lock().await;
        let (lines, taken) = {
            let mut unsaved = lock(&state.unsaved);
            let lines: Vec<String> = unsaved.iter_mut().flat_map(|u| std::mem::take(&mut u.lines)).collect();
            (lines, unsaved.len())
        };
        if taken == 0 {
            return Ok(());
        }
        let mut result: Result<(), NotSaved> = Ok(());
        let (pieces, packed) = journal_pieces(lines);
        let last = pieces.len().saturating_sub(1);
        for (n, lines) in pieces.into_iter().enumerate() {
            let more = n < last;
            result = match self.home.call(|id| Request::AppendCache { id, lines, more, packed }).await {
                Ok(Done::Failed { message }) => Err(NotSaved::Refused(message)),
                Ok(_) => Ok(()),
                Err(e) => Err(NotSaved::Lost(e)),
            };
            if result.is_err() {
                break;
            }
        }
        // Events queued behind these changes meanwhile go out with them, in order.
        let sent: Vec<Unsaved> = lock(&state.unsaved).drain(..taken).collect();
        // A job whose record did not reach the node is told, even when the node was lost:
        // it is reported done, but it will run again.
        for unsaved in sent {
            if let (Err(e), Some(job)) = (&result, unsaved.job) {
                let message = match e {
                    NotSaved::Refused(_) => format!("{job}: {e}; it will run again next time"),
                    NotSaved::Lost(_) => format!("{job}: cannot save its record: {e}; it will run again next time"),
                };
                self.sink.emit(Event::NodeNotice { node: self.node.name.clone(), message }).await;
            }
            for event in unsaved.reports {
                self.sink.emit(event).await;
            }
        }
        result.map_err(|e| e.to_string())
    }

    /// Sends the cache as the node's new base if its journal is due to be folded into it
    /// (the executor greeted with both and parsed neither: see [`Request::Compact`]), before
    /// any append of this run. The node refuses it if another run changed its cache meanwhile;
    /// the journal is then folded by a later run. The cache's text is held only until sent.
    async fn compact(&self) {
        let state = self.state();
        let _turn = state.save.lock().await;
        let Some(text) = state.cache().take_compaction() else { return };
        match self.home.compact(text).await {
            Ok(Done::Ok) => {}
            Ok(done) => tracing::info!(node = %self.node.name, "the node cache was not folded: {done:?}"),
            Err(e) => tracing::info!(node = %self.node.name, "the node cache was not folded: {e}"),
        }
    }

    /// The node's saver: sends what [`Cx::save_soon`] queues while the node's jobs go on,
    /// until `finished` is set, then what is left. With `compact`, it first sends the cache
    /// folded whole when the journal it was read with is due to be folded into its base
    /// ([`Cx::compact`]).
    pub async fn saving(&self, finished: &std::sync::atomic::AtomicBool, compact: bool) {
        let state = self.state();
        if compact {
            Box::pin(self.compact()).await;
        }
        loop {
            let woken = state.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let done = finished.load(std::sync::atomic::Ordering::SeqCst);
            if !lock(&state.unsaved).is_empty() {
                // Boxed while it runs: the saver waits beside every node's jobs for the
                // whole run, and a flush's future (1.3 KB) is there only while it sends.
                let _ = Box::pin(self.flush()).await;
                continue;
            }
            if done {
                return;
            }
            woken.await;
        }
    }

    /// A request to the job's executor that is answered `Ok`: its failure, if it failed.
    pub async fn done(&self, make: impl FnOnce(u64) -> Request) -> Result<(), String> {
        match self.session.call(make).await? {
            Done::Ok => Ok(()),
            Done::Failed { message } => Err(message),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// A request to the job's executor that is answered with a text.
    pub async fn text(&self, make: impl FnOnce(u64) -> Request) -> Result<String, String> {
        match self.session.call(make).await? {
            Done::Text { data } => Ok(data),
            Done::Failed { message } => Err(message),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// After the node was told to reboot: waits for it to go down and come back within
    /// `within`, its executors started again there ([`Relink`]); returns when the link
    /// dropped and when the node answered again.
    pub async fn reconnect(&self, within: Duration) -> Result<(Duration, Duration), String> {
        self.relink.relink(self, within).await
    }

    /// Asks the node, in one write, for the stats of `paths`, which jobs about to be looked up
    /// will want to check their records against ([`crate::verb::Verb::probes`]): an entry of
    /// cached jobs costs one round trip to the node, not one per job. An answer is used only
    /// while no job has changed the node since it was asked ([`Cx::moved`]); a path asked for
    /// and not wanted costs the node a stat.
    pub async fn look_ahead(&self, paths: Vec<String>) {
        let (paths, generation) = lock(&self.state().ahead).unasked(paths);
        if paths.is_empty() {
            return;
        }
        let makes: Vec<_> = paths.iter().cloned().map(stat_of).collect();
        // Not sent (the link is gone): each job asks for itself, and hears why.
        if let Ok(asked) = self.session.ask_all(makes).await {
            lock(&self.state().ahead).file(generation, paths.into_iter().zip(asked));
        }
    }

    /// A job is about to do something on the node: what was asked ahead no longer holds.
    pub fn moved(&self) {
        lock(&self.state().ahead).moved();
    }

    /// What is at `path` on the node (`None`: nothing), without its text.
    pub async fn stat(&self, path: &str) -> Result<Option<FileStat>, String> {
        let asked = lock(&self.state().ahead).take_stat(path, self.session);
        let done = match asked {
            Some(asked) => asked.done().await?,
            None => self.session.call(stat_of(path.to_string())).await?,
        };
        match done {
            Done::Stat { stat } => Ok(stat.map(|s| *s)),
            Done::Failed { message } => Err(message),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// Runs `command` with `/bin/sh` on the node as the job, streaming its output as the
    /// job's events; `env` is set on top of the executor's environment.
    pub async fn command(&self, job: JobRef, command: &str, env: Vec<(String, String)>, cancel: &mut Cancel) -> Finish {
        self.checked_command(job, None, command, env, cancel).await.0
    }

    /// [`Cx::command`] after `check` (see [`Request::Run`]): when the check passes the
    /// command does not run and the job is `cached` ([`Checked::Held`]); when it fails, its
    /// output is why the command ran ([`Checked::Unheld`]), kept as the finish's `drift` (the
    /// engine says it when the node had a record of the job).
    pub async fn checked_command(
        &self,
        job: JobRef,
        check: Option<String>,
        command: &str,
        env: Vec<(String, String)>,
        cancel: &mut Cancel,
    ) -> (Finish, Checked) {
        let ran = self.run_command(job, check, command, env, cancel).await;
        let checked = ran.checked;
        let (status, exit_code, reason) = match ran.outcome {
            Ok(Outcome::Held) => (JobStatus::Cached, None, None),
            Ok(Outcome::Exited { code: 0 }) => (JobStatus::Ok, Some(0), None),
            Ok(Outcome::Exited { code }) => (JobStatus::Failed, Some(code), Some(format!("exited with code {code}"))),
            Ok(Outcome::Signaled { signal }) => (JobStatus::Failed, None, Some(format!("killed by signal {signal}"))),
            Ok(Outcome::TimedOut) => {
                (JobStatus::TimedOut, None, Some(format!("timed out after {} s", job.timeout.as_secs())))
            }
            Ok(Outcome::Cancelled) => (JobStatus::Cancelled, None, Some("cancelled".to_string())),
            Ok(Outcome::SpawnFailed { message }) => {
                (JobStatus::Failed, None, Some(format!("could not start /bin/sh: {message}")))
            }
            Err(lost) => (JobStatus::Failed, None, Some(lost)),
        };
        let drift = match &checked {
            Checked::Unheld(why) => Some(why.clone()),
            _ => None,
        };
        (Finish { status, exit_code, reason, stdout: ran.stdout, stderr: ran.stderr, drift, ..Finish::ok("") }, checked)
    }

    /// [`Cx::checked_command`], then the command alone again, a second apart, while it fails,
    /// up to `attempts` runs in all.
    pub async fn retried_command(
        &self,
        job: JobRef,
        check: Option<String>,
        command: &str,
        env: Vec<(String, String)>,
        cancel: &mut Cancel,
        attempts: u32,
    ) -> (Finish, Checked) {
        let (mut finish, checked) = self.checked_command(job, check, command, env.clone(), cancel).await;
        for _ in 1..attempts {
            if finish.status != JobStatus::Failed || *cancel.borrow() != CancelLevel::None {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let drift = finish.drift.take();
            finish = Finish { drift, ..self.command(job, command, env.clone(), cancel).await };
        }
        (finish, checked)
    }

    async fn run_command(
        &self,
        job: JobRef,
        check: Option<String>,
        command: &str,
        env: Vec<(String, String)>,
        cancel: &mut Cancel,
    ) -> Ran {
        let checked = if check.is_some() { Checked::Held } else { Checked::None };
        let mut ran = Ran { outcome: Err(String::new()), stdout: String::new(), stderr: String::new(), checked };
        let (id, mut replies) = match self.session.run(command.to_string(), check, env, job.left()).await {
            Ok(x) => x,
            Err(e) => {
                ran.outcome = Err(e);
                return ran;
            }
        };
        let mut kill_sent = false;
        loop {
            let step = tokio::select! {
                reply = replies.recv() => Step::Reply(reply),
                changed = cancel.changed(), if !kill_sent => match changed {
                    Ok(()) if *cancel.borrow() >= CancelLevel::Kill => Step::Cancel,
                    Ok(()) => continue,
                    Err(_) => { kill_sent = true; continue }
                },
            };
            match step {
                Step::Cancel => {
                    kill_sent = true;
                    self.session.cancel(id).await;
                }
                Step::Reply(None) => {
                    ran.outcome =
                        Err(self.session.lost().unwrap_or_else(|| "connection to the executor lost".to_string()));
                    return ran;
                }
                Step::Reply(Some(Reply::Output { stream, data, .. })) => {
                    let (stream, keep) = match stream {
                        director_proto::Stream::Stdout => (Stream::Stdout, &mut ran.stdout),
                        director_proto::Stream::Stderr => (Stream::Stderr, &mut ran.stderr),
                    };
                    if keep.len() < CAPTURE_LIMIT {
                        keep.push_str(&data);
                    }
                    self.sink.emit(Event::JobOutput { node: self.node.name.clone(), job: job.id, stream, data }).await;
                }
                Step::Reply(Some(Reply::Unheld { why, .. })) => {
                    let why = if why.is_empty() { "its check on the node failed".to_string() } else { why };
                    ran.checked = Checked::Unheld(why);
                }
                Step::Reply(Some(Reply::Finished { outcome, .. })) => {
                    ran.outcome = Ok(outcome);
                    return ran;
                }
                Step::Reply(Some(_)) => {}
            }
        }
    }
}

/// How a job ended on the node.
pub struct Finish {
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub stdout: String,
    pub stderr: String,
    /// The node cache changed, so it must be saved.
    pub dirty: bool,
    /// The files it wrote: (path, sha3-224), for the record.
    pub files: Vec<(String, String)>,
    /// Answered from the job records: its captured args were restored, not re-captured.
    pub hit: bool,
    /// The node no longer matched the record of this job (why): it ran again.
    pub drift: Option<String>,
}

impl Finish {
    pub fn ok(stdout: impl Into<String>) -> Self {
        Finish {
            status: JobStatus::Ok,
            exit_code: None,
            reason: None,
            stdout: stdout.into(),
            stderr: String::new(),
            dirty: false,
            files: Vec::new(),
            hit: false,
            drift: None,
        }
    }

    pub fn would_run(reason: impl Into<String>) -> Self {
        Finish { status: JobStatus::WouldRun, reason: Some(reason.into()), ..Finish::ok("") }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        Finish { status: JobStatus::Failed, reason: Some(reason.into()), ..Finish::ok("") }
    }

    pub fn timed_out(reason: impl Into<String>) -> Self {
        Finish { status: JobStatus::TimedOut, reason: Some(reason.into()), ..Finish::ok("") }
    }

    /// A cache-only verb: `cached` when nothing changed.
    pub fn cache_only(changed: bool, stdout: impl Into<String>) -> Self {
        Finish { status: if changed { JobStatus::Ok } else { JobStatus::Cached }, dirty: changed, ..Finish::ok(stdout) }
    }
}

/// What one command on the node ended with, and what it printed (kept for the args).
struct Ran {
    outcome: Result<Outcome, String>,
    stdout: String,
    stderr: String,
    checked: Checked,
}

/// What a command's check found.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// There was no check.
    None,
    /// It passed: the command did not run.
    Held,
    /// It failed, printing this: the command ran.
    Unheld(String),
}

/// Internal events of one command, so the select above only translates inputs.
enum Step {
    Reply(Option<Reply>),
    Cancel,
}

/// The request for what is at `path`, without its text (a job's check of its record).
fn stat_of(path: String) -> impl FnOnce(u64) -> Request {
    move |id| Request::Stat { id, path, text_limit: 0 }
}

/// Journal text at least this large goes packed when that makes it a quarter smaller: a
/// QUERY's map of every node, which each node keeps, is the largest thing a run sends to a
/// node, and the SSH connection keeps a write buffer the size of its largest burst.
const PACK_LINES: usize = 4 * 1024;

/// A batch of journal lines cut into the pieces of its requests: at most
/// [`director_proto::journal::APPEND_CHUNK`] bytes each, cut anywhere but inside a character
/// (the node joins them before it appends: see [`Request::AppendCache`]'s `more`); and
/// whether their text is [`director_proto::pack_text`]ed.
fn journal_pieces(lines: Vec<String>) -> (Vec<String>, bool) {
    // One piece, the common case, is the text itself: no copy of it beyond joining the lines.
    let mut text = match <[String; 1]>::try_from(lines) {
        Ok([line]) => line,
        Err(lines) => lines.concat(),
    };
    let mut packed = false;
    if text.len() >= PACK_LINES {
        let small = director_proto::pack_text(&text);
        if small.len() < text.len() - text.len() / 4 {
            (text, packed) = (small, true);
        }
    }
    (cut_pieces(text), packed)
}

fn cut_pieces(text: String) -> Vec<String> {
    if text.len() <= director_proto::journal::APPEND_CHUNK {
        return if text.is_empty() { Vec::new() } else { vec![text] };
    }
    let mut pieces = Vec::with_capacity(text.len() / director_proto::journal::APPEND_CHUNK + 1);
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(director_proto::journal::APPEND_CHUNK);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    pieces
}

/// Why the node's journal did not take a batch of changes.
enum NotSaved {
    /// The node answered and refused (its disk, its limits).
    Refused(String),
    /// The node was not reached (the link dropped).
    Lost(String),
}

impl std::fmt::Display for NotSaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotSaved::Refused(message) => write!(f, "cannot save the node cache: {message}"),
            NotSaved::Lost(e) => f.write_str(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{cut_pieces, journal_pieces, PACK_LINES};
    use director_proto::journal::APPEND_CHUNK;

    #[test]
    fn journal_lines_go_in_pieces_below_the_chunk_size_cut_between_characters() {
        let line = |n: usize| format!("{}\n", "é".repeat(n / 2));
        let lines = [line(APPEND_CHUNK / 2), line(10), line(3 * APPEND_CHUNK), line(10)];
        let pieces = cut_pieces(lines.concat());
        assert_eq!(pieces.concat(), lines.concat());
        assert_eq!(pieces.len(), 4);
        // Full pieces but the last; a piece ends a byte short rather than cut a character.
        let sizes: Vec<usize> = pieces.iter().map(String::len).collect();
        assert!(sizes[..3].iter().all(|&n| n == APPEND_CHUNK || n == APPEND_CHUNK - 1), "{sizes:?}");
        assert!(sizes[3] < APPEND_CHUNK);
        assert!(journal_pieces(Vec::new()).0.is_empty());
        assert!(journal_pieces(vec![String::new()]).0.is_empty());
        // A batch under the chunk size is one piece, whether one line or several.
        assert_eq!(journal_pieces(vec![line(10)]), (vec![line(10)], false));
        assert_eq!(journal_pieces(vec![line(10), line(4)]), (vec![line(10) + &line(4)], false));
        // Each piece, even all quotes, travels in a frame.
        const { assert!(2 * APPEND_CHUNK + 64 < director_proto::MAX_FRAME) };
    }

    #[test]
    fn a_large_batch_that_packs_well_goes_packed_and_in_pieces() {
        // A QUERY's map of 1,000 nodes, kept by each of them.
        let map: String = (0..1000).map(|i| format!("\"h{i}\":{{\"app_user\":\"root\"}},")).collect();
        let line = format!("{{\"s\":\"args\",\"k\":\"query\",\"v\":{{{map}}}}}\n");
        let (pieces, packed) = journal_pieces(vec![line.clone()]);
        assert!(packed);
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].len() < line.len() / 2, "{} of {}", pieces[0].len(), line.len());
        assert_eq!(director_proto::unpack_text(&pieces[0]).unwrap(), line);
        // Past the chunk size, the packed text is cut like any other (the node joins it first).
        let big: Vec<String> = (0..40).map(|_| line.clone()).collect();
        let (pieces, packed) = journal_pieces(big.clone());
        assert!(packed);
        assert_eq!(director_proto::unpack_text(&pieces.concat()).unwrap(), big.concat());
        // Small, or not worth it: as it is.
        let small = "x".repeat(PACK_LINES - 1);
        assert_eq!(journal_pieces(vec![small.clone()]), (vec![small], false));
        let noise: String = crate::node::noise(8000).iter().map(|b| char::from(b'a' + b % 26)).collect();
        assert_eq!(journal_pieces(vec![noise.clone()]), (vec![noise], false));
    }
}
