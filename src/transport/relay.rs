//! Starting `director relay` on a site's gateway: this director's own binary, installed
//! content-addressed beside the executor (`…/director/bin/director-<sha3>`) and started on one
//! exec channel with the operator's ssh-agent forwarded to it.
//!
//! As with the executor, one exec session does it all: the probe starts the binary if it is
//! there; if not, it prints a marker line naming the gateway's architecture (and whether it has
//! gzip), reads the binary from its stdin, and starts the temp file as `relay --install`,
//! which checks its own hash, renames itself into place and serves, in the same process.
//! A gateway of this machine's architecture gets this very binary; one of another
//! architecture gets the build shipped beside it, `director-<arch>` in the same directory
//! (`director-aarch64` beside `/usr/local/bin/director`), and none is refused with the path
//! it would have been read from. The binary must be one the gateway can run: a static musl
//! build runs on any Linux.

use super::{Connection, Incoming, Link};
use sha3::{Digest, Sha3_256};
use std::path::Path;
use std::sync::OnceLock;
use tokio::io::AsyncWriteExt;

/// First line printed by the probe when the gateway lacks this director.
pub(crate) const MISSING_MARKER: &str = "director-relay-missing";
/// First line printed by the probe when another user could replace the binary.
pub(crate) const UNSAFE_MARKER: &str = "director-relay-unsafe";

/// A build of director a gateway can be given: for the architecture `uname -m` names, the
/// file, and its sha3-256.
#[derive(Clone)]
pub(crate) struct Build {
    pub arch: &'static str,
    pub path: std::path::PathBuf,
    pub sha3: String,
}

/// The running binary, as the kernel has it (even if its file was replaced since).
const SELF: &str = "/proc/self/exe";

/// The architectures a relay can be.
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// The builds this director can give its relays: itself, and `director-<arch>` beside it for
/// each other architecture that has one. Each hash is kept in the cache directory
/// (`self.sha3`, keyed by the file's device, inode, size and modification time), so a run
/// through relays does not read tens of megabytes first.
pub(crate) fn builds() -> Result<&'static [Build], String> {
    static BUILDS: OnceLock<Result<Vec<Build>, String>> = OnceLock::new();
    BUILDS
        .get_or_init(|| {
            let kept = crate::paths::cache_dir().join("self.sha3");
            let mut known: Vec<String> =
                std::fs::read_to_string(&kept).unwrap_or_default().lines().map(str::to_string).collect();
            let mut found = Vec::new();
            let here = std::env::consts::ARCH;
            let arch = ARCHES.into_iter().find(|a| *a == here).unwrap_or("x86_64");
            let sha3 = cached_sha3(Path::new(SELF), &mut known)
                .map_err(|e| format!("cannot read this director's binary: {e}"))?;
            found.push(Build { arch, path: SELF.into(), sha3 });
            if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
                for other in ARCHES.into_iter().filter(|a| *a != arch) {
                    let path = dir.join(format!("director-{other}"));
                    if let Ok(sha3) = cached_sha3(&path, &mut known) {
                        found.push(Build { arch: other, path, sha3 });
                    }
                }
            }
            if crate::private::create_dir_all(kept.parent().unwrap_or(Path::new("."))).is_ok() {
                let _ = crate::private::write_file(&kept, format!("{}\n", known.join("\n")).as_bytes());
            }
            Ok(found)
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// Where a gateway of `arch` would find its build beside this one.
fn beside(arch: &str) -> String {
    match std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
        Some(dir) => dir.join(format!("director-{arch}")).display().to_string(),
        None => format!("director-{arch}"),
    }
}

/// The sha3-256 of `path`, from `known` (lines `KEY SHA3`) when its key matches, else hashed
/// and added there.
fn cached_sha3(path: &Path, known: &mut Vec<String>) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    let key = format!("{}:{}:{}:{}.{}", meta.dev(), meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
    let found = known.iter().find_map(|line| {
        let (k, sha3) = line.trim().split_once(' ')?;
        (k == key && sha3.len() == 64).then(|| sha3.to_string())
    });
    if let Some(sha3) = found {
        return Ok(sha3);
    }
    let sha3 = hash_file(path)?;
    known.push(format!("{key} {sha3}"));
    Ok(sha3)
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

/// The probe: picks the build for the gateway's `uname -m`, starts `director-<sha3> relay` if
/// present and safe; otherwise prints `MISSING_MARKER <uname -m> <gz|->`, installs what
/// follows on stdin and starts it.
pub(crate) fn probe_command(builds: &[Build]) -> String {
    let cases: String = builds
        .iter()
        .map(|b| {
            let names = match b.arch {
                "aarch64" => "aarch64|arm64",
                _ => "x86_64|amd64",
            };
            format!("{names}) h={};; ", b.sha3)
        })
        .collect();
    format!(
        r#"d="${{XDG_CACHE_HOME:-$HOME/.cache}}/director/bin"; m="$(uname -m)"; h=; case "$m" in {cases}esac; p="$d/director-$h"; if [ -n "$h" ] && [ -x "$p" ]; then for f in "$d/.." "$d" "$p"; do [ -O "$f" ] || {{ echo "{UNSAFE_MARKER} $f"; exit 0; }}; done; exec "$p" relay; fi; z=-; command -v gzip >/dev/null 2>&1 && z=gz; echo "{MISSING_MARKER} $m $z"; [ -n "$h" ] || exit 0; umask 077; mkdir -p "$d" || exit 1; read -r n f || exit 0; t="$d/.director-$h.$$.tmp"; trap 'rm -f "$t"' EXIT; if [ "$f" = gz ]; then head -c "$n" | gzip -dc > "$t"; else head -c "$n" > "$t"; fi || exit 1; chmod 700 "$t"; trap - EXIT; exec "$t" relay --install "$h" "$p""#
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
        agent: &Path,
        uploaded: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Link, String> {
        let Connection::Ssh(ssh) = self else { return Err("it is not reached over SSH".to_string()) };
        // Hashing and compressing tens of megabytes is not done on the runtime's threads: the
        // other nodes' logins go on meanwhile.
        let builds = tokio::task::spawn_blocking(builds).await.map_err(|e| e.to_string())??;
        let mut link = ssh.exec_forwarding_agent(probe_command(builds), agent).await?;
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
                        "director there is not safe to run: {path} can be changed by another user; fix its owner and mode (chmod 700)"
                    ))
                }
                Answer::Missing { .. } if sent => return Err("director was installed there but does not start".to_string()),
                Answer::Missing { arch, gzip } => {
                    let named = match arch.as_str() {
                        "arm64" => "aarch64",
                        "amd64" => "x86_64",
                        other => other,
                    };
                    let Some(build) = builds.iter().find(|b| b.arch == named) else {
                        return Err(format!(
                            "the gateway is {arch}, and this director (built for {}) has no build for it beside it: put a static director built for {named} at {}",
                            std::env::consts::ARCH,
                            beside(named)
                        ));
                    };
                    let end = link.pending.iter().position(|&b| b == b'\n').map_or(0, |at| at + 1);
                    link.pending.drain(..end);
                    let path = build.path.clone();
                    let body = tokio::task::spawn_blocking(move || {
                        let bytes =
                            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                        if gzip { gzip_fast(&bytes) } else { Ok(bytes) }
                    })
                    .await
                    .map_err(|e| e.to_string())??;
                    let header = format!("{} {}\n", body.len(), if gzip { "gz" } else { "raw" });
                    let send = async {
                        link.writer.write_all(header.as_bytes()).await?;
                        link.writer.write_all(&body).await?;
                        link.writer.flush().await
                    };
                    send.await.map_err(|e| format!("uploading director failed: {e}"))?;
                    uploaded(body.len() as u64);
                    sent = true;
                }
                Answer::NeedMore => match link.incoming.recv().await {
                    Incoming::Data(d) => link.pending.extend_from_slice(&d),
                    Incoming::Stderr(e) => stderr.extend_from_slice(&e),
                    Incoming::Closed(status) => {
                        link.settled();
                        let said = String::from_utf8_lossy(&stderr).trim().to_string();
                        return Err(format!(
                            "director ended there before it started (exit {}){}",
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
