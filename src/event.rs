//! The one interface from the engine to everything else.
//!
//! The engine turns what happens on the nodes into [`Event`]s and sends them down a channel;
//! it never prints. The frontends (`--json`, plain lines, the live view) and the run
//! history ([`crate::history`]) are all consumers of the same stream, so what is recorded is exactly what was shown.
//!
//! The `--json` output is these events, one JSON object per line, each with `"v": 1` and a
//! `"type"`; see docs in README.md ("JSON events"). A field is never removed or renamed within
//! a version; new fields may be added, so consumers that deny unknown fields pin a version.

use serde::{Deserialize, Serialize};

/// `text` cut at `max` characters, with `…` when it was cut.
pub(crate) fn ellipsize(text: &str, max: usize) -> String {
    let cut: String = text.chars().take(max).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Version of the `--json` event schema.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// How a job ended on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Ok,
    /// Not run: the node cache shows this exact work already succeeded there (or, for the
    /// verbs that only set cached values, the values were already so).
    Cached,
    Failed,
    /// Not run because an earlier job of its entry failed on this node, or the node was lost.
    Skipped,
    TimedOut,
    Cancelled,
    /// `--plan`: a run would run it (the reason says why); nothing ran.
    WouldRun,
}

impl JobStatus {
    pub const ALL: [JobStatus; 7] = [
        JobStatus::Ok,
        JobStatus::Cached,
        JobStatus::Failed,
        JobStatus::Skipped,
        JobStatus::TimedOut,
        JobStatus::Cancelled,
        JobStatus::WouldRun,
    ];

    /// The word `--json`, the history and `manage` use.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Ok => "ok",
            JobStatus::Cached => "cached",
            JobStatus::Failed => "failed",
            JobStatus::Skipped => "skipped",
            JobStatus::TimedOut => "timed_out",
            JobStatus::Cancelled => "cancelled",
            JobStatus::WouldRun => "would_run",
        }
    }

    /// The status [`JobStatus::as_str`] says `word` for.
    pub fn from_word(word: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a node's part of the run ended, decided once by the engine for every consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeOutcome {
    /// Every job ended ok, cached, skipped, or (in a plan) would run.
    Ok,
    /// A job failed or timed out.
    Failed,
    /// The node could not be reached, or was lost.
    Unreachable,
    /// A job was cancelled and none failed.
    Cancelled,
    /// Not attempted: a batch before it failed (`--serial`, `--max-fail`), a bootstrap
    /// server failed, or the run was cancelled before its turn. Its jobs are reported skipped.
    Skipped,
}

impl NodeOutcome {
    /// The word the history and `manage` use.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeOutcome::Ok => "ok",
            NodeOutcome::Failed => "failed",
            NodeOutcome::Unreachable => "unreachable",
            NodeOutcome::Cancelled => "cancelled",
            NodeOutcome::Skipped => "skipped",
        }
    }
}

/// Jobs by how they ended: what a node's task tallies and the live views show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub ok: usize,
    pub cached: usize,
    pub failed: usize,
    pub skipped: usize,
    pub timed_out: usize,
    pub cancelled: usize,
    pub would_run: usize,
}

impl JobCounts {
    pub fn add(&mut self, status: JobStatus) {
        match status {
            JobStatus::Ok => self.ok += 1,
            JobStatus::Cached => self.cached += 1,
            JobStatus::Failed => self.failed += 1,
            JobStatus::Skipped => self.skipped += 1,
            JobStatus::TimedOut => self.timed_out += 1,
            JobStatus::Cancelled => self.cancelled += 1,
            JobStatus::WouldRun => self.would_run += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.ok + self.cached + self.failed + self.skipped + self.timed_out + self.cancelled + self.would_run
    }
}

/// Which command started a run, as the history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Orchestrate,
    Exec,
    Bootstrap,
}

impl RunKind {
    pub const ALL: [RunKind; 3] = [RunKind::Orchestrate, RunKind::Exec, RunKind::Bootstrap];

    /// The word the history and `manage` use: the command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Orchestrate => "orchestrate",
            RunKind::Exec => "exec",
            RunKind::Bootstrap => "bootstrap",
        }
    }
}

/// A real run, or a plan of one (`--plan`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    #[default]
    Run,
    Plan,
}

impl RunMode {
    pub const ALL: [RunMode; 2] = [RunMode::Run, RunMode::Plan];

    /// The word `--json`, the history and `manage` use.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Run => "run",
            RunMode::Plan => "plan",
        }
    }
}

/// One job of a run, as `run_started` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobBrief {
    pub job: usize,
    /// The whole name (events never cut it; frontends may for display).
    pub name: String,
    pub verb: String,
    /// How many nodes it targets.
    pub targets: usize,
}

/// Counts for the end of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub nodes: usize,
    pub nodes_ok: usize,
    pub nodes_failed: usize,
    pub nodes_unreachable: usize,
    /// Not attempted ([`NodeOutcome::Skipped`]).
    pub nodes_skipped: usize,
    pub jobs_ok: usize,
    pub jobs_cached: usize,
    pub jobs_failed: usize,
    pub jobs_skipped: usize,
    pub jobs_timed_out: usize,
    pub jobs_cancelled: usize,
    /// `--plan`: jobs a run would run (only present in a plan's summary).
    #[serde(skip_serializing_if = "is_zero")]
    pub jobs_would_run: usize,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run: String,
        /// `run`, or `plan` for `--plan` (nothing runs: jobs end `would_run` or `cached`).
        mode: RunMode,
        nodes: Vec<String>,
        /// How many jobs each of `nodes` has, in the same order.
        node_jobs: Vec<usize>,
        jobs: usize,
        tasks: usize,
        /// Every job of the run, in order.
        job_list: Vec<JobBrief>,
    },
    /// `--serial`: a batch of nodes starts; the one before it has finished.
    BatchStarted {
        /// From 1.
        batch: usize,
        batches: usize,
        nodes: Vec<String>,
    },
    NodeConnecting {
        node: String,
        address: String,
    },
    /// Host key checked and session authenticated (or local process ready to start).
    NodeConnected {
        node: String,
        ms: u64,
    },
    /// The node's host key was new and is now recorded in `file` (known_hosts), as `ssh`
    /// says "Permanently added".
    HostKeyRecorded {
        node: String,
        file: String,
    },
    ExecutorUploaded {
        node: String,
        bytes: u64,
        sha3: String,
    },
    /// The executor answered; `facts` describe the node.
    NodeReady {
        node: String,
        arch: String,
        os: String,
        kernel: String,
        hostname: String,
        ms: u64,
    },
    NodeUnreachable {
        node: String,
        error: String,
    },
    /// Something about the node worth knowing that is not a failure (its cache was unreadable
    /// and starts afresh).
    NodeNotice {
        node: String,
        message: String,
    },
    JobStarted {
        node: String,
        job: usize,
        name: String,
        fingerprint: String,
        /// What the job does on this node, rendered: the command, the files written, the
        /// value set (cut at 4 KiB).
        info: String,
    },
    JobOutput {
        node: String,
        job: usize,
        stream: Stream,
        data: String,
    },
    JobFinished {
        node: String,
        job: usize,
        name: String,
        status: JobStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// Why it failed or was skipped, for a person.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        ms: u64,
    },
    /// The node is done: every job it had has finished.
    NodeFinished {
        node: String,
        /// `outcome` is `ok`.
        ok: bool,
        outcome: NodeOutcome,
        /// Its jobs by how they ended.
        jobs: JobCounts,
    },
    RunFinished {
        summary: Summary,
        exit_code: i32,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// An event as written by `--json`: the schema version and the time it is written (RFC 3339,
/// UTC) beside the event's own fields.
#[derive(Serialize)]
pub(crate) struct Versioned<'a> {
    pub v: u32,
    pub ts: String,
    #[serde(flatten)]
    pub event: &'a Event,
}

impl Event {
    /// Calls `f` on every text of the event that can carry what a node or a job said (output,
    /// facts, errors, rendered info, job names), for the filters that make events safe to
    /// show ([`crate::frontend::for_people`]) and free of secrets ([`crate::secret`]).
    pub fn map_texts(&mut self, mut f: impl FnMut(&mut String)) {
        match self {
            Event::NodeReady { arch, os, kernel, hostname, .. } => [arch, os, kernel, hostname].into_iter().for_each(f),
            Event::NodeUnreachable { error, .. } => f(error),
            Event::JobStarted { name, info, .. } => [name, info].into_iter().for_each(f),
            Event::JobOutput { data, .. } => f(data),
            Event::NodeNotice { message, .. } => f(message),
            Event::JobFinished { name, reason, .. } => {
                f(name);
                reason.iter_mut().for_each(f);
            }
            Event::RunStarted { job_list, .. } => job_list.iter_mut().for_each(|j| f(&mut j.name)),
            Event::BatchStarted { .. }
            | Event::NodeConnecting { .. }
            | Event::NodeConnected { .. }
            | Event::HostKeyRecorded { .. }
            | Event::ExecutorUploaded { .. }
            | Event::NodeFinished { .. }
            | Event::RunFinished { .. } => {}
        }
    }

    /// `node_finished` for `node`, whose jobs ended as `jobs`.
    pub fn node_finished(node: impl Into<String>, outcome: NodeOutcome, jobs: JobCounts) -> Event {
        Event::NodeFinished { node: node.into(), ok: outcome == NodeOutcome::Ok, outcome, jobs }
    }

    pub fn to_json_line(&self) -> String {
        let ts = timestamp(jiff::Timestamp::now());
        let mut line =
            serde_json::to_string(&Versioned { v: SCHEMA_VERSION, ts, event: self }).expect("events serialize");
        line.push('\n');
        line
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-11-30T01:02:03.456Z`.
pub(crate) fn timestamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t: jiff::Timestamp = "2026-11-30T01:02:03.4567Z".parse().unwrap();
        assert_eq!(timestamp(t), "2026-11-30T01:02:03.456Z");
        let t: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(timestamp(t), "2026-01-02T03:04:05.000Z");
    }
}
