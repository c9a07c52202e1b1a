//! `--plan`: per node, which jobs a run would run and why, and which it would answer from the
//! cache, with nothing changed on the nodes (a marker file a job would create stays absent,
//! and the node caches keep their bytes).

use super::harness::Fleet;
use super::schema::Event;
use super::{code, output, run_finished, stderr, stdout};
use std::path::PathBuf;

/// (job, status, reason) of every job that finished on `node`, in job order.
fn planned(events: &[Event], node: &str) -> Vec<(usize, String, String)> {
    let mut rows: Vec<(usize, String, String)> = super::finished(events, node)
        .into_iter()
        .map(|(job, status, _, reason)| (job + 1, status.to_string(), reason.unwrap_or_default().to_string()))
        .collect();
    rows.sort();
    rows
}

fn rows(items: &[(usize, &str, &str)]) -> Vec<(usize, String, String)> {
    items.iter().map(|(j, s, r)| (*j, s.to_string(), r.to_string())).collect()
}

const CACHED: &str = "done before with this exact fingerprint (--ignore-cache runs it again)";
const HELD: &str = "the node's cache already holds this";

#[test]
fn a_plan_says_what_would_run_and_why_and_changes_nothing() {
    let fleet = Fleet::start(3);
    let src = fleet.file("payload.txt", "version 1\n");
    // The catalog's `site` is the default; an earlier run's ARG stores another on the nodes.
    let catalog = fleet.file(
        "site-catalog.yaml",
        &format!("{}vars: {{site: red}}\n", std::fs::read_to_string(fleet.catalog()).unwrap()),
    );
    let deploy = |version: &str| {
        fleet.file(
            "deploy.yaml",
            &format!(
                "- jobs:
    - ADD: {src} /tmp/payload.txt
    - ARG: version {version}
    - RUN: echo {{{{ version }}}} > /tmp/version
    - RUN: --stdout-arg kernel uname -r
    - RUN: echo {{{{ kernel }}}} > /tmp/kernel
    - RUN: echo {{{{ site }}}} > /tmp/site
    - RUN: touch /tmp/marker
",
                src = src.display()
            ),
        )
    };
    let setter = fleet.file("setter.yaml", "- jobs:\n    - ARG: site blue\n");
    let run = |file: &PathBuf, args: &[&str]| {
        let out = output(
            fleet.director().arg("orchestrate").arg(file).arg("--catalog").arg(&catalog).arg("--json").args(args),
        );
        let events = super::schema::parse(&out.stdout);
        (code(&out), events, stderr(&out))
    };
    let caches = || -> Vec<Vec<u8>> { fleet.hosts.iter().map(super::harness::Host::cache_files).collect() };
    let markers = || fleet.hosts.iter().filter(|h| h.dir.join("tmp/marker").exists()).count();
    let file = deploy("1");

    // A blueprint that renders what a job before it would capture depends on it too.
    let tmpl = fleet.file("who.j2", "user = {{ who }}\n");
    let capture = fleet.file(
        "capture.yaml",
        &format!(
            "- jobs:\n    - RUN: --stdout-arg who id -un\n    - ADD: --blueprint {} /tmp/who.conf\n",
            tmpl.display()
        ),
    );
    let (c, events, err) = run(&capture, &["--plan", "--restrict", "h1"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        planned(&events, "h1")[1],
        (
            2,
            "would_run".into(),
            "depends on a job that would run first: job 1 `RUN id -un` captures the arg who it uses".into()
        )
    );

    // Before anything ran: every job would run, and the one that renders what job 4 captures
    // cannot be known before it.
    let (c, events, err) = run(&file, &["--plan"]);
    assert_eq!(c, 0, "{err}");
    assert!(matches!(&events[0], Event::RunStarted { mode, job_list, .. } if mode == "plan" && job_list.len() == 7));
    let never = "never ran on this node";
    assert_eq!(
        planned(&events, "h2"),
        rows(&[
            (1, "would_run", never),
            (2, "would_run", "it changes the node's cached values: args added to cache"),
            (3, "would_run", never),
            (4, "would_run", never),
            (
                5,
                "would_run",
                "depends on a job that would run first: job 4 `RUN uname -r` captures the arg kernel it uses"
            ),
            (6, "would_run", never),
            (7, "would_run", never),
        ])
    );
    let (summary, _) = run_finished(&events);
    assert_eq!((summary.jobs_would_run, summary.jobs_ok, summary.jobs_cached), (21, 0, 0));
    assert_eq!(markers(), 0, "a plan runs nothing");
    assert!(!fleet.hosts[0].dir.join("tmp/payload.txt").exists(), "a plan writes no file");
    assert!(events.iter().all(|e| !matches!(e, Event::JobOutput { .. })));

    // The real runs, then a plan of the same work: all cached, nothing touched.
    assert_eq!(run(&setter, &[]).0, 0);
    let (c, _, err) = run(&file, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(markers(), 3);
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].dir.join("tmp/site")).unwrap(), "blue\n");
    for h in &fleet.hosts {
        std::fs::remove_file(h.dir.join("tmp/marker")).unwrap();
    }
    let before = caches();
    let (c, events, err) = run(&file, &["--plan"]);
    assert_eq!(c, 0, "{err}");
    let all_cached = rows(&[
        (1, "cached", CACHED),
        (2, "cached", HELD),
        (3, "cached", CACHED),
        (4, "cached", CACHED),
        (5, "cached", CACHED),
        (6, "cached", CACHED),
        (7, "cached", CACHED),
    ]);
    assert_eq!(planned(&events, "h1"), all_cached);
    assert_eq!((caches(), markers()), (before.clone(), 0), "a plan changes no node cache");

    // A changed source, a changed ARG, a file changed on the node behind the cache's back.
    std::fs::write(&src, "version 2\n").unwrap();
    let file = deploy("2");
    std::fs::write(fleet.hosts[1].dir.join("tmp/payload.txt"), "tampered\n").unwrap();
    std::fs::write(&src, "version 1\n").unwrap();
    let (_, events, _) = run(&file, &["--plan"]);
    let changed_version = "the arg version it uses changed";
    assert_eq!(
        planned(&events, "h2"),
        rows(&[
            (1, "would_run", "was cached, but /tmp/payload.txt was changed"),
            (2, "would_run", "it changes the node's cached values: args added to cache"),
            (3, "would_run", changed_version),
            (4, "cached", CACHED),
            (5, "cached", CACHED),
            (6, "cached", CACHED),
            (7, "cached", CACHED),
        ])
    );
    std::fs::write(&src, "version 2\n").unwrap();
    let (_, events, _) = run(&file, &["--plan", "--restrict", "h1"]);
    assert_eq!(
        planned(&events, "h1")[0],
        (1, "would_run".to_string(), "the source of /tmp/payload.txt changed".into())
    );
    assert_eq!(planned(&events, "h1")[2], (3, "would_run".to_string(), changed_version.into()));
    assert_eq!((caches(), markers()), (before, 0));
    assert_eq!(std::fs::read_to_string(fleet.hosts[1].dir.join("tmp/payload.txt")).unwrap(), "tampered\n");

    // Expired cached args: `site` falls back to the catalog's, `version` is set again by
    // its ARG, and the captured `kernel` comes back with job 4's record.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let file = deploy("1");
    std::fs::write(&src, "version 1\n").unwrap();
    let (_, events, _) = run(&file, &["--plan", "--args-ttl", "1", "--restrict", "h1"]);
    assert_eq!(
        planned(&events, "h1"),
        rows(&[
            (1, "cached", CACHED),
            (2, "would_run", "it changes the node's cached values: args added to cache"),
            (3, "cached", CACHED),
            (4, "cached", CACHED),
            (5, "cached", CACHED),
            (6, "would_run", "the cached arg site it uses expired"),
            (7, "cached", CACHED),
        ])
    );

    // --ignore-cache and --skip-cache say so; exec says ad-hoc commands always run.
    let (_, events, _) = run(&file, &["--plan", "--ignore-cache", "--restrict", "h1"]);
    assert_eq!(planned(&events, "h1")[6], (7, "would_run".into(), "--ignore-cache: every job runs".into()));
    let out = output(fleet.director().args(["exec", "--plan", "--json", "--catalog"]).arg(&catalog).args([
        "--target",
        "h3",
        "touch /tmp/marker",
    ]));
    assert_eq!(
        planned(&super::schema::parse(&out.stdout), "h3"),
        rows(&[(1, "would_run", "an ad-hoc command always runs (--cached answers it from the node cache)")])
    );
    assert_eq!(markers(), 0);

    // In words: the jobs grouped by what would happen, the plan's own summary line.
    let out = output(fleet.orchestrate(&file).args(["--plan", "--progress", "plain", "--restrict", "h1,h2"]));
    let text = stdout(&out);
    let report: Vec<&str> = text.lines().filter(|l| !l.starts_with("h1 ") && !l.starts_with("h2 ")).collect();
    let report = report.join("\n");
    assert!(
        report.starts_with(
            "job 1: ADD payload.txt /tmp/payload.txt\n  h1 (1)  cached: done before with this exact fingerprint (--ignore-cache runs it again)\n  h2 (1)  would run: was cached, but /tmp/payload.txt was changed\njob 2: ARG version 1\n"
        ),
        "{text}"
    );
    assert!(report.contains("\nplan: 2 nodes (2 ok, 0 failed, 0 unreachable), 14 jobs ("), "{text}");
    assert!(report.ends_with(" s; nothing was run"), "{text}");

    // The history keeps plans apart from runs.
    let out = output(fleet.director().args(["manage", "--list-runs"]));
    assert!(stdout(&out).contains("orchestrate (plan)"), "{}", stdout(&out));
}

#[test]
fn diff_shows_what_each_file_would_change_word_for_word_and_never_a_secret() {
    let fleet = Fleet::start(2);
    let conf = fleet.file("app.conf", "a\nb\nc\n");
    let tmpl = fleet.file("token.j2", "user=app\n");
    let deploy = |mode: &str| {
        fleet.file(
            "deploy.yaml",
            &format!(
                "- jobs:\n    - ARG: --secret token s3cr3t-value\n    - ADD: --chmod={mode} {} /tmp/app.conf\n    - ADD: --blueprint {} /tmp/token.conf\n",
                conf.display(),
                tmpl.display()
            ),
        )
    };
    let file = deploy("0600");
    let (c, _, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    std::fs::write(&conf, "a\nB\nc\n").unwrap();
    std::fs::write(&tmpl, "user=app\ntoken={{ token }}\n").unwrap();
    let file = deploy("0640");
    let said = |events: &[Event], node: &str, job: usize| -> String {
        events
            .iter()
            .filter_map(|e| match e {
                Event::JobOutput { node: n, job: j, data, .. } if n == node && *j == job => Some(data.clone()),
                _ => None,
            })
            .collect()
    };
    let app = "--- before: /tmp/app.conf\n+++ after: /tmp/app.conf\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n/tmp/app.conf: mode 0600 → 0640\n";
    let token = "--- before: /tmp/token.conf\n+++ after: /tmp/token.conf\n@@ -1 +1,2 @@\n user=app\n+token=[secret]\n";
    // With --plan: the diff, and nothing written.
    let (c, events, err) = super::orchestrate_json(&fleet, &file, &["--plan", "--diff"]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(said(&events, "h1", 1), app);
    assert_eq!(said(&events, "h2", 2), token);
    let on_node = fleet.hosts[0].dir.join("tmp/app.conf");
    assert_eq!(std::fs::read_to_string(&on_node).unwrap(), "a\nb\nc\n");
    // A real run with --diff shows the same, then writes.
    let out = output(fleet.orchestrate(&file).args(["--diff", "--progress", "plain", "--restrict", "h1"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("job 2: ADD app.conf /tmp/app.conf\n  h1 (1)  ok\n    │ --- before: /tmp/app.conf\n    │ +++ after: /tmp/app.conf\n    │ @@ -1,3 +1,3 @@\n    │  a\n    │ -b\n    │ +B\n    │  c\n    │ /tmp/app.conf: mode 0600 → 0640\n"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t-value"), "{text}");
    assert_eq!(std::fs::read_to_string(&on_node).unwrap(), "a\nB\nc\n");
    let history = std::fs::read(fleet.path().join("operator-home/.local/state/director/history.db")).unwrap();
    assert!(!history.windows(12).any(|w| w == b"s3cr3t-value"), "the history holds no secret");
    // Unchanged files have no diff: they are cached (and replay what they said when they ran).
    let (_, events, _) = super::orchestrate_json(&fleet, &file, &["--plan", "--diff", "--restrict", "h1"]);
    assert!(!said(&events, "h1", 1).contains("--- before"), "{}", said(&events, "h1", 1));
    assert!(planned(&events, "h1").iter().all(|(_, status, _)| status == "cached"));
}
