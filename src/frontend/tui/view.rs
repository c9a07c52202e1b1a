//! Drawing the TUI: a pure function of [`App`] onto a ratatui frame, plus the few pieces the
//! inline view of `orchestrate` shares (progress bar, counts, phase colours).
//!
//! Lists build rows only for what fits on screen, so a frame costs the same at 10 or 10,000
//! nodes; the first row shown is remembered in the list's state so the highlighted row stays
//! in view without jumping.

use super::app::{App, Dialog, Executor, ListState, Screen};
use crate::event::JobStatus;
use crate::frontend::board::{short_duration, Board, NodeBoard, Phase};
use crate::history::ResultStatus;
use crate::node::CancelLevel;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use std::time::Instant;

pub(crate) fn phase_style(phase: Phase) -> Style {
    match phase {
        Phase::Waiting | Phase::Skipped => Style::new().fg(Color::DarkGray),
        Phase::Connecting | Phase::Ready => Style::new().fg(Color::Blue),
        Phase::Running => Style::new().fg(Color::Yellow),
        Phase::Ok => Style::new().fg(Color::Green),
        Phase::Failed => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Phase::Cancelled => Style::new().fg(Color::Magenta),
        Phase::Unreachable => Style::new().fg(Color::Red),
    }
}

/// `[██████░░░░]` for `done` of `total` in `width` cells.
pub(crate) fn bar(done: usize, total: usize, width: usize) -> String {
    let full = (done * width).checked_div(total).unwrap_or(0).min(width);
    format!("{}{}", "█".repeat(full), "░".repeat(width - full))
}

/// `jobs ████░░ 45/120  nodes ██░░ 3/10  12.3s`
pub(crate) fn progress_line(board: &Board, now: Instant, width: usize) -> Line<'static> {
    let done = board.counts.total();
    let bar_width = (width.saturating_sub(40) / 2).clamp(4, 30);
    let mut spans = vec![
        Span::raw("jobs "),
        Span::styled(bar(done, board.jobs_total, bar_width), Style::new().fg(Color::Green)),
        Span::raw(format!(" {done}/{}   nodes ", board.jobs_total)),
        Span::styled(bar(board.nodes_done(), board.nodes.len(), bar_width), Style::new().fg(Color::Green)),
        Span::raw(format!(" {}/{}   ", board.nodes_done(), board.nodes.len())),
        Span::raw(short_duration(board.elapsed(now))).bold(),
    ];
    if let Some((batch, batches)) = board.batch {
        spans.push(Span::raw(format!("   batch {batch}/{batches}")));
    }
    match board.cancel {
        CancelLevel::None => {}
        CancelLevel::Drain => spans.push(Span::styled("   cancelling (no new jobs)", Style::new().fg(Color::Magenta))),
        CancelLevel::Kill => spans.push(Span::styled("   killing running jobs", Style::new().fg(Color::Magenta))),
    }
    Line::from(spans)
}

/// `ok 40 · cached 3 · failed 2 │ nodes: running 5 · connecting 2 · unreachable 1`
pub(crate) fn counts_line(board: &Board) -> Line<'static> {
    let c = board.counts;
    let mut spans = Vec::new();
    for (word, n, colour) in [
        ("ok", c.ok, Color::Green),
        ("cached", c.cached, Color::Cyan),
        ("failed", c.failed, Color::Red),
        ("timed out", c.timed_out, Color::Red),
        ("skipped", c.skipped, Color::DarkGray),
        ("cancelled", c.cancelled, Color::Magenta),
        ("would run", c.would_run, Color::Yellow),
    ] {
        if n > 0 || matches!(word, "ok" | "failed") {
            if !spans.is_empty() {
                spans.push(Span::raw(" · "));
            }
            spans.push(Span::styled(format!("{word} {n}"), Style::new().fg(colour)));
        }
    }
    spans.push(Span::raw("  │ nodes: "));
    for (i, (phase, n)) in board.phases().into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" · "));
        }
        spans.push(Span::styled(format!("{} {n}", phase.word()), phase_style(phase)));
    }
    Line::from(spans)
}

/// `running 2/5` (job k of N) or the node's phase.
pub(crate) fn state_word(n: &NodeBoard) -> String {
    match n.phase {
        Phase::Running => format!("running {}/{}", (n.done + 1).min(n.total.max(1)), n.total),
        p => p.word().to_string(),
    }
}

/// What a node of a run is doing: `running 2/5 RUN apt-get …` or its phase.
pub(crate) fn node_doing(board: &Board, index: usize) -> (String, String) {
    let n = &board.nodes[index];
    let state = state_word(n);
    let job = match (n.running.first(), &n.error) {
        (Some(r), _) if n.running.len() > 1 => format!("{} (+{} more)", r.name, n.running.len() - 1),
        (Some(r), _) => r.name.clone(),
        (None, Some(e)) => e.lines().next().unwrap_or_default().to_string(),
        (None, None) => String::new(),
    };
    (state, job)
}

/// Moves the list's first shown row so the cursor is visible; returns the rows to draw.
fn window(list: &ListState, len: usize, height: usize) -> std::ops::Range<usize> {
    let height = height.max(1);
    let mut offset = list.offset.get().min(len.saturating_sub(1));
    if list.cursor < offset {
        offset = list.cursor;
    } else if list.cursor >= offset + height {
        offset = list.cursor + 1 - height;
    }
    list.offset.set(offset);
    offset..(offset + height).min(len)
}

/// The rows of a list that fit in `height`, built by `row`, the cursor's highlighted.
fn visible_rows<'a>(list: &ListState, len: usize, height: u16, row: impl Fn(usize) -> Row<'a>) -> Vec<Row<'a>> {
    window(list, len, height.saturating_sub(1) as usize)
        .map(|pos| if pos == list.cursor { row(pos).style(highlight()) } else { row(pos) })
        .collect()
}

fn highlight() -> Style {
    Style::new().add_modifier(Modifier::REVERSED)
}

fn header_style() -> Style {
    Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
}

pub fn render(app: &App, frame: &mut Frame) {
    let [top, main, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    render_top(app, frame, top);
    match app.screen {
        Screen::Nodes => render_nodes(app, frame, main),
        Screen::Run => render_run(app, frame, main),
        Screen::History => render_history(app, frame, main),
        Screen::Results => render_results(app, frame, main),
        Screen::Job => render_job(app, frame, main),
    }
    let hint = match app.screen {
        Screen::Nodes => {
            "/ filter · space select · a all · enter details · o orchestrate · x command · ? keys · q quit"
        }
        Screen::Run if app.in_flight => "c cancel (again: kill) · ↑↓ node · enter its jobs · ? keys",
        Screen::Run => "↑↓ node · enter its jobs · R retry failed · o orchestrate · ? keys · q quit",
        Screen::History => "↑↓ run · enter its results · R retry its failed nodes · esc back · ? keys",
        Screen::Results => "↑↓ result · enter the job's record · esc back",
        Screen::Job => "↑↓ pgup pgdn scroll · esc back",
    };
    let line = match &app.message {
        Some(m) => Line::from(Span::styled(m.clone(), Style::new().fg(Color::Yellow))),
        None => Line::from(Span::styled(hint, Style::new().fg(Color::DarkGray))),
    };
    frame.render_widget(Paragraph::new(line), bottom);
    if let Some(dialog) = &app.dialog {
        render_dialog(app, dialog, frame, main);
    }
}

fn render_top(app: &App, frame: &mut Frame, area: Rect) {
    let tab = |n: &str, name: &str, on: bool| {
        let s = Span::raw(format!(" {n} {name} "));
        if on {
            s.reversed()
        } else {
            s
        }
    };
    let mut spans =
        vec![Span::raw(" director ").bold(), Span::raw(format!("· {} · {} nodes", app.title, app.nodes.len()))];
    if !app.selected.is_empty() {
        spans.push(Span::raw(format!(" · {} selected", app.selected.len())));
    }
    spans.push(Span::raw("   "));
    spans.push(tab("1", "Nodes", app.tab() == Screen::Nodes));
    spans.push(tab("2", "Run", app.tab() == Screen::Run));
    spans.push(tab("3", "History", app.tab() == Screen::History));
    if app.in_flight {
        spans.push(Span::styled("  ● running", Style::new().fg(Color::Yellow)));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn render_nodes(app: &App, frame: &mut Frame, area: Rect) {
    let title = match app.filter.as_str() {
        "" => format!(" Nodes ({}) ", app.nodes.len()),
        f => format!(" Nodes: /{f} ({} of {}) ", app.shown.len(), app.nodes.len()),
    };
    let block = Block::new().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.nodes.is_empty() {
        let text =
            "The catalog has no nodes.\n\nAdd some under `nodes:` in the catalog file, then start the TUI again.";
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
        return;
    }
    if app.shown.is_empty() {
        frame.render_widget(
            Paragraph::new(format!(
                "No node matches `{}` (name, group or glob). Esc in the filter clears it.",
                app.filter
            )),
            inner,
        );
        return;
    }
    let rows: Vec<Row> = visible_rows(&app.node_list, app.shown.len(), inner.height, |pos| {
        let node = &app.nodes[app.shown[pos]];
        let (state, style) = match app.on_board(&node.name) {
            Some(b) => (state_word(b), phase_style(b.phase)),
            None => ("unknown".to_string(), Style::new().fg(Color::DarkGray)),
        };
        let system = match (node.arch.as_str(), node.os.as_str()) {
            ("", "") => "-".to_string(),
            (a, o) => format!("{a} {o}"),
        };
        let executor = match node.executor {
            Executor::Unknown => "-",
            Executor::Present => "yes",
            Executor::Old => "old",
        };
        let last = node.last.as_ref().map(|(o, _)| o.clone()).unwrap_or_else(|| "-".into());
        let rtt = node.round_trip_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "-".into());
        let mark = if app.selected.contains(&node.name) { "●" } else { " " };
        Row::new(vec![
            Span::raw(mark),
            Span::raw(node.name.clone()),
            Span::raw(node.groups.join(",")),
            Span::styled(state, style),
            Span::raw(node.address.clone()),
            Span::raw(system),
            Span::raw(executor),
            Span::raw(last),
            Span::raw(rtt),
        ])
    });
    let name_width = app.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).clamp(4, 30) as u16;
    let group_width = app.nodes.iter().map(|n| n.groups.join(",").len()).max().unwrap_or(6).clamp(6, 16) as u16;
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Length(name_width),
            Constraint::Length(group_width),
            Constraint::Length(13),
            Constraint::Length(20),
            Constraint::Length(18),
            Constraint::Length(4),
            Constraint::Length(11),
            Constraint::Min(6),
        ],
    )
    .header(
        Row::new(vec!["", "NODE", "GROUPS", "STATE", "ADDRESS", "SYSTEM", "EXEC", "LAST RUN", "RTT"])
            .style(header_style()),
    );
    frame.render_widget(table, inner);
}

fn render_run(app: &App, frame: &mut Frame, area: Rect) {
    let Some(board) = &app.board else {
        let text = "No run yet in this session.\n\no runs an orchestration on the selected nodes (all shown nodes when none is selected), x runs a command; 3 browses past runs.";
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: false }).block(Block::new().borders(Borders::ALL).title(" Run ")),
            area,
        );
        return;
    };
    let status = match &board.finished {
        None if app.in_flight => "running".to_string(),
        None => "starting".to_string(),
        Some((summary, code)) => finished_status(summary, *code),
    };
    let [head, body] = Layout::vertical([Constraint::Length(4), Constraint::Min(3)]).areas(area);
    let block = Block::new().borders(Borders::ALL).title(format!(" Run {} · {} · {status} ", board.run, app.run_label));
    let inner = block.inner(head);
    frame.render_widget(block, head);
    frame.render_widget(
        Paragraph::new(vec![progress_line(board, app.now, inner.width as usize), counts_line(board)]),
        inner,
    );
    let finished = board.finished.is_some();
    let [list, detail] =
        Layout::vertical([Constraint::Percentage(if finished { 45 } else { 60 }), Constraint::Min(4)]).areas(body);
    let rows_order = app.run_rows();
    let block = Block::new().borders(Borders::ALL).title(" Nodes (in flight first) ");
    let inner = block.inner(list);
    frame.render_widget(block, list);
    let name_width = board.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4).clamp(4, 30) as u16;
    let rows: Vec<Row> = visible_rows(&app.run_list, rows_order.len(), inner.height, |pos| {
        let i = rows_order[pos];
        let n = &board.nodes[i];
        let (state, job) = node_doing(board, i);
        let (elapsed, quiet) = match n.running.first() {
            Some(r) => {
                let quiet = n.last_output.map(|t| t.max(r.since)).unwrap_or(r.since);
                (
                    short_duration(app.now.saturating_duration_since(r.since)),
                    short_duration(app.now.saturating_duration_since(quiet)),
                )
            }
            None => match (n.first_seen, n.finished_at) {
                (Some(a), Some(b)) => (short_duration(b.duration_since(a)), String::new()),
                _ => (String::new(), String::new()),
            },
        };
        Row::new(vec![
            Span::raw(n.name.clone()),
            Span::styled(state, phase_style(n.phase)),
            Span::raw(job),
            Span::raw(elapsed),
            Span::raw(quiet),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(name_width),
            Constraint::Length(13),
            Constraint::Min(20),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(vec!["NODE", "STATE", "JOB", "ELAPSED", "QUIET"]).style(header_style()));
    frame.render_widget(table, inner);
    if finished {
        render_summary(board, frame, detail);
    } else {
        let node = rows_order.get(app.run_list.cursor).map(|&i| &board.nodes[i]);
        let (name, tail) = node.map(|n| (n.name.as_str(), n.tail.as_str())).unwrap_or(("", ""));
        let block = Block::new().borders(Borders::ALL).title(format!(" Output: {name} "));
        let inner = block.inner(detail);
        frame.render_widget(block, detail);
        let lines: Vec<&str> = tail.lines().collect();
        let shown = lines[lines.len().saturating_sub(inner.height as usize)..].join("\n");
        frame.render_widget(Paragraph::new(shown), inner);
    }
}

/// How a finished run ended, for the run view's title.
pub(crate) fn finished_status(s: &crate::event::Summary, code: i32) -> String {
    use crate::error::exit;
    let unreachable = match s.nodes_unreachable {
        0 => String::new(),
        n => format!(", {n} node(s) unreachable"),
    };
    match code {
        exit::OK => "finished: ok".to_string(),
        exit::CANCELLED => {
            format!("cancelled: {} job(s) cancelled, {} skipped{unreachable}", s.jobs_cancelled, s.jobs_skipped)
        }
        exit::JOB_FAILED => format!("finished: {} job(s) failed{unreachable}", s.jobs_failed + s.jobs_timed_out)
            .replace(" node(s) unreachable", " unreachable"),
        exit::UNREACHABLE => format!("finished: {} node(s) unreachable", s.nodes_unreachable),
        code => format!("finished: exit code {code}"),
    }
}

fn render_summary(board: &Board, frame: &mut Frame, area: Rect) {
    let [left, right] = Layout::horizontal([Constraint::Percentage(70), Constraint::Percentage(30)]).areas(area);
    let jobs = board.result_groups();
    let mut lines: Vec<Line> = Vec::new();
    // Connection failures belong to no job: they come first.
    for n in board.nodes.iter().filter(|n| n.phase == Phase::Unreachable) {
        lines.push(Line::from(vec![
            Span::styled(format!("{} unreachable", n.name), Style::new().fg(Color::Red).bold()),
            Span::raw(format!(": {}", n.error.as_deref().unwrap_or_default())),
        ]));
    }
    for (job, name, groups) in &jobs {
        lines.push(Line::from(Span::raw(format!("job {}: {name}", job + 1)).bold()));
        for g in groups {
            let bad = matches!(g.status, JobStatus::Failed | JobStatus::TimedOut | JobStatus::Cancelled);
            let colour = if bad { Color::Red } else { Color::Green };
            let mut head = vec![
                Span::styled(format!("  {} ({})", g.nodes, g.count), Style::new().fg(Color::Cyan)),
                Span::styled(format!("  {}", crate::frontend::text::word(g.status)), Style::new().fg(colour)),
            ];
            let one_line = !g.output.is_empty() && !g.output.contains('\n') && g.reason.is_none();
            match (&g.reason, one_line) {
                (Some(reason), _) => head.push(Span::raw(format!(": {reason}"))),
                (None, true) => head.push(Span::raw(format!("  {}", g.output))),
                (None, false) => {}
            }
            lines.push(Line::from(head));
            if !one_line {
                for l in g.output.lines() {
                    lines.push(Line::from(format!("    │ {l}")));
                }
            }
        }
    }
    let failed =
        jobs.iter().flat_map(|j| &j.2).filter(|g| matches!(g.status, JobStatus::Failed | JobStatus::TimedOut)).count();
    let title = format!(" Results by job, nodes grouped by identical output ({failed} failed groups) ");
    frame.render_widget(Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(title)), left);
    let slow: Vec<Line> = board
        .slowest(right.height.saturating_sub(2) as usize)
        .into_iter()
        .map(|(n, d)| Line::from(format!("{:>8}  {n}", short_duration(d))))
        .collect();
    frame.render_widget(Paragraph::new(slow).block(Block::new().borders(Borders::ALL).title(" Slowest nodes ")), right);
}

fn render_history(app: &App, frame: &mut Frame, area: Rect) {
    let block = Block::new().borders(Borders::ALL).title(format!(" Past runs ({}) ", app.runs.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.runs.is_empty() {
        frame.render_widget(Paragraph::new("No runs recorded yet."), inner);
        return;
    }
    let rows: Vec<Row> = visible_rows(&app.runs_list, app.runs.len(), inner.height, |pos| {
        let r = &app.runs[pos];
        let duration =
            r.duration_ms.map(|ms| short_duration(std::time::Duration::from_millis(ms as u64))).unwrap_or_default();
        let nodes =
            format!("{} ({} ok, {} failed, {} unreach.)", r.nodes, r.nodes_ok, r.nodes_failed, r.nodes_unreachable);
        let nodes = match r.nodes_skipped {
            0 => nodes,
            n => format!("{nodes} {n} skipped"),
        };
        Row::new(vec![
            r.id.clone(),
            r.kind.to_string(),
            r.status.to_string(),
            r.started.to_string(),
            duration,
            nodes,
            r.command.clone(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Length(19),
            Constraint::Length(8),
            Constraint::Length(32),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["RUN", "KIND", "STATUS", "STARTED", "TOOK", "NODES", "COMMAND"]).style(header_style()));
    frame.render_widget(table, inner);
}

fn render_results(app: &App, frame: &mut Frame, area: Rect) {
    let Some((run, node, rows)) = &app.results else { return };
    let whose = node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
    let block = Block::new().borders(Borders::ALL).title(format!(" Results of run {run}{whose} ({}) ", rows.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if rows.is_empty() {
        frame.render_widget(Paragraph::new("No results recorded for this run yet."), inner);
        return;
    }
    let table_rows: Vec<Row> = visible_rows(&app.results_list, rows.len(), inner.height, |pos| {
        let r = &rows[pos];
        let style = match r.status {
            s if s.succeeded() => Style::new().fg(Color::Green),
            ResultStatus::Ended(JobStatus::Skipped) => Style::new().fg(Color::DarkGray),
            _ => Style::new().fg(Color::Red),
        };
        Row::new(vec![
            Span::raw(r.seq.to_string()),
            Span::raw(r.job.clone()),
            Span::raw(r.node.clone()),
            Span::styled(r.status.to_string(), style),
            Span::raw(r.exit_code.map(|c| c.to_string()).unwrap_or_default()),
            Span::raw(r.execution_ms.map(|ms| format!("{ms} ms")).unwrap_or_default()),
            Span::raw(r.reason.clone().unwrap_or_default()),
        ])
    });
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(4),
            Constraint::Length(28),
            Constraint::Length(14),
            Constraint::Length(11),
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["#", "JOB", "NODE", "STATUS", "EXIT", "TIME", "REASON"]).style(header_style()));
    frame.render_widget(table, inner);
}

fn render_job(app: &App, frame: &mut Frame, area: Rect) {
    let Some((job, node)) = &app.job else { return };
    let Some(r) = job.results.iter().find(|r| &r.node == node) else { return };
    let field = |k: &str, v: String| {
        Line::from(vec![Span::styled(format!("{k:<12}"), Style::new().fg(Color::DarkGray)), Span::raw(v)])
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    // Recorded text comes from the node as it was: shown, never obeyed.
    let printable = |text: &str| crate::frontend::printable(text).into_owned();
    let mut lines = vec![
        field("job", format!("{} ({})", job.name, job.id)),
        field("run", format!("{} · job {} · entry {}", job.run, job.seq, job.parent_name.clone().unwrap_or_default())),
        field("node", node.clone()),
        field("status", r.status.to_string()),
        field("exit code", r.exit_code.map(|c| c.to_string()).unwrap_or_else(|| "-".into())),
        field("reason", printable(&opt(&r.reason))),
        field("fingerprint", opt(&r.fingerprint)),
        field("started", r.started.map(|w| w.to_string()).unwrap_or_else(|| "-".into())),
        field("finished", r.finished.map(|w| w.to_string()).unwrap_or_else(|| "-".into())),
        field(
            "took",
            r.execution_ms
                .map(|ms| format!("{ms} ms (round trip {} ms)", r.roundtrip_ms.unwrap_or_default()))
                .unwrap_or_else(|| "-".into()),
        ),
        field("info", String::new()),
    ];
    lines.extend(printable(r.info.as_deref().unwrap_or_default()).lines().map(|l| Line::from(format!("  {l}"))));
    for (name, text, cut) in [("stdout", &r.stdout, r.stdout_cut), ("stderr", &r.stderr, r.stderr_cut)] {
        let note = if cut > 0 { format!(" ({cut} bytes cut)") } else { String::new() };
        lines.push(Line::from(Span::styled(format!("── {name}{note} ──"), Style::new().fg(Color::Cyan))));
        lines.extend(printable(text).lines().map(|l| Line::from(l.to_string())));
    }
    let block = Block::new().borders(Borders::ALL).title(format!(" Job record: {} on {node} ", job.name));
    frame.render_widget(Paragraph::new(Text::from(lines)).block(block).scroll((app.job_scroll, 0)), area);
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

pub(crate) const KEYS: &[(&str, &str)] = &[
    ("1 2 3, tab", "nodes, run, history"),
    ("↑ ↓ j k, pgup pgdn, g G", "move in a list"),
    ("/", "filter nodes by name, group or glob (esc clears)"),
    ("space, a", "select a node, select all shown"),
    ("o", "run an orchestration on the selected nodes"),
    ("x", "run a command on the selected nodes"),
    ("c, ctrl-c", "cancel the run: first drains, again kills"),
    ("R", "retry the failed nodes of the run"),
    ("enter", "open what is highlighted: node, run, result, job"),
    ("esc", "back"),
    ("?", "this help"),
    ("q", "quit (twice while a run is in flight: kills it)"),
];

fn render_dialog(app: &App, dialog: &Dialog, frame: &mut Frame, area: Rect) {
    let (title, lines, height): (String, Vec<Line>, u16) = match dialog {
        Dialog::Help => {
            let lines = KEYS
                .iter()
                .map(|(k, what)| {
                    Line::from(vec![Span::styled(format!("{k:<24}"), Style::new().bold()), Span::raw(*what)])
                })
                .collect::<Vec<_>>();
            let n = lines.len() as u16 + 2;
            (" Keys (any key closes) ".to_string(), lines, n)
        }
        Dialog::Filter => (
            " Filter: name, group or glob ".to_string(),
            vec![
                Line::from(format!("/{}█", app.filter)),
                Line::from(format!("{} of {} nodes", app.shown.len(), app.nodes.len())),
            ],
            4,
        ),
        Dialog::Command(text) => {
            let n = app.targets().len();
            (
                " Run a command (enter runs, esc closes) ".to_string(),
                vec![Line::from(format!("$ {text}█")), Line::from(format!("on {n} node(s)"))],
                4,
            )
        }
        Dialog::Pick { input, cursor } => {
            let picks = app.picks(input);
            let mut lines =
                vec![Line::from(format!("path: {input}█")), Line::from(format!("on {} node(s)", app.targets().len()))];
            if picks.is_empty() {
                lines.push(Line::from(Span::styled("enter runs the typed path", Style::new().fg(Color::DarkGray))));
            }
            for (i, p) in picks.iter().enumerate().take(12) {
                let l = Line::from(format!("  {}", p.display()));
                lines.push(if i == *cursor { l.style(highlight()) } else { l });
            }
            let n = lines.len() as u16 + 2;
            (" Run an orchestration (type a path or pick one) ".to_string(), lines, n)
        }
        Dialog::Node(i) => {
            let node = &app.nodes[*i];
            let unknown = || "-".to_string();
            let or = |s: &str| if s.is_empty() { unknown() } else { s.to_string() };
            let state = app.on_board(&node.name).map(state_word).unwrap_or_else(|| "unknown".into());
            let executor = match node.executor {
                Executor::Unknown => "unknown",
                Executor::Present => "installed, this version",
                Executor::Old => "another version (the next run replaces it)",
            };
            let mut lines: Vec<Line> = [
                ("address", node.address.clone()),
                ("groups", if node.groups.is_empty() { unknown() } else { node.groups.join(", ") }),
                ("arch", or(&node.arch)),
                ("os", or(&node.os)),
                ("executor", executor.to_string()),
                ("this session", state),
                ("round trip", node.round_trip_ms.map(|ms| format!("{ms} ms")).unwrap_or_else(unknown)),
                ("last run", node.last.as_ref().map(|(o, run)| format!("{o} in run {run}")).unwrap_or_else(unknown)),
            ]
            .into_iter()
            .map(|(k, v)| Line::from(vec![Span::styled(format!("{k:<14}"), Style::new().bold()), Span::raw(v)]))
            .collect();
            if let Some(error) = app.on_board(&node.name).and_then(|b| b.error.clone()) {
                lines.push(Line::from(vec![
                    Span::styled(format!("{:<14}", "error"), Style::new().bold()),
                    Span::raw(error),
                ]));
            }
            let hint = if node.last.is_some() {
                "enter: its results in that run · any other key closes"
            } else {
                "any key closes"
            };
            lines.push(Line::from(Span::styled(hint, Style::new().fg(Color::DarkGray))));
            let n = lines.len() as u16 + 2;
            (format!(" {} ", node.name), lines, n)
        }
    };
    let rect = centered(area, 78, height);
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(title)), rect);
}
