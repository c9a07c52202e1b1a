//! Faults on real sshd hosts: a login shell that stalls, a node that goes silent mid-job, a
//! node cache that cannot be saved. Each must end in a clear, recorded state, never a hang.

use super::harness::Fleet;
use super::*;
use super::{code, finished, notices, orchestrate_json, run_finished, schema, stderr, unreachable_error};
use std::time::{Duration, Instant};

/// Whether the stalled login script (`sleep 7PID` in ~/.bashrc) or the shell running it is
/// still on the host, after at most 10 s for sshd to deliver the signal.
fn stalled_left(host: &super::harness::Host, marker: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // `[s]` keeps pgrep from finding the shell that runs it.
        let left = String::from_utf8_lossy(&host.sh(&format!("pgrep -af '[s]leep {marker}'")).stdout).to_string();
        if left.is_empty() {
            return None;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(host.dir.join("sshd.log")).unwrap_or_default();
            return Some(format!("{left}sshd says:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_login_shell_that_stalls_is_bounded_and_gives_way_to_ctrl_c() {
    let fleet = Fleet::start(2);
    let marker = format!("7{}", std::process::id());
    std::fs::write(fleet.hosts[0].home_path(".bashrc"), format!("sleep {marker}\n")).unwrap();
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: echo hi\n");
    // The executor's start is bounded by three times the connect timeout.
    let (code, events, err) = orchestrate_json(&fleet, &file, &["--connect-timeout", "1"]);
    assert_eq!(
        unreachable_error(&events, "h1"),
        Some("connected, but the executor did not start within 3 s (a login script on the node may be waiting: check the user's ~/.bashrc and ~/.profile)"),
        "{err}"
    );
    assert_eq!(finished(&events, "h2"), [(0, "ok", Some(0), None)]);
    assert_eq!(code, 3);
    // With the default bound (30 s), Ctrl-C ends the wait at once.
    let child = fleet.orchestrate(&file).arg("--json").spawn_piped();
    std::thread::sleep(Duration::from_secs(2));
    let sent = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(10), "Ctrl-C took {:?}", sent.elapsed());
    assert_eq!(super::code(&out), 130, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert_eq!(finished(&events, "h1"), [(0, "skipped", None, Some("run cancelled before this job started"))]);
}

/// What a stalled login script started is ended when director gives up on the node, by a
/// timeout or Ctrl-C: sshd signals the probe's process group. (OpenSSH before 9.8 refuses to
/// signal the sessions of root logins, so this is shown with a login user.)
#[test]
fn a_stalled_login_script_is_not_left_running_on_the_node() {
    let mut fleet = Fleet::start(1);
    fleet.add_users();
    let marker = format!("8{}", std::process::id());
    let bashrc = fleet.hosts[0].user_path("guest", ".bashrc");
    std::fs::write(&bashrc, format!("sleep {marker}\n")).unwrap();
    std::os::unix::fs::chown(&bashrc, Some(2003), Some(2003)).unwrap();
    let text = std::fs::read_to_string(fleet.catalog()).unwrap().replace("user: root", "user: guest");
    let catalog = fleet.file("catalog-guest.yaml", &text);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: echo hi\n");
    let run = || {
        let mut cmd = fleet.director();
        cmd.arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).arg("--json");
        cmd
    };
    let out = output(run().args(["--connect-timeout", "1"]));
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(unreachable_error(&schema::parse(&out.stdout), "h1").unwrap().contains("did not start within 3 s"));
    assert_eq!(stalled_left(&fleet.hosts[0], &marker), None);
    let child = run().spawn_piped();
    // The probe's shell is stalled in ~/.bashrc.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fleet.hosts[0].sh(&format!("pgrep -f '[s]leep {marker}'")).stdout.is_empty() {
        assert!(Instant::now() < deadline, "the login script never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(stalled_left(&fleet.hosts[0], &marker), None);
}

#[test]
fn a_node_that_goes_silent_mid_job_is_lost_within_seconds_and_the_run_exits_3() {
    let fleet = Fleet::start(2);
    let file = fleet
        .file("o.yaml", "- jobs:\n    - RUN: sleep 3; echo done\n- targets: [h1]\n  jobs:\n    - RUN: sleep 120\n");
    let child = fleet.orchestrate(&file).arg("--json").spawn_piped();
    std::thread::sleep(Duration::from_secs(5));
    fleet.hosts[0].freeze();
    let frozen = Instant::now();
    let out = child.wait_with_output().unwrap();
    // Without keepalives the run would wait for the 120 s job or a TCP timeout.
    assert!(frozen.elapsed() < Duration::from_secs(40), "the lost node took {:?} to notice", frozen.elapsed());
    let events = schema::parse(&out.stdout);
    let h1 = finished(&events, "h1");
    assert_eq!(&h1[0], &(0, "ok", Some(0), None), "{}", stderr(&out));
    assert_eq!((h1[1].0, h1[1].1), (1, "cancelled"));
    assert!(h1[1].3.unwrap().starts_with("the node was lost while this job ran: "), "{h1:?}");
    assert!(unreachable_error(&events, "h1").is_some());
    assert_eq!(finished(&events, "h2"), [(0, "ok", Some(0), None)]);
    let (summary, exit) = run_finished(&events);
    assert_eq!((summary.nodes_unreachable, summary.jobs_failed, exit, code(&out)), (1, 0, 3, 3));
}

#[test]
fn a_job_whose_cache_record_cannot_be_saved_keeps_its_own_outcome() {
    let fleet = Fleet::start(1);
    // The cache's journal as a directory: the executor cannot append to it, even as root.
    std::fs::create_dir_all(fleet.hosts[0].home_path(".cache/director/cache.journal/x")).unwrap();
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: echo ran\n");
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(finished(&events, "h1"), [(0, "ok", Some(0), None)], "{err}");
    let notices = notices(&events);
    assert!(
        notices.iter().any(|m| m.starts_with("job 1 (RUN echo ran): cannot save the node cache: ")
            && m.ends_with("; it will run again next time")),
        "{notices:?}"
    );
    assert_eq!(code, 0);
}

#[test]
fn terminal_escapes_from_nodes_are_shown_not_obeyed() {
    let home = super::scratch("local-escapes");
    let file = home.join("o.yaml");
    std::fs::write(&file, "- jobs:\n    - RUN: printf '\\033]2;owned\\007\\033[2Jx\\n'; exit 1\n").unwrap();
    let out = super::output(super::local_director(&home).arg("orchestrate").arg(&file).args(["--progress", "plain"]));
    assert_eq!(code(&out), 1);
    let text = super::stdout(&out);
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(text.contains("│ ^[]2;owned^G^[[2Jx"), "{text}");
    // The history keeps the bytes; showing them makes them printable.
    let info = super::output(super::local_director(&home).args(["manage", "--job-info", "last"]));
    let text = super::stdout(&info);
    assert!(!text.contains('\x1b') && text.contains("^[]2;owned^G^[[2Jx"), "{text}");
    let raw = super::output(super::local_director(&home).args(["manage", "--job-info", "last", "--json"]));
    let json: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(json["results"][0]["stdout"], "\u{1b}]2;owned\u{7}\u{1b}[2Jx\n");
    let _ = std::fs::remove_dir_all(&home);
}

/// The node cache is bounded (64 MiB), so that a runaway one cannot cost every later run on
/// the node its time and memory; a larger one found there is set aside.
#[test]
fn a_node_cache_is_bounded_and_travels_in_pieces() {
    let fleet = Fleet::start(1);
    // Captures of 4 MB each (the most a capture keeps), each kept twice (the arg and the
    // job's record): the ninth would take the cache past 64 MiB. Each record goes in 1 MiB
    // pieces; the cache comes back after the greeting in data frames, far past a frame.
    let letters = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let mut jobs = String::from("- jobs:\n");
    for letter in letters {
        jobs.push_str(&format!("    - RUN: --stdout-arg big{letter} head -c 4000000 /dev/zero | tr '\\0' {letter}\n"));
    }
    let file = fleet.file("big.yaml", &jobs);
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 0, "{err}");
    let said = notices(&events);
    assert!(
        said.iter().any(|m| m.starts_with(
            "job 9 (RUN head -c 4000000 /dev/zero | tr '\\0' i): cannot save the node cache: it would be "
        ) && m.contains("over the 64 MiB a node cache may hold")),
        "{said:?}"
    );
    // The node is reached again, its cache intact.
    let again = fleet.file(
        "again.yaml",
        "- jobs:\n    - RUN: echo {{ biga | length }} {{ bigh | length }} {{ bigi | default('none') }}\n",
    );
    let (code, events, err) = orchestrate_json(&fleet, &again, &[]);
    assert_eq!(code, 0, "{err}");
    let out: String = events
        .iter()
        .filter_map(|e| match e {
            schema::Event::JobOutput { data, .. } => Some(data.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(out, "4000000 4000000 none\n");
    // A cache file too large to send (left by hand, or by an older director) is set aside.
    let cache = fleet.hosts[0].home_path(".cache/director/cache.json");
    std::fs::write(&cache, format!("{{\"v\": 1, \"pad\": \"{}\"}}", "x".repeat(65 << 20))).unwrap();
    let (code, events, err) = orchestrate_json(&fleet, &again, &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        notices(&events),
        ["the node cache was 68157459 bytes, over the 64 MiB a node cache may hold: it was set aside as cache.json.too-large and a new one started"]
    );
    assert!(cache.with_extension("json.too-large").exists());
}

#[test]
fn a_hostile_cachefile_from_a_node_fails_its_job_quickly() {
    let home = super::scratch("local-cachefile");
    std::fs::write(home.join("deep.yaml"), "{".repeat(200_000)).unwrap();
    let file = home.join("o.yaml");
    std::fs::write(
        &file,
        format!("- jobs:\n    - CACHEFILE: {}\n    - RUN: echo after\n", home.join("deep.yaml").display()),
    )
    .unwrap();
    let out = super::output(super::local_director(&home).arg("orchestrate").arg(&file).arg("--json"));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    let f = finished(&events, "localhost");
    assert_eq!(f[0].1, "failed");
    assert_eq!(
        f[0].3,
        Some(
            format!(
                "{} on the node is not YAML or JSON: line 1 column 65: nesting deeper than 64 levels",
                home.join("deep.yaml").display()
            )
            .as_str()
        )
    );
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn workdir_refuses_a_planted_symlink_and_an_unsafe_executor_directory_is_not_run() {
    let fleet = Fleet::start(1);
    let host = &fleet.hosts[0];
    // Another user's trap: a link where the orchestration expects its directory.
    let tmp = host.dir.join("tmp");
    std::fs::create_dir_all(tmp.join("victim")).unwrap();
    std::fs::set_permissions(tmp.join("victim"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(tmp.join("victim"), tmp.join("planted")).unwrap();
    let target =
        if super::harness::is_root() { "/tmp/planted".to_string() } else { tmp.join("planted").display().to_string() };
    let file = fleet.file("w.yaml", &format!("- jobs:\n    - WORKDIR: --chmod 0777 {target}\n"));
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 1, "{err}");
    let f = finished(&events, "h1");
    assert_eq!(f[0].1, "failed");
    let reason = f[0].3.unwrap();
    assert!(reason.starts_with(&format!("{target} is a symbolic link (to ")), "{reason}");
    assert!(reason.ends_with("), not a directory: refusing to follow it"), "{reason}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(tmp.join("victim")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    // An executor directory anyone can write to: the executor there is not run.
    let bin = host.home_path(".cache/director/bin");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let ok = fleet.file("ok.yaml", "- jobs:\n    - RUN: true\n");
    let (code, events, _) = orchestrate_json(&fleet, &ok, &[]);
    assert_eq!(code, 3);
    let error = unreachable_error(&events, "h1").unwrap();
    assert!(error.starts_with("the executor on node h1 is not safe to run: "), "{error}");
    assert!(error.contains("/.cache/director/bin can be changed by another user"), "{error}");
    // One owned by another user: the probe does not start it.
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&bin, Some(65534), None).unwrap();
    let (code, events, _) = orchestrate_json(&fleet, &ok, &[]);
    assert_eq!(code, 3);
    let error = unreachable_error(&events, "h1").unwrap();
    assert!(error.contains("/.cache/director/bin can be changed by another user"), "{error}");
    std::os::unix::fs::chown(&bin, Some(0), None).unwrap();
    let (code, _, err) = orchestrate_json(&fleet, &ok, &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn runaway_templates_fail_their_jobs_and_other_nodes_go_on() {
    let fleet = Fleet::start(3);
    let file = fleet.file(
        "loop.yaml",
        "- targets: [h1, h2]\n  jobs:\n    - RUN: echo {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n- targets: [h3]\n  jobs:\n    - RUN: echo fine\n",
    );
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 1, "{err}");
    for node in ["h1", "h2"] {
        let f = finished(&events, node);
        assert_eq!(f[0].1, "failed");
        assert!(
            f[0].3.unwrap().starts_with(
                "template error: the template did not finish within 20000000 steps (a loop that never ends?) (job 1 "
            ),
            "{f:?}"
        );
    }
    assert_eq!(finished(&events, "h3"), [(1, "ok", Some(0), None)]);
}

#[test]
fn hostile_node_files_and_values_are_bounded() {
    let fleet = Fleet::start(1);
    let host = &fleet.hosts[0];
    // A CACHEFILE that is a FIFO (no writer ever comes) or a device.
    let fifo = host.home_path("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo on a path the test owns.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let on_node = if super::harness::is_root() { "/root/fifo".to_string() } else { fifo.display().to_string() };
    // And an ARG value of 40 KB of nested brackets.
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let file = fleet.file(
        "hostile.yaml",
        &format!(
            "- jobs:\n    - CACHEFILE: {on_node}\n- jobs:\n    - CACHEFILE: /dev/zero\n- jobs:\n    - ARG: deep {deep}\n    - RUN: echo {{{{ deep | length }}}}\n"
        ),
    );
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 1, "{err}");
    let f = finished(&events, "h1");
    assert_eq!((f[0].1, f[0].3), ("failed", Some(format!("{on_node} is not a regular file").as_str())));
    assert_eq!((f[1].1, f[1].3), ("failed", Some("/dev/zero is not a regular file")));
    assert_eq!((f[2].1, f[3].1), ("ok", "ok"));
    let out: String = events
        .iter()
        .filter_map(|e| match e {
            schema::Event::JobOutput { job: 3, data, .. } => Some(data.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(out, "40000\n");
}

/// The e_machine field of an ELF file (0x3e x86-64, 0xb7 AArch64).
fn elf_machine(path: &std::path::Path) -> u16 {
    let bytes = std::fs::read(path).unwrap();
    u16::from_le_bytes([bytes[18], bytes[19]])
}

#[test]
fn an_arm64_node_gets_the_aarch64_executor_and_another_arch_a_clear_error() {
    let mut fleet = Fleet::start(3);
    fleet.set_arch(0, "aarch64");
    fleet.set_arch(2, "riscv64");
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: echo hello from $(/usr/bin/uname -n)\n");
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code, 3, "{err}");
    let ready: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            schema::Event::NodeReady { node, arch, .. } => Some((node.clone(), arch.clone())),
            _ => None,
        })
        .collect();
    // The arch a node reports is the one its executor was built for.
    assert!(ready.contains(&("h1".into(), "aarch64".into())), "{ready:?}");
    assert!(ready.contains(&("h2".into(), "x86_64".into())), "{ready:?}");
    assert_eq!(finished(&events, "h1"), [(0, "ok", Some(0), None)]);
    assert_eq!(finished(&events, "h2"), [(0, "ok", Some(0), None)]);
    let installed = |i: usize| {
        let bin = fleet.hosts[i].home_path(".cache/director/bin");
        let entry =
            std::fs::read_dir(&bin).unwrap().flatten().find(|e| !e.file_name().to_string_lossy().starts_with('.'));
        entry.unwrap().path()
    };
    assert_eq!(elf_machine(&installed(0)), 0xb7);
    assert_eq!(elf_machine(&installed(1)), 0x3e);
    assert_eq!(
        unreachable_error(&events, "h3"),
        Some("node h3: this director carries executors for x86_64 and aarch64 only, and the node is riscv64")
    );
    // The second run finds the aarch64 executor in place.
    let (code, events, _) = orchestrate_json(&fleet, &file, &["--restrict", "h1"]);
    assert_eq!(code, 0);
    assert!(super::uploads(&events).is_empty());
    // A home shared with nodes of another architecture: the one executor there (here an ELF
    // for a machine this kernel cannot run, named as the aarch64 one) is tried, does not
    // start, and the node's own is installed beside it.
    let bin = fleet.hosts[1].home_path(".cache/director/bin");
    std::fs::remove_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let aarch64 = director::api::executor::for_arch("aarch64").unwrap();
    let foreign = bin.join(format!("director-exec-{}", aarch64.sha3));
    let mut elf = vec![0x7f, b'E', b'L', b'F', 2, 1, 1];
    elf.resize(64, 0);
    elf[16] = 2;
    std::fs::write(&foreign, elf).unwrap();
    std::fs::set_permissions(&foreign, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (code, events, err) = orchestrate_json(&fleet, &file, &["--restrict", "h2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(super::uploads(&events), ["h2"]);
    assert_eq!(super::said(&events, "h2"), [super::cached_hit()]);
    assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 2);
}

#[test]
fn a_burst_of_nodes_behind_one_sshd_is_paced_under_max_startups() {
    let fleet = Fleet::start(1);
    let h1 = &fleet.hosts[0];
    // 40 catalog nodes that are all the same sshd: more than its MaxStartups (10) at once
    // would be dropped; the per-address gate keeps handshakes under it.
    let mut catalog = format!("defaults: {{user: root, identity_file: {}}}\nnodes:\n", fleet.key.display());
    if !harness::is_root() {
        catalog = catalog.replace("user: root", &format!("user: {}", std::env::var("USER").unwrap_or_default()));
    }
    for i in 0..40 {
        catalog.push_str(&format!("  - {{name: n{i}, host: {}, port: {}}}\n", h1.addr, h1.port));
    }
    let catalog = fleet.file("burst.yaml", &catalog);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: true\n");
    let out = output(fleet.director().arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).arg("--json"));
    let events = schema::parse(&out.stdout);
    let (summary, exit) = run_finished(&events);
    // The 40 nodes share one remote user, so one cache: some answer from what others saved.
    assert_eq!((summary.nodes_ok, summary.jobs_ok + summary.jobs_cached, exit), (40, 40, 0), "{}", stderr(&out));
}

#[test]
fn ctrl_c_twice_kills_running_jobs_and_exits_130() {
    let home = scratch("local-cancel");
    let file = home.join("o.yaml");
    let marker = 50000 + std::process::id() % 9000;
    std::fs::write(&file, format!("- jobs:\n    - RUN: sleep {marker}7\n    - RUN: echo never\n")).unwrap();
    let child = local_director(&home).arg("orchestrate").arg(&file).arg("--json").spawn_piped();
    let pid = child.id() as i32;
    let running =
        || !Command::new("pgrep").args(["-f", &format!("sleep {marker}7")]).output().unwrap().stdout.is_empty();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !running() {
        assert!(std::time::Instant::now() < deadline, "the job never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(running(), "the first Ctrl-C must let the running job go on");
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 130);
    assert!(!running(), "the job survived the second Ctrl-C");
    let events = schema::parse(&out.stdout);
    let f = finished(&events, "localhost");
    assert_eq!(
        f,
        [
            (0, "cancelled", None, Some("cancelled")),
            (1, "skipped", None, Some("run cancelled before this job started"))
        ]
    );
    assert_eq!(
        stderr(&out),
        "cancelling: no new jobs will start; press Ctrl-C again to kill the running ones\nkilling the running jobs\n"
    );
    // The history records the run and the interrupted job as cancelled.
    let run = output(local_director(&home).args(["manage", "--run-info", "last", "--json"]));
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!((run["status"].as_str(), run["exit_code"].as_i64()), (Some("cancelled"), Some(130)));
    assert_eq!(run["node_outcomes"][0]["outcome"], "cancelled");
    let jobs = output(local_director(&home).args(["manage", "--list-jobs", "--json"]));
    let jobs: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap();
    let first = output(local_director(&home).args(["manage", "--job-info", jobs[0]["id"].as_str().unwrap(), "--json"]));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(first["results"][0]["status"], "cancelled");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_silent_server_times_out_as_unreachable() {
    // Accepts TCP and never speaks SSH.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(conn);
    });
    let home = scratch("silent");
    std::fs::write(home.join("c.yaml"), format!("nodes:\n  - {{name: mute, host: 127.0.0.1, port: {port}}}\n"))
        .unwrap();
    std::fs::write(home.join("o.yaml"), "- jobs:\n    - RUN: true\n").unwrap();
    let out = output(
        local_director(&home)
            .current_dir(&home)
            .args(["orchestrate", "o.yaml", "--catalog", "c.yaml", "--json", "--connect-timeout", "1"])
            .env("DIRECTOR_KNOWN_HOSTS", home.join("kh")),
    );
    assert_eq!(code(&out), 3);
    assert_eq!(
        unreachable_error(&schema::parse(&out.stdout), "mute"),
        Some(format!("connection to 127.0.0.1:{port} timed out after 1 s").as_str())
    );
    holder.join().unwrap();
    let _ = std::fs::remove_dir_all(&home);
}

/// `director` with its open-file limits set to `soft` and `hard` (as a login's may be).
fn with_nofile(mut cmd: Command, soft: u64, hard: u64) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd
}

#[test]
fn a_run_raises_its_open_file_limit_or_says_the_hard_limit_is_too_low() {
    let home = scratch("nofile");
    let catalog = home.join("catalog.yaml");
    let nodes: String = (1..=30).map(|i| format!("  - {{name: n{i}}}\n")).collect();
    std::fs::write(&catalog, format!("defaults: {{transport: local}}\nnodes:\n{nodes}")).unwrap();
    let mut exec = local_director(&home);
    exec.args(["exec", "--json", "--catalog"]).arg(&catalog).args(["--restrict", "n1", "ulimit -n"]);
    // A soft limit below what 30 nodes need, a hard one above it: raised, as the node sees.
    let mut all = local_director(&home);
    all.args(["exec", "--json", "--catalog"]).arg(&catalog).arg("ulimit -n");
    let out = output(&mut with_nofile(all, 60, 4096));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert_eq!(printed(&events, Some("n1"), None), "4096\n");
    // One node fits in 70: nothing to raise.
    let out = output(&mut with_nofile(exec, 70, 4096));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(printed(&schema::parse(&out.stdout), Some("n1"), None), "70\n");
    // A hard limit too low for the selection: refused before anything starts.
    let fresh = scratch("nofile-refused");
    let mut all = local_director(&fresh);
    all.args(["exec", "--catalog"]).arg(&catalog).arg("true");
    let out = output(&mut with_nofile(all, 60, 100));
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "error: the run has 30 nodes and may need 154 open files at once, but this process may open at most 100 (its hard limit)\n  hint: raise the hard limit (`ulimit -Hn` as root, or nofile in /etc/security/limits.conf), or select fewer nodes with --restrict\n"
    );
    assert!(!fresh.join(".cache/director").exists(), "nothing was started");
    let _ = std::fs::remove_dir_all(&home);
    let _ = std::fs::remove_dir_all(&fresh);
}

/// Waits for `child` to exit, at most `limit` (a liveness bound, not a measure): one that does
/// not exit by then is killed and the test fails.
fn exits_within(child: std::process::Child, limit: Duration) -> std::process::Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(limit) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: killing our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("director did not exit within {limit:?}");
        }
    }
}

/// A template that renders for minutes with `range` loops, and one whose loop is over a list
/// (a step of it is long, and `range` cannot end it).
const SLOW_RANGE: &str = r#"echo {% set s = "x" * 10000000 %}{% for i in range(100000) %}{% if (s ~ i)|length > 5 %}{% endif %}{% endfor %}done"#;
const SLOW_LIST: &str = r#"echo {% set s = "x" * 10000000 %}{% set big = range(100000)|list %}{% for i in big %}{% if (s ~ i)|length > 5 %}{% endif %}{% endfor %}done"#;

#[test]
fn rendering_counts_against_the_timeout_and_gives_way_to_ctrl_c() {
    let home = scratch("render-bound");
    // Under --timeout 2 both are timed out, and the run ends without waiting for the rendering.
    for slow in [SLOW_RANGE, SLOW_LIST] {
        let file = home.join("o.yaml");
        std::fs::write(&file, format!("- jobs:\n    - RUN: --timeout 2 {slow}\n    - RUN: echo after\n")).unwrap();
        let child = local_director(&home).arg("orchestrate").arg(&file).arg("--json").spawn_piped();
        let out = exits_within(child, Duration::from_secs(60));
        assert_eq!(code(&out), 1, "{}", stderr(&out));
        let events = schema::parse(&out.stdout);
        let f = finished(&events, "localhost");
        assert_eq!(f[0], (0, "timed_out", None, Some("timed out after 2 s while rendering its templates")));
        assert_eq!(f[1].1, "skipped");
    }
    // Ctrl-C once stops a rendering (the job has not started on the node), and so does
    // `manage --cancel`.
    for (slow, by_manage) in [(SLOW_RANGE, false), (SLOW_LIST, false), (SLOW_LIST, true)] {
        let file = home.join("o.yaml");
        std::fs::write(&file, format!("- jobs:\n    - RUN: --skip-cache echo first\n    - RUN: {slow}\n")).unwrap();
        let mut child = local_director(&home).arg("orchestrate").arg(&file).arg("--json").spawn_piped();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        // The second job renders once the first has finished.
        loop {
            let mut line = String::new();
            assert_ne!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap(), 0, "no first job");
            seen.extend_from_slice(line.as_bytes());
            if line.contains("\"job_finished\"") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        if by_manage {
            let out = output(local_director(&home).args(["manage", "--cancel", "last"]));
            assert_eq!(code(&out), 0, "{}", stderr(&out));
        } else {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
        let mut out = exits_within(child, Duration::from_secs(60));
        std::io::Read::read_to_end(&mut stdout, &mut seen).unwrap();
        out.stdout = seen;
        assert_eq!(code(&out), 130, "{}", stderr(&out));
        let events = schema::parse(&out.stdout);
        assert_eq!(
            finished(&events, "localhost"),
            [(0, "ok", Some(0), None), (1, "cancelled", None, Some("cancelled while rendering its templates"))]
        );
    }
}
