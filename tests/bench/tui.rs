//! The cost of one TUI frame at fleet scale: 1,000 nodes (`BENCH_NODES`), drawn on ratatui's
//! `TestBackend` at 200×60, for the nodes screen, a run in flight (every node connected, a
//! third running with output, some failed) and the finished run's summary with grouped
//! failures; plus the cost of applying the run's events. Medians over `BENCH_ROUNDS` (200)
//! frames. Run with `cargo bench --bench tui`.

mod stats;

use director::api::{
    render, App, Catalog, Document, Event, JobCounts, JobStatus, NodeOutcome, Started, Stream, Summary,
};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use stats::median;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let n: usize = std::env::var("BENCH_NODES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut text = String::from("groups:\n  web: {}\nnodes:\n");
    for i in 0..n {
        text.push_str(&format!("  - {{name: node{i:04}, host: 10.1.{}.{}, groups: [web]}}\n", i / 250, i % 250 + 1));
    }
    let catalog = Catalog::from_documents(vec![Document::parse(Path::new("fleet.yaml"), text).unwrap()]).unwrap();
    let t0 = Instant::now();
    let mut app = App::new(&catalog, "fleet.yaml".into(), Vec::new(), t0);
    let names: Vec<String> = catalog.nodes.iter().map(|n| n.name.clone()).collect();
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let mut frame = |app: &App| {
        let start = Instant::now();
        terminal.draw(|f| render(app, f)).unwrap();
        start.elapsed()
    };
    let nodes_screen = median((0..rounds).map(|_| frame(&app)).collect());

    let mut events = vec![Event::RunStarted {
        run: "bench".into(),
        mode: Default::default(),
        job_list: Vec::new(),
        nodes: names.clone(),
        node_jobs: vec![12; n],
        jobs: 12,
        tasks: 12 * n,
    }];
    for (i, name) in names.iter().enumerate() {
        events.push(Event::NodeConnecting { node: name.clone(), address: "x".into() });
        events.push(Event::NodeReady {
            node: name.clone(),
            arch: "x86_64".into(),
            os: "Debian GNU/Linux 12".into(),
            kernel: "6.1".into(),
            hostname: name.clone(),
            ms: 40,
        });
        for job in 0..(i % 12) {
            events.push(Event::JobStarted {
                node: name.clone(),
                job,
                name: format!("RUN step {job}"),
                fingerprint: "f".into(),
                info: "x".into(),
            });
            events.push(Event::JobOutput {
                node: name.clone(),
                job,
                stream: Stream::Stdout,
                data: "a line of output\n".repeat(4),
            });
            let status = if i % 50 == 0 && job == 3 { JobStatus::Failed } else { JobStatus::Ok };
            events.push(Event::JobFinished {
                node: name.clone(),
                job,
                name: format!("RUN step {job}"),
                status,
                exit_code: Some(0),
                reason: None,
                ms: 5,
            });
        }
        if i % 3 == 0 {
            events.push(Event::JobStarted {
                node: name.clone(),
                job: 11,
                name: "RUN long".into(),
                fingerprint: "f".into(),
                info: "x".into(),
            });
        }
    }
    app.run_started("bench on 1000 nodes".into(), Started::Exec("x".into()));
    let start = Instant::now();
    for e in &events {
        app.event(e, t0);
    }
    let apply = start.elapsed();
    app.now = t0 + Duration::from_secs(30);
    let run_screen = median((0..rounds).map(|_| frame(&app)).collect());
    for name in &names {
        let one_ok = JobCounts { ok: 1, ..JobCounts::default() };
        app.event(&Event::node_finished(name.clone(), NodeOutcome::Ok, one_ok), t0 + Duration::from_secs(20));
    }
    app.event(
        &Event::RunFinished { summary: Summary { nodes: n, ..Summary::default() }, exit_code: 1 },
        t0 + Duration::from_secs(20),
    );
    app.run_ended(1);
    let summary_screen = median((0..rounds).map(|_| frame(&app)).collect());
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("TUI frame on {n} nodes at 200x60, median of {rounds} frames:");
    println!("  nodes screen                 : {:>7.2} ms", ms(nodes_screen));
    println!("  run in flight                : {:>7.2} ms", ms(run_screen));
    println!("  finished run (grouped fails) : {:>7.2} ms", ms(summary_screen));
    println!(
        "  applying {} events        : {:>7.2} ms ({:.2} µs each)",
        events.len(),
        ms(apply),
        apply.as_secs_f64() * 1e6 / events.len() as f64
    );
}
