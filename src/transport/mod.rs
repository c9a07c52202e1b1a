//! Transports: how the operator reaches a node and starts the executor there.
//!
//! A transport owns one connection per node for the whole run and gives the engine a
//! [`Link`]: a byte pipe to one executor process. Two transports, so an enum, not a trait
//! object: [`ssh`] (russh, known_hosts, pooled handshakes, executor upload) and [`local`]
//! (the executor as a child process, so nobody needs sshd to try director). What crosses the
//! link is the engine's business (see `director-proto`); this module never decodes a frame,
//! and it never prints: failures come back as text the engine turns into events.

pub(crate) mod auth;
pub(crate) mod escalate;
pub mod executor;
pub(crate) mod known_hosts;
pub(crate) mod local;
pub(crate) mod open_files;
pub(crate) mod pattern;
pub(crate) mod relay;
pub(crate) mod ssh;
pub mod ssh_config;
pub(crate) mod tcp;

use crate::catalog::Account;
use crate::secret::Password;
use executor::ProbeAnswer;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// What arrives from the executor's side of a link.
#[derive(Debug)]
pub enum Incoming {
    /// Bytes from the executor's stdout: protocol frames.
    Data(bytes::Bytes),
    /// Bytes from its stderr: kept for error messages only.
    Stderr(bytes::Bytes),
    /// The process ended or the channel closed; the exit status when one was reported.
    Closed(Option<u32>),
}

/// Reads from a local executor a link holds before it waits for the engine to take them:
/// bounded, so a node's output waits in its pipe, not in the operator's memory.
pub(crate) const LINK_DEPTH: usize = 32;

/// What a link reads from its executor, in order, ending with [`Incoming::Closed`].
///
/// An SSH channel is read where its messages arrive (russh's queue for the channel), with no
/// task or queue of director's between: a task and a queue a link cost a hop for every read
/// and 2.4 KB of queue per node. A child's pipes are read by tasks into a queue.
pub struct Feed(Source);

enum Source {
    Queue(mpsc::Receiver<Incoming>),
    Channel { read: russh::ChannelReadHalf, status: Option<u32> },
}

impl Feed {
    pub(crate) fn queue(queue: mpsc::Receiver<Incoming>) -> Feed {
        Feed(Source::Queue(queue))
    }

    pub(crate) fn channel(read: russh::ChannelReadHalf) -> Feed {
        Feed(Source::Channel { read, status: None })
    }

    /// The next thing read. Once nothing more can come (the channel closed, the queue's
    /// writers gone), [`Incoming::Closed`], again at every later read. Cancel-safe: nothing
    /// read is held across an await.
    pub async fn recv(&mut self) -> Incoming {
        match &mut self.0 {
            Source::Queue(queue) => queue.recv().await.unwrap_or(Incoming::Closed(None)),
            Source::Channel { read, status } => loop {
                match read.wait().await {
                    Some(russh::ChannelMsg::Data { data }) => return Incoming::Data(data),
                    Some(russh::ChannelMsg::ExtendedData { data, .. }) => return Incoming::Stderr(data),
                    Some(russh::ChannelMsg::ExitStatus { exit_status }) => *status = Some(exit_status),
                    Some(_) => {}
                    None => return Incoming::Closed(*status),
                }
            },
        }
    }
}

/// A byte pipe to one executor process.
pub struct Link {
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    pub incoming: Feed,
    /// Bytes already read from stdout while probing, to be decoded first.
    pub pending: Vec<u8>,
    /// Keeps what the link needs alive (the child process of a local link).
    pub guard: Option<Box<dyn Send + Sync>>,
    /// Marks the command as having done what it was started for ([`Link::settled`]).
    pub settle: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Link {
    /// The command did what it was started for (the executor answered, a script ended): the
    /// connection's close leaves it alone. Until then, closing the connection ends it on the
    /// node, so a probe stalled in a login script is not left there.
    pub fn settled(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle();
        }
    }
}

/// Bytes the operator may have written to links through [`send`] (executor uploads),
/// fleet-wide, that their connections have not yet been given a turn to take. A link's writer
/// only queues (russh copies each write for the connection's task, and a node's 2 MB window
/// rarely stops it), so without a bound the uploads of the nodes that reach theirs together,
/// 300 KB each, sat in memory at once (first contact at 1,000 hosts: the operator's peak 37.6
/// MB unbounded, 26.9 MB bounded). The engine's own frames are not sent through it: their
/// bytes exist before the write (a waiting writer would hold them as long), and what made
/// many at once (a QUERY's targets) is paced where they are woken (`node::shared`).
const IN_FLIGHT: usize = 2 << 20;

/// How much of a large write takes one turn: a turn is never more than the whole budget.
const PIECE: usize = 64 * 1024;

static SENDING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(IN_FLIGHT);

/// Writes `parts` to `writer` in order, in pieces flushed one by one, each holding its
/// bytes' share of [`IN_FLIGHT`] until the task has yielded once after writing it: the
/// connection's task, woken by the write, has then had its turn to take the bytes (on one
/// thread, tasks woken run before a yielded one comes back). A script's input of a line
/// takes a turn too: it is one yield, at most once a node.
pub(crate) async fn send<W: AsyncWrite + Unpin + ?Sized>(writer: &mut W, parts: &[&[u8]]) -> std::io::Result<()> {
    for part in parts {
        for piece in part.chunks(PIECE) {
            // Never closed: acquiring cannot fail.
            let turn = SENDING.acquire_many(piece.len() as u32).await.ok();
            writer.write_all(piece).await?;
            writer.flush().await?;
            tokio::task::yield_now().await;
            drop(turn);
        }
    }
    Ok(())
}

/// `m`'s guard, whether or not a thread panicked holding it: what the transport's mutexes
/// guard (caches, kept connections) stays usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Progress a transport reports while connecting, for the engine to turn into events.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Progress {
    Uploaded { bytes: u64, sha3: String },
}

/// An open connection to one node, able to start executors on it.
pub(crate) enum Connection {
    Ssh(ssh::SshConnection),
    Local(local::LocalConnection),
}

impl Connection {
    /// Starts the executor as `account` (installing it first if the node lacks it) and
    /// returns the link. With `force_install` the executor is installed again even if
    /// present. `node` names the node in messages; `password` answers a become prompt.
    pub(crate) async fn start_executor(
        &self,
        node: &str,
        account: &Account,
        password: Option<&Password>,
        force_install: bool,
        report: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Link, String> {
        match (self, account) {
            (Connection::Local(c), Account::Login) => c.start_executor(force_install, report).await,
            _ => self.start_through_shell(node, account, password, force_install, report).await,
        }
    }

    /// The known_hosts file the node's host key was recorded in as this connection was made
    /// (a host seen for the first time), if it was.
    pub(crate) fn recorded_host_key(&self) -> Option<&std::path::Path> {
        match self {
            Connection::Ssh(c) => c.recorded.as_deref(),
            Connection::Local(_) => None,
        }
    }

    pub(crate) async fn close(self) {
        if let Connection::Ssh(c) = self {
            c.close().await;
        }
    }

    /// Runs a shell command on the node: a link to whatever it starts.
    async fn exec(&self, command: String) -> Result<Link, String> {
        match self {
            Connection::Ssh(c) => c.exec_link(command).await,
            Connection::Local(_) => local::exec_shell(command),
        }
    }

    /// Runs `script` as `account` to its end, with `input` on its stdin: its exit status and
    /// everything it printed.
    async fn run_script(
        &self,
        script: &str,
        account: &Account,
        password: Option<&Password>,
        input: &[u8],
    ) -> Result<(Option<u32>, Vec<u8>, Vec<u8>), String> {
        let mut link = self.exec(escalate::wrap(script, account, password.is_some())).await?;
        escalate::dialogue(&mut link, account, password).await?;
        // A script that ends without reading all of its input (it failed first) is reported by
        // its status and output, not by the broken pipe.
        let sent = async {
            send(&mut link.writer, &[input]).await?;
            link.writer.shutdown().await
        };
        let unsent = sent.await.err();
        // End of input: a channel's EOF was sent by shutdown; a pipe closes when dropped.
        drop(std::mem::replace(&mut link.writer, Box::new(tokio::io::sink())));
        let (mut stdout, mut stderr) = (std::mem::take(&mut link.pending), Vec::new());
        loop {
            let incoming = link.incoming.recv().await;
            if matches!(incoming, Incoming::Closed(_)) {
                link.settled();
            }
            match incoming {
                Incoming::Data(d) => stdout.extend_from_slice(&d),
                Incoming::Stderr(e) => stderr.extend_from_slice(&e),
                Incoming::Closed(Some(0)) if unsent.is_some() => {
                    return Err(format!("upload failed: {}", unsent.map(|e| e.to_string()).unwrap_or_default()))
                }
                Incoming::Closed(status) => return Ok((status, stdout, stderr)),
            }
        }
    }

    /// Installs the executor for `arch` (as `uname -m` says it) as `account`.
    async fn install(
        &self,
        node: &str,
        arch: &str,
        account: &Account,
        password: Option<&Password>,
    ) -> Result<&'static executor::Executor, String> {
        let exe = executor::for_arch(arch).ok_or_else(|| format!("node {node}: {}", executor::unsupported(arch)))?;
        let (status, stdout, stderr) =
            self.run_script(&executor::install_command(exe), account, password, exe.binary).await?;
        match status {
            Some(0) => Ok(exe),
            other => Err(format!(
                "installing the executor failed (exit {}): {}",
                other.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                String::from_utf8_lossy(&[stderr, stdout].concat()).trim()
            )),
        }
    }

    /// The probe (and the install when it says the executor is missing), run through the
    /// node's shell as `account`: how every SSH node, and a local node with become, starts
    /// its executor.
    async fn start_through_shell(
        &self,
        node: &str,
        account: &Account,
        password: Option<&Password>,
        force_install: bool,
        report: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Link, String> {
        let mut uploaded = |exe: &executor::Executor| {
            report(Progress::Uploaded { bytes: exe.binary.len() as u64, sha3: exe.sha3.to_string() });
        };
        let who = account.user().unwrap_or("the login user");
        if force_install {
            // The file there is not ours (another protocol): its architecture decides which
            // executor replaces it.
            let (_, arch, _) = self.run_script("uname -m", &Account::Login, None, b"").await?;
            let started = std::time::Instant::now();
            uploaded(self.install(node, String::from_utf8_lossy(&arch).trim(), account, password).await?);
            tracing::info!(node = %node, ms = started.elapsed().as_millis() as u64, "executor replaced for {who}");
        }
        // The probe picks the one executor there without asking the node's architecture; if
        // that one cannot run here (a home shared with nodes of another architecture), it
        // asks, and installs the right one beside it.
        let mut by_arch = false;
        for _ in 0..2 {
            let mut sent = false;
            let probe = std::time::Instant::now();
            let script = executor::probe_command(by_arch);
            let mut link = self.exec(escalate::wrap(&script, account, password.is_some())).await?;
            escalate::dialogue(&mut link, account, password).await?;
            let mut probe_stderr = Vec::new();
            loop {
                match executor::read_probe(&link.pending) {
                    ProbeAnswer::Started => {
                        let ms = probe.elapsed().as_millis() as u64;
                        tracing::info!(node = %node, ms, "probe done, executor started as {who}");
                        link.settled();
                        return Ok(link);
                    }
                    ProbeAnswer::Unsafe { path } => {
                        let owner = match account.user() {
                            Some(user) => format!("{user}, the become user"),
                            None => "the login user".to_string(),
                        };
                        return Err(format!(
                            "the executor on node {node} is not safe to run: {path} can be changed by another user (it is writable by everyone or not owned by {owner}); fix its owner and mode (chmod 700) or set XDG_CACHE_HOME elsewhere"
                        ));
                    }
                    ProbeAnswer::Missing { .. } if sent => {
                        return Err("the executor was installed but does not start".to_string());
                    }
                    ProbeAnswer::Missing { arch } => {
                        // The probe waits on its stdin for the upload: in the same session.
                        tracing::info!(node = %node, ms = probe.elapsed().as_millis() as u64, "probe done: no executor for {arch}");
                        let exe = executor::for_arch(&arch)
                            .ok_or_else(|| format!("node {node}: {}", executor::unsupported(&arch)))?;
                        let end = link.pending.iter().position(|&b| b == b'\n').map_or(0, |at| at + 1);
                        link.pending.drain(..end);
                        let started = std::time::Instant::now();
                        let (header, [stage, packed]) = executor::upload_header(exe);
                        send(&mut link.writer, &[header.as_bytes(), stage, packed])
                            .await
                            .map_err(|e| format!("upload failed: {e}"))?;
                        sent = true;
                        uploaded(exe);
                        tracing::info!(node = %node, ms = started.elapsed().as_millis() as u64, bytes = stage.len() + packed.len(), "executor uploaded for {who}");
                    }
                    ProbeAnswer::NeedMore => match link.incoming.recv().await {
                        Incoming::Data(d) => link.pending.extend_from_slice(&d),
                        Incoming::Stderr(e) => probe_stderr.extend_from_slice(&e),
                        Incoming::Closed(status) => {
                            link.settled();
                            let said = String::from_utf8_lossy(&probe_stderr).trim().to_string();
                            if !by_arch && !sent {
                                tracing::info!(node = %node, "the executor there did not start ({said}): asking the architecture");
                                by_arch = true;
                                break;
                            }
                            return Err(format!(
                                "the probe ended before the executor started (exit {}){}",
                                status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                                if said.is_empty() { String::new() } else { format!(": {said}") }
                            ));
                        }
                    },
                }
            }
        }
        Err("the executor was installed but does not start".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    /// A writer that takes every write at once and hands it to a task of its own to "send",
    /// as a russh channel's writer hands a copy to its connection's task.
    struct Queuing {
        queued: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        to_sender: mpsc::UnboundedSender<usize>,
    }

    impl AsyncWrite for Queuing {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
            let now = self.queued.fetch_add(buf.len(), Ordering::SeqCst) + buf.len();
            self.most.fetch_max(now, Ordering::SeqCst);
            let _ = self.to_sender.send(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// The most bytes queued at once when `writers` tasks write `each` bytes apiece on one
    /// thread, through [`send`] or straight.
    fn most_queued(writers: usize, each: usize, through_send: bool) -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (queued, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        runtime.block_on(async {
            let mut all = Vec::new();
            for _ in 0..writers {
                let (to_sender, mut sender) = mpsc::unbounded_channel::<usize>();
                let taken = queued.clone();
                all.push(tokio::spawn(async move {
                    while let Some(n) = sender.recv().await {
                        taken.fetch_sub(n, Ordering::SeqCst);
                    }
                }));
                let mut writer = Queuing { queued: queued.clone(), most: most.clone(), to_sender };
                all.push(tokio::spawn(async move {
                    let bytes = vec![7u8; each];
                    if through_send {
                        send(&mut writer, &[&bytes]).await.unwrap();
                    } else {
                        writer.write_all(&bytes).await.unwrap();
                    }
                }));
            }
            for task in all {
                task.await.unwrap();
            }
        });
        assert_eq!(queued.load(Ordering::SeqCst), 0);
        most.load(Ordering::SeqCst)
    }

    #[test]
    fn large_writes_of_a_whole_fleet_on_one_thread_queue_no_more_than_the_budget() {
        // 200 nodes written 256 KB each: 50 MB queued at once when written straight.
        let (writers, each) = (200, 256 * 1024);
        assert_eq!(most_queued(writers, each, false), writers * each);
        let most = most_queued(writers, each, true);
        assert!(most <= IN_FLIGHT, "{most} bytes queued at once, more than {IN_FLIGHT}");
        assert!(most >= IN_FLIGHT / 2, "{most} bytes queued at once: the budget is not used");
    }
}
