//! Each verb's options, the fingerprint cache's invalidation rules, QUEUESENTINEL across two
//! runs, and large-file streaming, against real sshd hosts.

use super::*;
use std::io::BufRead;

/// (job, status, reason) of every job on `node`, in the order they finished.
fn statuses(events: &[Event], node: &str) -> Vec<(usize, String)> {
    finished(events, node).iter().map(|f| (f.0, f.1.to_string())).collect()
}

fn stdout_of(events: &[Event], node: &str, job: usize) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::JobOutput { node: n, job: j, stream, data, .. } if n == node && *j == job && stream == "stdout" => {
                Some(data.as_str())
            }
            _ => None,
        })
        .collect()
}

fn fingerprint_of(events: &[Event], node: &str, job: usize) -> String {
    events
        .iter()
        .find_map(|e| match e {
            Event::JobStarted { node: n, job: j, fingerprint, .. } if n == node && *j == job => {
                Some(fingerprint.clone())
            }
            _ => None,
        })
        .expect("job started")
}

#[test]
fn the_cache_answers_unchanged_work_and_nothing_else() {
    let fleet = Fleet::start(2);
    let src = fleet.file("payload.txt", "version 1\n");
    let deploy = |greeting: &str| {
        fleet.file(
            "deploy.yaml",
            &format!(
                "- jobs:\n    - ADD: {src} /tmp/payload.txt\n    - ARG: greeting {greeting}\n    - RUN: echo \"{{{{ greeting }}}}\" > /tmp/greeting\n    - RUN: cat /tmp/payload.txt\n",
                src = src.display()
            ),
        )
    };
    let file = deploy("hello");
    let status_list = |events: &[Event]| statuses(events, "h1").into_iter().map(|s| s.1).collect::<Vec<_>>();
    let (c, first, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(status_list(&first), ["ok", "ok", "ok", "ok"]);
    // Nothing changed: everything is cached, reported as such, and nothing runs.
    let (_, second, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(status_list(&second), ["cached", "cached", "cached", "cached"]);
    // Editing the ADD source re-sends it (Directord skipped it and kept the old file).
    std::fs::write(&src, "version 2\n").unwrap();
    let (_, third, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(status_list(&third), ["ok", "cached", "cached", "cached"]);
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].dir.join("tmp/payload.txt")).unwrap(), "version 2\n");
    // A changed ARG makes the RUN that renders it run again, and only that one.
    let file = deploy("bonjour");
    let (_, fourth, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(status_list(&fourth), ["cached", "ok", "ok", "cached"]);
    assert_eq!(std::fs::read_to_string(fleet.hosts[1].dir.join("tmp/greeting")).unwrap(), "bonjour\n");
    // The cache is not fooled by a file changed behind its back: the ADD runs again.
    std::fs::write(fleet.hosts[0].dir.join("tmp/payload.txt"), "tampered\n").unwrap();
    let (_, fifth, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(status_list(&fifth), ["ok", "cached", "cached", "cached"]);
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].dir.join("tmp/payload.txt")).unwrap(), "version 2\n");
    assert_eq!(
        statuses(&fifth, "h2").into_iter().map(|s| s.1).collect::<Vec<_>>(),
        ["cached", "cached", "cached", "cached"]
    );
    // --ignore-cache runs everything; the ARG still says its value was already so.
    let (_, sixth, _) = orchestrate_json(&fleet, &file, &["--ignore-cache"]);
    assert_eq!(status_list(&sixth), ["ok", "cached", "ok", "ok"]);
    // The cache files on the node are whole JSON: the base (when one was written) and each
    // line of its journal; no temp file is left.
    let dir = fleet.hosts[0].home_path(".cache/director");
    if let Ok(text) = std::fs::read_to_string(dir.join("cache.json")) {
        assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{text}");
    }
    let journal = std::fs::read_to_string(dir.join("cache.journal")).unwrap();
    assert!(journal.lines().count() > 1, "{journal}");
    for line in journal.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{line}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn every_verb_does_what_it_says_on_real_hosts() {
    let fleet = Fleet::start(2);
    let dir = fleet.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.conf"), "a\n").unwrap();
    std::fs::write(dir.join("b.conf"), "b\n").unwrap();
    std::fs::write(dir.join("site.j2"), "name={{ site }} items={{ items | length }}\n").unwrap();
    let orch = format!(
        r#"
- jobs:
    - WORKDIR: --chmod 0750 /tmp/conf/sub
    - COPY: --chmod=0600 --chown=root:root {dir}/*.conf /tmp/conf/
    - RUN: stat -c '%a %U:%G' /tmp/conf/a.conf /tmp/conf/b.conf /tmp/conf/sub
    - ARG: site "{{{{ 'main' | upper }}}}"
    - ARG: items ['x', 'y']
    - ADD: --blueprint {dir}/site.j2 /tmp/conf/site
    - RUN: cat /tmp/conf/site
    - ENV: GREETING hi there
    - RUN: --stdout-arg said echo "$GREETING"
    - RUN: echo said {{{{ said }}}}
    - RUN: >-
        echo '{{"cfg": {{"port": 8080}}}}' > /tmp/conf/vars.json
    - CACHEFILE: /tmp/conf/vars.json
    - RUN: test "{{{{ cfg.port }}}}" = 8080
    - RUN: --no-block sleep 1; touch /tmp/conf/late
    - WAIT: --cmd test -e /tmp/conf/late --retry 20 --retry-wait 1
    - WAIT: --seconds 1
    - RUN: --no-block echo $$ > /tmp/conf/http.pid; exec python3 -m http.server 18931 --bind 127.0.0.1 --directory /tmp/conf
    - WAIT: --url http://127.0.0.1:18931/site --retry 20 --retry-wait 1
    - RUN: kill $(cat /tmp/conf/http.pid)
    - WAIT: --url http://127.0.0.1:1/ --retry 1 --retry-wait 0
- jobs:
    - RUN: --stdout-arg never sh -c 'echo out; exit 3'
    - RUN: echo not reached
- jobs:
    - CACHEEVICT: args
    - RUN: echo {{{{ site }}}}
"#,
        dir = dir.display()
    );
    let file = fleet.file("verbs.yaml", &orch);
    let (c, events, err) = orchestrate_json(&fleet, &file, &["--ignore-cache"]);
    assert_eq!(c, 1, "{err}");
    for host in &fleet.hosts {
        let n = host.name.as_str();
        let got = statuses(&events, n);
        let expect: Vec<(usize, String)> = [
            "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok",
            "ok", "failed", "failed", "skipped", "ok", "failed",
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| (i, s.to_string()))
        .collect();
        assert_eq!(got, expect, "{n}: {events:#?}");
        assert_eq!(stdout_of(&events, n, 0), "Directory /tmp/conf/sub OK\n");
        assert_eq!(stdout_of(&events, n, 2), "600 root:root\n600 root:root\n750 root:root\n");
        assert_eq!(stdout_of(&events, n, 6), "name=MAIN items=2\n");
        assert_eq!(stdout_of(&events, n, 9), "said hi there\n");
        let reasons: Vec<Option<&str>> = finished(&events, n).iter().map(|f| f.3).collect();
        assert_eq!(reasons[19], Some("still not ready after 2 attempts (exited with code 1)"));
        assert_eq!(reasons[20], Some("exited with code 3"));
        assert_eq!(reasons[21], Some("job 21 (RUN sh -c 'echo out; exit 3') failed on this node"));
        assert_eq!(
            reasons[23],
            Some(format!("undefined variable `site`: the node's cache has no such arg (set it with ARG, --stdout-arg, CACHEFILE or QUERY) (job 24 `RUN echo {{{{ site }}}}` on node {n})").as_str())
        );
        // A failed --stdout-arg job stays failed and stores nothing.
        let cache = String::from_utf8(host.cache_files()).unwrap();
        assert!(cache.contains("\"jobs\"") && !cache.contains("\"never\""), "{cache}");
    }
    // --exec-help prints the verb's usage and contacts nothing.
    let out =
        output(fleet.director().args(["exec", "--verb", "WAIT", "--exec-help"]).arg("--catalog").arg(fleet.catalog()));
    assert_eq!(code(&out), 0);
    assert!(
        stdout(&out).starts_with(
            "usage: WAIT (--seconds N | --url URL | --cmd COMMAND...) [--retry N] [--retry-wait SECS] [--insecure]\n"
        ),
        "{}",
        stdout(&out)
    );
}

#[test]
fn query_and_the_waits_coordinate_nodes() {
    let fleet = Fleet::start(3);
    let orch = r#"
- jobs:
    - RUN: --stdout-arg ip echo "addr-$(hostname)-$$"
    - QUERY: ip
    - RUN: test "{{ query | length }}" = 3
    - QUERY_WAIT: ip --identity h1 h2 h3
    - RUN: echo "{{ query.h1.ip }}"
- async: true
  jobs:
    - RUN: sleep 1; echo marker
      assign: [h1]
- async: true
  jobs:
    - JOB_WAIT: MARKER --identity h1
      assign: [h2]
"#;
    // The JOB_WAIT needs the marker job's fingerprint: a first run tells it.
    let probe = fleet.file("probe.yaml", "- jobs:\n    - RUN: sleep 1; echo marker\n      assign: [h1]\n");
    let (_, events, _) = orchestrate_json(&fleet, &probe, &["--ignore-cache"]);
    let marker = fingerprint_of(&events, "h1", 0);
    // Forget it again, so the wait really waits for this run's job.
    let evict = fleet.file("evict.yaml", &format!("- jobs:\n    - CACHEEVICT: {marker}\n      assign: [h1]\n"));
    assert_eq!(orchestrate_json(&fleet, &evict, &[]).0, 0);
    let file = fleet.file("query.yaml", &orch.replace("MARKER", &marker));
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}\n{events:#?}");
    let h1_ip = stdout_of(&events, "h1", 0);
    for n in ["h1", "h2", "h3"] {
        assert_eq!(stdout_of(&events, n, 4), h1_ip, "{n} sees h1's value through the query");
    }
    // The wait lasted at least as long as the marker's sleep: it cannot end before that job.
    let waited = events.iter().find_map(|e| match e {
        Event::JobFinished { node, job: 6, status, ms, .. } if node == "h2" => Some((status.clone(), *ms)),
        _ => None,
    });
    let (status, ms) = waited.unwrap();
    assert!(status == "ok" && ms >= 900, "JOB_WAIT {status} after {ms} ms");
}

#[test]
fn a_queue_sentinel_from_another_run_drains_the_pending_jobs() {
    let fleet = Fleet::start(3);
    let mut child = fleet
        .director()
        .current_dir(crate::corpus::corpus_dir())
        .args(["orchestrate", "functional-tests-queue-sentinel.yaml", "--json", "--catalog"])
        .arg(fleet.catalog())
        .spawn_piped();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut started = std::collections::HashSet::new();
    let mut all = String::new();
    while started.len() < 3 {
        let line = lines.next().expect("the run ended before every node started").unwrap();
        if let Some(Event::JobStarted { node, .. }) = schema::parse(line.as_bytes()).pop() {
            started.insert(node);
        }
        all.push_str(&line);
        all.push('\n');
    }
    let out = output(
        fleet
            .director()
            .args(["exec", "--verb", "QUEUESENTINEL", "--json", "--catalog"])
            .arg(fleet.catalog())
            .arg("stop"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for line in lines {
        all.push_str(&line.unwrap());
        all.push('\n');
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let events = schema::parse(all.as_bytes());
    for n in ["h1", "h2", "h3"] {
        let f = finished(&events, n);
        // Each of the two lanes finishes the sleep it had started; the other 158 are dropped.
        assert_eq!(f.iter().filter(|f| f.1 == "ok").count(), 2, "{n}");
        let skipped: Vec<_> = f.iter().filter(|f| f.1 == "skipped").collect();
        assert_eq!(skipped.len(), 158, "{n}");
        assert!(
            skipped
                .iter()
                .all(|f| f.3.is_some_and(|r| r.starts_with(&format!("omitted: queue sentinel from {n} (run ")))),
            "{skipped:?}"
        );
    }
}

/// Max resident memory of a finished child, in KiB (wait4 reports it for that child alone).
/// `bytes` random bytes at `path`.
fn random_file(path: &Path, bytes: u64) {
    let made = Command::new("sh").arg("-c").arg(format!("head -c {bytes} /dev/urandom > {}", path.display())).status();
    assert!(made.unwrap().success());
}

#[test]
fn a_200_mb_file_streams_with_flat_memory_and_never_lands_half_written() {
    let fleet = Fleet::start(1);
    let big = fleet.path().join("big.bin");
    random_file(&big, 200_000_000);
    let file = fleet.file("big.yaml", &format!("- jobs:\n    - COPY: {} /tmp/big.bin\n", big.display()));
    #[allow(clippy::zombie_processes)] // reaped by waitpid in wait_rss
    // Its summary line is not the test's output.
    let child = fleet
        .orchestrate(&file)
        .arg("--progress=none")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (status, rss_kib) = wait_rss(&child);
    assert_eq!(status, 0);
    let landed = fleet.hosts[0].dir.join("tmp/big.bin");
    assert!(Command::new("cmp").arg(&big).arg(&landed).status().unwrap().success(), "the copy differs");
    // The operator never holds the file: its peak memory is far below the 200 MB it sent.
    assert!(rss_kib > 1024 && rss_kib < 64 * 1024, "operator peak RSS {rss_kib} KiB");

    // Killed mid-transfer: the destination is never a truncated file, and the temp goes.
    let fresh = fleet.file("big2.yaml", &format!("- jobs:\n    - COPY: {} /tmp/big2.bin\n", big.display()));
    let mut child = fleet
        .director()
        .arg("orchestrate")
        .arg(&fresh)
        .arg("--catalog")
        .arg(fleet.catalog())
        .arg("--progress=none")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let tmp = fleet.hosts[0].dir.join("tmp");
    let temp_exists = || {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".big2.bin.director-"))
    };
    // Hashing 200 MB comes first; a loaded machine may take its time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !temp_exists() {
        assert!(std::time::Instant::now() < deadline, "the transfer never started");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while temp_exists() {
        assert!(std::time::Instant::now() < deadline, "the temp file was left behind");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!tmp.join("big2.bin").exists(), "a half-written destination appeared");
    let _ = std::fs::remove_file(&big);
}

#[test]
fn content_sent_packed_or_as_it_is_lands_byte_for_byte_on_every_node() {
    let fleet = Fleet::start(2);
    // About 1 MB that packs well (several data frames, each packed), and noise that does not.
    let text: String = (0..28_000).map(|i| format!("line {i} of a file that packs well\n")).collect();
    fleet.file("text.txt", &text);
    let noise = fleet.path().join("noise.bin");
    random_file(&noise, 300_000);
    fleet.file("page.j2", &format!("{{{{ greeting }}}}\n{}", "a templated line that packs well\n".repeat(400)));
    let file = fleet.file(
        "pack.yaml",
        "- jobs:\n    - ARG: greeting hello\n    - COPY: text.txt /tmp/text.txt\n    - COPY: noise.bin /tmp/noise.bin\n    - ADD: --blueprint page.j2 /tmp/page.txt\n",
    );
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(run_finished(&events).0.jobs_ok, 8);
    let page = format!("hello\n{}", "a templated line that packs well\n".repeat(400));
    for host in &fleet.hosts {
        assert_eq!(std::fs::read_to_string(host.dir.join("tmp/text.txt")).unwrap(), text);
        assert_eq!(std::fs::read(host.dir.join("tmp/noise.bin")).unwrap(), std::fs::read(&noise).unwrap());
        assert_eq!(std::fs::read_to_string(host.dir.join("tmp/page.txt")).unwrap(), page);
    }
}

#[test]
fn a_large_batch_of_cache_records_sent_packed_is_kept_whole() {
    let fleet = Fleet::start(2);
    // 65 KB of captured output that LZ4 makes a quarter of it, kept as an arg in each node's
    // cache: its record goes packed.
    let capture =
        fleet.file("capture.yaml", "- jobs:\n    - RUN: --stdout-arg numbers seq -f 'node output line %g' 1 3000\n");
    let (c, _, err) = orchestrate_json(&fleet, &capture, &[]);
    assert_eq!(c, 0, "{err}");
    // A later run reads it back from the node's journal.
    let file = fleet.file("use.yaml", "- jobs:\n    - RUN: echo \"{{ numbers }}\" | sed -n '1p;$p' > /tmp/ends\n");
    let (c, _, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    for host in &fleet.hosts {
        let ends = std::fs::read_to_string(host.dir.join("tmp/ends")).unwrap();
        assert_eq!(ends, "node output line 1\nnode output line 3000\n");
        // Stored as text (the journal, or the base it was folded into), not as it travelled.
        let stored: String = ["cache.journal", "cache.json"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(host.home_path(&format!(".cache/director/{f}"))).ok())
            .collect();
        assert!(stored.contains("line 2999\\nnode output line 3000"), "{}", stored.len());
    }
}

#[test]
fn the_12_job_deploy_runs_cold_then_entirely_from_the_cache() {
    let fleet = Fleet::start(3);
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deploy/deploy-12.yaml");
    let (c, first, err) = orchestrate_json(&fleet, &deploy, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!((run_finished(&first).0.jobs_ok, run_finished(&first).0.jobs_cached), (36, 0));
    assert_eq!(std::fs::read_to_string(fleet.hosts[2].dir.join("tmp/app/peers")).unwrap(), "3 nodes\n");
    let (c, second, _) = orchestrate_json(&fleet, &deploy, &[]);
    assert_eq!(c, 0);
    assert_eq!((run_finished(&second).0.jobs_ok, run_finished(&second).0.jobs_cached), (0, 36));
}

#[test]
fn a_cache_hit_is_checked_on_the_node_and_drift_is_done_again() {
    let fleet = Fleet::start(3);
    let src = fleet.file("payload.txt", "payload\n");
    let file = fleet.file(
        "demo.yaml",
        &format!(
            "- jobs:\n    - WORKDIR: --chmod 0750 /tmp/demo/conf\n    - ADD: --chmod 0640 {} /tmp/demo/payload.txt\n    - RUN: echo trusted >> /tmp/demo/runs\n",
            src.display()
        ),
    );
    let (c, _, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    // Behind director's back: h1 loses the whole directory, h2's file and directory get
    // other modes; h3 is left alone.
    std::fs::remove_dir_all(fleet.hosts[0].dir.join("tmp/demo")).unwrap();
    let mode = |path: std::path::PathBuf, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    };
    mode(fleet.hosts[1].dir.join("tmp/demo/payload.txt"), 0o600);
    mode(fleet.hosts[1].dir.join("tmp/demo/conf"), 0o777);
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let said = |node: &str| -> Vec<(String, String)> {
        super::finished(&events, node)
            .into_iter()
            .map(|(_, status, _, reason)| (status.to_string(), reason.unwrap_or_default().to_string()))
            .collect()
    };
    let cached =
        ("cached".to_string(), "done before with this exact fingerprint (--ignore-cache runs it again)".to_string());
    let again = |why: &str| ("ok".to_string(), format!("was cached, but {why}: done again"));
    assert_eq!(
        said("h1"),
        [again("/tmp/demo/conf is gone"), again("/tmp/demo/payload.txt is gone"), cached.clone()],
        "RUN is trusted: its record stands"
    );
    assert_eq!(
        said("h2"),
        [
            again("/tmp/demo/conf changed (mode 0777 → 0750)"),
            again("/tmp/demo/payload.txt changed (mode 0600 → 0640)"),
            cached.clone()
        ]
    );
    assert_eq!(said("h3"), [cached.clone(), cached.clone(), cached]);
    let meta = |path: std::path::PathBuf| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
    };
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].dir.join("tmp/demo/payload.txt")).unwrap(), "payload\n");
    assert_eq!(meta(fleet.hosts[0].dir.join("tmp/demo/conf")), 0o750);
    assert_eq!(meta(fleet.hosts[1].dir.join("tmp/demo/payload.txt")), 0o640);
    assert_eq!(meta(fleet.hosts[1].dir.join("tmp/demo/conf")), 0o750);
    // A plan says the same before anything is done.
    mode(fleet.hosts[2].dir.join("tmp/demo/conf"), 0o700);
    let (_, events, _) = orchestrate_json(&fleet, &file, &["--plan", "--restrict", "h3"]);
    let first = events.iter().find_map(|e| match e {
        Event::JobFinished { job: 0, status, reason, .. } => Some((status.clone(), reason.clone().unwrap_or_default())),
        _ => None,
    });
    assert_eq!(first, Some(("would_run".into(), "was cached, but /tmp/demo/conf changed (mode 0700 → 0750)".into())));
}

/// A cache hit is checked against the node as it is when the hit comes, not as it was when
/// the node started (any look-ahead must keep this): a RUN of the same run that rewrites a file
/// and removes a directory before their hits are checked is seen, and both are done again.
#[test]
fn cache_hits_see_what_earlier_jobs_of_the_run_changed() {
    let fleet = Fleet::start(1);
    let src = fleet.file("payload.txt", "payload\n");
    let file = fleet.file(
        "look.yaml",
        &format!(
            "- jobs:\n    - RUN: --skip-cache mkdir -p /tmp/look && echo tampered > /tmp/look/payload.txt && rm -rf /tmp/look/conf\n    - WORKDIR: /tmp/look/conf\n    - ADD: {} /tmp/look/payload.txt\n",
            src.display()
        ),
    );
    let said = |events: &[Event]| -> Vec<(String, String)> {
        super::finished(events, "h1")
            .into_iter()
            .map(|(_, status, _, reason)| (status.to_string(), reason.unwrap_or_default().to_string()))
            .collect()
    };
    let (c, _, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let again = |why: &str| ("ok".to_string(), format!("was cached, but {why}: done again"));
    assert_eq!(
        said(&events),
        [("ok".into(), String::new()), again("/tmp/look/conf is gone"), again("/tmp/look/payload.txt was changed")]
    );
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].dir.join("tmp/look/payload.txt")).unwrap(), "payload\n");
    assert!(fleet.hosts[0].dir.join("tmp/look/conf").is_dir());
}

/// The stats asked of the node ahead of a cached entry's checks (one write for all its jobs)
/// no longer hold once a job of the entry runs: here the first ADD finds one of its files
/// changed and runs again, rewriting the file the second ADD's record is checked against,
/// which the first ADD's check never got to (it stopped at the changed file). The second ADD
/// must see the rewrite and run again, not take the answer asked before.
#[test]
fn a_job_that_runs_again_voids_what_was_asked_ahead_for_the_jobs_after_it() {
    let fleet = Fleet::start(1);
    for dir in ["one", "two"] {
        std::fs::create_dir_all(fleet.dir.join(dir)).unwrap();
    }
    let (a, one, two) =
        (fleet.file("a.txt", "a\n"), fleet.file("one/p.txt", "one\n"), fleet.file("two/p.txt", "two\n"));
    let file = fleet.file(
        "void.yaml",
        &format!(
            "- jobs:\n    - WORKDIR: /tmp/void\n    - ADD: {} {} /tmp/void/\n    - ADD: {} /tmp/void/p.txt\n",
            a.display(),
            one.display(),
            two.display()
        ),
    );
    let (c, _, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let node = fleet.hosts[0].dir.join("tmp/void");
    std::fs::write(node.join("a.txt"), "tampered\n").unwrap();
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let said: Vec<(String, String)> = super::finished(&events, "h1")
        .into_iter()
        .map(|(_, status, _, reason)| (status.to_string(), reason.unwrap_or_default().to_string()))
        .collect();
    let again = |why: &str| ("ok".to_string(), format!("was cached, but {why}: done again"));
    assert_eq!(said[0].0, "cached");
    assert_eq!(said[1..], [again("/tmp/void/a.txt was changed"), again("/tmp/void/p.txt was changed")]);
    assert_eq!(std::fs::read_to_string(node.join("p.txt")).unwrap(), "two\n");
    assert_eq!(std::fs::read_to_string(node.join("a.txt")).unwrap(), "a\n");
}

/// FACTER's facts come from the executor, in facter's shape, under the arg `facter`, and the
/// other args stay (Directord replaced them all).
#[test]
fn facter_gathers_the_facts_without_facter_and_keeps_the_other_args() {
    let fleet = Fleet::start(1);
    let file = fleet.file(
        "facts.yaml",
        "- jobs:\n    - ARG: kept yes\n    - FACTER:\n    - RUN: echo {{ kept }} {{ facter.kernel }} {{ facter.networking.interfaces | length > 1 }} {{ facter.processors.count > 0 }} {{ facter.memory.system.total_bytes > 0 }} {{ facter.os.release.major }}\n",
    );
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let printed = super::printed(&events, None, Some(2));
    let major = std::fs::read_to_string("/etc/os-release")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_ID="))
        .map(|v| v.trim_matches('"').split('.').next().unwrap().to_string())
        .unwrap();
    assert_eq!(printed, format!("yes Linux True True True {major}\n"));
    // The host's own address is among its interfaces' bindings.
    let addr = fleet.hosts[0].addr.clone();
    let file = fleet.file("addr.yaml", "- jobs:\n    - RUN: echo '{{ facter.networking.interfaces | tojson }}'\n");
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let printed = super::printed(&events, None, None);
    assert!(
        printed.contains(&format!("\"address\":\"{addr}\"")) && printed.contains("\"netmask\":\"255.255.255."),
        "{printed}"
    );
}

/// CONTAINER_CONFIG_DATA reads the node's JSON files into the arg `configs`, overrides merged;
/// SECONTEXT on a node without SELinux says so.
#[test]
fn container_config_data_reads_the_nodes_json_and_secontext_needs_selinux() {
    let fleet = Fleet::start(1);
    let dir = fleet.hosts[0].dir.join("tmp/configs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.json"), r#"{"image": "web", "env": {"A": "1"}}"#).unwrap();
    std::fs::write(dir.join("b.json"), r#"{"image": "db"}"#).unwrap();
    std::fs::write(dir.join("notes.txt"), "not json").unwrap();
    let file = fleet.file(
        "configs.yaml",
        "- jobs:\n    - CONTAINER_CONFIG_DATA: --config-path /tmp/configs\n      vars:\n        config_overrides: {a.json: {env: {B: '2'}}}\n    - RUN: echo '{{ configs | tojson }}'\n",
    );
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let printed = super::printed(&events, None, Some(1));
    assert_eq!(
        printed,
        "{\"a.json\":{\"image\":\"web\",\"env\":{\"A\":\"1\",\"B\":\"2\"}},\"b.json\":{\"image\":\"db\"}}\n"
    );
    let file = fleet.file("se.yaml", "- jobs:\n    - SECONTEXT: --setype httpd_sys_content_t /srv\n");
    let (c, events, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 1);
    let told = super::printed(&events, None, None);
    assert!(
        !std::path::Path::new("/sys/fs/selinux/enforce").exists(),
        "the test hosts share this machine, which must not run SELinux"
    );
    assert_eq!(
        told,
        "SECONTEXT needs SELinux on the node: it is not enabled there (selinuxenabled says no, or is missing)\n"
    );
}
