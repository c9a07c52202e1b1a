//! End-to-end tests: the real `director` binary against real OpenSSH servers (see harness.rs)
//! and against the local transport. Error texts are compared word for word.

mod auth;
mod cache;
mod corpus;
mod escalate;
mod faults;
mod harness;
mod history;
mod hostkeys;
mod inputs;
mod inventory;
mod logging;
mod plan;
mod podman;
mod rollout;
mod schema;
mod secrets;
mod ssh_config;
mod systemd;
mod tui;
mod verbs;

use harness::Fleet;
use schema::Event;
use std::path::Path;
use std::process::{Command, Output};

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run director")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `director orchestrate FILE --catalog CAT --json ARGS` and parses every line.
fn orchestrate_json(fleet: &Fleet, file: &Path, args: &[&str]) -> (i32, Vec<Event>, String) {
    let out = output(fleet.orchestrate(file).arg("--json").args(args));
    let events = schema::parse(&out.stdout);
    (code(&out), events, stderr(&out))
}

fn finished<'a>(events: &'a [Event], node: &str) -> Vec<(usize, &'a str, Option<i32>, Option<&'a str>)> {
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
fn printed(events: &[Event], node: Option<&str>, job: Option<usize>) -> String {
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
fn said(events: &[Event], node: &str) -> Vec<(String, String)> {
    finished(events, node)
        .into_iter()
        .map(|(_, status, _, reason)| (status.to_string(), reason.unwrap_or_default().to_string()))
        .collect()
}

/// A job answered from its record, as `said` gives it.
fn cached_hit() -> (String, String) {
    ("cached".to_string(), "done before with this exact fingerprint (--ignore-cache runs it again)".to_string())
}

fn uploads(events: &[Event]) -> Vec<String> {
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

fn run_finished(events: &[Event]) -> (&schema::Summary, i32) {
    match events.last() {
        Some(Event::RunFinished { summary, exit_code, .. }) => (summary, *exit_code),
        other => panic!("last event is not run_finished: {other:?}"),
    }
}

/// The messages of the `node_notice` events.
fn notices(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::NodeNotice { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn unreachable_error<'a>(events: &'a [Event], node: &str) -> Option<&'a str> {
    events.iter().find_map(|e| match e {
        Event::NodeUnreachable { node: n, error, .. } if n == node => Some(error.as_str()),
        _ => None,
    })
}

const DEPLOY: &str = r#"
- name: deploy
  jobs:
    - name: write state
      RUN: echo "state of $(id -un)" > ~/state && mkdir -p ~/app
    - RUN: cp ~/state ~/app/copied
    - RUN: |
        # a multi-line script keeps its newlines
        n=0
        for f in ~/app/*; do n=$((n+1)); done
        echo "files=$n"
- name: side work
  async: true
  jobs:
    - RUN: echo side > "${TMPDIR:-/tmp}/side"
    - RUN: cat "${TMPDIR:-/tmp}/side"
"#;

#[test]
fn multi_job_orchestration_on_three_hosts_installs_the_executor_once() {
    let fleet = Fleet::start(3);
    let file = fleet.file("deploy.yaml", DEPLOY);
    let (code1, first, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code1, 0, "stderr: {err}\nevents: {first:#?}");
    assert_eq!(uploads(&first), ["h1", "h2", "h3"]);
    let (summary, exit) = run_finished(&first);
    assert_eq!((summary.nodes, summary.nodes_ok, summary.jobs_ok, exit), (3, 3, 15, 0));
    for host in &fleet.hosts {
        // Each host wrote into its own home and its own /tmp.
        let state = std::fs::read_to_string(host.home_path("app/copied")).unwrap();
        assert!(state.starts_with("state of "), "{state}");
        assert_eq!(std::fs::read_to_string(host.dir.join("tmp/side")).unwrap(), "side\n");
        let out: String = first
            .iter()
            .filter_map(|e| match e {
                Event::JobOutput { node, job: 2, data, .. } if *node == host.name => Some(data.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(out, "files=1\n");
        // Within the non-async entry, jobs ran in order on this node.
        let order: Vec<usize> = finished(&first, &host.name).iter().map(|f| f.0).filter(|j| *j < 3).collect();
        assert_eq!(order, [0, 1, 2]);
    }
    let (code2, second, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code2, 0, "stderr: {err}");
    assert!(uploads(&second).is_empty(), "second run uploaded again: {second:#?}");
    // Nothing changed: every job is answered from the node caches, and each says what it
    // printed when it ran, word for word.
    let s2 = run_finished(&second).0;
    assert_eq!((s2.jobs_ok, s2.jobs_cached), (0, 15));
    let said = |events: &[Event]| {
        let mut out: Vec<(String, usize, String)> = events
            .iter()
            .filter_map(|e| match e {
                Event::JobOutput { node, job, data, .. } => Some((node.clone(), *job, data.clone())),
                _ => None,
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(said(&second), said(&first));
}

#[test]
fn restrict_selects_exactly_the_named_hosts() {
    let fleet = Fleet::start(3);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: touch ~/touched\n");
    let (status, events, err) = orchestrate_json(&fleet, &file, &["--restrict", "h1", "--restrict", "h3*"]);
    assert_eq!(status, 0, "{err}");
    match &events[0] {
        Event::RunStarted { nodes, tasks, .. } => {
            assert_eq!((nodes.clone(), *tasks), (vec!["h1".to_string(), "h3".to_string()], 2));
        }
        other => panic!("{other:?}"),
    }
    let touched: Vec<bool> = fleet.hosts.iter().map(|h| h.home_path("touched").exists()).collect();
    assert_eq!(touched, [true, false, true]);
    assert!(events.iter().all(|e| !matches!(e, Event::NodeConnecting { node, .. } if node == "h2")));

    // A group name selects its members.
    let (status, events, _) = orchestrate_json(&fleet, &file, &["--restrict", "even"]);
    assert_eq!(status, 0);
    assert!(matches!(&events[0], Event::RunStarted { nodes, .. } if nodes == &["h2".to_string()]));

    // An unknown name is an error before anything is contacted.
    let out = output(fleet.orchestrate(&file).args(["--restrict", "h9"]));
    assert_eq!(code(&out), 2);
    assert_eq!(stderr(&out), "error: --restrict `h9` matches no node or group in the catalog\n  hint: did you mean `h1`? the catalog has h1, h2, h3\n");
    assert_eq!(stdout(&out), "");
}

#[test]
fn a_stopped_host_is_unreachable_and_the_others_succeed() {
    let mut fleet = Fleet::start(3);
    fleet.stop_host(1);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: echo ok\n    - RUN: true\n");
    let (status, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(status, 3, "{err}");
    let h2 = &fleet.hosts[1];
    assert_eq!(
        unreachable_error(&events, "h2"),
        Some(format!("cannot connect to {}:{}: Connection refused", h2.addr, h2.port).as_str())
    );
    for node in ["h1", "h3"] {
        assert_eq!(finished(&events, node).iter().map(|f| f.1).collect::<Vec<_>>(), ["ok", "ok"]);
    }
    let (summary, exit) = run_finished(&events);
    assert_eq!((summary.nodes_ok, summary.nodes_unreachable, summary.jobs_ok, exit), (2, 1, 4, 3));

    // The plain text output says the same to a person.
    let out = output(fleet.orchestrate(&file).arg("--progress=plain"));
    assert_eq!(code(&out), 3);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("h2  UNREACHABLE  cannot connect to {}:{}: Connection refused\n", h2.addr, h2.port)),
        "{text}"
    );
    // The JSON run above already did this work, so the node caches answer: grouped per job.
    assert!(
        text.contains("job 1: RUN echo ok\n  h[1,3] (2)  cached: done before with this exact fingerprint (--ignore-cache runs it again)\njob 2"),
        "{text}"
    );
    assert!(text.lines().last().unwrap().starts_with("summary: 3 nodes (2 ok, 0 failed, 1 unreachable), 4 jobs (0 ok, 4 cached, 0 failed, 0 skipped, 0 timed out, 0 cancelled) in "), "{text}");
}

#[test]
fn a_failure_skips_the_rest_of_its_entry_on_that_node_only() {
    let fleet = Fleet::start(3);
    std::fs::write(fleet.hosts[1].home_path("fail-here"), "").unwrap();
    let file = fleet.file(
        "fail.yaml",
        "- name: guarded\n  jobs:\n    - RUN: test ! -e ~/fail-here\n    - RUN: echo after > ~/after\n- name: next entry\n  jobs:\n    - RUN: echo next > ~/next\n",
    );
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        finished(&events, "h2"),
        [
            (0, "failed", Some(1), Some("exited with code 1")),
            (1, "skipped", None, Some("job 1 (RUN test ! -e ~/fail-here) failed on this node")),
            (2, "ok", Some(0), None)
        ]
    );
    for (i, host) in fleet.hosts.iter().enumerate() {
        assert_eq!(host.home_path("after").exists(), i != 1, "{}", host.name);
        assert!(host.home_path("next").exists(), "{}", host.name);
    }
    let (summary, _) = run_finished(&events);
    assert_eq!(
        (summary.nodes_ok, summary.nodes_failed, summary.jobs_ok, summary.jobs_failed, summary.jobs_skipped),
        (2, 1, 7, 1, 1)
    );
}

#[test]
fn a_timeout_kills_the_remote_process_group() {
    let fleet = Fleet::start(3);
    let marker = 40000 + std::process::id() % 20000;
    let file = fleet.file(
        "slow.yaml",
        &format!("- jobs:\n    - RUN: --timeout 1 sh -c 'sleep {marker}1 & sleep {marker}2; echo late > ~/late'\n    - RUN: echo never\n"),
    );
    let (code, events, err) = orchestrate_json(&fleet, &file, &["--restrict", "h1"]);
    assert_eq!(code, 1, "{err}");
    let f = finished(&events, "h1");
    assert_eq!(f[0], (0, "timed_out", None, Some("timed out after 1 s")));
    assert_eq!(f[1].1, "skipped");
    assert!(f[1].3.unwrap().starts_with("job 1 (RUN sh -c 'sleep"), "{f:?}");
    let pgrep = Command::new("pgrep").args(["-f", &format!("sleep {marker}")]).output().unwrap();
    assert!(pgrep.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&pgrep.stdout));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!fleet.hosts[0].home_path("late").exists());
}

fn fingerprint(pub_key: &Path) -> String {
    let out = Command::new("ssh-keygen").args(["-E", "sha256", "-lf"]).arg(pub_key).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn a_changed_host_key_is_refused_with_both_fingerprints() {
    let mut fleet = Fleet::start(3);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: true\n");
    let host_pub = fleet.hosts[0].dir.join("ssh_host_ed25519_key.pub");
    let old = fingerprint(&host_pub);
    let (code, _, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 0, "{err}");
    let recorded = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");

    fleet.stop_host(0);
    fleet.rekey(0);
    fleet.start_host(0);
    let new = fingerprint(&host_pub);
    assert_ne!(old, new);
    let (code, events, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 3);
    let h1 = &fleet.hosts[0];
    let pattern = if h1.port == 22 { h1.addr.clone() } else { format!("[{}]:{}", h1.addr, h1.port) };
    let line = recorded.lines().position(|l| l.starts_with(&format!("{pattern} "))).unwrap() + 1;
    let kh = fleet.known_hosts.display();
    assert_eq!(
        unreachable_error(&events, "h1").unwrap(),
        format!("host key for node h1 ({pattern}) has changed: {kh} line {line} has {old}, the server offered {new}; refusing to connect (if the host was reinstalled, run: ssh-keygen -R '{pattern}' -f {kh})")
    );
    assert_eq!(finished(&events, "h2").len(), 1);
    // Nothing was recorded over the old key.
    assert_eq!(std::fs::read_to_string(&fleet.known_hosts).unwrap(), recorded);
}

#[test]
fn strict_checking_refuses_unknown_hosts_and_off_warns() {
    let fleet = Fleet::start(3);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: true\n");
    let (code, events, _) = orchestrate_json(&fleet, &file, &["--host-key-checking", "strict", "--restrict", "h1"]);
    assert_eq!(code, 3);
    let error = unreachable_error(&events, "h1").unwrap();
    let h1 = &fleet.hosts[0];
    let pattern = if h1.port == 22 { h1.addr.clone() } else { format!("[{}]:{}", h1.addr, h1.port) };
    let fp = fingerprint(&h1.dir.join("ssh_host_ed25519_key.pub"));
    assert_eq!(
        error,
        format!(
            "host key for node h1 ({pattern}) is not in {} and host key checking is strict; the server offered {fp}",
            fleet.known_hosts.display()
        )
    );
    assert!(!fleet.known_hosts.exists());

    let (code, _, err) =
        orchestrate_json(&fleet, &file, &["--host-key-checking", "off", "--restrict", "h1", "--restrict", "h2"]);
    assert_eq!(code, 0);
    assert_eq!(err, "warning: host key checking is off for 2 node(s) (h1, h2): their identity is not verified\n");
    assert!(!fleet.known_hosts.exists());
}

#[test]
fn exec_runs_an_ad_hoc_command_on_targets() {
    let fleet = Fleet::start(3);
    let out = output(
        fleet
            .director()
            .args(["exec", "--verb", "RUN", "--target", "h2", "--catalog"])
            .arg(fleet.catalog())
            .args(["--json", "echo", "adhoc", ">", "~/adhoc"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert!(matches!(&events[0], Event::RunStarted { nodes, .. } if nodes == &["h2".to_string()]));
    assert_eq!(std::fs::read_to_string(fleet.hosts[1].home_path("adhoc")).unwrap(), "adhoc\n");
}

#[test]
fn exec_outputs_are_folded_by_content_and_ad_hoc_commands_always_run() {
    let fleet = Fleet::start(6);
    // Two hosts fail the same way; h6 says something else.
    for i in [2, 3] {
        std::fs::write(fleet.hosts[i].home_path("broken"), "").unwrap();
    }
    std::fs::write(fleet.hosts[5].home_path("flavour"), "other\n").unwrap();
    let script = "if [ -e ~/broken ]; then echo 'disk full on /var' >&2; exit 4; fi; cat ~/flavour 2>/dev/null || echo same; echo run >> ~/runs\n";
    for host in &fleet.hosts {
        std::fs::write(host.home_path("job.sh"), script).unwrap();
    }
    let command = "sh ~/job.sh";
    let exec = |extra: &[&str]| {
        output(
            fleet
                .director()
                .args(["exec", "--progress", "plain", "--catalog"])
                .arg(fleet.catalog())
                .args(extra)
                .arg(command),
        )
    };
    let out = exec(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    let report = text.split_once("job 1: ").map(|(_, r)| format!("job 1: {r}")).unwrap_or_default();
    let report: String = report.lines().filter(|l| !l.starts_with("summary:")).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        report,
        format!(
            "job 1: RUN {command}\n  h[1-2,5] (3)  ok         same\n  h[3-4] (2)    FAILED: exited with code 4\n    │ disk full on /var\n  h6 (1)        ok         other\n"
        ),
        "{text}"
    );
    // Run again: an ad-hoc command runs again (it is not answered from the cache)...
    let out = exec(&[]);
    assert_eq!(code(&out), 1);
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].home_path("runs")).unwrap(), "run\nrun\n");
    // ...unless asked: then the cache answers, says so, and shows what it printed then.
    let out = exec(&["--cached"]);
    let text = stdout(&out);
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].home_path("runs")).unwrap(), "run\nrun\n");
    assert!(
        text.contains("  h[1-2,5] (3)  cached: done before with this exact fingerprint (--ignore-cache runs it again)\n    │ same\n"),
        "{text}"
    );
}

#[test]
fn one_selection_grammar_for_restrict_and_target_and_list_nodes() {
    let fleet = Fleet::start(4);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    // --list-nodes prints the selection and contacts nothing (no host key gets recorded).
    let out = output(fleet.orchestrate(&file).args(["--restrict", "odd,h2,!h3", "--list-nodes"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed: Vec<String> = stdout(&out).lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect();
    assert_eq!(listed, ["h1", "h2"]);
    assert!(!fleet.known_hosts.exists(), "--list-nodes contacted a node");
    // exec --target takes the same grammar, and --restrict narrows it.
    let out = output(
        fleet
            .director()
            .args(["exec", "--json", "--target", "h[1-3]", "--restrict", "!h2", "--catalog"])
            .arg(fleet.catalog())
            .arg("true"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert!(matches!(&events[0], Event::RunStarted { nodes, .. } if nodes == &["h1".to_string(), "h3".to_string()]));
    // Two selections that share no node: an error, not a run that does nothing.
    let out = output(
        fleet
            .director()
            .args(["exec", "--target", "odd", "--restrict", "even", "--catalog"])
            .arg(fleet.catalog())
            .arg("true"),
    );
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "error: --target `odd` and --restrict `even` select no node together\n  hint: --restrict narrows the nodes --target names; drop one, or name nodes both take\n"
    );
}

// ---- bad input: exit 2, word-for-word messages, nothing contacted -------------------------

fn bad_input(files: &[(&str, &str)], args: &[&str]) -> (i32, String, String, bool) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "bad-{}-{}",
        std::process::id(),
        files[0].0
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let known_hosts = dir.join("known_hosts");
    let out = Command::new(env!("CARGO_BIN_EXE_director"))
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("DIRECTOR_KNOWN_HOSTS", &known_hosts)
        .env("DIRECTOR_SSH_CONFIG", "none")
        .env_remove("DIRECTOR_CATALOG")
        .args(args)
        .output()
        .unwrap();
    let contacted = known_hosts.exists();
    let _ = std::fs::remove_dir_all(&dir);
    (code(&out), stdout(&out), stderr(&out), contacted)
}

// 192.0.2.0/24 is TEST-NET-1: never contacted, and the tests prove nothing tried to.
const CATALOG: &str = "nodes:\n  - {name: web1, host: 192.0.2.10}\n  - {name: web2, host: 192.0.2.11}\n";

/// What a bad-input case is: a name, the files written, the arguments, the exact stderr.
type BadCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

#[test]
fn bad_input_is_exit_2_with_file_line_column_and_a_hint() {
    let cases: &[BadCase] = &[
        (
            "malformed yaml",
            &[("c.yaml", CATALOG), ("d.yaml", "- jobs:\n    - RUN: [oops\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: d.yaml:2:12: invalid YAML: unclosed bracket '['\n  hint: check the indentation and the quoting on that line and the one before it\n",
        ),
        (
            "unknown verb",
            &[("c.yaml", CATALOG), ("d.yaml", "- jobs:\n    - RUN: true\n    - RUNN: echo\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: d.yaml:3:7: unknown verb `RUNN` in job 2 of entry 1\n  hint: did you mean `RUN`?\n",
        ),
        (
            "missing jobs",
            &[("c.yaml", CATALOG), ("d.yaml", "- name: nothing to do\n  targets: [web1]\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: d.yaml:1:3: entry 1 has no `jobs`\n  hint: every entry needs a `jobs:` list, e.g. `jobs: [{RUN: uptime}]`\n",
        ),
        (
            "unknown target",
            &[("c.yaml", CATALOG), ("d.yaml", "- targets: [web1, wbe2, db1]\n  jobs:\n    - RUN: true\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: d.yaml:1:19: unknown target `wbe2`\n  hint: did you mean `web2`? targets are catalog node names or hosts; the catalog has web1, web2\n",
        ),
        (
            "unreadable key",
            &[("c.yaml", "defaults:\n  identity_file: ./no-such-key\nnodes:\n  - {name: web1, host: 192.0.2.10}\n"), ("d.yaml", "- jobs: [{RUN: true}]\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: c.yaml:2:18: cannot use identity file ./no-such-key of node `web1`: No such file or directory\n  hint: check the path and its permissions\n",
        ),
        (
            "missing file",
            &[("c.yaml", CATALOG)],
            &["orchestrate", "nope.yaml", "--catalog", "c.yaml"],
            "error: cannot read nope.yaml: No such file or directory\n  hint: check the path; it is taken relative to the current directory\n",
        ),
        (
            "bad catalog key",
            &[("c.yaml", "nodes:\n  - name: web1\n    hots: 192.0.2.10\n"), ("d.yaml", "- jobs: [{RUN: true}]\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: c.yaml:3:5: unknown key `hots` in node\n  hint: did you mean `host`? node keys are: name, host, port, user, identity_file, groups, vars, transport, host_key_checking, via, become, become_user, become_method\n",
        ),
        (
            "unknown exec target",
            &[("c.yaml", CATALOG)],
            &["exec", "--target", "web3", "--catalog", "c.yaml", "uptime"],
            "error: --target `web3` matches no node or group in the catalog\n  hint: did you mean `web1`? the catalog has web1, web2\n",
        ),
    ];
    for (what, files, args, want) in cases {
        let (code, out, err, contacted) = bad_input(files, args);
        assert_eq!(err, *want, "{what}");
        assert_eq!(code, 2, "{what}");
        assert_eq!(out, "", "{what}");
        assert!(!contacted, "{what}: a node was contacted");
    }
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

#[test]
fn local_transport_runs_the_embedded_default_catalog() {
    let home = scratch("local-home");
    let file = home.join("o.yaml");
    std::fs::write(&file, "- jobs:\n    - RUN: echo one; echo two >&2\n    - RUN: exit 3\n    - RUN: echo skipped\n- async: true\n  jobs:\n    - RUN: --timeout 1 sleep 30\n").unwrap();
    let out = output(local_director(&home).arg("orchestrate").arg(&file).arg("--json"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert_eq!(uploads(&events), ["localhost"]);
    let mut f = finished(&events, "localhost");
    f.sort();
    assert_eq!(
        f,
        [
            (0, "ok", Some(0), None),
            (1, "failed", Some(3), Some("exited with code 3")),
            (2, "skipped", None, Some("job 2 (RUN exit 3) failed on this node")),
            (3, "timed_out", None, Some("timed out after 1 s"))
        ]
    );
    // The node's end carries its outcome and its jobs by how they ended.
    let done: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::NodeFinished { node, ok, outcome, jobs, .. } => Some((node.as_str(), *ok, *outcome, *jobs)),
            _ => None,
        })
        .collect();
    let jobs = schema::JobCounts { ok: 1, cached: 0, failed: 1, skipped: 1, timed_out: 1, cancelled: 0, would_run: 0 };
    assert_eq!(done, [("localhost", false, schema::NodeOutcome::Failed, jobs)]);
    let streams: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::JobOutput { job: 0, stream, data, .. } => Some((stream.clone(), data.clone())),
            _ => None,
        })
        .collect();
    assert!(
        streams.contains(&("stdout".into(), "one\n".into())) && streams.contains(&("stderr".into(), "two\n".into())),
        "{streams:?}"
    );
    let out = output(local_director(&home).arg("orchestrate").arg(&file).arg("--json"));
    assert!(uploads(&schema::parse(&out.stdout)).is_empty());
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn exec_refuses_its_own_options_after_the_command_and_passes_every_word_after_double_dash() {
    let home = scratch("local-exec-dashdash");
    // An exec option after the command is refused before anything runs...
    let out = output(local_director(&home).args(["exec", "touch", "ran", "--json"]).current_dir(&home));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: exec: `--json` comes after the command"), "{}", stderr(&out));
    assert!(!home.join("ran").exists());
    // ...and after `--`, the same words are the command's, given to it as they are.
    let out = output(local_director(&home).args(["exec", "--json", "--", "echo", "hi", "--restrict", "-c", "x"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(printed(&schema::parse(&out.stdout), Some("localhost"), Some(0)), "hi --restrict -c x\n");
    // A word that is not one of exec's options is the command's without `--`.
    let out = output(local_director(&home).args(["exec", "--json", "echo", "-n", "--restricted"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(printed(&schema::parse(&out.stdout), Some("localhost"), Some(0)), "--restricted");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let home = scratch("local-pipe");
    let file = home.join("o.yaml");
    std::fs::write(&file, "- jobs:\n    - RUN: seq 1 20000\n    - RUN: touch ran-to-the-end\n").unwrap();
    let mut child = local_director(&home)
        .current_dir(&home)
        .arg("orchestrate")
        .arg(&file)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(home.join("ran-to-the-end").exists());
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn usage_errors_exit_2() {
    let out = output(Command::new(env!("CARGO_BIN_EXE_director")).args(["orchestrate"]));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with("error: the following required arguments were not provided:\n  <FILE>...\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_dead_executor_is_an_event_for_its_node_only() {
    let fleet = Fleet::start(3);
    std::fs::write(fleet.hosts[2].home_path("die-here"), "").unwrap();
    // The job's shell is a child of the executor: on h3 it kills the executor itself.
    let file = fleet.file(
        "die.yaml",
        "- jobs:\n    - RUN: if [ -e ~/die-here ]; then kill -9 $PPID; sleep 5; fi\n    - RUN: echo still here\n",
    );
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    // A lost node is unreachable (exit 3); the job it cut short did not fail on its own.
    assert_eq!(code, 3, "{err}");
    let h3 = finished(&events, "h3");
    assert_eq!(h3.len(), 2, "{h3:?}");
    assert_eq!((h3[0].1, h3[1].1), ("cancelled", "skipped"));
    assert!(
        h3[0].3.unwrap().starts_with("the node was lost while this job ran: connection to the executor lost"),
        "{h3:?}"
    );
    assert!(unreachable_error(&events, "h3").unwrap().starts_with("connection to the executor lost"));
    for node in ["h1", "h2"] {
        assert_eq!(finished(&events, node).iter().map(|f| f.1).collect::<Vec<_>>(), ["ok", "ok"]);
    }
}

#[test]
fn a_burst_of_nodes_behind_one_sshd_is_paced_under_max_startups() {
    let fleet = Fleet::start(1);
    let h1 = &fleet.hosts[0];
    // 40 catalog nodes that are all the same sshd: more than its MaxStartups (10) at once
    // would be dropped; the per-address gate keeps handshakes under it.
    let mut catalog = format!("defaults: {{user: root, identity_file: {}}}\nnodes:\n", fleet.key.display());
    if !harness::is_root() {
        catalog = catalog.replace("user: root", &format!("user: {}", std::env::var("USER").unwrap_or_default()));
    }
    for i in 0..40 {
        catalog.push_str(&format!("  - {{name: n{i}, host: {}, port: {}}}\n", h1.addr, h1.port));
    }
    let catalog = fleet.file("burst.yaml", &catalog);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: true\n");
    let out = output(fleet.director().arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).arg("--json"));
    let events = schema::parse(&out.stdout);
    let (summary, exit) = run_finished(&events);
    // The 40 nodes share one remote user, so one cache: some answer from what others saved.
    assert_eq!((summary.nodes_ok, summary.jobs_ok + summary.jobs_cached, exit), (40, 40, 0), "{}", stderr(&out));
}

#[test]
fn ctrl_c_twice_kills_running_jobs_and_exits_130() {
    let home = scratch("local-cancel");
    let file = home.join("o.yaml");
    let marker = 50000 + std::process::id() % 9000;
    std::fs::write(&file, format!("- jobs:\n    - RUN: sleep {marker}7\n    - RUN: echo never\n")).unwrap();
    let child = local_director(&home)
        .arg("orchestrate")
        .arg(&file)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let running =
        || !Command::new("pgrep").args(["-f", &format!("sleep {marker}7")]).output().unwrap().stdout.is_empty();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !running() {
        assert!(std::time::Instant::now() < deadline, "the job never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(running(), "the first Ctrl-C must let the running job go on");
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130);
    assert!(!running(), "the job survived the second Ctrl-C");
    let events = schema::parse(&out.stdout);
    let f = finished(&events, "localhost");
    assert_eq!(
        f,
        [
            (0, "cancelled", None, Some("cancelled")),
            (1, "skipped", None, Some("run cancelled before this job started"))
        ]
    );
    assert_eq!(
        stderr(&out),
        "cancelling: no new jobs will start; press Ctrl-C again to kill the running ones\nkilling the running jobs\n"
    );
    // The history records the run and the interrupted job as cancelled.
    let run = output(local_director(&home).args(["manage", "--run-info", "last", "--json"]));
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!((run["status"].as_str(), run["exit_code"].as_i64()), (Some("cancelled"), Some(130)));
    assert_eq!(run["node_outcomes"][0]["outcome"], "cancelled");
    let jobs = output(local_director(&home).args(["manage", "--list-jobs", "--json"]));
    let jobs: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
    let first = output(local_director(&home).args(["manage", "--job-info", jobs[0]["id"].as_str().unwrap(), "--json"]));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["results"][0]["status"], "cancelled");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn ssh_agent_authenticates_when_no_identity_file_is_set() {
    let fleet = Fleet::start(2);
    let sock = fleet.path().join("agent.sock");
    let agent = Command::new("ssh-agent").arg("-a").arg(&sock).output().unwrap();
    assert!(agent.status.success());
    let agent_pid: String = String::from_utf8_lossy(&agent.stdout)
        .split(';')
        .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID=").map(str::to_string))
        .unwrap();
    let add = Command::new("ssh-add").arg(&fleet.key).env("SSH_AUTH_SOCK", &sock).output().unwrap();
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let catalog = std::fs::read_to_string(fleet.catalog()).unwrap();
    let without_key: String =
        catalog.lines().filter(|l| !l.contains("identity_file")).map(|l| format!("{l}\n")).collect();
    let catalog = fleet.file("agent-catalog.yaml", &without_key);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: true\n");
    let out = output(
        fleet
            .director()
            .arg("orchestrate")
            .arg(&file)
            .arg("--catalog")
            .arg(&catalog)
            .arg("--json")
            .env("SSH_AUTH_SOCK", &sock),
    );
    let _ = Command::new("kill").arg(&agent_pid).output();
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(run_finished(&schema::parse(&out.stdout)).0.jobs_ok, 2);

    // Without the agent (and no default keys in the isolated home) the failure says why.
    let out = output(fleet.director().arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).args([
        "--json",
        "--restrict",
        "h1",
    ]));
    assert_eq!(code(&out), 3);
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    assert_eq!(
        unreachable_error(&schema::parse(&out.stdout), "h1"),
        Some(format!("no key to authenticate as {user}: set `identity_file` for node h1 or start ssh-agent").as_str())
    );
}

#[test]
fn a_silent_server_times_out_as_unreachable() {
    // Accepts TCP and never speaks SSH.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(conn);
    });
    let home = scratch("silent");
    std::fs::write(home.join("c.yaml"), format!("nodes:\n  - {{name: mute, host: 127.0.0.1, port: {port}}}\n"))
        .unwrap();
    std::fs::write(home.join("o.yaml"), "- jobs:\n    - RUN: true\n").unwrap();
    let out = output(
        local_director(&home)
            .current_dir(&home)
            .args(["orchestrate", "o.yaml", "--catalog", "c.yaml", "--json", "--connect-timeout", "1"])
            .env("DIRECTOR_KNOWN_HOSTS", home.join("kh")),
    );
    assert_eq!(code(&out), 3);
    assert_eq!(
        unreachable_error(&schema::parse(&out.stdout), "mute"),
        Some(format!("connection to 127.0.0.1:{port} timed out after 1 s").as_str())
    );
    holder.join().unwrap();
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn an_executor_speaking_another_protocol_is_replaced() {
    let fleet = Fleet::start(1);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: echo fine\n");
    let (code1, first, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!((code1, uploads(&first).len()), (0, 1));
    // Put an impostor at the executor's content-addressed path: it greets with protocol 999.
    let bin_dir = fleet.hosts[0].home_path(".cache/director/bin");
    let exe = std::fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("director-exec-"))
        .unwrap();
    let hello = r#"{"t":"hello","version":999,"pid":1,"facts":{"arch":"x","kernel":"x","hostname":"x","os":"x"}}"#;
    let script = format!("#!/bin/sh\nprintf '\\000\\000\\000\\{:03o}%s' '{hello}'\ncat >/dev/null\n", hello.len());
    // Written aside and renamed: the first run's executor may still be exiting (text file busy).
    let aside = exe.with_extension("impostor");
    std::fs::write(&aside, script).unwrap();
    std::fs::set_permissions(&aside, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::rename(&aside, &exe).unwrap();
    let (code2, second, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code2, 0, "{err}\n{second:#?}");
    assert_eq!(uploads(&second), ["h1"]);
    assert!(std::fs::read(&exe).unwrap().len() > 100_000, "the impostor is still there");
}

#[test]
fn several_local_nodes_install_the_executor_once_without_racing() {
    // Eight local nodes share one cache directory: their first contact writes the executor
    // once, and none of them may see it half-installed (missing, or "text file busy").
    let nodes: String = (1..=8).map(|i| format!("  - {{name: n{i}}}\n")).collect();
    for round in 0..3 {
        let home = scratch(&format!("local-race-{round}"));
        let catalog = home.join("catalog.yaml");
        std::fs::write(&catalog, format!("defaults: {{transport: local}}\nnodes:\n{nodes}")).unwrap();
        let out =
            output(local_director(&home).args(["exec", "--progress", "plain", "--catalog"]).arg(&catalog).arg("true"));
        assert_eq!(code(&out), 0, "round {round}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("summary: 8 nodes (8 ok, 0 failed, 0 unreachable)"));
    }
}

/// The probe run by a shell as a node runs it, with a PATH holding only what the probe uses
/// (gzip or not), in a fresh HOME; it has printed its missing-executor line when this returns.
fn probe(
    name: &str,
    gzip: bool,
) -> (std::path::PathBuf, std::process::Child, std::io::BufReader<std::process::ChildStdout>) {
    use director::api::executor;
    use std::io::BufRead;
    let home = scratch(name);
    let bin = home.join("path");
    std::fs::create_dir_all(&bin).unwrap();
    let tools = ["head", "mkdir", "chmod", "uname", "rm"];
    for tool in tools.iter().chain(if gzip { &["gzip"][..] } else { &[][..] }) {
        let found = ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists()).unwrap();
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(executor::probe_command(false))
        .env_clear()
        .env("HOME", &home)
        .env("PATH", &bin)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let want = format!("director-exec-missing {} {}\n", std::env::consts::ARCH, if gzip { "gz" } else { "-" });
    assert_eq!(line, want);
    (home, child, out)
}

/// The probe, run by a shell as a node runs it, installs the executor it is sent on its
/// stdin and starts it in the same session: compressed when the node has gzip, as it is when
/// not.
#[test]
fn the_probe_installs_what_it_reads_and_starts_it_with_or_without_gzip() {
    use director::api::executor;
    use std::io::{Read, Write};
    let native = executor::native().unwrap();
    for gzip in [true, false] {
        let (home, mut child, mut out) = probe(&format!("probe-gzip-{gzip}"), gzip);
        let (header, body) = executor::upload_header(native, gzip);
        assert_eq!(body.len(), if gzip { native.gz.len() } else { native.binary.len() });
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(header.as_bytes()).unwrap();
        stdin.write_all(body).unwrap();
        stdin.flush().unwrap();
        // The executor greets: a frame whose JSON says hello.
        let mut len = [0u8; 4];
        out.read_exact(&mut len).unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        out.read_exact(&mut frame).unwrap();
        assert!(String::from_utf8_lossy(&frame).starts_with("{\"t\":\"hello\""), "{}", String::from_utf8_lossy(&frame));
        drop(stdin);
        assert!(child.wait().unwrap().success());
        let dir = home.join(".cache/director/bin");
        let installed = dir.join(format!("director-exec-{}", native.sha3));
        assert_eq!(std::fs::read(installed).unwrap(), native.binary);
        // Nothing else: no temp file left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&home);
    }
}

/// An upload whose bytes are not the executor named (one byte changed on the way, a file
/// cut short on a full disk) is not installed and does not start; nothing of it is left.
#[test]
fn the_probe_refuses_an_upload_that_does_not_verify() {
    use director::api::executor;
    use std::io::{Read, Write};
    let native = executor::native().unwrap();
    let (home, mut child, mut out) = probe("probe-tampered", false);
    let (header, body) = executor::upload_header(native, false);
    let mut body = body.to_vec();
    // The last byte is in the section headers: the binary still runs, and must not verify.
    *body.last_mut().unwrap() ^= 0xff;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(header.as_bytes()).unwrap();
    stdin.write_all(&body).unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!((status.code(), err.as_str(), rest.len()), (Some(1), "the uploaded executor does not verify\n", 0));
    assert_eq!(std::fs::read_dir(home.join(".cache/director/bin")).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&home);
}

/// `director` with its open-file limits set to `soft` and `hard` (as a login's may be).
fn with_nofile(mut cmd: Command, soft: u64, hard: u64) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd
}

#[test]
fn a_run_raises_its_open_file_limit_or_says_the_hard_limit_is_too_low() {
    let home = scratch("nofile");
    let catalog = home.join("catalog.yaml");
    let nodes: String = (1..=30).map(|i| format!("  - {{name: n{i}}}\n")).collect();
    std::fs::write(&catalog, format!("defaults: {{transport: local}}\nnodes:\n{nodes}")).unwrap();
    let mut exec = local_director(&home);
    exec.args(["exec", "--json", "--catalog"]).arg(&catalog).args(["--restrict", "n1", "ulimit -n"]);
    // A soft limit below what 30 nodes need, a hard one above it: raised, as the node sees.
    let mut all = local_director(&home);
    all.args(["exec", "--json", "--catalog"]).arg(&catalog).arg("ulimit -n");
    let out = output(&mut with_nofile(all, 60, 4096));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert_eq!(printed(&events, Some("n1"), None), "4096\n");
    // One node fits in 70: nothing to raise.
    let out = output(&mut with_nofile(exec, 70, 4096));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(printed(&schema::parse(&out.stdout), Some("n1"), None), "70\n");
    // A hard limit too low for the selection: refused before anything starts.
    let fresh = scratch("nofile-refused");
    let mut all = local_director(&fresh);
    all.args(["exec", "--catalog"]).arg(&catalog).arg("true");
    let out = output(&mut with_nofile(all, 60, 100));
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "error: the run has 30 nodes and may need 154 open files at once, but this process may open at most 100 (its hard limit)\n  hint: raise the hard limit (`ulimit -Hn` as root, or nofile in /etc/security/limits.conf), or select fewer nodes with --restrict\n"
    );
    assert!(!fresh.join(".cache/director").exists(), "nothing was started");
    let _ = std::fs::remove_dir_all(&home);
    let _ = std::fs::remove_dir_all(&fresh);
}

#[test]
fn catalog_vars_reach_templates_and_the_node_cache_wins_over_them() {
    let home = scratch("catalog-vars");
    let catalog = home.join("catalog.yaml");
    std::fs::write(
        &catalog,
        "defaults: {transport: local}\nvars: {region: eu, greeting: hello}\ngroups:\n  web: {vars: {greeting: howdy}}\nnodes:\n  - {name: a, groups: [web], vars: {role: front}}\n  - {name: b, vars: {role: back}}\n",
    )
    .unwrap();
    let file = home.join("o.yaml");
    std::fs::write(&file, "- jobs:\n    - RUN: echo {{ greeting }} {{ role }} {{ region }}\n- targets: [b]\n  jobs:\n    - ARG: role cached\n    - RUN: echo then {{ role }}\n").unwrap();
    let out = output(local_director(&home).arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).arg("--json"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = |node: &str| -> String {
        schema::parse(&out.stdout)
            .iter()
            .filter_map(|e| match e {
                Event::JobOutput { node: n, data, .. } if n == node => Some(data.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(said("a"), "howdy front eu\n", "node vars beat group vars beat global vars");
    assert_eq!(
        said("b"),
        "hello back eu\nargs added to cache\nthen cached\n",
        "an ARG in the node's cache beats the catalog"
    );
}

#[test]
fn completions_man_page_and_help_come_from_the_clap_definitions() {
    let director = || Command::new(env!("CARGO_BIN_EXE_director"));
    // bash loads the script, and it completes the subcommands.
    let script = stdout(&output(director().args(["completions", "bash"])));
    let dir = std::env::temp_dir().join(format!("director-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("director.bash"), &script).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(director orch); COMP_CWORD=1; _director director orch director; echo \"${{COMPREPLY[@]}}\"",
        dir.join("director.bash").display()
    );
    let out = output(Command::new("bash").args(["-c", &probe]));
    assert_eq!(stdout(&out).trim(), "orchestrate", "{}", stderr(&out));
    for shell in ["zsh", "fish"] {
        let out = output(director().args(["completions", shell]));
        assert_eq!(code(&out), 0);
        assert!(stdout(&out).contains("orchestrate"), "{shell}");
    }
    assert_eq!(code(&output(director().args(["completions", "tcsh"]))), 2);
    let man = stdout(&output(director().arg("man")));
    assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{man}");
    for part in [".TH director 1", ".SH NAME", "director\\-orchestrate", "Exit codes:"] {
        assert!(man.contains(part), "no `{part}` in the man page");
    }
    // `director help CMD` is `director CMD --help`; --help ends with examples and exit codes.
    assert_eq!(
        stdout(&output(director().args(["help", "exec"]))),
        stdout(&output(director().args(["exec", "--help"])))
    );
    let help = stdout(&output(director().arg("--help")));
    assert!(help.contains("Examples:\n  director tui catalog.yaml") && help.contains("\n  130  cancelled"), "{help}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn facts_are_template_variables() {
    let home = scratch("facts");
    let file = home.join("o.yaml");
    std::fs::write(&file, "- jobs:\n    - RUN: echo {{ facts.hostname }} {{ facts.arch }} {{ facts.kernel }}\n")
        .unwrap();
    let out = output(local_director(&home).arg("orchestrate").arg(&file).arg("--json"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    let facts = events
        .iter()
        .find_map(|e| match e {
            Event::NodeReady { hostname, arch, kernel, .. } => Some(format!("{hostname} {arch} {kernel}\n")),
            _ => None,
        })
        .unwrap();
    let said: String = events
        .iter()
        .filter_map(|e| match e {
            Event::JobOutput { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(said, facts);
    assert!(!facts.trim().is_empty());
    let _ = std::fs::remove_dir_all(&home);
}
