//! `-v`, `-vv`, `DIRECTOR_LOG` and `--log-file`: what happens on each node, phase by phase,
//! on stderr or in a private file, never in the `--json` stdout.

use super::harness::Fleet;
use super::{code, output, stderr};
use std::os::unix::fs::PermissionsExt;

#[test]
fn verbose_logs_each_phase_of_each_node_apart_from_the_json_events() {
    let fleet = Fleet::start(1);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: echo hi\n");
    let out = output(fleet.orchestrate(&file).args(["--json", "-v"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Every stdout line is an event: the log went elsewhere.
    assert!(!super::schema::parse(&out.stdout).is_empty());
    let log = stderr(&out);
    let h1 = &fleet.hosts[0];
    for phase in [
        format!("resolved {}:{}", h1.addr, h1.port),
        format!("tcp connected to {}:{}", h1.addr, h1.port),
        "handshake done, host key accepted".to_string(),
        "authenticated as ".to_string(),
        "probe done: no executor for".to_string(),
        "executor uploaded for the login user".to_string(),
        "probe done, executor started as the login user".to_string(),
        "executor greeted".to_string(),
    ] {
        let line = log.lines().find(|l| l.contains(&phase)).unwrap_or_else(|| panic!("no `{phase}` in:\n{log}"));
        assert!(line.contains(" INFO ") && line.contains("node=h1") && line.contains("ms="), "{line}");
    }
    assert!(!log.contains("algorithms negotiated"), "-v is not -vv:\n{log}");

    // -vv: the algorithms, the keys offered, each job; to a private file, not stderr.
    let path = fleet.path().join("logs/director.log");
    let out = output(fleet.orchestrate(&file).args(["--json", "-vv", "--log-file"]).arg(&path));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let log = std::fs::read_to_string(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    for said in ["algorithms negotiated", "kex=", "cipher=", "offering key", "accepted: key", "job RUN echo hi"] {
        assert!(log.contains(said), "no `{said}` in:\n{log}");
    }

    // DIRECTOR_LOG takes tracing's filters, and a bad one is an input error.
    let out = output(fleet.orchestrate(&file).env("DIRECTOR_LOG", "director::transport=info").arg("--json"));
    let log = stderr(&out);
    assert!(log.contains("tcp connected") && !log.contains("executor greeted"), "{log}");
    let out = output(fleet.orchestrate(&file).env("DIRECTOR_LOG", "director=loud").arg("--json"));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).starts_with("error: DIRECTOR_LOG `director=loud` is not a log filter: "), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing ran");
}
