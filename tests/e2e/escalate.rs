//! Become: logged in as a normal user, jobs run as root (or another user) through sudo, su or
//! doas on real hosts whose /etc has those users and rules (see `Fleet::add_users`). The
//! become password reaches the method's stdin and nothing else: not the events, the history
//! file, or a command line on the node.

use super::harness::{Fleet, BECOME_PASSWORD};
use super::schema::{self, Event};
use super::SpawnPiped;
use super::{code, output, run_finished, stderr, unreachable_error};
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The fleet's catalog, logging in as `user`.
fn catalog_as(fleet: &Fleet, user: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fleet.catalog()).unwrap().replace("user: root", &format!("user: {user}"));
    fleet.file(&format!("catalog-{user}.yaml"), &text)
}

/// `director exec --json ARGS COMMAND` logging in as `user`, with `input` on stdin.
fn exec_as(fleet: &Fleet, user: &str, args: &[&str], command: &str, input: &str) -> Output {
    let mut cmd = fleet.director();
    // Ad-hoc commands are answered from the node cache unless told not to.
    cmd.arg("exec")
        .arg("--json")
        .arg("--ignore-cache")
        .arg("--catalog")
        .arg(catalog_as(fleet, user))
        .args(args)
        .arg(command);
    with_stdin(&mut cmd, input)
}

fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).spawn_piped();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// What each job printed on `node`, by job index, in order.
fn outputs(events: &[Event], node: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for e in events {
        if let Event::JobOutput { node: n, job, data, .. } = e {
            if n == node {
                match out.iter_mut().find(|(j, _)| j == job) {
                    Some((_, text)) => text.push_str(data),
                    None => out.push((*job, data.clone())),
                }
            }
        }
    }
    out
}

#[test]
fn jobs_become_root_or_another_user_per_node_entry_and_job() {
    let mut fleet = Fleet::start(2);
    fleet.add_users();
    fleet.file("payload.txt", "payload\n");
    let file = fleet.file(
        "become.yaml",
        concat!(
            "- name: as root\n",
            "  become: true\n",
            "  jobs:\n",
            "    - RUN: id -un\n",
            "    - WORKDIR: /root/app\n",
            "    - ADD: payload.txt /root/app/payload.txt\n",
            "    - RUN: id -un\n",
            "      become: false\n",
            "- jobs:\n",
            "    - RUN: echo \"$(id -un) $HOME\"\n",
            "    - become_user: ops\n",
            "      RUN: echo \"$(id -un) $HOME\"\n",
        ),
    );
    let catalog = catalog_as(&fleet, "deploy");
    let run = || {
        let out = output(fleet.director().arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).arg("--json"));
        (code(&out), schema::parse(&out.stdout), stderr(&out))
    };
    let (exit, events, err) = run();
    assert_eq!(exit, 0, "{err}\n{events:#?}");
    for host in &fleet.hosts {
        let said: Vec<(usize, String)> =
            outputs(&events, &host.name).into_iter().filter(|(j, _)| ![1, 2].contains(j)).collect();
        assert_eq!(
            said,
            [
                (0, "root\n".to_string()),
                (3, "deploy\n".to_string()),
                (4, "deploy /home/deploy\n".to_string()),
                (5, "ops /home/ops\n".to_string()),
            ],
            "{}",
            host.name
        );
        // Written as root where the login user cannot write.
        assert_eq!(std::fs::read_to_string(host.home_path("app/payload.txt")).unwrap(), "payload\n");
        // Each account has its own executor, in its own home; the node cache is the login
        // user's (the node's own account).
        for (home, who) in [
            (host.home_path(".cache/director/bin"), "root"),
            (host.user_path("ops", ".cache/director/bin"), "ops"),
            (host.user_path("deploy", ".cache/director/bin"), "deploy"),
        ] {
            assert!(
                std::fs::read_dir(&home).map(std::iter::Iterator::count).unwrap_or(0) == 1,
                "no executor of {who} in {}",
                home.display()
            );
        }
        assert!(host.user_path("deploy", ".cache/director/cache.journal").exists());
    }
    // Run again: everything is answered from the cache, root's jobs included.
    let (exit, events, err) = run();
    assert_eq!(exit, 0, "{err}");
    let (summary, _) = run_finished(&events);
    assert_eq!((summary.jobs_cached, summary.jobs_ok), (12, 0), "{events:#?}");

    // --become and --become-user on the command line, over a catalog without become.
    for (args, want) in
        [(&[][..], "deploy"), (&["--become"][..], "root"), (&["--become", "--become-user", "ops"][..], "ops")]
    {
        let out = exec_as(&fleet, "deploy", args, "id -un", "");
        let events = schema::parse(&out.stdout);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        assert_eq!(outputs(&events, "h1"), [(0, format!("{want}\n"))], "{args:?}");
    }
}

#[test]
fn a_become_password_reaches_sudo_and_nothing_else() {
    let mut fleet = Fleet::start(1);
    fleet.add_users();
    // Without a password, sudo refuses, in its own words.
    let out = exec_as(&fleet, "ops", &["--become"], "id -un", "");
    let events = schema::parse(&out.stdout);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(
        unreachable_error(&events, "h1"),
        Some("cannot become root through sudo: sudo: a password is required (give it with --ask-become-pass or --become-password-file, or allow the login user sudo without a password: NOPASSWD)")
    );
    // With it, on stdin (-K with no terminal): the job runs as root; the password appears in
    // no event, nowhere in the history file, and on no command line on the node.
    let history = fleet.path().join("become-history.db");
    let mut cmd = fleet.director();
    cmd.env("DIRECTOR_HISTORY", &history)
        .arg("exec")
        .arg("--json")
        .arg("--catalog")
        .arg(catalog_as(&fleet, "ops"))
        .args(["--become", "-K"])
        .arg("id -un; ps -eo args > /tmp/ps.txt; echo said $(cat /tmp/pw)");
    // The job prints the password (kept in a file on the node): the events say [secret].
    std::fs::write(fleet.hosts[0].dir.join("tmp/pw"), BECOME_PASSWORD).unwrap();
    let out = with_stdin(&mut cmd, &format!("{BECOME_PASSWORD}\n"));
    let events = schema::parse(&out.stdout);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(outputs(&events, "h1"), [(0, "root\nsaid [secret]\n".to_string())]);
    let ps = std::fs::read_to_string(fleet.hosts[0].dir.join("tmp/ps.txt")).unwrap();
    assert!(ps.contains("sudo -H -S -p"), "sudo is not among the node's processes:\n{ps}");
    assert!(!ps.contains(BECOME_PASSWORD), "the password is on a command line on the node:\n{ps}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(BECOME_PASSWORD));
    assert!(!stderr(&out).contains(BECOME_PASSWORD));
    assert!(!String::from_utf8_lossy(&std::fs::read(&history).unwrap()).contains(BECOME_PASSWORD));

    // A wrong password is refused, and said so.
    let out = exec_as(&fleet, "ops", &["--become", "--ask-become-pass"], "id -un", "not-the-password\n");
    assert_eq!(code(&out), 3);
    assert_eq!(
        unreachable_error(&schema::parse(&out.stdout), "h1"),
        Some("cannot become root through sudo: the become password was refused (Sorry, try again.)")
    );
    // A user sudo knows nothing of: a password is required, and none would do.
    let out = exec_as(&fleet, "guest", &["--become"], "id -un", "");
    assert_eq!(code(&out), 3);
    assert!(unreachable_error(&schema::parse(&out.stdout), "h1").unwrap().contains("sudo: a password is required"));

    // A password file: refused when others can read it, used when it is private.
    let file = fleet.file("become-pass", &format!("{BECOME_PASSWORD}\n"));
    let mode = |m| std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
    mode(0o644);
    let path = file.display().to_string();
    let before = fleet.hosts[0].connections();
    let out = exec_as(&fleet, "ops", &["--become", "--become-password-file", &path], "id -un", "");
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        format!("error: --become-password-file {path}: others can read or change it (mode 0644)\n  hint: write the password as the file's first line, in a file only you can read (chmod 600)\n")
    );
    assert_eq!(fleet.hosts[0].connections(), before, "the refused run contacted the node");
    mode(0o600);
    let out = exec_as(&fleet, "ops", &["--become", "--become-password-file", &path], "id -un", "");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(outputs(&schema::parse(&out.stdout), "h1"), [(0, "root\n".to_string())]);
}

#[test]
fn su_and_doas_become_root_too() {
    let mut fleet = Fleet::start(1);
    fleet.add_users();
    let root = [(0, "root\n".to_string())];
    // su asks for root's password, on stdin.
    let out =
        exec_as(&fleet, "ops", &["--become", "--become-method", "su", "-K"], "id -un", &format!("{BECOME_PASSWORD}\n"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(outputs(&schema::parse(&out.stdout), "h1"), root);
    let out = exec_as(&fleet, "ops", &["--become", "--become-method", "su"], "id -un", "");
    assert_eq!(
        unreachable_error(&schema::parse(&out.stdout), "h1"),
        Some("cannot become root through su: su asks for a password (give it with --ask-become-pass or --become-password-file)")
    );
    // doas: without a password (`permit nopass`), or refused with its own words.
    let out = exec_as(&fleet, "deploy", &["--become", "--become-method", "doas"], "id -un", "");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(outputs(&schema::parse(&out.stdout), "h1"), root);
    let out = exec_as(&fleet, "ops", &["--become", "--become-method", "doas"], "id -un", "");
    assert_eq!(
        unreachable_error(&schema::parse(&out.stdout), "h1"),
        Some("cannot become root through doas: doas: Authentication required (doas reads passwords from a terminal only: allow the login user with `permit nopass` in doas.conf)")
    );
    // The catalog says it too: become on a group, the method on the node.
    let base = std::fs::read_to_string(catalog_as(&fleet, "deploy")).unwrap();
    let catalog = fleet.file(
        "become-catalog.yaml",
        &base
            .replace("  odd: {}", "  odd: {become: true}")
            .replace("groups: [odd]", "groups: [odd]\n    become_method: doas"),
    );
    let out =
        output(fleet.director().args(["exec", "--json", "--ignore-cache", "--catalog"]).arg(&catalog).arg("id -un"));
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert_eq!(outputs(&schema::parse(&out.stdout), "h1"), root);
}
