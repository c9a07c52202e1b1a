//! director: an agentless SSH push orchestrator.
//!
//! The pipeline, one module each: [`catalog`] (files in, validated values out) → [`plan`]
//! (which job runs where) → [`engine`] ⇄ [`transport`] ⇄ the executor (`crates/director-exec`,
//! speaking `crates/director-proto`) → [`event`]s → [`frontend`]s and the [`history`], which
//! also holds the nodes of a running run (its locks). This file wires them for
//! the commands in [`cli`]; `main.rs` only calls [`main_with_args`].

pub mod catalog;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod frontend;
pub mod history;
pub mod plan;
pub mod transport;

use catalog::orchestration::Orchestration;
use catalog::yaml::Document;
use catalog::{Catalog, HostKeyPolicy, TransportKind};
use clap::Parser;
use config::{Config, Output};
use error::{exit, Error};
use frontend::Frontend;
use plan::{Plan, Selection};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

/// The closest candidate to `word` by edit distance, if one is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Parses `args`, runs the command, and returns the process exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args: Vec<OsString> = args.into_iter().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
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
            let a = if i == 0 { std::path::Path::new(a.as_ref()).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default() } else { a.into_owned() };
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a
            } else {
                engine::work::sh_quote(&a)
            }
        })
        .collect();
    words.join(" ")
}

/// What a run is, before it starts: for the history and the lock.
struct Invocation {
    kind: &'static str,
    command: String,
    files: Vec<String>,
    history: std::path::PathBuf,
}

fn absolute(p: &std::path::Path) -> String {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

fn run(cli: cli::Cli, command: &str) -> Result<i32, Error> {
    let settings = config::Settings::load(cli.config.as_deref())?;
    let history = cli.history.clone().or(settings.history.clone()).unwrap_or_else(history::default_path);
    let invocation = |kind, files: &[std::path::PathBuf]| Invocation { kind, command: command.to_string(), files: files.iter().map(|f| absolute(f)).collect(), history: history.clone() };
    match cli.command {
        cli::Command::Manage(args) => frontend::manage::run(&args, &history),
        cli::Command::Orchestrate { files, retry_failed, run } => {
            let mut config = Config::resolve(&run, &settings);
            let mut files = files;
            let mut only = None;
            if let Some(which) = retry_failed {
                let Some(set) = retry_set(&history, &which, files.is_empty())? else {
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
            let selection = Selection { restrict: config.restrict.clone(), ignore_cache: config.ignore_cache, only };
            let plan = Plan::build(&catalog, &list, &selection)?;
            execute(plan, &catalog, config, invocation("orchestrate", &files))
        }
        cli::Command::Exec { verb, targets, args, run } => {
            let config = Config::resolve(&run, &settings);
            let orchestration = exec_orchestration(&verb, &targets, &args)?;
            let catalog = Catalog::load(&config.catalogs)?;
            let selection = Selection { restrict: config.restrict.clone(), ignore_cache: config.ignore_cache, only: None };
            let plan = Plan::build(&catalog, &[orchestration], &selection)?;
            execute(plan, &catalog, config, invocation("exec", &[]))
        }
        cli::Command::Bootstrap { threads, key_file, run } => {
            let config = Config::resolve(&run, &settings);
            if config.catalogs.is_empty() {
                return Err(Error::input("bootstrap needs the fleet's catalog").hint("give it with --catalog FILE (repeat it to merge several files, as Directord does)"));
            }
            let mut catalog = Catalog::load(&config.catalogs)?;
            if let Some(key) = key_file {
                for node in &mut catalog.nodes {
                    node.identity_file = Some(key.clone());
                }
            }
            let selection = Selection { restrict: config.restrict.clone(), ignore_cache: true, only: None };
            let plan = Plan::bootstrap(&catalog, &selection, threads)?;
            execute(plan, &catalog, config, invocation("bootstrap", &[]))
        }
    }
}

/// For `--retry-failed`: the run, its nodes that did not end ok, its files and catalogs.
/// `None` (after saying why) when there is nothing to retry.
fn retry_set(path: &std::path::Path, which: &str, need_files: bool) -> Result<Option<history::query::RetrySet>, Error> {
    let none = || Error::input(format!("--retry-failed: no runs recorded yet in {}", path.display())).hint("run an orchestration first; its failed nodes can then be retried");
    let store = history::History::open_existing(path)?.ok_or_else(none)?;
    let id = match store.find("runs", "run", which)? {
        history::query::Found::One(id) => id,
        history::query::Found::Empty => return Err(none()),
    };
    let kind = store.run_kind(&id)?.unwrap_or_default();
    if need_files && kind != "orchestrate" {
        return Err(Error::input(format!("--retry-failed: run {id} was `{kind}`, which has no orchestration files to run again"))
            .hint("give the orchestration files: `director orchestrate FILE... --retry-failed RUN`"));
    }
    let set = store.retry_set(&id)?;
    if set.nodes.is_empty() {
        eprintln!("run {id} has no failed, unreachable or cancelled node: nothing to retry");
        return Ok(None);
    }
    Ok(Some(set))
}

/// Takes the nodes in the history, runs the plan, records it; returns the exit code.
fn execute(plan: Plan, catalog: &Catalog, config: Config, invocation: Invocation) -> Result<i32, Error> {
    let ssh = if plan.nodes.iter().any(|n| n.transport == TransportKind::Ssh) {
        let credentials = transport::ssh::Credentials::load(catalog, &plan.nodes)?;
        Some(Arc::new(transport::ssh::SshSettings {
            connect_timeout: config.connect_timeout,
            known_hosts: config.known_hosts.clone(),
            host_key_policy: HostKeyPolicy::AcceptNew,
            host_key_override: config.host_key_override,
            credentials,
            gates: transport::ssh::Gates::new(config.connect_concurrency),
        }))
    } else {
        None
    };
    let spec = run_spec(&plan, &config, invocation.kind, invocation.command, invocation.files);
    let mut store = history::History::open(&invocation.history)?;
    let sentinel_only = !plan.jobs.is_empty() && plan.jobs.iter().all(|j| matches!(j.work, plan::Work::QueueSentinel));
    let contention = match () {
        _ if sentinel_only => history::Contention::Share,
        _ if config.wait => history::Contention::Wait,
        _ => history::Contention::Refuse,
    };
    let guard = store.begin(&spec, contention, &mut |h| {
        eprintln!("waiting for run {} (`{}`, since {}) to release {}", h.run, h.command, h.started, h.nodes.join(", "));
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
    let code = runtime.block_on(orchestrate(plan, config, ssh, store, &spec))?;
    drop(guard);
    Ok(code)
}

fn run_spec(plan: &Plan, config: &Config, kind: &str, command: String, files: Vec<String>) -> history::RunSpec {
    let names = |targets: &[usize]| targets.iter().map(|&t| plan.nodes[t].name.clone()).collect::<Vec<_>>();
    history::RunSpec {
        id: new_run_id(),
        kind: kind.to_string(),
        command,
        files,
        catalogs: config.catalogs.iter().map(|c| absolute(c)).collect(),
        nodes: plan.nodes.iter().map(|n| (n.name.clone(), engine::address(n))).collect(),
        jobs: plan
            .jobs
            .iter()
            .map(|j| history::JobSpec {
                seq: j.id,
                entry: j.entry,
                parent_name: plan.entries[j.entry].name.clone(),
                parent_sha3: plan.entries[j.entry].fingerprint.clone(),
                name: j.label(),
                verb: j.verb.clone(),
                definition: j.definition.to_string(),
                targets: names(&j.targets),
            })
            .collect(),
    }
}

/// `exec --verb V ARGS`: one entry with one job, built from the command line.
fn exec_orchestration(verb: &str, targets: &[String], args: &[String]) -> Result<Orchestration, Error> {
    let mut entry = serde_json::Map::new();
    if !targets.is_empty() {
        entry.insert("targets".into(), serde_json::json!(targets));
    }
    let mut job = serde_json::Map::new();
    job.insert(verb.to_string(), serde_json::Value::String(args.join(" ")));
    entry.insert("jobs".into(), serde_json::json!([job]));
    Orchestration::from_document(Document::synthetic("command line", serde_json::json!([entry])))
}

fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("{:012x}", mixed & 0xffff_ffff_ffff)
}

async fn orchestrate(plan: Plan, config: Config, ssh: Option<Arc<transport::ssh::SshSettings>>, store: history::History, spec: &history::RunSpec) -> Result<i32, Error> {
    use std::io::IsTerminal;
    let mut frontend = match config.output {
        Output::Json => Frontend::Json(frontend::json::JsonLines::new(Box::new(std::io::stdout()))),
        Output::Text(mode) => {
            let status: Option<Box<dyn std::io::Write + Send>> =
                if std::io::stderr().is_terminal() { Some(Box::new(std::io::stderr())) } else { None };
            Frontend::Text(frontend::text::TextView::new(mode, Box::new(std::io::stdout()), status))
        }
    };
    let off: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.transport == TransportKind::Ssh)
        .filter(|n| config.host_key_override.or(n.host_key_checking) == Some(HostKeyPolicy::Off))
        .map(|n| n.name.as_str())
        .collect();
    if !off.is_empty() {
        frontend.notice(&format!(
            "warning: host key checking is off for {} node(s) ({}): their identity is not verified",
            off.len(),
            off.join(", ")
        ));
    }
    let (remote_cancel_tx, mut remote_cancel) = tokio::sync::mpsc::unbounded_channel::<()>();
    let recorder = history::recorder::Recorder::start(store, spec, remote_cancel_tx)?;
    let engine_config = Arc::new(engine::EngineConfig { run_id: spec.id.clone(), ssh, hello_timeout: Duration::from_secs(30), args_ttl: config.args_ttl });
    let (tx, mut events) = tokio::sync::mpsc::channel(4096);
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(engine::CANCEL_NONE);
    let cancel_tx = Arc::new(cancel_tx);
    let remote_cancel_tx = cancel_tx.clone();
    let engine = tokio::spawn(engine::run(Arc::new(plan), engine_config, engine::Sink::new(tx), cancel_rx));
    let (notice_tx, mut notices) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut presses = 0u8;
        while tokio::signal::ctrl_c().await.is_ok() {
            presses += 1;
            if presses == 1 {
                let _ = cancel_tx.send(engine::CANCEL_DRAIN);
                let _ = notice_tx.send("cancelling: no new jobs will start; press Ctrl-C again to kill the running ones".into());
            } else {
                let _ = cancel_tx.send(engine::CANCEL_KILL);
                let _ = notice_tx.send("killing the running jobs".into());
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    recorder.record(&event);
                    frontend.handle(&event);
                }
                None => break,
            },
            Some(()) = remote_cancel.recv() => {
                let _ = remote_cancel_tx.send(engine::CANCEL_KILL);
                frontend.notice("cancelled from another terminal (`director manage --cancel`): killing the running jobs");
            }
            Some(text) = notices.recv() => frontend.notice(&text),
            now = tick.tick() => frontend.tick(now.into_std()),
        }
    }
    recorder.close();
    match engine.await {
        Ok((_, code)) => Ok(code),
        Err(e) => Err(Error::internal(format!("the engine stopped unexpectedly: {e}"))),
    }
}
