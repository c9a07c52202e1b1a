//! Writes a run's events into the history, on a thread of its own.
//!
//! The recorder is one more consumer of the engine's events (beside the frontends), so the
//! history holds exactly what the user saw. Events queue on a channel; the thread writes each
//! batch in one transaction, at most one every `COMMIT_GAP`, so a fleet's worth of results
//! costs a few commits, not one per event. Output is kept per job and node, capped at
//! [`KEEP_HEAD`] + [`KEEP_TAIL`] bytes per stream: the start and the end, with a marker
//! saying how much was cut between them. It is cut as it comes, on the caller's side, so the
//! queue to the thread never holds more of it than that.
//!
//! Every `CANCEL_CHECK` the thread checks whether `manage --cancel` asked this run to stop,
//! and says so once through the channel it was given.

use super::store::{self, args};
use super::{now_ms, History, ResultStatus, RunSpec, RunStatus};
use crate::error::Error;
use crate::event::{Event, JobStatus, NodeOutcome, Stream};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The least time between two commits: events that come meanwhile share the next one (a run
/// of short jobs on a few nodes would otherwise commit once per event).
const COMMIT_GAP: Duration = Duration::from_millis(20);
/// Most events in one commit.
const MAX_BATCH: usize = 2000;
/// How often a writer whose database failed tries again (connecting anew on PostgreSQL).
const RETRY: Duration = Duration::from_secs(2);
/// How long the end of a run waits for a database that does not answer.
const LAST_WAIT: Duration = Duration::from_secs(10);
/// Most events kept while the database does not answer (the oldest go first).
const MAX_BACKLOG: usize = 500_000;
/// How often the thread asks whether `manage --cancel` asked this run to stop.
const CANCEL_CHECK: Duration = Duration::from_millis(300);

/// Bytes kept from the start of a job's stdout or stderr.
pub(crate) const KEEP_HEAD: usize = 32 * 1024;
/// Bytes kept from the end.
pub(crate) const KEEP_TAIL: usize = 32 * 1024;

enum Msg {
    Event(Event, i64),
    /// What a job printed on a node, as kept ([`Capped`]): sent just before its end.
    Output {
        node: String,
        job: usize,
        kept: Box<(Capped, Capped)>,
    },
    Close,
}

/// What a job on a node printed, kept as the history keeps it: its start and its end.
type Kept = HashMap<(String, usize), (Capped, Capped)>;

pub(crate) struct Recorder {
    tx: mpsc::Sender<Msg>,
    started: Instant,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Output is cut to what is kept here, as it comes, and only that goes to the writer
    /// thread: its queue never holds a job's whole output.
    output: Kept,
}

impl Recorder {
    /// Starts the thread; `cancelled` hears once when another terminal cancels the run.
    pub(crate) fn start(
        history: History,
        spec: &RunSpec,
        cancelled: tokio::sync::mpsc::UnboundedSender<()>,
    ) -> Result<Recorder, Error> {
        let (tx, rx) = mpsc::channel();
        let mut state = State::new(history, spec);
        let thread = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || state.serve(rx, cancelled))
            .map_err(|e| Error::internal(format!("cannot start the history writer: {e}")))?;
        Ok(Recorder { tx, started: Instant::now(), thread: Some(thread), output: Kept::new() })
    }

    pub(crate) fn record(&mut self, event: &Event) {
        match event {
            Event::JobOutput { node, job, stream, data } => {
                let kept = self.output.entry((node.clone(), *job)).or_default();
                match stream {
                    Stream::Stdout => kept.0.push(data),
                    Stream::Stderr => kept.1.push(data),
                }
                return;
            }
            Event::JobFinished { node, job, .. } => {
                if let Some(kept) = self.output.remove(&(node.clone(), *job)) {
                    let _ = self.tx.send(Msg::Output { node: node.clone(), job: *job, kept: Box::new(kept) });
                }
            }
            _ => {}
        }
        let _ = self.tx.send(Msg::Event(event.clone(), self.started.elapsed().as_millis() as i64));
    }

    /// Writes what is queued and stops the thread.
    pub(crate) fn close(mut self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The start and the end of a stream, and how much was cut between them.
#[derive(Default)]
struct Capped {
    head: String,
    tail: String,
    cut: u64,
}

impl Capped {
    fn push(&mut self, data: &str) {
        let mut data = data;
        if self.head.len() < KEEP_HEAD {
            let room = KEEP_HEAD - self.head.len();
            let take = floor_char(data, room);
            self.head.push_str(&data[..take]);
            data = &data[take..];
        }
        self.tail.push_str(data);
        if self.tail.len() > 2 * KEEP_TAIL {
            let drop = ceil_char(&self.tail, self.tail.len() - KEEP_TAIL);
            self.cut += drop as u64;
            self.tail.drain(..drop);
        }
    }

    /// The text kept (start, marker, end) and how many bytes were cut.
    fn finish(&self) -> (String, u64) {
        let (mut tail, mut cut) = (self.tail.as_str(), self.cut);
        if tail.len() > KEEP_TAIL {
            let drop = ceil_char(tail, tail.len() - KEEP_TAIL);
            cut += drop as u64;
            tail = &tail[drop..];
        }
        if cut == 0 {
            return (format!("{}{tail}", self.head), 0);
        }
        (format!("{}\n[… director: {cut} bytes cut here …]\n{tail}", self.head), cut)
    }
}

fn floor_char(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at += 1;
    }
    at
}

struct State {
    history: History,
    run: String,
    job_ids: Vec<String>,
    targets: Vec<Vec<String>>,
    addresses: HashMap<String, String>,
    output: Kept,
    cancel_seen: bool,
    /// Events not yet written, in order: a failed write waits here for the next try.
    backlog: Vec<(Event, i64)>,
    /// Since when writing fails, when it was last tried, and why.
    failing: Option<(Instant, Instant, String)>,
    /// Events dropped from a backlog over [`MAX_BACKLOG`].
    lost: usize,
}

impl State {
    fn new(history: History, spec: &RunSpec) -> Self {
        State {
            history,
            run: spec.id.clone(),
            job_ids: spec.jobs.iter().map(|j| spec.job_id(j.seq)).collect(),
            targets: spec.jobs.iter().map(|j| j.targets.clone()).collect(),
            addresses: spec.nodes.iter().cloned().collect(),
            output: HashMap::new(),
            cancel_seen: false,
            backlog: Vec::new(),
            failing: None,
            lost: 0,
        }
    }

    fn serve(&mut self, rx: mpsc::Receiver<Msg>, cancelled: tokio::sync::mpsc::UnboundedSender<()>) {
        let mut open = true;
        // Far enough in the past that the first batch goes at once.
        let mut written = Instant::now() - COMMIT_GAP;
        let mut checked = Instant::now();
        while open {
            let mut batch = Vec::new();
            match rx.recv_timeout(CANCEL_CHECK) {
                Ok(msg) => open = self.take(msg, &mut batch),
                Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            // What comes within the gap since the last commit joins this one.
            while open && !batch.is_empty() && batch.len() < MAX_BATCH {
                // Past the gap, a zero wait takes only what is already queued.
                match rx.recv_timeout(COMMIT_GAP.saturating_sub(written.elapsed())) {
                    Ok(msg) => open = self.take(msg, &mut batch),
                    Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                }
            }
            if !batch.is_empty() || (!open && !self.backlog.is_empty()) {
                self.backlog.extend(batch);
                self.flush(false);
                // At the run's end the history gets a while to come back: the run's end is
                // what tells other operators its nodes are free.
                let end = Instant::now() + LAST_WAIT;
                while !open && self.failing.is_some() && Instant::now() < end {
                    std::thread::sleep(RETRY.min(end.saturating_duration_since(Instant::now())));
                    self.flush(Instant::now() >= end);
                }
                written = Instant::now();
            }
            if !self.cancel_seen && checked.elapsed() >= CANCEL_CHECK {
                checked = Instant::now();
                if self.cancel_requested() {
                    self.cancel_seen = true;
                    let _ = cancelled.send(());
                }
            }
        }
    }

    /// Writes the backlog. When the database does not take it (a PostgreSQL server gone),
    /// the run goes on: that is said once, the events wait, and every `RETRY` the writer
    /// connects again and writes them all, in order; `last` is the last try, at the run's end.
    fn flush(&mut self, last: bool) {
        if let Some((since, tried, _)) = &self.failing {
            if !last && tried.elapsed() < RETRY {
                return;
            }
            let since = *since;
            if let Err(e) = self.history.reconnect(&self.run) {
                self.failing = Some((since, Instant::now(), e.to_string()));
                return self.give_up(last);
            }
        }
        let pending = std::mem::take(&mut self.backlog);
        match self.write(&pending) {
            Ok(()) => {
                if let Some((since, _, _)) = self.failing.take() {
                    eprintln!(
                        "the run history {} records this run again ({} events written {} s late)",
                        self.history.location,
                        pending.len(),
                        since.elapsed().as_secs()
                    );
                }
            }
            Err(e) => {
                self.backlog = pending;
                if self.backlog.len() > MAX_BACKLOG {
                    let over = self.backlog.len() - MAX_BACKLOG;
                    self.backlog.drain(..over);
                    self.lost += over;
                }
                match &mut self.failing {
                    Some((_, tried, _)) => *tried = Instant::now(),
                    None => {
                        // The run goes on; the history says what it could. Only stderr is ours here.
                        eprintln!(
                            "warning: the run history {} cannot record this run's events ({e}); the run goes on, and they are written when it answers again",
                            self.history.location
                        );
                        self.failing = Some((Instant::now(), Instant::now(), e.to_string()));
                    }
                }
                self.give_up(last);
            }
        }
    }

    /// At the run's end, says what the history will never have.
    fn give_up(&self, last: bool) {
        if last && (!self.backlog.is_empty() || self.lost > 0) {
            let why = self.failing.as_ref().map(|(_, _, e)| e.as_str()).unwrap_or_default();
            eprintln!(
                "warning: the run history {} misses {} events of run {} ({why})",
                self.history.location,
                self.backlog.len() + self.lost,
                self.run
            );
        }
    }

    /// Takes one message: an event joins `batch`, a job's output is kept for its end. Returns
    /// whether the channel is still open (`Close` ends it).
    fn take(&mut self, msg: Msg, batch: &mut Vec<(Event, i64)>) -> bool {
        match msg {
            Msg::Event(e, at) => batch.push((e, at)),
            Msg::Output { node, job, kept } => {
                self.output.insert((node, job), *kept);
            }
            Msg::Close => return false,
        }
        true
    }

    fn cancel_requested(&self) -> bool {
        self.history
            .store()
            .one::<i64>("SELECT cancel_requested FROM runs WHERE id = ?1", args![&self.run])
            .is_ok_and(|v| v != 0)
    }

    /// Writes `pending` in one transaction; the outputs of the jobs it ends are let go once
    /// it commits (a failed write is written again, whole, later).
    fn write(&mut self, pending: &[(Event, i64)]) -> store::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let run = self.run.clone();
        let now = now_ms();
        let tx = self.history.store().begin_writes()?;
        let mut ended = Vec::new();
        for (event, at) in pending {
            let at = *at;
            match event {
                Event::BatchStarted { batch, nodes, .. } => {
                    for node in nodes {
                        tx.exec(
                            "UPDATE run_nodes SET batch = ?1 WHERE run_id = ?2 AND node = ?3",
                            args![*batch as i64, &run, node],
                        )?;
                    }
                }
                Event::NodeConnecting { node, address } => {
                    self.addresses.insert(node.clone(), address.clone());
                }
                Event::NodeReady { node, arch, os, kernel, hostname, .. } => {
                    let address = self.addresses.get(node).cloned().unwrap_or_default();
                    tx.exec("INSERT INTO nodes (name, address, arch, os, kernel, hostname, executor_sha3, last_seen, last_run) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT(name) DO UPDATE SET address = ?2, arch = ?3, os = ?4, kernel = ?5, hostname = ?6, executor_sha3 = ?7, last_seen = ?8, last_run = ?9",
                        args![node, address, arch, os, kernel, hostname, crate::transport::executor::for_arch(arch).map(|e| e.sha3).unwrap_or_default(), now, &run],
                    )?;
                }
                Event::NodeUnreachable { node, error } => {
                    tx.exec(
                        "UPDATE run_nodes SET outcome = 'unreachable', error = ?3 WHERE run_id = ?1 AND node = ?2",
                        args![&run, node, error],
                    )?;
                    for (seq, targets) in self.targets.iter().enumerate() {
                        if targets.contains(node) {
                            tx.exec("INSERT INTO results (job_id, node, status, reason, finished_at, roundtrip_ms) VALUES (?1, ?2, 'unreachable', ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                                args![&self.job_ids[seq], node, error, now, at],
                            )?;
                        }
                    }
                }
                Event::JobStarted { node, job, fingerprint, info, .. } => {
                    tx.exec("INSERT INTO results (job_id, node, status, fingerprint, info, started_at) VALUES (?1, ?2, 'running', ?3, ?4, ?5)
                         ON CONFLICT(job_id, node) DO UPDATE SET status = 'running', fingerprint = ?3, info = ?4, started_at = ?5, reason = NULL,
                           exit_code = NULL, stdout = '', stdout_cut = 0, stderr = '', stderr_cut = 0, finished_at = NULL, execution_ms = NULL, roundtrip_ms = NULL",
                        args![&self.job_ids[*job], node, fingerprint, info, now],
                    )?;
                }
                Event::JobFinished { node, job, status, exit_code, reason, ms, .. } => {
                    let key = (node.clone(), *job);
                    let ((stdout, stdout_cut), (stderr, stderr_cut)) = match self.output.get(&key) {
                        Some((out, err)) => (out.finish(), err.finish()),
                        None => ((String::new(), 0), (String::new(), 0)),
                    };
                    ended.push(key);
                    tx.exec("INSERT INTO results (job_id, node, status, reason, exit_code, stdout, stdout_cut, stderr, stderr_cut, finished_at, execution_ms, roundtrip_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                         ON CONFLICT(job_id, node) DO UPDATE SET status = ?3, reason = ?4, exit_code = ?5, stdout = ?6, stdout_cut = ?7, stderr = ?8,
                           stderr_cut = ?9, finished_at = ?10, execution_ms = ?11, roundtrip_ms = ?12",
                        args![&self.job_ids[*job], node, status.as_str(), reason, *exit_code, stdout, stdout_cut as i64, stderr, stderr_cut as i64, now, *ms as i64, at],
                    )?;
                }
                Event::NodeFinished { node, outcome, .. } => {
                    let outcome = outcome.as_str();
                    tx.exec(
                        "UPDATE run_nodes SET outcome = ?3 WHERE run_id = ?1 AND node = ?2",
                        args![&run, node, outcome],
                    )?;
                }
                Event::RunFinished { summary, exit_code } => {
                    let status = RunStatus::ended(*exit_code);
                    // Whatever never reported (a node the run stopped waiting for) ends with the run.
                    let (node_ended, ended) = match status {
                        RunStatus::Cancelled => (NodeOutcome::Cancelled, JobStatus::Cancelled),
                        _ => (NodeOutcome::Failed, JobStatus::Failed),
                    };
                    tx.exec(
                        "UPDATE run_nodes SET outcome = ?2 WHERE run_id = ?1 AND outcome = 'pending'",
                        args![&run, node_ended.as_str()],
                    )?;
                    tx.exec("UPDATE results SET status = ?2 WHERE status = 'running' AND job_id IN (SELECT id FROM jobs WHERE run_id = ?1)", args![&run, ResultStatus::Ended(ended)])?;
                    tx.exec(
                        "UPDATE runs SET status = ?2, ended_at = ?3, exit_code = ?4, summary = ?5 WHERE id = ?1",
                        args![&run, status, now, *exit_code, serde_json::to_string(summary).unwrap_or_default()],
                    )?;
                }
                _ => {}
            }
        }
        tx.commit()?;
        for key in ended {
            self.output.remove(&key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_output_keeps_both_ends_and_says_what_was_cut() {
        let mut c = Capped::default();
        c.push("short");
        assert_eq!(c.finish(), ("short".to_string(), 0));
        let mut c = Capped::default();
        let lines = 700;
        for i in 0..lines {
            c.push(&format!("{i:099}\n"));
        }
        let (text, cut) = c.finish();
        assert_eq!(cut as usize, lines * 100 - KEEP_HEAD - KEEP_TAIL);
        assert!(text.starts_with(&format!("{:099}\n", 0)));
        assert!(text.ends_with(&format!("{:099}\n", lines - 1)));
        assert!(text.contains(&format!("\n[… director: {cut} bytes cut here …]\n")));
    }

    #[test]
    fn cutting_respects_utf8() {
        let mut c = Capped::default();
        for _ in 0..(KEEP_HEAD + KEEP_TAIL) {
            c.push("é");
        }
        let (text, cut) = c.finish();
        assert!(cut > 0);
        assert!(text.len() < KEEP_HEAD + KEEP_TAIL + 100);
    }
}
