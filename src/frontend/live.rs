//! The live view of `orchestrate`, `exec` and `bootstrap` on a terminal: a few lines at the
//! bottom (ratatui's inline viewport) show progress, counts and the jobs in flight with their
//! timers; finished nodes, failures with their output tail, notices and the summary are
//! printed above it and scroll away like ordinary output.
//!
//! What is printed above comes from the plain-text view in its live mode (a line per node that
//! failed or was unreachable as it happens, then every job's results grouped and the summary,
//! worded exactly as without a terminal); a node that ended well gets no line of its own (the
//! bars count it, the results name it, folded), so a thousand nodes do not scroll a thousand
//! lines. The viewport is drawn from a [`Board`]. Lines are queued as events come and written, with the
//! viewport, on the tick, so a burst of events costs one draw.

use super::board::{short_duration, Board, Phase};
use super::text::{Mode, Shown, TextView};
use super::tui::view::{counts_line, node_doing, phase_style, progress_line};
use crate::event::Event;
use ratatui::backend::Backend;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};
use ratatui::{Terminal, TerminalOptions, Viewport};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Lines of the viewport: progress, counts, and up to this many minus two jobs in flight.
pub(crate) const HEIGHT: u16 = 7;

/// Where the quiet text view writes; drained into lines above the viewport.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<Vec<u8>>>);

impl Write for Queue {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) struct LiveView<B: Backend> {
    terminal: Terminal<B>,
    board: Board,
    text: TextView,
    queue: Queue,
    width: u16,
    now: Instant,
    closed: bool,
}

/// The viewport's contents: progress, counts, then jobs in flight, longest first.
pub(crate) fn render_inline(board: &Board, now: Instant, area: Rect, buf: &mut Buffer) {
    let mut lines = vec![progress_line(board, now, area.width as usize), counts_line(board)];
    let room = (area.height as usize).saturating_sub(2);
    let order: Vec<usize> = board
        .display_order()
        .into_iter()
        .filter(|&i| matches!(board.nodes[i].phase, Phase::Running | Phase::Connecting))
        .collect();
    let width = order.iter().map(|&i| board.nodes[i].name.len()).max().unwrap_or(4).min(24);
    for (k, &i) in order.iter().enumerate() {
        if k + 1 == room && order.len() > room {
            lines.push(Line::from(format!("  … and {} more in flight", order.len() - k)));
            break;
        }
        let n = &board.nodes[i];
        let (state, job) = node_doing(board, i);
        let timer =
            n.running.first().map(|r| short_duration(now.saturating_duration_since(r.since))).unwrap_or_default();
        lines.push(Line::from(vec![
            Span::raw(format!("  {:<width$}  ", n.name)),
            Span::styled(format!("{state:<13}"), phase_style(n.phase)),
            Span::raw(format!("{timer:>7}  {job}")),
        ]));
    }
    Paragraph::new(lines).render(area, buf);
}

/// Cuts `text` into lines of at most `width` characters, so the height above is known.
fn rows(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        if chars.is_empty() {
            out.push(String::new());
        }
        for chunk in chars.chunks(width) {
            out.push(chunk.iter().collect());
        }
    }
    out
}

impl<B: Backend> LiveView<B> {
    pub(crate) fn new(backend: B, shown: Shown) -> Result<LiveView<B>, String> {
        let terminal = Terminal::with_options(backend, TerminalOptions { viewport: Viewport::Inline(HEIGHT) })
            .map_err(|e| e.to_string())?;
        let width = terminal.size().map(|s| s.width).unwrap_or(100);
        let queue = Queue::default();
        Ok(LiveView {
            terminal,
            board: Board::new(),
            text: TextView::new(Mode::Live, shown, Box::new(queue.clone())),
            queue,
            width,
            now: Instant::now(),
            closed: false,
        })
    }

    #[cfg(test)]
    pub(crate) fn backend(&self) -> &B {
        self.terminal.backend()
    }

    pub(crate) fn handle(&mut self, event: &Event, at: Instant) {
        self.board.handle(event, at);
        self.text.handle(event);
        if matches!(event, Event::RunFinished { .. }) {
            self.tick(at);
        }
    }

    pub(crate) fn notice(&mut self, text: &str) {
        let _ = self.queue.write(format!("{text}\n").as_bytes());
    }

    /// Writes the queued lines above the viewport and redraws it.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.now = now;
        let pending = std::mem::take(&mut *self.queue.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let lines = rows(&String::from_utf8_lossy(&pending), self.width as usize);
        for chunk in lines.chunks(16) {
            let result = self.terminal.insert_before(chunk.len() as u16, |buf| {
                let text: Vec<Line> = chunk.iter().map(|l| Line::from(l.clone())).collect();
                Paragraph::new(text).render(buf.area, buf);
            });
            if result.is_err() {
                self.closed = true;
                return;
            }
        }
        let (board, now) = (&self.board, self.now);
        if self.terminal.draw(|f| render_inline(board, now, f.area(), f.buffer_mut())).is_err() {
            self.closed = true;
        }
    }

    /// Leaves the final view on screen and puts the cursor below it.
    pub(crate) fn finish(&mut self) {
        self.tick(Instant::now());
        if !self.closed {
            let _ = self.terminal.clear();
            let area = self.terminal.get_frame().area();
            let _ = self.terminal.set_cursor_position((0, area.y));
            let _ = self.terminal.show_cursor();
        }
    }
}

impl<B: Backend> Drop for LiveView<B> {
    /// The cursor comes back even when the run ends in a panic.
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{JobCounts, JobStatus, NodeOutcome, Stream, Summary};
    use ratatui::backend::TestBackend;
    use std::time::Duration;

    #[test]
    fn progress_below_and_finished_nodes_and_failures_above() {
        let t0 = Instant::now();
        let names = ["web1", "web2", "db1"];
        let mut view = LiveView::new(TestBackend::new(80, 14), Shown::Failed).unwrap();
        let ev =
            |view: &mut LiveView<TestBackend>, e: Event, secs: u64| view.handle(&e, t0 + Duration::from_secs(secs));
        ev(
            &mut view,
            Event::RunStarted {
                run: "r".into(),
                mode: Default::default(),
                job_list: Vec::new(),
                nodes: names.iter().map(std::string::ToString::to_string).collect(),
                node_jobs: vec![1; 3],
                jobs: 1,
                tasks: 3,
            },
            0,
        );
        for n in ["web1", "web2", "db1"] {
            ev(&mut view, Event::NodeConnecting { node: n.into(), address: "x".into() }, 0);
            ev(
                &mut view,
                Event::JobStarted {
                    node: n.into(),
                    job: 0,
                    name: "RUN make".into(),
                    fingerprint: "f".into(),
                    info: "make".into(),
                },
                0,
            );
        }
        ev(
            &mut view,
            Event::JobFinished {
                node: "web1".into(),
                job: 0,
                name: "RUN make".into(),
                status: JobStatus::Ok,
                exit_code: Some(0),
                reason: None,
                ms: 3000,
            },
            3,
        );
        ev(&mut view, Event::node_finished("web1", NodeOutcome::Ok, JobCounts { ok: 1, ..JobCounts::default() }), 3);
        ev(
            &mut view,
            Event::JobOutput { node: "db1".into(), job: 0, stream: Stream::Stderr, data: "make: *** No rule\n".into() },
            4,
        );
        ev(
            &mut view,
            Event::JobFinished {
                node: "db1".into(),
                job: 0,
                name: "RUN make".into(),
                status: JobStatus::Failed,
                exit_code: Some(2),
                reason: Some("exited with code 2".into()),
                ms: 4000,
            },
            4,
        );
        let one_failed = JobCounts { failed: 1, ..JobCounts::default() };
        ev(&mut view, Event::node_finished("db1", NodeOutcome::Failed, one_failed), 4);
        view.tick(t0 + Duration::from_secs(12));
        let screen = view.backend().to_string();
        let lines: Vec<&str> =
            screen.lines().map(|l| l.trim_matches('"').trim_end()).filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines,
            [
                "db1   FAILED     1 job (0 ok, 0 cached, 1 failed, 0 skipped)",
                "jobs █████████████░░░░░░░ 2/3   nodes █████████████░░░░░░░ 2/3   12s",
                "ok 1 · failed 1  │ nodes: running 1 · ok 1 · failed 1",
                "  web2  running 1/1      12s  RUN make",
            ]
        );
        let summary = Summary {
            nodes: 3,
            nodes_ok: 1,
            nodes_failed: 2,
            jobs_ok: 1,
            jobs_failed: 2,
            elapsed_ms: 13_000,
            ..Summary::default()
        };
        view.handle(&Event::RunFinished { summary, exit_code: 1 }, t0 + Duration::from_secs(13));
        view.finish();
        let screen = view.backend().to_string();
        assert!(screen.contains("summary: 3 nodes (1 ok, 2 failed, 0 unreachable)"), "{screen}");
        // The failure's output, grouped, above the summary.
        assert!(screen.contains("  db1 (1)   FAILED: exited with code 2"), "{screen}");
        assert!(screen.contains("    │ make: *** No rule"), "{screen}");
        assert!(!screen.contains("jobs ████"), "the viewport is cleared at the end: {screen}");
    }
}
