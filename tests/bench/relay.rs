//! Relays at scale: the same nodes driven through relays and directly, in one run, against
//! the physical floor of this run. `cargo bench --bench relay` (as root).
//!
//! `BENCH_HOSTS` nodes (default 300) behind `BENCH_RELAYS` relays (default 3), each node in
//! the site `i % relays`; every host's namespace routes through the operator's, so the same
//! nodes are reachable directly and from their relay. `BENCH_NODES` (above BENCH_HOSTS):
//! more catalog nodes than hosts, spread over them, for W1 only (the operator's memory with
//! thousands of nodes behind relays). `BENCH_ROUNDS` (default 3).
//!
//! Per round, interleaved (who goes first turns): the **floor** (bare russh from the bench:
//! connect + auth + exec `true` on every node at once), **W1** (`RUN --skip-cache true`)
//! direct and through the relays, **W2** (the 12-job deploy without its QUERY, which a relay
//! does not serve yet: 10 jobs on clean node caches) direct and through the relays. The relays
//! run on this same machine, so their CPU is paid from the same two cores as the nodes'.
//! Each run is checked (every job it should do, done) before it counts.

mod floor;
#[path = "../e2e/harness.rs"]
mod harness;
mod measure;
mod stats;

use floor::{auth_and_run_true, AnyKey};
use harness::Fleet;
use measure::{expect, measure, raise_nofile, start_agent, wipe_cache, Measured};
use russh::client;
use stats::median;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// W2's jobs: the deploy of the scale bench without its QUERY and the job that reads it.
const W2_JOBS: usize = 10;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Default)]
struct Column {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    rss_kb: Vec<u64>,
}

impl Column {
    fn add(&mut self, m: &Measured) {
        self.wall.push(m.wall);
        self.cpu.push(m.cpu);
        self.rss_kb.push(m.max_rss_kb);
    }
}

fn main() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let hosts = env("BENCH_HOSTS", 300);
    let relays = env("BENCH_RELAYS", 3).max(1);
    let nodes = env("BENCH_NODES", hosts).max(hosts);
    let rounds = env("BENCH_ROUNDS", 3);
    raise_nofile();
    let started = Instant::now();
    let fleet = Fleet::start(hosts + relays);
    fleet.route_between_hosts();
    eprintln!("relay: {} hosts up in {:.1} s", hosts + relays, started.elapsed().as_secs_f64());
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let node = |i: usize| {
        let h = &fleet.hosts[relays + i % hosts];
        (format!("n{i}"), h.addr.clone(), h.port)
    };
    let mut direct = format!("defaults: {{user: {user}}}\nnodes:\n");
    let mut relayed = format!("defaults: {{user: {user}}}\ngroups:\n");
    for k in 0..relays {
        relayed.push_str(&format!("  site{k}: {{relay: gw{k}}}\n"));
    }
    relayed.push_str("nodes:\n");
    for k in 0..relays {
        let h = &fleet.hosts[k];
        relayed.push_str(&format!("  - {{name: gw{k}, host: {}, port: {}}}\n", h.addr, h.port));
    }
    for i in 0..nodes {
        let (name, addr, port) = node(i);
        direct.push_str(&format!("  - {{name: {name}, host: {addr}, port: {port}}}\n"));
        relayed.push_str(&format!("  - {{name: {name}, host: {addr}, port: {port}, groups: [site{}]}}\n", i % relays));
    }
    let direct = fleet.file("direct.yaml", &direct);
    let relayed = fleet.file("relayed.yaml", &relayed);
    let w1 = fleet.file("w1.yaml", "- jobs:\n    - RUN: --skip-cache true\n");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deploy");
    let deploy = std::fs::read_to_string(fixtures.join("deploy-12.yaml")).unwrap();
    let deploy: String = deploy
        .lines()
        .filter(|l| !l.contains("QUERY") && !l.contains("query"))
        .map(|l| l.replace(" app.conf.j2 ", &format!(" {} ", fixtures.join("app.conf.j2").display())))
        .map(|l| l.replace(" payload.txt ", &format!(" {} ", fixtures.join("payload.txt").display())))
        .map(|l| format!("{l}\n"))
        .collect();
    let w2 = fleet.file("w2.yaml", &deploy);

    let (mut agent_process, agent) = start_agent(fleet.path(), &fleet.key);
    let home = fleet.path().join("home-candidate");
    std::fs::create_dir_all(&home).unwrap();
    let run = |file: &Path, catalog: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_director"));
        cmd.env_clear()
            .env("HOME", &home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SSH_AUTH_SOCK", &agent)
            .env("LANG", "C.UTF-8")
            .arg("orchestrate")
            .arg(file)
            .arg("--json")
            .arg("--catalog")
            .arg(catalog)
            .arg("--restrict")
            .arg("n*");
        measure(cmd)
    };
    let wipe = || {
        for h in &fleet.hosts[relays..] {
            wipe_cache(&h.home_path(".cache/director"));
        }
    };
    // First contact both ways: host keys, executors, director on the relays.
    let first_direct = run(&w1, &direct).and_then(|m| expect(&m, "jobs_ok", nodes).map(|()| m)).unwrap();
    let first_relayed = run(&w1, &relayed).and_then(|m| expect(&m, "jobs_ok", nodes).map(|()| m)).unwrap();
    eprintln!(
        "relay: first contact {:.0} ms direct, {:.0} ms through relays (director installed on them)",
        ms(first_direct.wall),
        ms(first_relayed.wall)
    );

    let key = Arc::new(russh::keys::load_secret_key(&fleet.key, None).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let floor = || {
        let started = Instant::now();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..nodes)
                .map(|i| {
                    let (_, addr, port) = node(i);
                    let (user, key) = (user.clone(), key.clone());
                    tokio::spawn(async move {
                        let config = Arc::new(client::Config { nodelay: true, ..Default::default() });
                        let handle = client::connect(config, (addr.as_str(), port), AnyKey).await.expect("connect");
                        auth_and_run_true(handle, user, key).await;
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        started.elapsed()
    };
    let (mut floors, mut w1d, mut w1r, mut w2d, mut w2r) =
        (Vec::new(), Column::default(), Column::default(), Column::default(), Column::default());
    let w2_too = nodes == hosts;
    for round in 0..rounds {
        floors.push(floor());
        let order: [bool; 2] = if round % 2 == 0 { [false, true] } else { [true, false] };
        for through in order {
            let (catalog, column) = if through { (&relayed, &mut w1r) } else { (&direct, &mut w1d) };
            let m = run(&w1, catalog).and_then(|m| expect(&m, "jobs_ok", nodes).map(|()| m)).unwrap();
            column.add(&m);
        }
        if w2_too {
            for through in order {
                wipe();
                let (catalog, column) = if through { (&relayed, &mut w2r) } else { (&direct, &mut w2d) };
                let m = run(&w2, catalog).and_then(|m| expect(&m, "jobs_ok", W2_JOBS * nodes).map(|()| m)).unwrap();
                column.add(&m);
            }
        }
        eprintln!("relay: round {} done", round + 1);
    }
    let _ = agent_process.kill();
    let _ = agent_process.wait();
    let floor = median(floors);
    println!(
        "relay bench: {nodes} nodes on {hosts} OpenSSH hosts, behind {relays} relays or direct, {rounds} rounds, medians (floor {:.0} ms)",
        ms(floor)
    );
    println!("| workload | direct | through relays | relays / direct | operator peak RSS direct / relays | operator CPU direct / relays |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, d: &Column, r: &Column| {
        if d.wall.is_empty() {
            return;
        }
        let (dw, rw) = (median(d.wall.clone()), median(r.wall.clone()));
        let rss = |c: &Column| median(c.rss_kb.clone()) as f64 / 1024.0;
        println!(
            "| {name} | {:.0} ms, {:.2}x floor | {:.0} ms, {:.2}x floor | {:.2}x | {:.1} / {:.1} MB | {:.0} / {:.0} ms |",
            ms(dw),
            dw.as_secs_f64() / floor.as_secs_f64(),
            ms(rw),
            rw.as_secs_f64() / floor.as_secs_f64(),
            rw.as_secs_f64() / dw.as_secs_f64(),
            rss(d),
            rss(r),
            ms(median(d.cpu.clone())),
            ms(median(r.cpu.clone()))
        );
    };
    row("W1", &w1d, &w1r);
    row(&format!("W2 ({W2_JOBS} jobs)"), &w2d, &w2r);
}
