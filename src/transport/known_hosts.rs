//! Host key checking against an OpenSSH known_hosts file.
//!
//! Unknown keys are recorded under accept-new (the default) and refused under strict; a key
//! that differs from the recorded one is always refused, with both fingerprints and the
//! command that removes the stale entry. Checking is never skipped silently: `off` must be
//! asked for, and the CLI warns when it is.

use crate::catalog::HostKeyPolicy;
use russh::keys::{HashAlg, PublicKey};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Serializes appends to known_hosts from the many connection tasks of one run.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone)]
pub struct HostKeyCheck {
    pub node: String,
    pub host: String,
    pub port: u16,
    pub policy: HostKeyPolicy,
    pub path: PathBuf,
}

/// The default known_hosts file: `~/.ssh/known_hosts`.
pub fn default_path() -> PathBuf {
    crate::catalog::expand_home("~/.ssh/known_hosts")
}

/// Checks, before any node is contacted, that `path` can serve as a known_hosts file: absent
/// (it will be created), or a regular file of text.
pub fn check_file(path: &Path) -> Result<(), crate::error::Error> {
    let refuse = |why: &str| {
        crate::error::Error::input(format!("--known-hosts {}: {why}", path.display()))
            .hint("name an OpenSSH known_hosts file (it is created if it does not exist)")
    };
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(&crate::catalog::yaml::io_reason(&e))),
        Ok(meta) => meta,
    };
    if !meta.is_file() {
        return Err(refuse(if meta.is_dir() { "it is a directory" } else { "it is not a regular file" }));
    }
    let bytes = std::fs::read(path).map_err(|e| refuse(&crate::catalog::yaml::io_reason(&e)))?;
    if std::str::from_utf8(&bytes).is_err() || bytes.contains(&0) {
        return Err(refuse("it is not a text file"));
    }
    Ok(())
}

fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl HostKeyCheck {
    /// `Ok(())` when the key may be used; otherwise the reason, for the node's event.
    pub fn check(&self, key: &PublicKey) -> Result<(), String> {
        if self.policy == HostKeyPolicy::Off {
            return Ok(());
        }
        let offered = key.fingerprint(HashAlg::Sha256);
        let pattern = host_pattern(&self.host, self.port);
        match russh::keys::known_hosts::check_known_hosts_path(&self.host, self.port, key, &self.path) {
            Ok(true) => Ok(()),
            Ok(false) => match self.policy {
                HostKeyPolicy::Strict => Err(format!(
                    "host key for node {} ({pattern}) is not in {} and host key checking is strict; the server offered {offered}",
                    self.node,
                    self.path.display()
                )),
                _ => {
                    let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
                    // Another task may have just recorded it.
                    if let Ok(true) = russh::keys::known_hosts::check_known_hosts_path(&self.host, self.port, key, &self.path) {
                        return Ok(());
                    }
                    self.record(&pattern, key)
                        .map_err(|e| format!("cannot record the host key of node {} in {}: {e}", self.node, self.path.display()))
                }
            },
            Err(russh::keys::Error::KeyChanged { line }) => {
                let recorded = recorded_fingerprint(&self.path, &self.host, self.port, key, line);
                Err(format!(
                    "host key for node {} ({pattern}) has changed: {} line {line} has {recorded}, the server offered {offered}; refusing to connect (if the host was reinstalled, run: ssh-keygen -R '{pattern}' -f {})",
                    self.node,
                    self.path.display(),
                    self.path.display()
                ))
            }
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }
}

impl HostKeyCheck {
    /// Appends `pattern key` as one line, starting a new line if the file lacks a final one.
    fn record(&self, pattern: &str, key: &PublicKey) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        if let Some(dir) = self.path.parent() {
            crate::private::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new().read(true).append(true).create(true).open(&self.path)?;
        let mut line = String::new();
        if file.seek(SeekFrom::End(-1)).is_ok() {
            let mut last = [0u8; 1];
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                line.push('\n');
            }
        }
        let encoded = key.to_openssh().map_err(std::io::Error::other)?;
        // Drop the key's comment: known_hosts lines are `pattern algorithm base64`.
        let mut parts = encoded.split_whitespace();
        line.push_str(&format!("{pattern} {} {}\n", parts.next().unwrap_or(""), parts.next().unwrap_or("")));
        file.write_all(line.as_bytes())
    }
}

fn recorded_fingerprint(path: &Path, host: &str, port: u16, offered: &PublicKey, line: usize) -> String {
    russh::keys::known_hosts::known_host_keys_path(host, port, path)
        .ok()
        .and_then(|keys| {
            keys.into_iter()
                .find(|(l, k)| *l == line || k.algorithm() == offered.algorithm())
                .map(|(_, k)| k.fingerprint(HashAlg::Sha256).to_string())
        })
        .unwrap_or_else(|| "another key".to_string())
}
