//! W1: one `RUN true` per host over cold SSH connections, against a floor measured in the
//! same run. Run with `cargo bench --bench w1` (as root for network-namespace hosts);
//! `BENCH_HOSTS` sets the fleet size (default 20), `BENCH_ROUNDS` the repetitions (5).
//!
//! The floor is the least any SSH tool can do for this workload: per host, concurrently, a
//! bare russh connect + public-key auth + one exec channel running `true`, in-process, with
//! no executor. director's time is the wall time of the whole `director orchestrate`
//! process (start-up, parsing, planning, connecting, starting the executor, the job, the
//! summary). Reported as medians and their ratio.

mod floor;
#[path = "../e2e/harness.rs"]
mod harness;
mod stats;

use floor::{auth_and_run_true, AnyKey};
use harness::Fleet;
use russh::client;
use stats::median;
use std::sync::Arc;
use std::time::Instant;

async fn floor_one(addr: String, port: u16, user: String, key: Arc<russh::keys::PrivateKey>) {
    let config = Arc::new(client::Config { nodelay: true, ..Default::default() });
    let handle = client::connect(config, (addr.as_str(), port), AnyKey).await.expect("connect");
    auth_and_run_true(handle, user, key).await;
}

fn main() {
    let hosts: usize = std::env::var("BENCH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let fleet = Fleet::start(hosts);
    let catalog = fleet.catalog();
    let w1 = fleet.file("w1.yaml", "- jobs:\n    - RUN: true\n");
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let key = Arc::new(russh::keys::load_secret_key(&fleet.key, None).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    let director = || {
        let started = Instant::now();
        let out = fleet
            .director()
            .arg("orchestrate")
            .arg(&w1)
            .arg("--catalog")
            .arg(&catalog)
            .arg("--progress=none")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        started.elapsed()
    };
    // First contact: host keys recorded, executor uploaded everywhere.
    let first = director();
    let mut floors = Vec::new();
    let mut runs = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        runtime.block_on(async {
            let tasks: Vec<_> = fleet
                .hosts
                .iter()
                .map(|h| tokio::spawn(floor_one(h.addr.clone(), h.port, user.clone(), key.clone())))
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        floors.push(started.elapsed());
        runs.push(director());
    }
    let (floor, run) = (median(floors), median(runs));
    println!("W1 on {hosts} OpenSSH hosts, {rounds} rounds, medians:");
    println!("  first contact (executor upload) : {:>8.1} ms", first.as_secs_f64() * 1e3);
    println!("  floor (russh connect+auth+exec) : {:>8.1} ms", floor.as_secs_f64() * 1e3);
    println!("  director orchestrate W1         : {:>8.1} ms", run.as_secs_f64() * 1e3);
    println!("  ratio director / floor          : {:>8.2}", run.as_secs_f64() / floor.as_secs_f64());
    let version = std::process::Command::new(env!("CARGO_BIN_EXE_director")).arg("--version").output().unwrap();
    println!("  {}", String::from_utf8_lossy(&version.stdout).trim());
}
