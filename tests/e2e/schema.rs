//! The documented `--json` schema, written out independently of the code that produces it.
//! Every line a test sees is parsed with unknown fields denied: a field added, renamed or
//! removed without updating README.md's "JSON events" and this file fails the suite.

#![allow(dead_code)]

use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Summary {
    pub nodes: usize,
    pub nodes_ok: usize,
    pub nodes_failed: usize,
    pub nodes_unreachable: usize,
    pub nodes_skipped: usize,
    pub jobs_ok: usize,
    pub jobs_cached: usize,
    pub jobs_failed: usize,
    pub jobs_skipped: usize,
    pub jobs_timed_out: usize,
    pub jobs_cancelled: usize,
    /// Only in a `--plan`'s summary.
    #[serde(default)]
    pub jobs_would_run: usize,
    pub elapsed_ms: u64,
}

/// A node's jobs by how they ended (`node_finished`).
#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobCounts {
    pub ok: usize,
    pub cached: usize,
    pub failed: usize,
    pub skipped: usize,
    pub timed_out: usize,
    pub cancelled: usize,
    pub would_run: usize,
}

/// How a node's part of the run ended (`node_finished`).
#[derive(Debug, Deserialize, PartialEq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum NodeOutcome {
    Ok,
    Failed,
    Unreachable,
    Cancelled,
    Skipped,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobBrief {
    pub job: usize,
    pub name: String,
    pub verb: String,
    pub targets: usize,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Event {
    RunStarted {
        v: u32,
        ts: String,
        run: String,
        /// run or plan.
        mode: String,
        nodes: Vec<String>,
        node_jobs: Vec<usize>,
        jobs: usize,
        tasks: usize,
        job_list: Vec<JobBrief>,
    },
    BatchStarted {
        v: u32,
        ts: String,
        batch: usize,
        batches: usize,
        nodes: Vec<String>,
    },
    NodeConnecting {
        v: u32,
        ts: String,
        node: String,
        address: String,
    },
    NodeConnected {
        v: u32,
        ts: String,
        node: String,
        ms: u64,
    },
    HostKeyRecorded {
        v: u32,
        ts: String,
        node: String,
        file: String,
    },
    ExecutorUploaded {
        v: u32,
        ts: String,
        node: String,
        bytes: u64,
        sha3: String,
    },
    NodeReady {
        v: u32,
        ts: String,
        node: String,
        arch: String,
        os: String,
        kernel: String,
        hostname: String,
        ms: u64,
    },
    NodeUnreachable {
        v: u32,
        ts: String,
        node: String,
        error: String,
    },
    NodeNotice {
        v: u32,
        ts: String,
        node: String,
        message: String,
    },
    JobStarted {
        v: u32,
        ts: String,
        node: String,
        job: usize,
        name: String,
        fingerprint: String,
        info: String,
    },
    JobOutput {
        v: u32,
        ts: String,
        node: String,
        job: usize,
        stream: String,
        data: String,
    },
    JobFinished {
        v: u32,
        ts: String,
        node: String,
        job: usize,
        name: String,
        /// ok, cached, failed, skipped, timed_out, cancelled or would_run.
        status: String,
        exit_code: Option<i32>,
        reason: Option<String>,
        ms: u64,
    },
    NodeFinished {
        v: u32,
        ts: String,
        node: String,
        ok: bool,
        outcome: NodeOutcome,
        jobs: JobCounts,
    },
    RunFinished {
        v: u32,
        ts: String,
        summary: Summary,
        exit_code: i32,
    },
}

impl Event {
    pub(crate) fn version(&self) -> (u32, &str) {
        match self {
            Event::RunStarted { v, ts, .. }
            | Event::BatchStarted { v, ts, .. }
            | Event::NodeConnecting { v, ts, .. }
            | Event::NodeConnected { v, ts, .. }
            | Event::HostKeyRecorded { v, ts, .. }
            | Event::ExecutorUploaded { v, ts, .. }
            | Event::NodeReady { v, ts, .. }
            | Event::NodeUnreachable { v, ts, .. }
            | Event::NodeNotice { v, ts, .. }
            | Event::JobStarted { v, ts, .. }
            | Event::JobOutput { v, ts, .. }
            | Event::JobFinished { v, ts, .. }
            | Event::NodeFinished { v, ts, .. }
            | Event::RunFinished { v, ts, .. } => (*v, ts),
        }
    }
}

/// Parses every line of `--json` output; panics naming the line that does not fit.
pub(crate) fn parse(stdout: &[u8]) -> Vec<Event> {
    let text = std::str::from_utf8(stdout).expect("json output is UTF-8");
    text.lines()
        .map(|line| {
            let e: Event =
                serde_json::from_str(line).unwrap_or_else(|err| panic!("line does not fit the schema: {err}\n{line}"));
            let (v, ts) = e.version();
            assert_eq!(v, 1, "{line}");
            assert!(is_rfc3339_utc(ts), "ts is not RFC 3339 UTC: {line}");
            e
        })
        .collect()
}

/// `2026-11-30T01:02:03.456Z`: the form README.md documents for `ts`.
fn is_rfc3339_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}
