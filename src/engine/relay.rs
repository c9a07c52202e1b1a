//! Relays: a site's nodes driven from inside the site.
//!
//! A node whose catalog entry names a `relay:` is not contacted from here. The engine opens
//! one SSH session to the relay (a catalog node, the site's gateway), starts this same
//! director there as `director relay` ([`crate::transport::relay`]) with the operator's
//! ssh-agent forwarded, and hands it a [`Handover`]: the part of the plan for the nodes behind
//! it (every job keeps its number), the run's settings, the seal key, the become password,
//! the known_hosts lines its nodes are checked against, then each file an ADD/COPY sends,
//! once per relay however many nodes take it. The relay runs the same engine against its
//! nodes and streams its events back as [`Report`] lines, which join this run's events as if
//! the nodes were direct: one history, one `--json` stream, one TUI. A host key the relay
//! records comes back and is written to the operator's known_hosts. Cancellation goes down as
//! [`Order`] lines, and so do the QUERY arrivals of nodes elsewhere (the relay's own nodes'
//! come up as reports): every engine of the run holds every target of a QUERY. A relay that cannot be reached or is lost is an event for each of its
//! nodes that has not finished (unreachable, with the reason), never a hung run.

use super::{EngineConfig, NodeTally};
use crate::catalog::Node;
use crate::event::{Event, JobStatus, NodeOutcome, RunMode};
use crate::node::shared::{Arrival, Shared};
use crate::node::{CancelLevel, Sink};
use crate::plan::Plan;
use crate::transport::{self, Connection, Incoming};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// The version of what crosses between an operator and its relays; both ends are the same
/// binary, so a mismatch means a damaged install.
pub(crate) const PROTOCOL: u32 = 1;

/// What the operator sends a relay, as its first line on the relay's stdin.
#[derive(Serialize, Deserialize)]
pub(crate) struct Handover {
    pub protocol: u32,
    pub run_id: String,
    /// The relay's catalog name, for its messages.
    pub relay: String,
    /// The part of the plan for the relay's nodes ([`Plan::part`]).
    pub plan: Plan,
    pub settings: Settings,
    /// The history's seal key, hex ([`crate::plan::fingerprint::Seal`]).
    pub seal_key: String,
    /// The become password, when the run has one (it crossed the encrypted channel only).
    pub password: Option<String>,
    /// The operator's known_hosts files the relay's nodes are checked against.
    pub known_hosts: Vec<KnownHostsFile>,
    pub user_known_hosts: Vec<PathBuf>,
    pub global_known_hosts: Vec<PathBuf>,
    pub known_hosts_explicit: bool,
    /// The files that follow the handover on stdin, in this order, each exactly `size` bytes.
    pub files: Vec<Shipped>,
}

/// The run's settings a relay's engine needs.
#[derive(Serialize, Deserialize)]
pub(crate) struct Settings {
    pub connect_timeout_ms: u64,
    pub connect_timeout_given: bool,
    pub hello_timeout_ms: u64,
    pub args_ttl: u64,
    pub mode: RunMode,
    pub diff: bool,
    pub connect_concurrency: usize,
    pub host_key_override: Option<crate::catalog::HostKeyPolicy>,
}

/// One known_hosts file of the operator, as it reads now.
#[derive(Serialize, Deserialize)]
pub(crate) struct KnownHostsFile {
    pub path: PathBuf,
    pub text: String,
}

/// One file sent to the relay: the content an ADD/COPY source hashed to.
#[derive(Serialize, Deserialize)]
pub(crate) struct Shipped {
    /// sha3-224, hex, as [`crate::verb::source::Source`] has it.
    pub sha3: String,
    pub size: u64,
}

/// A line from the operator to a relay after the handover.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "order", rename_all = "snake_case")]
pub(crate) enum Order {
    Cancel {
        level: CancelLevel,
    },
    /// A node of another site (or a direct one) arrived at, or left, a QUERY the relay's
    /// nodes take part in.
    Query {
        arrival: Arrival,
    },
}

/// A line from a relay to the operator.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(tag = "report", rename_all = "snake_case")]
pub(crate) enum Report {
    /// The relay started and reads its handover.
    Hello { protocol: u32 },
    /// An event of the relay's run, about one of its nodes.
    Event { event: Event },
    /// Host key lines the relay recorded for its nodes, to append to the operator's `file`.
    HostKey { file: PathBuf, lines: String },
    /// The relay cannot run its part (a handover it cannot use): said for each of its nodes.
    Refused { error: String },
    /// One of the relay's nodes arrived at, or left, a QUERY.
    Query { arrival: Arrival },
}

impl Report {
    pub(crate) fn line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("reports serialize");
        line.push('\n');
        line
    }
}

/// One site of a run: the nodes `indices` of `plan`, all behind `relay`, and what the run's
/// nodes share.
pub(super) struct SiteRun<'a> {
    pub plan: &'a Plan,
    pub indices: &'a [usize],
    pub relay: &'a Node,
    pub shared: &'a Shared,
}

/// Drives a site through its relay; each node's tally. `heard` gives every QUERY arrival of
/// the run (when some QUERY crosses sites), passed on to the relay for the nodes not its own.
pub(super) async fn drive(
    site_run: SiteRun<'_>,
    config: &EngineConfig,
    sink: &Sink,
    mut cancel: watch::Receiver<CancelLevel>,
    heard: Option<tokio::sync::broadcast::Receiver<Arrival>>,
) -> Vec<NodeTally> {
    let SiteRun { plan, indices, relay, .. } = site_run;
    let names: Vec<&str> = indices.iter().map(|&i| plan.nodes[i].name.as_str()).collect();
    let mut site = Site::new(&names);
    let outcome = async {
        let agent = config.agent.as_ref().ok_or_else(|| {
            "nodes behind a relay log in with your ssh-agent, forwarded to the relay, and SSH_AUTH_SOCK is not set"
                .to_string()
        })?;
        let settings = config.ssh.as_ref().ok_or("no SSH settings")?;
        let (conn, _) = transport::ssh::connect(relay, settings).await?;
        let conn = Connection::Ssh(conn);
        let result = run_site(&site_run, &conn, agent, config, sink, &mut cancel, heard, &mut site).await;
        conn.close().await;
        result
    };
    if let Err(error) = outcome.await {
        let error = format!("relay {}: {error}", relay.name);
        site.lost(plan, indices, &error, sink).await;
    }
    site.tallies(&names)
}

/// What the operator has heard of a site's nodes.
struct Site {
    /// Per node: whether it was reached (its executor answered), its unfinished jobs, and
    /// its tally once finished.
    nodes: HashMap<String, NodeHeard>,
}

#[derive(Default)]
struct NodeHeard {
    ready: bool,
    finished: Option<NodeTally>,
    started_jobs: HashSet<usize>,
    done_jobs: HashSet<usize>,
}

impl Site {
    fn new(names: &[&str]) -> Self {
        Site { nodes: names.iter().map(|n| (n.to_string(), NodeHeard::default())).collect() }
    }

    fn heard(&mut self, event: &Event) {
        match event {
            Event::NodeReady { node, .. } => self.at(node).ready = true,
            Event::JobStarted { node, job, .. } => {
                self.at(node).started_jobs.insert(*job);
            }
            Event::JobFinished { node, job, .. } => {
                self.at(node).done_jobs.insert(*job);
            }
            Event::NodeUnreachable { node, .. } => {
                let heard = self.at(node);
                if !heard.ready {
                    heard.finished = Some(NodeTally { unreachable: true, ..NodeTally::default() });
                }
            }
            Event::NodeFinished { node, outcome, jobs, .. } => {
                self.at(node).finished = Some(NodeTally {
                    unreachable: *outcome == NodeOutcome::Unreachable,
                    aborted: *outcome == NodeOutcome::Skipped,
                    jobs: *jobs,
                });
            }
            _ => {}
        }
    }

    fn at(&mut self, node: &str) -> &mut NodeHeard {
        self.nodes.entry(node.to_string()).or_default()
    }

    /// The relay is gone: every node not finished is unreachable; a node that was reached
    /// has its jobs not finished reported as a direct node that is lost has them: the one
    /// running cancelled, the ones after it skipped.
    async fn lost(&mut self, plan: &Plan, indices: &[usize], error: &str, sink: &Sink) {
        for &index in indices {
            let node = &plan.nodes[index];
            let heard = self.at(&node.name);
            if heard.finished.is_some() {
                continue;
            }
            if !heard.ready {
                sink.emit(Event::NodeUnreachable { node: node.name.clone(), error: error.to_string() }).await;
                heard.finished = Some(NodeTally { unreachable: true, ..NodeTally::default() });
                continue;
            }
            let mut tally = NodeTally { unreachable: true, ..NodeTally::default() };
            let (started, done) = (heard.started_jobs.clone(), heard.done_jobs.clone());
            for lane in plan.lanes(index) {
                for &j in lane.iter().flatten() {
                    let job = &plan.jobs[j];
                    if done.contains(&job.id) {
                        continue;
                    }
                    if started.contains(&job.id) {
                        sink.emit(Event::JobFinished {
                            node: node.name.clone(),
                            job: job.id,
                            name: job.full_name(),
                            status: JobStatus::Cancelled,
                            exit_code: None,
                            reason: Some(format!("the node was lost with its relay while this job ran: {error}")),
                            ms: 0,
                        })
                        .await;
                        tally.count(JobStatus::Cancelled);
                    } else {
                        let reason = format!("the node was lost with its relay before this job started: {error}");
                        sink.emit(super::skipped(&node.name, job, reason)).await;
                        tally.count(JobStatus::Skipped);
                    }
                }
            }
            sink.emit(Event::NodeUnreachable { node: node.name.clone(), error: error.to_string() }).await;
            sink.emit(tally.finished(node)).await;
            self.at(&node.name).finished = Some(tally);
        }
    }

    fn tallies(mut self, names: &[&str]) -> Vec<NodeTally> {
        names
            .iter()
            .map(|n| {
                self.nodes
                    .remove(*n)
                    .and_then(|h| h.finished)
                    .unwrap_or(NodeTally { unreachable: true, ..NodeTally::default() })
            })
            .collect()
    }
}

/// The handover for the nodes `indices`, and the files to send after it.
fn handover(
    plan: &Plan,
    indices: &[usize],
    relay: &Node,
    config: &EngineConfig,
) -> Result<(Handover, Vec<PathBuf>), String> {
    let part = plan.part(indices);
    let mut files: BTreeMap<String, (u64, PathBuf)> = BTreeMap::new();
    for job in &part.jobs {
        if job.targets.is_empty() {
            continue;
        }
        for source in job.work.sources() {
            files.entry(source.sha3.clone()).or_insert((source.size, source.path.clone()));
        }
    }
    let settings = config.ssh.as_ref().ok_or("no SSH settings")?;
    let known = &settings.known_hosts;
    // Each file once, however many nodes name it (ssh_config may give each node the same).
    let mut seen = HashSet::new();
    let nodes_files = part.nodes.iter().flat_map(|n| n.user_known_hosts.iter().chain(&n.global_known_hosts));
    let known_hosts = known
        .user
        .iter()
        .chain(&known.global)
        .chain(nodes_files)
        .filter(|path| seen.insert(*path))
        .cloned()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            KnownHostsFile { path, text }
        })
        .collect();
    let shipped = files.iter().map(|(sha3, (size, _))| Shipped { sha3: sha3.clone(), size: *size }).collect();
    let handover = Handover {
        protocol: PROTOCOL,
        run_id: config.run_id.clone(),
        relay: relay.name.clone(),
        plan: part,
        settings: Settings {
            connect_timeout_ms: settings.connect_timeout.as_millis() as u64,
            connect_timeout_given: settings.connect_timeout_given,
            hello_timeout_ms: config.hello_timeout.as_millis() as u64,
            args_ttl: config.args_ttl,
            mode: config.mode,
            diff: config.diff,
            connect_concurrency: config.connect_concurrency,
            host_key_override: settings.host_key_override,
        },
        seal_key: crate::verb::source::hex(config.seal.key()),
        password: config.become_password.as_ref().map(|p| p.reveal().to_string()),
        known_hosts,
        user_known_hosts: known.user.clone(),
        global_known_hosts: known.global.clone(),
        known_hosts_explicit: known.explicit,
        files: shipped,
    };
    Ok((handover, files.into_values().map(|(_, path)| path).collect()))
}

#[allow(clippy::too_many_arguments)]
async fn run_site(
    site_run: &SiteRun<'_>,
    conn: &Connection,
    agent: &std::path::Path,
    config: &EngineConfig,
    sink: &Sink,
    cancel: &mut watch::Receiver<CancelLevel>,
    mut heard: Option<tokio::sync::broadcast::Receiver<Arrival>>,
    site: &mut Site,
) -> Result<(), String> {
    let SiteRun { plan, indices, relay, shared } = *site_run;
    // The QUERYs some of the site's nodes take part in: arrivals of other nodes go down.
    let queries: HashSet<usize> = plan
        .jobs
        .iter()
        .filter(|j| j.work.traits().gathers && j.targets.iter().any(|t| indices.contains(t)))
        .map(|j| j.id)
        .collect();
    let (handover, files) = handover(plan, indices, relay, config)?;
    let mut link = conn
        .start_relay(agent, &mut |bytes| {
            tracing::info!(relay = %relay.name, bytes, "director uploaded to the relay");
        })
        .await?;
    let lost = |e: std::io::Error| format!("lost while sending the run: {e}");
    let mut line = serde_json::to_vec(&handover).map_err(|e| format!("cannot write the run for the relay: {e}"))?;
    line.push(b'\n');
    link.writer.write_all(&line).await.map_err(lost)?;
    drop(line);
    for path in files {
        let mut file =
            tokio::fs::File::open(&path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        tokio::io::copy(&mut file, &mut link.writer).await.map_err(lost)?;
    }
    link.writer.flush().await.map_err(lost)?;
    let mut pending = std::mem::take(&mut link.pending);
    let mut stderr = Vec::new();
    let mut sent_level = CancelLevel::None;
    let mut watching = true;
    loop {
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let text: Vec<u8> = pending.drain(..=end).collect();
            let report: Report = serde_json::from_slice(&text).map_err(|e| {
                format!("said something that is not a report ({e}): {}", String::from_utf8_lossy(&text).trim())
            })?;
            match report {
                Report::Hello { protocol } if protocol != PROTOCOL => {
                    return Err(format!("speaks relay protocol {protocol}, not {PROTOCOL}"));
                }
                Report::Hello { .. } => {}
                Report::Event { event } => {
                    site.heard(&event);
                    sink.emit(event).await;
                }
                Report::HostKey { file, lines } => {
                    if let Err(e) = transport::known_hosts::append(&file, &lines) {
                        tracing::warn!(relay = %relay.name, "cannot record host keys in {}: {e}", file.display());
                    }
                }
                Report::Refused { error } => return Err(error),
                Report::Query { arrival } => shared.arrive(arrival),
            }
        }
        tokio::select! {
            incoming = link.incoming.recv() => match incoming {
                Incoming::Data(d) => pending.extend_from_slice(&d),
                Incoming::Stderr(e) => stderr.extend_from_slice(&e),
                Incoming::Closed(status) => {
                    if site.nodes.values().all(|n| n.finished.is_some()) {
                        return Ok(());
                    }
                    let said = String::from_utf8_lossy(&stderr).trim().to_string();
                    return Err(format!(
                        "lost (exit {}){}",
                        status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                        if said.is_empty() { String::new() } else { format!(": {said}") }
                    ));
                }
            },
            arrival = next_arrival(&mut heard), if heard.is_some() => {
                let Some(arrival) = arrival else {
                    heard = None;
                    continue;
                };
                if queries.contains(&arrival.job) && !site.nodes.contains_key(&arrival.node) {
                    let mut order = serde_json::to_string(&Order::Query { arrival }).expect("orders serialize");
                    order.push('\n');
                    link.writer.write_all(order.as_bytes()).await.map_err(lost)?;
                    link.writer.flush().await.map_err(lost)?;
                }
            }
            changed = cancel.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let level = *cancel.borrow();
                if level > sent_level {
                    sent_level = level;
                    let mut order = serde_json::to_string(&Order::Cancel { level }).expect("orders serialize");
                    order.push('\n');
                    link.writer.write_all(order.as_bytes()).await.map_err(lost)?;
                    link.writer.flush().await.map_err(lost)?;
                }
            }
        }
    }
}

/// The next QUERY arrival of the run; `None` once there will be none.
async fn next_arrival(heard: &mut Option<tokio::sync::broadcast::Receiver<Arrival>>) -> Option<Arrival> {
    let receiver = heard.as_mut()?;
    loop {
        match receiver.recv().await {
            Ok(arrival) => return Some(arrival),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!("{missed} QUERY arrivals were missed on their way to a relay");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        }
    }
}
