//! `director tui`: the full-screen app an operator can live in.
//!
//! This module owns the terminal and the loop; [`app`] holds the state and turns keys into
//! actions, [`view`] draws it. The loop only turns inputs into calls on the app: a key (read
//! on a thread of its own), a run's event (through [`crate::launch`], the same path as the
//! command line, so runs started here are locked, recorded and cancellable like any other),
//! and a tick that redraws. Events are applied as they come and drawn at most every tick, so
//! a thousand nodes reporting at once cost one frame, not a thousand.
//!
//! The terminal is restored on quit, on error (the guard's drop) and on panic (ratatui's
//! hook, set before the screen is taken).

pub(crate) mod app;
#[cfg(test)]
mod tests;
pub(crate) mod view;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::Error;
use crate::event::{JobStatus, RunKind, RunMode};
use crate::history::ResultStatus;
use crate::history::{self, Contention, History};
use crate::launch::{Incoming, Launch, Running};
use crate::plan::{Plan, Selection};
use app::{Action, App, Started};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the screen is redrawn while something moves.
const TICK: Duration = Duration::from_millis(100);

/// Leaves the alternate screen and raw mode when dropped, whatever happened.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// `orchestrations/*.y*ml` beside each catalog file, one level up (a `catalogs/` folder's
/// sibling) and in the current directory.
pub(crate) fn find_orchestrations(catalogs: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for c in catalogs {
        let dir = std::path::absolute(c).unwrap_or(c.clone()).parent().map(Path::to_path_buf).unwrap_or_default();
        dirs.push(dir.join("orchestrations"));
        if let Some(up) = dir.parent() {
            dirs.push(up.join("orchestrations"));
        }
    }
    dirs.push(PathBuf::from("orchestrations"));
    let mut found: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        for f in files {
            let canonical = std::fs::canonicalize(&f).unwrap_or(f.clone());
            if !found.iter().any(|g| std::fs::canonicalize(g).unwrap_or(g.clone()) == canonical) {
                found.push(f);
            }
        }
    }
    found
}

/// Runs the app until the user quits; returns the exit code.
pub(crate) fn run(
    config: Config,
    history_path: history::Location,
    runtime: tokio::runtime::Runtime,
) -> Result<i32, Error> {
    let catalog = Catalog::load_browsable(&config.catalogs)?;
    let title = match config.catalogs.as_slice() {
        [] => "embedded local catalog".to_string(),
        files => files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "),
    };
    let mut app = App::new(&catalog, title, find_orchestrations(&config.catalogs), Instant::now());
    if !catalog.warnings.is_empty() {
        app.message = Some(catalog.warnings.join("; "));
    }
    if !config.restrict.is_empty() {
        // `--restrict` preselects its nodes: they are what the first run applies to.
        let mask = Selection { restrict: config.restrict.clone(), ..Selection::default() }.mask(&catalog)?;
        app.selected = catalog.nodes.iter().zip(mask).filter(|(_, on)| *on).map(|(n, _)| n.name.clone()).collect();
    }
    refresh_facts(&mut app, &history_path);
    let hint = "`director tui` needs a terminal; in scripts, use `director orchestrate FILE` (with --json for events)";
    if !std::io::stdout().is_terminal() {
        return Err(Error::input("the TUI cannot start: stdout is not a terminal").hint(hint));
    }
    let mut terminal = ratatui::try_init()
        .map_err(|e| Error::input(format!("the TUI cannot start: cannot take the terminal: {e}")).hint(hint))?;
    let _restore = Restore;
    let tui = Tui { catalog, config, history: history_path };
    crate::launch::block_on(runtime, tui.serve(&mut app, &mut terminal))
}

struct Tui {
    catalog: Catalog,
    config: Config,
    history: history::Location,
}

/// The next incoming of the run in flight; never resolves when there is none.
async fn next_incoming(running: &mut Option<Running>) -> Option<Incoming> {
    match running {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

fn refresh_facts(app: &mut App, path: &history::Location) {
    let Ok(Some(store)) = History::open_existing(path) else { return };
    let facts = store.list_nodes().unwrap_or_default();
    let outcomes = store.last_outcomes().unwrap_or_default();
    app.know(&facts, &outcomes, crate::transport::executor::is_current);
}

impl Tui {
    async fn serve(&self, app: &mut App, terminal: &mut ratatui::DefaultTerminal) -> Result<i32, Error> {
        let draw_error = |e: std::io::Error| Error::internal(format!("cannot draw on the terminal: {e}"));
        let (key_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("keys".into())
            .spawn(move || {
                while let Ok(event) = crossterm::event::read() {
                    if key_tx.send(event).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot read the keyboard: {e}")))?;
        let mut running: Option<Running> = None;
        let mut tick = tokio::time::interval(TICK);
        let mut dirty = true;
        let mut pressed = false;
        let mut quit = false;
        loop {
            tokio::select! {
                Some(input) = keys.recv() => {
                    if let crossterm::event::Event::Key(key) = input {
                        if key.kind == crossterm::event::KeyEventKind::Press {
                            if let Some(action) = app.key(key) {
                                quit |= self.perform(action, app, &mut running);
                            }
                        }
                    }
                    pressed = true;
                }
                incoming = next_incoming(&mut running) => {
                    match incoming {
                        Some(Incoming::Event(event)) => app.event(&super::for_people(&event), Instant::now()),
                        Some(Incoming::CancelledElsewhere) => app.message = Some("cancelled from another terminal (`director manage --cancel`): killing the running jobs".into()),
                        None => {
                            let run = running.take().expect("a run was in flight");
                            let code = run.finish().await?;
                            app.run_ended(code);
                            refresh_facts(app, &self.history);
                        }
                    }
                    dirty = true;
                }
                _ = tick.tick() => {
                    app.now = Instant::now();
                    if dirty || app.in_flight {
                        terminal.draw(|f| view::render(app, f)).map_err(draw_error)?;
                        dirty = false;
                    }
                }
            }
            if quit && running.is_none() {
                return Ok(crate::error::exit::OK);
            }
            if std::mem::take(&mut pressed) {
                // A key is answered at once, not on the next tick; events wait for the tick.
                app.now = Instant::now();
                terminal.draw(|f| view::render(app, f)).map_err(draw_error)?;
                dirty = false;
            }
        }
    }

    /// Does what a key asked; returns true when the app should end (once no run is in flight).
    fn perform(&self, action: Action, app: &mut App, running: &mut Option<Running>) -> bool {
        match action {
            Action::Quit => return true,
            Action::Cancel(level) => {
                if let Some(r) = running.as_ref() {
                    r.cancel(level);
                }
                return app.quit_armed;
            }
            Action::Orchestrate { files, nodes } => {
                let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
                let label = format!("{} on {} node(s)", names.join(", "), nodes.len());
                let built = files
                    .iter()
                    .map(|f| crate::plan::orchestration::Orchestration::load(f))
                    .collect::<Result<Vec<_>, _>>()
                    .and_then(|list| Plan::build(&self.catalog, &list, &self.selection(nodes)));
                let what = What {
                    kind: RunKind::Orchestrate,
                    command: format!("director tui: orchestrate {}", names.join(" ")),
                    files: files.iter().map(|f| crate::launch::absolute(f)).collect(),
                    label,
                    started: Started::Orchestrate(files),
                };
                self.start(app, running, built, what);
            }
            Action::Exec { command, nodes } => {
                let label = format!("`{command}` on {} node(s)", nodes.len());
                let built =
                    crate::plan::orchestration::Orchestration::command_line("RUN", std::slice::from_ref(&command))
                        .and_then(|o| Plan::build(&self.catalog, &[o], &self.selection(nodes)));
                let what = What {
                    kind: RunKind::Exec,
                    command: format!("director tui: exec {command}"),
                    files: Vec::new(),
                    label,
                    started: Started::Exec(command),
                };
                self.start(app, running, built, what);
            }
            Action::RetryRun { run } => match self.retry_set(&run) {
                Ok(set) if set.nodes.is_empty() => {
                    app.message =
                        Some(format!("run {run} has no failed, unreachable or cancelled node: nothing to retry"));
                }
                Ok(set) if set.mode == RunMode::Plan => {
                    app.message = Some(format!(
                        "run {run} was a plan: it changed nothing, so there is nothing to run again for real"
                    ));
                }
                Ok(set) if set.files.is_empty() => {
                    app.message =
                        Some(format!("run {run} has no orchestration files to run again (it was not `orchestrate`)"));
                }
                Ok(set) => {
                    let files: Vec<PathBuf> = set.files.iter().map(PathBuf::from).collect();
                    return self.perform(Action::Orchestrate { files, nodes: set.nodes }, app, running);
                }
                Err(e) => app.message = Some(one_line(&e)),
            },
            Action::LoadRuns => match self.store().and_then(|s| s.map(|s| s.list_runs()).transpose()) {
                Ok(runs) => {
                    app.runs = runs.unwrap_or_default();
                    app.runs_list.cursor = app.runs_list.cursor.min(app.runs.len().saturating_sub(1));
                }
                Err(e) => app.message = Some(one_line(&e)),
            },
            Action::LoadResults { run, node } => {
                match self.store().and_then(|s| s.map(|s| s.run_results(&run, node.as_deref())).transpose()) {
                    Ok(rows) => {
                        let rows = rows.unwrap_or_default();
                        // Start on the first result that went wrong: that is usually why one looks.
                        app.results_list.cursor = rows
                            .iter()
                            .position(|r| !r.status.succeeded() && r.status != ResultStatus::Ended(JobStatus::Skipped))
                            .unwrap_or(0);
                        app.results = Some((run, node, rows));
                        app.open(app::Screen::Results);
                    }
                    Err(e) => app.message = Some(one_line(&e)),
                }
            }
            Action::LoadJob { job_id, node } => {
                match self.store().and_then(|s| s.map(|s| s.job_info(&job_id)).transpose()) {
                    Ok(Some(job)) => {
                        app.job = Some((job, node));
                        app.job_scroll = 0;
                        app.open(app::Screen::Job);
                    }
                    Ok(None) => app.message = Some("the history has no record of that job".into()),
                    Err(e) => app.message = Some(one_line(&e)),
                }
            }
        }
        false
    }

    fn store(&self) -> Result<Option<History>, Error> {
        History::open_existing(&self.history)
    }

    fn retry_set(&self, run: &str) -> Result<history::query::RetrySet, Error> {
        let store = self.store()?.ok_or_else(|| Error::input("no runs recorded yet"))?;
        store.retry_set(run)
    }

    fn selection(&self, nodes: Vec<String>) -> Selection {
        Selection {
            ignore_cache: self.config.ignore_cache,
            only: Some(nodes),
            serial: self.config.serial,
            max_fail: self.config.max_fail,
            ..Selection::default()
        }
    }

    fn start(&self, app: &mut App, running: &mut Option<Running>, built: Result<Plan, Error>, what: What) {
        let plan = match built {
            Ok(plan) => plan,
            Err(e) => {
                app.message = Some(one_line(&e));
                return;
            }
        };
        let launch =
            Launch { plan, kind: what.kind, command: what.command, files: what.files, history: self.history.clone() };
        match launch.start(&self.catalog, &self.config, Contention::Refuse, &mut |_| {}) {
            Ok(run) => {
                app.run_started(what.label, what.started);
                if !run.warnings.is_empty() {
                    app.message = Some(run.warnings.join("; "));
                }
                *running = Some(run);
            }
            Err(e) => app.message = Some(one_line(&e)),
        }
    }
}

/// A run about to start from a key: what the history and the screen call it.
struct What {
    kind: RunKind,
    command: String,
    files: Vec<String>,
    label: String,
    started: Started,
}

/// An error for the message line: its text and hint on one line.
fn one_line(e: &Error) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
