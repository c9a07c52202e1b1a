//! W2: the 12-job deploy (tests/fixtures/deploy/deploy-12.yaml) on a fleet of OpenSSH hosts:
//! cold (empty node caches, executor already installed), re-run (every job answered from the
//! node caches), `--plan` of each (every job would run; every job cached), and the same floor
//! as W1 measured in the same run. Run with
//! `cargo bench --bench deploy`; `BENCH_HOSTS` (default 20) and `BENCH_ROUNDS` (5).

#[path = "../e2e/harness.rs"]
mod harness;
mod stats;

use harness::Fleet;
use stats::median;
use std::path::Path;
use std::time::Instant;

fn main() {
    let hosts: usize = std::env::var("BENCH_HOSTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let fleet = Fleet::start(hosts);
    let catalog = fleet.catalog();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deploy/deploy-12.yaml");
    let floor_file = fleet.file("floor.yaml", "- jobs:\n    - RUN: --skip-cache true\n");
    let run = |file: &Path, extra: &[&str]| {
        let started = Instant::now();
        let out = fleet
            .director()
            .arg("orchestrate")
            .arg(file)
            .arg("--catalog")
            .arg(&catalog)
            .arg("--json")
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (started.elapsed(), text)
    };
    let evict = || {
        let out = fleet
            .director()
            .args(["exec", "--verb", "CACHEEVICT", "--progress=none", "--catalog"])
            .arg(&catalog)
            .arg("all")
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    // First contact: host keys recorded, executor uploaded everywhere.
    run(&floor_file, &[]);
    let (mut colds, mut reruns, mut floors) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plans_cold, mut plans_cached) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        evict();
        let (plan_cold, text) = run(&deploy, &["--plan"]);
        assert!(text.contains(&format!("\"jobs_would_run\":{}", 12 * hosts)), "{}", text.lines().last().unwrap_or(""));
        plans_cold.push(plan_cold);
        let (cold, text) = run(&deploy, &[]);
        assert!(
            text.contains(&format!("\"jobs_ok\":{}", 12 * hosts)),
            "cold run did not run every job: {}\n{}",
            text.lines().last().unwrap_or(""),
            text.lines()
                .filter(|l| l.contains("job_finished") && !l.contains("\"status\":\"ok\""))
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        let (rerun, text) = run(&deploy, &[]);
        assert!(
            text.contains(&format!("\"jobs_ok\":0,\"jobs_cached\":{}", 12 * hosts)),
            "re-run was not all cached: {}",
            text.lines().last().unwrap_or("")
        );
        colds.push(cold);
        reruns.push(rerun);
        let (plan_cached, text) = run(&deploy, &["--plan"]);
        assert!(text.contains(&format!("\"jobs_cached\":{}", 12 * hosts)), "{}", text.lines().last().unwrap_or(""));
        plans_cached.push(plan_cached);
        // The floor of W1 with director itself: connect, start the executor, one `true`.
        floors.push(run(&floor_file, &[]).0);
    }
    let (cold, rerun, floor) = (median(colds), median(reruns), median(floors));
    let (plan_cold, plan_cached) = (median(plans_cold), median(plans_cached));
    println!("W2 (12-job deploy) on {hosts} OpenSSH hosts, {rounds} rounds, medians:");
    println!("  cold (empty node caches)          : {:>8.1} ms", cold.as_secs_f64() * 1e3);
    println!("  re-run (all 12 jobs cached)        : {:>8.1} ms", rerun.as_secs_f64() * 1e3);
    println!("  floor (one RUN true, same session) : {:>8.1} ms", floor.as_secs_f64() * 1e3);
    println!("  cold / floor                       : {:>8.2}", cold.as_secs_f64() / floor.as_secs_f64());
    println!("  re-run / floor                     : {:>8.2}", rerun.as_secs_f64() / floor.as_secs_f64());
    println!("  re-run / cold                      : {:>8.2}", rerun.as_secs_f64() / cold.as_secs_f64());
    println!("  --plan, empty caches (all would run): {:>7.1} ms", plan_cold.as_secs_f64() * 1e3);
    println!("  --plan, all cached                 : {:>8.1} ms", plan_cached.as_secs_f64() * 1e3);
    println!("  plan (would run) / re-run          : {:>8.2}", plan_cold.as_secs_f64() / rerun.as_secs_f64());
    println!("  plan (cached) / re-run             : {:>8.2}", plan_cached.as_secs_f64() / rerun.as_secs_f64());
}
