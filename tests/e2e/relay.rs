//! Relays: sites whose nodes the operator cannot route to, driven through a gateway that
//! runs `director relay` (its nodes are put in the gateway's network namespace, as the jump
//! host tests do), with the operator's agent forwarded.

use super::harness::{self, Fleet};
use super::schema::{self, Event};
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
    for i in [0, 2, 4] {
        let ready = events.iter().any(|e| matches!(e, Event::NodeReady { node, .. } if node == &h[i].name));
        assert!(ready, "{}", h[i].name);
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
