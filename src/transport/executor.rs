//! The executor binary embedded in the operator, and the shell that installs and starts it.
//!
//! The executor lives at a content-addressed path in the remote user's cache directory,
//! `${XDG_CACHE_HOME:-$HOME/.cache}/director/bin/director-exec-<sha3>`, so a node either has
//! exactly this build or does not have it, and two director versions never step on each other.
//! One round trip tells which: the probe starts the executor if it is there, or prints a
//! marker line if it is not. The install writes a temp file, has the uploaded binary verify
//! its own hash, and renames it into place, so concurrent first contacts from two runs each
//! rename a whole, verified file and never expose a partial one.

/// The executor, built by build.rs for a static Linux target.
pub static BINARY: &[u8] = include_bytes!(env!("DIRECTOR_EXEC_PATH"));
/// sha3-256 of [`BINARY`], hex.
pub const SHA3: &str = env!("DIRECTOR_EXEC_SHA3");
/// The architecture the embedded executor runs on (`uname -m`).
pub const ARCH: &str = "x86_64";

/// First line printed by the probe when the node lacks this executor.
pub const MISSING_MARKER: &str = "director-exec-missing";
/// First line printed by the probe when another user could replace the executor.
pub const UNSAFE_MARKER: &str = "director-exec-unsafe";

fn dir_expr() -> &'static str {
    r#"d="${XDG_CACHE_HOME:-$HOME/.cache}/director/bin""#
}

fn file_name() -> String {
    format!("director-exec-{SHA3}")
}

/// Starts the executor if present; otherwise prints `MISSING_MARKER <uname -m>`. An
/// executor that another user could have replaced (its file, its directory or the one
/// above not owned by this user, or writable by everyone) is not started: the probe prints
/// `UNSAFE_MARKER <path>` instead.
pub fn probe_command() -> String {
    format!(
        r#"{dir}; p="$d/{file}"; if [ -x "$p" ]; then u="$(find "$d/.." "$d" "$p" -prune \( -perm -0002 -o ! -user "$(id -u)" \) -print 2>/dev/null | head -n 1)"; if [ -n "$u" ]; then echo "{UNSAFE_MARKER} $u"; exit 0; fi; exec "$p" serve; fi; echo "{MISSING_MARKER} $(uname -m)""#,
        dir = dir_expr(),
        file = file_name()
    )
}

/// Reads the executor from stdin into a temp file, verifies it, renames it into place.
pub fn install_command() -> String {
    format!(
        r#"set -e; umask 077; {dir}; mkdir -p "$d"; t="$d/.{file}.$$.tmp"; trap 'rm -f "$t"' EXIT; cat > "$t"; chmod 700 "$t"; "$t" verify {SHA3}; mv -f "$t" "$d/{file}"; trap - EXIT"#,
        dir = dir_expr(),
        file = file_name()
    )
}

/// What the first bytes from the probe say.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// Not all there yet.
    NeedMore,
    /// The executor is missing; the node's `uname -m`.
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
                    ProbeAnswer::Missing { arch: line.strip_prefix(MISSING_MARKER).unwrap_or("").trim().to_string() }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_executor_is_small_and_hashed() {
        use sha3::{Digest, Sha3_256};
        let hex: String = Sha3_256::digest(BINARY).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, SHA3);
        assert!(BINARY.len() <= 1024 * 1024, "executor is {} bytes", BINARY.len());
    }

    #[test]
    fn probe_answers() {
        assert_eq!(read_probe(b""), ProbeAnswer::NeedMore);
        assert_eq!(read_probe(b"director-exec-mis"), ProbeAnswer::NeedMore);
        assert_eq!(read_probe(b"director-exec-missing aarch64\n"), ProbeAnswer::Missing { arch: "aarch64".into() });
        assert_eq!(read_probe(&[0, 0, 0, 40, b'{']), ProbeAnswer::Started);
        assert_eq!(
            read_probe(b"director-exec-unsafe /tmp/c/director/bin\n"),
            ProbeAnswer::Unsafe { path: "/tmp/c/director/bin".into() }
        );
    }
}
