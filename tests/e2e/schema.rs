//! The documented `--json` schema, written out independently of the code that produces it.
//! Every line a test sees is parsed with unknown fields denied: a field added, renamed or
//! removed without updating README.md's "JSON events" and this file fails the suite.

#![allow(dead_code)]

use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub nodes: usize,
    pub nodes_ok: usize,
    pub nodes_failed: usize,
    pub nodes_unreachable: usize,
    pub jobs_ok: usize,
    pub jobs_cached: usize,
    pub jobs_failed: usize,
    pub jobs_skipped: usize,
    pub jobs_timed_out: usize,
    pub jobs_cancelled: usize,
    pub elapsed_ms: u64,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    RunStarted {
        v: u32,
        run: String,
        nodes: Vec<String>,
        jobs: usize,
        tasks: usize,
    },
    NodeConnecting {
        v: u32,
        node: String,
        address: String,
    },
    NodeConnected {
        v: u32,
        node: String,
        ms: u64,
    },
    ExecutorUploaded {
        v: u32,
        node: String,
        bytes: u64,
        sha3: String,
    },
    NodeReady {
        v: u32,
        node: String,
        arch: String,
        os: String,
        kernel: String,
        hostname: String,
        ms: u64,
    },
    NodeUnreachable {
        v: u32,
        node: String,
        error: String,
    },
    NodeNotice {
        v: u32,
        node: String,
        message: String,
    },
    JobStarted {
        v: u32,
        node: String,
        job: usize,
        name: String,
        fingerprint: String,
        info: String,
    },
    JobOutput {
        v: u32,
        node: String,
        job: usize,
        stream: String,
        data: String,
    },
    JobFinished {
        v: u32,
        node: String,
        job: usize,
        name: String,
        /// ok, cached, failed, skipped, timed_out or cancelled.
        status: String,
        exit_code: Option<i32>,
        reason: Option<String>,
        ms: u64,
    },
    NodeFinished {
        v: u32,
        node: String,
        ok: bool,
    },
    RunFinished {
        v: u32,
        summary: Summary,
        exit_code: i32,
    },
}

impl Event {
    pub fn version(&self) -> u32 {
        match self {
            Event::RunStarted { v, .. }
            | Event::NodeConnecting { v, .. }
            | Event::NodeConnected { v, .. }
            | Event::ExecutorUploaded { v, .. }
            | Event::NodeReady { v, .. }
            | Event::NodeUnreachable { v, .. }
            | Event::NodeNotice { v, .. }
            | Event::JobStarted { v, .. }
            | Event::JobOutput { v, .. }
            | Event::JobFinished { v, .. }
            | Event::NodeFinished { v, .. }
            | Event::RunFinished { v, .. } => *v,
        }
    }
}

/// Parses every line of `--json` output; panics naming the line that does not fit.
pub fn parse(stdout: &[u8]) -> Vec<Event> {
    let text = std::str::from_utf8(stdout).expect("json output is UTF-8");
    text.lines()
        .map(|line| {
            let e: Event =
                serde_json::from_str(line).unwrap_or_else(|err| panic!("line does not fit the schema: {err}\n{line}"));
            assert_eq!(e.version(), 1, "{line}");
            e
        })
        .collect()
}
