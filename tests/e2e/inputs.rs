//! The bad-input suite: every file in `tests/inputs/*.case` is a malformed or hostile input
//! with the exact message director must give. Each case runs the real binary against a
//! catalog whose node is a real sshd (the tripwire): the case passes only if director exits
//! 2 with exactly that stderr, prints nothing on stdout, does not panic, stays within a time
//! and a memory bound, and the tripwire's sshd logged no connection.
//!
//! A case file is a line `args: ...` (the command line, split on spaces), then sections
//! `--- NAME` with a file's text, and a last section `--- stderr` with the expected message.
//! `@DIR@`, `@HOST@`, `@PORT@`, `@USER@` and `@KEY@` in files, arguments and the message are
//! replaced by the case's directory and the tripwire's address, user and key; the file
//! `tripwire.yaml` (a catalog of the tripwire node) is always there. A section header
//! `--- NAME !make KIND` makes the file instead: `scalar-50mb`, `nested-flow`, `nested-block`,
//! `alias-bomb`, `binary`, `not-utf8`, `too-large`, `directory`, `fifo`, `dev-zero`.
//!
//! `DIRECTOR_BLESS=1 cargo test --test e2e inputs` writes the messages director gives into
//! the case files instead of comparing: review them with `git diff` before committing.

use super::harness::{self, Fleet};
use super::SpawnPiped;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A case must end within this (the slowest legitimate case parses a 16 MiB file).
const TIME_BOUND: Duration = Duration::from_secs(20);
/// Address space a case may use (`prlimit --as`): far less than a 50 MB file read whole
/// several times over would need.
const MEMORY_BOUND: &str = "1500000000";

struct Case {
    name: String,
    args: Vec<String>,
    files: Vec<(String, Option<String>, String)>,
    expected: String,
}

fn parse(name: &str, text: &str) -> Case {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    let args = first.strip_prefix("args:").unwrap_or_else(|| panic!("{name}: first line must be `args: ...`"));
    let mut files: Vec<(String, Option<String>, String)> = Vec::new();
    for line in lines {
        match line.strip_prefix("--- ") {
            Some(header) => {
                let header = header.trim_end();
                let (file, make) = match header.split_once(" !make ") {
                    Some((f, k)) => (f.to_string(), Some(k.to_string())),
                    None => (header.to_string(), None),
                };
                files.push((file, make, String::new()));
            }
            None => files.last_mut().unwrap_or_else(|| panic!("{name}: text before any `--- NAME`")).2.push_str(line),
        }
    }
    let (last, _, expected) = files.pop().unwrap_or_else(|| panic!("{name}: no `--- stderr` section"));
    assert_eq!(last, "stderr", "{name}: the last section must be `--- stderr`");
    Case { name: name.to_string(), args: args.split_whitespace().map(str::to_string).collect(), files, expected }
}

fn make(kind: &str, path: &Path) {
    let write = |bytes: Vec<u8>| std::fs::write(path, bytes).unwrap();
    match kind {
        "scalar-50mb" => write(format!("- jobs:\n    - RUN: echo {}\n", "x".repeat(50_000_000)).into_bytes()),
        "too-large" => write(format!("# {}\n- jobs: [{{RUN: true}}]\n", "x".repeat(17 << 20)).into_bytes()),
        "nested-flow" => write(format!("- jobs: [{{RUN: {}}}]\n", "[".repeat(10_000)).into_bytes()),
        "nested-block" => {
            let mut text = String::from("- jobs:\n    - RUN: true\n      vars:\n");
            for depth in 0..1_000 {
                text.push_str(&format!("{}k{depth}:\n", " ".repeat(8 + depth)));
            }
            write(text.into_bytes());
        }
        "alias-bomb" => {
            let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
            for (name, prev) in
                [("b", "a"), ("c", "b"), ("d", "c"), ("e", "d"), ("f", "e"), ("g", "f"), ("h", "g"), ("i", "h")]
            {
                text.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 10].join(",")));
            }
            text.push_str("nodes: [{name: web1}]\n");
            write(text.into_bytes());
        }
        "binary" => write((0..=255u8).cycle().take(4096).collect()),
        "not-utf8" => write(b"- jobs:\n    - RUN: echo caf\xe9\n".to_vec()),
        "directory" => std::fs::create_dir_all(path).unwrap(),
        "fifo" => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo on a path we own.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        "dev-zero" => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
        other => panic!("unknown !make kind {other}"),
    }
}

fn cases() -> Vec<(PathBuf, Case)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inputs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            (p, parse(&name, &text))
        })
        .collect()
}

#[test]
fn every_bad_input_is_exit_2_with_its_message_and_contacts_nothing() {
    let fleet = Fleet::start(1);
    let host = &fleet.hosts[0];
    // The harness's own probe that sshd listens is a connection too: let it be logged.
    std::thread::sleep(Duration::from_millis(500));
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let bless = std::env::var_os("DIRECTOR_BLESS").is_some();
    let all = cases();
    assert!(all.len() >= 60, "only {} cases", all.len());
    let mut failures = Vec::new();
    for (path, case) in &all {
        let dir = fleet.path().join("inputs").join(&case.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fill = |text: &str| {
            text.replace("@DIR@", &dir.display().to_string())
                .replace("@HOST@", &host.addr)
                .replace("@PORT@", &host.port.to_string())
                .replace("@USER@", &user)
                .replace("@KEY@", &fleet.key.display().to_string())
        };
        std::fs::write(
            dir.join("tripwire.yaml"),
            fill("defaults: {user: @USER@, identity_file: @KEY@}\nnodes:\n  - {name: web1, host: @HOST@, port: @PORT@}\n"),
        )
        .unwrap();
        for (file, kind, text) in &case.files {
            let target = dir.join(file);
            match kind {
                Some(kind) => make(kind, &target),
                None => std::fs::write(&target, fill(text)).unwrap(),
            }
        }
        let before = host.connections();
        let started = Instant::now();
        let mut child = Command::new("prlimit")
            .arg(format!("--as={MEMORY_BOUND}"))
            .arg(env!("CARGO_BIN_EXE_director"))
            .args(case.args.iter().map(|a| fill(a)))
            .current_dir(&dir)
            .env("HOME", &dir)
            .env("DIRECTOR_KNOWN_HOSTS", dir.join("known_hosts"))
            .env("DIRECTOR_HISTORY", dir.join("history.db"))
            .env_remove("DIRECTOR_CATALOG")
            .env_remove("DIRECTOR_CONFIG")
            .env_remove("SSH_AUTH_SOCK")
            .env("DIRECTOR_SSH_CONFIG", "none")
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .spawn_piped();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > TIME_BOUND {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let expected = fill(&case.expected);
        let mut wrong = Vec::new();
        match status.and_then(|s| s.code()) {
            None => wrong.push(format!("did not end within {TIME_BOUND:?} (or was killed)")),
            Some(2) => {}
            Some(code) => wrong.push(format!("exit {code}, not 2")),
        }
        if !out.stdout.is_empty() {
            wrong.push(format!("stdout: {:?}", String::from_utf8_lossy(&out.stdout)));
        }
        if host.connections() != before {
            wrong.push("the tripwire node was contacted".to_string());
        }
        // Bad input leaves nothing behind where it ran (a history, a directory named after a
        // URL's scheme).
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name != "tripwire.yaml")
            .filter(|name| !case.files.iter().any(|(file, _, _)| file.split('/').next() == Some(name.as_str())))
            .collect();
        left.sort();
        if !left.is_empty() {
            wrong.push(format!("left in its directory: {left:?}"));
        }
        if bless && wrong.is_empty() && stderr != expected {
            let text = std::fs::read_to_string(path).unwrap();
            let head = text.rsplit_once("--- stderr\n").map(|(h, _)| h).unwrap();
            let message = stderr
                .replace(&dir.display().to_string(), "@DIR@")
                .replace(&host.addr, "@HOST@")
                .replace(&format!(":{}", host.port), ":@PORT@");
            std::fs::write(path, format!("{head}--- stderr\n{message}")).unwrap();
        } else if stderr != expected {
            wrong.push(format!("stderr:\n{stderr}\nwanted:\n{expected}"));
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}", case.name, wrong.join("; ")));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), all.len(), failures.join("\n\n"));
}
