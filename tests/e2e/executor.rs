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

/// The probe run by a shell as a node runs it, with a PATH holding only what the probe uses
/// (gzip or not), in a fresh HOME; it has printed its missing-executor line when this returns.
fn probe(
    name: &str,
    gzip: bool,
) -> (std::path::PathBuf, std::process::Child, std::io::BufReader<std::process::ChildStdout>) {
    use director::api::executor;
    use std::io::BufRead;
    let home = scratch(name);
    let bin = home.join("path");
    std::fs::create_dir_all(&bin).unwrap();
    let tools = ["head", "mkdir", "chmod", "uname", "rm"];
    for tool in tools.iter().chain(if gzip { &["gzip"][..] } else { &[][..] }) {
        let found = ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists()).unwrap();
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(executor::probe_command(false))
        .env_clear()
        .env("HOME", &home)
        .env("PATH", &bin)
        .stdin(std::process::Stdio::piped())
        .spawn_piped();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let want = format!("director-exec-missing {} {}\n", std::env::consts::ARCH, if gzip { "gz" } else { "-" });
    assert_eq!(line, want);
    (home, child, out)
}

/// The probe, run by a shell as a node runs it, installs the executor it is sent on its
/// stdin and starts it in the same session: compressed when the node has gzip, as it is when
/// not.
#[test]
fn the_probe_installs_what_it_reads_and_starts_it_with_or_without_gzip() {
    use director::api::executor;
    use std::io::{Read, Write};
    let native = executor::native().unwrap();
    for gzip in [true, false] {
        let (home, mut child, mut out) = probe(&format!("probe-gzip-{gzip}"), gzip);
        let (header, body) = executor::upload_header(native, gzip);
        assert_eq!(body.len(), if gzip { native.gz.len() } else { native.binary.len() });
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(header.as_bytes()).unwrap();
        stdin.write_all(body).unwrap();
        stdin.flush().unwrap();
        // The executor greets: a frame whose JSON says hello.
        let mut len = [0u8; 4];
        out.read_exact(&mut len).unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        out.read_exact(&mut frame).unwrap();
        assert!(String::from_utf8_lossy(&frame).starts_with("{\"t\":\"hello\""), "{}", String::from_utf8_lossy(&frame));
        drop(stdin);
        assert!(child.wait().unwrap().success());
        let dir = home.join(".cache/director/bin");
        let installed = dir.join(format!("director-exec-{}", native.sha3));
        assert_eq!(std::fs::read(installed).unwrap(), native.binary);
        // Nothing else: no temp file left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&home);
    }
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
    stdin.write_all(header.as_bytes()).unwrap();
    stdin.write_all(body).unwrap();
    drop(stdin);
    let mut rest = Vec::new();
    out.read_to_end(&mut rest).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (child.wait().unwrap().code(), err, rest.len())
}

/// A compressed upload that does not decompress to what the operator packed (a byte changed
/// in the stream or in its CRC-32, a stream cut short) is refused by gzip: nothing is
/// installed or started, and nothing of it is left. The executor does not hash itself after
/// gzip (see `install` in director-exec), so this is the check that must hold.
#[test]
fn the_probe_refuses_a_compressed_upload_that_gzip_does_not_verify() {
    use director::api::executor;
    let native = executor::native().unwrap();
    let (_, gz) = executor::upload_header(native, true);
    let mut middle = gz.to_vec();
    middle[gz.len() / 2] ^= 0x01;
    let mut crc = gz.to_vec();
    crc[gz.len() - 8] ^= 0x01;
    let cut = gz[..gz.len() - 100].to_vec();
    for (case, body) in [("middle", middle), ("crc", crc), ("cut", cut)] {
        let (home, child, out) = probe(&format!("probe-gz-{case}"), true);
        // The header names the whole stream's length; a cut one ends early.
        let (code, err, rest) = upload(child, out, &format!("{} {} gz\n", gz.len(), native.sha3), &body);
        assert_eq!((case, code, rest), (case, Some(1), 0), "{err}");
        assert!(err.trim_start().starts_with("gzip: stdin: "), "{case}: {err}");
        assert_eq!(std::fs::read_dir(home.join(".cache/director/bin")).unwrap().count(), 0, "{case}");
        let _ = std::fs::remove_dir_all(&home);
    }
}

/// An upload whose bytes are not the executor named (one byte changed on the way, a file
/// cut short on a full disk) is not installed and does not start; nothing of it is left.
#[test]
fn the_probe_refuses_an_upload_that_does_not_verify() {
    use director::api::executor;
    let native = executor::native().unwrap();
    let (home, child, out) = probe("probe-tampered", false);
    let (header, body) = executor::upload_header(native, false);
    let mut body = body.to_vec();
    // The last byte is in the section headers: the binary still runs, and must not verify.
    *body.last_mut().unwrap() ^= 0xff;
    let (code, err, rest) = upload(child, out, &header, &body);
    assert_eq!((code, err.as_str(), rest), (Some(1), "the uploaded executor does not verify\n", 0));
    assert_eq!(std::fs::read_dir(home.join(".cache/director/bin")).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&home);
}
