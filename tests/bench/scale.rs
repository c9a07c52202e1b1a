//! The scale bench: director as a user runs it, on a fleet of real OpenSSH hosts, against
//! physical floors measured in the same run, never against director itself.
//!
//! `cargo bench --bench scale` (as root: each host is an sshd in its own network and mount
//! namespace). `BENCH_HOSTS` (default 100, up to 1,000 and more on a 2-core machine),
//! `BENCH_ROUNDS` (default 3), `BENCH_BASELINE=/path/to/another/director` (or several,
//! `name=path,name=path`): the same workloads with those binaries too, interleaved in the same
//! rounds (who goes first turns with each round) and printed side by side, then paired: the
//! candidate's run over the baseline's of the same round, median and range of those ratios
//! for the time and the machine's CPU (the floors drift between rounds; two runs side by side
//! in one round share the drift), which is how a change of a few per cent is told from this
//! machine's noise. Build a baseline
//! with `git worktree add ../base <commit>` and `cargo build --release` there (with its own
//! `CARGO_TARGET_DIR`). `BENCH_ONLY=w1,w4` measures only those workloads
//! (`first`, `w1`, `w2`, `w3`, `w4`, `w4local`), for a quick A/B while bisecting;
//! `BENCH_PERF=first,w4` then runs those once more with the candidate under `perf record -a -g`,
//! the whole machine (profiles in `target/tmp/scale-<workload>.perf.data`; `floor` and `script`
//! record the floor and the script floor the same way, to set their sshd, shells and client
//! beside director's; `BENCH_PERF_EVENTS=raw_syscalls:sys_enter` records those events instead
//! of call graphs, to count every process's system calls), and `BENCH_HEAP=w2` under
//! heaptrack (`target/tmp/scale-<workload>.heaptrack.zst`). `BENCH_RSS_PARTS=1` prints, for
//! every run, its resident memory at its highest split into anonymous and file-backed (code).
//! `DIRECTOR_HOT_CODE=0 BENCH_HOT_CODE=first,w1,w2,w3,w4local` (a build without the layout)
//! runs those under callgrind and writes the functions
//! they executed to `packaging/hot-code.txt`, the layout release builds link with
//! (packaging/hot_code.rs); the report says how much code that layout placed first. The
//! candidate is target/release/director as `cargo bench` builds it, with this environment:
//! a build made with other settings (`DIRECTOR_HOT_CODE=0`) is compared as a baseline path.
//!
//! Every binary runs as a process with a fresh HOME of its own, its key in an ssh-agent (the
//! catalog is Directord's format and names no key), the machine's ssh_config, and known_hosts
//! filled by its own first contact (accept-new). Each run is checked: a run that did not do
//! every job it should (a cold run partly cached, a re-run not all cached) is an error, not a
//! figure.
//!
//! The floors, in-process, bare russh, all hosts concurrently:
//! - **floor**: connect + public-key auth + one exec channel running `true`;
//! - **script floor**: the same, exec'ing the whole 12-job deploy as one `sh -s` script with
//!   its files on stdin: what the deploy's work itself costs on the nodes;
//! - **W4 floor**: the same on W4's hosts, a script starting 1,000 `sh -c 'echo N'` one after
//!   another (what W4's RUNs cost on a node, however they are sent); **W4 local floor**: the
//!   same 1,000 processes started by the bench itself.
//!
//! The workloads:
//! - **first contact**: nodes without an executor or cache, operator without known_hosts: one
//!   `RUN --skip-cache true` per host (host key recorded, executor uploaded and started);
//! - **W1**: one `RUN --skip-cache true` per host, executor there;
//! - **W2**: the 12-job deploy (`tests/fixtures/deploy/deploy-12.yaml`) on empty node caches;
//! - **W3**: the same again, every job answered from the node caches;
//! - **W4**: 1,000 `RUN echo N` jobs in one entry on 6 hosts, empty caches (each job adds a
//!   record to the node cache);
//! - **W4 local**: the same 1,000 jobs on the embedded catalog (local transport), per job.
//!
//! Peak RSS is the operator process's own during first contact, W1, W2 and W3: its VmHWM, read from
//! /proc every 5 ms while it runs. (Not `wait4`'s ru_maxrss: a child spawned with vfork, as std's
//! `Command` does, starts with its parent's peak, so that figure was the bench's own memory
//! whenever the bench held more than director.) Beside it, the memory floor: the most bytes the
//! script floor (bare russh running the deploy on every node at once) held live on the bench's
//! heap, counted by its allocator.
//!
//! `BENCH_TUI=1`: after the rounds, the candidate's TUI runs W1 live in a tmux terminal (its
//! `o` key), on the whole catalog: the time until the screen says it finished, how the screen
//! kept changing, how fast keys are answered with every node loaded, its peak memory.
//!
//! `BENCH_NODES=5000 BENCH_HOSTS=1000`: a catalog of more nodes than hosts, spread over them
//! (each node its own SSH connection and executor; the aliases of a host share its home), for
//! first contact and W1 only, against a floor that opens as many connections.

#[path = "../e2e/elf.rs"]
mod elf;
mod floor;
mod hot_code;
#[path = "../e2e/harness.rs"]
mod harness;
mod measure;
mod stats;

use floor::{auth_and_run_script, auth_and_run_true, AnyKey};
use harness::Fleet;
use measure::{expect, measure, raise_nofile, start_agent, vm_hwm_kb, wipe_cache, Measured};
use russh::client;
use stats::median;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static HEAP: measure::Counting = measure::Counting;

/// `perf record`'s arguments up to its output file: the whole machine, with call graphs, or
/// the events `BENCH_PERF_EVENTS` names.
fn perf_record() -> Vec<String> {
    let mut args: Vec<String> = ["record", "-a", "-q"].map(String::from).into();
    match std::env::var("BENCH_PERF_EVENTS") {
        Ok(events) if !events.is_empty() => args.extend(["-e".to_string(), events]),
        _ => args.push("-g".to_string()),
    }
    args.push("-o".to_string());
    args
}

/// Hosts W4 runs on.
const W4_HOSTS: usize = 6;
/// Jobs in W4's one entry.
const W4_JOBS: usize = 1000;

/// One director binary under test, with its own operator home.
struct Binary {
    label: String,
    path: PathBuf,
    home: PathBuf,
}

#[derive(Default)]
struct Figures {
    first: Vec<Duration>,
    w1: Vec<Duration>,
    w2: Vec<Duration>,
    w3: Vec<Duration>,
    w4: Vec<Duration>,
    w4_local: Vec<Duration>,
    rss_kb: Vec<u64>,
    rss_w1_kb: Vec<u64>,
    rss_first_kb: Vec<u64>,
    rss_w3_kb: Vec<u64>,
    /// The operator's CPU time per workload, by the workload's row label.
    cpu: std::collections::BTreeMap<&'static str, Vec<Duration>>,
    /// The whole machine's CPU time per workload, by the workload's row label.
    machine: std::collections::BTreeMap<&'static str, Vec<Duration>>,
    /// Each measured run by workload: its round, its time and the machine's CPU, to pair it
    /// with another binary's run of the same round ([`paired`]).
    by_round: std::collections::BTreeMap<&'static str, Vec<(usize, Duration, Duration)>>,
    failures: Vec<String>,
}

/// The candidate's runs over a baseline's of the same workload, round by round (the two ran
/// one after the other, so the machine's drift between rounds cancels out): the median of the
/// ratios and their range, for the time and for the machine's CPU; none without a round in
/// which both ran.
fn paired(candidate: &[(usize, Duration, Duration)], baseline: &[(usize, Duration, Duration)]) -> Option<String> {
    let (mut time, mut work) = (Vec::new(), Vec::new());
    for &(round, wall, machine) in candidate {
        if let Some(&(_, b_wall, b_machine)) = baseline.iter().find(|(r, _, _)| *r == round) {
            time.push(wall.as_secs_f64() / b_wall.as_secs_f64());
            if !b_machine.is_zero() {
                work.push(machine.as_secs_f64() / b_machine.as_secs_f64());
            }
        }
    }
    let summary = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 };
        format!("{median:.3}x ({:.3}–{:.3})", v[0], v[v.len() - 1])
    };
    if time.is_empty() {
        return None;
    }
    let work = if work.is_empty() { "—".to_string() } else { summary(work) };
    Some(format!("time {}  machine CPU {work}", summary(time)))
}

/// A line of the table: its label, its figures, the floor it is divided by (or none: per job),
/// jobs per run.
type Row<'a> = (&'a str, fn(&Figures) -> &Vec<Duration>, Option<Duration>, usize);

struct Bench {
    fleet: Fleet,
    catalog: PathBuf,
    w4_catalog: PathBuf,
    w1: PathBuf,
    w4: PathBuf,
    deploy: PathBuf,
    agent: PathBuf,
    hosts: usize,
    /// Catalog nodes: `hosts` unless BENCH_NODES asks for more (several per host).
    nodes: usize,
}

impl Bench {
    fn director(&self, bin: &Binary) -> Command {
        let mut cmd = Command::new(&bin.path);
        // A user's environment: their HOME, their agent, nothing of the test harness's.
        cmd.env_clear()
            .env("HOME", &bin.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SSH_AUTH_SOCK", &self.agent)
            .env("LANG", "C.UTF-8");
        cmd
    }

    fn orchestrate(&self, bin: &Binary, file: &Path, catalog: Option<&Path>) -> Command {
        let mut cmd = self.director(bin);
        cmd.arg("orchestrate").arg(file).arg("--json");
        if let Some(c) = catalog {
            cmd.arg("--catalog").arg(c);
        }
        cmd
    }

    /// Forgets what the nodes remember (`executor`: their executors too).
    fn wipe_nodes(&self, hosts: usize, executor: bool) {
        for h in &self.fleet.hosts[..hosts] {
            let dir = h.home_path(".cache/director");
            if executor {
                let _ = std::fs::remove_dir_all(&dir);
            } else {
                wipe_cache(&dir);
            }
        }
    }

    /// `bin`'s first contact: its known_hosts forgotten, and with `wipe` every executor and
    /// cache the nodes hold (the workload); without, the other binaries' executors stay
    /// (the setup before the rounds: removing them would make another binary's next
    /// workload a first contact in disguise).
    fn first_contact(&self, bin: &Binary, wipe: bool) -> Result<Measured, String> {
        self.wipe_nodes(self.hosts, wipe);
        let _ = std::fs::remove_file(bin.home.join(".ssh/known_hosts"));
        let m = measure(self.orchestrate(bin, &self.w1, Some(&self.catalog)))?;
        expect(&m, "jobs_ok", self.nodes)?;
        Ok(m)
    }

    fn w1(&self, bin: &Binary) -> Result<Measured, String> {
        let m = measure(self.orchestrate(bin, &self.w1, Some(&self.catalog)))?;
        expect(&m, "jobs_ok", self.nodes)?;
        Ok(m)
    }

    fn w2(&self, bin: &Binary) -> Result<Measured, String> {
        self.wipe_nodes(self.hosts, false);
        let m = measure(self.orchestrate(bin, &self.deploy, Some(&self.catalog)))?;
        expect(&m, "jobs_ok", 12 * self.hosts)?;
        Ok(m)
    }

    fn w3(&self, bin: &Binary) -> Result<Measured, String> {
        let m = measure(self.orchestrate(bin, &self.deploy, Some(&self.catalog)))?;
        expect(&m, "jobs_cached", 12 * self.hosts)?;
        Ok(m)
    }

    fn w4(&self, bin: &Binary) -> Result<Measured, String> {
        self.wipe_nodes(W4_HOSTS.min(self.hosts), false);
        let m = measure(self.orchestrate(bin, &self.w4, Some(&self.w4_catalog)))?;
        expect(&m, "jobs_ok", W4_JOBS * W4_HOSTS.min(self.hosts))?;
        Ok(m)
    }

    /// W1 run from the TUI in tmux (see BENCH_TUI); its figures as one line.
    fn tui_w1(&self, bin: &Binary) -> Result<String, String> {
        let dir = self.catalog.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir.join("orchestrations")).map_err(|e| e.to_string())?;
        std::fs::copy(&self.w1, dir.join("orchestrations/w1.yaml")).map_err(|e| e.to_string())?;
        let probe = self.director(bin);
        let env: Vec<String> = probe
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
            .collect();
        let script = format!(
            "cd {}\nenv -i {} TERM=xterm-256color {} tui {}\necho \"EXITED $?\"\nsleep 600\n",
            dir.display(),
            env.join(" "),
            bin.path.display(),
            self.catalog.display()
        );
        let tmux = harness::Tmux::start(dir, &script, 160, 50);
        let loaded = format!("Nodes ({})", self.nodes);
        tmux.wait_for(&[&loaded], Duration::from_secs(120));
        tmux.keys(&["o"]);
        tmux.wait_for(&["Run an orchestration", "w1.yaml"], Duration::from_secs(20));
        let pid = Command::new("pgrep").args(["-n", "-f", &format!("{} tui", bin.path.display())]).output();
        let pid: u32 = pid.ok().and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(0);
        let started = Instant::now();
        tmux.keys(&["Enter"]);
        let (mut last, mut changes, mut still, mut longest) = (String::new(), 0, Instant::now(), Duration::ZERO);
        loop {
            let screen = tmux.screen();
            if screen != last {
                changes += 1;
                longest = longest.max(still.elapsed());
                still = Instant::now();
                last = screen;
            }
            if last.contains("finished") {
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                return Err(format!("W1 did not finish on screen within 600 s; it shows:\n{last}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let finished = started.elapsed();
        let answered = |key: &str, shows: &str| {
            let at = Instant::now();
            tmux.keys(&[key]);
            tmux.wait_for(&[shows], Duration::from_secs(30));
            // `keys` waits 150 ms after sending, as a typist would.
            at.elapsed().saturating_sub(Duration::from_millis(150))
        };
        let nodes_key = answered("1", &loaded);
        let history_key = answered("3", "Past runs");
        let run_key = answered("2", "finished");
        let rss = vm_hwm_kb(pid).map(|kb| format!("{:.1} MB", kb as f64 / 1024.0)).unwrap_or_else(|| "?".into());
        tmux.keys(&["q"]);
        tmux.wait_for(&["EXITED 0"], Duration::from_secs(30));
        Ok(format!(
            "TUI live (tmux 160x50), W1 on {} nodes: finished on screen in {:.0} ms; the screen changed {changes} times, \
             at most {:.0} ms without change; keys answered in {:.0} ms (nodes), {:.0} ms (history), {:.0} ms (run); \
             TUI peak RSS {rss}",
            self.nodes,
            ms(finished),
            ms(longest),
            ms(nodes_key),
            ms(history_key),
            ms(run_key)
        ))
    }

    fn w4_local(&self, bin: &Binary) -> Result<Measured, String> {
        wipe_cache(&bin.home.join(".cache/director"));
        let m = measure(self.orchestrate(bin, &self.w4, None))?;
        expect(&m, "jobs_ok", W4_JOBS)?;
        Ok(m)
    }
}

/// The 12-job deploy as one shell script, its files inline: what the script floor runs.
fn deploy_script(fixtures: &Path, hosts: usize) -> Vec<u8> {
    let payload = std::fs::read_to_string(fixtures.join("payload.txt")).unwrap();
    assert!(!payload.contains("DIRECTOR_EOF"));
    format!(
        "set -e\nmkdir -p /tmp/app\nAPP_ENV=production; export APP_ENV\napp_user=$(id -un)\n\
         cat > /tmp/app/app.conf <<DIRECTOR_EOF\n[server]\nport = 8080\nuser = $app_user\nDIRECTOR_EOF\n\
         cat > /tmp/app/payload.txt <<'DIRECTOR_EOF'\n{payload}DIRECTOR_EOF\nchmod 0644 /tmp/app/payload.txt\n\
         echo \"$app_user:8080\" > /tmp/app/owner\ntest \"$APP_ENV\" = production\n\
         mkdir -p /tmp/app/logs && chmod 0750 /tmp/app/logs\ngrep -q 'port = 8080' /tmp/app/app.conf\n\
         echo \"{hosts} nodes\" > /tmp/app/peers\n"
    )
    .into_bytes()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let hosts = env("BENCH_HOSTS", 100);
    // BENCH_NODES: more catalog nodes than hosts, spread over them (each its own SSH
    // connection and executor; the aliases of a host share its home). Only first contact and
    // W1 make sense then: the deploy's nodes would share their caches and files.
    let nodes = env("BENCH_NODES", hosts).max(hosts);
    let rounds = env("BENCH_ROUNDS", 3);
    // Callgrind names a laid-out binary's functions but not their object (`???`), so the list
    // is recorded from a build without the layout.
    let candidate = Path::new(env!("CARGO_BIN_EXE_director"));
    if std::env::var("BENCH_HOT_CODE").is_ok_and(|w| !w.is_empty())
        && hot_code::layout(candidate).is_some_and(|(hot, _)| hot > 0)
    {
        panic!("BENCH_HOT_CODE records the hot code of a build without its layout: run it as DIRECTOR_HOT_CODE=0 cargo bench ...")
    }
    let only: Option<Vec<String>> =
        std::env::var("BENCH_ONLY").ok().map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let only = match only {
        Some(o) if nodes > hosts && o.iter().any(|w| !["first", "w1"].contains(&w.as_str())) => {
            panic!("BENCH_NODES above BENCH_HOSTS measures first contact and W1 only, not {o:?}")
        }
        None if nodes > hosts => Some(vec!["first".to_string(), "w1".to_string()]),
        o => o,
    };
    let wanted = |w: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == w));
    // The floors open a socket per host at once.
    raise_nofile();
    let started = Instant::now();
    let fleet = Fleet::start(hosts);
    eprintln!("scale: {hosts} hosts up in {:.1} s", started.elapsed().as_secs_f64());
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let catalog_of = |name: &str, n: usize| {
        let mut text = format!("directord_clients:\n  args:\n    username: {user}\n  targets:\n");
        for i in 0..n {
            let h = &fleet.hosts[i % hosts];
            let name = if i < hosts { h.name.clone() } else { format!("{}-{}", h.name, i / hosts) };
            text.push_str(&format!("  - name: {name}\n    host: {}\n    port: {}\n", h.addr, h.port));
        }
        fleet.file(name, &text)
    };
    let catalog = catalog_of("catalog.yaml", nodes);
    let w4_catalog = catalog_of("w4-catalog.yaml", W4_HOSTS.min(hosts));
    let w1 = fleet.file("w1.yaml", "- jobs:\n    - RUN: --skip-cache true\n");
    let mut w4_text = String::from("- jobs:\n");
    for n in 0..W4_JOBS {
        w4_text.push_str(&format!("    - RUN: echo {n}\n"));
    }
    let w4 = fleet.file("w4.yaml", &w4_text);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deploy");
    let script = Arc::new(deploy_script(&fixtures, hosts));

    // The user's agent, holding the fleet's key.
    let (mut agent_process, agent) = start_agent(fleet.path(), &fleet.key);

    let mut binaries = vec![Binary {
        label: "candidate".into(),
        path: candidate.to_path_buf(),
        home: fleet.path().join("home-candidate"),
    }];
    // BENCH_BASELINE: a path, or several `name=path` separated by commas.
    for (k, spec) in
        std::env::var("BENCH_BASELINE").unwrap_or_default().split(',').filter(|s| !s.is_empty()).enumerate()
    {
        let (label, path) = match spec.split_once('=') {
            Some((name, path)) => (name.to_string(), path),
            None if k == 0 => ("baseline".to_string(), spec),
            None => (format!("baseline {}", k + 1), spec),
        };
        binaries.push(Binary { home: fleet.path().join(format!("home-{k}")), label, path: PathBuf::from(path) });
    }
    for b in &binaries {
        std::fs::create_dir_all(&b.home).unwrap();
    }
    let mut figures: Vec<Figures> = binaries.iter().map(|_| Figures::default()).collect();
    let bench =
        Bench { fleet, catalog, w4_catalog, w1, w4, deploy: fixtures.join("deploy-12.yaml"), agent, hosts, nodes };
    let key = Arc::new(russh::keys::load_secret_key(&bench.fleet.key, None).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // The floors open one connection per node (several per host with BENCH_NODES).
    let floor_cpu = std::cell::RefCell::new(Vec::new());
    let floor_run = |script: Option<Arc<Vec<u8>>>, nodes: usize| {
        let (started, cpu, machine) = (Instant::now(), measure::own_cpu(), measure::machine_cpu());
        runtime.block_on(async {
            let tasks: Vec<_> = (0..nodes)
                .map(|i| &bench.fleet.hosts[i % bench.hosts])
                .map(|h| {
                    let (addr, port, user, key, script) =
                        (h.addr.clone(), h.port, user.clone(), key.clone(), script.clone());
                    tokio::spawn(async move {
                        let config = Arc::new(client::Config { nodelay: true, ..Default::default() });
                        let handle = client::connect(config, (addr.as_str(), port), AnyKey).await.expect("connect");
                        match script {
                            None => auth_and_run_true(handle, user, key).await,
                            Some(s) => auth_and_run_script(handle, user, key, s).await,
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
        if script.is_none() {
            floor_cpu.borrow_mut().push(measure::own_cpu() - cpu);
        }
        // With the whole machine's CPU meanwhile.
        (started.elapsed(), measure::machine_cpu() - machine)
    };

    // Every binary reaches every node once before the rounds (host keys, executors), the
    // nodes wiped before the first only: each binary's executor is on the nodes when the
    // rounds start, whichever workloads they measure.
    for (i, (b, f)) in binaries.iter().zip(figures.iter_mut()).enumerate() {
        if let Err(e) = bench.first_contact(b, i == 0) {
            f.failures.push(format!("before the rounds: first contact: {e}"));
        }
    }
    // What those contacts wrote (an executor per node and binary, half a GB at 1,000 hosts)
    // goes to the nodes' disks now, not during the first workload of round 1, which is always
    // the candidate's: with two rounds the median is the worse one, and that place cost the
    // candidate up to a tenth of the floor.
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    let (mut floors, mut script_floors, mut script_floor_heap) = (Vec::new(), Vec::new(), Vec::new());
    let (mut w4_floors, mut w4_local_floors) = (Vec::new(), Vec::new());
    // The whole machine's CPU during the floor and the script floor.
    let (mut floor_machine, mut script_machine) = (Vec::new(), Vec::new());
    // W4's work itself: 1,000 `sh -c 'echo N'` one after another (what each RUN costs on the
    // node, however it is sent), on W4's hosts over one session each, and here.
    let w4_script = Arc::new(
        format!("i=0; while [ $i -lt {W4_JOBS} ]; do /bin/sh -c \"echo $i\" >/dev/null; i=$((i+1)); done\n")
            .into_bytes(),
    );
    let spawn_floor = || {
        let started = Instant::now();
        for n in 0..W4_JOBS {
            let out = Command::new("/bin/sh").arg("-c").arg(format!("echo {n}")).output().unwrap();
            assert!(out.status.success());
        }
        started.elapsed()
    };
    for round in 0..rounds {
        let (wall, machine) = floor_run(None, nodes);
        floors.push(wall);
        floor_machine.push(machine);
        if wanted("w2") {
            let before = measure::heap_reset_peak();
            let (wall, machine) = floor_run(Some(script.clone()), hosts);
            script_floors.push(wall);
            script_machine.push(machine);
            script_floor_heap.push((measure::heap_peak() - before) as u64);
        }
        if wanted("w4") {
            w4_floors.push(floor_run(Some(w4_script.clone()), W4_HOSTS.min(hosts)).0);
        }
        if wanted("w4local") {
            w4_local_floors.push(spawn_floor());
        }
        // Who goes first turns with each round.
        for i in (0..binaries.len()).map(|i| (i + round) % binaries.len()) {
            let (b, f) = (&binaries[i], &mut figures[i]);
            let mut take = |name: &'static str, r: Result<Measured, String>, into: &mut Vec<Duration>| match r {
                Ok(m) => {
                    into.push(m.wall);
                    f.cpu.entry(name).or_default().push(m.cpu);
                    f.machine.entry(name).or_default().push(m.machine_cpu);
                    f.by_round.entry(name).or_default().push((round, m.wall, m.machine_cpu));
                }
                Err(e) => f.failures.push(format!("round {}: {name}: {e}", round + 1)),
            };
            if wanted("first") {
                let r = bench.first_contact(b, true);
                f.rss_first_kb.extend(r.as_ref().map(|m| m.max_rss_kb).ok());
                take("first contact", r, &mut f.first);
            }
            if wanted("w1") {
                let r = bench.w1(b);
                f.rss_w1_kb.extend(r.as_ref().map(|m| m.max_rss_kb).ok());
                take("W1", r, &mut f.w1);
            }
            if wanted("w2") {
                let r = bench.w2(b);
                let rss = r.as_ref().map(|m| m.max_rss_kb).ok();
                f.rss_kb.extend(rss);
                take("W2", r, &mut f.w2);
            }
            if wanted("w3") {
                let r = bench.w3(b);
                f.rss_w3_kb.extend(r.as_ref().map(|m| m.max_rss_kb).ok());
                take("W3", r, &mut f.w3);
            }
            if wanted("w4") {
                let r = bench.w4(b);
                take("W4", r, &mut f.w4);
            }
            if wanted("w4local") {
                let r = bench.w4_local(b);
                take("W4 local", r, &mut f.w4_local);
            }
        }
        eprintln!("scale: round {} done at {:.0} s", round + 1, started.elapsed().as_secs_f64());
    }
    // BENCH_PERF=first,w4: one more run of each with the candidate under `perf record -a -g`;
    // BENCH_HEAP=w2: the same under heaptrack (where the operator's memory goes).
    // BENCH_HOT_CODE=first,w1,w2,w3,w4local: the same under callgrind, and the functions those
    // runs executed written to packaging/hot-code.txt (see packaging/hot_code.rs).
    let profilers = [("BENCH_PERF", "perf.data"), ("BENCH_HEAP", "heaptrack"), ("BENCH_HOT_CODE", "callgrind")];
    let hot_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scale-hot-code");
    let recorded = std::env::var("BENCH_HOT_CODE").unwrap_or_default().replace(',', ", ");
    if !recorded.is_empty() {
        let _ = std::fs::remove_dir_all(&hot_dir);
    }
    let profiled = profilers.iter().any(|(v, _)| std::env::var(v).is_ok_and(|w| !w.is_empty()));
    if profiled && binaries.len() > 1 {
        // A baseline's first contact may have been the last: the candidate's executor back on
        // the nodes first, or the profile of W2 would be one of its upload.
        if let Err(e) = bench.w1(&binaries[0]) {
            println!("  before the profiles: W1: {e}");
        }
    }
    for (variable, suffix) in profilers {
        for workload in std::env::var(variable).unwrap_or_default().split(',').filter(|w| !w.is_empty()) {
            let b = &binaries[0];
            // The floor runs here, in this process: the whole machine is recorded around it,
            // to set its sshd, shells and client beside director's.
            if variable == "BENCH_PERF" && matches!(workload, "floor" | "script") {
                let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("scale-{workload}.perf.data"));
                let mut perf = Command::new("perf");
                let perf = perf.args(perf_record()).arg(&out).spawn().expect("perf");
                std::thread::sleep(Duration::from_secs(1));
                let took = match workload {
                    "floor" => floor_run(None, nodes).0,
                    _ => floor_run(Some(script.clone()), hosts).0,
                };
                // SAFETY: signalling the child we started.
                unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
                let _ = perf.wait_with_output();
                println!("  {variable}: {workload} floor in {:.0} ms, profile in {}", ms(took), out.display());
                continue;
            }
            let (file, catalog) = match workload {
                "first" | "w1" => (&bench.w1, Some(&bench.catalog)),
                "w2" | "w3" => (&bench.deploy, Some(&bench.catalog)),
                "w4" => (&bench.w4, Some(&bench.w4_catalog)),
                "w4local" => (&bench.w4, None),
                other => panic!("{variable}: no workload {other}"),
            };
            match workload {
                "first" => {
                    bench.wipe_nodes(hosts, true);
                    let _ = std::fs::remove_file(b.home.join(".ssh/known_hosts"));
                }
                "w2" => bench.wipe_nodes(hosts, false),
                "w4" => bench.wipe_nodes(W4_HOSTS.min(hosts), false),
                "w4local" => wipe_cache(&b.home.join(".cache/director")),
                _ => {}
            }
            let inner = bench.orchestrate(b, file, catalog.map(PathBuf::as_path));
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("scale-{workload}.{suffix}"));
            let mut cmd = match variable {
                "BENCH_PERF" => {
                    let mut cmd = Command::new("perf");
                    // The whole machine: on a one-box fleet the nodes' sshd, executors and
                    // shells share the cores with the operator (`perf report --sort comm`).
                    cmd.args(perf_record()).arg(&out);
                    cmd
                }
                "BENCH_HEAP" => {
                    let mut cmd = Command::new("heaptrack");
                    cmd.arg("-o").arg(&out);
                    cmd
                }
                _ => {
                    std::fs::create_dir_all(&hot_dir).expect("the callgrind profiles' directory");
                    let mut cmd = Command::new("valgrind");
                    cmd.args(["--tool=callgrind", "--demangle=no"])
                        .arg(format!("--callgrind-out-file={}/{workload}.%p", hot_dir.display()));
                    cmd
                }
            };
            cmd.arg("--").arg(inner.get_program()).args(inner.get_args());
            if variable == "BENCH_HOT_CODE" && workload != "w4local" {
                // Under callgrind every handshake is tens of times slower.
                cmd.args(["--connect-timeout", "300"]);
            }
            cmd.env_clear();
            for (k, v) in inner.get_envs() {
                if let Some(v) = v {
                    cmd.env(k, v);
                }
            }
            match measure(cmd) {
                Ok(m) => println!("  {variable}: {workload} in {:.0} ms, profile in {}", ms(m.wall), out.display()),
                Err(e) => println!("  {variable}: {workload} failed: {e}"),
            }
        }
    }
    if !recorded.is_empty() {
        let binary = std::fs::canonicalize(&binaries[0].path).expect("the candidate's path");
        let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hot-code.txt");
        let what = format!("{recorded} on {hosts} hosts");
        match hot_code::executed(&hot_dir, &binary).and_then(|names| {
            if names.len() < 1000 {
                return Err(format!(
                    "callgrind named {} of the candidate's functions: {} left as it was",
                    names.len(),
                    list.display()
                ));
            }
            let names = hot_code::in_binary_order(&binary, names)?;
            hot_code::write_list(&list, &names, &what)?;
            Ok(names.len())
        }) {
            Ok(n) => println!("  BENCH_HOT_CODE: {n} functions written to {}", list.display()),
            Err(e) => println!("  BENCH_HOT_CODE: {e}"),
        }
    }
    // BENCH_TUI=1: the candidate's TUI, live in a tmux terminal, runs W1 on the whole
    // catalog (its `o` key): how long until the screen says it finished, whether the screen
    // kept changing while it ran, how fast keys are answered with every node loaded, and the
    // TUI's own peak memory.
    let tui = std::env::var("BENCH_TUI").is_ok_and(|v| v == "1").then(|| bench.tui_w1(&binaries[0]));
    let _ = agent_process.kill();
    let _ = agent_process.wait();

    let floor = median(floors);
    let script_floor = (!script_floors.is_empty()).then(|| median(script_floors));
    println!(
        "scale bench: {nodes} nodes on {hosts} OpenSSH hosts, {rounds} rounds, medians (ratios to the physical floors of this run)"
    );
    println!("  floor (russh connect+auth+exec true)      : {:>9.1} ms", ms(floor));
    // What the bare client itself spent on it: the physical floor of the operator's CPU in
    // W1 and W3 below (its key in process, where director asks ssh-agent).
    println!("  floor's client CPU (user+sys)             : {:>9.1} ms", ms(median(floor_cpu.take())));
    if let Some(f) = script_floor {
        println!("  script floor (the deploy as one sh script): {:>9.1} ms", ms(f));
        let heap = median(script_floor_heap) as f64 / 1048576.0;
        println!("  script floor's peak heap (russh, all nodes): {heap:>8.1} MB");
    }
    let w4_floor = (!w4_floors.is_empty()).then(|| median(w4_floors));
    let w4_local_floor = (!w4_local_floors.is_empty()).then(|| median(w4_local_floors));
    if let Some(f) = w4_floor {
        println!("  W4 floor (1,000 sh -c in a row, per host)  : {:>9.1} ms", ms(f));
    }
    if let Some(f) = w4_local_floor {
        println!("  W4 local floor (1,000 sh -c here)          : {:>9.1} ms", ms(f));
    }
    let mut header = format!("  {:<44}", "workload");
    for b in &binaries {
        header.push_str(&format!(" | {:>26}", b.label));
    }
    println!("{header}");
    let rows: Vec<Row> = vec![
        ("first contact (upload + one RUN) / floor", |f| &f.first, Some(floor), 0),
        ("W1 one RUN per host / floor", |f| &f.w1, Some(floor), 0),
        ("W2 12-job deploy, cold / script floor", |f| &f.w2, script_floor, 0),
        ("W3 the deploy, all cached / floor", |f| &f.w3, Some(floor), 0),
        ("W4 1,000 RUNs x 6 hosts / W4 floor", |f| &f.w4, w4_floor, W4_JOBS),
        ("W4 local, 1,000 RUNs / W4 local floor", |f| &f.w4_local, w4_local_floor, W4_JOBS),
    ];
    for (name, pick, base, per) in rows {
        let mut line = format!("  {name:<44}");
        for f in &figures {
            let v = pick(f);
            let cell = if v.is_empty() {
                "—".to_string()
            } else {
                let m = median(v.clone());
                match (base, per) {
                    (Some(base), 0) => format!("{:.0} ms  {:.2}x", ms(m), m.as_secs_f64() / base.as_secs_f64()),
                    (Some(base), per) => {
                        format!("{:.2} ms/job  {:.2}x", ms(m) / per as f64, m.as_secs_f64() / base.as_secs_f64())
                    }
                    (None, per) => format!("{:.0} ms  {:.2} ms/job", ms(m), ms(m) / per.max(1) as f64),
                }
            };
            line.push_str(&format!(" | {cell:>26}"));
        }
        println!("{line}");
    }
    type Pick = fn(&Figures) -> &Vec<u64>;
    let rss_rows: [(&str, Pick); 4] = [
        ("operator peak RSS during first contact", |f| &f.rss_first_kb),
        ("operator peak RSS during W1", |f| &f.rss_w1_kb),
        ("operator peak RSS during W2", |f| &f.rss_kb),
        ("operator peak RSS during W3", |f| &f.rss_w3_kb),
    ];
    for (name, pick) in rss_rows {
        let mut line = format!("  {name:<44}");
        for f in &figures {
            let cell = match pick(f).clone() {
                v if v.is_empty() => "—".to_string(),
                v => format!("{:.1} MB", median(v) as f64 / 1024.0),
            };
            line.push_str(&format!(" | {cell:>26}"));
        }
        println!("{line}");
    }
    for name in ["first contact", "W1", "W2", "W3", "W4", "W4 local"] {
        let mut line = format!("  {:<44}", format!("operator CPU (user+sys), {name}"));
        for f in &figures {
            let cell = match f.cpu.get(name) {
                Some(v) if !v.is_empty() => format!("{:.0} ms", ms(median(v.clone()))),
                _ => "—".to_string(),
            };
            line.push_str(&format!(" | {cell:>26}"));
        }
        println!("{line}");
    }
    // The work each workload took on this machine, all processes (it is CPU-bound here: the
    // sshds, shells and executors of a hundred nodes share two cores), to the floor's.
    let floor_machine = median(floor_machine);
    let script_machine = (!script_machine.is_empty()).then(|| median(script_machine));
    println!(
        "  machine CPU, floor / script floor          : {:>9.0} ms / {}",
        ms(floor_machine),
        script_machine.map_or("—".into(), |d| format!("{:.0} ms", ms(d)))
    );
    for (name, base, floor) in [
        ("first contact", Some(floor_machine), "floor's"),
        ("W1", Some(floor_machine), "floor's"),
        ("W2", script_machine, "script floor's"),
        ("W3", Some(floor_machine), "floor's"),
    ] {
        let mut line = format!("  {:<44}", format!("machine CPU, {name} / {floor}"));
        for f in &figures {
            let cell = match (f.machine.get(name), base) {
                (Some(v), Some(base)) if !v.is_empty() => {
                    let m = median(v.clone());
                    format!("{:.0} ms  {:.2}x", ms(m), m.as_secs_f64() / base.as_secs_f64())
                }
                _ => "—".to_string(),
            };
            line.push_str(&format!(" | {cell:>26}"));
        }
        println!("{line}");
    }
    // Each baseline against the candidate, run by run: what a change did, without the drift
    // of the floors between rounds.
    for (b, f) in binaries.iter().zip(&figures).skip(1) {
        println!("  {} / {}, paired by round (median, range):", binaries[0].label, b.label);
        for (name, runs) in &figures[0].by_round {
            if let Some(text) = f.by_round.get(name).and_then(|theirs| paired(runs, theirs)) {
                println!("    {name:<14} {text}");
            }
        }
    }
    match tui {
        Some(Ok(line)) => println!("  {line}"),
        Some(Err(e)) => println!("  TUI live: failed: {e}"),
        None => {}
    }
    for (b, f) in binaries.iter().zip(&figures) {
        let version = Command::new(&b.path).arg("--version").output().unwrap();
        println!("  {}: {} {}", b.label, b.path.display(), String::from_utf8_lossy(&version.stdout).trim());
        if let Some((hot, all)) = hot_code::layout(&b.path) {
            println!(
                "    code: {:.1} MB, the hot code placed first {:.1} MB of it",
                all as f64 / 1e6,
                hot as f64 / 1e6
            );
        }
        for failure in &f.failures {
            println!("  {} FAILED {failure}", b.label);
        }
    }
    if figures.iter().any(|f| !f.failures.is_empty()) {
        // The fleet's namespaces and servers go first: exit skips destructors.
        drop(bench);
        std::process::exit(1);
    }
}
