//! The TUI and the inline live view, driven for real: the director binary runs in a tmux
//! pane (a real terminal) against the fleet's sshd hosts; keys go in with `send-keys` and the
//! screen comes back with `capture-pane`.

use crate::harness::{Fleet, Tmux};
use std::process::Command;
use std::time::Duration;

/// The shell line that runs director in the pane as `Fleet::director` would, then says how
/// it ended and how the terminal was left.
fn pane_script(fleet: &Fleet, args: &str) -> String {
    format!(
        "cd {dir}\nenv -u SSH_AUTH_SOCK -u DIRECTOR_CATALOG -u DIRECTOR_HISTORY -u DIRECTOR_CONFIG -u XDG_STATE_HOME -u XDG_CONFIG_HOME HOME={home} DIRECTOR_KNOWN_HOSTS={kh} DIRECTOR_SSH_CONFIG=none TERM=xterm-256color {bin} --history {dir}/history.db {args}\necho \"EXITED $?\"\nstty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo)$' | tr '\\n' ' '; echo\nsleep 600\n",
        dir = fleet.dir.display(),
        home = fleet.dir.join("operator-home").display(),
        kh = fleet.known_hosts.display(),
        bin = env!("CARGO_BIN_EXE_director"),
    )
}

const DEPLOY: &str = "- jobs:\n    - RUN: echo hello from the node\n    - RUN: if [ -e ~/fail ]; then echo 'disk full on /var' >&2; exit 4; fi; echo fine\n";

#[test]
fn tui_runs_an_orchestration_shows_grouped_failures_opens_the_failed_job_and_restores_the_terminal() {
    let fleet = Fleet::start(3);
    let catalog = fleet.catalog();
    std::fs::create_dir_all(fleet.dir.join("orchestrations")).unwrap();
    fleet.file("orchestrations/deploy.yaml", DEPLOY);
    for h in &fleet.hosts[1..] {
        std::fs::write(h.home_path("fail"), "").unwrap();
    }
    let tmux = Tmux::start(&fleet.dir, &pane_script(&fleet, &format!("tui {}", catalog.display())), 150, 45);
    tmux.wait_for(&["Nodes (3)", "unknown"], Duration::from_secs(20));
    assert!(tmux.alternate_screen(), "the TUI takes the alternate screen");

    tmux.keys(&["o"]);
    tmux.wait_for(&["Run an orchestration", "orchestrations/deploy.yaml"], Duration::from_secs(5));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(&["finished: 2 job(s) failed"], Duration::from_secs(60));
    for text in [
        "jobs ",
        "6/6",
        "nodes",
        "3/3",
        "ok 4",
        "failed 2",
        "Results by job, nodes grouped by identical output (1 failed groups)",
        "job 2: RUN if [ -e ~/fail ]",
        "disk full on /var",
        "Slowest nodes",
    ] {
        assert!(screen.contains(text), "{text:?} missing from the finished run:\n{screen}");
    }
    // The two failed nodes are listed once, together, folded; the one that succeeded too.
    assert!(screen.contains("h[2-3] (2)  FAILED: exited with code 4"), "{screen}");
    assert!(screen.contains("h1 (1)  ok"), "{screen}");

    // The first row of the run's node list is a failed node; enter lists its jobs with the
    // failed one highlighted, enter again opens its record.
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["Results of run", "failed"], Duration::from_secs(5));
    tmux.keys(&["Enter"]);
    let record = tmux.wait_for(&["Job record:", "── stderr ──"], Duration::from_secs(5));
    for text in [
        "status      failed",
        "exit code   4",
        "reason      exited with code 4",
        "fingerprint ",
        "disk full on /var",
        "started ",
        "took ",
    ] {
        assert!(record.contains(text), "{text:?} missing from the job record:\n{record}");
    }

    tmux.keys(&["Escape", "Escape", "3"]);
    tmux.wait_for(&["Past runs (1)", "orchestrate", "failed"], Duration::from_secs(5));
    tmux.keys(&["q"]);
    let end = tmux.wait_for(&["EXITED 0"], Duration::from_secs(10));
    assert!(!tmux.alternate_screen(), "the alternate screen is left");
    assert!(
        end.contains("icanon echo") || end.contains("echo icanon"),
        "the terminal is back in cooked mode with echo:\n{end}"
    );
    assert!(!end.contains("Nodes (3)"), "nothing of the TUI is left on the screen:\n{end}");

    // The run the TUI started is in the history like any other.
    let out = fleet
        .director()
        .args(["--history"])
        .arg(fleet.dir.join("history.db"))
        .args(["manage", "--run-info", "last", "--json"])
        .output()
        .unwrap();
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(info["status"], "failed", "{info}");
    assert_eq!(info["kind"], "orchestrate", "{info}");
}

#[test]
fn orchestrate_on_a_terminal_shows_the_inline_view_and_leaves_plain_lines() {
    let fleet = Fleet::start(2);
    let catalog = fleet.catalog();
    let file = fleet.file("deploy.yaml", DEPLOY);
    std::fs::write(fleet.hosts[1].home_path("fail"), "").unwrap();
    let args = format!("orchestrate {} --catalog {}", file.display(), catalog.display());
    let tmux = Tmux::start(&fleet.dir, &pane_script(&fleet, &args), 140, 30);
    let screen = tmux.wait_for(&["EXITED 1"], Duration::from_secs(60));
    let ok_line = format!("{}  ok         2 jobs", fleet.hosts[0].name);
    assert!(!screen.contains(&ok_line), "no line of its own for the node that ended well:\n{screen}");
    let failed_line = format!("{}  FAILED     2 jobs (1 ok, 0 cached, 1 failed, 0 skipped)", fleet.hosts[1].name);
    assert!(screen.contains(&failed_line), "a line for the node that failed:\n{screen}");
    let group = "job 2: RUN if [ -e ~/fail ]";
    assert!(screen.contains(group), "the failed job's results:\n{screen}");
    assert!(screen.contains(&format!("  {} (1)  FAILED: exited with code 4", fleet.hosts[1].name)), "{screen}");
    assert!(screen.contains("    │ disk full on /var"), "with its output:\n{screen}");
    assert!(screen.contains("summary: 2 nodes (1 ok, 1 failed, 0 unreachable)"), "{screen}");
    assert!(
        !screen.contains("jobs █") && !screen.contains("jobs ░"),
        "the progress lines are gone at the end:\n{screen}"
    );
    assert!(!tmux.alternate_screen());
}

#[test]
fn tui_refuses_bad_input_and_a_missing_terminal_before_touching_anything() {
    let home = crate::scratch("tui-errors");
    let history = home.join("history.db");
    let run = |args: &[&str]| {
        let out = crate::local_director(&home)
            .arg("--history")
            .arg(&history)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        run(&["tui", "--json"]),
        (Some(2), String::new(), "error: --json has no meaning in the TUI\n  hint: use `director orchestrate FILE --json` for events a script can read\n".to_string())
    );
    assert_eq!(
        run(&["tui", "--restrict", "nope"]),
        (
            Some(2),
            String::new(),
            "error: --restrict `nope` matches no node or group in the catalog\n  hint: the catalog has localhost\n"
                .to_string()
        )
    );
    // Output to a pipe: no escape codes, no raw mode, a clear refusal.
    assert_eq!(
        run(&["tui"]),
        (
            Some(2),
            String::new(),
            "error: the TUI cannot start: stdout is not a terminal\n  hint: `director tui` needs a terminal; in scripts, use `director orchestrate FILE` (with --json for events)\n".to_string()
        )
    );
    assert!(!history.exists(), "nothing is recorded");
}

#[test]
fn the_become_password_and_a_key_passphrase_are_asked_on_the_terminal_without_echo() {
    use crate::harness::BECOME_PASSWORD;
    let mut fleet = Fleet::start(1);
    fleet.add_users();
    // A key with a passphrase, no agent: its passphrase is asked once on the terminal.
    let key = fleet.dir.join("id_locked");
    let made =
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "key pass 7", "-f"]).arg(&key).output().unwrap();
    assert!(made.status.success());
    let authorized = fleet.dir.join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&std::fs::read_to_string(key.with_extension("pub")).unwrap());
    std::fs::write(&authorized, keys).unwrap();
    let catalog = fleet.file(
        "ops.yaml",
        &std::fs::read_to_string(fleet.catalog())
            .unwrap()
            .replace("user: root", "user: ops")
            .replace(&fleet.key.display().to_string(), &key.display().to_string()),
    );
    let file = fleet.file("who.yaml", "- jobs:\n    - RUN: id -un > /tmp/who\n");
    let args = format!("orchestrate {} -c {} --become -K --progress plain", file.display(), catalog.display());
    let tmux = Tmux::start(&fleet.dir, &pane_script(&fleet, &args), 120, 30);
    tmux.wait_for(&["BECOME password:"], Duration::from_secs(20));
    tmux.keys(&[BECOME_PASSWORD, "Enter"]);
    tmux.wait_for(&["Enter passphrase for key"], Duration::from_secs(20));
    tmux.keys(&["key pass 7", "Enter"]);
    let screen = tmux.wait_for(&["EXITED 0"], Duration::from_secs(60));
    assert!(!screen.contains(BECOME_PASSWORD) && !screen.contains("key pass 7"), "echoed:\n{screen}");
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].dir.join("tmp/who")).unwrap(), "root\n");
}
