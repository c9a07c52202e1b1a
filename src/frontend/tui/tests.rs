//! The TUI driven by keys and events on ratatui's `TestBackend`, its screens compared with
//! insta snapshots (`src/frontend/tui/snapshots/`). Times are offsets from one instant, so
//! every timer on screen is fixed.

use super::app::{Action, App, Dialog, Screen};
use super::view::render;
use crate::catalog::yaml::Document;
use crate::catalog::Catalog;
use crate::event::{Event, JobCounts, JobStatus, NodeOutcome, Stream, Summary};
use crate::history::query::{JobInfo, NodeRow, ResultRow};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::Path;
use std::time::{Duration, Instant};

const FLEET: &str = "
nodes:
  - {name: web1, host: 10.0.0.11, groups: [web]}
  - {name: web2, host: 10.0.0.12, groups: [web]}
  - {name: web3, host: 10.0.0.13, groups: [web]}
  - {name: db1, host: 10.0.0.21, port: 2222, groups: [db]}
  - {name: cache1, host: 10.0.0.31}
";

fn fleet(text: &str) -> Catalog {
    Catalog::from_documents(vec![Document::parse(Path::new("fleet.yaml"), text.to_string()).unwrap()]).unwrap()
}

fn app(catalog: &Catalog, t0: Instant) -> App {
    App::new(
        catalog,
        "fleet.yaml".into(),
        vec!["orchestrations/deploy.yaml".into(), "orchestrations/hello.yaml".into()],
        t0,
    )
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| render(app, f)).unwrap();
    terminal.backend().to_string()
}

fn key(app: &mut App, code: KeyCode) -> Option<Action> {
    app.key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn started(node: &str, job: usize, name: &str) -> Event {
    Event::JobStarted { node: node.into(), job, name: name.into(), fingerprint: "f".into(), info: name.into() }
}

fn finished(node: &str, job: usize, name: &str, status: JobStatus, code: Option<i32>, reason: Option<&str>) -> Event {
    Event::JobFinished {
        node: node.into(),
        job,
        name: name.into(),
        status,
        exit_code: code,
        reason: reason.map(Into::into),
        ms: 10,
    }
}

const ALL: &[&str] = &["web1", "web2", "web3", "db1", "cache1"];

fn run_started(app: &mut App, t0: Instant) {
    app.run_started(
        "orchestrations/deploy.yaml on 5 node(s)".into(),
        super::app::Started::Orchestrate(vec!["orchestrations/deploy.yaml".into()]),
    );
    app.event(
        &Event::RunStarted {
            run: "3f2a9c1b7d00".into(),
            mode: Default::default(),
            job_list: Vec::new(),
            nodes: ALL.iter().map(std::string::ToString::to_string).collect(),
            node_jobs: vec![3; ALL.len()],
            jobs: 3,
            tasks: 15,
        },
        t0,
    );
}

fn ready(app: &mut App, node: &str, at: Instant) {
    app.event(&Event::NodeConnecting { node: node.into(), address: "x".into() }, at);
    app.event(
        &Event::NodeReady {
            node: node.into(),
            arch: "x86_64".into(),
            os: "Debian GNU/Linux 12".into(),
            kernel: "6.1".into(),
            hostname: node.into(),
            ms: 42,
        },
        at,
    );
}

#[test]
fn empty_catalog() {
    let catalog = Catalog { docs: Vec::new(), nodes: Vec::new(), warnings: Vec::new() };
    let app = App::new(&catalog, "empty.yaml".into(), Vec::new(), Instant::now());
    insta::assert_snapshot!(screen(&app, 100, 12));
}

/// What the history knows of db1: its facts, executor, and its outcome in `run`.
fn know_db1(app: &mut App, executor: &str, run: &str, outcome: &str) {
    let row = NodeRow {
        name: "db1".into(),
        address: "root@10.0.0.21:2222".into(),
        arch: "aarch64".into(),
        os: "Ubuntu 24.04".into(),
        kernel: "6.8".into(),
        hostname: "db1".into(),
        executor_sha3: executor.into(),
        last_seen: None,
        last_run: None,
    };
    let last = crate::history::query::LastOutcome { node: "db1".into(), run: run.into(), outcome: outcome.into() };
    app.know(&[row], &[last], |sha3| sha3 == "current");
}

#[test]
fn nodes_connecting() {
    let t0 = Instant::now();
    let catalog = fleet(FLEET);
    let mut app = app(&catalog, t0);
    know_db1(&mut app, "older", "1", "failed");
    run_started(&mut app, t0);
    ready(&mut app, "web1", t0);
    app.event(&Event::NodeConnecting { node: "web2".into(), address: "x".into() }, t0);
    app.event(&Event::NodeConnecting { node: "web3".into(), address: "x".into() }, t0);
    app.event(&started("web1", 0, "RUN apt-get update"), t0);
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Char(' '));
    app.now = t0 + Duration::from_secs(2);
    insta::assert_snapshot!(screen(&app, 110, 12));
}

#[test]
fn run_in_flight() {
    let t0 = Instant::now();
    let catalog = fleet(FLEET);
    let mut app = app(&catalog, t0);
    run_started(&mut app, t0);
    for n in ALL {
        ready(&mut app, n, t0);
    }
    for (i, n) in ["web1", "web2", "web3"].iter().enumerate() {
        app.event(&started(n, 0, "RUN apt-get update"), t0);
        app.event(&finished(n, 0, "RUN apt-get update", JobStatus::Ok, Some(0), None), t0 + Duration::from_secs(2));
        app.event(&started(n, 1, "RUN ./migrate --all"), t0 + Duration::from_secs(2 + i as u64));
    }
    app.event(
        &Event::JobOutput {
            node: "web1".into(),
            job: 1,
            stream: Stream::Stdout,
            data: "migrating users… done\nmigrating orders… ".into(),
        },
        t0 + Duration::from_secs(5),
    );
    app.event(&started("db1", 0, "RUN apt-get update"), t0 + Duration::from_secs(1));
    app.event(&finished("cache1", 0, "RUN apt-get update", JobStatus::Cached, None, None), t0);
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Down);
    app.now = t0 + Duration::from_secs(47);
    insta::assert_snapshot!(screen(&app, 110, 24));
}

#[test]
fn a_finished_run_shows_every_job_grouped_and_a_node_opens_its_details() {
    let t0 = Instant::now();
    let catalog = fleet(FLEET);
    let mut app = app(&catalog, t0);
    know_db1(&mut app, "current", "3f2a9c1b7d00", "ok");
    run_started(&mut app, t0);
    for (i, n) in ALL.iter().enumerate() {
        let at = t0 + Duration::from_secs(1 + i as u64);
        ready(&mut app, n, t0);
        app.event(&started(n, 0, "RUN uname -r"), t0);
        let kernel = if *n == "db1" { "6.1.0-13-amd64\n" } else { "6.1.0-18-amd64\n" };
        app.event(&Event::JobOutput { node: n.to_string(), job: 0, stream: Stream::Stdout, data: kernel.into() }, at);
        app.event(&finished(n, 0, "RUN uname -r", JobStatus::Ok, Some(0), None), at);
        app.event(&Event::node_finished(*n, NodeOutcome::Ok, JobCounts { ok: 1, ..JobCounts::default() }), at);
    }
    let summary = Summary { nodes: 5, nodes_ok: 5, jobs_ok: 5, elapsed_ms: 5_000, ..Summary::default() };
    app.event(&Event::RunFinished { summary, exit_code: 0 }, t0 + Duration::from_secs(5));
    app.run_ended(0);
    app.now = t0 + Duration::from_secs(60);
    insta::assert_snapshot!("every_job_grouped", screen(&app, 100, 26));
    // On the Nodes screen, enter opens the node's details; enter again its last results.
    key(&mut app, KeyCode::Char('1'));
    for _ in 0..3 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("node_details", screen(&app, 100, 20));
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Some(Action::LoadResults { run: "3f2a9c1b7d00".into(), node: Some("db1".into()) })
    );
    assert_eq!(app.dialog, None);
}

#[test]
fn grouped_failures() {
    let t0 = Instant::now();
    let catalog = fleet(FLEET);
    let mut app = app(&catalog, t0);
    run_started(&mut app, t0);
    for (i, n) in ["web1", "web2", "web3", "db1"].iter().enumerate() {
        let at = t0 + Duration::from_secs(1 + i as u64);
        ready(&mut app, n, t0);
        app.event(&started(n, 0, "RUN systemctl restart nginx"), t0);
        let err = if *n == "db1" {
            "Unit nginx.service not found.\n"
        } else {
            "Job for nginx.service failed.\nSee \"journalctl -xeu nginx.service\" for details.\n"
        };
        app.event(&Event::JobOutput { node: n.to_string(), job: 0, stream: Stream::Stderr, data: err.into() }, at);
        app.event(
            &finished(n, 0, "RUN systemctl restart nginx", JobStatus::Failed, Some(1), Some("exited with code 1")),
            at,
        );
        app.event(&Event::node_finished(*n, NodeOutcome::Failed, JobCounts { failed: 1, ..JobCounts::default() }), at);
    }
    app.event(&Event::NodeConnecting { node: "cache1".into(), address: "x".into() }, t0);
    app.event(
        &Event::NodeUnreachable {
            node: "cache1".into(),
            error: "cannot connect to 10.0.0.31:22: Connection refused".into(),
        },
        t0 + Duration::from_secs(10),
    );
    let summary = Summary {
        nodes: 5,
        nodes_failed: 4,
        nodes_unreachable: 1,
        jobs_failed: 4,
        jobs_skipped: 8,
        elapsed_ms: 10_200,
        ..Summary::default()
    };
    app.event(&Event::RunFinished { summary, exit_code: 1 }, t0 + Duration::from_secs(10));
    app.run_ended(1);
    app.now = t0 + Duration::from_secs(60);
    insta::assert_snapshot!(screen(&app, 110, 30));
    assert_eq!(
        key(&mut app, KeyCode::Char('R')),
        Some(Action::Orchestrate {
            files: vec!["orchestrations/deploy.yaml".into()],
            nodes: vec!["web1".into(), "web2".into(), "web3".into(), "db1".into(), "cache1".into()]
        })
    );
}

/// The history time that reads `text` in this machine's time zone.
fn local(text: &str) -> crate::history::query::When {
    let civil: jiff::civil::DateTime = text.parse().unwrap();
    let zoned = civil.to_zoned(jiff::tz::TimeZone::system()).unwrap();
    crate::history::query::When(zoned.timestamp().as_millisecond())
}

#[test]
fn job_detail() {
    let catalog = fleet(FLEET);
    let mut app = app(&catalog, Instant::now());
    let result = ResultRow {
        node: "web2".into(),
        status: crate::history::ResultStatus::Ended(JobStatus::Failed),
        fingerprint: Some("9b1c0e3a5f7d2c4e6a8b0d1f3e5c7a9b2d4f6e8a0c1b3d5f7e9a2c4b".into()),
        info: Some("systemctl restart nginx".into()),
        reason: Some("exited with code 1".into()),
        exit_code: Some(1),
        stdout: String::new(),
        stdout_cut: 0,
        stderr: "Job for nginx.service failed.\nSee \"journalctl -xeu nginx.service\" for details.\n".into(),
        stderr_cut: 0,
        started: Some(local("2026-11-21 10:00:01")),
        finished: Some(local("2026-11-21 10:00:02")),
        execution_ms: Some(812),
        roundtrip_ms: Some(1490),
    };
    let job = JobInfo {
        id: "5d1e0b6a7c9f3e21".into(),
        run: "3f2a9c1b7d00".into(),
        seq: 2,
        parent_id: "p".into(),
        parent_name: Some("restart".into()),
        parent_sha3: "s".into(),
        name: "RUN systemctl restart nginx".into(),
        verb: "RUN".into(),
        definition: serde_json::json!({"RUN": "systemctl restart nginx"}),
        targets: vec!["web2".into()],
        created: local("2026-11-21 10:00:00"),
        results: vec![result],
    };
    app.job = Some((job, "web2".into()));
    app.open(Screen::Job);
    insta::assert_snapshot!(screen(&app, 100, 24));
}

#[test]
fn help() {
    let catalog = fleet(FLEET);
    let mut app = app(&catalog, Instant::now());
    key(&mut app, KeyCode::Char('?'));
    assert_eq!(app.dialog, Some(Dialog::Help));
    insta::assert_snapshot!(screen(&app, 100, 22));
    key(&mut app, KeyCode::Char('x'));
    assert_eq!(app.dialog, None, "any key closes the help");
}

#[test]
fn filter_by_name_group_and_glob_restricts_the_next_run() {
    let catalog = fleet(FLEET);
    let mut app = app(&catalog, Instant::now());
    let shown = |app: &App| app.shown.iter().map(|&i| app.nodes[i].name.clone()).collect::<Vec<_>>();
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "web");
    assert_eq!(shown(&app), ["web1", "web2", "web3"]);
    key(&mut app, KeyCode::Backspace);
    key(&mut app, KeyCode::Backspace);
    key(&mut app, KeyCode::Backspace);
    typed(&mut app, "db");
    assert_eq!(shown(&app), ["db1"], "a group name");
    key(&mut app, KeyCode::Esc);
    assert_eq!(shown(&app).len(), 5, "esc clears the filter");
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "*[23]");
    key(&mut app, KeyCode::Enter);
    assert_eq!(shown(&app), ["web2", "web3"], "a glob");
    // Nothing selected: the shown nodes are the targets. Then the selection wins.
    key(&mut app, KeyCode::Char('x'));
    typed(&mut app, "uptime");
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Some(Action::Exec { command: "uptime".into(), nodes: vec!["web2".into(), "web3".into()] })
    );
    key(&mut app, KeyCode::Char(' '));
    key(&mut app, KeyCode::Char('o'));
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Some(Action::Orchestrate { files: vec!["orchestrations/deploy.yaml".into()], nodes: vec!["web2".into()] })
    );
    key(&mut app, KeyCode::Char('o'));
    typed(&mut app, "/srv/site.yaml");
    assert_eq!(
        key(&mut app, KeyCode::Enter),
        Some(Action::Orchestrate { files: vec!["/srv/site.yaml".into()], nodes: vec!["web2".into()] })
    );
}

#[test]
fn cancel_drains_then_kills_and_quit_waits_for_the_run() {
    let t0 = Instant::now();
    let catalog = fleet(FLEET);
    let mut app = app(&catalog, t0);
    run_started(&mut app, t0);
    assert_eq!(key(&mut app, KeyCode::Char('c')), Some(Action::Cancel(crate::node::CancelLevel::Drain)));
    assert_eq!(
        app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Action::Cancel(crate::node::CancelLevel::Kill))
    );
    assert_eq!(key(&mut app, KeyCode::Char('q')), None, "the first q only warns while a run is in flight");
    assert_eq!(key(&mut app, KeyCode::Char('q')), Some(Action::Cancel(crate::node::CancelLevel::Kill)));
    app.run_ended(130);
    assert_eq!(key(&mut app, KeyCode::Char('q')), Some(Action::Quit));
}
