//! Jump hosts: one `RUN true` on N nodes that are reachable only through one bastion (as
//! root, each node's link lives in the bastion's network namespace), over cold connections,
//! against a floor through the same bastion measured in the same run. `cargo bench --bench
//! bastion`; `BENCH_HOSTS` sets N (default 50), `BENCH_ROUNDS` the repetitions (5).
//!
//! The floor: in-process, one russh session on the bastion, then per node and concurrently a
//! direct-tcpip channel, a bare russh handshake + public-key auth over it, and one exec
//! channel running `true`. director's time is the wall time of `director orchestrate` with
//! the nodes' `via: [bastion]`.

mod floor;
#[path = "../e2e/harness.rs"]
mod harness;
mod stats;

use floor::{auth_and_run_true, AnyKey};
use harness::Fleet;
use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use stats::median;
use std::sync::Arc;
use std::time::Instant;

async fn floor_one(
    bastion: Arc<client::Handle<AnyKey>>,
    addr: String,
    port: u16,
    user: String,
    key: Arc<russh::keys::PrivateKey>,
) {
    let config = Arc::new(client::Config { nodelay: true, ..Default::default() });
    let channel = bastion.channel_open_direct_tcpip(addr, u32::from(port), "127.0.0.1", 0).await.expect("direct-tcpip");
    let handle = client::connect_stream(config, channel.into_stream(), AnyKey).await.expect("handshake");
    auth_and_run_true(handle, user, key).await;
}

fn main() {
    let nodes: usize = std::env::var("BENCH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut fleet = Fleet::start(nodes + 1);
    for i in 1..=nodes {
        fleet.put_behind(i, 0);
    }
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let bastion = format!("{user}@{}:{}", fleet.hosts[0].addr, fleet.hosts[0].port);
    let mut text =
        format!("defaults: {{user: {user}, identity_file: {}, via: [{bastion}]}}\nnodes:\n", fleet.key.display());
    for h in &fleet.hosts[1..] {
        text.push_str(&format!("  - {{name: {}, host: {}, port: {}}}\n", h.name, h.addr, h.port));
    }
    let catalog = fleet.file("behind.yaml", &text);
    let job = fleet.file("w1.yaml", "- jobs:\n    - RUN: true\n");
    let key = Arc::new(russh::keys::load_secret_key(&fleet.key, None).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let director = || {
        let started = Instant::now();
        let out = fleet
            .director()
            .arg("orchestrate")
            .arg(&job)
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
    let (mut floors, mut runs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        runtime.block_on(async {
            let config = Arc::new(client::Config { nodelay: true, ..Default::default() });
            let b = &fleet.hosts[0];
            let mut handle = client::connect(config, (b.addr.as_str(), b.port), AnyKey).await.expect("bastion");
            let auth = handle
                .authenticate_publickey(user.clone(), PrivateKeyWithHashAlg::new(key.clone(), None))
                .await
                .unwrap();
            assert!(auth.success());
            let handle = Arc::new(handle);
            let tasks: Vec<_> = fleet.hosts[1..]
                .iter()
                .map(|h| tokio::spawn(floor_one(handle.clone(), h.addr.clone(), h.port, user.clone(), key.clone())))
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        floors.push(started.elapsed());
        runs.push(director());
    }
    let (floor, run) = (median(floors), median(runs));
    println!("{nodes} nodes behind one bastion, {rounds} rounds, medians:");
    println!("  first contact (executor upload) : {:>8.1} ms", first.as_secs_f64() * 1e3);
    println!("  floor (russh through the bastion): {:>8.1} ms", floor.as_secs_f64() * 1e3);
    println!("  director orchestrate             : {:>8.1} ms", run.as_secs_f64() * 1e3);
    println!("  director / floor                 : {:>8.2}", run.as_secs_f64() / floor.as_secs_f64());
}
