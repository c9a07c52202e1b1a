//! The far end of a relay: `director relay`, which an operator starts on a site's gateway
//! over SSH (see [`crate::engine::relay`] for the operator's end and what crosses).
//!
//! It reads the [`Handover`] and the files after it from stdin into a private directory of
//! its own, points the plan's sources and known_hosts files at its copies, and runs the same
//! engine against the site's nodes, logging in with the operator's forwarded ssh-agent. Every
//! event of its nodes goes back on stdout as a [`Report`] line (the run's own start and end
//! are the operator's to say); host key lines it records are sent back for the operator's
//! known_hosts. Cancel orders come in on stdin; when stdin ends (the operator is gone), the
//! run is killed. It keeps nothing after the run but its own binary: no history, no files.

use crate::catalog::{Catalog, TransportKind};
use crate::engine::relay::{Handover, Order, Report, PROTOCOL};
use crate::engine::{self, EngineConfig};
use crate::error::Error;
use crate::event::Event;
use crate::node::{CancelLevel, Sink};
use crate::plan::fingerprint::Seal;
use crate::transport::{known_hosts::KnownHosts, ssh};
use sha3::{Digest, Sha3_224};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// `director relay [--install SHA3 PATH]`: installs itself when just uploaded, then serves
/// one run; the exit code is 0 once the run's events are all sent.
pub(crate) fn serve(install: Option<&[String]>) -> Result<i32, Error> {
    if let Some([sha3, path]) = install {
        crate::transport::relay::install_self(sha3, Path::new(path)).map_err(Error::input)?;
    }
    let runtime = crate::launch::runtime()?;
    crate::launch::block_on(runtime, async {
        let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
        let said = out.write_all(Report::Hello { protocol: PROTOCOL }.line().as_bytes()).await;
        if said.is_err() || out.flush().await.is_err() {
            return Ok(1);
        }
        let work = Workdir::new()?;
        let outcome = run(&work, &mut out).await;
        drop(work);
        if let Err(error) = outcome {
            let _ = out.write_all(Report::Refused { error }.line().as_bytes()).await;
            let _ = out.flush().await;
            return Ok(1);
        }
        Ok(0)
    })
}

/// The relay's private directory for one run (0700, removed when dropped).
struct Workdir(PathBuf);

impl Workdir {
    fn new() -> Result<Self, Error> {
        let dir = crate::paths::cache_dir().join("relay").join(format!("run-{}", std::process::id()));
        crate::private::create_dir_all(&dir)
            .map_err(|e| Error::input(format!("cannot make the relay's directory {}: {e}", dir.display())))?;
        Ok(Workdir(dir))
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(work: &Workdir, out: &mut (impl AsyncWriteExt + Unpin)) -> Result<(), String> {
    let mut input = tokio::io::BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    input.read_until(b'\n', &mut line).await.map_err(|e| format!("cannot read the run: {e}"))?;
    let mut handover: Handover =
        serde_json::from_slice(&line).map_err(|e| format!("cannot read the run the operator sent: {e}"))?;
    drop(line);
    if handover.protocol != PROTOCOL {
        return Err(format!("the operator speaks relay protocol {}, this relay {PROTOCOL}", handover.protocol));
    }
    // The files, each checked against the hash the operator's plan has for it.
    let mut files: HashMap<String, PathBuf> = HashMap::new();
    for shipped in &handover.files {
        let mut bytes = vec![0u8; shipped.size as usize];
        input.read_exact(&mut bytes).await.map_err(|e| format!("cannot read the files of the run: {e}"))?;
        let sha3 = crate::verb::source::hex(&Sha3_224::digest(&bytes));
        if sha3 != shipped.sha3 {
            return Err(format!("a file of the run arrived damaged (sha3-224 {sha3}, not {})", shipped.sha3));
        }
        let path = work.0.join(&sha3);
        crate::private::write_file(&path, &bytes).map_err(|e| format!("cannot keep a file of the run: {e}"))?;
        files.insert(sha3, path);
    }
    for job in &mut handover.plan.jobs {
        for source in job.work.sources_mut() {
            if let Some(path) = files.get(&source.sha3) {
                source.path = path.clone();
            }
        }
    }
    // The operator's known_hosts files, as copies here; what this run records in them goes
    // back.
    let mut copies: HashMap<PathBuf, PathBuf> = HashMap::new();
    // How far each copy has been sent back: at first, what the operator sent.
    let mut read_to: HashMap<PathBuf, usize> = HashMap::new();
    for (k, file) in handover.known_hosts.iter().enumerate() {
        let copy = work.0.join(format!("known_hosts-{k}"));
        crate::private::write_file(&copy, file.text.as_bytes()).map_err(|e| format!("cannot copy known_hosts: {e}"))?;
        read_to.insert(copy.clone(), file.text.len());
        copies.insert(file.path.clone(), copy);
    }
    let local = |paths: &[PathBuf]| -> Vec<PathBuf> {
        paths.iter().map(|p| copies.get(p).cloned().unwrap_or_else(|| work.0.join("known_hosts-none"))).collect()
    };
    let mut plan = handover.plan;
    for node in &mut plan.nodes {
        node.relay = None;
        // Logins from here use the forwarded agent: the operator's key files are not here.
        node.identity_file = None;
        node.ssh.certificate_files.clear();
        node.ssh.agent = crate::catalog::AgentSocket::Environment;
        for jump in &mut node.jumps {
            jump.identity_file = None;
            jump.ssh.certificate_files.clear();
            jump.ssh.agent = crate::catalog::AgentSocket::Environment;
        }
        node.user_known_hosts = local(&node.user_known_hosts);
        node.global_known_hosts = local(&node.global_known_hosts);
    }
    let known_hosts = KnownHosts {
        user: local(&handover.user_known_hosts),
        global: local(&handover.global_known_hosts),
        explicit: handover.known_hosts_explicit,
    };
    let back: HashMap<PathBuf, PathBuf> = copies.iter().map(|(theirs, ours)| (ours.clone(), theirs.clone())).collect();
    let settings = handover.settings;
    let nobody = Catalog { docs: Vec::new(), nodes: Vec::new(), warnings: Vec::new() };
    let credentials = ssh::Credentials::load(&nobody, &plan.nodes).map_err(|e| e.to_string())?;
    let ssh = plan.nodes.iter().any(|n| n.transport == TransportKind::Ssh).then(|| {
        Arc::new(ssh::SshSettings {
            connect_timeout: Duration::from_millis(settings.connect_timeout_ms),
            connect_timeout_given: settings.connect_timeout_given,
            known_hosts: Arc::new(known_hosts),
            host_key_policy: crate::catalog::HostKeyPolicy::AcceptNew,
            host_key_override: settings.host_key_override,
            credentials,
            gates: ssh::Gates::new(settings.connect_concurrency),
            bastions: Default::default(),
        })
    });
    let secrets = Arc::new(crate::secret::Secrets::default());
    plan.secrets().iter().for_each(|v| secrets.add_value(v));
    let password = match handover.password {
        Some(text) => {
            secrets.add(&text);
            Some(Arc::new(crate::secret::Password::new(text)?))
        }
        None => None,
    };
    let key = director_proto::unhex(&handover.seal_key).ok_or("the operator's seal key is not hex")?;
    // QUERY arrivals: this site's go up to the operator, the others' come down from it.
    let own: std::collections::HashSet<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
    let (arrivals_tx, mut arrivals) = mpsc::unbounded_channel();
    let (inbox_tx, inbox) = mpsc::unbounded_channel();
    let config = Arc::new(EngineConfig {
        run_id: handover.run_id,
        ssh,
        hello_timeout: Duration::from_millis(settings.hello_timeout_ms),
        args_ttl: settings.args_ttl,
        become_password: password,
        mode: settings.mode,
        diff: settings.diff,
        seal: Seal::new(key.into(), secrets.clone()),
        agent: None,
        connect_concurrency: settings.connect_concurrency,
        federation: Some(engine::Federation { arrivals: arrivals_tx, inbox: std::sync::Mutex::new(Some(inbox)) }),
    });
    let (tx, mut events) = mpsc::channel(4096);
    let (cancel, cancel_rx) = watch::channel(CancelLevel::None);
    let engine = tokio::spawn(engine::run(Arc::new(plan), config, Sink::new(tx, secrets), cancel_rx));
    // Orders from the operator; its end of stdin closing means it is gone: kill the run.
    tokio::spawn(async move {
        let mut lines = input.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str(&line) {
                Ok(Order::Cancel { level }) => {
                    cancel.send_if_modified(|now| {
                        let raise = level > *now;
                        if raise {
                            *now = level;
                        }
                        raise
                    });
                }
                Ok(Order::Query { arrival }) => {
                    let _ = inbox_tx.send(arrival);
                }
                Err(e) => tracing::warn!("an order from the operator that is not one: {e}"),
            }
        }
        cancel.send_replace(CancelLevel::Kill);
    });
    let lost = |e: std::io::Error| format!("cannot write to the operator: {e}");
    loop {
        let emitted = tokio::select! {
            emitted = events.recv() => emitted,
            Some(arrival) = arrivals.recv() => {
                if own.contains(&arrival.node) {
                    out.write_all(Report::Query { arrival }.line().as_bytes()).await.map_err(lost)?;
                    out.flush().await.map_err(lost)?;
                }
                continue;
            }
        };
        let Some(emitted) = emitted else { break };
        let mut event = emitted.take();
        match &mut event {
            Event::RunStarted { .. } | Event::RunFinished { .. } => continue,
            Event::HostKeyRecorded { file, .. } => {
                let ours = PathBuf::from(&*file);
                if let Some(theirs) = back.get(&ours) {
                    let lines = new_lines(&ours, &mut read_to);
                    if !lines.is_empty() {
                        out.write_all(Report::HostKey { file: theirs.clone(), lines }.line().as_bytes())
                            .await
                            .map_err(lost)?;
                    }
                    *file = theirs.display().to_string();
                }
            }
            _ => {}
        }
        out.write_all(Report::Event { event }.line().as_bytes()).await.map_err(lost)?;
        if events.is_empty() {
            out.flush().await.map_err(lost)?;
        }
    }
    out.flush().await.map_err(lost)?;
    let _ = engine.await;
    Ok(())
}

/// What was appended to the copy `path` since the last call (whole lines only).
fn new_lines(path: &Path, read_to: &mut HashMap<PathBuf, usize>) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = read_to.get(path).copied().unwrap_or(0);
    let end = text.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
    if end <= start {
        return String::new();
    }
    read_to.insert(path.to_path_buf(), end);
    String::from_utf8_lossy(&text[start..end]).into_owned()
}
