//! The engine: runs a [`Plan`] on its nodes and reports everything as [`Event`]s.
//!
//! One task per node: connect (through the transport's gates), start the executor once,
//! then run the node's lanes concurrently over that one session: the lane of non-async
//! entries in order, and one lane per async entry. Inside a lane jobs run one after another;
//! when one fails, the rest of its entry on that node is skipped. Nodes never wait for each
//! other. A node that cannot be reached or is lost is an event, never an error of the run.
//!
//! Cancellation comes in through a watch channel: level 1 stops starting jobs (running ones
//! finish), level 2 also kills the running ones through their executors.
//!
//! The engine never prints; it owns no terminal and no file.

pub mod session;

use crate::catalog::{Node, TransportKind};
use crate::error::exit;
use crate::event::{Event, JobStatus, Stream, Summary};
use crate::plan::{Job, Plan, Work};
use crate::transport::{self, ssh, Connection, Progress};
use director_proto::{Outcome, Reply};
use session::{OpenError, Session};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Cancellation levels sent through the watch channel.
pub const CANCEL_NONE: u8 = 0;
pub const CANCEL_DRAIN: u8 = 1;
pub const CANCEL_KILL: u8 = 2;

pub struct EngineConfig {
    pub run_id: String,
    /// Present when some node uses SSH.
    pub ssh: Option<Arc<ssh::SshSettings>>,
    pub hello_timeout: Duration,
}

/// Where events go; a closed receiver (the frontend is gone) does not stop the run.
#[derive(Clone)]
pub struct Sink(mpsc::Sender<Event>);

impl Sink {
    pub fn new(tx: mpsc::Sender<Event>) -> Self {
        Sink(tx)
    }

    async fn emit(&self, event: Event) {
        let _ = self.0.send(event).await;
    }
}

/// What one node's task ends with, for the run's summary.
#[derive(Default)]
struct NodeTally {
    unreachable: bool,
    ok: usize,
    failed: usize,
    skipped: usize,
    timed_out: usize,
    cancelled: usize,
}

impl NodeTally {
    fn count(&mut self, status: JobStatus) {
        match status {
            JobStatus::Ok => self.ok += 1,
            JobStatus::Failed => self.failed += 1,
            JobStatus::Skipped => self.skipped += 1,
            JobStatus::TimedOut => self.timed_out += 1,
            JobStatus::Cancelled => self.cancelled += 1,
        }
    }

    fn clean(&self) -> bool {
        !self.unreachable && self.failed == 0 && self.timed_out == 0 && self.cancelled == 0
    }
}

/// Runs the whole plan; returns the summary and the exit code it implies.
pub async fn run(plan: Arc<Plan>, config: Arc<EngineConfig>, sink: Sink, cancel: watch::Receiver<u8>) -> (Summary, i32) {
    let started = Instant::now();
    sink.emit(Event::RunStarted {
        run: config.run_id.clone(),
        nodes: plan.nodes.iter().map(|n| n.name.clone()).collect(),
        jobs: plan.jobs.len(),
        tasks: plan.total_tasks(),
    })
    .await;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..plan.nodes.len() {
        let (plan, config, sink, cancel) = (plan.clone(), config.clone(), sink.clone(), cancel.clone());
        tasks.spawn(async move { run_node(&plan, index, &config, &sink, cancel).await });
    }
    let mut summary = Summary { nodes: plan.nodes.len(), ..Summary::default() };
    while let Some(result) = tasks.join_next().await {
        let tally = result.unwrap_or_else(|_| NodeTally { unreachable: true, ..NodeTally::default() });
        if tally.unreachable {
            summary.nodes_unreachable += 1;
        } else if tally.clean() {
            summary.nodes_ok += 1;
        } else {
            summary.nodes_failed += 1;
        }
        summary.jobs_ok += tally.ok;
        summary.jobs_failed += tally.failed;
        summary.jobs_skipped += tally.skipped;
        summary.jobs_timed_out += tally.timed_out;
        summary.jobs_cancelled += tally.cancelled;
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    let code = exit_code(&summary, *cancel.borrow() != CANCEL_NONE);
    sink.emit(Event::RunFinished { summary: summary.clone(), exit_code: code }).await;
    (summary, code)
}

/// The documented exit code for a finished run.
pub fn exit_code(summary: &Summary, cancelled: bool) -> i32 {
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

fn address(node: &Node) -> String {
    match node.transport {
        TransportKind::Local => "local".to_string(),
        TransportKind::Ssh => format!("{}@{}:{}", node.user, node.host, node.port),
    }
}

async fn connect(node: &Node, config: &EngineConfig, sink: &Sink) -> Result<Connection, String> {
    sink.emit(Event::NodeConnecting { node: node.name.clone(), address: address(node) }).await;
    let (conn, ms) = match node.transport {
        TransportKind::Local => (Connection::Local(transport::local::LocalConnection), 0),
        TransportKind::Ssh => {
            let settings = config.ssh.as_ref().ok_or("no SSH settings")?;
            let (c, ms) = ssh::connect(node, settings).await?;
            (Connection::Ssh(c), ms)
        }
    };
    sink.emit(Event::NodeConnected { node: node.name.clone(), ms }).await;
    Ok(conn)
}

async fn start_session(conn: &Connection, node: &Node, config: &EngineConfig, sink: &Sink) -> Result<Session, String> {
    let started = Instant::now();
    let mut force = false;
    loop {
        let mut uploads = Vec::new();
        let link = conn.start_executor(force, &mut |p: Progress| uploads.push(p)).await;
        for p in uploads {
            if let Progress::Uploaded { bytes, sha3 } = p {
                sink.emit(Event::ExecutorUploaded { node: node.name.clone(), bytes, sha3 }).await;
            }
        }
        match Session::open(link?, config.hello_timeout).await {
            Ok((session, facts)) => {
                sink.emit(Event::NodeReady {
                    node: node.name.clone(),
                    arch: facts.arch,
                    os: facts.os,
                    kernel: facts.kernel,
                    hostname: facts.hostname,
                    ms: started.elapsed().as_millis() as u64,
                })
                .await;
                return Ok(session);
            }
            // A damaged or foreign file at our path: install ours over it, once.
            Err(OpenError::WrongExecutor(_)) if !force => force = true,
            Err(OpenError::WrongExecutor(why)) | Err(OpenError::Failed(why)) => return Err(why),
        }
    }
}

async fn run_node(plan: &Plan, index: usize, config: &EngineConfig, sink: &Sink, cancel: watch::Receiver<u8>) -> NodeTally {
    let node = &plan.nodes[index];
    let mut tally = NodeTally::default();
    let conn = match connect(node, config, sink).await {
        Ok(c) => c,
        Err(error) => {
            sink.emit(Event::NodeUnreachable { node: node.name.clone(), error }).await;
            tally.unreachable = true;
            return tally;
        }
    };
    let session = match start_session(&conn, node, config, sink).await {
        Ok(s) => s,
        Err(error) => {
            sink.emit(Event::NodeUnreachable { node: node.name.clone(), error }).await;
            tally.unreachable = true;
            conn.close().await;
            return tally;
        }
    };
    let lanes = plan.lanes(index);
    let results = futures::future::join_all(lanes.iter().map(|lane| run_lane(plan, node, lane, &session, sink, cancel.clone()))).await;
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
    conn.close().await;
    sink.emit(Event::NodeFinished { node: node.name.clone(), ok: tally.clean() }).await;
    tally
}

/// One lane: groups (entries) in order, jobs in order; a failure skips the rest of its group.
async fn run_lane(plan: &Plan, node: &Node, lane: &[Vec<usize>], session: &Session, sink: &Sink, cancel: watch::Receiver<u8>) -> Vec<JobStatus> {
    let mut statuses = Vec::new();
    for group in lane {
        let mut blocked: Option<String> = None;
        for &j in group {
            let job = &plan.jobs[j];
            let skip_reason = if *cancel.borrow() != CANCEL_NONE {
                Some("run cancelled before this job started".to_string())
            } else {
                blocked.clone().or_else(|| session.lost().map(|_| "the node was lost before this job started".to_string()))
            };
            let status = match skip_reason {
                Some(reason) => {
                    sink.emit(Event::JobFinished {
                        node: node.name.clone(),
                        job: job.id,
                        name: job.label(),
                        status: JobStatus::Skipped,
                        exit_code: None,
                        reason: Some(reason),
                        ms: 0,
                    })
                    .await;
                    JobStatus::Skipped
                }
                None => run_job(node, job, session, sink, cancel.clone()).await,
            };
            if blocked.is_none() && status != JobStatus::Ok && status != JobStatus::Skipped {
                blocked = Some(format!("job {} ({}) failed on this node", job.id + 1, job.label()));
            }
            statuses.push(status);
        }
    }
    statuses
}

/// Quotes text for `/bin/sh` as one word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

async fn run_job(node: &Node, job: &Job, session: &Session, sink: &Sink, mut cancel: watch::Receiver<u8>) -> JobStatus {
    let started = Instant::now();
    sink.emit(Event::JobStarted { node: node.name.clone(), job: job.id, name: job.label(), fingerprint: job.fingerprint.clone() }).await;
    let Work::Run { command, retry, no_block } = &job.work;
    let command = if *no_block {
        format!("(setsid /bin/sh -c {} </dev/null >/dev/null 2>&1 &)", sh_quote(command))
    } else {
        command.clone()
    };
    let mut outcome = Err("not run".to_string());
    for _attempt in 0..(*retry).max(1) {
        outcome = attempt(node, job, &command, session, sink, &mut cancel).await;
        if matches!(outcome, Ok(Outcome::Exited { code: 0 })) || matches!(outcome, Ok(Outcome::Cancelled)) || *cancel.borrow() != CANCEL_NONE {
            break;
        }
    }
    let (status, exit_code, reason) = match outcome {
        Ok(Outcome::Exited { code: 0 }) => (JobStatus::Ok, Some(0), None),
        Ok(Outcome::Exited { code }) => (JobStatus::Failed, Some(code), Some(format!("exited with code {code}"))),
        Ok(Outcome::Signaled { signal }) => (JobStatus::Failed, None, Some(format!("killed by signal {signal}"))),
        Ok(Outcome::TimedOut) => (JobStatus::TimedOut, None, Some(format!("timed out after {} s", job.timeout.as_secs()))),
        Ok(Outcome::Cancelled) => (JobStatus::Cancelled, None, Some("cancelled".to_string())),
        Ok(Outcome::SpawnFailed { message }) => (JobStatus::Failed, None, Some(format!("could not start /bin/sh: {message}"))),
        Err(lost) => (JobStatus::Failed, None, Some(lost)),
    };
    sink.emit(Event::JobFinished {
        node: node.name.clone(),
        job: job.id,
        name: job.label(),
        status,
        exit_code,
        reason,
        ms: started.elapsed().as_millis() as u64,
    })
    .await;
    status
}

/// Internal events of one attempt, so the select below only translates inputs.
enum Step {
    Reply(Option<Reply>),
    Cancel,
}

async fn attempt(node: &Node, job: &Job, command: &str, session: &Session, sink: &Sink, cancel: &mut watch::Receiver<u8>) -> Result<Outcome, String> {
    let (id, mut replies) = session.run(command.to_string(), job.timeout).await?;
    let mut kill_sent = false;
    loop {
        let step = tokio::select! {
            reply = replies.recv() => Step::Reply(reply),
            changed = cancel.changed(), if !kill_sent => match changed {
                Ok(()) if *cancel.borrow() >= CANCEL_KILL => Step::Cancel,
                Ok(()) => continue,
                Err(_) => { kill_sent = true; continue }
            },
        };
        match step {
            Step::Cancel => {
                kill_sent = true;
                session.cancel(id).await;
            }
            Step::Reply(None) => return Err(session.lost().unwrap_or_else(|| "connection to the executor lost".to_string())),
            Step::Reply(Some(Reply::Output { stream, data, .. })) => {
                let stream = match stream {
                    director_proto::Stream::Stdout => Stream::Stdout,
                    director_proto::Stream::Stderr => Stream::Stderr,
                };
                sink.emit(Event::JobOutput { node: node.name.clone(), job: job.id, stream, data }).await;
            }
            Step::Reply(Some(Reply::Finished { outcome, .. })) => return Ok(outcome),
            Step::Reply(Some(_)) => {}
        }
    }
}
