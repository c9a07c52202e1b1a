//! The node cache's journal on real hosts: what a run reported saved survives a killed
//! executor, two runs at once on one node keep each other's records, a torn or stale journal
//! is handled, a long journal is folded into the base, and a cache of 100,000 records works.

use super::harness::Fleet;
use super::SpawnPiped;
use super::{cached_hit, code, finished, local_director, notices, orchestrate_json, said, schema, scratch, stderr};
use std::io::BufRead;
use std::process::Stdio;

/// An orchestration of `n` distinct `RUN echo` jobs whose outputs start with `tag`.
fn echoes(tag: &str, n: usize) -> String {
    let mut text = String::from("- jobs:\n");
    for i in 0..n {
        text.push_str(&format!("    - RUN: echo {tag}{i}\n"));
    }
    text
}

/// A one-host fleet whose node has run three `echo` jobs tagged `tag`, and its node's
/// state directory (the cache's base and journal).
fn three_saved(tag: &str) -> (Fleet, std::path::PathBuf) {
    let fleet = Fleet::start(1);
    let three = fleet.file("three.yaml", &echoes(tag, 3));
    let (code, _, err) = orchestrate_json(&fleet, &three, &[]);
    assert_eq!(code, 0, "{err}");
    let dir = fleet.hosts[0].home_path(".cache/director");
    (fleet, dir)
}

/// Runs four `echo` jobs tagged `tag` on a node that remembers the first three: they are
/// answered from its cache, the fourth runs, and a second run finds all four cached. Returns
/// the orchestration's file.
fn three_cached_then_a_fourth_saved(fleet: &Fleet, tag: &str) -> std::path::PathBuf {
    let four = fleet.file("four.yaml", &echoes(tag, 4));
    let (code, events, err) = orchestrate_json(fleet, &four, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(notices(&events), Vec::<String>::new());
    let statuses: Vec<&str> = finished(&events, "h1").into_iter().map(|f| f.1).collect();
    assert_eq!(statuses, ["cached", "cached", "cached", "ok"]);
    let (code, events, err) = orchestrate_json(fleet, &four, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(said(&events, "h1"), vec![cached_hit(); 4]);
    four
}

#[test]
fn two_runs_at_once_on_one_node_keep_both_their_records() {
    let fleet = Fleet::start(1);
    let (a, b) = (fleet.file("a.yaml", &echoes("a", 40)), fleet.file("b.yaml", &echoes("b", 40)));
    // Two operators (two histories, so no node lock between them) on one node at once.
    let spawn = |file: &std::path::Path, history: &str| {
        fleet
            .orchestrate(file)
            .args(["--progress", "none", "--history"])
            .arg(fleet.path().join(history))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(&a, "one.db"), spawn(&b, "two.db"));
    for child in [first, second] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for file in [&a, &b] {
        let (code, events, err) = orchestrate_json(&fleet, file, &[]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(said(&events, "h1"), vec![cached_hit(); 40], "{}", file.display());
    }
}

#[test]
fn a_killed_executor_loses_no_record_it_saved() {
    let fleet = Fleet::start(1);
    let file = fleet.file("many.yaml", &echoes("n", 400));
    let mut child = fleet.orchestrate(&file).arg("--json").spawn_piped();
    let mut saved = Vec::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(schema::Event::JobFinished { job, status, .. }) = schema::parse(line.as_bytes()).pop() {
            assert_eq!(status, "ok", "{line}");
            saved.push(job);
            if saved.len() == 100 {
                // Mid-run: the executor dies at once, between or inside its appends. It is
                // found among the host's processes.
                let pids = fleet.hosts[0].executor_pids();
                assert_eq!(pids.len(), 1, "{pids:?}");
                // SAFETY: killing the executor this test's run started.
                assert_eq!(unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) }, 0);
                break;
            }
        }
    }
    // After the kill, a job may still be reported done whose record was on its way: it is
    // named in a notice (it will run again), and only those are not remembered.
    let mut unsaved = Vec::new();
    for line in lines {
        match schema::parse(line.unwrap().as_bytes()).pop() {
            Some(schema::Event::JobFinished { job, status, .. }) if status == "ok" => saved.push(job),
            Some(schema::Event::NodeNotice { message, .. }) => {
                assert!(message.ends_with("; it will run again next time"), "{message}");
                let number = message.strip_prefix("job ").and_then(|m| m.split(' ').next()).unwrap();
                unsaved.push(number.parse::<usize>().unwrap() - 1);
            }
            _ => {}
        }
    }
    saved.retain(|job| !unsaved.contains(job));
    // Records are saved in job order: what was lost is the end, after every job kept (how
    // many depends on how many finished while the last append was syncing).
    assert!(unsaved.iter().all(|u| saved.iter().all(|s| s < u)), "saved {saved:?}, unsaved {unsaved:?}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(saved.len() < 400);
    // Every job the run reported done is answered from the cache; the cache is whole.
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(notices(&events), Vec::<String>::new());
    let done = finished(&events, "h1");
    assert_eq!(done.len(), 400);
    for (job, status, _, _) in done {
        if unsaved.contains(&job) {
            // Its record may have reached the disk just before the executor died, unconfirmed:
            // told as lost, it is either.
            assert!(status == "cached" || status == "ok", "job {job}: {status}");
            continue;
        }
        let want = if saved.contains(&job) { "cached" } else { "ok" };
        assert_eq!(status, want, "job {job}");
    }
}

#[test]
fn a_torn_journal_line_is_skipped_and_a_replaced_base_drops_its_journal() {
    let (fleet, dir) = three_saved("t");
    let journal = dir.join("cache.journal");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&journal).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // An append cut short by a crash: half a line at the end.
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str("{\"s\":\"jobs\",\"k\":\"00ab");
    std::fs::write(&journal, text).unwrap();
    // The fourth record goes on a line of its own after the torn one.
    let four = three_cached_then_a_fourth_saved(&fleet, "t");
    // A base replaced without its journal (a hand edit, an older director): the journal is
    // not replayed onto it.
    std::fs::write(dir.join("cache.json"), "{\"v\":1}").unwrap();
    let (code, events, err) = orchestrate_json(&fleet, &four, &[]);
    assert_eq!(code, 0, "{err}");
    let statuses: Vec<&str> = finished(&events, "h1").into_iter().map(|f| f.1).collect();
    assert_eq!(statuses, ["ok"; 4]);
}

/// A cache whose journal made more dead weight than a quarter of what is live is folded by
/// the next run (the operator replays the journal and sends the result back); a journal of
/// live records only is left as it is, however long (a base would hold the same bytes); and
/// one past what is sent as it is is folded by the executor as it starts. Every record is
/// still there after.
#[test]
fn a_journal_of_dead_weight_is_folded_into_the_base_by_the_next_run() {
    let home = scratch("journal-compaction");
    let file = home.join("many.yaml");
    // Run with --skip-cache, each job records its success again every run: the record it
    // replaces is dead weight.
    std::fs::write(&file, echoes("c", 100).replace("RUN: echo", "RUN: --skip-cache echo")).unwrap();
    let run = || {
        let out = local_director(&home).arg("orchestrate").arg(&file).arg("--json").output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        schema::parse(&out.stdout)
    };
    let dir = home.join(".cache/director");
    let size = |name: &str| std::fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0) as usize;
    let (min, at) = (director_proto::journal::COMPACT_MIN, director_proto::journal::COMPACT_AT);
    run();
    let live = size("cache.journal");
    assert!(live > min && 2 * live < at, "{live}");
    // All live: the next run leaves it and adds as much again, all of it replacing records.
    run();
    assert_eq!(size("cache.json"), 0);
    assert!(size("cache.journal") > live + live * 9 / 10, "{} {live}", size("cache.journal"));
    // A plan changes nothing on the node, this neither.
    let before = size("cache.journal");
    let out = local_director(&home).arg("orchestrate").arg(&file).arg("--plan").output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(size("cache.journal"), before);
    // Half of it dead, past COMPACT_MIN: folded before the run adds its own records.
    run();
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cache.json")).unwrap()).unwrap();
    assert_eq!(base["jobs"].as_object().unwrap().len(), 100);
    assert!(size("cache.journal") < live + 100, "{} {live}", size("cache.journal"));
    let _ = std::fs::remove_dir_all(&home);

    // 700 records, all live, past what the executor sends as it is.
    let home = scratch("journal-compaction-700");
    let file = home.join("many.yaml");
    std::fs::write(&file, echoes("d", 700)).unwrap();
    let dir = home.join(".cache/director");
    let size = |name: &str| std::fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0) as usize;
    let run = || {
        let out = local_director(&home).arg("orchestrate").arg(&file).arg("--json").output().unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        schema::parse(&out.stdout)
    };
    run();
    assert!(size("cache.journal") > at, "{}", size("cache.journal"));
    let events = run();
    assert!(finished(&events, "localhost").iter().all(|f| f.1 == "cached"));
    assert!(size("cache.journal") < 200, "{}", size("cache.journal"));
    let base: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cache.json")).unwrap()).unwrap();
    assert_eq!(base["jobs"].as_object().unwrap().len(), 700);
    let events = run();
    assert_eq!(finished(&events, "localhost").iter().filter(|f| f.1 == "cached").count(), 700);
    let _ = std::fs::remove_dir_all(&home);
}

/// A node cache of 100,000 job records (about 45 MB, three times what a frame may carry)
/// reaches the operator after the greeting, answers its jobs, and takes new records.
#[test]
fn a_cache_of_100000_records_loads_and_works() {
    let (fleet, dir) = three_saved("r");
    // The records the run made, folded into a base by hand, with 100,000 more beside them.
    let mut base = serde_json::json!({"v": 1});
    for line in std::fs::read_to_string(dir.join("cache.journal")).unwrap().lines().skip(1) {
        let change: serde_json::Value = serde_json::from_str(line).unwrap();
        let (section, key) = (change["s"].as_str().unwrap(), change["k"].as_str().unwrap());
        base[section][key] = change["v"].clone();
    }
    let record = base["jobs"].as_object().unwrap().values().next().unwrap().clone();
    let jobs = base["jobs"].as_object_mut().unwrap();
    assert_eq!(jobs.len(), 3);
    for n in 0..100_000u64 {
        jobs.insert(format!("{n:056x}"), record.clone());
    }
    let text = serde_json::to_string(&base).unwrap();
    assert!(text.len() > 2 * director_proto::MAX_FRAME, "{}", text.len());
    std::fs::write(dir.join("cache.json"), text).unwrap();
    std::fs::remove_file(dir.join("cache.journal")).unwrap();
    // The new record goes to the journal and is replayed onto the large base.
    three_cached_then_a_fourth_saved(&fleet, "r");
}
