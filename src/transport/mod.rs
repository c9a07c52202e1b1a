//! Transports: how the operator reaches a node and starts the executor there.
//!
//! A transport owns one connection per node for the whole run and gives the engine a
//! [`Link`]: a byte pipe to one executor process. Two transports, so an enum, not a trait
//! object: [`ssh`] (russh, known_hosts, pooled handshakes, executor upload) and [`local`]
//! (the executor as a child process, so nobody needs sshd to try director). What crosses the
//! link is the engine's business (see `director-proto`); this module never decodes a frame,
//! and it never prints: failures come back as text the engine turns into events.

pub mod executor;
pub mod known_hosts;
pub mod local;
pub mod pattern;
pub mod ssh;
pub mod ssh_config;

use tokio::io::AsyncWrite;
use tokio::sync::mpsc;

/// What arrives from the executor's side of a link.
#[derive(Debug)]
pub enum Incoming {
    /// Bytes from the executor's stdout: protocol frames.
    Data(Vec<u8>),
    /// Bytes from its stderr: kept for error messages only.
    Stderr(Vec<u8>),
    /// The process ended or the channel closed; the exit status when one was reported.
    Closed(Option<u32>),
}

/// A byte pipe to one executor process.
pub struct Link {
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    pub incoming: mpsc::Receiver<Incoming>,
    /// Bytes already read from stdout while probing, to be decoded first.
    pub pending: Vec<u8>,
    /// Keeps what the link needs alive (the child process of a local link).
    pub guard: Option<Box<dyn Send + Sync>>,
}

/// Progress a transport reports while connecting, for the engine to turn into events.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Connected { ms: u64 },
    Uploaded { bytes: u64, sha3: String },
}

/// An open connection to one node, able to start executors on it.
pub enum Connection {
    Ssh(ssh::SshConnection),
    Local(local::LocalConnection),
}

impl Connection {
    /// Starts the executor (installing it first if the node lacks it) and returns the link.
    /// With `force_install` the executor is installed again even if present.
    pub async fn start_executor(
        &self,
        force_install: bool,
        report: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Link, String> {
        match self {
            Connection::Ssh(c) => c.start_executor(force_install, report).await,
            Connection::Local(c) => c.start_executor(force_install, report).await,
        }
    }

    pub async fn close(self) {
        if let Connection::Ssh(c) = self {
            c.close().await
        }
    }
}
