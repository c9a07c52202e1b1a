//! Starting `director relay` on a site's gateway: this director's own binary, installed
//! content-addressed beside the executor (`…/director/bin/director-<sha3>`) and started on one
//! exec channel with the operator's ssh-agent forwarded to it.
//!
//! As with the executor, one exec session does it all: the probe starts the binary if it is
//! there; if not, it prints a marker line naming the gateway's architecture (and whether it has
//! gzip), reads the binary from its stdin, and starts the temp file as `relay --install`,
//! which checks its own hash, renames itself into place and serves, in the same process.
//! Only a gateway of this machine's architecture can take this binary; the binary must be
//! one the gateway can run (a static musl build runs on any Linux).

use super::{Connection, Incoming, Link};
use sha3::{Digest, Sha3_256};
use std::path::Path;
use std::sync::OnceLock;
use tokio::io::AsyncWriteExt;

/// First line printed by the probe when the gateway lacks this director.
pub(crate) const MISSING_MARKER: &str = "director-relay-missing";
/// First line printed by the probe when another user could replace the binary.
pub(crate) const UNSAFE_MARKER: &str = "director-relay-unsafe";

/// This director's own binary: its sha3-256, known once per process.
pub(crate) struct OwnBinary {
    pub sha3: String,
}

/// The running binary, as the kernel has it (even if its file was replaced since).
const SELF: &str = "/proc/self/exe";

/// This director's binary's sha3-256: hashed once per build and kept in the cache directory
/// (`self.sha3`, keyed by the file's device, inode, size and modification time), so a run
/// through relays does not read tens of megabytes first.
pub(crate) fn own_binary() -> Result<&'static OwnBinary, String> {
    static OWN: OnceLock<Result<OwnBinary, String>> = OnceLock::new();
    OWN.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(SELF).map_err(|e| format!("cannot read this director's binary: {e}"))?;
        let key = format!("{}:{}:{}:{}.{}", meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
        let kept = crate::paths::cache_dir().join("self.sha3");
        let known = std::fs::read_to_string(&kept).ok().and_then(|text| {
            let (k, sha3) = text.trim().split_once(' ')?;
            (k == key && sha3.len() == 64).then(|| sha3.to_string())
        });
        if let Some(sha3) = known {
            return Ok(OwnBinary { sha3 });
        }
        let sha3 = hash_file(Path::new(SELF)).map_err(|e| format!("cannot read this director's binary: {e}"))?;
        if crate::private::create_dir_all(kept.parent().unwrap_or(Path::new("."))).is_ok() {
            let _ = crate::private::write_file(&kept, format!("{key} {sha3}\n").as_bytes());
        }
        Ok(OwnBinary { sha3 })
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha3_256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(director_proto::hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// The probe: starts `director-<sha3> relay` if present and safe; otherwise prints
/// `MISSING_MARKER <uname -m> <gz|->`, installs what follows on stdin and starts it.
pub(crate) fn probe_command(sha3: &str) -> String {
    format!(
        r#"d="${{XDG_CACHE_HOME:-$HOME/.cache}}/director/bin"; p="$d/director-{sha3}"; if [ -x "$p" ]; then for f in "$d/.." "$d" "$p"; do [ -O "$f" ] || {{ echo "{UNSAFE_MARKER} $f"; exit 0; }}; done; exec "$p" relay; fi; z=-; command -v gzip >/dev/null 2>&1 && z=gz; echo "{MISSING_MARKER} $(uname -m) $z"; umask 077; mkdir -p "$d" || exit 1; read -r n f || exit 0; t="$d/.director-{sha3}.$$.tmp"; trap 'rm -f "$t"' EXIT; if [ "$f" = gz ]; then head -c "$n" | gzip -dc > "$t"; else head -c "$n" > "$t"; fi || exit 1; chmod 700 "$t"; trap - EXIT; exec "$t" relay --install {sha3} "$p""#
    )
}

/// `director relay --install SHA3 PATH`: this binary, just uploaded to a temp file, checks
/// that it is whole (its sha3-256 is `sha3`) and renames itself to `path`.
pub(crate) fn install_self(sha3: &str, path: &Path) -> Result<(), String> {
    let exe = std::fs::read_link(SELF).map_err(|e| format!("cannot find this binary: {e}"))?;
    let own = hash_file(Path::new(SELF)).map_err(|e| format!("cannot read this binary: {e}"))?;
    if own != sha3 {
        let _ = std::fs::remove_file(&exe);
        return Err(format!("the uploaded director is damaged: its sha3-256 is {own}, not {sha3}"));
    }
    std::fs::rename(&exe, path).map_err(|e| format!("cannot install director at {}: {e}", path.display()))
}

/// What the gateway's first line says.
enum Answer {
    NeedMore,
    Missing {
        arch: String,
        gzip: bool,
    },
    Unsafe(String),
    /// The relay started: its first line is its own.
    Started,
}

fn read_answer(bytes: &[u8]) -> Answer {
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else { return Answer::NeedMore };
    let line = String::from_utf8_lossy(&bytes[..end]);
    if let Some(path) = line.strip_prefix(UNSAFE_MARKER) {
        return Answer::Unsafe(path.trim().to_string());
    }
    match line.strip_prefix(MISSING_MARKER) {
        Some(rest) => {
            let mut words = rest.split_whitespace();
            let arch = words.next().unwrap_or("").to_string();
            Answer::Missing { arch, gzip: words.next() == Some("gz") }
        }
        None => Answer::Started,
    }
}

impl Connection {
    /// Starts `director relay` on the gateway, installing this binary first when it lacks
    /// it, with the ssh-agent at `agent` forwarded; `uploaded` hears the bytes sent.
    pub(crate) async fn start_relay(
        &self,
        relay: &str,
        agent: &Path,
        uploaded: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Link, String> {
        let Connection::Ssh(ssh) = self else { return Err(format!("relay {relay} is not reached over SSH")) };
        let own = own_binary()?;
        let mut link = ssh.exec_forwarding_agent(probe_command(&own.sha3), agent).await?;
        let mut stderr = Vec::new();
        let mut sent = false;
        loop {
            match read_answer(&link.pending) {
                Answer::Started => {
                    link.settled();
                    return Ok(link);
                }
                Answer::Unsafe(path) => {
                    return Err(format!(
                        "director on relay {relay} is not safe to run: {path} can be changed by another user; fix its owner and mode (chmod 700)"
                    ))
                }
                Answer::Missing { .. } if sent => return Err(format!("director was installed on relay {relay} but does not start")),
                Answer::Missing { arch, gzip } => {
                    let here = std::env::consts::ARCH;
                    let same = arch == here || (here == "aarch64" && arch == "arm64") || (here == "x86_64" && arch == "amd64");
                    if !same {
                        return Err(format!(
                            "relay {relay} is {arch} and this director is built for {here}: run the run from a director built for {arch}, or make a {here} machine the site's relay"
                        ));
                    }
                    let end = link.pending.iter().position(|&b| b == b'\n').map_or(0, |at| at + 1);
                    link.pending.drain(..end);
                    let bytes = std::fs::read(SELF).map_err(|e| format!("cannot read this director's binary: {e}"))?;
                    let body = if gzip { gzip_fast(&bytes)? } else { bytes };
                    let header = format!("{} {}\n", body.len(), if gzip { "gz" } else { "raw" });
                    let send = async {
                        link.writer.write_all(header.as_bytes()).await?;
                        link.writer.write_all(&body).await?;
                        link.writer.flush().await
                    };
                    send.await.map_err(|e| format!("uploading director to relay {relay} failed: {e}"))?;
                    uploaded(body.len() as u64);
                    sent = true;
                }
                Answer::NeedMore => match link.incoming.recv().await.unwrap_or(Incoming::Closed(None)) {
                    Incoming::Data(d) => link.pending.extend_from_slice(&d),
                    Incoming::Stderr(e) => stderr.extend_from_slice(&e),
                    Incoming::Closed(status) => {
                        link.settled();
                        let said = String::from_utf8_lossy(&stderr).trim().to_string();
                        return Err(format!(
                            "director on relay {relay} ended before it started (exit {}){}",
                            status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                            if said.is_empty() { String::new() } else { format!(": {said}") }
                        ));
                    }
                },
            }
        }
    }
}

/// `bytes` gzip-compressed, fast: the binary crosses the network once per gateway and version.
fn gzip_fast(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    out.write_all(bytes).and_then(|()| out.finish()).map_err(|e| format!("cannot compress director: {e}"))
}
