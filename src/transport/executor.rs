//! The executor binary embedded in the operator, and the shell that installs and starts it.
//!
//! The executor lives at a content-addressed path in the remote user's cache directory,
//! `${XDG_CACHE_HOME:-$HOME/.cache}/director/bin/director-exec-<sha3>`, so a node either has
//! exactly this build or does not have it, and two director versions never step on each other.
//! One exec session does it all: the probe starts the executor if it is there; if it is not,
//! it prints a marker line naming the node's architecture (and whether it has gzip), reads
//! the executor from its stdin (compressed when it can decompress), writes a temp file and
//! starts it as `install`: the uploaded binary renames itself into place and serves, in the
//! same session and process. What it renames is verified: compressed, by gzip, which refuses
//! a stream whose output does not match the CRC-32 and length the operator packed with it
//! (the bytes came through SSH's MAC; what could still go wrong is a cut or a full disk);
//! sent as it is, by the executor hashing itself against its sha3 before it renames. Concurrent
//! first contacts from two runs each rename a whole, verified file and never expose a partial
//! one.

/// One embedded executor: a static Linux binary for one architecture.
#[derive(Debug)]
pub struct Executor {
    /// The architecture as `uname -m` names it.
    pub arch: &'static str,
    /// The Rust target it was built for.
    pub target: &'static str,
    pub binary: &'static [u8],
    /// `binary`, gzip-compressed: what a node with gzip receives.
    pub gz: &'static [u8],
    /// sha3-256 of `binary`, hex: part of its file name on the node.
    pub sha3: &'static str,
}

// The executors build.rs made (`EXECUTORS`): x86_64 always, aarch64 when its target exists.
include!(concat!(env!("OUT_DIR"), "/executors.rs"));

/// The executor for a node whose `uname -m` is `arch` (`arm64` is `aarch64`, `amd64` is
/// `x86_64`).
pub fn for_arch(arch: &str) -> Option<&'static Executor> {
    let arch = match arch {
        "arm64" | "armv8" | "aarch64_be" => "aarch64",
        "amd64" => "x86_64",
        other => other,
    };
    EXECUTORS.iter().find(|e| e.arch == arch)
}

/// The executor for this machine (the local transport).
pub fn native() -> Result<&'static Executor, String> {
    for_arch(std::env::consts::ARCH).ok_or_else(|| unsupported(std::env::consts::ARCH))
}

/// The error for an architecture no executor is embedded for.
pub fn unsupported(arch: &str) -> String {
    let have: Vec<&str> = EXECUTORS.iter().map(|e| e.arch).collect();
    format!("this director carries executors for {} only, and the node is {arch}", have.join(" and "))
}

/// Whether `sha3` names an executor this director carries.
pub fn is_current(sha3: &str) -> bool {
    EXECUTORS.iter().any(|e| e.sha3 == sha3)
}

/// First line printed by the probe when the node lacks this executor.
pub const MISSING_MARKER: &str = "director-exec-missing";
/// First line printed by the probe (or the executor) when another user could replace the
/// executor.
pub const UNSAFE_MARKER: &str = "director-exec-unsafe";

fn dir_expr() -> &'static str {
    r#"d="${XDG_CACHE_HOME:-$HOME/.cache}/director/bin""#
}

/// Starts the executor for the node's architecture if present; otherwise prints
/// `MISSING_MARKER <uname -m> <gz|->` and installs what follows on its stdin
/// ([`upload_header`] and the bytes), then starts it. It runs on every start, so in the
/// usual case it forks nothing: when exactly one of the executors this director carries is there, that one
/// starts without asking `uname -m` (`by_arch` asks it always: after that one could not run,
/// in a home shared by nodes of two architectures). An executor whose file, directory or the
/// one above is not owned by this user is not started: the probe prints `UNSAFE_MARKER
/// <path>` instead (the shell's `-O`); the executor itself refuses to serve from a path
/// anyone may write to (see director-exec's `unsafe_path`), with the same marker.
pub fn probe_command(by_arch: bool) -> String {
    let cases: String = EXECUTORS
        .iter()
        .map(|e| {
            let names = if e.arch == "aarch64" { "aarch64|arm64".to_string() } else { e.arch.to_string() };
            format!("{names}) h={};; ", e.sha3)
        })
        .collect();
    let shas: Vec<&str> = EXECUTORS.iter().map(|e| e.sha3).collect();
    let present = if by_arch {
        String::new()
    } else {
        format!(r#"for h in {}; do [ -x "$d/director-exec-$h" ] && n="$n $h"; done; "#, shas.join(" "))
    };
    format!(
        r#"{dir}; n=; m=; {present}case "$n" in " "*" "*|"") m="$(uname -m)"; h=; case "$m" in {cases}esac;; *) h="${{n# }}";; esac; p="$d/director-exec-$h"; if [ -n "$h" ] && [ -x "$p" ]; then for f in "$d/.." "$d" "$p"; do [ -O "$f" ] || {{ echo "{UNSAFE_MARKER} $f"; exit 0; }}; done; exec "$p" serve; fi; [ -n "$m" ] || m="$(uname -m)"; z=-; command -v gzip >/dev/null 2>&1 && z=gz; echo "{MISSING_MARKER} $m $z"; umask 077; mkdir -p "$d" || exit 1; read -r n h f || exit 0; t="$d/.director-exec-$h.$$.tmp"; trap 'rm -f "$t"' EXIT; if [ "$f" = gz ]; then head -c "$n" | gzip -dc > "$t"; else head -c "$n" > "$t"; fi || exit 1; chmod 700 "$t"; trap - EXIT; exec "$t" install "$h" "$d/director-exec-$h" "$f""#,
        dir = dir_expr(),
    )
}

/// The line that precedes an upload to the probe: size, hash and format of what follows
/// (`gz` when `gzip`, the node has gzip).
pub fn upload_header(executor: &Executor, gzip: bool) -> (String, &'static [u8]) {
    let (body, format) = if gzip { (executor.gz, "gz") } else { (executor.binary, "raw") };
    (format!("{} {} {format}\n", body.len(), executor.sha3), body)
}

/// Reads `executor` from stdin into a temp file, verifies it, renames it into place.
pub fn install_command(executor: &Executor) -> String {
    let file = format!("director-exec-{}", executor.sha3);
    format!(
        r#"set -e; umask 077; {dir}; mkdir -p "$d"; t="$d/.{file}.$$.tmp"; trap 'rm -f "$t"' EXIT; cat > "$t"; chmod 700 "$t"; "$t" verify {sha3}; mv -f "$t" "$d/{file}"; trap - EXIT"#,
        dir = dir_expr(),
        sha3 = executor.sha3
    )
}

/// What the first bytes from the probe say.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// Not all there yet.
    NeedMore,
    /// The executor is missing; the node's `uname -m`, and whether it has gzip. The probe
    /// now waits for the upload on its stdin.
    Missing { arch: String, gzip: bool },
    /// Another user could have replaced the executor: this path is not safe.
    Unsafe { path: String },
    /// The executor started: these bytes are protocol frames.
    Started,
}

/// Tells the marker line from a protocol frame. A frame starts with a big-endian length
/// whose first byte is 0 (frames are far below 16 MiB), never with the marker's `d`.
pub fn read_probe(bytes: &[u8]) -> ProbeAnswer {
    if bytes.is_empty() {
        return ProbeAnswer::NeedMore;
    }
    if bytes[0] != MISSING_MARKER.as_bytes()[0] {
        return ProbeAnswer::Started;
    }
    match bytes.iter().position(|&b| b == b'\n') {
        None => ProbeAnswer::NeedMore,
        Some(end) => {
            let line = String::from_utf8_lossy(&bytes[..end]);
            match line.strip_prefix(UNSAFE_MARKER) {
                Some(path) => ProbeAnswer::Unsafe { path: path.trim().to_string() },
                None => {
                    let mut words = line.strip_prefix(MISSING_MARKER).unwrap_or("").split_whitespace();
                    let arch = words.next().unwrap_or("").to_string();
                    ProbeAnswer::Missing { arch, gzip: words.next() == Some("gz") }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_executors_are_small_hashed_and_chosen_by_arch() {
        use sha3::{Digest, Sha3_256};
        for e in EXECUTORS {
            let hex: String = Sha3_256::digest(e.binary).iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, e.sha3, "{}", e.arch);
            // What a node with gzip receives is the same binary, and much smaller.
            let mut unpacked = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(e.gz), &mut unpacked).unwrap();
            assert!(unpacked == e.binary && e.gz.len() * 10 < e.binary.len() * 6, "{}: {}", e.arch, e.gz.len());
            // No larger than x86_64's at 711fc31, before it grew by a quarter (issue 20): what
            // every first contact sends, decompresses and hashes. Built with its own standard
            // library and no unwind tables (build.rs; setup installs rust-src), it is 490 KB.
            assert!(e.binary.len() <= 635_616, "the {} executor is {} bytes", e.arch, e.binary.len());
        }
        assert_eq!(for_arch("x86_64").unwrap().arch, "x86_64");
        assert_eq!(for_arch("amd64").unwrap().arch, "x86_64");
        // Setup installs the aarch64 target: both are carried.
        assert_eq!(for_arch("arm64").map(|e| e.target), Some("aarch64-unknown-linux-musl"));
        assert!(for_arch("riscv64").is_none());
        assert_eq!(
            unsupported("riscv64"),
            "this director carries executors for x86_64 and aarch64 only, and the node is riscv64"
        );
    }

    #[test]
    fn probe_answers() {
        assert_eq!(read_probe(b""), ProbeAnswer::NeedMore);
        assert_eq!(read_probe(b"director-exec-mis"), ProbeAnswer::NeedMore);
        assert_eq!(
            read_probe(b"director-exec-missing aarch64 gz\n"),
            ProbeAnswer::Missing { arch: "aarch64".into(), gzip: true }
        );
        assert_eq!(
            read_probe(b"director-exec-missing x86_64 -\n"),
            ProbeAnswer::Missing { arch: "x86_64".into(), gzip: false }
        );
        assert_eq!(read_probe(&[0, 0, 0, 40, b'{']), ProbeAnswer::Started);
        assert_eq!(
            read_probe(b"director-exec-unsafe /tmp/c/director/bin\n"),
            ProbeAnswer::Unsafe { path: "/tmp/c/director/bin".into() }
        );
    }
}
