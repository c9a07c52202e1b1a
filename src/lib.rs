//! director: an agentless SSH push orchestrator.
//!
//! The pipeline, one module each: [`catalog`] (files in, validated values out) → [`plan`]
//! (which job runs where) → [`engine`] ⇄ [`transport`] ⇄ the executor (`crates/director-exec`,
//! speaking `crates/director-proto`) → [`event`]s → [`frontend`]s. This file wires them for
//! the commands in [`cli`]; `main.rs` only calls [`main_with_args`].

pub mod catalog;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod frontend;
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
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    match run(cli) {
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

fn run(cli: cli::Cli) -> Result<i32, Error> {
    let (orchestrations, run_args) = match &cli.command {
        cli::Command::Orchestrate { files, run } => {
            let list = files.iter().map(|f| Orchestration::load(f)).collect::<Result<Vec<_>, _>>()?;
            (list, run)
        }
        cli::Command::Exec { verb, targets, args, run } => (vec![exec_orchestration(verb, targets, args)?], run),
    };
    let config = Config::resolve(run_args);
    let catalog = Catalog::load(&config.catalogs)?;
    let selection = Selection { restrict: config.restrict.clone(), ignore_cache: config.ignore_cache };
    let plan = Plan::build(&catalog, &orchestrations, &selection)?;
    let ssh = if plan.nodes.iter().any(|n| n.transport == TransportKind::Ssh) {
        let credentials = transport::ssh::Credentials::load(&catalog, &plan.nodes)?;
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(orchestrate(plan, config, ssh)))
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

async fn orchestrate(plan: Plan, config: Config, ssh: Option<Arc<transport::ssh::SshSettings>>) -> i32 {
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
    let engine_config = Arc::new(engine::EngineConfig { run_id: new_run_id(), ssh, hello_timeout: Duration::from_secs(30), args_ttl: config.args_ttl });
    let (tx, mut events) = tokio::sync::mpsc::channel(4096);
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(engine::CANCEL_NONE);
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
                Some(event) => frontend.handle(&event),
                None => break,
            },
            Some(text) = notices.recv() => frontend.notice(&text),
            now = tick.tick() => frontend.tick(now.into_std()),
        }
    }
    match engine.await {
        Ok((_, code)) => code,
        Err(e) => {
            eprintln!("error: the engine stopped unexpectedly: {e}");
            exit::JOB_FAILED
        }
    }
}
