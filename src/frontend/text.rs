//! Plain text for people: one line per finished job, failures with their output tail, a
//! summary. (On a terminal, [`super::live`] shows progress and prints this view's quiet
//! lines above it.)
//!
//! The view is a plain struct fed events; what it prints is a function of them, so tests feed
//! events and compare the text.

use super::board::keep;
use crate::event::{Event, JobStatus, Stream, Summary};
use std::collections::HashMap;
use std::io::Write;

/// Bytes of output kept per job and node, for showing the tail of a failure.
pub const OUTPUT_KEEP: usize = 16 * 1024;
/// Lines of output shown under a failed job.
pub const TAIL_LINES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every finished job and the summary.
    Plain,
    /// The live inline view ([`super::live`]) on a terminal.
    Live,
    /// Only failures and the summary.
    Quiet,
}

#[derive(Default)]
struct Tail {
    stdout: String,
    stderr: String,
}

pub struct TextView {
    mode: Mode,
    out: Box<dyn Write + Send>,
    width: usize,
    tails: HashMap<(String, usize), Tail>,
    closed: bool,
}

impl TextView {
    /// [`Mode::Live`] prints like [`Mode::Plain`]: the live view itself is elsewhere.
    pub fn new(mode: Mode, out: Box<dyn Write + Send>) -> Self {
        TextView { mode, out, width: 0, tails: HashMap::new(), closed: false }
    }

    fn line(&mut self, text: &str) {
        if !self.closed && writeln!(self.out, "{text}").and_then(|_| self.out.flush()).is_err() {
            self.closed = true;
        }
    }

    pub fn notice(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn node_col(&self, node: &str) -> String {
        format!("{node:<width$}", width = self.width)
    }

    pub fn handle(&mut self, event: &Event) {
        match event {
            Event::RunStarted { nodes, .. } => {
                self.width = nodes.iter().map(|n| n.chars().count()).max().unwrap_or(4).min(24);
            }
            Event::JobOutput { node, job, stream, data } => {
                let tail = self.tails.entry((node.clone(), *job)).or_default();
                match stream {
                    Stream::Stdout => keep(&mut tail.stdout, data, OUTPUT_KEEP),
                    Stream::Stderr => keep(&mut tail.stderr, data, OUTPUT_KEEP),
                }
            }
            Event::JobFinished { node, job, name, status, reason, ms, .. } => {
                let tail = self.tails.remove(&(node.clone(), *job)).unwrap_or_default();
                let failed = matches!(status, JobStatus::Failed | JobStatus::TimedOut);
                if self.mode == Mode::Quiet && !failed {
                    return;
                }
                let word = match status {
                    JobStatus::Ok => "ok",
                    JobStatus::Cached => "cached",
                    JobStatus::Failed => "FAILED",
                    JobStatus::TimedOut => "TIMED OUT",
                    JobStatus::Skipped => "skipped",
                    JobStatus::Cancelled => "cancelled",
                };
                let detail = match (status, reason) {
                    (JobStatus::Ok | JobStatus::Cached, _) => format!(" ({ms} ms)"),
                    (JobStatus::Skipped, Some(r)) => format!(": {r}"),
                    (_, Some(r)) => format!(": {r} ({ms} ms)"),
                    (_, None) => format!(" ({ms} ms)"),
                };
                self.line(&format!("{}  {word:<9}  {name}{detail}", self.node_col(node)));
                if failed {
                    let shown = if tail.stderr.trim().is_empty() { &tail.stdout } else { &tail.stderr };
                    let lines: Vec<&str> = shown.trim_end().lines().collect();
                    let pad = " ".repeat(self.width);
                    for l in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
                        self.line(&format!("{pad}  │ {l}"));
                    }
                }
            }
            Event::NodeUnreachable { node, error } => {
                self.line(&format!("{}  {:<9}  {error}", self.node_col(node), "UNREACHABLE"));
            }
            Event::NodeNotice { node, message } => {
                self.line(&format!("{}  {:<9}  {message}", self.node_col(node), "notice"));
            }
            Event::RunFinished { summary, .. } => {
                let text = summary_line(summary);
                self.line(&text);
            }
            _ => {}
        }
    }
}

/// The last line of every text run.
pub fn summary_line(s: &Summary) -> String {
    format!(
        "summary: {} nodes ({} ok, {} failed, {} unreachable), {} jobs ({} ok, {} cached, {} failed, {} skipped, {} timed out, {} cancelled) in {:.2} s",
        s.nodes,
        s.nodes_ok,
        s.nodes_failed,
        s.nodes_unreachable,
        s.jobs_ok + s.jobs_cached + s.jobs_failed + s.jobs_skipped + s.jobs_timed_out + s.jobs_cancelled,
        s.jobs_ok,
        s.jobs_cached,
        s.jobs_failed,
        s.jobs_skipped,
        s.jobs_timed_out,
        s.jobs_cancelled,
        s.elapsed_ms as f64 / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn finished(
        node: &str,
        job: usize,
        name: &str,
        status: JobStatus,
        code: Option<i32>,
        reason: Option<&str>,
        ms: u64,
    ) -> Event {
        Event::JobFinished {
            node: node.into(),
            job,
            name: name.into(),
            status,
            exit_code: code,
            reason: reason.map(Into::into),
            ms,
        }
    }

    #[test]
    fn plain_lines_failure_tail_and_summary() {
        let buf = Shared::default();
        let mut view = TextView::new(Mode::Plain, Box::new(buf.clone()));
        let events = [
            Event::RunStarted { run: "r".into(), nodes: vec!["web1".into(), "db10".into()], jobs: 2, tasks: 4 },
            finished("web1", 0, "RUN true", JobStatus::Ok, Some(0), None, 12),
            Event::JobOutput { node: "db10".into(), job: 1, stream: Stream::Stdout, data: "out\n".into() },
            Event::JobOutput { node: "db10".into(), job: 1, stream: Stream::Stderr, data: "bad thing\nworse\n".into() },
            finished("db10", 1, "RUN false", JobStatus::Failed, Some(1), Some("exited with code 1"), 5),
            finished("db10", 2, "RUN x", JobStatus::Skipped, None, Some("job 2 (RUN false) failed on this node"), 0),
            Event::NodeUnreachable {
                node: "web1".into(),
                error: "cannot connect to 10.0.0.1:22: Connection refused".into(),
            },
            Event::RunFinished {
                summary: Summary {
                    nodes: 2,
                    nodes_ok: 0,
                    nodes_failed: 1,
                    nodes_unreachable: 1,
                    jobs_ok: 1,
                    jobs_failed: 1,
                    jobs_skipped: 1,
                    elapsed_ms: 1234,
                    ..Summary::default()
                },
                exit_code: 1,
            },
        ];
        for e in &events {
            view.handle(e);
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "web1  ok         RUN true (12 ms)\n\
             db10  FAILED     RUN false: exited with code 1 (5 ms)\n\
             \x20     │ bad thing\n\
             \x20     │ worse\n\
             db10  skipped    RUN x: job 2 (RUN false) failed on this node\n\
             web1  UNREACHABLE  cannot connect to 10.0.0.1:22: Connection refused\n\
             summary: 2 nodes (0 ok, 1 failed, 1 unreachable), 3 jobs (1 ok, 0 cached, 1 failed, 1 skipped, 0 timed out, 0 cancelled) in 1.23 s\n"
        );
    }

    #[test]
    fn quiet_mode_keeps_only_failures() {
        let buf = Shared::default();
        let mut view = TextView::new(Mode::Quiet, Box::new(buf.clone()));
        view.handle(&Event::RunStarted { run: "r".into(), nodes: vec!["a".into()], jobs: 1, tasks: 2 });
        view.handle(&finished("a", 0, "RUN true", JobStatus::Ok, Some(0), None, 1));
        view.handle(&finished("a", 1, "RUN sleep 9", JobStatus::TimedOut, None, Some("timed out after 1 s"), 1000));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "a  TIMED OUT  RUN sleep 9: timed out after 1 s (1000 ms)\n");
    }
}
