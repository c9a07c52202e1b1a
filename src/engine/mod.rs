//! The engine: runs a [`Plan`] on its nodes and reports everything as [`Event`]s.
//!
//! One task per node: connect (through the transport's gates), start the executor once (its
//! greeting carries the node cache; it runs as the node's own account, the login user or its
//! become user, and a job that runs as another account gets that account's executor, started
//! on first use over the same connection), then run the node's lanes concurrently over that
//! session: the lane of non-async entries in order, and one lane per async entry. Inside a
//! lane jobs run one after another ([`work`] does one job); when one fails, the rest of its
//! entry on that node is skipped. Nodes wait for each other only at a QUERY ([`shared`]).
//! A node that cannot be reached or is lost is an event, never an error of the run.
//! A QUEUESENTINEL (from a job of this run or from another run on the node) drops every job
//! of that node not yet started: they are reported skipped. A job that reboots its node has
//! the node's [`Executors`] reach it again and start its executors there; every session
//! takes its new link in place, so the node's next jobs run on the rebooted node.
//!
//! Nodes start together, unless the plan's [`Schedule`] is bootstrap's: its servers one after
//! another, then the other nodes a few at a time; after a failed server the others are not
//! contacted and their jobs are reported skipped.
//!
//! Cancellation comes in through a watch channel of [`CancelLevel`]: `Drain` stops starting
//! jobs (running ones finish), `Kill` also kills the running ones through their executors.
//!
//! The engine never prints; it owns no terminal and no file.

pub(crate) mod relay;
pub(crate) mod work;

use crate::catalog::template::Renderer;
use crate::catalog::{Account, Node, TransportKind};
use crate::error::exit;
use crate::event::{Event, JobBrief, JobCounts, JobStatus, NodeOutcome, RunMode, Summary};
use crate::node::session::{Greeting, OpenError, Session};
use crate::node::shared::{self, Shared};
use crate::node::{cache, CancelLevel, Cx, Relink, Relinked, Sink};
use crate::plan::{Plan, Schedule};
use crate::transport::{self, ssh, Connection, Progress};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub(crate) struct EngineConfig {
    pub run_id: String,
    /// Present when some node uses SSH.
    pub ssh: Option<Arc<ssh::SshSettings>>,
    pub hello_timeout: Duration,
    /// Seconds cached args and envs live on a node.
    pub args_ttl: u64,
    /// The become password, for a become method that asks (see `transport::escalate`).
    pub become_password: Option<Arc<crate::secret::Password>>,
    /// A run, or `--plan`: say what a run would do and do nothing ([`crate::node::preview`]).
    pub mode: RunMode,
    /// `--diff`: show what each file an ADD/COPY writes changes ([`crate::node::diff`]).
    pub diff: bool,
    /// How fingerprints holding a secret are hashed (with the key beside the history).
    pub seal: crate::plan::fingerprint::Seal,
    /// The ssh-agent forwarded to relays (`SSH_AUTH_SOCK`), when there is one.
    pub agent: Option<std::path::PathBuf>,
    /// Handshakes in flight at once (`--connect-concurrency`), which a relay keeps too.
    pub connect_concurrency: usize,
    /// In a relay: where its nodes' QUERY arrivals go, and where the others' come from.
    pub federation: Option<Federation>,
}

/// A relay's engine's line to the rest of the run's QUERYs.
pub(crate) struct Federation {
    pub arrivals: tokio::sync::mpsc::UnboundedSender<shared::Arrival>,
    pub inbox: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<shared::Arrival>>>,
}

/// What one node's task ends with, for the run's summary.
#[derive(Default)]
struct NodeTally {
    unreachable: bool,
    jobs: JobCounts,
    /// Not contacted at all (bootstrap after a server failed).
    aborted: bool,
}

impl NodeTally {
    /// A node task's tally; a task that panicked counts as an unreachable node.
    fn of(joined: Result<NodeTally, tokio::task::JoinError>) -> NodeTally {
        joined.unwrap_or_else(|_| NodeTally { unreachable: true, ..NodeTally::default() })
    }

    fn count(&mut self, status: JobStatus) {
        self.jobs.add(status);
    }

    fn clean(&self) -> bool {
        self.outcome() == NodeOutcome::Ok
    }

    fn outcome(&self) -> NodeOutcome {
        let j = &self.jobs;
        if self.unreachable {
            NodeOutcome::Unreachable
        } else if self.aborted {
            NodeOutcome::Skipped
        } else if j.failed == 0 && j.timed_out == 0 && j.cancelled == 0 {
            NodeOutcome::Ok
        } else if j.cancelled > 0 && j.failed == 0 && j.timed_out == 0 {
            NodeOutcome::Cancelled
        } else {
            NodeOutcome::Failed
        }
    }

    /// The event that says the node is done.
    fn finished(&self, node: &Node) -> Event {
        let outcome = self.outcome();
        Event::NodeFinished { node: node.name.clone(), ok: outcome == NodeOutcome::Ok, outcome, jobs: self.jobs }
    }
}

/// Runs the whole plan; returns the summary and the exit code it implies.
pub(crate) async fn run(
    plan: Arc<Plan>,
    config: Arc<EngineConfig>,
    sink: Sink,
    cancel: watch::Receiver<CancelLevel>,
) -> (Summary, i32) {
    let started = Instant::now();
    sink.emit(Event::RunStarted {
        run: config.run_id.clone(),
        mode: config.mode,
        nodes: plan.nodes.iter().map(|n| n.name.clone()).collect(),
        node_jobs: plan.jobs_per_node(),
        jobs: plan.jobs.len(),
        tasks: plan.total_tasks(),
        job_list: plan
            .jobs
            .iter()
            .map(|j| JobBrief { job: j.id, name: j.full_name(), verb: j.verb.clone(), targets: j.targets.len() })
            .collect(),
    })
    .await;
    let (shared, arrivals) = shared_state(&plan, &config);
    let renderer = Arc::new(Renderer::default());
    let node_task = |index: usize| {
        let (plan, config, sink, cancel, shared, renderer) =
            (plan.clone(), config.clone(), sink.clone(), cancel.clone(), shared.clone(), renderer.clone());
        async move {
            let tally = run_node(&plan, index, &config, &sink, &shared, &renderer, cancel).await;
            shared.leave_all(index);
            tally
        }
    };
    let mut summary = Summary { nodes: plan.nodes.len(), ..Summary::default() };
    let mut tasks = tokio::task::JoinSet::new();
    let mut sites = tokio::task::JoinSet::new();
    match &plan.schedule {
        Schedule::Together => match plan.batching {
            None => {
                // Every site hears the QUERY arrivals from before any node starts.
                let heard: Vec<_> = plan
                    .relays
                    .iter()
                    .map(|_| arrivals.as_ref().map(tokio::sync::broadcast::Sender::subscribe))
                    .collect();
                for index in (0..plan.nodes.len()).filter(|&i| plan.nodes[i].relay.is_none()) {
                    tasks.spawn(node_task(index));
                }
                for (gateway, heard) in plan.relays.iter().zip(heard) {
                    let indices: Vec<usize> = (0..plan.nodes.len())
                        .filter(|&i| plan.nodes[i].relay.as_ref().is_some_and(|r| r.name == gateway.name))
                        .collect();
                    let (plan, config, sink, cancel, shared, gateway) =
                        (plan.clone(), config.clone(), sink.clone(), cancel.clone(), shared.clone(), gateway.clone());
                    sites.spawn(async move {
                        let site = relay::SiteRun { plan: &plan, indices: &indices, relay: &gateway, shared: &shared };
                        let tallies = relay::drive(site, &config, &sink, cancel, heard).await;
                        indices.iter().for_each(|&i| shared.leave_all(i));
                        tallies
                    });
                }
            }
            Some(batching) => {
                let total = plan.nodes.len();
                let batches = batching.batches(total);
                let (mut failed, mut stop) = (0, None::<String>);
                for (k, range) in batches.iter().enumerate() {
                    if stop.is_none() && *cancel.borrow() != CancelLevel::None {
                        stop = Some("not attempted: the run was cancelled".to_string());
                    }
                    if let Some(why) = &stop {
                        for index in range.clone() {
                            add(&mut summary, not_attempted(&plan, index, why, &sink).await);
                        }
                        continue;
                    }
                    let nodes = range.clone().map(|i| plan.nodes[i].name.clone()).collect();
                    sink.emit(Event::BatchStarted { batch: k + 1, batches: batches.len(), nodes }).await;
                    let mut batch = tokio::task::JoinSet::new();
                    range.clone().for_each(|index| {
                        batch.spawn(node_task(index));
                    });
                    let mut batch_failed = 0;
                    while let Some(result) = batch.join_next().await {
                        let tally = NodeTally::of(result);
                        batch_failed += usize::from(!tally.clean());
                        add(&mut summary, tally);
                    }
                    failed += batch_failed;
                    stop = batching.stop(failed, total, batch_failed, range.len());
                }
            }
        },
        Schedule::Bootstrap { servers, threads } => {
            let mut stop: Option<String> = None;
            for &index in servers {
                if stop.is_none() && *cancel.borrow() != CancelLevel::None {
                    stop = Some("not attempted: the run was cancelled".to_string());
                }
                let tally = match &stop {
                    Some(why) => not_attempted(&plan, index, why, &sink).await,
                    None => node_task(index).await,
                };
                if stop.is_none() && !tally.clean() {
                    stop = Some(format!(
                        "not attempted: server {} failed, so no other node was bootstrapped",
                        plan.nodes[index].name
                    ));
                }
                add(&mut summary, tally);
            }
            let gate = Arc::new(tokio::sync::Semaphore::new(*threads));
            for index in (0..plan.nodes.len()).filter(|i| !servers.contains(i)) {
                if let Some(why) = &stop {
                    add(&mut summary, not_attempted(&plan, index, why, &sink).await);
                    continue;
                }
                // The slot is taken here, in the catalog's order, not by the spawned task: which
                // of them the runtime polls first would otherwise decide who goes first.
                let permit = gate.clone().acquire_owned().await;
                let (task, cancel, plan, sink) = (node_task(index), cancel.clone(), plan.clone(), sink.clone());
                tasks.spawn(async move {
                    let _permit = permit;
                    if *cancel.borrow() != CancelLevel::None {
                        return not_attempted(&plan, index, "not attempted: the run was cancelled", &sink).await;
                    }
                    task.await
                });
            }
        }
    }
    while let Some(result) = tasks.join_next().await {
        add(&mut summary, NodeTally::of(result));
    }
    while let Some(result) = sites.join_next().await {
        result.unwrap_or_default().into_iter().for_each(|tally| add(&mut summary, tally));
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    let code = exit_code(&summary, *cancel.borrow() != CancelLevel::None);
    sink.emit(Event::RunFinished { summary: summary.clone(), exit_code: code }).await;
    (summary, code)
}

/// What the run's nodes share ([`Shared`]), with a rendezvous for every QUERY. A relay's
/// engine has every target of its QUERYs in it, its own nodes first ([`Plan::query_targets`]),
/// and trades arrivals with the operator through its federation; the operator's engine, when
/// some nodes are behind relays, hands every arrival to the relays' tasks (the receiver
/// returned, to subscribe to).
fn shared_state(
    plan: &Plan,
    config: &EngineConfig,
) -> (Arc<Shared>, Option<tokio::sync::broadcast::Sender<shared::Arrival>>) {
    let mut names: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
    let mut known: std::collections::HashSet<String> = names.iter().cloned().collect();
    for (_, targets) in &plan.query_targets {
        for name in targets {
            if known.insert(name.clone()) {
                names.push(name.clone());
            }
        }
    }
    let at: std::collections::HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let queries: Vec<(usize, Vec<usize>)> = plan
        .jobs
        .iter()
        .filter(|j| j.work.traits().gathers)
        .map(|j| match plan.query_targets.iter().find(|(id, _)| *id == j.id) {
            Some((_, targets)) => (j.id, targets.iter().filter_map(|t| at.get(t.as_str()).copied()).collect()),
            None => (j.id, j.targets.clone()),
        })
        .collect();
    let gathers = !queries.is_empty();
    let mut shared = Shared::new(names, queries);
    let mut arrivals = None;
    if let Some(federation) = &config.federation {
        let out = federation.arrivals.clone();
        shared = shared.observed(Box::new(move |arrival| {
            let _ = out.send(arrival);
        }));
    } else if gathers && !plan.relays.is_empty() {
        let (tx, _) = tokio::sync::broadcast::channel(1 << 16);
        let out = tx.clone();
        shared = shared.observed(Box::new(move |arrival| {
            let _ = out.send(arrival);
        }));
        arrivals = Some(tx);
    }
    let shared = Arc::new(shared);
    if let Some(mut inbox) = config.federation.as_ref().and_then(|f| shared::lock(&f.inbox).take()) {
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Some(arrival) = inbox.recv().await {
                shared.arrive(arrival);
            }
        });
    }
    (shared, arrivals)
}

fn add(summary: &mut Summary, tally: NodeTally) {
    match tally.outcome() {
        NodeOutcome::Unreachable => summary.nodes_unreachable += 1,
        NodeOutcome::Skipped => summary.nodes_skipped += 1,
        NodeOutcome::Ok => summary.nodes_ok += 1,
        NodeOutcome::Failed | NodeOutcome::Cancelled => summary.nodes_failed += 1,
    }
    summary.jobs_ok += tally.jobs.ok;
    summary.jobs_cached += tally.jobs.cached;
    summary.jobs_failed += tally.jobs.failed;
    summary.jobs_skipped += tally.jobs.skipped;
    summary.jobs_timed_out += tally.jobs.timed_out;
    summary.jobs_cancelled += tally.jobs.cancelled;
    summary.jobs_would_run += tally.jobs.would_run;
}

/// The event of a job that did not run on `node`, and why.
fn skipped(node: &str, job: &crate::plan::Job, reason: String) -> Event {
    Event::JobFinished {
        node: node.to_string(),
        job: job.id,
        name: job.full_name(),
        status: JobStatus::Skipped,
        exit_code: None,
        reason: Some(reason),
        ms: 0,
    }
}

/// A node the run decided not to contact: each of its jobs is reported skipped with `why`.
async fn not_attempted(plan: &Plan, index: usize, why: &str, sink: &Sink) -> NodeTally {
    let node = &plan.nodes[index];
    let mut tally = NodeTally { aborted: true, ..NodeTally::default() };
    for lane in plan.lanes(index) {
        for &j in lane.iter().flatten() {
            let job = &plan.jobs[j];
            sink.emit(skipped(&node.name, job, why.to_string())).await;
            tally.count(JobStatus::Skipped);
        }
    }
    sink.emit(tally.finished(node)).await;
    tally
}

/// Resolves once the run is cancelled (at any level).
async fn cancelled(cancel: &mut watch::Receiver<CancelLevel>) {
    let _ = cancel.wait_for(|level| *level != CancelLevel::None).await;
}

/// The documented exit code for a finished run.
pub(crate) fn exit_code(summary: &Summary, cancelled: bool) -> i32 {
    if cancelled {
        exit::CANCELLED
    } else if summary.jobs_failed + summary.jobs_timed_out > 0 {
        exit::JOB_FAILED
    } else if summary.nodes_unreachable > 0 {
        exit::UNREACHABLE
    } else {
        exit::OK
    }
}

/// How a node is reached, as events and the history show it.
pub(crate) fn address(node: &Node) -> String {
    match node.transport {
        TransportKind::Local => "local".to_string(),
        TransportKind::Ssh => format!("{}@{}:{}", node.user, node.host, node.port),
    }
}

async fn connect(node: &Node, config: &EngineConfig, sink: &Sink) -> Result<Connection, String> {
    sink.emit(Event::NodeConnecting { node: node.name.clone(), address: address(node) }).await;
    let (conn, ms) = dial(node, config).await?;
    sink.emit(Event::NodeConnected { node: node.name.clone(), ms }).await;
    if let Some(file) = conn.recorded_host_key() {
        sink.emit(Event::HostKeyRecorded { node: node.name.clone(), file: file.display().to_string() }).await;
    }
    Ok(conn)
}

/// Reaches the node (host key checked as always); how long the handshake took.
async fn dial(node: &Node, config: &EngineConfig) -> Result<(Connection, u64), String> {
    match node.transport {
        TransportKind::Local => Ok((Connection::Local(transport::local::LocalConnection), 0)),
        TransportKind::Ssh => {
            let settings = config.ssh.as_ref().ok_or("no SSH settings")?;
            let (c, ms) = ssh::connect(node, settings).await?;
            Ok((Connection::Ssh(c), ms))
        }
    }
}

/// Starts an executor on the node as `account`. The node's first (its own account's) says
/// the node is ready; one for another account a job needs is said by that job.
async fn start_session(
    conn: &Connection,
    node: &Node,
    account: &Account,
    config: &EngineConfig,
    sink: &Sink,
    first: bool,
) -> Result<(Session, Greeting), String> {
    let started = Instant::now();
    let mut force = false;
    let password = config.become_password.as_deref();
    loop {
        let mut uploads = Vec::new();
        let link = conn.start_executor(&node.name, account, password, force, &mut |p: Progress| uploads.push(p)).await;
        for p in uploads {
            let Progress::Uploaded { bytes, sha3 } = p;
            sink.emit(Event::ExecutorUploaded { node: node.name.clone(), bytes, sha3 }).await;
        }
        let greeting = Instant::now();
        let opened = Session::open(link?, config.hello_timeout).await;
        tracing::info!(node = %node.name, ms = greeting.elapsed().as_millis() as u64, "executor greeted");
        match opened {
            Ok((session, greeting)) if !first => return Ok((session, greeting)),
            Ok((session, greeting)) => {
                let facts = greeting.facts.clone();
                sink.emit(Event::NodeReady {
                    node: node.name.clone(),
                    arch: facts.arch,
                    os: facts.os,
                    kernel: facts.kernel,
                    hostname: facts.hostname,
                    ms: started.elapsed().as_millis() as u64,
                })
                .await;
                return Ok((session, greeting));
            }
            // A damaged or foreign file at our path: install ours over it, once.
            Err(OpenError::WrongExecutor(_)) if !force => force = true,
            Err(OpenError::WrongExecutor(why) | OpenError::Failed(why)) => return Err(why),
        }
    }
}

async fn run_node(
    plan: &Plan,
    index: usize,
    config: &EngineConfig,
    sink: &Sink,
    shared: &Shared,
    renderer: &Arc<crate::catalog::template::Renderer>,
    cancel: watch::Receiver<CancelLevel>,
) -> NodeTally {
    let node = &plan.nodes[index];
    let mut tally = NodeTally::default();
    // The node's own account runs its executor, which keeps the node cache; other accounts
    // some of its jobs run as get executors of their own when first needed.
    let account = node.becomes.account(None, None);
    // Reaching the node is bounded (connect, authentication, then the executor's start) and
    // gives way to a cancel: a node whose login shell stalls never holds the run, and what
    // was started there is ended as the connection closes.
    // Both phases boxed: their futures are freed once done instead of sizing the node's task
    // for the whole run (at 1,000 nodes, every node's task is alive at once).
    let mut watch_cancel = cancel.clone();
    let conn = tokio::select! {
        conn = Box::pin(connect(node, config, sink)) => conn,
        _ = cancelled(&mut watch_cancel) => {
            return Box::pin(not_attempted(plan, index, "run cancelled before this job started", sink)).await;
        }
    };
    let starting = async {
        let conn = conn?;
        let start = start_session(&conn, node, &account, config, sink, true);
        let started = tokio::select! {
            started = tokio::time::timeout(config.hello_timeout, start) => started,
            _ = cancelled(&mut watch_cancel) => {
                conn.close().await;
                return Ok(None);
            }
        };
        match started {
            Ok(Ok((session, greeting))) => Ok(Some((conn, session, greeting))),
            Ok(Err(error)) => {
                conn.close().await;
                Err(error)
            }
            Err(_) => {
                conn.close().await;
                Err(format!(
                    "connected, but the executor did not start within {} s (a login script on the node may be waiting: check the user's ~/.bashrc and ~/.profile)",
                    config.hello_timeout.as_secs()
                ))
            }
        }
    };
    let (conn, session, greeting) = match Box::pin(starting).await {
        Ok(Some(r)) => r,
        Ok(None) => return Box::pin(not_attempted(plan, index, "run cancelled before this job started", sink)).await,
        Err(error) => {
            sink.emit(Event::NodeUnreachable { node: node.name.clone(), error }).await;
            tally.unreachable = true;
            return tally;
        }
    };
    // What the greeting says is taken in by a plain function: held in this future, it sized
    // every node's task for the whole run.
    for message in take_greeting(&shared.nodes[index], greeting, config, sink) {
        sink.emit(Event::NodeNotice { node: node.name.clone(), message }).await;
    }
    let lanes = plan.lanes(index);
    let mut others: Vec<Account> = Vec::new();
    for &j in lanes.iter().flatten().flatten() {
        let wanted = plan.jobs[j].account(node);
        if wanted != account && !others.contains(&wanted) {
            others.push(wanted);
        }
    }
    let executors = Executors {
        conn: tokio::sync::RwLock::new(Some(conn)),
        own: account,
        home: session,
        others: others.into_iter().map(|a| (a, tokio::sync::OnceCell::new())).collect(),
    };
    let session = &executors.home;
    let relink = Relinker { executors: &executors, config };
    let cx = Cx {
        index,
        node,
        session,
        home: session,
        sink,
        shared,
        run_id: &config.run_id,
        args_ttl: config.args_ttl,
        relink: &relink,
    };
    let nr = NodeRun { cx, plan, config, executors: &executors, renderer };
    // The node's saver sends the records of finished jobs while the next ones run.
    let finished = std::sync::atomic::AtomicBool::new(false);
    let jobs = async {
        let results = futures::future::join_all(lanes.iter().map(|lane| run_lane(&nr, lane, cancel.clone()))).await;
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        cx.state().wake.notify_one();
        results
    };
    let (results, ()) = futures::future::join(jobs, cx.saving(&finished, config.mode == RunMode::Run)).await;
    for statuses in results {
        for s in statuses {
            tally.count(s);
        }
    }
    if let Some(why) = session.lost() {
        sink.emit(Event::NodeUnreachable { node: node.name.clone(), error: why }).await;
        tally.unreachable = true;
    }
    session.shutdown().await;
    for (_, cell) in &executors.others {
        if let Some(Ok(other)) = cell.get() {
            other.shutdown().await;
        }
    }
    // Boxed, as `not_attempted` above: inline, the close (1 KB) would be the largest thing
    // this future holds, for the whole run, for one step at its end.
    if let Some(conn) = executors.conn.into_inner() {
        Box::pin(conn.close()).await;
    }
    sink.emit(tally.finished(node)).await;
    tally
}

/// Takes in what a node's executor said as it started: the node's clock, its facts and its
/// cache (the cache's text dropped once parsed: kept for the node's run, it was the largest
/// thing a re-run held per node). Gives back the notices to emit about the cache.
fn take_greeting(state: &shared::NodeState, greeting: Greeting, config: &EngineConfig, sink: &Sink) -> Vec<String> {
    state.set_clock(greeting.now);
    let f = &greeting.facts;
    *shared::lock(&state.facts) =
        [("hostname", &f.hostname), ("arch", &f.arch), ("os", &f.os), ("kernel", &f.kernel), ("packager", &f.packager)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect();
    let (cache, why) =
        cache::NodeCache::load(greeting.cache.as_deref(), greeting.journal.as_deref(), greeting.now, config.args_ttl);
    // Values an earlier run's `--secret` stored on this node stay secret in this run.
    cache.secret_values().for_each(|v| sink.secrets.add_value(v));
    *state.cache() = cache;
    let mut notices: Vec<String> = why.into_iter().collect();
    if let Some(bytes) = greeting.cache_set_aside {
        notices.push(format!(
            "the node cache was {bytes} bytes, over the {} MiB a node cache may hold: it was set aside as cache.json.too-large and a new one started",
            director_proto::MAX_CACHE >> 20
        ));
    }
    notices
}

/// One node as the engine drives it: the context its jobs get ([`Cx`]), and what only the
/// engine reads: the plan, the run's settings, the node's executors and the renderer.
#[derive(Clone, Copy)]
pub(crate) struct NodeRun<'a> {
    pub cx: Cx<'a>,
    pub plan: &'a Plan,
    pub config: &'a EngineConfig,
    pub executors: &'a Executors,
    pub renderer: &'a Arc<Renderer>,
}

/// How a REBOOT reaches its node again: through the node's executors, with the run's settings.
struct Relinker<'a> {
    executors: &'a Executors,
    config: &'a EngineConfig,
}

impl Relink for Relinker<'_> {
    fn relink<'a>(&'a self, cx: &'a Cx<'a>, within: Duration) -> Relinked<'a> {
        Box::pin(self.executors.reconnect(cx, self.config, within))
    }
}

/// The executors of one node, one per account its jobs run as, over the node's connection.
pub(crate) struct Executors {
    /// The connection (none while a reboot replaces it).
    conn: tokio::sync::RwLock<Option<Connection>>,
    /// The node's own account: its executor is the node's session.
    own: Account,
    home: Session,
    /// The other accounts, each started by the first job that runs as it.
    others: Vec<(Account, tokio::sync::OnceCell<Result<Session, String>>)>,
}

impl Executors {
    /// Whether `job` runs as the node's own account (on the node's session).
    pub(crate) fn runs_own(&self, node: &crate::catalog::Node, job: &crate::plan::Job) -> bool {
        job.account(node) == self.own
    }

    /// The session `job` runs on, or why the executor for its account could not start.
    async fn session_for<'s>(&'s self, nr: &NodeRun<'s>, job: &crate::plan::Job) -> Result<&'s Session, String> {
        let (cx, config) = (&nr.cx, nr.config);
        let account = job.account(cx.node);
        if account == self.own {
            return Ok(cx.session);
        }
        let Some((_, cell)) = self.others.iter().find(|(a, _)| *a == account) else {
            return Err(format!("no executor for {account:?}"));
        };
        let opened = cell
            .get_or_init(|| async {
                let conn = self.conn.read().await;
                let Some(conn) = conn.as_ref() else { return Err("the node's connection is gone".to_string()) };
                let start = start_session(conn, cx.node, &account, config, cx.sink, false);
                match tokio::time::timeout(config.hello_timeout, start).await {
                    Ok(started) => started.map(|(session, _)| session),
                    Err(_) => Err(format!(
                        "the executor for {} did not start within {} s",
                        account.user().unwrap_or("the login user"),
                        config.hello_timeout.as_secs()
                    )),
                }
            })
            .await;
        opened.as_ref().map_err(Clone::clone)
    }

    /// After the node was told to reboot: waits for its link to drop, then reaches it again
    /// (its host key checked as on first contact) and starts its executors there, each
    /// session taking its new link in place, all within `within`. Says when the link dropped
    /// and when the node answered again.
    pub(crate) async fn reconnect(
        &self,
        cx: &Cx<'_>,
        config: &EngineConfig,
        within: Duration,
    ) -> Result<(Duration, Duration), String> {
        let started = Instant::now();
        let deadline = started + within;
        while self.home.lost().is_none() {
            if Instant::now() >= deadline {
                return Err(format!("the node did not go down within {} s", within.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let down = started.elapsed();
        if let Some(old) = self.conn.write().await.take() {
            old.close().await;
        }
        let mut last = String::from("it did not answer");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("the node did not come back within {} s ({last})", within.as_secs()));
            }
            let attempt = async {
                let (conn, _) = dial(cx.node, config).await?;
                match start_session(&conn, cx.node, &self.own, config, cx.sink, false).await {
                    Ok((session, greeting)) => Ok((conn, session, greeting)),
                    Err(e) => {
                        conn.close().await;
                        Err(e)
                    }
                }
            };
            match tokio::time::timeout(left, attempt).await {
                Ok(Ok((conn, session, greeting))) => {
                    let back = started.elapsed();
                    self.home.adopt(session);
                    cx.state().set_clock(greeting.now);
                    for (account, cell) in &self.others {
                        if let Some(Ok(other)) = cell.get() {
                            match start_session(&conn, cx.node, account, config, cx.sink, false).await {
                                Ok((session, _)) => other.adopt(session),
                                Err(e) => return Err(format!("the node is back, but {e}")),
                            }
                        }
                    }
                    *self.conn.write().await = Some(conn);
                    return Ok((down, back));
                }
                Ok(Err(e)) => last = e,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One lane: groups (entries) in order, jobs in order; a failure skips the rest of its group.
async fn run_lane(nr: &NodeRun<'_>, lane: &[Vec<usize>], cancel: watch::Receiver<CancelLevel>) -> Vec<JobStatus> {
    let cx = &nr.cx;
    let (plan, node, session) = (nr.plan, cx.node, cx.session);
    let mut statuses = Vec::new();
    for group in lane {
        let mut blocked: Option<String> = None;
        // The node's generation when the jobs after this one were last looked ahead for.
        let mut looked: Option<u64> = None;
        for (i, &j) in group.iter().enumerate() {
            let job = &plan.jobs[j];
            let generation = shared::lock(&cx.state().ahead).generation();
            let mut ready = None;
            if blocked.is_none() && looked != Some(generation) && *cancel.borrow() == CancelLevel::None {
                ready = work::look_ahead(nr, &group[i..]).await;
                looked = Some(generation);
            }
            let skip_reason = if *cancel.borrow() != CancelLevel::None {
                Some("run cancelled before this job started".to_string())
            } else {
                blocked
                    .clone()
                    .or_else(|| session.lost().map(|_| "the node was lost before this job started".to_string()))
                    .or_else(|| session.drained())
            };
            let status = match skip_reason {
                Some(reason) => {
                    if job.work.traits().gathers {
                        cx.shared.leave(job.id, cx.index);
                    }
                    cx.report(skipped(&node.name, job, reason)).await;
                    JobStatus::Skipped
                }
                None => match nr.executors.session_for(nr, job).await {
                    Ok(session) => {
                        work::run_job(&NodeRun { cx: Cx { session, ..*cx }, ..*nr }, job, cancel.clone(), ready).await
                    }
                    Err(reason) => {
                        cx.report(work::failed_to_start(node, job, reason)).await;
                        JobStatus::Failed
                    }
                },
            };
            if blocked.is_none()
                && !matches!(status, JobStatus::Ok | JobStatus::Cached | JobStatus::Skipped | JobStatus::WouldRun)
            {
                blocked = Some(format!("job {} ({}) failed on this node", job.id + 1, job.label()));
            }
            statuses.push(status);
        }
        if let (Some(&first), RunMode::Run) = (group.first(), nr.config.mode) {
            record_parent(cx, &plan.entries[plan.jobs[first].entry].fingerprint, blocked.is_none()).await;
        }
    }
    statuses
}

/// Remembers how the entry last ended on the node (CACHEEVICT `parents` forgets it); saved
/// only when that changes, so an unchanged re-run writes nothing.
async fn record_parent(cx: &Cx<'_>, fingerprint: &str, ok: bool) {
    let state = &cx.shared.nodes[cx.index];
    let status = if ok { "ok" } else { "failed" };
    let changed = {
        let mut cache = state.cache();
        let same = cache.parents.get(fingerprint).is_some_and(|p| p.status == status);
        if !same {
            cache.put_parent(fingerprint, cache::ParentRecord { status: status.to_string(), at: state.now() });
        }
        !same
    };
    if changed && cx.session.lost().is_none() {
        let _ = cx.save_soon(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(statuses: &[JobStatus]) -> NodeTally {
        let mut t = NodeTally::default();
        for s in statuses {
            t.count(*s);
        }
        t
    }

    /// A node's outcome is decided here once, for every frontend and the history.
    #[test]
    fn a_nodes_outcome_from_its_jobs() {
        use JobStatus::*;
        assert_eq!(tally(&[Ok, Cached, Skipped, WouldRun]).outcome(), NodeOutcome::Ok);
        assert_eq!(tally(&[]).outcome(), NodeOutcome::Ok);
        assert_eq!(tally(&[Ok, Failed, Skipped]).outcome(), NodeOutcome::Failed);
        assert_eq!(tally(&[Ok, TimedOut]).outcome(), NodeOutcome::Failed);
        assert_eq!(tally(&[Ok, Cancelled, Skipped]).outcome(), NodeOutcome::Cancelled);
        // A job that failed before the cancel makes the node failed, not cancelled.
        assert_eq!(tally(&[Failed, Cancelled]).outcome(), NodeOutcome::Failed);
        let lost = NodeTally { unreachable: true, ..tally(&[Ok]) };
        assert_eq!(lost.outcome(), NodeOutcome::Unreachable);
        // Not contacted at all (a batch before it failed, a bootstrap server failed): skipped.
        let aborted = NodeTally { aborted: true, ..tally(&[Skipped]) };
        assert_eq!(aborted.outcome(), NodeOutcome::Skipped);
        let panicked = NodeTally::of(Err(tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { tokio::spawn(async { panic!("a node task that panics") }).await.unwrap_err() })));
        assert_eq!(panicked.outcome(), NodeOutcome::Unreachable);
    }

    #[test]
    fn the_summary_counts_nodes_once_and_jobs_by_status() {
        let mut summary = Summary::default();
        add(&mut summary, tally(&[JobStatus::Ok, JobStatus::Cached]));
        add(&mut summary, tally(&[JobStatus::Ok, JobStatus::Failed, JobStatus::Skipped]));
        add(&mut summary, NodeTally { unreachable: true, ..NodeTally::default() });
        add(&mut summary, NodeTally { aborted: true, ..tally(&[JobStatus::Skipped]) });
        assert_eq!(
            (summary.nodes_ok, summary.nodes_failed, summary.nodes_unreachable, summary.nodes_skipped),
            (1, 1, 1, 1)
        );
        assert_eq!((summary.jobs_ok, summary.jobs_cached, summary.jobs_failed, summary.jobs_skipped), (2, 1, 1, 2));
    }

    /// The documented exit codes, in their order: cancelled, a job failed, a node unreachable.
    #[test]
    fn the_exit_code_of_a_run() {
        let failed = Summary { jobs_failed: 1, nodes_unreachable: 1, ..Summary::default() };
        let timed_out = Summary { jobs_timed_out: 1, ..Summary::default() };
        let unreachable = Summary { nodes_unreachable: 1, jobs_ok: 3, ..Summary::default() };
        assert_eq!(exit_code(&failed, true), exit::CANCELLED);
        assert_eq!(exit_code(&failed, false), exit::JOB_FAILED);
        assert_eq!(exit_code(&timed_out, false), exit::JOB_FAILED);
        assert_eq!(exit_code(&unreachable, false), exit::UNREACHABLE);
        assert_eq!(exit_code(&Summary::default(), false), exit::OK);
    }
}
