//! The local transport: the executor as a child process of the operator.
//!
//! Same executor, same protocol, same content-addressed install in the user's cache
//! directory as on a remote node, so the engine path is identical; only the pipe differs.
//! It lets anyone try director without sshd, and tests the engine without a network.

use super::executor;
use super::{Incoming, Link, Progress, LINK_DEPTH};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

pub(crate) struct LocalConnection;

/// Local nodes of one run share one install: it is written once, under this lock, and each
/// attempt gets a temp file of its own.
static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// `ETXTBSY`: another thread forked while the fresh executor was still open for writing, and
/// its child holds that descriptor until it execs; starting again shortly after succeeds.
const TEXT_FILE_BUSY: i32 = 26;

fn install_dir() -> PathBuf {
    crate::paths::cache_dir().join("bin")
}

impl LocalConnection {
    /// Writes the executor into place (temp file, then rename) unless it is there already.
    fn install(force: bool) -> Result<Option<(PathBuf, u64)>, String> {
        let _one_at_a_time = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let exe = executor::native()?;
        let dir = install_dir();
        let path = dir.join(format!("director-exec-{}", exe.sha3));
        let present = std::fs::metadata(&path).map(|m| m.len() == exe.binary.len() as u64).unwrap_or(false);
        if present && !force {
            return Ok(None);
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let attempt = ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".director-exec-{}.{}.{attempt}.tmp", exe.sha3, std::process::id()));
        std::fs::write(&tmp, exe.binary).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("cannot install {}: {e}", path.display()))?;
        Ok(Some((path, exe.binary.len() as u64)))
    }

    pub(crate) async fn start_executor(
        &self,
        force_install: bool,
        report: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Link, String> {
        let exe = executor::native()?;
        if let Some((_, bytes)) = Self::install(force_install)? {
            report(Progress::Uploaded { bytes, sha3: exe.sha3.to_string() });
        }
        let path = install_dir().join(format!("director-exec-{}", exe.sha3));
        let mut tries = 0;
        let child = loop {
            let spawned = tokio::process::Command::new(&path)
                .arg("serve")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn();
            match spawned {
                Err(e) if e.raw_os_error() == Some(TEXT_FILE_BUSY) && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => break other.map_err(|e| format!("cannot start {}: {e}", path.display()))?,
            }
        };
        Ok(link_of(child))
    }
}

/// Runs `command` with `/bin/sh -c`: a link to whatever it starts (the shell path of
/// become, which runs the probe and install scripts as on a remote node).
pub(crate) fn exec_shell(command: String) -> Result<Link, String> {
    let child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    Ok(link_of(child))
}

/// A link over a child's pipes; its stderr is all delivered before it is reported closed.
fn link_of(mut child: tokio::process::Child) -> Link {
    let writer = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, incoming) = mpsc::channel(LINK_DEPTH);
    let err_tx = tx.clone();
    let errors = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 || err_tx.send(Incoming::Stderr(bytes::Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Incoming::Data(bytes::Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = errors.await;
        let status = child.wait().await.ok().and_then(|s| s.code()).map(|c| c as u32);
        let _ = tx.send(Incoming::Closed(status)).await;
    });
    Link {
        writer: Box::new(writer),
        incoming: super::Feed::queue(incoming),
        pending: Vec::new(),
        guard: None,
        settle: None,
    }
}
