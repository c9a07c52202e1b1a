//! `director exec`: ad-hoc commands, their folded outputs, and exec's own options.

use super::*;

#[test]
fn exec_runs_an_ad_hoc_command_on_targets() {
    let fleet = Fleet::start(3);
    let out = output(
        fleet
            .director()
            .args(["exec", "--verb", "RUN", "--target", "h2", "--catalog"])
            .arg(fleet.catalog())
            .args(["--json", "echo", "adhoc", ">", "~/adhoc"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = schema::parse(&out.stdout);
    assert!(matches!(&events[0], Event::RunStarted { nodes, .. } if nodes == &["h2".to_string()]));
    assert_eq!(std::fs::read_to_string(fleet.hosts[1].home_path("adhoc")).unwrap(), "adhoc\n");
}

#[test]
fn exec_outputs_are_folded_by_content_and_ad_hoc_commands_always_run() {
    let fleet = Fleet::start(6);
    // Two hosts fail the same way; h6 says something else.
    for i in [2, 3] {
        std::fs::write(fleet.hosts[i].home_path("broken"), "").unwrap();
    }
    std::fs::write(fleet.hosts[5].home_path("flavour"), "other\n").unwrap();
    let script = "if [ -e ~/broken ]; then echo 'disk full on /var' >&2; exit 4; fi; cat ~/flavour 2>/dev/null || echo same; echo run >> ~/runs\n";
    for host in &fleet.hosts {
        std::fs::write(host.home_path("job.sh"), script).unwrap();
    }
    let command = "sh ~/job.sh";
    let exec = |extra: &[&str]| {
        output(
            fleet
                .director()
                .args(["exec", "--progress", "plain", "--catalog"])
                .arg(fleet.catalog())
                .args(extra)
                .arg(command),
        )
    };
    let out = exec(&[]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    let report = text.split_once("job 1: ").map(|(_, r)| format!("job 1: {r}")).unwrap_or_default();
    let report: String = report.lines().filter(|l| !l.starts_with("summary:")).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        report,
        format!(
            "job 1: RUN {command}\n  h[1-2,5] (3)  ok         same\n  h[3-4] (2)    FAILED: exited with code 4\n    │ disk full on /var\n  h6 (1)        ok         other\n"
        ),
        "{text}"
    );
    // Run again: an ad-hoc command runs again (it is not answered from the cache)...
    let out = exec(&[]);
    assert_eq!(code(&out), 1);
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].home_path("runs")).unwrap(), "run\nrun\n");
    // ...unless asked: then the cache answers, says so, and shows what it printed then.
    let out = exec(&["--cached"]);
    let text = stdout(&out);
    assert_eq!(std::fs::read_to_string(fleet.hosts[0].home_path("runs")).unwrap(), "run\nrun\n");
    assert!(
        text.contains("  h[1-2,5] (3)  cached: done before with this exact fingerprint (--ignore-cache runs it again)\n    │ same\n"),
        "{text}"
    );
}

#[test]
fn exec_refuses_its_own_options_after_the_command_and_passes_every_word_after_double_dash() {
    let home = scratch("local-exec-dashdash");
    // An exec option after the command is refused before anything runs...
    let out = output(local_director(&home).args(["exec", "touch", "ran", "--json"]).current_dir(&home));
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("error: exec: `--json` comes after the command"), "{}", stderr(&out));
    assert!(!home.join("ran").exists());
    // ...and after `--`, the same words are the command's, given to it as they are.
    let out = output(local_director(&home).args(["exec", "--json", "--", "echo", "hi", "--restrict", "-c", "x"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(printed(&schema::parse(&out.stdout), Some("localhost"), Some(0)), "hi --restrict -c x\n");
    // A word that is not one of exec's options is the command's without `--`.
    let out = output(local_director(&home).args(["exec", "--json", "echo", "-n", "--restricted"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(printed(&schema::parse(&out.stdout), Some("localhost"), Some(0)), "--restricted");
    let _ = std::fs::remove_dir_all(&home);
}
