//! director: an agentless SSH push orchestrator.
//!
//! The pipeline, one module each: [`catalog`] (files in, validated values out) → [`plan`]
//! (which job runs where) → [`engine`] ⇄ [`transport`] ⇄ the executor (`crates/director-exec`,
//! speaking `crates/director-proto`) → [`event`]s → [`frontend`]s and the [`history`], which
//! also holds the nodes of a running run (its locks). This file wires them for
//! the commands in [`cli`]; `main.rs` only calls [`main_with_args`].

// The ground: what every room may use.
mod error; // errors as the user reads them, exit codes, did-you-mean
mod event; // the one stream from the engine to the frontends and the history
mod paths; // ~ and director's XDG directories
mod private; // operator files created 0600/0700
mod shell; // quoting for /bin/sh
mod secret; // values marked secret, and their masking

// The pipeline, bottom up: each room imports only from those above it here.
mod catalog; // files in (catalogs, YAML, templates), validated nodes out
mod transport; // SSH and local: connect, host keys, ssh_config, the executor's install
mod node; // one node as a job sees it: session, node cache, shared state, the event sink
mod verb; // the job language, one module per verb
mod plan; // catalog and orchestrations → jobs per node, fingerprints, batches
mod engine; // runs a plan: a task per node, its lanes, cancel
mod history; // the run history (SQLite or PostgreSQL), fed by events
mod cli; // what the user typed (clap)
mod config; // the settings resolved from the command line, the environment and the file
mod logging; // -v and DIRECTOR_LOG
mod launch; // a plan started: nodes locked, recorder and engine going
mod relay; // `director relay`: a site's part of a run, on its gateway
mod frontend; // what the user sees: JSON, plain lines, the live view, the TUI, manage

/// What the end-to-end suite, the benches and the fuzzers reach inside the library (the
/// binary needs only [`main_with_args`]); everything else is the crate's own.
pub mod api {
    pub use crate::catalog::{ansible, yaml::Document, Catalog};
    pub use crate::event::{Event, JobCounts, JobStatus, NodeOutcome, Stream, Summary};
    pub use crate::frontend::tui::{
        app::{App, Started},
        view::render,
    };
    pub use crate::plan::{orchestration::Orchestration, Plan, Selection};
    pub use crate::transport::{executor, ssh_config};
}

use catalog::Catalog;
use config::Config;
use error::{exit, Error};
use event::{RunKind, RunMode};
use launch::Launch;
use plan::orchestration::Orchestration;
use plan::{Plan, Selection};
use std::ffi::OsString;

/// Parses `args`, runs the command, and returns the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    let cli = match cli::parse(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    match run(cli, &command_line(&args)) {
        Ok(code) => code,
        Err(e) if e.code == exit::OK => {
            print!("{e}");
            exit::OK
        }
        Err(e) => {
            eprintln!("{e}");
            e.code
        }
    }
}

/// The command line as a person would retype it, for the history.
fn command_line(args: &[OsString]) -> String {
    let words: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let a = a.to_string_lossy();
            let a = if i == 0 {
                std::path::Path::new(a.as_ref())
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                a.into_owned()
            };
            // A password in a URL (`--history postgres://u:pw@db/x`) is not kept.
            let a = history::without_password(&a);
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a
            } else {
                shell::quote(&a)
            }
        })
        .collect();
    words.join(" ")
}

fn run(cli: cli::Cli, command: &str) -> Result<i32, Error> {
    let logging = logging::init(cli.verbose, cli.log_file.as_deref())?;
    let settings = config::Settings::load(cli.config.as_deref())?;
    let history = match cli.history.clone().or(settings.history.clone()) {
        Some(given) => history::location(&given)?,
        None => history::default_location(),
    };
    let launch = |plan, kind, files: &[std::path::PathBuf]| Launch {
        plan,
        kind,
        command: command.to_string(),
        files: files.iter().map(|f| launch::absolute(f)).collect(),
        history: history.clone(),
    };
    match cli.command {
        cli::Command::Manage(args) => frontend::manage::run(&args, &history),
        cli::Command::Relay { install } => relay::serve(install.as_deref()),
        cli::Command::Completions { shell } => {
            // A closed stdout is the reader's business.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &cli::completions(shell));
            Ok(exit::OK)
        }
        cli::Command::Man { page, dir } => {
            // A closed stdout (`director man | head`) is the reader's business.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), &cli::man(page.as_deref(), dir.as_deref())?);
            Ok(exit::OK)
        }
        cli::Command::Tui { catalogs, run } => {
            if logging == logging::Logging::Stderr {
                return Err(Error::input("the TUI owns the terminal: its log cannot go to stderr").hint(
                    "give --log-file FILE with -v (or DIRECTOR_LOG), and follow it with `tail -f FILE` elsewhere",
                ));
            }
            if run.json {
                return Err(Error::input("--json has no meaning in the TUI")
                    .hint("use `director orchestrate FILE --json` for events a script can read"));
            }
            if run.plan {
                return Err(Error::input("--plan has no meaning in the TUI")
                    .hint("use `director orchestrate FILE --plan` to see what a run would do"));
            }
            if run.list_nodes || run.output.is_some() {
                let flag = if run.list_nodes { "--list-nodes" } else { "--output" };
                return Err(Error::input(format!("{flag} has no meaning in the TUI"))
                    .hint("the TUI shows its nodes and every job's output itself"));
            }
            let mut config = Config::resolve(&run, &settings);
            if !catalogs.is_empty() {
                config.catalogs = catalogs;
            }
            config.read_become_password()?;
            frontend::tui::run(config, history, launch::runtime()?)
        }
        cli::Command::Orchestrate { files, retry_failed, run } => {
            let mut config = Config::resolve(&run, &settings);
            let mut files = files;
            let mut only = None;
            if let Some(which) = retry_failed {
                let Some(set) = retry_set(&history, &which, files.is_empty(), config.mode)? else {
                    return Ok(exit::OK);
                };
                if files.is_empty() {
                    files = set.files.iter().map(std::path::PathBuf::from).collect();
                    if run.catalog.is_empty() {
                        config.catalogs = set.catalogs.iter().map(std::path::PathBuf::from).collect();
                    }
                }
                eprintln!("retrying run {} on {} node(s): {}", set.run, set.nodes.len(), set.nodes.join(", "));
                only = Some(set.nodes);
            }
            let list = files.iter().map(|f| Orchestration::load(f)).collect::<Result<Vec<_>, _>>()?;
            let catalog = Catalog::load(&config.catalogs)?;
            let selection = Selection {
                restrict: config.restrict.clone(),
                ignore_cache: config.ignore_cache,
                only,
                targets: Vec::new(),
                serial: config.serial,
                max_fail: config.max_fail,
            };
            let plan = Plan::build(&catalog, &list, &selection)?;
            execute(launch(plan, RunKind::Orchestrate, &files), &catalog, config, logging)
        }
        cli::Command::Exec { verb, targets, cached, args, escaped, run } => {
            if let Some(word) = (!escaped).then(|| cli::exec_option_in_command(&args)).flatten() {
                return Err(Error::input(format!(
                    "exec: `{word}` comes after the command, and it is one of exec's own options"
                ))
                .hint(format!(
                    "put exec's options before the command; to pass `{word}` to the command, end exec's options with --: director exec [OPTIONS] -- COMMAND..."
                )));
            }
            let config = Config::resolve(&run, &settings);
            let orchestration = Orchestration::command_line(&verb, &args)?;
            let catalog = Catalog::load(&config.catalogs)?;
            // An ad-hoc command is run to be run: the caches answer only when asked to.
            let ignore_cache = config.ignore_cache || !cached;
            let selection = Selection {
                restrict: config.restrict.clone(),
                ignore_cache,
                only: None,
                targets,
                serial: config.serial,
                max_fail: config.max_fail,
            };
            let mut plan = Plan::build(&catalog, &[orchestration], &selection)?;
            if !cached && !config.ignore_cache {
                plan.forced = Some("an ad-hoc command always runs (--cached answers it from the node cache)".into());
            }
            execute(launch(plan, RunKind::Exec, &[]), &catalog, config, logging)
        }
        cli::Command::Bootstrap { threads, key_file, run } => {
            let config = Config::resolve(&run, &settings);
            if config.serial.is_some() || config.max_fail.is_some() {
                return Err(Error::input("bootstrap does not take --serial or --max-fail")
                    .hint("bootstrap runs its servers one at a time, then the other nodes --threads at a time; a failed server stops it"));
            }
            if config.catalogs.is_empty() {
                return Err(Error::input("bootstrap needs the fleet's catalog")
                    .hint("give it with --catalog FILE (repeat it to merge several files, as Directord does)"));
            }
            let mut catalog = Catalog::load(&config.catalogs)?;
            if let Some(key) = key_file {
                for node in &mut catalog.nodes {
                    node.identity_file = Some(key.clone());
                    node.identity_at = catalog::IdentityOrigin::KeyFile;
                }
            }
            let selection = Selection { restrict: config.restrict.clone(), ignore_cache: true, ..Selection::default() };
            let plan = Plan::bootstrap(&catalog, &selection, usize::from(threads))?;
            execute(launch(plan, RunKind::Bootstrap, &[]), &catalog, config, logging)
        }
    }
}

/// For `--retry-failed`: the run, its nodes that did not end ok, its files and catalogs.
/// `None` (after saying why) when there is nothing to retry.
fn retry_set(
    path: &history::Location,
    which: &str,
    need_files: bool,
    mode: RunMode,
) -> Result<Option<history::query::RetrySet>, Error> {
    let none = || {
        Error::input(format!("--retry-failed: no runs recorded yet in {path}"))
            .hint("run an orchestration first; its failed nodes can then be retried")
    };
    let store = history::History::open_existing(path)?.ok_or_else(none)?;
    let id = match store.find("runs", "run", which)? {
        history::query::Found::One(id) => id,
        history::query::Found::Empty => return Err(none()),
    };
    let kind = store.run_kind(&id)?;
    if let Some(kind) = kind.filter(|k| need_files && *k != RunKind::Orchestrate) {
        return Err(Error::input(format!(
            "--retry-failed: run {id} was `{kind}`, which has no orchestration files to run again"
        ))
        .hint("give the orchestration files: `director orchestrate FILE... --retry-failed RUN`"));
    }
    let set = store.retry_set(&id)?;
    if set.mode == RunMode::Plan && mode == RunMode::Run {
        return Err(Error::input(format!(
            "--retry-failed: run {id} was a plan (--plan): it changed nothing, so there is nothing to run again for real"
        ))
        .hint(format!(
            "plan its failed and unreachable nodes again with --plan --retry-failed {id}, or run the orchestration without --retry-failed"
        )));
    }
    if set.nodes.is_empty() {
        eprintln!("run {id} has no failed, unreachable or cancelled node: nothing to retry");
        return Ok(None);
    }
    Ok(Some(set))
}

/// Takes the nodes in the history, runs the plan, records it; returns the exit code.
fn execute(launch: Launch, catalog: &Catalog, mut config: Config, logging: logging::Logging) -> Result<i32, Error> {
    // Log lines on stderr would tear the live view: plain lines instead.
    if logging == logging::Logging::Stderr && config.output == config::Output::Text(frontend::text::Mode::Live) {
        config.output = config::Output::Text(frontend::text::Mode::Plain);
    }
    for warning in &catalog.warnings {
        eprintln!("{warning}");
    }
    if config.list_nodes {
        // The selection, as the run would reach it; nothing is contacted.
        for node in &launch.plan.nodes {
            println!("{}  {}  {}", node.name, engine::address(node), node.groups.join(","));
        }
        return Ok(exit::OK);
    }
    config.read_become_password()?;
    let runtime = launch::runtime()?;
    // An ad-hoc command is run to see what it says; an orchestration to see what failed.
    // --diff is asked for to be seen.
    let default_shown = if launch.kind == RunKind::Exec || config.diff {
        frontend::text::Shown::All
    } else {
        frontend::text::Shown::Failed
    };
    let contention = if config.wait { history::Contention::Wait } else { history::Contention::Refuse };
    launch::block_on(runtime, async {
        let running = launch.start(catalog, &config, contention, &mut |h| {
            eprintln!(
                "waiting for run {} (`{}`, since {}) to release {}",
                h.run,
                h.command,
                h.started,
                h.nodes.join(", ")
            );
        })?;
        frontend::follow(running, config.output, config.shown.unwrap_or(default_shown)).await
    })
}
