//! Relays: sites whose nodes the operator cannot route to, driven through a gateway that
//! runs `director relay` (its nodes are put in the gateway's network namespace, as the jump
//! host tests do), with the operator's agent forwarded.

use super::harness::{self, Fleet};
use super::schema::{self, Event, NodeOutcome};
use super::{code, finished, output, stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

fn user() -> String {
    if harness::is_root() {
        "root".to_string()
    } else {
        std::env::var("USER").unwrap_or_default()
    }
}

/// An ssh-agent of the test's own holding `key`; killed when dropped.
struct Agent {
    pid: String,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path, key: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let out = Command::new("ssh-agent").arg("-a").arg(&sock).output().unwrap();
        let pid = String::from_utf8_lossy(&out.stdout)
            .split(';')
            .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID=").map(str::to_string))
            .unwrap();
        let add = Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &sock).output().unwrap();
        assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
        Agent { pid, sock }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).output();
    }
}

/// Five hosts: h0 direct, h1 the relay of site eu with h2 behind it, h3 the relay of site us
/// with h4 behind it. The catalog names the relays per group.
fn sites() -> (Fleet, PathBuf) {
    let mut fleet = Fleet::start(5);
    fleet.put_behind(2, 1);
    fleet.put_behind(4, 3);
    let h = &fleet.hosts;
    let mut text = format!(
        "defaults: {{user: {}, identity_file: {}}}\ngroups:\n  eu: {{relay: {}, vars: {{site: eu}}}}\n  us: {{relay: {}, vars: {{site: us}}}}\nnodes:\n",
        user(),
        fleet.key.display(),
        h[1].name,
        h[3].name
    );
    for (i, host) in h.iter().enumerate() {
        let group = match i {
            2 => "[eu]",
            4 => "[us]",
            _ => "[]",
        };
        text.push_str(&format!(
            "  - {{name: {}, host: {}, port: {}, groups: {group}}}\n",
            host.name, host.addr, host.port
        ));
    }
    let catalog = fleet.file("sites.yaml", &text);
    (fleet, catalog)
}

fn run(fleet: &Fleet, agent: &Agent, catalog: &Path, file: &Path, args: &[&str]) -> (i32, Vec<Event>, String) {
    let out = output(
        fleet
            .director()
            .env("SSH_AUTH_SOCK", &agent.sock)
            .arg("orchestrate")
            .arg(file)
            .arg("--catalog")
            .arg(catalog)
            .arg("--json")
            .args(args),
    );
    (code(&out), schema::parse(&out.stdout), stderr(&out))
}

#[test]
fn an_orchestration_runs_on_a_direct_node_and_two_sites_through_their_relays() {
    let (fleet, catalog) = sites();
    let agent = Agent::start(fleet.path(), &fleet.key);
    let h = &fleet.hosts;
    if harness::is_root() {
        for behind in [&h[2], &h[4]] {
            let direct = std::net::TcpStream::connect_timeout(
                &format!("{}:{}", behind.addr, behind.port).parse().unwrap(),
                std::time::Duration::from_millis(500),
            );
            assert!(direct.is_err(), "{} is reachable directly", behind.name);
        }
    }
    let payload = fleet.file("payload.txt", "sent once per site\n");
    let blueprint = fleet.file("site.conf", "site={{ site | default('home') }}\n");
    let targets = format!("[{}, {}, {}]", h[0].name, h[2].name, h[4].name);
    let file = fleet.file(
        "o.yaml",
        &format!(
            "- targets: {targets}\n  jobs:\n    - RUN: hostname > ~/reached\n    - ADD: {} payload.txt\n    - ADD: --blueprint {} site.conf\n",
            payload.display(),
            blueprint.display()
        ),
    );
    // The sites' nodes are new to the operator: their keys are recorded through the relays.
    let pattern = |i: usize| {
        if h[i].port == 22 {
            h[i].addr.clone()
        } else {
            format!("[{}]:{}", h[i].addr, h[i].port)
        }
    };
    assert!(!fleet.known_hosts.exists());
    let before = [h[1].connections(), h[3].connections()];
    let (status, events, err) = run(&fleet, &agent, &catalog, &file, &[]);
    assert_eq!(status, 0, "{err}\n{events:#?}");
    for i in [0, 2, 4] {
        assert_eq!(std::fs::read_to_string(h[i].home_path("payload.txt")).unwrap(), "sent once per site\n");
        let site = ["home", "", "eu", "", "us"][i];
        assert_eq!(std::fs::read_to_string(h[i].home_path("site.conf")).unwrap(), format!("site={site}\n"));
        assert!(h[i].home_path("reached").exists(), "{}", h[i].name);
        let statuses: Vec<&str> = finished(&events, &h[i].name).iter().map(|f| f.1).collect();
        assert_eq!(statuses, ["ok", "ok", "ok"], "{}", h[i].name);
    }
    // One session from the operator to each relay, which is not a target.
    assert_eq!([h[1].connections() - before[0], h[3].connections() - before[1]], [1, 1]);
    assert!(!events.iter().any(|e| matches!(e, Event::NodeConnecting { node, .. } if node == &h[1].name)));
    if harness::is_root() {
        // The site's nodes saw their connections come from their relay's side of the link.
        for behind in [&h[2], &h[4]] {
            let (stem, last) = behind.addr.rsplit_once('.').unwrap();
            let gateway = format!("{stem}.{}", last.parse::<u8>().unwrap() - 1);
            let log = std::fs::read_to_string(behind.dir.join("sshd.log")).unwrap();
            assert!(log.contains(&format!("Connection from {gateway} ")), "{}: {log}", behind.name);
        }
    }
    // The events are those of a direct run: one run_started naming every node, each node's
    // connect, ready and finish, one run_finished.
    let started = events.iter().filter(|e| matches!(e, Event::RunStarted { .. })).count();
    let ended = events.iter().filter(|e| matches!(e, Event::RunFinished { .. })).count();
    assert_eq!((started, ended), (1, 1));
    // A node behind a relay has exactly the events a direct node has: the node's own in the
    // same order, and each job's in the same order (jobs overlap, so not between jobs).
    let shape = |name: &str| -> (Vec<String>, Vec<(usize, String)>) {
        let (mut own, mut jobs) = (Vec::new(), Vec::new());
        for e in &events {
            let text = format!("{e:?}");
            if !text.contains(&format!("node: {name:?}")) {
                continue;
            }
            let kind = text.split([' ', '{']).next().unwrap_or_default().to_string();
            let job = text.split("job: ").nth(1).and_then(|t| t.split(',').next()).and_then(|n| n.trim().parse().ok());
            match job {
                Some(job) => jobs.push((job, kind)),
                None => own.push(kind),
            }
        }
        jobs.sort_by_key(|(job, _)| *job);
        (own, jobs)
    };
    let direct = shape(&h[0].name);
    assert!(
        direct.0.contains(&"NodeReady".to_string()) && direct.0.contains(&"HostKeyRecorded".to_string()),
        "{direct:?}"
    );
    assert_eq!(direct.1.len(), 8, "{direct:?}");
    assert_eq!(shape(&h[2].name), direct);
    assert_eq!(shape(&h[4].name), direct);
    // The history has them as it has the direct node: the same fields, the same outcome, the
    // address they were reached at.
    let info = output(fleet.director().args(["manage", "--run-info", "last", "--json"]));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let recorded = |name: &str| -> serde_json::Value {
        let nodes = info["node_outcomes"].as_array().unwrap_or_else(|| panic!("{info}"));
        nodes.iter().find(|n| n["node"] == name).cloned().unwrap_or_else(|| panic!("{name}: {info}"))
    };
    for i in [0, 2, 4] {
        let node = recorded(&h[i].name);
        let mut keys: Vec<&String> = node.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["address", "error", "node", "outcome"], "{node}");
        assert_eq!(node["outcome"], "ok", "{node}");
        assert_eq!(node["address"], format!("{}@{}:{}", user(), h[i].addr, h[i].port), "{node}");
    }
    // The sites' host keys were recorded in the operator's known_hosts, as ssh finds them.
    for i in [2, 4] {
        let found =
            Command::new("ssh-keygen").arg("-F").arg(pattern(i)).arg("-f").arg(&fleet.known_hosts).output().unwrap();
        assert!(found.status.success(), "{} not in known_hosts", h[i].name);
        let said = events.iter().any(|e| matches!(e, Event::HostKeyRecorded { node, file, .. } if node == &h[i].name && Path::new(file) == fleet.known_hosts));
        assert!(said, "{}", h[i].name);
    }
    // Again: every job is answered from the node caches, through the relays as directly.
    let (status, events, err) = run(&fleet, &agent, &catalog, &file, &[]);
    assert_eq!(status, 0, "{err}");
    for i in [0, 2, 4] {
        let statuses: Vec<&str> = finished(&events, &h[i].name).iter().map(|f| f.1).collect();
        assert_eq!(statuses, ["cached", "cached", "cached"], "{}", h[i].name);
    }
}

/// Waits (up to 120 s) for `ready`.
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn node_finished(events: &[Event], name: &str) -> Option<NodeOutcome> {
    events.iter().find_map(|e| match e {
        Event::NodeFinished { node, outcome, .. } if node == name => Some(*outcome),
        _ => None,
    })
}

#[test]
fn failures_and_unreachable_nodes_behind_a_relay_are_the_runs_and_retry_failed_goes_through_it() {
    let (fleet, catalog) = sites();
    let agent = Agent::start(fleet.path(), &fleet.key);
    let h = &fleet.hosts;
    // A node of site eu that its relay cannot reach: nothing listens on port 1.
    let mut text = std::fs::read_to_string(&catalog).unwrap();
    text.push_str(&format!("  - {{name: ghost, host: {}, port: 1, groups: [eu]}}\n", h[2].addr));
    std::fs::write(&catalog, text).unwrap();
    std::fs::write(h[4].home_path("fail"), "").unwrap();
    let file = fleet.file(
        "o.yaml",
        &format!(
            "- targets: [{}, {}, {}, ghost]\n  jobs:\n    - RUN: test ! -e ~/fail\n    - RUN: echo done\n",
            h[0].name, h[2].name, h[4].name
        ),
    );
    let (status, events, err) = run(&fleet, &agent, &catalog, &file, &[]);
    assert_eq!(status, 1, "{err}");
    assert_eq!(finished(&events, &h[4].name).iter().map(|f| f.1).collect::<Vec<_>>(), ["failed", "skipped"]);
    assert_eq!(finished(&events, &h[2].name).iter().map(|f| f.1).collect::<Vec<_>>(), ["ok", "ok"]);
    assert_eq!(node_finished(&events, &h[4].name), Some(NodeOutcome::Failed));
    let error = super::unreachable_error(&events, "ghost").expect("ghost is unreachable");
    assert!(error.starts_with(&format!("cannot connect to {}:1", h[2].addr)), "{error}");
    let (summary, _) = super::run_finished(&events);
    let unreachable: Vec<_> = events.iter().filter(|e| matches!(e, Event::NodeUnreachable { .. })).collect();
    assert_eq!((summary.nodes_ok, summary.nodes_failed, summary.nodes_unreachable), (2, 1, 1), "{unreachable:?}");

    // The history has the run as it has a direct one: --retry-failed takes the nodes that did
    // not end ok, through their relays.
    std::fs::remove_file(h[4].home_path("fail")).unwrap();
    let out = output(
        fleet
            .director()
            .env("SSH_AUTH_SOCK", &agent.sock)
            .args(["orchestrate", "--retry-failed", "--json"])
            .arg("--catalog")
            .arg(&catalog),
    );
    let events = schema::parse(&out.stdout);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let nodes = events.iter().find_map(|e| match e {
        Event::RunStarted { nodes, .. } => Some(nodes.clone()),
        _ => None,
    });
    assert_eq!(nodes, Some(vec![h[4].name.clone(), "ghost".to_string()]));
    assert_eq!(finished(&events, &h[4].name).iter().map(|f| f.1).collect::<Vec<_>>(), ["ok", "ok"]);
}

#[test]
fn a_relay_killed_mid_run_makes_its_unfinished_nodes_unreachable_and_the_run_ends() {
    let (fleet, catalog) = sites();
    let agent = Agent::start(fleet.path(), &fleet.key);
    let h = &fleet.hosts;
    std::fs::write(h[2].home_path("slow"), "").unwrap();
    let file = fleet.file(
        "o.yaml",
        &format!(
            "- targets: [{}, {}, {}]\n  jobs:\n    - RUN: touch ~/started; if [ -e ~/slow ]; then sleep 600; fi\n    - RUN: echo after\n",
            h[0].name, h[2].name, h[4].name
        ),
    );
    let child = spawn(&fleet, &agent, &catalog, &file);
    wait_for("the job on the slow node", || h[2].home_path("started").exists());
    assert_eq!(h[1].kill_commands(" relay"), 1, "one relay runs on {}", h[1].name);
    let out = child.wait_with_output().unwrap();
    let events = schema::parse(&out.stdout);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let error = super::unreachable_error(&events, &h[2].name).expect("the slow node is unreachable");
    assert!(error.starts_with(&format!("relay {}: lost (exit ", h[1].name)), "{error}");
    let f = finished(&events, &h[2].name);
    assert_eq!(f.iter().map(|f| f.1).collect::<Vec<_>>(), ["cancelled", "skipped"]);
    assert_eq!(f[0].3, Some(format!("the node was lost with its relay while this job ran: {error}").as_str()));
    assert_eq!(node_finished(&events, &h[2].name), Some(NodeOutcome::Unreachable));
    // The other site and the direct node were not held up.
    for i in [0, 4] {
        let own: Vec<_> = events.iter().filter(|e| format!("{e:?}").contains(&h[i].name)).collect();
        assert_eq!(
            node_finished(&events, &h[i].name),
            Some(NodeOutcome::Ok),
            "{}: {own:#?}\n{}",
            h[i].name,
            stderr(&out)
        );
    }
}

#[test]
fn ctrl_c_reaches_through_a_relay_and_kills_the_jobs_on_its_nodes() {
    let (fleet, catalog) = sites();
    let agent = Agent::start(fleet.path(), &fleet.key);
    let h = &fleet.hosts;
    let marker = 40000 + std::process::id() % 9000;
    let file = fleet.file(
        "o.yaml",
        &format!("- targets: [{}]\n  jobs:\n    - RUN: sleep {marker}3\n    - RUN: echo never\n", h[4].name),
    );
    let child = spawn(&fleet, &agent, &catalog, &file);
    let sleeping = || !h[4].commands(&format!("sleep {marker}3")).is_empty();
    wait_for("the job behind the relay", sleeping);
    let pid = child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(sleeping(), "the first Ctrl-C lets the running job go on");
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(!sleeping(), "the job behind the relay survived the second Ctrl-C");
    let events = schema::parse(&out.stdout);
    assert_eq!(finished(&events, &h[4].name).iter().map(|f| f.1).collect::<Vec<_>>(), ["cancelled", "skipped"]);
    // The relay ended with the run.
    wait_for("the relay's end", || h[3].commands(" relay").is_empty());
}

/// `director orchestrate FILE --catalog CATALOG --json`, started with the agent, to read while
/// it runs.
fn spawn(fleet: &Fleet, agent: &Agent, catalog: &Path, file: &Path) -> std::process::Child {
    fleet
        .director()
        .env("SSH_AUTH_SOCK", &agent.sock)
        .arg("orchestrate")
        .arg(file)
        .arg("--catalog")
        .arg(catalog)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn manage_cancel_reaches_through_a_relay_and_an_operator_that_dies_takes_its_relays_runs_down() {
    let (fleet, catalog) = sites();
    let agent = Agent::start(fleet.path(), &fleet.key);
    let h = &fleet.hosts;
    let marker = 30000 + std::process::id() % 9000;
    let file = fleet.file("o.yaml", &format!("- targets: [{}]\n  jobs:\n    - RUN: sleep {marker}1\n", h[2].name));
    let sleeping = || !h[2].commands(&format!("sleep {marker}1")).is_empty();

    // From another terminal: the run is cancelled, and the job behind the relay killed.
    let child = spawn(&fleet, &agent, &catalog, &file);
    wait_for("the job behind the relay", sleeping);
    let run = output(fleet.director().args(["manage", "--run-info", "last", "--json"]));
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    let out = output(fleet.director().args(["manage", "--cancel", &id]));
    assert_eq!((code(&out), super::stdout(&out)), (0, format!("Run {id} is cancelled.\n")), "{}", stderr(&out));
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(!sleeping(), "the job behind the relay survived manage --cancel");
    let events = schema::parse(&out.stdout);
    assert_eq!(finished(&events, &h[2].name).iter().map(|f| f.1).collect::<Vec<_>>(), ["cancelled"]);

    // An operator killed outright: its relay hears its end of the channel close and kills
    // the run it was serving.
    let mut child = spawn(&fleet, &agent, &catalog, &file);
    wait_for("the job behind the relay", sleeping);
    child.kill().unwrap();
    let _ = child.wait();
    wait_for("the job's end after its operator died", || !sleeping());
    wait_for("the relay's end", || h[1].commands(" relay").is_empty());
}

#[test]
fn a_query_gathers_from_a_direct_node_and_two_sites_and_every_node_sees_all_of_them() {
    let (fleet, catalog) = sites();
    let agent = Agent::start(fleet.path(), &fleet.key);
    let h = &fleet.hosts;
    let file = fleet.file(
        "o.yaml",
        &format!(
            "- targets: [{}, {}, {}]\n  jobs:\n    - RUN: --stdout-arg where echo {{{{ site | default('home') }}}}\n    - QUERY: where\n    - RUN: echo '{{% for n, v in query | dictsort %}}{{{{ n }}}}={{{{ v.where }}}} {{% endfor %}}' > ~/peers\n",
            h[0].name, h[2].name, h[4].name
        ),
    );
    let (status, events, err) = run(&fleet, &agent, &catalog, &file, &[]);
    assert_eq!(status, 0, "{err}");
    let want = format!("{}=home {}=eu {}=us \n", h[0].name, h[2].name, h[4].name);
    for i in [0, 2, 4] {
        assert_eq!(std::fs::read_to_string(h[i].home_path("peers")).unwrap(), want, "{}", h[i].name);
        let statuses: Vec<&str> = finished(&events, &h[i].name).iter().map(|f| f.1).collect();
        assert_eq!(statuses, ["ok", "ok", "ok"], "{}", h[i].name);
    }
    // A site whose node cannot be reached does not hold the others at the QUERY: it leaves.
    let mut text = std::fs::read_to_string(&catalog).unwrap();
    text.push_str(&format!("  - {{name: ghost, host: {}, port: 1, groups: [us]}}\n", h[4].addr));
    std::fs::write(&catalog, text).unwrap();
    let file = fleet.file(
        "o2.yaml",
        &format!(
            "- targets: [{}, {}, ghost]\n  jobs:\n    - RUN: --stdout-arg again echo {{{{ site | default('home') }}}}\n    - QUERY: again\n    - RUN: echo '{{% for n, v in query | dictsort %}}{{% if v.again is defined %}}{{{{ n }}}} {{% endif %}}{{% endfor %}}' > ~/peers\n",
            h[0].name, h[2].name
        ),
    );
    let (status, _, err) = run(&fleet, &agent, &catalog, &file, &[]);
    assert_eq!(status, 3, "{err}");
    for i in [0, 2] {
        let want = format!("{} {} \n", h[0].name, h[2].name);
        assert_eq!(std::fs::read_to_string(h[i].home_path("peers")).unwrap(), want, "{}", h[i].name);
    }
}

#[test]
fn a_gateway_of_another_architecture_gets_the_build_beside_the_operator_or_a_clear_refusal() {
    let (mut fleet, catalog) = sites();
    // h1's logins say it is aarch64 (`uname -m`), as an arm64 gateway's would.
    fleet.set_arch(1, "aarch64");
    let agent = Agent::start(fleet.path(), &fleet.key);
    let h = &fleet.hosts;
    let file = fleet.file("o.yaml", &format!("- targets: [{}, {}]\n  jobs:\n    - RUN: true\n", h[2].name, h[4].name));
    // The operator from a directory of its own, with no build for aarch64 beside it: refused
    // for that site's nodes, naming where the build would be read from; the other site runs.
    let bin = fleet.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_director"), bin.join("director")).unwrap();
    let run_from = |dir: &Path| {
        let cmd = fleet.director();
        let out = output(
            Command::new(dir.join("director"))
                .envs(cmd.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
                .env_remove("SSH_AUTH_SOCK")
                .env("SSH_AUTH_SOCK", &agent.sock)
                .arg("orchestrate")
                .arg(&file)
                .arg("--catalog")
                .arg(&catalog)
                .arg("--json")
                .stdin(std::process::Stdio::null()),
        );
        (code(&out), schema::parse(&out.stdout), stderr(&out))
    };
    let (status, events, err) = run_from(&bin);
    assert_eq!(status, 3, "{err}");
    let error = super::unreachable_error(&events, &h[2].name).expect("the aarch64 site's node is unreachable");
    assert_eq!(
        error,
        format!(
            "relay {}: the gateway is aarch64, and this director (built for x86_64) has no build for it beside it: put a static director built for aarch64 at {}",
            h[1].name,
            bin.join("director-aarch64").display()
        )
    );
    assert_eq!(node_finished(&events, &h[4].name), Some(NodeOutcome::Ok));
    // A build for aarch64 beside it is the one that gateway gets, under its own hash: a real
    // aarch64 build when DIRECTOR_TEST_AARCH64_BUILD names one (it then runs there through
    // qemu-user, as the arm64 test hosts' executors do), else a marked copy of this one (the
    // gateway is really this machine).
    let aarch64_build = match std::env::var_os("DIRECTOR_TEST_AARCH64_BUILD") {
        Some(path) => std::fs::read(path).unwrap(),
        None => [std::fs::read(bin.join("director")).unwrap(), b"aarch64".to_vec()].concat(),
    };
    std::fs::write(bin.join("director-aarch64"), aarch64_build).unwrap();
    let (status, events, err) = run_from(&bin);
    assert_eq!(status, 0, "{err}");
    assert_eq!(node_finished(&events, &h[2].name), Some(NodeOutcome::Ok));
    let installed: Vec<String> = std::fs::read_dir(h[1].home_path(".cache/director/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("director-") && !n.starts_with("director-exec-"))
        .collect();
    let aarch64 = {
        use sha3::Digest;
        let bytes = std::fs::read(bin.join("director-aarch64")).unwrap();
        sha3::Sha3_256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_eq!(installed, [format!("director-{aarch64}")]);
}
