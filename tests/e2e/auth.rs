//! Authentication as OpenSSH does it, on real sshd hosts: keys offered in OpenSSH's order and
//! never more than sshd's MaxAuthTries, IdentitiesOnly, IdentityAgent, CertificateFile, and
//! RSA user certificates (signed with SHA-2, which sshd requires).

use super::harness::{self, Fleet};
use super::schema;
use super::*;
use super::{code, output, stderr, unreachable_error};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn user() -> String {
    if harness::is_root() {
        "root".to_string()
    } else {
        std::env::var("USER").unwrap_or_default()
    }
}

/// `director orchestrate FILE --catalog CATALOG --ssh-config CONFIG --json`, with `agent` as
/// SSH_AUTH_SOCK (none without).
fn orchestrate_via(fleet: &Fleet, file: &Path, catalog: &Path, ssh_config: &Path, agent: Option<&Path>) -> Output {
    let mut cmd = fleet.director();
    if let Some(sock) = agent {
        cmd.env("SSH_AUTH_SOCK", sock);
    }
    output(
        cmd.arg("orchestrate")
            .arg(file)
            .arg("--catalog")
            .arg(catalog)
            .arg("--ssh-config")
            .arg(ssh_config)
            .arg("--json"),
    )
}

fn keygen(path: &Path, kind: &str) {
    let _ = std::fs::remove_file(path);
    let out = Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", "", "-C", "", "-f"]).arg(path).output().unwrap();
    assert!(out.status.success());
}

/// An ssh-agent of the test's own at `sock`, holding `keys`; killed when dropped.
struct Agent(String);

impl Agent {
    fn start(sock: &Path, keys: &[PathBuf]) -> Agent {
        let out = Command::new("ssh-agent").arg("-a").arg(sock).output().unwrap();
        let pid = String::from_utf8_lossy(&out.stdout)
            .split(';')
            .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID=").map(str::to_string))
            .unwrap();
        for key in keys {
            let add = Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", sock).output().unwrap();
            assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
        }
        Agent(pid)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.0).output();
    }
}

#[test]
fn keys_are_offered_in_openssh_order_and_never_past_max_auth_tries() {
    let fleet = Fleet::start(1);
    let h = &fleet.hosts[0];
    let dir = fleet.path().join("agent-keys");
    std::fs::create_dir_all(&dir).unwrap();
    // Seven keys the host does not know, in an agent.
    let strangers: Vec<PathBuf> = (0..7).map(|i| dir.join(format!("stranger{i}"))).collect();
    strangers.iter().for_each(|k| keygen(k, "ed25519"));
    let sock = dir.join("agent.sock");
    let _agent = Agent::start(&sock, &strangers);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    let config = |extra: &str| {
        fleet.file(
            "auth_ssh_config",
            &format!(
                "Host target\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n{extra}",
                h.addr,
                h.port,
                user(),
                fleet.key.display()
            ),
        )
    };
    let catalog = fleet.file("target.yaml", "nodes:\n  - {name: target}\n");
    let run = |ssh_config: &Path| orchestrate_via(&fleet, &file, &catalog, ssh_config, Some(&sock));
    // As ssh: the agent's keys first, then the identity file. sshd drops a client at its
    // sixth failure: five offers, and the last two agent keys and the right key are never
    // offered; the error says why.
    let out = run(&config(""));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let error = unreachable_error(&schema::parse(&out.stdout), "target").unwrap().to_string();
    assert!(error.starts_with(&format!("authentication as {} failed (tried ssh-agent key ", user())), "{error}");
    assert_eq!(error.matches("ssh-agent key").count(), 5, "{error}");
    assert!(
        error.ends_with("; 3 more not offered, to stay under sshd's MaxAuthTries: name the key with `identity_file` (and IdentitiesOnly)"),
        "{error}"
    );
    let log = std::fs::read_to_string(h.dir.join("sshd.log")).unwrap();
    assert!(!log.contains("Too many authentication failures"), "{log}");
    // The same with ssh itself: it offers them all and sshd gives up on it.
    let ssh = Command::new("ssh")
        .arg("-F")
        .arg(config(""))
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "target",
            "true",
        ])
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(!ssh.status.success());
    assert!(String::from_utf8_lossy(&ssh.stderr).contains("Too many authentication failures"));
    // IdentitiesOnly: only the identity file is offered, and gets in.
    let out = run(&config("  IdentitiesOnly yes\n"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // IdentityAgent none: no agent at all, so the identity file comes first.
    let out = run(&config("  IdentityAgent none\n"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The right key in the agent (named by IdentityAgent, SSH_AUTH_SOCK unset): offered first.
    let right_sock = dir.join("right.sock");
    let _right = Agent::start(&right_sock, std::slice::from_ref(&fleet.key));
    let ssh_config = config(&format!("  IdentityAgent {}\n", right_sock.display()));
    let out = orchestrate_via(&fleet, &file, &catalog, &ssh_config, None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn certificate_files_and_rsa_certificates_get_in() {
    let mut fleet = Fleet::start(1);
    let h = (fleet.hosts[0].addr.clone(), fleet.hosts[0].port);
    let dir = fleet.path().join("certs");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("user-ca");
    keygen(&ca, "ed25519");
    fleet.trust_user_ca(&ca.with_extension("pub"));
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    for kind in ["rsa", "ed25519"] {
        // A key the host does not list, certified by the CA; the certificate elsewhere,
        // named by CertificateFile.
        let key = dir.join(format!("id_{kind}"));
        keygen(&key, kind);
        let signed = Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca)
            .args(["-I", "director-user", "-n", &user(), "-V", "-5m:+1h"])
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
        let elsewhere = dir.join(format!("{kind}-certificate.pub"));
        std::fs::rename(dir.join(format!("id_{kind}-cert.pub")), &elsewhere).unwrap();
        let ssh_config = fleet.file(
            &format!("cert_ssh_config_{kind}"),
            &format!(
                "Host certified\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  CertificateFile {}\n  IdentityAgent none\n",
                h.0,
                h.1,
                user(),
                key.display(),
                elsewhere.display()
            ),
        );
        let catalog = fleet.file("certified.yaml", "nodes:\n  - {name: certified}\n");
        let run = |ssh_config: &Path| orchestrate_via(&fleet, &file, &catalog, ssh_config, None);
        let out = run(&ssh_config);
        assert_eq!(code(&out), 0, "{kind}: {}", stderr(&out));
        // The oracle: ssh gets in with the same files.
        let ssh = Command::new("ssh")
            .arg("-F")
            .arg(&ssh_config)
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
            .args(["certified", "true"])
            .output()
            .unwrap();
        assert!(ssh.status.success(), "{kind}: {}", String::from_utf8_lossy(&ssh.stderr));
        // Without the certificate, the key alone is refused: the certificate is what got in.
        let bare = fleet.file(
            &format!("bare_ssh_config_{kind}"),
            &std::fs::read_to_string(&ssh_config)
                .unwrap()
                .replace(&format!("  CertificateFile {}\n", elsewhere.display()), ""),
        );
        let out = run(&bare);
        assert_eq!(code(&out), 3, "{kind}: {}", stderr(&out));
        assert_eq!(
            unreachable_error(&schema::parse(&out.stdout), "certified"),
            Some(format!("authentication as {} failed (tried key {})", user(), key.display()).as_str())
        );
    }
}

#[test]
fn ssh_agent_authenticates_when_no_identity_file_is_set() {
    let fleet = Fleet::start(3);
    let sock = fleet.path().join("agent.sock");
    // In the foreground, its debug log says every connection and request it gets.
    let log_path = fleet.path().join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut agent = Command::new("ssh-agent")
        .arg("-d")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(sock.exists(), "ssh-agent did not listen on {}", sock.display());
    let add = Command::new("ssh-add").arg(&fleet.key).env("SSH_AUTH_SOCK", &sock).output().unwrap();
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let catalog = std::fs::read_to_string(fleet.catalog()).unwrap();
    let without_key: String =
        catalog.lines().filter(|l| !l.contains("identity_file")).map(|l| format!("{l}\n")).collect();
    let catalog = fleet.file("agent-catalog.yaml", &without_key);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: true\n");
    // One node after another (batches of one): each login after the first finds the agent's
    // connection the one before kept.
    let out = output(
        fleet
            .director()
            .arg("orchestrate")
            .arg(&file)
            .arg("--catalog")
            .arg(&catalog)
            .args(["--json", "--serial", "1"])
            .env("SSH_AUTH_SOCK", &sock),
    );
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(run_finished(&schema::parse(&out.stdout)).0.jobs_ok, 3);
    // The run asked the agent for its keys once, and signed three logins on one connection
    // (ssh-add's own was the first).
    let log = std::fs::read_to_string(&log_path).unwrap();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!((count("new_socket: type = CONNECTION"), count(") type 11"), count(") type 13")), (2, 1, 3), "{log}");

    // Without the agent (and no default keys in the isolated home) the failure says why.
    let out = output(fleet.director().arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).args([
        "--json",
        "--restrict",
        "h1",
    ]));
    assert_eq!(code(&out), 3);
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    assert_eq!(
        unreachable_error(&schema::parse(&out.stdout), "h1"),
        Some(format!("no key to authenticate as {user}: set `identity_file` for node h1 or start ssh-agent").as_str())
    );
}
