//! The run history, `manage`, node locks, cancel, `--retry-failed` and `bootstrap`, end to
//! end: real sshd hosts where nodes matter, the local transport where only the operator does.

use super::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn manage(mut cmd: Command, args: &[&str]) -> Output {
    output(cmd.arg("manage").args(args))
}

/// (seq, node) → status of every result of `run`, through `manage --job-info ID --json`.
fn results_of(director: &dyn Fn() -> Command, run: &str) -> Vec<(usize, String, String)> {
    let jobs = json_of(&manage(director(), &["--list-jobs", "--json"]));
    let mut out = Vec::new();
    for job in jobs.as_array().unwrap().iter().filter(|j| j["run"] == run) {
        let info = json_of(&manage(director(), &["--job-info", job["id"].as_str().unwrap(), "--json"]));
        for r in info["results"].as_array().unwrap() {
            out.push((
                info["seq"].as_u64().unwrap() as usize,
                r["node"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            ));
        }
    }
    out.sort();
    out
}

fn run_id(events: &[Event]) -> String {
    match events.first() {
        Some(Event::RunStarted { run, .. }) => run.clone(),
        other => panic!("first event is not run_started: {other:?}"),
    }
}

fn triples(list: &[(usize, &str, &str)]) -> Vec<(usize, String, String)> {
    list.iter().map(|(a, b, c)| (*a, b.to_string(), c.to_string())).collect()
}

#[test]
fn the_history_records_ok_failed_cached_skipped_and_unreachable_results() {
    let mut fleet = Fleet::start(3);
    std::fs::write(fleet.hosts[1].home_path("fail"), "").unwrap();
    let file = fleet.file("h.yaml", "- name: deploy\n  jobs:\n    - RUN: echo hello\n    - RUN: echo checking; test ! -e $HOME/fail\n    - RUN: echo after\n");
    let (first, events1, err1) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(first, 1, "{err1}");
    fleet.stop_host(2);
    let (second, events2, err2) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(second, 1, "{err2}");
    let director = || fleet.director();
    assert_eq!(
        results_of(&director, &run_id(&events2)),
        triples(&[
            (0, "h1", "cached"),
            (0, "h2", "cached"),
            (0, "h3", "unreachable"),
            (1, "h1", "cached"),
            (1, "h2", "failed"),
            (1, "h3", "unreachable"),
            (2, "h1", "cached"),
            (2, "h2", "skipped"),
            (2, "h3", "unreachable"),
        ])
    );
    assert_eq!(
        results_of(&director, &run_id(&events1)),
        triples(&[
            (0, "h1", "ok"),
            (0, "h2", "ok"),
            (0, "h3", "ok"),
            (1, "h1", "ok"),
            (1, "h2", "failed"),
            (1, "h3", "ok"),
            (2, "h1", "ok"),
            (2, "h2", "skipped"),
            (2, "h3", "ok"),
        ])
    );
    // The failed job's record: its output, exit code, reason and rendered command per node.
    let info = json_of(&manage(fleet.director(), &["--job-info", "last", "--json"]));
    assert_eq!(info["seq"], 2);
    let jobs = json_of(&manage(fleet.director(), &["--list-jobs", "--json"]));
    let failed = jobs.as_array().unwrap().iter().filter(|j| j["run"] == run_id(&events2).as_str()).nth(1).unwrap()
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = json_of(&manage(fleet.director(), &["--job-info", &failed[..6], "--json"]));
    let h2 = info["results"].as_array().unwrap().iter().find(|r| r["node"] == "h2").unwrap();
    assert_eq!(
        (h2["stdout"].as_str(), h2["exit_code"].as_i64(), h2["reason"].as_str()),
        (Some("checking\n"), Some(1), Some("exited with code 1"))
    );
    assert_eq!(h2["info"], "echo checking; test ! -e $HOME/fail");
    assert_eq!(info["parent_name"], "deploy");
    assert_eq!(info["definition"], serde_json::json!({"RUN": "echo checking; test ! -e $HOME/fail"}));
    let h3 = info["results"].as_array().unwrap().iter().find(|r| r["node"] == "h3").unwrap();
    assert!(h3["reason"].as_str().unwrap().contains("connect"), "{h3}");

    let run = json_of(&manage(fleet.director(), &["--run-info", "last", "--json"]));
    assert_eq!(run["status"], "failed");
    // Times in JSON are RFC 3339 with the local offset (`2026-11-30T03:02:03+01:00`).
    for at in [&run["started"], &run["ended"], &info["created"]] {
        let t = at.as_str().unwrap_or_default();
        let b = t.as_bytes();
        assert!(
            t.len() == 25 && b[10] == b'T' && (b[19] == b'+' || b[19] == b'-') && b[22] == b':',
            "not RFC 3339 with an offset: {at}"
        );
    }
    assert_eq!(run["exit_code"], 1);
    let outcomes: Vec<(&str, &str)> = run["node_outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node"].as_str().unwrap(), n["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [("h1", "ok"), ("h2", "failed"), ("h3", "unreachable")]);

    // The tables' headers, word for word.
    let text = stdout(&manage(fleet.director(), &["--list-runs"]));
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ID", "KIND", "STATUS", "STARTED", "DURATION", "NODES", "OK", "FAILED", "UNREACHABLE", "SKIPPED", "COMMAND"]
    );
    assert!(text.ends_with("\nTotal Items: 2\n"), "{text}");
    assert!(text.contains(&format!("{}  orchestrate  failed", run_id(&events2))), "{text}");
    let text = stdout(&manage(fleet.director(), &["--list-jobs"]));
    assert_eq!(
        text.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["ID", "RUN", "PARENT_JOB_NAME", "JOB_NAME", "VERB", "EXECUTION_TIME", "PROCESSING", "SUCCESS", "FAILED"]
    );
    assert!(text.ends_with("\nTotal Items: 6\n"), "{text}");
    // Run 1's failed job, and every job of run 2 (h3 was unreachable).
    let text = stdout(&manage(fleet.director(), &["--list-jobs", "--filter", "failed"]));
    assert!(text.ends_with("\nTotal Items: 4\n"), "{text}");
    let text = stdout(&manage(fleet.director(), &["--list-nodes"]));
    assert_eq!(
        text.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "ADDRESS", "ARCH", "OS", "KERNEL", "HOSTNAME", "EXECUTOR", "LAST_SEEN", "LAST_RUN"]
    );
    assert_eq!(text.lines().filter(|l| l.contains("x86_64")).count(), 3, "{text}");
    let text = stdout(&manage(fleet.director(), &["--job-info", &failed]));
    let keys: Vec<&str> =
        text.lines().filter(|l| !l.starts_with(' ')).map(|l| l.split_whitespace().next().unwrap_or("")).collect();
    assert_eq!(
        keys,
        [
            "KEY",
            "-------------------",
            "ID",
            "JOB_ID",
            "RUN_ID",
            "JOB_DEFINITION",
            "JOB_SHA3_224",
            "JOB_NAME",
            "PARENT_JOB_ID",
            "PARENT_JOB_NAME",
            "VERB",
            "COMPONENT_TIMESTAMP",
            "INFO",
            "STATUS",
            "REASON",
            "EXIT_CODE",
            "PROCESSING",
            "RETURN_TIMESTAMP",
            "STDERR",
            "STDOUT",
            "ROUNDTRIP_TIME",
            "EXECUTION_TIME",
            "SUCCESS",
            "FAILED"
        ]
    );
    // h1 answered from its cache: it ran nothing now, and shows what it printed when it ran.
    assert!(text.contains(&format!("{:<19}  h1 = checking\n{:<19}  h2 = checking\n", "STDOUT", "")), "{text}");
    assert!(
        text.contains(
            "REASON               h1 = done before with this exact fingerprint (--ignore-cache runs it again)\n"
        ),
        "{text}"
    );
    assert!(text.contains(&format!("{:<19}  h1\n{:<19}  h2\n{:<19}  h3\n", "SUCCESS", "FAILED", "")), "{text}");

    // Export, then purge.
    let export = fleet.path().join("jobs.yaml");
    let out = manage(fleet.director(), &["--export-jobs", export.to_str().unwrap()]);
    assert_eq!(stdout(&out), format!("Exported 6 jobs to {}\n", export.display()));
    let yaml = std::fs::read_to_string(&export).unwrap();
    // A job id is 16 hex digits: one of digits and a single `e` reads as a number in YAML,
    // so the export quotes it (`"488e790979774184":`), as it must.
    let key = if failed.parse::<f64>().is_ok() { format!("\"{failed}\":\n") } else { format!("{failed}:\n") };
    assert!(yaml.contains(&key) && yaml.contains("checking"), "{yaml}");
    assert_eq!(stdout(&manage(fleet.director(), &["--purge-jobs"])), "Purged 6 jobs of 2 finished runs\n");
    let text = stdout(&manage(fleet.director(), &["--list-jobs"]));
    assert!(text.starts_with("No jobs recorded yet (history: "), "{text}");
    assert_eq!(stdout(&manage(fleet.director(), &["--purge-nodes"])), "Purged 3 nodes\n");
}

#[test]
fn manage_on_an_empty_history_says_so_and_exits_0() {
    let home = scratch("manage-empty");
    let db = home.join(".local/state/director/history.db");
    for (args, what) in [
        (&["--list-runs"][..], "runs"),
        (&["--run-info", "last"][..], "runs"),
        (&["--list-jobs"][..], "jobs"),
        (&["--job-info", "last"][..], "jobs"),
        (&["--purge-jobs"][..], "jobs"),
        (&["--list-nodes"][..], "nodes"),
        (&["--purge-nodes"][..], "nodes"),
    ] {
        let out = manage(local_director(&home), args);
        assert_eq!(
            (code(&out), stdout(&out), stderr(&out)),
            (0, format!("No {what} recorded yet (history: {}).\n", db.display()), String::new()),
            "{args:?}"
        );
    }
    assert!(!db.exists(), "reading an empty history must not create it");
    assert_eq!(stdout(&manage(local_director(&home), &["--list-jobs", "--json"])), "[]\n");
    // An unknown id in a history that has runs is an input error.
    assert_eq!(code(&output(local_director(&home).args(["exec", "true"]))), 0);
    let out = manage(local_director(&home), &["--job-info", "zzz"]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (2, format!("error: no job has an id starting with `zzz` in {}\n  hint: `director manage --list-jobs` shows them; an id, a unique prefix of one, or `last` is accepted\n", db.display()))
    );
    let out = output(local_director(&home).args(["manage", "--list-runs", "--list-jobs"]));
    assert_eq!(code(&out), 2);
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn the_history_path_comes_from_the_flag_the_environment_or_the_settings_file() {
    let home = scratch("history-path");
    std::fs::create_dir_all(home.join(".config/director")).unwrap();
    std::fs::write(home.join(".config/director/config.yaml"), "history: runs/from-settings.db\n").unwrap();
    assert_eq!(code(&output(local_director(&home).args(["exec", "true"]))), 0);
    assert!(home.join(".config/director/runs/from-settings.db").exists());
    assert_eq!(
        code(&output(local_director(&home).env("DIRECTOR_HISTORY", home.join("env.db")).args(["exec", "true"]))),
        0
    );
    assert!(home.join("env.db").exists());
    let flag = home.join("flag.db");
    assert_eq!(
        code(&output(local_director(&home).env("DIRECTOR_HISTORY", home.join("env.db")).args([
            "--history",
            flag.to_str().unwrap(),
            "exec",
            "true"
        ]))),
        0
    );
    let runs = json_of(&manage(local_director(&home), &["--history", flag.to_str().unwrap(), "--list-runs", "--json"]));
    assert_eq!(runs.as_array().unwrap().len(), 1);
    std::fs::write(home.join(".config/director/config.yaml"), "histroy: x.db\n").unwrap();
    let out = output(local_director(&home).args(["exec", "true"]));
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            2,
            format!(
                "error: {}:1:1: unknown key `histroy` in the settings file\n  hint: did you mean `history`? the keys are: history, catalog, known_hosts, ssh_config\n",
                home.join(".config/director/config.yaml").display()
            )
        )
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// Starts `director orchestrate FILE --json` on the local node and waits until `marker` runs.
fn start_holding(home: &Path, file: &Path, marker: &str) -> std::process::Child {
    let child = local_director(home).arg("orchestrate").arg(file).arg("--json").spawn_piped();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running(marker) {
        assert!(Instant::now() < deadline, "the holding job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn running(pattern: &str) -> bool {
    !Command::new("pgrep").args(["-f", pattern]).output().unwrap().stdout.is_empty()
}

#[test]
fn a_run_on_held_nodes_is_refused_with_exit_4_and_wait_waits() {
    let home = scratch("locks");
    let marker = format!("sleep 2.{}1", std::process::id());
    let file = home.join("hold.yaml");
    std::fs::write(&file, format!("- jobs:\n    - RUN: {marker}\n")).unwrap();
    let holder = start_holding(&home, &file, &marker);
    let runs = json_of(&manage(local_director(&home), &["--list-runs", "--json"]));
    let run = &runs[0];
    assert_eq!(run["status"], "running");
    let out = output(local_director(&home).args(["exec", "echo", "hi"]));
    assert_eq!((code(&out), stderr(&out)), (4, held_by(run, &file, holder.id())));
    let waiter = output(local_director(&home).args(["exec", "--wait", "--json", "echo", "after"]));
    assert_eq!(code(&waiter), 0, "{}", stderr(&waiter));
    assert!(
        stderr(&waiter)
            .starts_with(&format!("waiting for run {} (`director orchestrate ", run["id"].as_str().unwrap())),
        "{}",
        stderr(&waiter)
    );
    assert_eq!(code(&holder.wait_with_output().unwrap()), 0);
    let runs = json_of(&manage(local_director(&home), &["--list-runs", "--json"]));
    let statuses: Vec<(&str, &str)> =
        runs.as_array().unwrap().iter().map(|r| (r["kind"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(
        statuses,
        [("exec", "succeeded"), ("orchestrate", "succeeded")],
        "newest first: the refused run is not recorded; the waiting one ran after"
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_lock_left_by_a_killed_operator_is_released_and_its_run_shown_abandoned() {
    let home = scratch("stale-lock");
    let marker = format!("sleep 60.{}2", std::process::id());
    let file = home.join("hold.yaml");
    std::fs::write(&file, format!("- jobs:\n    - RUN: {marker}\n")).unwrap();
    let mut holder = start_holding(&home, &file, &marker);
    // The history commits what happened every 20 ms: the job is killed once it has the job.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = json_of(&manage(local_director(&home), &["--job-info", &first_job(&home), "--json"]));
        if info["results"][0]["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the history never had the job running: {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: killing our own child.
    unsafe { libc::kill(holder.id() as i32, libc::SIGKILL) };
    let _ = holder.wait();
    let out = output(local_director(&home).args(["exec", "echo", "after"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let runs = json_of(&manage(local_director(&home), &["--list-runs", "--json"]));
    let statuses: Vec<&str> = runs.as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["succeeded", "abandoned"], "newest first");
    let newest = json_of(&manage(local_director(&home), &["--list-runs", "--json", "--limit", "1"]));
    assert_eq!(newest.as_array().unwrap().len(), 1);
    assert_eq!(newest[0]["status"], "succeeded");
    let info = json_of(&manage(local_director(&home), &["--job-info", &first_job(&home), "--json"]));
    assert_eq!(info["results"][0]["status"], "abandoned");
    // The executor lost its operator and killed the job.
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(&marker) {
        assert!(Instant::now() < deadline, "the job outlived its operator");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&home);
}

/// The job of the oldest run (the lists come newest first).
fn first_job(home: &Path) -> String {
    let jobs = json_of(&manage(local_director(home), &["--list-jobs", "--json"]));
    jobs.as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_string()
}

#[test]
fn manage_cancel_kills_the_remote_jobs_and_records_the_run_cancelled() {
    let fleet = Fleet::start(2);
    let marker = format!("sleep 7{}", std::process::id());
    let file = fleet.file("c.yaml", &format!("- jobs:\n    - RUN: {marker}\n    - RUN: echo never\n"));
    let child = fleet.orchestrate(&file).arg("--json").spawn_piped();
    // `[s]` keeps pgrep from finding the shell that runs it.
    let on = |h: &harness::Host| !h.sh(&format!("pgrep -f '[s]{}'", &marker[1..])).stdout.is_empty();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fleet.hosts.iter().all(on) {
        assert!(Instant::now() < deadline, "the jobs never started on the hosts");
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = json_of(&manage(fleet.director(), &["--run-info", "last", "--json"]));
    let id = run["id"].as_str().unwrap().to_string();
    let out = manage(fleet.director(), &["--cancel", &id[..5]]);
    assert_eq!((code(&out), stdout(&out)), (0, format!("Run {id} is cancelled.\n")), "{}", stderr(&out));
    for h in &fleet.hosts {
        assert!(!on(h), "{} still runs the job after the cancel", h.name);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130);
    assert_eq!(
        stderr(&out),
        "cancelled from another terminal (`director manage --cancel`): killing the running jobs\n"
    );
    let events = schema::parse(&out.stdout);
    for h in ["h1", "h2"] {
        assert_eq!(
            finished(&events, h),
            [
                (0, "cancelled", None, Some("cancelled")),
                (1, "skipped", None, Some("run cancelled before this job started"))
            ]
        );
    }
    let director = || fleet.director();
    assert_eq!(
        results_of(&director, &id),
        triples(&[(0, "h1", "cancelled"), (0, "h2", "cancelled"), (1, "h1", "skipped"), (1, "h2", "skipped")])
    );
    let run = json_of(&manage(fleet.director(), &["--run-info", &id, "--json"]));
    assert_eq!((run["status"].as_str(), run["exit_code"].as_i64()), (Some("cancelled"), Some(130)));
    let out = manage(fleet.director(), &["--cancel", &id]);
    assert_eq!(stdout(&out), format!("Run {id} is not running: it is cancelled.\n"));
}

#[test]
fn retry_failed_runs_again_only_on_the_nodes_that_failed() {
    let mut fleet = Fleet::start(3);
    std::fs::write(fleet.hosts[1].home_path("fail"), "").unwrap();
    fleet.stop_host(2);
    let file = fleet.file("r.yaml", "- jobs:\n    - RUN: test ! -e $HOME/fail && echo fine >> $HOME/ran\n");
    let (first, _, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(first, 1, "{err}");
    std::fs::remove_file(fleet.hosts[1].home_path("fail")).unwrap();
    fleet.start_host(2);
    // No files: the run's own files and catalogs are used.
    let out = output(fleet.director().args(["orchestrate", "--retry-failed", "--json"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("retrying run ") && stderr(&out).ends_with(" on 2 node(s): h2, h3\n"),
        "{}",
        stderr(&out)
    );
    let events = schema::parse(&out.stdout);
    match &events[0] {
        Event::RunStarted { nodes, .. } => assert_eq!(nodes, &["h2", "h3"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].home_path("ran")).unwrap(), "fine\n", "h1 must not run again");
    assert_eq!(std::fs::read_to_string(fleet.hosts[1].home_path("ran")).unwrap(), "fine\n");
    // Nothing left to retry.
    let out = output(fleet.orchestrate(&file).args(["--retry-failed", "last"]));
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).ends_with(" has no failed, unreachable or cancelled node: nothing to retry\n"),
        "{}",
        stderr(&out)
    );
}

fn bootstrap_catalog(fleet: &Fleet, name: &str, server_jobs: &str, client_jobs: &str) -> PathBuf {
    let user =
        if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_else(|_| "root".into()) };
    let target = |h: &harness::Host| format!("  - {{host: {}, port: {}, name: {}}}\n", h.addr, h.port, h.name);
    let text = format!(
        "directord_server:\n  args: {{username: {user}, key_file: {key}}}\n  targets:\n{s}  jobs:\n{server_jobs}directord_clients:\n  args: {{username: {user}, key_file: {key}}}\n  targets:\n{c}  jobs:\n{client_jobs}",
        key = fleet.key.display(),
        s = target(&fleet.hosts[0]),
        c = fleet.hosts[1..].iter().map(target).collect::<String>(),
    );
    fleet.file(name, &text)
}

#[test]
fn bootstrap_runs_the_server_first_then_the_clients_and_fails_when_a_client_fails() {
    let fleet = Fleet::start(3);
    std::fs::write(fleet.path().join("payload.txt"), "the payload\n").unwrap();
    std::fs::write(fleet.hosts[2].home_path("fail"), "").unwrap();
    let fetched = fleet.path().join("role-from-server");
    let catalog = bootstrap_catalog(
        &fleet,
        "boot.yaml",
        &format!("  - RUN: echo \"server {{{{ directord_bootstrap.name }}}}\" > role\n  - GET: role {}\n", fetched.display()),
        "  - ADD: payload.txt payload.txt\n  - RUN: |-\n      cat payload.txt\n      echo \"server is {{ directord_server.targets[0].host }}\"\n      test ! -e fail\n",
    );
    let out = output(fleet.director().args(["bootstrap", "--threads", "1", "--json", "--catalog"]).arg(&catalog));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert_eq!(finished(&events, "h1").iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(), [(0, "ok"), (1, "ok")]);
    assert_eq!(finished(&events, "h2").iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(), [(2, "ok"), (3, "ok")]);
    assert_eq!(finished(&events, "h3").iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(), [(2, "ok"), (3, "failed")]);
    let server_done =
        events.iter().position(|e| matches!(e, Event::NodeFinished { node, .. } if node == "h1")).unwrap();
    let first_client =
        events.iter().position(|e| matches!(e, Event::NodeConnecting { node, .. } if node != "h1")).unwrap();
    assert!(server_done < first_client, "clients started before the server was done");
    // --threads 1: one client at a time.
    let h2_done = events.iter().position(|e| matches!(e, Event::NodeFinished { node, .. } if node == "h2")).unwrap();
    let h3_start = events.iter().position(|e| matches!(e, Event::NodeConnecting { node, .. } if node == "h3")).unwrap();
    assert!(h2_done < h3_start);
    assert_eq!(std::fs::read_to_string(&fetched).unwrap(), "server h1\n");
    assert_eq!(std::fs::read_to_string(fleet.hosts[1].home_path("payload.txt")).unwrap(), "the payload\n");
    let h2_out: String = events
        .iter()
        .filter_map(|e| match e {
            Event::JobOutput { node, job: 3, data, .. } if node == "h2" => Some(data.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(h2_out, format!("the payload\nserver is {}\n", fleet.hosts[0].addr));
    let nodes = json_of(&manage(fleet.director(), &["--list-nodes", "--json"]));
    let facts: Vec<(&str, &str)> =
        nodes.as_array().unwrap().iter().map(|n| (n["name"].as_str().unwrap(), n["arch"].as_str().unwrap())).collect();
    assert_eq!(facts, [("h1", "x86_64"), ("h2", "x86_64"), ("h3", "x86_64")]);
    assert_eq!(std::fs::read_to_string(&fleet.known_hosts).unwrap().lines().count(), 3);
    let run = json_of(&manage(fleet.director(), &["--run-info", "last", "--json"]));
    assert_eq!((run["kind"].as_str(), run["status"].as_str()), (Some("bootstrap"), Some("failed")));

    // A failing server: no client is contacted.
    let catalog = bootstrap_catalog(&fleet, "boot-bad.yaml", "  - RUN: exit 7\n", "  - RUN: echo never\n");
    let out = output(fleet.director().args(["bootstrap", "--json", "--catalog"]).arg(&catalog));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert!(!events.iter().any(|e| matches!(e, Event::NodeConnecting { node, .. } if node != "h1")));
    let why = "not attempted: server h1 failed, so no other node was bootstrapped";
    assert_eq!(finished(&events, "h2"), [(1, "skipped", None, Some(why))]);
    assert_eq!(finished(&events, "h3"), [(1, "skipped", None, Some(why))]);
}

#[test]
fn bootstrap_without_a_catalog_is_an_input_error() {
    let home = scratch("boot-nocat");
    let out = output(local_director(&home).arg("bootstrap"));
    assert_eq!(
        (code(&out), stderr(&out)),
        (2, "error: bootstrap needs the fleet's catalog\n  hint: give it with --catalog FILE (repeat it to merge several files, as Directord does)\n".to_string())
    );
    let _ = std::fs::remove_dir_all(&home);
}

/// `--history sqlite:PATH` is that SQLite file; a URL of another kind is refused before
/// anything is written (no directory named after its scheme), from the option, the
/// environment and the settings file alike.
#[test]
fn a_history_url_is_sqlite_postgres_or_refused() {
    let home = scratch("history-url");
    let db = home.join("runs.db");
    let url = format!("sqlite://{}", db.display());
    assert_eq!(code(&output(local_director(&home).current_dir(&home).args(["exec", "--history", &url, "true"]))), 0);
    let listed = stdout(&manage(local_director(&home), &["--list-runs", "--history", db.to_str().unwrap()]));
    assert!(listed.contains("exec  succeeded") && listed.ends_with("Total Items: 1\n"), "{listed}");
    let refused = |cmd: &mut Command| {
        let out = output(cmd.current_dir(&home));
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        stderr(&out)
    };
    let said = "error: the history `mysql://director@db/director` is a `mysql:` URL, and director keeps its history in SQLite or PostgreSQL\n  hint: give a file path, sqlite:PATH, or postgres://USER@HOST/DATABASE\n";
    assert_eq!(
        refused(local_director(&home).args(["exec", "--history", "mysql://director@db/director", "true"])),
        said
    );
    assert_eq!(
        refused(
            local_director(&home)
                .args(["manage", "--list-runs"])
                .env("DIRECTOR_HISTORY", "mysql://director@db/director")
        ),
        said
    );
    let settings = home.join("settings.yaml");
    std::fs::write(&settings, "history: mysql://director@db/director\n").unwrap();
    assert_eq!(refused(local_director(&home).args(["manage", "--list-runs", "--config"]).arg(&settings)), said);
    // A PostgreSQL URL is served (tests/e2e/postgres.rs); one that is not a URL libpq reads is refused.
    let said = "error: the history `postgres://director@db:port/director` is not a PostgreSQL URL director can use: invalid connection string\n  hint: write postgres://USER@HOST[:PORT]/DATABASE[?sslmode=verify-full&sslrootcert=CA.pem] (libpq's URL form; ?host=/run/postgresql for a socket)\n";
    assert_eq!(
        refused(local_director(&home).args(["exec", "--history", "postgres://director@db:port/director", "true"])),
        said
    );
    assert!(!home.join("mysql:").exists());
}

/// A plan changed nothing, so retrying it for real is refused (it would change the nodes the
/// plan could not reach); retrying it as a plan plans its failed nodes again.
#[test]
fn retrying_a_plan_plans_again_or_is_refused() {
    let mut fleet = Fleet::start(2);
    fleet.stop_host(1);
    let file = fleet.file("touch.yaml", "- jobs:\n    - RUN: touch ~/touched\n");
    let (status, _, err) = orchestrate_json(&fleet, &file, &["--plan"]);
    assert_eq!(status, 3, "{err}");
    let out = output(fleet.orchestrate(&file).args(["--retry-failed", "last"]));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let run = stderr(&out).split_whitespace().nth(3).unwrap_or_default().to_string();
    assert_eq!(
        stderr(&out),
        format!("error: --retry-failed: run {run} was a plan (--plan): it changed nothing, so there is nothing to run again for real\n  hint: plan its failed and unreachable nodes again with --plan --retry-failed {run}, or run the orchestration without --retry-failed\n")
    );
    assert!(!fleet.hosts[0].home_path("touched").exists(), "a refused retry changed a node");
    let (status, events, err) = orchestrate_json(&fleet, &file, &["--plan", "--retry-failed", "last"]);
    assert_eq!(status, 3, "{err}");
    assert!(err.contains("on 1 node(s): h2"), "{err}");
    assert!(finished(&events, "h1").is_empty());
    assert!(!fleet.hosts[0].home_path("touched").exists());
}

/// What `manage` says of the last job: the id it found, a run's job before a plan's, an exec
/// job's entry named `exec`; `manage --help` keeps the global options apart; counts of one
/// are singular.
#[test]
fn manage_names_what_it_found_and_help_keeps_global_options_apart() {
    let home = scratch("manage-words");
    let ran = output(local_director(&home).args(["exec", "--progress", "plain", "true"]));
    assert_eq!(code(&ran), 0, "{}", stderr(&ran));
    let summary = stdout(&ran).lines().last().unwrap_or_default().to_string();
    assert!(summary.starts_with("summary: 1 node (1 ok, 0 failed, 0 unreachable), 1 job (1 ok, "), "{summary}");
    let file = home.join("o.yaml");
    std::fs::write(&file, "- jobs:\n    - RUN: echo planned\n").unwrap();
    assert_eq!(code(&output(local_director(&home).arg("orchestrate").arg(&file).arg("--plan"))), 0);
    let info = stdout(&manage(local_director(&home), &["--job-info", "last"]));
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).filter(|rest| rest.starts_with(' ')).map(|rest| rest.trim().to_string()))
            .unwrap_or_default()
    };
    assert_eq!(field("ID"), field("JOB_ID"), "{info}");
    assert_eq!((field("JOB_DEFINITION").as_str(), field("PARENT_JOB_NAME").as_str()), ("RUN = true", "exec"), "{info}");
    let jobs = stdout(&manage(local_director(&home), &["--list-jobs"]));
    assert!(jobs.lines().any(|l| l.split_whitespace().nth(2) == Some("exec")), "{jobs}");
    let help = stdout(&output(local_director(&home).args(["manage", "--help"])));
    let (own, global) = help.split_once("\nGlobal options:\n").expect("a Global options section");
    assert!(own.contains("--list-runs") && !own.contains("--history"), "{help}");
    assert!(global.contains("--history") && !global.contains("--list-runs"), "{help}");
}
