//! Orchestrations on real hosts: jobs and entries, the selection, templates and facts, and
//! the embedded local catalog.

use super::*;

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

/// The README's first command, as written there, shows what hello's jobs say (a first run that
/// prints only `ok` lines teaches nothing).
#[test]
fn the_readmes_first_run_shows_what_the_jobs_said() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme.lines().find(|l| l.contains("cargo run --release -- orchestrate")).expect("the Try-it command");
    let args: Vec<&str> = line.split("cargo run --release -- ").nth(1).unwrap().split_whitespace().collect();
    let home = scratch("readme-first-run");
    let out = output(local_director(&home).current_dir(root).args(&args).args(["--progress", "plain"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    for said in ["hello from", "load average", "working in", "3\n"] {
        assert!(text.contains(said), "`{said}` not shown by `director {}`:\n{text}", args.join(" "));
    }
}

/// A job's output streams through at the pace of whoever reads it, in every mode: 300 MB
/// (100 MB in plain mode, which keeps only each job's start and end) printed on a node and
/// read slowly from director's stdout leave its memory bounded (the output waits in the SSH
/// window, not in the operator), and the history keeps its start and its end. (Memory is the product's promise here, not a measure of speed.)
#[test]
fn big_outputs_stream_through_in_bounded_memory() {
    let fleet = Fleet::start(1);
    let file = fleet.file("big.yaml", "- jobs:\n    - RUN: --skip-cache yes printed-by-the-node | head -c 300000000\n");
    let small =
        fleet.file("small.yaml", "- jobs:\n    - RUN: --skip-cache yes printed-by-the-node | head -c 100000000\n");
    for (mode, file) in [(&["--json"][..], &file), (&["--output", "all"][..], &small)] {
        #[allow(clippy::zombie_processes)] // reaped by waitpid in wait_rss
        let mut child = fleet
            .orchestrate(file)
            .args(mode)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            // A reader slower than the node prints.
            let (mut buf, mut total) = (vec![0u8; 64 * 1024], 0usize);
            loop {
                match std::io::Read::read(&mut stdout, &mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        });
        let (status, peak_kib) = wait_rss(&child);
        let read = reader.join().unwrap();
        assert_eq!(status, 0, "{mode:?}");
        // --json passes every byte on; plain output shows each job's start and end.
        if mode[0] == "--json" {
            assert!(read > 300_000_000, "{mode:?}: only {read} bytes came out");
        }
        let peak_mb = peak_kib / 1024;
        assert!(peak_mb > 0, "{mode:?}: no VmHWM read");
        assert!(peak_mb < 100, "{mode:?}: director's memory peaked at {peak_mb} MB");
    }
    let out = output(fleet.director().args(["manage", "--job-info", "last", "--json"]));
    let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stdout = job["results"][0]["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("printed-by-the-node\nprinted-by-the-node\n"), "{}", &stdout[..100]);
    assert!(stdout.contains("\n[… director: "), "{}", &stdout[..100]);
}
