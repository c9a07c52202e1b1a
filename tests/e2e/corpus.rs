//! Directord's own functional-test orchestrations (tests/fixtures/corpus, Apache-2.0), run
//! unchanged from the corpus's orchestrations/ directory on three real sshd hosts.

use super::*;

pub(crate) fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/orchestrations")
}

/// Runs one corpus file from the corpus directory; returns the events after checking the
/// run is green (exit 0, every job ok or cached on every node).
fn run_green(fleet: &Fleet, name: &str) -> Vec<Event> {
    let out = output(
        fleet
            .director()
            .current_dir(corpus_dir())
            .arg("orchestrate")
            .arg(name)
            .arg("--catalog")
            .arg(fleet.catalog())
            .arg("--json"),
    );
    let events = schema::parse(&out.stdout);
    let bad: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::JobFinished { status, .. } if status != "ok" && status != "cached"))
        .collect();
    assert!(bad.is_empty() && code(&out) == 0, "{name}: exit {}\n{bad:#?}\n{}", code(&out), stderr(&out));
    events
}

/// (ok, cached) job counts over every node.
fn counts(events: &[Event]) -> (usize, usize) {
    let s = run_finished(events).0;
    (s.jobs_ok, s.jobs_cached)
}

#[test]
fn directord_functional_tests_run_green_and_then_from_the_cache() {
    let fleet = Fleet::start(3);
    // 50 jobs on all three hosts, 4 --run-once on one: 144 tasks. It ends with CACHEEVICT all,
    // so every run starts from an empty cache and runs everything again.
    for _ in 0..2 {
        assert_eq!(counts(&run_green(&fleet, "functional-tests.yaml")), (144, 0));
    }
    // What is left to run once the caches are warm is exactly the --skip-cache work (and a
    // repeated identical job, which hits the cache its twin just filled).
    for (name, runs, last) in [
        // Run 2 already answers all 21 tasks from the cache.
        ("functional-tests-query.yaml", 2, (0, 21)),
        ("functional-tests-async-transfer.yaml", 2, (0, 90)),
        // Async lanes race an ENV (part of every RUN's fingerprint) and QUERYs (rendered into
        // later RUNs), so run 2 re-runs what saw them change; from run 3 on only the
        // --skip-cache tasks run: 3 in the ECHO lane, 3 + 3 in the two RUN lanes.
        ("functional-tests-async.yaml", 3, (9, 133)),
        // 27 --skip-cache tasks per lane.
        ("functional-tests-async-race.yaml", 3, (81, 27)),
    ] {
        let mut got = (0, 0);
        for _ in 0..runs {
            got = counts(&run_green(&fleet, name));
        }
        assert_eq!(got, last, "{name}");
    }
    // Directord's timing test: 45 s of sleeps in three async lanes takes the longest lane.
    let events = run_green(&fleet, "functional-tests-async-time.yaml");
    assert_eq!(counts(&events), (27, 0));
}

/// Directord's FACTER test: the facts gathered by the executor (no facter on these hosts),
/// collected from every node with QUERY and read in templates.
#[test]
fn the_facter_functional_test_runs_green() {
    let fleet = Fleet::start(3);
    let events = run_green(&fleet, "functional-tests-facter.yaml");
    assert_eq!(counts(&events).0 + counts(&events).1, 12);
}
