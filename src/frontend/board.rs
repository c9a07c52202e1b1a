//! The state of one run as the live views show it: per node where it is (waiting,
//! connecting, running job k of N, done), what it is running and since when, the tail of its
//! output; overall progress and counts; at the end, failures grouped by identical error and
//! the slowest nodes.
//!
//! A plain struct fed events and the time they arrived; it reads no clock and draws nothing,
//! so the inline view, the TUI and their tests share it.

use super::nodeset::{fold, natural};
use crate::event::{Event, JobCounts, JobStatus, NodeOutcome, Stream, Summary};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Bytes of output kept per node for the live tail.
pub(crate) const TAIL_KEEP: usize = 16 * 1024;
/// Lines of output kept with a failure, for grouping and showing.
pub(crate) const FAILURE_LINES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// In the run, not contacted yet.
    Waiting,
    Connecting,
    /// The executor answered; no job started yet.
    Ready,
    Running,
    Ok,
    Failed,
    Cancelled,
    Unreachable,
    /// Not attempted ([`crate::event::NodeOutcome::Skipped`]).
    Skipped,
}

impl Phase {
    pub fn word(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Connecting => "connecting",
            Phase::Ready => "ready",
            Phase::Running => "running",
            Phase::Ok => "ok",
            Phase::Failed => "failed",
            Phase::Cancelled => "cancelled",
            Phase::Unreachable => "unreachable",
            Phase::Skipped => "skipped",
        }
    }

    pub fn done(self) -> bool {
        matches!(self, Phase::Ok | Phase::Failed | Phase::Cancelled | Phase::Unreachable | Phase::Skipped)
    }
}

/// A job running on a node.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub job: usize,
    pub name: String,
    pub since: Instant,
}

#[derive(Debug, Clone)]
pub struct NodeBoard {
    pub name: String,
    pub phase: Phase,
    /// Jobs this node has in the plan, and how many have finished.
    pub total: usize,
    pub done: usize,
    pub running: Vec<InFlight>,
    pub first_seen: Option<Instant>,
    pub finished_at: Option<Instant>,
    pub last_output: Option<Instant>,
    pub tail: String,
    /// The first failure or the unreachable error, for a person.
    pub error: Option<String>,
    pub counts: JobCounts,
}

impl NodeBoard {
    fn new(name: &str, total: usize) -> NodeBoard {
        NodeBoard {
            name: name.to_string(),
            phase: Phase::Waiting,
            total,
            done: 0,
            running: Vec::new(),
            first_seen: None,
            finished_at: None,
            last_output: None,
            tail: String::new(),
            error: None,
            counts: JobCounts::default(),
        }
    }
}

/// One failure as compared for grouping: the same job, exit code and error output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailureKey {
    pub job: String,
    pub status: String,
    pub exit_code: Option<i32>,
    /// The reason, then the last lines of stderr (stdout when stderr is empty).
    pub text: String,
}

/// Nodes that failed the same way, shown once (`dshbak -c`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureGroup {
    pub key: FailureKey,
    pub nodes: Vec<String>,
    /// The job's number in the run (from the first node), to open its record.
    pub job: Option<usize>,
}

/// One job's nodes that ended the same way with the same output, for the finished run's
/// view (as the text report groups them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultGroup {
    /// The nodes, folded (`web[1-3]`).
    pub nodes: String,
    pub count: usize,
    pub status: JobStatus,
    pub reason: Option<String>,
    /// The last [`RESULT_LINES`] lines of what the job printed (stdout, then stderr).
    pub output: String,
}

/// Lines of output a result group keeps.
pub(crate) const RESULT_LINES: usize = 6;

/// One job's nodes by (status, reason, output).
type Outcomes = BTreeMap<(JobStatus, Option<String>, String), Vec<String>>;

/// Every job's result groups, in job order.
pub(crate) type JobResults = Vec<(usize, String, Vec<ResultGroup>)>;

#[derive(Debug, Clone, Default)]
struct Pending {
    stdout: String,
    stderr: String,
}

#[derive(Debug, Clone)]
pub struct Board {
    pub run: String,
    pub started: Option<Instant>,
    pub finished: Option<(Summary, i32)>,
    pub nodes: Vec<NodeBoard>,
    index: HashMap<String, usize>,
    pub jobs_total: usize,
    pub counts: JobCounts,
    failures: BTreeMap<FailureKey, (Vec<String>, Option<usize>)>,
    outputs: HashMap<(usize, usize), Pending>,
    /// The cancel level asked for, for the header.
    pub cancel: crate::node::CancelLevel,
    /// `--serial`: the batch running (from 1) and how many there are.
    pub batch: Option<(usize, usize)>,
    /// Per job: its name, and (status, reason, output) → nodes.
    results: BTreeMap<usize, (String, Outcomes)>,
}

impl Default for Board {
    fn default() -> Self {
        Board::new()
    }
}

impl Board {
    /// An empty board: the run's `run_started` event gives it its nodes and their jobs.
    pub fn new() -> Board {
        Board {
            run: String::new(),
            started: None,
            finished: None,
            index: HashMap::new(),
            jobs_total: 0,
            nodes: Vec::new(),
            counts: JobCounts::default(),
            failures: BTreeMap::new(),
            outputs: HashMap::new(),
            cancel: crate::node::CancelLevel::None,
            batch: None,
            results: BTreeMap::new(),
        }
    }

    pub fn node(&self, name: &str) -> Option<&NodeBoard> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    fn slot(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.nodes.push(NodeBoard::new(name, 0));
        self.index.insert(name.to_string(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    pub fn nodes_done(&self) -> usize {
        self.nodes.iter().filter(|n| n.phase.done()).count()
    }

    pub fn running(&self) -> bool {
        self.finished.is_none()
    }

    /// How long the run has gone (or went).
    pub fn elapsed(&self, now: Instant) -> Duration {
        if let Some((summary, _)) = &self.finished {
            return Duration::from_millis(summary.elapsed_ms);
        }
        self.started.map(|s| now.saturating_duration_since(s)).unwrap_or_default()
    }

    pub fn handle(&mut self, event: &Event, at: Instant) {
        match event {
            Event::RunStarted { run, nodes, node_jobs, tasks, .. } => {
                self.run = run.clone();
                self.started = Some(at);
                self.jobs_total = *tasks;
                for (n, &jobs) in nodes.iter().zip(node_jobs) {
                    let i = self.slot(n);
                    self.nodes[i].total = jobs;
                }
            }
            Event::BatchStarted { batch, batches, .. } => self.batch = Some((*batch, *batches)),
            Event::NodeConnecting { node, .. } => {
                let i = self.slot(node);
                let n = &mut self.nodes[i];
                n.phase = Phase::Connecting;
                n.first_seen.get_or_insert(at);
            }
            Event::NodeConnected { .. }
            | Event::NodeNotice { .. }
            | Event::HostKeyRecorded { .. }
            | Event::ExecutorUploaded { .. } => {}
            Event::NodeReady { node, .. } => {
                let i = self.slot(node);
                let n = &mut self.nodes[i];
                if n.phase < Phase::Ready {
                    n.phase = Phase::Ready;
                }
                n.first_seen.get_or_insert(at);
            }
            Event::NodeUnreachable { node, error } => {
                let i = self.slot(node);
                let n = &mut self.nodes[i];
                n.phase = Phase::Unreachable;
                n.finished_at = Some(at);
                n.running.clear();
                n.error = Some(error.clone());
                let key = FailureKey {
                    job: "(connect)".into(),
                    status: "unreachable".into(),
                    exit_code: None,
                    text: error.clone(),
                };
                self.failures.entry(key).or_default().0.push(node.clone());
            }
            Event::JobStarted { node, job, name, .. } => {
                let i = self.slot(node);
                let n = &mut self.nodes[i];
                n.phase = Phase::Running;
                n.first_seen.get_or_insert(at);
                n.running.push(InFlight { job: *job, name: name.clone(), since: at });
            }
            Event::JobOutput { node, job, stream, data } => {
                let i = self.slot(node);
                let n = &mut self.nodes[i];
                n.last_output = Some(at);
                keep(&mut n.tail, data, TAIL_KEEP);
                let pending = self.outputs.entry((i, *job)).or_default();
                match stream {
                    Stream::Stdout => keep(&mut pending.stdout, data, TAIL_KEEP),
                    Stream::Stderr => keep(&mut pending.stderr, data, TAIL_KEEP),
                }
            }
            Event::JobFinished { node, job, name, status, exit_code, reason, .. } => {
                let i = self.slot(node);
                let pending = self.outputs.remove(&(i, *job)).unwrap_or_default();
                let n = &mut self.nodes[i];
                n.running.retain(|r| r.job != *job);
                n.done += 1;
                n.counts.add(*status);
                self.counts.add(*status);
                if n.running.is_empty() && n.phase == Phase::Running {
                    n.phase = Phase::Ready;
                }
                let all = format!("{}{}", pending.stdout, pending.stderr);
                let lines: Vec<&str> = all.trim_end().lines().collect();
                let output = lines[lines.len().saturating_sub(RESULT_LINES)..].join("\n");
                let entry = self.results.entry(*job).or_insert_with(|| (name.clone(), BTreeMap::new()));
                entry.1.entry((*status, reason.clone(), output)).or_default().push(node.clone());
                if matches!(status, JobStatus::Failed | JobStatus::TimedOut) {
                    let shown = if pending.stderr.trim().is_empty() { &pending.stdout } else { &pending.stderr };
                    let lines: Vec<&str> = shown.trim_end().lines().collect();
                    let mut text = reason.clone().unwrap_or_default();
                    for l in &lines[lines.len().saturating_sub(FAILURE_LINES)..] {
                        text.push('\n');
                        text.push_str(l);
                    }
                    if n.error.is_none() {
                        n.error = Some(format!("{name}: {}", reason.as_deref().unwrap_or("failed")));
                    }
                    let key = FailureKey {
                        job: name.clone(),
                        status: status.as_str().to_string(),
                        exit_code: *exit_code,
                        text,
                    };
                    let entry = self.failures.entry(key).or_default();
                    entry.0.push(node.clone());
                    entry.1.get_or_insert(*job);
                }
            }
            Event::NodeFinished { node, outcome, .. } => {
                let i = self.slot(node);
                let n = &mut self.nodes[i];
                n.running.clear();
                n.finished_at = Some(at);
                n.phase = match outcome {
                    NodeOutcome::Ok => Phase::Ok,
                    NodeOutcome::Cancelled => Phase::Cancelled,
                    NodeOutcome::Failed => Phase::Failed,
                    NodeOutcome::Unreachable => Phase::Unreachable,
                    NodeOutcome::Skipped => Phase::Skipped,
                };
            }
            Event::RunFinished { summary, exit_code } => {
                self.finished = Some((summary.clone(), *exit_code));
                for n in &mut self.nodes {
                    n.running.clear();
                }
            }
        }
    }

    /// Failures grouped by identical error, biggest group first, then by job.
    pub fn failure_groups(&self) -> Vec<FailureGroup> {
        let mut groups: Vec<FailureGroup> = self
            .failures
            .iter()
            .map(|(key, (nodes, job))| FailureGroup { key: key.clone(), nodes: nodes.clone(), job: *job })
            .collect();
        for g in &mut groups {
            g.nodes.sort();
        }
        groups.sort_by(|a, b| {
            b.nodes.len().cmp(&a.nodes.len()).then_with(|| a.job.cmp(&b.job)).then_with(|| a.key.cmp(&b.key))
        });
        groups
    }

    /// Every job's results, its nodes grouped by how they ended and what they printed; the
    /// groups in node order (by their first node, as people sort names).
    pub fn result_groups(&self) -> JobResults {
        self.results
            .iter()
            .map(|(job, (name, outcomes))| {
                let mut groups: Vec<(String, ResultGroup)> = outcomes
                    .iter()
                    .map(|((status, reason, output), nodes)| {
                        let first = nodes.iter().map(|n| natural(n)).min().unwrap_or_default();
                        let group = ResultGroup {
                            nodes: fold(nodes),
                            count: nodes.len(),
                            status: *status,
                            reason: reason.clone(),
                            output: output.clone(),
                        };
                        (first, group)
                    })
                    .collect();
                groups.sort_by(|a, b| a.0.cmp(&b.0));
                (*job, name.clone(), groups.into_iter().map(|(_, g)| g).collect())
            })
            .collect()
    }

    /// The `n` nodes that took longest from first contact to their end, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(String, Duration)> {
        let mut times: Vec<(String, Duration)> = self
            .nodes
            .iter()
            .filter(|node| node.phase != Phase::Unreachable)
            .filter_map(|node| Some((node.name.clone(), node.finished_at?.duration_since(node.first_seen?))))
            .collect();
        times.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        times.truncate(n);
        times
    }

    /// Node indices in the order the run view lists them: jobs in flight first (longest
    /// running first), then nodes connecting or waiting, then failures, then the rest.
    /// Rows move only when a node changes state, so the eye can follow them.
    pub fn display_order(&self) -> Vec<usize> {
        let rank = |n: &NodeBoard| match n.phase {
            Phase::Running => 0,
            Phase::Connecting | Phase::Ready => 1,
            Phase::Waiting => 2,
            Phase::Failed | Phase::Unreachable | Phase::Cancelled => 3,
            Phase::Ok => 4,
            Phase::Skipped => 5,
        };
        let mut order: Vec<usize> = (0..self.nodes.len()).collect();
        order.sort_by(|&a, &b| {
            let (na, nb) = (&self.nodes[a], &self.nodes[b]);
            rank(na)
                .cmp(&rank(nb))
                .then_with(|| na.running.first().map(|r| r.since).cmp(&nb.running.first().map(|r| r.since)))
                .then(a.cmp(&b))
        });
        order
    }

    /// Node counts by phase, in phase order, only the phases present.
    pub fn phases(&self) -> Vec<(Phase, usize)> {
        let mut by: BTreeMap<Phase, usize> = BTreeMap::new();
        for n in &self.nodes {
            *by.entry(n.phase).or_default() += 1;
        }
        by.into_iter().collect()
    }
}

/// Appends `data`, keeping at most `cap` bytes from the end (on a character boundary).
pub(crate) fn keep(buf: &mut String, data: &str, cap: usize) {
    buf.push_str(data);
    if buf.len() > cap {
        let mut cut = buf.len() - cap;
        while !buf.is_char_boundary(cut) {
            cut += 1;
        }
        buf.drain(..cut);
    }
}

/// `1.2s`, `45s`, `3m05s`, `2h01m`: short durations for narrow columns.
pub(crate) fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=9 => format!("{:.1}s", d.as_secs_f64()),
        10..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(node: &str, job: usize, status: JobStatus, code: Option<i32>) -> Event {
        Event::JobFinished {
            node: node.into(),
            job,
            name: "RUN x".into(),
            status,
            exit_code: code,
            reason: Some("exited with code 1".into()),
            ms: 1,
        }
    }

    /// A board that saw the run start on `nodes`, each with its number of jobs.
    fn started(nodes: &[(&str, usize)], t0: Instant) -> Board {
        let mut b = Board::new();
        b.handle(
            &Event::RunStarted {
                run: "r".into(),
                mode: Default::default(),
                nodes: nodes.iter().map(|(n, _)| n.to_string()).collect(),
                node_jobs: nodes.iter().map(|(_, j)| *j).collect(),
                jobs: 2,
                tasks: nodes.iter().map(|(_, j)| j).sum(),
                job_list: Vec::new(),
            },
            t0,
        );
        b
    }

    #[test]
    fn failures_group_by_job_exit_code_and_output() {
        let t0 = Instant::now();
        let mut b = started(&[("a", 1), ("b", 1), ("c", 1)], t0);
        for (node, err) in [("a", "disk full\n"), ("b", "disk full\n"), ("c", "no route\n")] {
            b.handle(&Event::JobOutput { node: node.into(), job: 0, stream: Stream::Stderr, data: err.into() }, t0);
            b.handle(&finished(node, 0, JobStatus::Failed, Some(1)), t0);
        }
        let groups = b.failure_groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].nodes, vec!["a", "b"]);
        assert_eq!(groups[0].key.text, "exited with code 1\ndisk full");
        assert_eq!(groups[1].nodes, vec!["c"]);
    }

    #[test]
    fn phases_follow_the_node() {
        let t0 = Instant::now();
        let mut b = started(&[("a", 2)], t0);
        b.handle(&Event::NodeConnecting { node: "a".into(), address: "x".into() }, t0);
        assert_eq!(b.nodes[0].phase, Phase::Connecting);
        b.handle(
            &Event::JobStarted {
                node: "a".into(),
                job: 0,
                name: "RUN x".into(),
                fingerprint: "f".into(),
                info: "x".into(),
            },
            t0,
        );
        assert_eq!((b.nodes[0].phase, b.nodes[0].done), (Phase::Running, 0));
        b.handle(&finished("a", 0, JobStatus::Ok, Some(0)), t0 + Duration::from_secs(3));
        let one_ok = JobCounts { ok: 1, ..JobCounts::default() };
        b.handle(&Event::node_finished("a", NodeOutcome::Ok, one_ok), t0 + Duration::from_secs(3));
        assert_eq!(b.nodes[0].phase, Phase::Ok);
        assert_eq!(b.slowest(5), vec![("a".to_string(), Duration::from_secs(3))]);
        assert_eq!(short_duration(Duration::from_millis(61_500)), "1m01s");
    }
}
