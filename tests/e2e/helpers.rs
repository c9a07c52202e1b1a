//! What the end-to-end tests share beside the fleet (harness.rs): running the binary, reading
//! its output and its events.

use super::harness::Fleet;
use super::schema::{self, Event};
use std::path::Path;
use std::process::{Command, Output};

pub(crate) fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run director")
}

pub(crate) fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `director orchestrate FILE --catalog CAT --json ARGS` and parses every line.
pub(crate) fn orchestrate_json(fleet: &Fleet, file: &Path, args: &[&str]) -> (i32, Vec<Event>, String) {
    let out = output(fleet.orchestrate(file).arg("--json").args(args));
    let events = schema::parse(&out.stdout);
    (code(&out), events, stderr(&out))
}

pub(crate) fn finished<'a>(events: &'a [Event], node: &str) -> Vec<(usize, &'a str, Option<i32>, Option<&'a str>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::JobFinished { node: n, job, status, exit_code, reason, .. } if n == node => {
                Some((*job, status.as_str(), *exit_code, reason.as_deref()))
            }
            _ => None,
        })
        .collect()
}

/// What jobs printed (stdout and stderr, in order): on `node`, of `job`, when given.
pub(crate) fn printed(events: &[Event], node: Option<&str>, job: Option<usize>) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::JobOutput { node: n, job: j, data, .. }
                if node.is_none_or(|want| want == n) && job.is_none_or(|want| want == *j) =>
            {
                Some(data.as_str())
            }
            _ => None,
        })
        .collect()
}

/// Each job's status and reason (empty when none) on `node`, in job order.
pub(crate) fn said(events: &[Event], node: &str) -> Vec<(String, String)> {
    finished(events, node)
        .into_iter()
        .map(|(_, status, _, reason)| (status.to_string(), reason.unwrap_or_default().to_string()))
        .collect()
}

/// A job answered from its record, as `said` gives it.
pub(crate) fn cached_hit() -> (String, String) {
    ("cached".to_string(), "done before with this exact fingerprint (--ignore-cache runs it again)".to_string())
}

pub(crate) fn uploads(events: &[Event]) -> Vec<String> {
    let mut nodes: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::ExecutorUploaded { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect();
    nodes.sort();
    nodes
}

pub(crate) fn run_finished(events: &[Event]) -> (&schema::Summary, i32) {
    match events.last() {
        Some(Event::RunFinished { summary, exit_code, .. }) => (summary, *exit_code),
        other => panic!("last event is not run_finished: {other:?}"),
    }
}

/// The messages of the `node_notice` events.
pub(crate) fn notices(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::NodeNotice { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

pub(crate) fn unreachable_error<'a>(events: &'a [Event], node: &str) -> Option<&'a str> {
    events.iter().find_map(|e| match e {
        Event::NodeUnreachable { node: n, error, .. } if n == node => Some(error.as_str()),
        _ => None,
    })
}

pub(crate) fn fingerprint(pub_key: &Path) -> String {
    let out = Command::new("ssh-keygen").args(["-E", "sha256", "-lf"]).arg(pub_key).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
}

// ---- the local transport: the same engine path without sshd -------------------------------

pub(crate) fn local_director(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_director"));
    cmd.env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("DIRECTOR_HISTORY")
        .env_remove("DIRECTOR_CONFIG")
        .env_remove("DIRECTOR_CATALOG")
        .env("DIRECTOR_SSH_CONFIG", "none");
    cmd
}

pub(crate) fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits for `child` and returns its exit status and peak resident memory (KiB). The peak is
/// the process's own VmHWM, read until it exits: wait4's ru_maxrss would also count the pages
/// of this test process that the child shared between its fork and its exec.
pub(crate) fn wait_rss(child: &std::process::Child) -> (i32, i64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0i64;
    let mut status = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        // SAFETY: plain syscall on our own child.
        let pid = unsafe { libc::waitpid(child.id() as i32, &mut status, libc::WNOHANG) };
        if pid == child.id() as i32 {
            return (libc::WEXITSTATUS(status), peak);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Starting a command with its stdout and stderr piped, to read while it runs.
pub(crate) trait SpawnPiped {
    fn spawn_piped(&mut self) -> std::process::Child;
}

impl SpawnPiped for Command {
    fn spawn_piped(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    }
}

/// What a run on `localhost` says when the run `run` (as `manage --list-runs --json` shows it),
/// started by `director orchestrate FILE --json` in process `pid`, holds the node.
pub(crate) fn held_by(run: &serde_json::Value, file: &Path, pid: u32) -> String {
    let id = run["id"].as_str().unwrap();
    format!(
        "error: node localhost is held by run {id} (`director orchestrate {} --json`), running since {} (pid {pid})\n  hint: wait for it with --wait, or stop it with `director manage --cancel {id}`\n",
        file.display(),
        run["started"].as_str().unwrap(),
    )
}
