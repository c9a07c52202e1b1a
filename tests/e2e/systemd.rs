//! The harness's systemd hosts (systemd is PID 1, the distribution's sshd answers, a reboot
//! comes back with the same filesystem and host key and a new PID 1; a container shares the
//! kernel's boot id, so the boot is told by PID 1's start time, field 22 of /proc/1/stat),
//! and the verbs that need a real system: SERVICE, APT and PKG, DNF, REBOOT.

use super::harness::Fleet;
use super::{code, output, stderr, stdout};
use std::time::Duration;

#[test]
fn a_systemd_host_boots_systemd_as_pid_1_runs_jobs_and_comes_back_from_a_reboot() {
    let mut fleet = Fleet::start(1);
    let i = fleet.add_systemd_host();
    let name = fleet.hosts[i].name.clone();
    let exec = |command: &str| {
        output(
            fleet
                .director()
                .args(["exec", "--progress", "plain", "--output", "all", "--catalog"])
                .arg(fleet.catalog())
                .args(["--target", &name, command]),
        )
    };
    let out = exec(
        "ps -p 1 -o comm=; systemctl is-system-running --wait; systemctl --failed --no-legend --plain; cut -d' ' -f22 /proc/1/stat > /var/tmp/boot-before",
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let said = stdout(&out);
    assert!(said.contains(&format!("  {name} (1)  ok\n    │ systemd\n    │ running\n")), "{said}");
    // Reboot a second after the job ends; the connection drops with it, the host comes back
    // with its files kept. A reboot takes some seconds (logind, the session's end).
    let out = exec("systemd-run --on-active=1 systemctl reboot");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let before = std::fs::read_to_string(fleet.hosts[i].dir.join("root/var/tmp/boot-before")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let out = loop {
        std::thread::sleep(Duration::from_secs(1));
        let out = exec("cat /var/tmp/boot-before; cut -d' ' -f22 /proc/1/stat; ps -p 1 -o comm=");
        let said = stdout(&out);
        let lines: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("    │ ")).collect();
        if code(&out) == 0 && lines.len() == 3 && lines[0] != lines[1] {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "the host did not come back from its reboot: {}", stdout(&out));
    };
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let said = stdout(&out);
    let lines: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("    │ ")).collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert_eq!(lines[0], before.trim(), "the file written before the reboot is still there");
    assert_ne!(lines[0], lines[1], "PID 1 started again:\n{said}");
    assert_eq!(lines[2], "systemd");
}

/// What `command` printed on node `name` (stdout and stderr), through `director exec`; it
/// must succeed.
pub(crate) fn exec_on(fleet: &Fleet, name: &str, command: &str) -> String {
    let out = output(
        fleet.director().args(["exec", "--json", "--catalog"]).arg(fleet.catalog()).args(["--target", name, command]),
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    super::printed(&super::schema::parse(&out.stdout), None, None).trim_end().to_string()
}

/// SERVICE on a real systemd: Directord's order of steps, a cache hit checked against the
/// units' state in the job's own frame (stopped or disabled by hand → done again, saying
/// why), a plan that says the same, the first failing step ending the job, and a node
/// without systemd told so.
#[test]
fn service_brings_units_to_their_state_and_a_cached_one_is_checked() {
    let mut fleet = Fleet::start(1);
    let i = fleet.add_systemd_host();
    let name = fleet.hosts[i].name.clone();
    let unit = fleet.file(
        "demo.service",
        "[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n",
    );
    let file = fleet.file(
        "service.yaml",
        &format!(
            "- targets: [{name}]\n  jobs:\n    - ADD: {} /usr/lib/systemd/system/demo.service\n    - SERVICE: --daemon-reload --enable --restarted demo.service\n",
            unit.display()
        ),
    );
    let exec = |command: &str| exec_on(&fleet, &name, command);
    let state = || exec("systemctl is-active demo.service; systemctl is-enabled demo.service; true");
    let said = |events: &[super::schema::Event]| super::said(events, &name);
    let cached = super::cached_hit();

    let (c, events, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(said(&events), [("ok".into(), String::new()), ("ok".into(), String::new())]);
    assert_eq!(state(), "active\nenabled");
    let info = events.iter().find_map(|e| match e {
        super::schema::Event::JobStarted { job: 1, info, .. } => Some(info.clone()),
        _ => None,
    });
    assert_eq!(
        info.as_deref(),
        Some("systemctl daemon-reload && systemctl enable 'demo.service' && systemctl restart 'demo.service'")
    );

    // Nothing changed: both answered from the cache, the unit's state checked on the node.
    let (c, events, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(said(&events), [cached.clone(), cached.clone()]);

    // Stopped by hand: a plan says so, a run starts it again.
    exec("systemctl stop demo.service");
    let (_, events, _) = super::orchestrate_json(&fleet, &file, &["--plan"]);
    assert_eq!(
        said(&events),
        [cached.clone(), ("would_run".into(), "was cached, but demo.service is inactive".into())]
    );
    assert_eq!(state(), "inactive\nenabled", "a plan changes nothing");
    let (c, events, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        said(&events),
        [cached.clone(), ("ok".into(), "was cached, but demo.service is inactive: done again".into())]
    );
    assert_eq!(state(), "active\nenabled");

    // Disabled by hand: enabled again.
    exec("systemctl disable demo.service 2>&1");
    let (c, events, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(
        said(&events),
        [cached.clone(), ("ok".into(), "was cached, but demo.service is disabled, not enabled: done again".into())]
    );
    assert_eq!(state(), "active\nenabled");

    // Stopped and masked, in Directord's order (mask before stop).
    let stop = fleet
        .file("stop.yaml", &format!("- targets: [{name}]\n  jobs:\n    - SERVICE: --stopped --mask demo.service\n"));
    let (c, _, err) = super::orchestrate_json(&fleet, &stop, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(state(), "inactive\nmasked");

    // The first failing step ends the job: no such unit.
    let bad = fleet.file(
        "bad.yaml",
        "- jobs:\n    - SERVICE: --enable --restarted nosuch.service\n    - RUN: touch /var/tmp/after-bad\n",
    );
    let (c, events, _) = super::orchestrate_json(&fleet, &bad, &[]);
    assert_eq!(c, 1);
    let failed = super::finished(&events, &name);
    assert_eq!((failed[0].1, failed[0].3), ("failed", Some("exited with code 1")), "{failed:?}");
    let printed = super::printed(&events, Some(&name), None);
    assert!(printed.contains("nosuch.service"), "{printed}");
    assert_eq!(failed[1].1, "skipped");

    // h1 is a plain test host: no systemd there.
    assert!(
        !std::path::Path::new("/run/systemd/system").exists(),
        "the test hosts share this machine's root, which must not run systemd"
    );
    let h1 = super::finished(&events, "h1");
    assert_eq!((h1[0].1, h1[0].3), ("failed", Some("exited with code 1")));
    let told = super::printed(&events, Some("h1"), None);
    assert_eq!(
        told,
        "SERVICE needs systemd on the node, which was not booted with it (/run/systemd/system is missing)\n"
    );
}

/// A `.deb` package built with dpkg-deb into `repo`: it installs `/usr/share/NAME/VERSION`;
/// `preinst` is its pre-install script.
fn deb(repo: &std::path::Path, name: &str, version: &str, preinst: Option<&str>) {
    let tree = repo.join(format!("build-{name}-{version}"));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join("usr/share").join(name)).unwrap();
    std::fs::write(tree.join("usr/share").join(name).join("VERSION"), version).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!("Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: director tests <t@example.org>\nDescription: a director test package\n"),
    )
    .unwrap();
    if let Some(script) = preinst {
        let path = tree.join("DEBIAN/preinst");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let out = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(repo.join(format!("{name}_{version}_all.deb")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&tree).unwrap();
}

/// Indexes `repo` as a flat apt repository (Packages and Release, apt-ftparchive).
fn index(repo: &std::path::Path) {
    for (what, file) in [("packages", "Packages"), ("release", "Release")] {
        let _ = std::fs::remove_file(repo.join(file));
        let out = std::process::Command::new("apt-ftparchive").arg(what).arg(".").current_dir(repo).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(repo.join(file), out.stdout).unwrap();
    }
}

/// APT and PKG with a real apt on the systemd host, from a local repository of packages built
/// here: installed, then `cached` (the node checked, in the job's frame), removed by hand and
/// installed again saying why, PKG finding apt and nothing to do, `--latest` upgrading,
/// `--absent` waiting for another apt-get's lock instead of failing, and a missing package.
#[test]
fn apt_and_pkg_install_check_and_remove_real_packages() {
    let mut fleet = Fleet::start(0);
    let i = fleet.add_systemd_host();
    let name = fleet.hosts[i].name.clone();
    let root = fleet.hosts[i].dir.join("root");
    let repo = root.join("srv/repo");
    std::fs::create_dir_all(&repo).unwrap();
    deb(&repo, "director-demo", "1.0", None);
    deb(&repo, "director-slow", "1.0", Some("touch /var/tmp/slow-started; sleep 4"));
    index(&repo);
    // Only the local repository: the host reaches no mirror.
    let _ = std::fs::remove_file(root.join("etc/apt/sources.list"));
    std::fs::write(root.join("etc/apt/sources.list.d/local.list"), "deb [trusted=yes] file:/srv/repo ./\n").unwrap();

    let exec = |command: &str| exec_on(&fleet, &name, command);
    let version = || exec("echo $(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' director-demo 2>/dev/null)");
    let said = |events: &[super::schema::Event]| super::said(events, &name);
    let printed = |events: &[super::schema::Event], job: usize| super::printed(events, None, Some(job));
    let run = |name: &str, jobs: &str, args: &[&str]| {
        let file = fleet.file(name, &format!("- jobs:\n{jobs}"));
        let (c, events, err) = super::orchestrate_json(&fleet, &file, args);
        (c, events, err)
    };
    let cached = super::cached_hit();
    let install = "    - APT: --clear-metadata director-demo\n";

    let (c, events, err) = run("install.yaml", install, &[]);
    assert_eq!(c, 0, "{err}{}", printed(&events, 0));
    assert_eq!(said(&events), [("ok".into(), String::new())]);
    assert_eq!(version(), "1.0 ii", "{}", printed(&events, 0));
    let (c, events, err) = run("install.yaml", install, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(said(&events), [cached]);

    // Removed by hand: a plan says so, a run installs it again and says why.
    exec("dpkg -r director-demo >/dev/null");
    let (_, events, _) = run("install.yaml", install, &["--plan"]);
    assert_eq!(said(&events), [("would_run".into(), "was cached, but director-demo is not installed".into())]);
    let (c, events, err) = run("install.yaml", install, &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(said(&events), [("ok".into(), "was cached, but director-demo is not installed: done again".into())]);
    assert_eq!(version(), "1.0 ii");

    // PKG finds apt on the node; the package is there already: nothing to do, no record needed.
    let (c, events, err) = run("pkg.yaml", "    - PKG: director-demo\n", &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(said(&events), [("cached".into(), "already installed on the node: nothing to do".into())]);
    let info = events.iter().find_map(|e| match e {
        super::schema::Event::JobStarted { info, .. } => Some(info.clone()),
        _ => None,
    });
    assert_eq!(info.as_deref(), Some("apt-get -q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install 'director-demo'"));

    // A newer version in the repository: --latest upgrades to it.
    deb(&repo, "director-demo", "1.1", None);
    index(&repo);
    let (c, events, err) = run("latest.yaml", "    - APT: --clear-metadata --latest director-demo\n", &[]);
    assert_eq!(c, 0, "{err}{}", printed(&events, 0));
    assert_eq!(said(&events), [("ok".into(), String::new())]);
    assert_eq!(version(), "1.1 ii");

    // Another apt-get holds the lock (its package's preinst sleeps): --absent waits for it.
    let (c, events, err) = run(
        "absent.yaml",
        "    - RUN: --no-block DEBIAN_FRONTEND=noninteractive apt-get -q -y install director-slow\n    - WAIT: --cmd test -e /var/tmp/slow-started\n    - APT: --absent director-demo\n",
        &[],
    );
    assert_eq!(c, 0, "{err}{}", printed(&events, 2));
    assert!(printed(&events, 2).contains("Could not get lock"), "{}", printed(&events, 2));
    assert_eq!(version(), "", "removed (it has no conffiles to keep)");
    assert_eq!(exec("dpkg-query -W -f='${Version}\\n' director-slow"), "1.0");
    let (c, events, err) = run("absent2.yaml", "    - PKG: --absent director-demo\n", &[]);
    assert_eq!(c, 0, "{err}");
    assert_eq!(said(&events), [("cached".into(), "already absent on the node: nothing to do".into())]);

    // A package no repository has.
    let (c, events, _) = run("missing.yaml", "    - APT: director-nosuch\n", &[]);
    assert_eq!(c, 1);
    assert_eq!(said(&events), [("failed".into(), "exited with code 100".into())]);
    assert!(printed(&events, 0).contains("Unable to locate package director-nosuch"), "{}", printed(&events, 0));
}

/// REBOOT waits for the node: the jobs after it run on the rebooted node (PID 1 started
/// again), its output says when the link dropped and when the node answered, a re-run
/// answers all three from the cache, and a node that is not back in time fails the job.
#[test]
fn reboot_waits_for_the_node_and_the_next_jobs_run_after_it() {
    let mut fleet = Fleet::start(0);
    let i = fleet.add_systemd_host();
    let name = fleet.hosts[i].name.clone();
    let file = fleet.file(
        "reboot.yaml",
        "- jobs:\n    - RUN: cut -d' ' -f22 /proc/1/stat > /var/tmp/before\n    - REBOOT: 1\n    - RUN: cut -d' ' -f22 /proc/1/stat > /var/tmp/after; ps -p 1 -o comm=\n",
    );
    let (c, events, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let done = super::finished(&events, &name);
    assert_eq!(done.iter().map(|d| d.1).collect::<Vec<_>>(), ["ok", "ok", "ok"], "{done:?}");
    let printed = |job: usize| super::printed(&events, None, Some(job));
    let said = printed(1);
    assert!(
        said.starts_with("rebooted: the connection dropped after ")
            && said.contains(" s, the node answered again after "),
        "{said}"
    );
    assert_eq!(printed(2), "systemd\n");
    let before = exec_on(&fleet, &name, "cat /var/tmp/before");
    let after = exec_on(&fleet, &name, "cat /var/tmp/after");
    assert_ne!(before, after, "the job after REBOOT ran on the rebooted node");
    let reboot_ms = events.iter().find_map(|e| match e {
        super::schema::Event::JobFinished { job: 1, ms, .. } => Some(*ms),
        _ => None,
    });
    assert!(reboot_ms.unwrap() >= 1000, "the job lasts the reboot: it waits a second before it");

    // Nothing changed: the reboot is not done again.
    let (c, events, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let done = super::finished(&events, &name);
    assert_eq!(done.iter().map(|d| d.1).collect::<Vec<_>>(), ["cached", "cached", "cached"]);

    // A node that is not down and back within --reboot-timeout fails the job (here it waits
    // 10 s before it reboots); the rest is skipped.
    let file = fleet.file("short.yaml", "- jobs:\n    - REBOOT: --reboot-timeout 3 10\n    - RUN: true\n");
    let (c, events, _) = super::orchestrate_json(&fleet, &file, &[]);
    let done = super::finished(&events, &name);
    assert_ne!(c, 0, "{done:?} {events:?}");
    assert_eq!(done[0].1, "failed");
    assert!(done[0].3.unwrap().starts_with("the node did not "), "{done:?}");
    assert!(done[0].3.unwrap().contains(" within 3 s"), "{done:?}");
    assert_eq!(done[1].1, "skipped");
}

/// A noarch RPM built with rpmbuild into `repo`: it installs `/usr/share/NAME/VERSION`.
fn rpm(repo: &std::path::Path, name: &str, version: &str) {
    let top = repo.join(format!("build-{name}-{version}"));
    std::fs::create_dir_all(&top).unwrap();
    let spec = top.join(format!("{name}.spec"));
    std::fs::write(
        &spec,
        format!("Name: {name}\nVersion: {version}\nRelease: 1\nSummary: a director test package\nLicense: MIT\nBuildArch: noarch\n%description\nA director test package.\n%install\nmkdir -p %{{buildroot}}/usr/share/{name}\necho {version} > %{{buildroot}}/usr/share/{name}/VERSION\n%files\n/usr/share/{name}/VERSION\n"),
    )
    .unwrap();
    let out = std::process::Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["--quiet", "-bb"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let built = top.join(format!("RPMS/noarch/{name}-{version}-1.noarch.rpm"));
    std::fs::rename(&built, repo.join(built.file_name().unwrap())).unwrap();
    std::fs::remove_dir_all(&top).unwrap();
    let out = std::process::Command::new("createrepo_c").arg("--quiet").arg(repo).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// DNF with a real dnf: Debian's dnf on a systemd host (its own root, so its own rpm
/// database), a local repository of an RPM built here with rpmbuild and createrepo_c.
#[test]
fn dnf_installs_checks_and_removes_a_real_rpm() {
    let mut fleet = Fleet::start(0);
    let i = fleet.add_systemd_host_with(&["dnf"]);
    let name = fleet.hosts[i].name.clone();
    let root = fleet.hosts[i].dir.join("root");
    let repo = root.join("srv/rpms");
    std::fs::create_dir_all(&repo).unwrap();
    rpm(&repo, "director-demo", "1.0");
    std::fs::create_dir_all(root.join("etc/yum.repos.d")).unwrap();
    std::fs::write(
        root.join("etc/yum.repos.d/local.repo"),
        "[local]\nname=local\nbaseurl=file:///srv/rpms\ngpgcheck=0\nenabled=1\n",
    )
    .unwrap();
    // Debian is no rpm distribution: dnf is told its release.
    std::fs::create_dir_all(root.join("etc/dnf/vars")).unwrap();
    std::fs::write(root.join("etc/dnf/vars/releasever"), "12\n").unwrap();

    // This dnf comes without the rpm command: the check and this test ask dnf.
    let installed = || exec_on(&fleet, &name, "dnf -q repoquery --installed director-demo; true");
    let said = |events: &[super::schema::Event]| super::said(events, &name);
    let printed = |events: &[super::schema::Event]| super::printed(events, None, None);
    let file = fleet.file("dnf.yaml", "- jobs:\n    - DNF: --clear-metadata director-demo\n");
    let (c, events, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}{}", printed(&events));
    assert_eq!(said(&events), [("ok".into(), String::new())]);
    assert_eq!(installed(), "director-demo-0:1.0-1.noarch");
    let (_, events, _) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(
        said(&events),
        [("cached".into(), "done before with this exact fingerprint (--ignore-cache runs it again)".into())]
    );
    exec_on(&fleet, &name, "dnf -q -y remove director-demo >/dev/null");
    let (c, events, err) = super::orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}{}", printed(&events));
    assert_eq!(said(&events), [("ok".into(), "was cached, but director-demo is not installed: done again".into())]);
    assert_eq!(installed(), "director-demo-0:1.0-1.noarch");
    let absent = fleet.file("absent.yaml", "- jobs:\n    - DNF: --absent director-demo\n");
    let (c, events, err) = super::orchestrate_json(&fleet, &absent, &[]);
    assert_eq!(c, 0, "{err}{}", printed(&events));
    assert_eq!(installed(), "");
}
