//! The executor binary embedded in the operator, and the shell that installs and starts it.
//!
//! The executor lives at a content-addressed path in the remote user's cache directory,
//! `${XDG_CACHE_HOME:-$HOME/.cache}/director/bin/director-exec-<sha3>`, so a node either has
//! exactly this build or does not have it, and two director versions never step on each other.
//! One exec session does it all: the probe starts the executor if it is there; if it is not,
//! it prints a marker line naming the node's architecture, writes the stage that follows on
//! its stdin to a temp file and starts it (crates/director-stage, a few KB sent as it is);
//! the stage reads the executor after it on the same stdin, LZ4-compressed, decodes it in its
//! own process, checks its length and XXH3-64, writes and renames it into place and becomes
//! it: one session and, after the shell's `head` and `chmod` (and `uname` where the shell does
//! not name its machine, as bash does: dash, say), one process. Where the executors'
//! directory is missing (a first contact), the stage is written to the home directory and
//! makes the directory itself, once the upload verified.
//! Nothing is needed on the node but a POSIX shell and those three (`mkdir` too when the
//! home directory cannot be written); no decompressor is started. Concurrent first contacts
//! from two runs each rename a whole, verified file and never expose a partial one.

/// One embedded executor: a static Linux binary for one architecture.
#[derive(Debug)]
pub struct Executor {
    /// The architecture as `uname -m` names it.
    pub arch: &'static str,
    /// The Rust target it was built for.
    pub target: &'static str,
    pub binary: &'static [u8],
    /// The stage that installs `binary` on a node (crates/director-stage), sent as it is.
    pub stage: &'static [u8],
    /// What the stage reads after itself: `binary`'s compressed and whole lengths (u32 LE),
    /// its XXH3-64 (u64 LE), and `binary` LZ4-compressed.
    pub packed: &'static [u8],
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
/// `MISSING_MARKER <uname -m>`, then reads the line [`upload_header`] sends, the stage after
/// it (written to a temp file, in the executors' directory if it is there, else in the home
/// directory when the executors' directory is under it (no `XDG_CACHE_HOME`: a home mounted
/// `noexec` could not run the executor either), else in the directory made by `mkdir`; made
/// executable and started), and the stage reads the rest. It runs on every start, so in the
/// usual case it forks nothing: when exactly one of the executors this director carries is
/// there, that one starts without asking the architecture, and otherwise bash's `$HOSTTYPE`
/// answers when it names one carried (`by_arch` asks `uname -m` always: after the executor
/// chosen could not run, in a home shared by nodes of two architectures). That usual case is
/// the script's first line, and a shell reads a line only once it ran the one before: the
/// rest is not even parsed when the executor starts. An executor whose file, directory or
/// the one above is not owned by this user is not started: the probe prints
/// `UNSAFE_MARKER <path>` instead (the shell's `-O`); the executor itself refuses to serve
/// from a path anyone may write to (see director-exec's `unsafe_path`), with the same marker.
/// `head -c` reads no further than it is asked, so what follows the stage is left on stdin
/// for the stage, and what follows the executor for it.
pub fn probe_command(by_arch: bool) -> String {
    // What `uname -m` (or bash's HOSTTYPE) says on a node each executor serves.
    let names = |e: &Executor| if e.arch == "aarch64" { "aarch64|arm64" } else { e.arch };
    let cases: String = EXECUTORS.iter().map(|e| format!("{}) h={};; ", names(e), e.sha3)).collect();
    let shas: Vec<&str> = EXECUTORS.iter().map(|e| e.sha3).collect();
    let owned =
        format!(r#"for f in "$d/.." "$d" "$p"; do [ -O "$f" ] || {{ echo "{UNSAFE_MARKER} $f"; exit 0; }}; done"#);
    // The first line: exactly one of the executors carried is there, and starts.
    let one = if by_arch {
        String::new()
    } else {
        format!(
            r#"n=; for h in {}; do [ -x "$d/director-exec-$h" ] && n="$n $h"; done; case "$n" in " "*" "*|"") ;; *) p="$d/director-exec-${{n# }}"; {owned}; exec "$p" serve;; esac"#,
            shas.join(" ")
        )
    };
    // bash names the machine it was built for: when that is an architecture carried, no
    // `uname` is started (a 32-bit bash on a 64-bit kernel names another, and asks `uname`).
    let carried: Vec<&str> = EXECUTORS.iter().map(names).collect();
    let arch = if by_arch {
        r#"m="$(uname -m)""#.to_string()
    } else {
        format!(r#"m="$HOSTTYPE"; case "$m" in {}) ;; *) m="$(uname -m)";; esac"#, carried.join("|"))
    };
    format!(
        r#"{dir}; {one}
{arch}; h=; case "$m" in {cases}esac; p="$d/director-exec-$h"; if [ -n "$h" ] && [ -x "$p" ]; then {owned}; exec "$p" serve; fi; echo "{MISSING_MARKER} $m"; umask 077; read -r s h || exit 0; t="$d/.director-stage.$$.tmp"; [ -d "$d" ] || {{ [ -z "$XDG_CACHE_HOME" ] && [ -w "$HOME" ] && t="$HOME/.director-stage.$$.tmp"; }} || mkdir -p "$d" || exit 1; trap 'rm -f "$t"' EXIT; head -c "$s" > "$t" || exit 1; chmod 700 "$t"; exec "$t" "$d/.director-exec-$h.$$.tmp" "$d/director-exec-$h""#,
        dir = dir_expr(),
    )
}

/// The line that precedes an upload to the probe (the stage's size and the executor's sha3),
/// and what follows it: the stage, then what it reads.
pub fn upload_header(executor: &Executor) -> (String, [&'static [u8]; 2]) {
    (format!("{} {}\n", executor.stage.len(), executor.sha3), [executor.stage, executor.packed])
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
    /// The executor is missing; the node's `uname -m`. The probe now waits for the upload on
    /// its stdin.
    Missing { arch: String },
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
                    let arch = line.strip_prefix(MISSING_MARKER).unwrap_or("").trim().to_string();
                    ProbeAnswer::Missing { arch }
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
            // What a node receives: the stage, small, sent as it is, then the binary's lengths
            // and checksum and the binary compressed (that it decodes to the binary is what
            // the e2e tests of the probe check, on the stage itself).
            let word = |at: usize| u32::from_le_bytes(e.packed[at..at + 4].try_into().unwrap()) as usize;
            assert_eq!((word(0) + 16, word(4)), (e.packed.len(), e.binary.len()), "{}", e.arch);
            assert!(e.packed.len() * 10 < e.binary.len() * 7, "{}: {} packed", e.arch, e.packed.len());
            assert!(e.stage.len() <= 32 * 1024, "{}: a stage of {} bytes", e.arch, e.stage.len());
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
        assert_eq!(read_probe(b"director-exec-missing aarch64\n"), ProbeAnswer::Missing { arch: "aarch64".into() });
        assert_eq!(read_probe(b"director-exec-missing x86_64\n"), ProbeAnswer::Missing { arch: "x86_64".into() });
        assert_eq!(read_probe(&[0, 0, 0, 40, b'{']), ProbeAnswer::Started);
        assert_eq!(
            read_probe(b"director-exec-unsafe /tmp/c/director/bin\n"),
            ProbeAnswer::Unsafe { path: "/tmp/c/director/bin".into() }
        );
    }
}
