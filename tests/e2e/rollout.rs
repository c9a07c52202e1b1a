//! `--serial` and `--max-fail`: the nodes run in batches, and a failure stops the batches
//! that have not started.

use super::harness::Fleet;
use super::schema::Event;
use super::{code, output, run_finished, stderr, stdout};

#[test]
fn batches_run_one_after_another_and_max_fail_stops_the_rest() {
    let fleet = Fleet::start(6);
    // h3 is the bad node: its first job fails there.
    std::fs::write(fleet.hosts[2].home_path("bad"), "").unwrap();
    let file = fleet.file("rollout.yaml", "- jobs:\n    - RUN: test ! -e ~/bad\n    - RUN: touch /tmp/marker\n");
    let out = output(fleet.orchestrate(&file).args(["--serial", "2", "--max-fail", "1", "--json"]));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let events = super::schema::parse(&out.stdout);
    let marked: Vec<&str> =
        fleet.hosts.iter().filter(|h| h.dir.join("tmp/marker").exists()).map(|h| h.name.as_str()).collect();
    assert_eq!(marked, ["h1", "h2", "h4"], "the third batch never started");
    // Each batch starts after every node of the one before has finished.
    let order: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::BatchStarted { batch, batches, nodes, .. } => {
                Some(format!("batch {batch}/{batches} {}", nodes.join(",")))
            }
            Event::NodeFinished { node, ok, .. } => Some(format!("{node} {ok}")),
            _ => None,
        })
        .collect();
    let position = |s: &str| order.iter().position(|o| o == s).unwrap_or_else(|| panic!("{s} in {order:?}"));
    assert!(position("h1 true") < position("batch 2/3 h3,h4"), "{order:?}");
    assert!(position("h2 true") < position("batch 2/3 h3,h4"), "{order:?}");
    assert!(!order.iter().any(|o| o.starts_with("batch 3/3")), "{order:?}");
    let skipped: Vec<(String, String)> = ["h5", "h6"]
        .iter()
        .flat_map(|node| super::finished(&events, node))
        .map(|(_, status, _, reason)| (status.to_string(), reason.unwrap_or_default().to_string()))
        .collect();
    let why = "not started: 1 node(s) failed or were unreachable, which reached --max-fail 1";
    assert_eq!(skipped, vec![("skipped".to_string(), why.to_string()); 4]);
    let (summary, _) = run_finished(&events);
    assert_eq!((summary.jobs_ok, summary.jobs_failed, summary.jobs_skipped), (6, 1, 5));
    // Not attempted is not failed: a script tells "broke" from "not attempted".
    assert_eq!((summary.nodes_ok, summary.nodes_failed, summary.nodes_skipped), (3, 1, 2));

    // The history says which batch each node ran in.
    let info = stdout(&output(fleet.director().args(["manage", "--run-info", "last"])));
    for line in ["h1 = ok, batch 1", "h3 = failed, batch 2", "h4 = ok, batch 2", "h5 = skipped"] {
        assert!(info.contains(line), "{line} in {info}");
    }
    assert!(!info.contains("h5 = skipped, batch"), "{info}");

    // An entry's `serial:` does the same; the text view says when each batch starts.
    std::fs::remove_file(fleet.hosts[2].home_path("bad")).unwrap();
    let file = fleet
        .file("rollout.yaml", "- serial: 50%\n  jobs:\n    - RUN: test ! -e ~/bad\n    - RUN: touch /tmp/marker\n");
    let out = output(fleet.orchestrate(&file).args(["--progress", "plain"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let batches: Vec<&str> = text.lines().filter(|l| l.starts_with("batch ")).collect();
    assert_eq!(batches, ["batch 1 of 2: h[1-3] (3)", "batch 2 of 2: h[4-6] (3)"], "{text}");
}
