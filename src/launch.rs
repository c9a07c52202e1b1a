//! Starting a run and following it: the one path from a built [`Plan`] to a stream of events,
//! shared by the command line (`orchestrate`, `exec`, `bootstrap`) and the TUI.
//!
//! [`Launch::start`] takes the plan's nodes in the history (the lock), starts the recorder and
//! the engine, and hands back a [`Running`] run: its events come out of [`Running::next`]
//! already recorded, cancellation goes in through [`Running::cancel`] (first drain, then
//! kill: the same levels whether they come from Ctrl-C, a key in the TUI or `manage --cancel`
//! in another terminal), and [`Running::finish`] waits for the engine and the history.
//! Nothing here prints; the caller decides what the user sees.

use crate::catalog::{Catalog, HostKeyPolicy, TransportKind};
use crate::config::Config;
use crate::engine;
use crate::error::Error;
use crate::event::{Event, RunKind};
use crate::history::{self, recorder::Recorder, Contention, History, RunGuard, RunSpec};
use crate::node::CancelLevel;
use crate::plan::{self, Plan};
use crate::transport;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The async runtime every run goes on (the command line's and the TUI's): the one place it
/// is built. One thread: a run's tasks (a node's engine task, its connection's task, the
/// frontend) hand each other work at every step, and across threads each hand-over is a
/// wake-up of another thread (an interrupt, on a VM an exit); on one thread it is a queue's
/// push. What is slow or blocking goes to `spawn_blocking` (templates, packing); the history
/// and the TUI's keyboard have threads of their own. On one thread every node task that is
/// ready writes before any connection's task runs to send: executor uploads are bounded
/// fleet-wide (`transport::send`) and the targets of a QUERY go on one by one
/// (`node::shared`), so the bytes written and not yet sent stay few.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))
}

/// Runs `work` to its end on `runtime`, then leaves without waiting for blocking threads: a
/// template rendering whose job timed out or was cancelled may still be finishing its last
/// step, and its result is not wanted.
pub(crate) fn block_on<F: std::future::Future>(runtime: tokio::runtime::Runtime, work: F) -> F::Output {
    let out = runtime.block_on(work);
    runtime.shutdown_background();
    out
}

/// A run about to start: the plan and how it is recorded.
pub(crate) struct Launch {
    pub plan: Plan,
    /// Which command started it, for the history.
    pub kind: RunKind,
    /// The command line as the user would retype it.
    pub command: String,
    /// Orchestration files (absolute), for the history and `--retry-failed`.
    pub files: Vec<String>,
    pub history: history::Location,
}

/// What [`Running::next`] gives.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Incoming {
    Event(Event),
    /// `director manage --cancel` asked for this run from another terminal; its running jobs
    /// are being killed.
    CancelledElsewhere,
}

pub(crate) struct Running {
    /// Warnings for the caller to show: host key checking off for some nodes, a history
    /// file others can read.
    pub warnings: Vec<String>,
    events: mpsc::Receiver<crate::node::Emitted>,
    remote_cancel: mpsc::UnboundedReceiver<()>,
    cancel: watch::Sender<CancelLevel>,
    recorder: Recorder,
    engine: tokio::task::JoinHandle<(crate::event::Summary, i32)>,
    _guard: RunGuard,
}

impl Launch {
    /// Takes the nodes (refusing, waiting or sharing per `contention`; `waiting` hears about
    /// the holder once) and starts the run. Must be called inside a tokio runtime.
    pub(crate) fn start(
        self,
        catalog: &Catalog,
        config: &Config,
        contention: Contention,
        waiting: &mut dyn FnMut(&history::Holder),
    ) -> Result<Running, Error> {
        let mut plan = self.plan;
        transport::open_files::ensure(plan.nodes.len())?;
        plan.nodes.iter_mut().for_each(|n| config.becomes.apply(n));
        let mut ssh_warnings = transport::ssh_config::apply(&mut plan.nodes, &config.ssh_config)?;
        ssh_warnings.extend(transport::ssh_config::apply(&mut plan.relays, &config.ssh_config)?);
        let agent = relay_agent(&plan)?;
        let ssh = if plan.nodes.iter().any(|n| n.transport == TransportKind::Ssh) {
            config.known_hosts.user.iter().try_for_each(|f| transport::known_hosts::check_file(f))?;
            // Nodes behind a relay log in from there with the forwarded agent: only the
            // relays' own keys are loaded here.
            let reached: Vec<_> =
                plan.nodes.iter().filter(|n| n.relay.is_none()).chain(&plan.relays).cloned().collect();
            let credentials = transport::ssh::Credentials::load(catalog, &reached)?;
            Some(Arc::new(transport::ssh::SshSettings {
                connect_timeout: config.connect_timeout,
                connect_timeout_given: config.connect_timeout_given,
                known_hosts: Arc::new(config.known_hosts.clone()),
                host_key_policy: HostKeyPolicy::AcceptNew,
                host_key_override: config.host_key_override,
                credentials,
                gates: transport::ssh::Gates::new(config.connect_concurrency),
                bastions: Default::default(),
            }))
        } else {
            None
        };
        let secrets = Arc::new(crate::secret::Secrets::default());
        plan.secrets().iter().for_each(|v| secrets.add_value(v));
        if let Some(password) = &config.password {
            secrets.add(password.reveal());
        }
        let mut store = History::open(&self.history)?;
        let seal = plan::fingerprint::Seal::new(store.seal_key()?, secrets.clone());
        plan.seal(&seal);
        let spec = run_spec(&plan, config, self.kind, &secrets.mask(&self.command), self.files, &secrets);
        let sentinel_only =
            !plan.jobs.is_empty() && plan.jobs.iter().all(|j| matches!(j.work, plan::Work::QueueSentinel(_)));
        let contention = if sentinel_only { Contention::Share } else { contention };
        let guard = store.begin(&spec, contention, waiting)?;
        let warnings: Vec<String> = host_key_warning(&plan, config)
            .into_iter()
            .chain(ssh_warnings)
            .chain(store.file().and_then(|f| crate::private::exposure(f, "the run history")))
            .collect();
        let (remote_cancel_tx, remote_cancel) = mpsc::unbounded_channel::<()>();
        let recorder = Recorder::start(store, &spec, remote_cancel_tx)?;
        let engine_config = Arc::new(engine::EngineConfig {
            run_id: spec.id.clone(),
            ssh,
            // The executor's start (probe, install when needed, greeting) gets three times
            // the connect timeout: 30 s by default.
            hello_timeout: 3 * config.connect_timeout,
            args_ttl: config.args_ttl,
            become_password: config.password.clone(),
            mode: config.mode,
            diff: config.diff,
            seal,
            agent,
            connect_concurrency: config.connect_concurrency,
            federation: None,
        });
        let (tx, events) = mpsc::channel(4096);
        let (cancel, cancel_rx) = watch::channel(CancelLevel::None);
        let sink = crate::node::Sink::new(tx, secrets);
        let engine = tokio::spawn(engine::run(Arc::new(plan), engine_config, sink, cancel_rx));
        Ok(Running { warnings, events, remote_cancel, cancel, recorder, engine, _guard: guard })
    }
}

/// The ssh-agent a run through relays forwards to them: `SSH_AUTH_SOCK`, required then.
fn relay_agent(plan: &Plan) -> Result<Option<std::path::PathBuf>, Error> {
    let Some(behind) = plan.nodes.iter().find(|n| n.relay.is_some()) else { return Ok(None) };
    let relay = behind.relay.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
    match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
        Some(socket) => Ok(Some(socket.into())),
        None => Err(Error::input(format!(
            "node `{}` is behind relay `{relay}`, which logs in to its nodes with your ssh-agent, and SSH_AUTH_SOCK is not set",
            behind.name
        ))
        .hint("start an agent and add the nodes' key (`eval $(ssh-agent)`, `ssh-add KEY`): it is forwarded to the relay for the run, and no private key leaves this machine")),
    }
}

impl Running {
    /// The next event (already handed to the history), or `None` once the run has ended.
    pub(crate) async fn next(&mut self) -> Option<Incoming> {
        let incoming = tokio::select! {
            event = self.events.recv() => event.map(|e| Incoming::Event(e.take())),
            Some(()) = self.remote_cancel.recv() => Some(Incoming::CancelledElsewhere),
        };
        match &incoming {
            Some(Incoming::Event(event)) => self.recorder.record(event),
            Some(Incoming::CancelledElsewhere) => self.cancel(CancelLevel::Kill),
            None => {}
        }
        incoming
    }

    /// Raises the cancel level ([`CancelLevel::Drain`], then [`CancelLevel::Kill`]);
    /// never lowers it.
    pub(crate) fn cancel(&self, level: CancelLevel) {
        raise(&self.cancel, level);
    }

    /// Sender for the cancel level, for a task that listens to Ctrl-C.
    pub(crate) fn cancel_handle(&self) -> CancelHandle {
        CancelHandle(self.cancel.clone())
    }

    /// Waits for the engine, writes the rest of the history and releases the nodes.
    pub(crate) async fn finish(mut self) -> Result<i32, Error> {
        while let Some(event) = self.events.recv().await {
            self.recorder.record(&event.take());
        }
        self.recorder.close();
        match self.engine.await {
            Ok((_, code)) => Ok(code),
            Err(e) => Err(Error::internal(format!("the engine stopped unexpectedly: {e}"))),
        }
    }
}

/// Raises a run's cancel level from elsewhere (a signal handler).
#[derive(Clone)]
pub(crate) struct CancelHandle(watch::Sender<CancelLevel>);

impl CancelHandle {
    /// Like [`Running::cancel`]: the level only goes up.
    pub(crate) fn raise(&self, level: CancelLevel) {
        raise(&self.0, level);
    }
}

fn raise(cancel: &watch::Sender<CancelLevel>, level: CancelLevel) {
    cancel.send_if_modified(|current| {
        let higher = level > *current;
        if higher {
            *current = level;
        }
        higher
    });
}

fn host_key_warning(plan: &Plan, config: &Config) -> Option<String> {
    let off: Vec<&str> = plan
        .nodes
        .iter()
        .filter(|n| n.transport == TransportKind::Ssh)
        .filter(|n| config.host_key_override.or(n.host_key_checking) == Some(HostKeyPolicy::Off))
        .map(|n| n.name.as_str())
        .collect();
    (!off.is_empty()).then(|| {
        format!(
            "warning: host key checking is off for {} node(s) ({}): their identity is not verified",
            off.len(),
            off.join(", ")
        )
    })
}

/// What the history records of the run; secrets are masked in the command line, and in each
/// job's name and definition.
fn run_spec(
    plan: &Plan,
    config: &Config,
    kind: RunKind,
    command: &str,
    files: Vec<String>,
    secrets: &crate::secret::Secrets,
) -> RunSpec {
    let names = |targets: &[usize]| targets.iter().map(|&t| plan.nodes[t].name.clone()).collect::<Vec<_>>();
    RunSpec {
        id: new_run_id(),
        kind,
        mode: config.mode,
        command: command.to_string(),
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
                name: secrets.mask(&j.full_name()).into_owned(),
                verb: j.verb.clone(),
                definition: secrets.mask(&j.definition.to_string()).into_owned(),
                targets: names(&j.targets),
            })
            .collect(),
    }
}

pub(crate) fn absolute(p: &std::path::Path) -> String {
    if p == std::path::Path::new(crate::catalog::yaml::STDIN) {
        // Standard input is recorded as `-`: it names no file to read again.
        return p.display().to_string();
    }
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("{:012x}", mixed & 0xffff_ffff_ffff)
}
