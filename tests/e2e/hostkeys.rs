//! known_hosts decided as OpenSSH decides: each case writes the same file for director and
//! for the `ssh` client (the oracle), runs both against a real sshd host with the same
//! policy, and compares accept/refuse. A line director records must be one `ssh-keygen -F`
//! finds.

use super::harness::{self, Fleet};
use super::*;
use super::{code, output, stderr};
use std::process::Command;

fn keygen(dir: &std::path::Path, name: &str, kind: &str) -> String {
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let out = Command::new("ssh-keygen").args(["-q", "-t", kind, "-N", "", "-f"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Whether the `ssh` client accepts the host with this known_hosts file and policy (the
/// oracle): host key decided, then logged in with the fleet's key to run `true`.
fn ssh_accepts(fleet: &Fleet, known_hosts: &std::path::Path, policy: &str) -> bool {
    let h = &fleet.hosts[0];
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "HashKnownHosts=no"])
        .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "CheckHostIP=no", "-o"])
        .arg(format!("StrictHostKeyChecking={}", if policy == "strict" { "yes" } else { "accept-new" }))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(&fleet.key)
        .args(["-p", &h.port.to_string(), &format!("{user}@{}", h.addr), "true"])
        .env("HOME", fleet.path().join("operator-home"))
        .output()
        .unwrap()
        .status
        .success()
}

/// director's run of `file` with this known_hosts file and policy.
fn director_run(
    fleet: &Fleet,
    file: &std::path::Path,
    known_hosts: &std::path::Path,
    policy: &str,
) -> std::process::Output {
    output(fleet.orchestrate(file).env("DIRECTOR_KNOWN_HOSTS", known_hosts).args([
        "--host-key-checking",
        policy,
        "--progress",
        "none",
    ]))
}

#[test]
fn known_hosts_decisions_match_the_ssh_client() {
    let fleet = Fleet::start(1);
    let h = &fleet.hosts[0];
    let dir = fleet.path().join("kh");
    std::fs::create_dir_all(&dir).unwrap();
    let host_key = {
        let text = std::fs::read_to_string(h.dir.join("ssh_host_ed25519_key.pub")).unwrap();
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    };
    let other = keygen(&dir, "other", "ed25519");
    let rsa = keygen(&dir, "rsa", "rsa");
    // How the host is named in known_hosts, and a wildcard that covers it.
    let (name, wild) = if h.port == 22 {
        let stem = h.addr.rsplit_once('.').unwrap().0;
        (h.addr.clone(), format!("{stem}.*"))
    } else {
        (format!("[{}]:{}", h.addr, h.port), format!("[127.0.0.*]:{}", h.port))
    };
    // A hashed line, made by ssh-keygen -H.
    let hashed = |key: &str| {
        let f = dir.join("to-hash");
        std::fs::write(&f, format!("{name} {key}\n")).unwrap();
        assert!(Command::new("ssh-keygen").args(["-q", "-H", "-f"]).arg(&f).output().unwrap().status.success());
        std::fs::read_to_string(&f).unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        ("exact line", format!("{name} {host_key}\n")),
        ("another key", format!("{name} {other}\n")),
        ("a stale line before the right one", format!("{name} {other}\n{name} {host_key}\n")),
        ("only a key of another type", format!("{name} {rsa}\n")),
        ("revoked and listed", format!("@revoked {name} {host_key}\n{name} {host_key}\n")),
        ("revoked for every host", format!("@revoked * {host_key}\n")),
        ("wildcard with the key", format!("{wild} {host_key}\n")),
        ("wildcard with another key", format!("{wild} {other}\n")),
        ("negated out", format!("*,!{name} {other}\n")),
        ("hashed with the key", hashed(&host_key)),
        ("hashed with another key", hashed(&other)),
        ("empty", String::new()),
        (
            "garbage around the right line",
            format!("not a line\n# comment\n{name} ssh-ed25519 !!!\n{name} {host_key}\n\n"),
        ),
        ("a CA line only", format!("@cert-authority {name} {other}\n")),
        ("other hosts only", format!("192.0.2.1 {other}\n[{name}]:2 {host_key}\n")),
    ];
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    let mut differ = Vec::new();
    for policy in ["strict", "accept-new"] {
        for (i, (what, text)) in cases.iter().enumerate() {
            let theirs = dir.join(format!("ssh-{policy}-{i}"));
            let ours = dir.join(format!("director-{policy}-{i}"));
            std::fs::write(&theirs, text).unwrap();
            std::fs::write(&ours, text).unwrap();
            let ssh_ok = ssh_accepts(&fleet, &theirs, policy);
            let ssh_accepts = ssh_ok;
            let out = director_run(&fleet, &file, &ours, policy);
            let director_accepts = code(&out) == 0;
            if ssh_accepts != director_accepts {
                differ.push(format!(
                    "{policy} / {what}: ssh {}, director {} ({})",
                    if ssh_accepts { "accepts" } else { "refuses" },
                    if director_accepts { "accepts" } else { "refuses" },
                    stderr(&out).trim()
                ));
            }
            // What director recorded, ssh-keygen finds.
            if policy == "accept-new" && director_accepts && text.is_empty() {
                let found = Command::new("ssh-keygen").args(["-F", &name, "-f"]).arg(&ours).output().unwrap();
                assert!(
                    String::from_utf8_lossy(&found.stdout).contains(&host_key),
                    "ssh-keygen -F does not find the recorded key"
                );
            }
        }
    }
    assert!(differ.is_empty(), "director and ssh decide differently:\n{}", differ.join("\n"));
    // A revoked key is refused whatever the policy, and the message says where it is revoked.
    let revoked = dir.join("revoked");
    std::fs::write(&revoked, format!("{name} {host_key}\n@revoked * {host_key}\n")).unwrap();
    let out = output(fleet.orchestrate(&file).env("DIRECTOR_KNOWN_HOSTS", &revoked).args(["--json"]));
    let events = super::schema::parse(&out.stdout);
    let offered = super::fingerprint(&h.dir.join("ssh_host_ed25519_key.pub"));
    assert_eq!(
        super::unreachable_error(&events, "h1"),
        Some(
            format!(
                "host key for node h1 ({name}) is revoked: {} line 2 marks {offered} @revoked; refusing to connect",
                revoked.display()
            )
            .as_str()
        )
    );
}

#[test]
fn an_encrypted_identity_file_is_used_through_the_agent_that_holds_it() {
    let fleet = Fleet::start(1);
    let dir = fleet.path().join("enc");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("id_locked");
    let made =
        Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "s3cret pass", "-f"]).arg(&key).output().unwrap();
    assert!(made.status.success());
    // The hosts accept it too (they read the fleet's authorized_keys).
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let authorized = fleet.path().join("authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).unwrap();
    keys.push_str(&public);
    std::fs::write(&authorized, keys).unwrap();
    let base = std::fs::read_to_string(fleet.catalog()).unwrap();
    let catalog = fleet.file(
        "locked.yaml",
        &base.replace(&format!("identity_file: {}", fleet.key.display()), &format!("identity_file: {}", key.display())),
    );
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    let run = |sock: Option<&std::path::Path>| {
        let mut cmd = fleet.director();
        cmd.arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).arg("--json");
        if let Some(s) = sock {
            cmd.env("SSH_AUTH_SOCK", s);
        }
        output(&mut cmd)
    };
    // No agent: refused before any contact, saying what to do.
    let out = run(None);
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        format!(
            "error: {}:3:18: cannot use identity file {} of node `h1`: the key is protected by a passphrase, ssh-agent does not hold it, and there is no terminal to ask it on\n  hint: add it to the agent first: ssh-add {}\n",
            catalog.display(),
            key.display(),
            key.display()
        )
    );
    // With the key in an agent: used through it, never decrypted by director.
    let sock = dir.join("agent.sock");
    let agent = Command::new("ssh-agent").arg("-a").arg(&sock).output().unwrap();
    let agent_pid: String = String::from_utf8_lossy(&agent.stdout)
        .split(';')
        .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID=").map(str::to_string))
        .unwrap();
    let askpass = dir.join("askpass");
    std::fs::write(&askpass, "#!/bin/sh\necho 's3cret pass'\n").unwrap();
    std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let add = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &sock)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let out = run(Some(&sock));
    let _ = Command::new("kill").arg(&agent_pid).output();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn host_certificates_are_decided_as_ssh_decides() {
    let mut fleet = Fleet::start(1);
    let dir = fleet.path().join("ca");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = keygen(&dir, "ca", "ed25519");
    let other_ca = keygen(&dir, "other-ca", "ed25519");
    let addr = fleet.hosts[0].addr.clone();
    let port = fleet.hosts[0].port;
    let name = if port == 22 { addr.clone() } else { format!("[{addr}]:{port}") };
    let host_key = {
        let text = std::fs::read_to_string(fleet.hosts[0].dir.join("ssh_host_ed25519_key.pub")).unwrap();
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    };
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    // (certificate principals, validity), then the known_hosts files to try with it.
    let certs = [(addr.as_str(), "-5m:+1h"), ("someone-else", "-5m:+1h"), (addr.as_str(), "-2d:-1d")];
    let files = |ca_line: &str| {
        vec![
            ("trusted CA", format!("@cert-authority {name} {ca_line}\n")),
            ("another CA", format!("@cert-authority {name} {other_ca}\n")),
            ("trusted CA and the plain key", format!("@cert-authority * {ca_line}\n{name} {host_key}\n")),
            ("revoked CA", format!("@cert-authority * {ca_line}\n@revoked * {ca_line}\n")),
            ("CA for other hosts", format!("@cert-authority 192.0.2.* {ca_line}\n")),
        ]
    };
    let mut differ = Vec::new();
    for (c, (principals, validity)) in certs.iter().enumerate() {
        fleet.certify(0, &dir.join("ca"), principals, validity);
        for policy in ["strict", "accept-new"] {
            for (i, (what, text)) in files(&ca).into_iter().enumerate() {
                let theirs = dir.join(format!("ssh-{c}-{policy}-{i}"));
                let ours = dir.join(format!("director-{c}-{policy}-{i}"));
                std::fs::write(&theirs, &text).unwrap();
                std::fs::write(&ours, &text).unwrap();
                let ssh_ok = ssh_accepts(&fleet, &theirs, policy);
                let out = director_run(&fleet, &file, &ours, policy);
                let (theirs_ok, ours_ok) = (ssh_ok, code(&out) == 0);
                if theirs_ok != ours_ok {
                    differ.push(format!(
                        "certificate for {principals} valid {validity}, {policy} / {what}: ssh {}, director {} ({})",
                        if theirs_ok { "accepts" } else { "refuses" },
                        if ours_ok { "accepts" } else { "refuses" },
                        stderr(&out).trim()
                    ));
                }
            }
        }
    }
    assert!(differ.is_empty(), "director and ssh decide differently:\n{}", differ.join("\n"));
}

#[test]
fn a_user_certificate_beside_the_identity_file_is_offered() {
    let mut fleet = Fleet::start(1);
    let dir = fleet.path().join("usercert");
    std::fs::create_dir_all(&dir).unwrap();
    keygen(&dir, "user-ca", "ed25519");
    // A key the hosts do not list: only its certificate can get it in.
    keygen(&dir, "id_certified", "ed25519");
    let user = if harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let signed = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(dir.join("user-ca"))
        .args(["-I", "director-user", "-n", &user, "-V", "-5m:+1h"])
        .arg(dir.join("id_certified.pub"))
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", String::from_utf8_lossy(&signed.stderr));
    assert!(dir.join("id_certified-cert.pub").exists());
    let base = std::fs::read_to_string(fleet.catalog()).unwrap();
    let key = dir.join("id_certified");
    let catalog = fleet.file(
        "cert.yaml",
        &base.replace(&format!("identity_file: {}", fleet.key.display()), &format!("identity_file: {}", key.display())),
    );
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    let run = |fleet: &Fleet| {
        output(fleet.director().arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).arg("--json"))
    };
    // Not trusted yet: the certificate and the key are both refused, and the error says so.
    let out = run(&fleet);
    assert_eq!(code(&out), 3);
    assert_eq!(
        super::unreachable_error(&super::schema::parse(&out.stdout), "h1"),
        Some(
            format!(
                "authentication as {user} failed (tried certificate {}-cert.pub, key {})",
                key.display(),
                key.display()
            )
            .as_str()
        )
    );
    // Once the hosts trust the CA, the certificate gets in.
    fleet.trust_user_ca(&dir.join("user-ca.pub"));
    let out = run(&fleet);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_new_host_key_is_recorded_under_the_file_lock_other_writers_hold() {
    let fleet = Fleet::start(1);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    std::fs::write(&fleet.known_hosts, "").unwrap();
    // Another writer (here flock(1), as ssh-keygen or a second run would be) holds the file.
    let holder = Command::new("flock").arg(&fleet.known_hosts).args(["sleep", "3"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = fleet.orchestrate(&file).arg("--json").spawn_piped();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Still waiting for the lock: nothing written yet.
    assert_eq!(std::fs::read_to_string(&fleet.known_hosts).unwrap(), "");
    let mut holder = holder;
    holder.wait().unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&fleet.known_hosts).unwrap().lines().count(), 1);
}

#[test]
fn a_host_with_only_an_rsa_key_then_a_second_type_then_only_the_new_one() {
    let mut fleet = Fleet::start(1);
    fleet.set_host_keys(0, &["rsa"]);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    let kh = fleet.path().join("rsa_known_hosts");
    // First contact: the RSA key is recorded, and ssh, strict, accepts the host with it.
    let out = director_run(&fleet, &file, &kh, "accept-new");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert!(recorded.contains(" ssh-rsa "), "{recorded}");
    assert!(ssh_accepts(&fleet, &kh, "strict"));
    // The host gains an ed25519 key: both still ask it for the known RSA key and accept.
    fleet.set_host_keys(0, &["rsa", "ed25519"]);
    assert!(ssh_accepts(&fleet, &kh, "strict"));
    assert_eq!(code(&director_run(&fleet, &file, &kh, "strict")), 0);
    // Only the new key is left: a changed key for both, whatever the policy.
    fleet.set_host_keys(0, &["ed25519"]);
    for policy in ["strict", "accept-new"] {
        assert!(!ssh_accepts(&fleet, &kh, policy), "{policy}");
        let out = director_run(&fleet, &file, &kh, policy);
        assert_eq!(code(&out), 3, "{policy}: {}", stderr(&out));
    }
}

#[test]
fn a_changed_host_key_is_refused_with_both_fingerprints() {
    let mut fleet = Fleet::start(3);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: true\n");
    let host_pub = fleet.hosts[0].dir.join("ssh_host_ed25519_key.pub");
    let old = fingerprint(&host_pub);
    let (code, _, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 0, "{err}");
    let recorded = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");

    fleet.stop_host(0);
    fleet.rekey(0);
    fleet.start_host(0);
    let new = fingerprint(&host_pub);
    assert_ne!(old, new);
    let (code, events, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 3);
    let h1 = &fleet.hosts[0];
    let pattern = if h1.port == 22 { h1.addr.clone() } else { format!("[{}]:{}", h1.addr, h1.port) };
    let line = recorded.lines().position(|l| l.starts_with(&format!("{pattern} "))).unwrap() + 1;
    let kh = fleet.known_hosts.display();
    assert_eq!(
        unreachable_error(&events, "h1").unwrap(),
        format!("host key for node h1 ({pattern}) has changed: {kh} line {line} has {old}, the server offered {new}; refusing to connect (if the host was reinstalled, run: ssh-keygen -R '{pattern}' -f {kh})")
    );
    assert_eq!(finished(&events, "h2").len(), 1);
    // Nothing was recorded over the old key.
    assert_eq!(std::fs::read_to_string(&fleet.known_hosts).unwrap(), recorded);
}

#[test]
fn strict_checking_refuses_unknown_hosts_and_off_warns() {
    let fleet = Fleet::start(3);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: true\n");
    let (code, events, _) = orchestrate_json(&fleet, &file, &["--host-key-checking", "strict", "--restrict", "h1"]);
    assert_eq!(code, 3);
    let error = unreachable_error(&events, "h1").unwrap();
    let h1 = &fleet.hosts[0];
    let pattern = if h1.port == 22 { h1.addr.clone() } else { format!("[{}]:{}", h1.addr, h1.port) };
    let fp = fingerprint(&h1.dir.join("ssh_host_ed25519_key.pub"));
    assert_eq!(
        error,
        format!(
            "host key for node h1 ({pattern}) is not in {} and host key checking is strict; the server offered {fp}",
            fleet.known_hosts.display()
        )
    );
    assert!(!fleet.known_hosts.exists());

    let (code, _, err) =
        orchestrate_json(&fleet, &file, &["--host-key-checking", "off", "--restrict", "h1", "--restrict", "h2"]);
    assert_eq!(code, 0);
    assert_eq!(err, "warning: host key checking is off for 2 node(s) (h1, h2): their identity is not verified\n");
    assert!(!fleet.known_hosts.exists());
}

/// A first contact that records host keys says so once for the nodes contacted together, as
/// `ssh` says "Permanently added"; a run that records none says nothing of it, and `--json`
/// has the event per node.
#[test]
fn recorded_host_keys_are_said_once_per_first_contact() {
    let fleet = Fleet::start(3);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: true\n");
    let out = output(fleet.orchestrate(&file).args(["--progress", "plain"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = format!("recorded host keys of 3 new nodes (h[1-3]) in {}\n", fleet.known_hosts.display());
    assert_eq!(stderr(&out), said);
    let out = output(fleet.orchestrate(&file).args(["--progress", "plain"]));
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    // A new host among known ones: said for it alone; --json has the event, not the line.
    let lines = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    let kept: Vec<&str> = lines.lines().filter(|l| !l.contains(&fleet.hosts[1].addr)).collect();
    std::fs::write(&fleet.known_hosts, kept.join("\n") + "\n").unwrap();
    let out = output(fleet.orchestrate(&file).args(["--progress", "plain"]));
    let one = format!("recorded the host key of new node h2 in {}\n", fleet.known_hosts.display());
    assert_eq!((code(&out), stderr(&out)), (0, one));
    std::fs::write(&fleet.known_hosts, kept.join("\n") + "\n").unwrap();
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    let recorded: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| match e {
            schema::Event::HostKeyRecorded { node, file, .. } => Some((node.as_str(), file.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(recorded, [("h2", fleet.known_hosts.to_str().unwrap())]);
}
