//! The command line itself: bad input, usage errors, a closed stdout, completions and the
//! man page.

use super::*;

// ---- bad input: exit 2, word-for-word messages, nothing contacted -------------------------

fn bad_input(files: &[(&str, &str)], args: &[&str]) -> (i32, String, String, bool) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "bad-{}-{}",
        std::process::id(),
        files[0].0
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let known_hosts = dir.join("known_hosts");
    let out = Command::new(env!("CARGO_BIN_EXE_director"))
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("DIRECTOR_KNOWN_HOSTS", &known_hosts)
        .env("DIRECTOR_SSH_CONFIG", "none")
        .env_remove("DIRECTOR_CATALOG")
        .args(args)
        .output()
        .unwrap();
    let contacted = known_hosts.exists();
    let _ = std::fs::remove_dir_all(&dir);
    (code(&out), stdout(&out), stderr(&out), contacted)
}

// 192.0.2.0/24 is TEST-NET-1: never contacted, and the tests prove nothing tried to.
const CATALOG: &str = "nodes:\n  - {name: web1, host: 192.0.2.10}\n  - {name: web2, host: 192.0.2.11}\n";

/// What a bad-input case is: a name, the files written, the arguments, the exact stderr.
type BadCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str], &'a str);

#[test]
fn bad_input_is_exit_2_with_file_line_column_and_a_hint() {
    let cases: &[BadCase] = &[
        (
            "malformed yaml",
            &[("c.yaml", CATALOG), ("d.yaml", "- jobs:\n    - RUN: [oops\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: d.yaml:2:12: invalid YAML: unclosed bracket '['\n  hint: check the indentation and the quoting on that line and the one before it\n",
        ),
        (
            "unknown verb",
            &[("c.yaml", CATALOG), ("d.yaml", "- jobs:\n    - RUN: true\n    - RUNN: echo\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: d.yaml:3:7: unknown verb `RUNN` in job 2 of entry 1\n  hint: did you mean `RUN`?\n",
        ),
        (
            "missing jobs",
            &[("c.yaml", CATALOG), ("d.yaml", "- name: nothing to do\n  targets: [web1]\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: d.yaml:1:3: entry 1 has no `jobs`\n  hint: every entry needs a `jobs:` list, e.g. `jobs: [{RUN: uptime}]`\n",
        ),
        (
            "unknown target",
            &[("c.yaml", CATALOG), ("d.yaml", "- targets: [web1, wbe2, db1]\n  jobs:\n    - RUN: true\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: d.yaml:1:19: unknown target `wbe2`\n  hint: did you mean `web2`? targets are catalog node names or hosts; the catalog has web1, web2\n",
        ),
        (
            "unreadable key",
            &[("c.yaml", "defaults:\n  identity_file: ./no-such-key\nnodes:\n  - {name: web1, host: 192.0.2.10}\n"), ("d.yaml", "- jobs: [{RUN: true}]\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: c.yaml:2:18: cannot use identity file ./no-such-key of node `web1`: No such file or directory\n  hint: check the path and its permissions\n",
        ),
        (
            "missing file",
            &[("c.yaml", CATALOG)],
            &["orchestrate", "nope.yaml", "--catalog", "c.yaml"],
            "error: cannot read nope.yaml: No such file or directory\n  hint: check the path; it is taken relative to the current directory\n",
        ),
        (
            "bad catalog key",
            &[("c.yaml", "nodes:\n  - name: web1\n    hots: 192.0.2.10\n"), ("d.yaml", "- jobs: [{RUN: true}]\n")],
            &["orchestrate", "d.yaml", "--catalog", "c.yaml"],
            "error: c.yaml:3:5: unknown key `hots` in node\n  hint: did you mean `host`? node keys are: name, host, port, user, identity_file, groups, vars, transport, host_key_checking, via, relay, become, become_user, become_method\n",
        ),
        (
            "unknown exec target",
            &[("c.yaml", CATALOG)],
            &["exec", "--target", "web3", "--catalog", "c.yaml", "uptime"],
            "error: --target `web3` matches no node or group in the catalog\n  hint: did you mean `web1`? the catalog has web1, web2\n",
        ),
    ];
    for (what, files, args, want) in cases {
        let (code, out, err, contacted) = bad_input(files, args);
        assert_eq!(err, *want, "{what}");
        assert_eq!(code, 2, "{what}");
        assert_eq!(out, "", "{what}");
        assert!(!contacted, "{what}: a node was contacted");
    }
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let home = scratch("local-pipe");
    let file = home.join("o.yaml");
    std::fs::write(&file, "- jobs:\n    - RUN: seq 1 20000\n    - RUN: touch ran-to-the-end\n").unwrap();
    let mut child = local_director(&home)
        .current_dir(&home)
        .arg("orchestrate")
        .arg(&file)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(home.join("ran-to-the-end").exists());
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn usage_errors_exit_2() {
    let out = output(Command::new(env!("CARGO_BIN_EXE_director")).args(["orchestrate"]));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with("error: the following required arguments were not provided:\n  <FILE>...\n"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn completions_man_page_and_help_come_from_the_clap_definitions() {
    let director = || Command::new(env!("CARGO_BIN_EXE_director"));
    // bash loads the script, and it completes the subcommands.
    let script = stdout(&output(director().args(["completions", "bash"])));
    let dir = std::env::temp_dir().join(format!("director-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("director.bash"), &script).unwrap();
    let probe = format!(
        "source {}; COMP_WORDS=(director orch); COMP_CWORD=1; _director director orch director; echo \"${{COMPREPLY[@]}}\"",
        dir.join("director.bash").display()
    );
    let out = output(Command::new("bash").args(["-c", &probe]));
    assert_eq!(stdout(&out).trim(), "orchestrate", "{}", stderr(&out));
    for shell in ["zsh", "fish"] {
        let out = output(director().args(["completions", shell]));
        assert_eq!(code(&out), 0);
        assert!(stdout(&out).contains("orchestrate"), "{shell}");
    }
    assert_eq!(code(&output(director().args(["completions", "tcsh"]))), 2);
    let man = stdout(&output(director().arg("man")));
    assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{man}");
    let date = |page: &str| {
        let th = page.lines().find(|l| l.starts_with(".TH ")).unwrap_or_default().to_string();
        let field = th.split_whitespace().nth(3).unwrap_or_default().to_string();
        (th, field)
    };
    // .TH NAME SECTION DATE SOURCE MANUAL: a date in the date field, the version as source.
    let (th, day) = date(&man);
    assert!(day.len() == 10 && day.as_bytes()[4] == b'-', "{th}");
    assert_eq!(th, format!(".TH director 1 {day} \"director {}\" \"User Commands\"", env!("CARGO_PKG_VERSION")));
    for part in [".SH NAME", "director\\-orchestrate(1)", "Exit codes:"] {
        assert!(man.contains(part), "no `{part}` in the man page");
    }
    // Each subcommand has its page, with its own options and the global ones.
    let page = stdout(&output(director().args(["man", "orchestrate"])));
    assert_eq!(
        date(&page).0,
        format!(".TH director-orchestrate 1 {day} \"director {}\" \"User Commands\"", env!("CARGO_PKG_VERSION"))
    );
    for part in ["\\fBdirector orchestrate\\fR", "\\-\\-retry\\-failed", "\\-\\-history"] {
        assert!(page.contains(part), "no `{part}` in director-orchestrate(1)");
    }
    // man(1) reads it, and its footer is version, date, page.
    let shown = Command::new("sh")
        .arg("-c")
        .arg("\"$0\" man exec | MANWIDTH=100 man -l - 2>/dev/null")
        .arg(env!("CARGO_BIN_EXE_director"))
        .output()
        .unwrap();
    let footer =
        String::from_utf8_lossy(&shown.stdout).lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default().to_string();
    assert_eq!(
        footer.split_whitespace().collect::<Vec<_>>(),
        ["director", env!("CARGO_PKG_VERSION"), &day, "director-exec(1)"]
    );
    let wrong = output(director().args(["man", "orchestrat"]));
    assert_eq!(
        (code(&wrong), stderr(&wrong).as_str()),
        (2, "error: there is no man page `orchestrat`\n  hint: did you mean `director man orchestrate`?\n")
    );
    let pages = std::env::temp_dir().join(format!("director-man-{}", std::process::id()));
    std::fs::create_dir_all(&pages).unwrap();
    assert_eq!(code(&output(director().arg("man").arg("--dir").arg(&pages))), 0);
    let mut written: Vec<String> =
        std::fs::read_dir(&pages).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    written.sort();
    assert_eq!(
        written,
        [
            "director-bootstrap.1",
            "director-completions.1",
            "director-exec.1",
            "director-man.1",
            "director-manage.1",
            "director-orchestrate.1",
            "director-tui.1",
            "director.1"
        ]
    );
    let _ = std::fs::remove_dir_all(&pages);
    // An environment variable is named in --help, never shown as if set to nothing.
    let help = stdout(&output(director().args(["orchestrate", "--help"]).env_remove("DIRECTOR_BECOME_PASSWORD_FILE")));
    assert!(
        help.contains("[env: DIRECTOR_BECOME_PASSWORD_FILE]")
            && !help.contains("[env: DIRECTOR_BECOME_PASSWORD_FILE=]"),
        "{help}"
    );
    // `director help CMD` is `director CMD --help`; --help ends with examples and exit codes.
    assert_eq!(
        stdout(&output(director().args(["help", "exec"]))),
        stdout(&output(director().args(["exec", "--help"])))
    );
    let help = stdout(&output(director().arg("--help")));
    assert!(help.contains("Examples:\n  director tui catalog.yaml") && help.contains("\n  130  cancelled"), "{help}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Catalogs and orchestrations from a pipe (`<(generate)`) or standard input (`-`) are read
/// once, like files; a relative path in them is taken from the current directory. A FIFO
/// nobody writes to is refused after a bounded wait (tests/inputs/101).
#[test]
fn catalogs_and_orchestrations_come_from_pipes_and_standard_input() {
    let home = scratch("pipes");
    std::fs::write(home.join("greeting.txt"), "hello from a file beside\n").unwrap();
    let director = local_director(&home);
    let bash = |script: &str, stdin: Option<&str>| {
        let mut cmd = Command::new("bash");
        for (k, v) in director.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.env("DIRECTOR", env!("CARGO_BIN_EXE_director")).current_dir(&home).arg("-c").arg(script);
        cmd.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    };
    let catalog = "printf 'defaults: {transport: local}\\nnodes:\\n  - {name: piped-node}\\n'";
    let orchestration = "printf -- '- jobs:\\n    - COPY: greeting.txt /tmp/director-pipes-greeting\\n    - RUN: cat /tmp/director-pipes-greeting\\n'";
    let out = bash(&format!("\"$DIRECTOR\" orchestrate <({orchestration}) -c <({catalog}) --output all"), None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("piped-node") && text.contains("hello from a file beside"), "{text}");
    // Standard input as the orchestration, the catalog from a pipe.
    let out = bash(
        &format!("\"$DIRECTOR\" orchestrate - -c <({catalog}) --output all"),
        Some("- jobs:\n    - RUN: echo from standard input\n"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("from standard input"), "{}", stdout(&out));
    // Standard input named twice, or a terminal: refused, exit 2.
    let out = bash("\"$DIRECTOR\" orchestrate - -c -", Some("- jobs:\n    - RUN: true\n"));
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "error: `-` (standard input) is named twice\n  hint: only one file can come from standard input; name the others by path\n"
    );
    let _ = std::fs::remove_file("/tmp/director-pipes-greeting");
}

/// The README's setup gives both executors, and `--version` says which the binary carries.
#[test]
fn the_version_names_the_executors_the_binary_carries() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains("\n    rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl\n"));
    let version = stdout(&output(Command::new(env!("CARGO_BIN_EXE_director")).arg("--version")));
    let carried =
        version.split_once("(executors: ").map(|(_, rest)| rest.trim_end().trim_end_matches(')')).unwrap_or_default();
    let arches: Vec<&str> = carried.split(", ").filter_map(|e| e.split_whitespace().next()).collect();
    assert_eq!(arches, ["x86_64", "aarch64"], "{version}");
}
