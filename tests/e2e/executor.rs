//! The executor on the node: installed once, replaced when it speaks another protocol, its
//! probe verifying what it installs, and its death an event for its node only.

use super::*;

#[test]
fn a_dead_executor_is_an_event_for_its_node_only() {
    let fleet = Fleet::start(3);
    std::fs::write(fleet.hosts[2].home_path("die-here"), "").unwrap();
    // The job's shell is a child of the executor: on h3 it kills the executor itself.
    let file = fleet.file(
        "die.yaml",
        "- jobs:\n    - RUN: if [ -e ~/die-here ]; then kill -9 $PPID; sleep 5; fi\n    - RUN: echo still here\n",
    );
    let (code, events, err) = orchestrate_json(&fleet, &file, &[]);
    // A lost node is unreachable (exit 3); the job it cut short did not fail on its own.
    assert_eq!(code, 3, "{err}");
    let h3 = finished(&events, "h3");
    assert_eq!(h3.len(), 2, "{h3:?}");
    assert_eq!((h3[0].1, h3[1].1), ("cancelled", "skipped"));
    assert!(
        h3[0].3.unwrap().starts_with("the node was lost while this job ran: connection to the executor lost"),
        "{h3:?}"
    );
    assert!(unreachable_error(&events, "h3").unwrap().starts_with("connection to the executor lost"));
    for node in ["h1", "h2"] {
        assert_eq!(finished(&events, node).iter().map(|f| f.1).collect::<Vec<_>>(), ["ok", "ok"]);
    }
}

#[test]
fn an_executor_speaking_another_protocol_is_replaced() {
    let fleet = Fleet::start(1);
    let file = fleet.file("one.yaml", "- jobs:\n    - RUN: echo fine\n");
    let (code1, first, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!((code1, uploads(&first).len()), (0, 1));
    // Put an impostor at the executor's content-addressed path: it greets with protocol 999.
    let bin_dir = fleet.hosts[0].home_path(".cache/director/bin");
    let exe = std::fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("director-exec-"))
        .unwrap();
    let hello = r#"{"t":"hello","version":999,"pid":1,"facts":{"arch":"x","kernel":"x","hostname":"x","os":"x"}}"#;
    let script = format!("#!/bin/sh\nprintf '\\000\\000\\000\\{:03o}%s' '{hello}'\ncat >/dev/null\n", hello.len());
    // Written aside and renamed: the first run's executor may still be exiting (text file busy).
    let aside = exe.with_extension("impostor");
    std::fs::write(&aside, script).unwrap();
    std::fs::set_permissions(&aside, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::rename(&aside, &exe).unwrap();
    let (code2, second, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(code2, 0, "{err}\n{second:#?}");
    assert_eq!(uploads(&second), ["h1"]);
    assert!(std::fs::read(&exe).unwrap().len() > 100_000, "the impostor is still there");
}

#[test]
fn several_local_nodes_install_the_executor_once_without_racing() {
    // Eight local nodes share one cache directory: their first contact writes the executor
    // once, and none of them may see it half-installed (missing, or "text file busy").
    let nodes: String = (1..=8).map(|i| format!("  - {{name: n{i}}}\n")).collect();
    for round in 0..3 {
        let home = scratch(&format!("local-race-{round}"));
        let catalog = home.join("catalog.yaml");
        std::fs::write(&catalog, format!("defaults: {{transport: local}}\nnodes:\n{nodes}")).unwrap();
        let out =
            output(local_director(&home).args(["exec", "--progress", "plain", "--catalog"]).arg(&catalog).arg("true"));
        assert_eq!(code(&out), 0, "round {round}: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("summary: 8 nodes (8 ok, 0 failed, 0 unreachable)"));
    }
}

/// The probe run by a shell as a node runs it, with a PATH holding only what the probe uses,
/// in a fresh HOME; it has printed its missing-executor line when this returns.
/// No `mkdir` among them: a first contact makes the executors' directory in the stage.
fn probe(name: &str) -> (std::path::PathBuf, std::process::Child, std::io::BufReader<std::process::ChildStdout>) {
    probe_with(scratch(name), &["head", "chmod", "uname", "rm"])
}

/// [`probe`] in `home`, with only `tools` on its PATH.
fn probe_with(
    home: std::path::PathBuf,
    tools: &[&str],
) -> (std::path::PathBuf, std::process::Child, std::io::BufReader<std::process::ChildStdout>) {
    probe_in("/bin/sh", home, &[], tools)
}

/// [`probe_with`] run by `shell`, with `env` set beside HOME and PATH.
fn probe_in(
    shell: &str,
    home: std::path::PathBuf,
    env: &[(&str, &Path)],
    tools: &[&str],
) -> (std::path::PathBuf, std::process::Child, std::io::BufReader<std::process::ChildStdout>) {
    use director::api::executor;
    use std::io::BufRead;
    let bin = home.join("path");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in tools {
        let found = ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists()).unwrap();
        if !bin.join(tool).exists() {
            std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
        }
    }
    let mut child = Command::new(shell)
        .arg("-c")
        .arg(executor::probe_command(false))
        .env_clear()
        .env("HOME", &home)
        .envs(env.iter().copied())
        .env("PATH", &bin)
        .stdin(std::process::Stdio::piped())
        .spawn_piped();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, format!("director-exec-missing {}\n", std::env::consts::ARCH));
    (home, child, out)
}

/// The probe, run by a shell as a node runs it (no decompressor on its PATH), installs the
/// executor it is sent on its stdin and starts it in the same session and process: the stage
/// it writes and starts decodes the executor, renames it into place and becomes it, and the
/// executor then reads the operator's frames from what follows on the same stdin.
#[test]
fn the_probe_installs_what_it_reads_and_starts_it() {
    use director::api::executor;
    use std::io::Write;
    let native = executor::native().unwrap();
    let (home, mut child, mut out) = probe("probe-stage");
    let (header, [stage, packed]) = executor::upload_header(native);
    assert_eq!(header, format!("{} {}\n", native.stage.len(), native.sha3));
    // On the wire: much less than the binary.
    assert!((stage.len() + packed.len()) * 10 < native.binary.len() * 8);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(header.as_bytes()).unwrap();
    stdin.write_all(stage).unwrap();
    stdin.write_all(packed).unwrap();
    stdin.flush().unwrap();
    // The executor greets, from the shell's own process.
    let hello = hello(&mut out);
    assert!(hello.contains(&format!("\"pid\":{},", child.id())), "{hello}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let dir = home.join(".cache/director/bin");
    let installed = dir.join(format!("director-exec-{}", native.sha3));
    assert_eq!(std::fs::read(&installed).unwrap(), native.binary);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777, 0o700);
    // Nothing else: neither the stage nor a temp file left behind, there or in the home.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert_eq!(entries(&home), [".cache", "path"]);
    let _ = std::fs::remove_dir_all(&home);
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Under bash, which names its machine, a first contact starts no `uname`; and where the cache
/// is elsewhere (`XDG_CACHE_HOME`) and the home cannot be written (here: it does not exist), the
/// probe makes the executors' directory with `mkdir` and writes the stage there.
#[test]
fn a_probe_under_bash_asks_no_uname_and_one_without_a_home_makes_the_directory() {
    use director::api::executor;
    use std::io::Write;
    let native = executor::native().unwrap();
    let (header, [stage, packed]) = executor::upload_header(native);
    let upload = [header.as_bytes(), stage, packed].concat();
    let home = scratch("probe-bash");
    let (home, mut child, mut out) = probe_in("/bin/bash", home, &[], &["head", "chmod"]);
    child.stdin.take().unwrap().write_all(&upload).unwrap();
    hello(&mut out);
    assert!(child.wait().unwrap().success());
    let installed = home.join(".cache/director/bin").join(format!("director-exec-{}", native.sha3));
    assert_eq!(std::fs::read(&installed).unwrap(), native.binary);
    assert_eq!(entries(&home), [".cache", "path"]);
    let _ = std::fs::remove_dir_all(&home);

    let tools = scratch("probe-homeless");
    let cache = tools.join("xdg");
    let (tools, mut child, mut out) = probe_in(
        "/bin/sh",
        tools,
        &[("HOME", Path::new("/nonexistent/director")), ("XDG_CACHE_HOME", &cache)],
        &["head", "mkdir", "chmod", "uname", "rm"],
    );
    child.stdin.take().unwrap().write_all(&upload).unwrap();
    hello(&mut out);
    assert!(child.wait().unwrap().success());
    let dir = cache.join("director/bin");
    assert_eq!(entries(&dir), [format!("director-exec-{}", native.sha3)]);
    let _ = std::fs::remove_dir_all(&tools);
}

/// A node that has the executors' directory already (director was upgraded: a new executor,
/// the directory of the last) starts no `mkdir`: the install works with no `mkdir` on PATH.
#[test]
fn a_probe_where_the_directory_is_there_starts_no_mkdir() {
    use director::api::executor;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let native = executor::native().unwrap();
    let home = scratch("probe-upgrade");
    let dir = home.join(".cache/director/bin");
    std::fs::create_dir_all(&dir).unwrap();
    for d in [home.join(".cache/director"), dir.clone()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let (home, mut child, mut out) = probe_with(home, &["head", "chmod", "uname", "rm"]);
    let (header, [stage, packed]) = executor::upload_header(native);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&[header.as_bytes(), stage, packed].concat()).unwrap();
    hello(&mut out);
    drop(stdin);
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read(dir.join(format!("director-exec-{}", native.sha3))).unwrap(), native.binary);
    let _ = std::fs::remove_dir_all(&home);
}

/// First contacts at once on one node (two runs, two operators): every probe finds the
/// executor missing, each stage installs its own temp file and renames it over the same
/// path, and every one starts and greets; one file is left, the executor, whole.
#[test]
fn probes_installing_at_once_each_start_and_leave_one_whole_file() {
    use director::api::executor;
    use std::io::Write;
    let native = executor::native().unwrap();
    let home = scratch("probe-together");
    let tools = ["head", "mkdir", "chmod", "uname", "rm"];
    let probes: Vec<_> = (0..4).map(|_| probe_with(home.clone(), &tools)).collect();
    let (header, [stage, packed]) = executor::upload_header(native);
    let upload = [header.as_bytes(), stage, packed].concat();
    let mut running = Vec::new();
    for (_, mut child, out) in probes {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&upload).unwrap();
        running.push((child, out, stdin));
    }
    for (mut child, mut out, stdin) in running {
        hello(&mut out);
        drop(stdin);
        assert!(child.wait().unwrap().success());
    }
    let dir = home.join(".cache/director/bin");
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, [format!("director-exec-{}", native.sha3)]);
    assert_eq!(std::fs::read(dir.join(&names[0])).unwrap(), native.binary);
    let _ = std::fs::remove_dir_all(&home);
}

/// The executor's first frame on `out` (after the probe's missing-executor line), which must
/// be its greeting: its JSON.
fn hello(out: &mut impl std::io::Read) -> String {
    let mut len = [0u8; 4];
    out.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    out.read_exact(&mut frame).unwrap();
    let hello = String::from_utf8_lossy(&frame).into_owned();
    assert!(hello.starts_with("{\"t\":\"hello\""), "{hello}");
    hello
}

/// Sends `header` and `body` to a probe waiting for its upload and closes its stdin: its exit
/// code, its stderr, and how many bytes it printed after its missing-executor line.
fn upload(
    mut child: std::process::Child,
    mut out: std::io::BufReader<std::process::ChildStdout>,
    header: &str,
    body: &[u8],
) -> (Option<i32>, String, usize) {
    use std::io::{Read, Write};
    let mut stdin = child.stdin.take().unwrap();
    // The stage may refuse the upload before it has read it all.
    let _ = stdin.write_all(header.as_bytes()).and_then(|_| stdin.write_all(body));
    drop(stdin);
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap().code(), err, rest.len())
}

/// An upload that does not decode to the executor the operator packed (a byte changed in the
/// compressed stream, in its checksum or its length, a stream cut short) is refused by the
/// stage: nothing is installed or started, and nothing of it (the stage, a temp file) is left.
#[test]
fn the_probe_refuses_an_upload_that_does_not_verify() {
    use director::api::executor;
    let native = executor::native().unwrap();
    let (header, [stage, packed]) = executor::upload_header(native);
    let changed = |at: usize| {
        let mut p = packed.to_vec();
        p[at] ^= 0x01;
        p
    };
    let cases = [
        ("middle", changed(packed.len() / 2), "the uploaded executor does not verify\n"),
        ("last", changed(packed.len() - 1), "the uploaded executor does not verify\n"),
        ("checksum", changed(8), "the uploaded executor does not verify\n"),
        ("length", changed(4), "the uploaded executor does not verify\n"),
        ("cut", packed[..packed.len() - 100].to_vec(), "the upload was cut short\n"),
        ("huge", [&[0xff; 8][..], &packed[8..]].concat(), "the upload is not an executor\n"),
    ];
    for (case, body, said) in cases {
        let (home, child, out) = probe(&format!("probe-refused-{case}"));
        let (code, err, rest) = upload(child, out, &header, &[stage, &body[..]].concat());
        assert_eq!((case, code, err.as_str(), rest), (case, Some(1), said, 0));
        // Not even the executors' directory: the stage makes it once the upload verified.
        assert_eq!(entries(&home), ["path"], "{case}");
        let _ = std::fs::remove_dir_all(&home);
    }
}
