//! Plain text for people: what happened, grouped, then a summary. (On a terminal,
//! [`super::live`] shows progress and prints this view's lines above it.)
//!
//! During the run: a line when a node is unreachable, has a notice, or finishes (every node
//! in plain mode, failed ones otherwise: the live view says the others). When the run ends,
//! each job's results grouped as `dshbak -c` groups them: nodes with the same status and the
//! same output share one line, written as folded ranges (`web[1-38],db[1-4] (42)`), sorted,
//! with the output inline when it is one line and below when it is more. [`Shown`] says whose
//! output is shown; distinct outputs are kept once each (at most [`OUTPUT_KEEP`] bytes per
//! job and node), so a thousand identical outputs cost one.
//!
//! The view is a plain struct fed events; what it prints is a function of them, so tests feed
//! events and compare the text.

use super::board::keep;
use super::nodeset::{fold, natural};
pub(crate) use crate::config::{Mode, Shown};
use crate::event::{Event, JobStatus, RunMode, Summary};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

/// Bytes of output kept per job and node.
pub(crate) const OUTPUT_KEEP: usize = 16 * 1024;
/// Lines of a group's output shown (the last ones).
pub(crate) const TAIL_LINES: usize = 10;

/// One group of a job's results: same status, same reason, same output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Outcome {
    status: JobStatus,
    reason: Option<String>,
    output: String,
}

pub(crate) struct TextView {
    mode: Mode,
    shown: Shown,
    out: Box<dyn Write + Send>,
    width: usize,
    /// Output of jobs still running, by (node, job).
    running: HashMap<(String, usize), String>,
    /// Finished results: job → (name, outcome → nodes).
    results: BTreeMap<usize, (String, BTreeMap<Outcome, Vec<String>>)>,
    closed: bool,
    /// The run is a `--plan`.
    planning: bool,
    /// Plain lines of nodes that ended well, not printed yet: the same line for many nodes is
    /// printed once with their names folded (`web[1-998] (998)  ok  3 jobs …`).
    pending: BTreeMap<String, Vec<String>>,
    /// When the oldest of them ended: they are printed within [`FOLD_WAIT`] of it.
    pending_since: Option<Instant>,
}

/// How long a plain ok line waits for others like it before it is printed.
pub(crate) const FOLD_WAIT: Duration = Duration::from_secs(2);

fn failed(status: JobStatus) -> bool {
    matches!(status, JobStatus::Failed | JobStatus::TimedOut | JobStatus::Cancelled)
}

pub(crate) fn word(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Ok => "ok",
        JobStatus::Cached => "cached",
        JobStatus::Failed => "FAILED",
        JobStatus::TimedOut => "TIMED OUT",
        JobStatus::Skipped => "skipped",
        JobStatus::Cancelled => "cancelled",
        JobStatus::WouldRun => "would run",
    }
}

impl TextView {
    pub(crate) fn new(mode: Mode, shown: Shown, out: Box<dyn Write + Send>) -> Self {
        TextView {
            mode,
            shown,
            out,
            width: 0,
            running: HashMap::new(),
            results: BTreeMap::new(),
            closed: false,
            planning: false,
            pending: BTreeMap::new(),
            pending_since: None,
        }
    }

    /// Prints the ok lines held back, each with its nodes folded.
    fn flush_pending(&mut self) {
        self.pending_since = None;
        for (rest, nodes) in std::mem::take(&mut self.pending) {
            let names =
                if nodes.len() == 1 { self.node_col(&nodes[0]) } else { format!("{} ({})", fold(&nodes), nodes.len()) };
            self.line(&format!("{names}  {rest}"));
        }
    }

    /// Called on a timer: ok lines held for [`FOLD_WAIT`] are printed.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.pending_since.is_some_and(|since| now.duration_since(since) >= FOLD_WAIT) {
            self.flush_pending();
        }
    }

    fn line(&mut self, text: &str) {
        if !self.closed && writeln!(self.out, "{text}").and_then(|_| self.out.flush()).is_err() {
            self.closed = true;
        }
    }

    pub(crate) fn notice(&mut self, text: &str) {
        eprintln!("{text}");
    }

    fn node_col(&self, node: &str) -> String {
        format!("{node:<width$}", width = self.width)
    }

    pub(crate) fn handle(&mut self, event: &Event) {
        match event {
            Event::RunStarted { nodes, mode, .. } => {
                self.planning = *mode == RunMode::Plan;
                self.width = nodes.iter().map(|n| n.chars().count()).max().unwrap_or(4).min(24);
            }
            Event::JobOutput { node, job, data, .. } => {
                keep(self.running.entry((node.clone(), *job)).or_default(), data, OUTPUT_KEEP);
            }
            Event::JobFinished { node, job, name, status, reason, .. } => {
                let output = self.running.remove(&(node.clone(), *job)).unwrap_or_default();
                let outcome = Outcome { status: *status, reason: reason.clone(), output };
                let entry = self.results.entry(*job).or_insert_with(|| (name.clone(), BTreeMap::new()));
                entry.1.entry(outcome).or_default().push(node.clone());
            }
            Event::NodeFinished { node, ok, jobs, .. } => {
                if *ok && self.mode != Mode::Plain {
                    return;
                }
                let c = *jobs;
                let mut parts = vec![format!("{} ok", c.ok), format!("{} cached", c.cached)];
                if self.planning {
                    parts[0] = format!("{} would run", c.would_run);
                }
                for (n, what) in [(c.failed, "failed"), (c.timed_out, "timed out"), (c.cancelled, "cancelled")] {
                    if n > 0 {
                        parts.push(format!("{n} {what}"));
                    }
                }
                parts.push(format!("{} skipped", c.skipped));
                let rest = format!(
                    "{:<9}  {} ({})",
                    if *ok { "ok" } else { "FAILED" },
                    counted(c.total(), "job"),
                    parts.join(", ")
                );
                if *ok {
                    // Held, to be printed once for every node that ends the same way.
                    self.pending.entry(rest).or_default().push(node.clone());
                    self.pending_since.get_or_insert_with(Instant::now);
                    return;
                }
                let text = format!("{}  {rest}", self.node_col(node));
                self.line(&text);
            }
            Event::BatchStarted { batch, batches, nodes } => {
                self.flush_pending();
                self.line(&format!("batch {batch} of {batches}: {} ({})", fold(nodes), nodes.len()));
            }
            Event::NodeUnreachable { node, error } => {
                self.line(&format!("{}  {:<9}  {error}", self.node_col(node), "UNREACHABLE"));
            }
            Event::NodeNotice { node, message } => {
                self.line(&format!("{}  {:<9}  {message}", self.node_col(node), "notice"));
            }
            Event::RunFinished { summary, .. } => {
                self.flush_pending();
                self.report();
                let text = if self.planning { plan_line(summary) } else { summary_line(summary) };
                self.line(&text);
            }
            _ => {}
        }
    }

    /// Every job's results, grouped.
    fn report(&mut self) {
        let results = std::mem::take(&mut self.results);
        let shown = self.shown;
        let shows = move |status: JobStatus| match shown {
            Shown::All => true,
            Shown::Failed => failed(status),
            Shown::None => false,
        };
        for (job, (name, outcomes)) in results {
            // An output not shown does not split a group.
            let mut merged: BTreeMap<Outcome, Vec<String>> = BTreeMap::new();
            for (mut outcome, nodes) in outcomes {
                if self.mode == Mode::Quiet && !failed(outcome.status) {
                    continue;
                }
                if !shows(outcome.status) {
                    outcome.output.clear();
                }
                merged.entry(outcome).or_default().extend(nodes);
            }
            // Groups in node order: by their first node, as people sort names.
            let mut groups: Vec<(String, Outcome, String, usize)> = merged
                .into_iter()
                .map(|(o, nodes)| {
                    let first = nodes.iter().map(|n| natural(n)).min().unwrap_or_default();
                    (first, o, fold(&nodes), nodes.len())
                })
                .collect();
            if groups.is_empty() {
                continue;
            }
            groups.sort_by(|a, b| a.0.cmp(&b.0));
            // The name as a line of the report shows it: cut at 72 characters.
            self.line(&format!("job {}: {}", job + 1, crate::event::ellipsize(&name, 72)));
            let labels: Vec<String> = groups.iter().map(|(_, _, nodes, n)| format!("{nodes} ({n})")).collect();
            let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0).min(48);
            for ((_, outcome, _, _), label) in groups.iter().zip(&labels) {
                let output = outcome.output.trim_end();
                let lines: Vec<&str> = if output.is_empty() { Vec::new() } else { output.lines().collect() };
                let mut head = format!("  {label:<width$}  {}", word(outcome.status));
                if let Some(reason) = &outcome.reason {
                    head.push_str(&format!(": {reason}"));
                }
                if lines.len() == 1 && outcome.reason.is_none() {
                    head = format!("  {label:<width$}  {:<9}  {}", word(outcome.status), lines[0]);
                    self.line(head.trim_end());
                    continue;
                }
                self.line(&head);
                let from = lines.len().saturating_sub(TAIL_LINES);
                if from > 0 {
                    self.line(&format!("    │ … {from} lines above"));
                }
                for l in &lines[from..] {
                    self.line(&format!("    │ {l}"));
                }
            }
        }
    }
}

/// The last line of every text run.
pub(crate) fn summary_line(s: &Summary) -> String {
    format!(
        "summary: {} ({} ok, {} failed, {} unreachable{}), {} ({} ok, {} cached, {} failed, {} skipped, {} timed out, {} cancelled) in {:.2} s",
        counted(s.nodes, "node"),
        s.nodes_ok,
        s.nodes_failed,
        s.nodes_unreachable,
        not_attempted(s),
        counted(s.jobs_ok + s.jobs_cached + s.jobs_failed + s.jobs_skipped + s.jobs_timed_out + s.jobs_cancelled, "job"),
        s.jobs_ok,
        s.jobs_cached,
        s.jobs_failed,
        s.jobs_skipped,
        s.jobs_timed_out,
        s.jobs_cancelled,
        s.elapsed_ms as f64 / 1000.0
    )
}

/// `1 node`, `2 nodes`.
pub(crate) fn counted(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// `, N skipped` when nodes were not attempted (a batch before them failed), else nothing.
fn not_attempted(s: &Summary) -> String {
    match s.nodes_skipped {
        0 => String::new(),
        n => format!(", {n} skipped"),
    }
}

/// The last line of a `--plan`.
pub(crate) fn plan_line(s: &Summary) -> String {
    format!(
        "plan: {} ({} ok, {} failed, {} unreachable{}), {} ({} would run, {} cached, {} failed, {} skipped) in {:.2} s; nothing was run",
        counted(s.nodes, "node"),
        s.nodes_ok,
        s.nodes_failed,
        s.nodes_unreachable,
        not_attempted(s),
        counted(s.jobs_would_run + s.jobs_cached + s.jobs_failed + s.jobs_skipped + s.jobs_timed_out + s.jobs_cancelled, "job"),
        s.jobs_would_run,
        s.jobs_cached,
        s.jobs_failed + s.jobs_timed_out + s.jobs_cancelled,
        s.jobs_skipped,
        s.elapsed_ms as f64 / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{JobCounts, NodeOutcome, Stream};
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

    fn output(node: &str, job: usize, data: &str) -> Event {
        Event::JobOutput { node: node.into(), job, stream: Stream::Stdout, data: data.into() }
    }

    fn run(mode: Mode, shown: Shown, events: &[Event]) -> String {
        let buf = Shared::default();
        let mut view = TextView::new(mode, shown, Box::new(buf.clone()));
        for e in events {
            view.handle(e);
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text
    }

    /// Six nodes, two jobs: identical outputs fold into ranges, a failure is its own group.
    fn six_nodes() -> Vec<Event> {
        let nodes: Vec<String> =
            ["web1", "web2", "web3", "web10", "db1", "db2"].iter().map(std::string::ToString::to_string).collect();
        let mut events = vec![Event::RunStarted {
            run: "r".into(),
            mode: Default::default(),
            job_list: Vec::new(),
            nodes: nodes.clone(),
            node_jobs: vec![2; 6],
            jobs: 2,
            tasks: 12,
        }];
        for n in &nodes {
            let kernel = if n == "web10" { "6.1.0-13-amd64\n" } else { "6.1.0-18-amd64\n" };
            events.push(output(n, 0, kernel));
            events.push(finished(n, 0, "RUN uname -r", JobStatus::Ok, Some(0), None, 3));
            if n.starts_with("db") {
                events.push(output(n, 1, "disk full on /var\nstopping\n"));
                events.push(finished(n, 1, "RUN deploy", JobStatus::Failed, Some(4), Some("exited with code 4"), 5));
            } else {
                events.push(finished(n, 1, "RUN deploy", JobStatus::Ok, Some(0), None, 5));
            }
            events.push(match n.starts_with("db") {
                true => {
                    Event::node_finished(n, NodeOutcome::Failed, JobCounts { ok: 1, failed: 1, ..JobCounts::default() })
                }
                false => Event::node_finished(n, NodeOutcome::Ok, JobCounts { ok: 2, ..JobCounts::default() }),
            });
        }
        events.push(Event::RunFinished {
            summary: Summary {
                nodes: 6,
                nodes_ok: 4,
                nodes_failed: 2,
                jobs_ok: 10,
                jobs_failed: 2,
                elapsed_ms: 1234,
                ..Summary::default()
            },
            exit_code: 1,
        });
        events
    }

    #[test]
    fn outputs_are_grouped_by_content_with_folded_node_ranges() {
        assert_eq!(
            run(Mode::Plain, Shown::All, &six_nodes()),
            "db1    FAILED     2 jobs (1 ok, 0 cached, 1 failed, 0 skipped)\n\
             db2    FAILED     2 jobs (1 ok, 0 cached, 1 failed, 0 skipped)\n\
             web[1-3,10] (4)  ok         2 jobs (2 ok, 0 cached, 0 skipped)\n\
             job 1: RUN uname -r\n\
             \x20 db[1-2],web[1-3] (5)  ok         6.1.0-18-amd64\n\
             \x20 web10 (1)             ok         6.1.0-13-amd64\n\
             job 2: RUN deploy\n\
             \x20 db[1-2] (2)      FAILED: exited with code 4\n\
             \x20   │ disk full on /var\n\
             \x20   │ stopping\n\
             \x20 web[1-3,10] (4)  ok\n\
             summary: 6 nodes (4 ok, 2 failed, 0 unreachable), 12 jobs (10 ok, 0 cached, 2 failed, 0 skipped, 0 timed out, 0 cancelled) in 1.23 s\n"
        );
    }

    #[test]
    fn failed_outputs_only_and_quiet_mode() {
        // --output failed (orchestrate's default): successes are counted, not shown.
        let text = run(Mode::Live, Shown::Failed, &six_nodes());
        assert!(text.starts_with("db1    FAILED     2 jobs"), "{text}");
        assert!(text.contains("job 1: RUN uname -r\n  db[1-2],web[1-3,10] (6)  ok\njob 2"), "{text}");
        assert!(text.contains("  db[1-2] (2)      FAILED: exited with code 4\n    │ disk full on /var\n"), "{text}");
        // Quiet: only the failed groups, under their job.
        let text = run(Mode::Quiet, Shown::Failed, &six_nodes());
        assert_eq!(
            text,
            "db1    FAILED     2 jobs (1 ok, 0 cached, 1 failed, 0 skipped)\n\
             db2    FAILED     2 jobs (1 ok, 0 cached, 1 failed, 0 skipped)\n\
             job 2: RUN deploy\n\
             \x20 db[1-2] (2)  FAILED: exited with code 4\n\
             \x20   │ disk full on /var\n\
             \x20   │ stopping\n\
             summary: 6 nodes (4 ok, 2 failed, 0 unreachable), 12 jobs (10 ok, 0 cached, 2 failed, 0 skipped, 0 timed out, 0 cancelled) in 1.23 s\n"
        );
        // --output none: groups and reasons, no output.
        let text = run(Mode::Quiet, Shown::None, &six_nodes());
        assert!(text.contains("  db[1-2] (2)  FAILED: exited with code 4\nsummary"), "{text}");
    }

    #[test]
    fn unreachable_nodes_and_long_outputs() {
        let mut events = vec![Event::RunStarted {
            run: "r".into(),
            mode: Default::default(),
            job_list: Vec::new(),
            nodes: vec!["a".into(), "b".into()],
            node_jobs: vec![1, 1],
            jobs: 1,
            tasks: 2,
        }];
        events.push(Event::NodeUnreachable {
            node: "b".into(),
            error: "cannot connect to 10.0.0.1:22: Connection refused".into(),
        });
        let long: String = (1..=15).map(|i| format!("line {i}\n")).collect();
        events.push(output("a", 0, &long));
        events.push(finished("a", 0, "RUN seq", JobStatus::Ok, Some(0), None, 1));
        events.push(Event::RunFinished { summary: Summary::default(), exit_code: 3 });
        let text = run(Mode::Quiet, Shown::All, &events);
        assert!(text.starts_with("b  UNREACHABLE  cannot connect to 10.0.0.1:22: Connection refused\n"), "{text}");
        let text = run(Mode::Plain, Shown::All, &events);
        assert!(text.contains("job 1: RUN seq\n  a (1)  ok\n    │ … 5 lines above\n    │ line 6\n"), "{text}");
        assert!(text.contains("    │ line 15\nsummary"), "{text}");
    }

    /// Nodes that were not attempted are said apart from the failed ones, when there are any.
    #[test]
    fn the_summary_says_skipped_nodes_apart() {
        let s = Summary { nodes: 6, nodes_ok: 3, nodes_failed: 1, nodes_skipped: 2, jobs_ok: 3, ..Summary::default() };
        assert_eq!(
            summary_line(&s),
            "summary: 6 nodes (3 ok, 1 failed, 0 unreachable, 2 skipped), 3 jobs (3 ok, 0 cached, 0 failed, 0 skipped, 0 timed out, 0 cancelled) in 0.00 s"
        );
        let s = Summary { nodes_skipped: 0, ..s };
        assert!(summary_line(&s).starts_with("summary: 6 nodes (3 ok, 1 failed, 0 unreachable), "));
    }

    /// At fleet size, plain lines of nodes that ended the same way are one line with their
    /// names folded, printed within two seconds of the first of them (or before a batch, or
    /// at the end); a failed node's line is printed at once.
    #[test]
    fn plain_ok_lines_are_folded_and_printed_within_two_seconds() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut view = TextView::new(Mode::Plain, Shown::Failed, Box::new(Shared(out.clone())));
        let text = || String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let ok = JobCounts { ok: 3, ..JobCounts::default() };
        let nodes: Vec<String> = (1..=1000).map(|i| format!("web{i}")).collect();
        view.handle(&Event::RunStarted {
            run: "r".into(),
            mode: RunMode::Run,
            job_list: Vec::new(),
            nodes: nodes.clone(),
            node_jobs: vec![3; 1000],
            jobs: 3,
            tasks: 3000,
        });
        let start = Instant::now();
        for n in &nodes[..998] {
            view.handle(&Event::node_finished(n, NodeOutcome::Ok, ok));
        }
        view.handle(&Event::node_finished("web999", NodeOutcome::Failed, JobCounts { failed: 1, ok: 2, ..ok }));
        assert_eq!(text(), "web999   FAILED     3 jobs (2 ok, 0 cached, 1 failed, 0 skipped)\n");
        view.tick(start + Duration::from_millis(500));
        assert_eq!(text().lines().count(), 1, "held for less than two seconds");
        view.tick(start + Duration::from_secs(3));
        assert_eq!(text().lines().nth(1), Some("web[1-998] (998)  ok         3 jobs (3 ok, 0 cached, 0 skipped)"));
        view.handle(&Event::node_finished("web1000", NodeOutcome::Ok, ok));
        view.handle(&Event::BatchStarted { batch: 2, batches: 2, nodes: vec!["x".into()] });
        assert_eq!(text().lines().nth(2), Some("web1000  ok         3 jobs (3 ok, 0 cached, 0 skipped)"));
    }
}
