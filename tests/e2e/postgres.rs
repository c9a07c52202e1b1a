//! The history on PostgreSQL: a real server from Debian's package, started by the test
//! (`initdb` and `pg_ctl`, its own data directory, port and socket directory; stopped and
//! removed after), and operators that share it: each its own HOME, as on two machines.

use super::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A PostgreSQL server of the test's own.
pub(crate) struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    pub(crate) url: String,
}

impl Postgres {
    pub(crate) fn start(name: &str) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed: run tests/setup.sh (as root it installs postgresql)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("no /usr/lib/postgresql/*/bin/initdb: run tests/setup.sh");
        let dir = std::env::temp_dir().join(format!("director-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://director@127.0.0.1:{port}/postgres");
        let server = Postgres { dir: dir.clone(), bin, port, url };
        // PostgreSQL refuses to run as root: as root, the server is the postgres user's.
        if harness::is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:"]).arg(&dir).status().unwrap();
            assert!(chown.success());
        }
        let data = dir.join("data");
        let out =
            server.pg("initdb").arg("-D").arg(&data).args(["-A", "trust", "-U", "director", "--no-sync"]).output();
        let out = out.unwrap();
        assert!(out.status.success(), "initdb failed: {}", stderr(&out));
        server.start_again();
        server
    }

    /// A server that speaks TLS only on TCP (pg_hba refuses plain TCP), with a certificate
    /// for 127.0.0.1 (not for `localhost`) signed by `ca.pem` in [`Postgres::dir`].
    pub(crate) fn start_tls(name: &str) -> Postgres {
        let server = Postgres::start(name);
        server.stop();
        let dir = &server.dir;
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=director test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        let data = dir.join("data");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let conf =
            format!("ssl = on\nssl_cert_file = '{0}/server.pem'\nssl_key_file = '{0}/server.key'\n", dir.display());
        let mut auto = std::fs::OpenOptions::new().append(true).open(data.join("postgresql.conf")).unwrap();
        std::io::Write::write_all(&mut auto, conf.as_bytes()).unwrap();
        if harness::is_root() {
            let chown = Command::new("chown").args(["-R", "postgres:"]).arg(dir).status().unwrap();
            assert!(chown.success());
        }
        std::fs::set_permissions(dir.join("server.key"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        server.start_again();
        server
    }

    /// A server that asks for `director`'s password (scram-sha-256) on TCP.
    pub(crate) fn start_with_password(name: &str, password: &str) -> Postgres {
        let server = Postgres::start(name);
        let port = server.port.to_string();
        let out = server
            .pg("psql")
            .args(["-h", server.dir.to_str().unwrap(), "-p", &port, "-U", "director", "-d", "postgres", "-c"])
            .arg(format!("ALTER USER director PASSWORD '{password}'"))
            .output()
            .unwrap();
        assert!(out.status.success(), "psql: {}", stderr(&out));
        server.stop();
        std::fs::write(
            server.dir.join("data/pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        server.start_again();
        server
    }

    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Starts the server (again, after [`Postgres::stop`]) on its port.
    pub(crate) fn start_again(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.display());
        let out = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-o", &options, "-l"])
            .arg(self.dir.join("log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl start failed: {}", stderr(&out));
    }

    /// Stops the server at once, as a crash or a network outage ends its connections.
    pub(crate) fn stop(&self) {
        let out = self.pg("pg_ctl").arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "stop"]).output();
        assert!(out.unwrap().status.success());
    }

    fn pg(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut cmd = if harness::is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    /// An operator of this history: its own HOME, the local transport.
    pub(crate) fn operator(&self, home: &Path) -> Command {
        let mut cmd = local_director(home);
        cmd.env("DIRECTOR_HISTORY", &self.url);
        cmd
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg("pg_ctl").arg("-D").arg(self.dir.join("data")).args(["-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn manage(mut cmd: Command, args: &[&str]) -> Output {
    output(cmd.arg("manage").args(args))
}

fn running(pattern: &str) -> bool {
    !Command::new("pgrep").args(["-f", pattern]).output().unwrap().stdout.is_empty()
}

/// Starts `file` (a job running `marker`) and returns once the job runs.
fn start_holding(mut operator: Command, file: &Path, marker: &str) -> std::process::Child {
    let child = operator.arg("orchestrate").arg(file).arg("--json").spawn_piped();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running(marker) {
        assert!(Instant::now() < deadline, "the holding job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// What differs between two histories holding the same runs: ids, times, durations and the
/// process that ran them. Masked wherever they are, so the rest compares whole.
const VOLATILE: &[&str] = &[
    "id",
    "run",
    "run_id",
    "job_id",
    "parent_id",
    "started",
    "ended",
    "created",
    "finished",
    "last_seen",
    "last_run",
    "duration_ms",
    "execution_ms",
    "roundtrip_ms",
    "execution_time",
    "pid",
    "elapsed_ms",
];

fn masked(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                *item = if VOLATILE.contains(&k.as_str()) && !item.is_null() {
                    Value::String("…".into())
                } else {
                    masked(item.take())
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| *i = masked(i.take())),
        // An id where a name falls back to one (an entry without a name).
        Value::String(s) if matches!(s.len(), 12 | 16) && s.chars().all(|c| c.is_ascii_hexdigit()) => {
            return Value::String("…".into())
        }
        _ => {}
    }
    v
}

/// The same runs recorded in SQLite and in PostgreSQL read back the same through every
/// `manage` command.
#[test]
fn every_manage_command_reads_a_postgres_history_as_it_reads_sqlite() {
    let pg = Postgres::start("manage");
    let lite_home = scratch("pg-manage-sqlite");
    let pg_home = scratch("pg-manage-pg");
    let file = lite_home.join("o.yaml");
    std::fs::write(&file, "- jobs:\n    - RUN: echo one\n    - RUN: echo two >&2; exit 3\n    - RUN: echo never\n")
        .unwrap();
    let operators: [(&str, &dyn Fn() -> Command); 2] =
        [("sqlite", &|| local_director(&lite_home)), ("postgres", &|| pg.operator(&pg_home))];
    for (name, operator) in operators {
        // Output that SQL would misread if it were pasted into a statement unquoted.
        let tricky = r#"printf '%s\n' "it's a \\ back ?1 \$1 \$\$ é -- ;" >&2"#;
        assert_eq!(code(&output(operator().args(["exec", "--progress", "plain", tricky]))), 0, "{name}");
        assert_eq!(code(&output(operator().args(["exec", "--progress", "plain", "echo", "hi"]))), 0, "{name}");
        let failed = output(operator().arg("orchestrate").arg(&file).args(["--progress", "plain"]));
        assert_eq!(code(&failed), 1, "{name}: {}", stderr(&failed));
        assert_eq!(code(&output(operator().arg("orchestrate").arg(&file).arg("--plan"))), 0, "{name}");
    }
    let both = |args: &[&str]| -> [Output; 2] { operators.map(|(_, operator)| manage(operator(), args)) };
    for args in [
        &["--list-runs", "--json"][..],
        &["--list-jobs", "--json"],
        &["--list-jobs", "--json", "--filter", "failed"],
        &["--list-nodes", "--json"],
        &["--run-info", "last", "--json"],
        &["--job-info", "last", "--json"],
    ] {
        let [lite, pg_out] = both(args);
        assert_eq!(code(&lite), 0, "{args:?}: {}", stderr(&lite));
        assert_eq!(code(&pg_out), 0, "{args:?}: {}", stderr(&pg_out));
        assert_eq!(masked(json_of(&pg_out)), masked(json_of(&lite)), "{args:?}");
    }
    let tricky_job = json_of(&manage(pg.operator(&pg_home), &["--list-jobs", "--json"]));
    let tricky_job = tricky_job.as_array().unwrap().last().unwrap()["id"].as_str().unwrap().to_string();
    let info = json_of(&manage(pg.operator(&pg_home), &["--job-info", &tricky_job, "--json"]));
    assert_eq!(info["results"][0]["stderr"], "it's a \\ back ?1 $1 $$ é -- ;\n");
    // Every job with its results, as --export-jobs writes them.
    let exports = operators.map(|(name, operator)| {
        let path = lite_home.join(format!("export-{name}.json"));
        let out = manage(operator(), &["--export-jobs", path.to_str().unwrap()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        // Directord's export: YAML, a mapping of job ids.
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .map(|line| match line.split_once(':') {
                Some((key, _)) if !key.starts_with(' ') => "JOB:".to_string(),
                Some((key, value)) if !value.is_empty() && VOLATILE.contains(&key.trim().trim_start_matches("- ")) => {
                    format!("{key}: …")
                }
                _ => line.to_string(),
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(exports[1], exports[0]);
    // The tables: the same lines but for the ids, times and durations.
    for args in [&["--list-runs"][..], &["--list-jobs"], &["--list-nodes"], &["--run-info", "last"]] {
        let [lite, pg_out] = both(args);
        let shape = |o: &Output| -> Vec<String> {
            stdout(o)
                .lines()
                .map(|l| {
                    l.split_whitespace()
                        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        };
        assert_eq!(shape(&pg_out), shape(&lite), "{args:?}");
    }
    // A prefix of an id, and `last`, are found the same way.
    let runs = json_of(&manage(pg.operator(&pg_home), &["--list-runs", "--json"]));
    let id = runs[1]["id"].as_str().unwrap();
    let info = json_of(&manage(pg.operator(&pg_home), &["--run-info", &id[..4], "--json"]));
    assert_eq!(info["id"], id);
    let missing = manage(pg.operator(&pg_home), &["--run-info", "zz"]);
    assert_eq!(
        stderr(&missing),
        format!("error: no run has an id starting with `zz` in {}\n  hint: `director manage --list-runs` shows them; an id, a unique prefix of one, or `last` is accepted\n", pg.url)
    );
    // --retry-failed reads the failed nodes and the files of a run from the history.
    for (name, operator) in operators {
        let runs = json_of(&manage(operator(), &["--list-runs", "--json"]));
        let failed = runs[1]["id"].as_str().unwrap();
        let retried = output(operator().arg("orchestrate").args(["--retry-failed", failed, "--progress", "plain"]));
        assert_eq!(code(&retried), 1, "{name}: {}", stderr(&retried));
        assert!(
            stdout(&retried).contains("localhost  FAILED     3 jobs (0 ok, 1 cached, 1 failed, 1 skipped)"),
            "{name}: {}",
            stdout(&retried)
        );
    }
    for [lite, pg_out] in [both(&["--purge-jobs"]), both(&["--purge-nodes"])] {
        assert_eq!((code(&pg_out), stdout(&pg_out)), (code(&lite), stdout(&lite)));
    }
    let [lite, pg_out] = both(&["--list-runs"]);
    assert_eq!(
        stdout(&lite).replace(&lite_home.join(".local/state/director/history.db").display().to_string(), "H"),
        stdout(&pg_out).replace(&pg.url, "H")
    );
    let _ = std::fs::remove_dir_all(&lite_home);
    let _ = std::fs::remove_dir_all(&pg_home);
}

/// Two operators (two HOMEs, as two machines) on one PostgreSQL history: a run on a node the
/// other holds is refused with exit 4 naming the other's run, `--wait` waits for it, and
/// `manage --cancel` from one stops the other's run.
#[test]
fn two_operators_share_locks_and_cancel_through_postgres() {
    let pg = Postgres::start("locks");
    let (a, b) = (scratch("pg-op-a"), scratch("pg-op-b"));
    let marker = format!("sleep 2.{}5", std::process::id());
    let file = a.join("hold.yaml");
    std::fs::write(&file, format!("- jobs:\n    - RUN: {marker}\n")).unwrap();
    let holder = start_holding(pg.operator(&a), &file, &marker);
    let runs = json_of(&manage(pg.operator(&b), &["--list-runs", "--json"]));
    let run = &runs[0];
    assert_eq!(run["status"], "running");
    let out = output(pg.operator(&b).args(["exec", "echo", "hi"]));
    assert_eq!((code(&out), stderr(&out)), (4, held_by(run, &file, holder.id())));
    let waiter = output(pg.operator(&b).args(["exec", "--wait", "--json", "echo", "after"]));
    assert_eq!(code(&waiter), 0, "{}", stderr(&waiter));
    assert!(
        stderr(&waiter).starts_with(&format!("waiting for run {} (", run["id"].as_str().unwrap())),
        "{}",
        stderr(&waiter)
    );
    assert_eq!(code(&holder.wait_with_output().unwrap()), 0);

    // Cancel from the other operator.
    let long = format!("sleep 60.{}6", std::process::id());
    let file = a.join("long.yaml");
    std::fs::write(&file, format!("- jobs:\n    - RUN: {long}\n    - RUN: echo never\n")).unwrap();
    let holder = start_holding(pg.operator(&a), &file, &long);
    let id = json_of(&manage(pg.operator(&b), &["--run-info", "last", "--json"]))["id"].as_str().unwrap().to_string();
    let out = manage(pg.operator(&b), &["--cancel", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ended = holder.wait_with_output().unwrap();
    assert_eq!(code(&ended), 130, "{}", stderr(&ended));
    assert!(!running(&long), "the cancelled job still runs");
    let info = json_of(&manage(pg.operator(&b), &["--run-info", &id, "--json"]));
    assert_eq!(info["status"], "cancelled");
    let statuses: Vec<String> = json_of(&manage(pg.operator(&a), &["--list-runs", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r["kind"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        ["orchestrate cancelled", "exec succeeded", "orchestrate succeeded"],
        "newest first; the refused run is not recorded"
    );
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// An operator killed mid-run loses its connection, so its advisory lock: the other operator
/// takes the node and the dead run is shown abandoned.
#[test]
fn a_killed_operators_run_is_found_abandoned_through_postgres() {
    let pg = Postgres::start("abandoned");
    let (a, b) = (scratch("pg-dead-a"), scratch("pg-dead-b"));
    let marker = format!("sleep 60.{}7", std::process::id());
    let file = a.join("hold.yaml");
    std::fs::write(&file, format!("- jobs:\n    - RUN: {marker}\n")).unwrap();
    let mut holder = start_holding(pg.operator(&a), &file, &marker);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = json_of(&manage(pg.operator(&b), &["--list-jobs", "--json", "--filter", "processing"]));
        if jobs.as_array().is_some_and(|j| !j.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the history never had the job running");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: killing our own child.
    unsafe { libc::kill(holder.id() as i32, libc::SIGKILL) };
    let _ = holder.wait();
    let out = output(pg.operator(&b).args(["exec", "echo", "after"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let statuses: Vec<String> = json_of(&manage(pg.operator(&b), &["--list-runs", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["succeeded", "abandoned"], "newest first");
    // A password in the URL given on the command line is not kept in the run's command line.
    let with_password = pg.url.replace("director@", "director:pw@");
    let out =
        output(local_director(&b).args(["exec", "--history", &with_password, "--", "echo", "x=postgres://u:pw@h/"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let runs = json_of(&manage(pg.operator(&b), &["--list-runs", "--json", "--limit", "1"]));
    assert_eq!(
        runs[0]["command"],
        format!(
            "director exec --history '{}' -- echo 'x=postgres://u:***@h/'",
            pg.url.replace("director@", "director:***@")
        )
    );
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// A server that is not there is said before anything is contacted, with exit 2.
#[test]
fn an_unreachable_postgres_history_is_an_input_error() {
    let home = scratch("pg-unreachable");
    let url = "postgres://director:s3cret@127.0.0.1:1/director";
    for args in [&["exec", "true"][..], &["manage", "--list-runs"]] {
        let out = output(local_director(&home).env("DIRECTOR_HISTORY", url).args(args));
        assert_eq!(code(&out), 2, "{}", stderr(&out));
        assert!(
            stderr(&out)
                .starts_with("error: cannot open the run history postgres://director:***@127.0.0.1:1/director: "),
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).ends_with(
                "  hint: check that the server runs and takes this URL (psql URL), or choose another --history\n"
            ),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("s3cret"), "the password is never shown");
    }
    let _ = std::fs::remove_dir_all(&home);
}

/// A PostgreSQL server that goes away mid-run does not stop the run: it is said once, the
/// events wait, and they are written, in order, when the server is back.
#[test]
fn a_run_outlives_a_postgres_outage_and_its_history_is_whole() {
    let pg = Postgres::start("outage");
    let home = scratch("pg-outage");
    let file = home.join("slow.yaml");
    let jobs: String = (0..60).map(|i| format!("    - RUN: sleep 0.05; echo {i}\n")).collect();
    std::fs::write(&file, format!("- jobs:\n{jobs}")).unwrap();
    let run = pg.operator(&home).arg("orchestrate").arg(&file).args(["--progress", "plain"]).spawn_piped();
    std::thread::sleep(Duration::from_millis(800));
    pg.stop();
    std::thread::sleep(Duration::from_millis(1500));
    pg.start_again();
    let out = run.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stderr(&out);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "one warning, one recovery: {lines:?}");
    assert!(
        lines[0].starts_with(&format!("warning: the run history {} cannot record this run's events (", pg.url)),
        "{lines:?}"
    );
    assert!(lines[0].ends_with("); the run goes on, and they are written when it answers again"), "{lines:?}");
    assert!(lines[1].starts_with(&format!("the run history {} records this run again (", pg.url)), "{lines:?}");
    let run = json_of(&manage(pg.operator(&home), &["--run-info", "last", "--json"]));
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["node_outcomes"][0]["outcome"], "ok");
    let jobs = json_of(&manage(pg.operator(&home), &["--list-jobs", "--json"]));
    let ok = jobs.as_array().unwrap().iter().filter(|j| j["success"] == 1).count();
    assert_eq!(ok, 60, "every result is in the history");
    let _ = std::fs::remove_dir_all(&home);
}

/// The connection's TLS is libpq's `sslmode`: plain TCP is refused by this server, `prefer`
/// (the default) and `require` encrypt, `verify-full` checks the certificate's chain and name,
/// `verify-ca` the chain only.
#[test]
fn a_postgres_history_speaks_tls_as_libpq_sslmode_says() {
    let pg = Postgres::start_tls("tls");
    let home = scratch("pg-tls");
    let ca = pg.file("ca.pem");
    let other = pg.file("other-ca.pem");
    let run = |url: &str| {
        let out = output(local_director(&home).env("DIRECTOR_HISTORY", url).args(["exec", "true"]));
        (code(&out), stderr(&out))
    };
    let with = |query: &str| format!("{}?{query}", pg.url);
    let localhost = pg.url.replace("127.0.0.1", "localhost");
    assert_eq!(run(&pg.url).0, 0, "prefer, the default, encrypts");
    assert_eq!(run(&with("sslmode=require")).0, 0);
    assert_eq!(run(&with(&format!("sslmode=verify-full&sslrootcert={}", ca.display()))).0, 0);
    assert_eq!(run(&format!("{localhost}?sslmode=verify-ca&sslrootcert={}", ca.display())).0, 0, "verify-ca: any name");
    let refused = |url: &str, why: &str| {
        let (code, said) = run(url);
        assert_eq!(code, 2, "{url}: {said}");
        assert!(said.contains(why), "{url}: {said}");
    };
    refused(&with("sslmode=disable"), "no encryption");
    refused(&with(&format!("sslmode=verify-full&sslrootcert={}", other.display())), "UnknownIssuer");
    refused(
        &format!("{localhost}?sslmode=verify-full&sslrootcert={}", ca.display()),
        "certificate not valid for name \"localhost\"",
    );
    refused(
        &with("sslmode=verify-full"),
        &format!("cannot read the root certificates {}/.postgresql/root.crt: ", home.display()),
    );
    // The records went to the server through TLS.
    let mut director = local_director(&home);
    director.env("DIRECTOR_HISTORY", with("sslmode=require"));
    let runs = json_of(&manage(director, &["--list-runs", "--json"]));
    assert_eq!(runs.as_array().unwrap().len(), 4);
    let _ = std::fs::remove_dir_all(&home);
}

/// A password the URL does not give comes from PGPASSWORD or the password file, as libpq finds
/// it; a password file others can read is not used, and a password is never shown.
#[test]
fn a_postgres_password_comes_from_pgpass_or_pgpassword_as_libpq_finds_it() {
    let pg = Postgres::start_with_password("password", "s3cret-pw");
    let home = scratch("pg-password");
    let pgpass = home.join(".pgpass");
    let port = pg.port;
    let run = |env: Option<&str>| {
        let mut cmd = local_director(&home);
        cmd.env("DIRECTOR_HISTORY", &pg.url).env_remove("PGPASSWORD").env_remove("PGPASSFILE");
        if let Some(password) = env {
            cmd.env("PGPASSWORD", password);
        }
        let out = output(cmd.args(["exec", "true"]));
        assert!(!stderr(&out).contains("s3cret-pw") && !stderr(&out).contains("wrong-pw"), "{}", stderr(&out));
        (code(&out), stderr(&out))
    };
    let (code, said) = run(None);
    assert_eq!(code, 2, "no password anywhere: {said}");
    assert!(said.starts_with("error: cannot open the run history "), "{said}");
    let private = |text: &str, mode: u32| {
        std::fs::write(&pgpass, text).unwrap();
        std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    };
    private(
        &format!(
            "# the team's history\nother:{port}:postgres:director:nope\n127.0.0.1:{port}:postgres:director:s3cret-pw\n"
        ),
        0o600,
    );
    assert_eq!(run(None), (0, String::new()), "the first matching line");
    private("*:*:*:director:s3cret-pw\n", 0o600);
    assert_eq!(run(None).0, 0, "wildcards");
    private("*:*:*:director:s3cret-pw\n", 0o644);
    let (code, said) = run(None);
    assert_eq!(code, 2, "{said}");
    assert!(
        said.starts_with(&format!(
            "warning: password file {} has group or world access; permissions should be u=rw (0600) or less: it is not used\n",
            pgpass.display()
        )),
        "{said}"
    );
    std::fs::remove_file(&pgpass).unwrap();
    assert_eq!(run(Some("s3cret-pw")).0, 0, "PGPASSWORD");
    let (code, said) = run(Some("wrong-pw"));
    assert_eq!(code, 2, "{said}");
    assert!(said.contains("password authentication failed for user \"director\""), "{said}");
    let _ = std::fs::remove_dir_all(&home);
}

/// Operators starting at the same instant on the same node: one takes it, every other is
/// refused (exit 4), never two running at once.
#[test]
fn operators_starting_at_once_on_postgres_take_a_node_once() {
    let pg = Postgres::start("race");
    let homes: Vec<PathBuf> = (0..6).map(|i| scratch(&format!("pg-race-{i}"))).collect();
    let marker = format!("sleep 3.{}8", std::process::id());
    let children: Vec<_> =
        homes.iter().map(|home| pg.operator(home).args(["exec", "--json", &marker]).spawn_piped()).collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    let codes: Vec<i32> = outs.iter().map(code).collect();
    for o in outs.iter().filter(|o| code(o) == 4) {
        assert!(stderr(o).starts_with("error: node localhost is held by run "), "{}", stderr(o));
    }
    let mut sorted = codes.clone();
    sorted.sort();
    let said: Vec<String> = outs.iter().map(stderr).collect();
    assert_eq!(sorted, [0, 4, 4, 4, 4, 4], "one ran, the others were refused: {codes:?} {said:?}");
    let runs = json_of(&manage(pg.operator(&homes[0]), &["--list-runs", "--json"]));
    assert_eq!(runs.as_array().unwrap().len(), 1, "only the run that took the node is recorded: {runs}");
    for home in homes {
        let _ = std::fs::remove_dir_all(home);
    }
}

/// The TUI reads and writes a PostgreSQL history as it does SQLite's: another operator's run
/// in its History screen, the nodes' facts, and a run it starts recorded there.
#[test]
fn the_tui_reads_and_writes_a_postgres_history() {
    let pg = Postgres::start("tui");
    let (other, home) = (scratch("pg-tui-other"), scratch("pg-tui"));
    let out = output(pg.operator(&other).args(["exec", "--progress", "plain", "echo", "from another operator"]));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::create_dir_all(home.join("orchestrations")).unwrap();
    std::fs::write(home.join("orchestrations/hello.yaml"), "- jobs:\n    - RUN: echo hello from the tui\n").unwrap();
    let script = format!(
        "cd {dir}\nenv -u SSH_AUTH_SOCK -u DIRECTOR_CATALOG -u DIRECTOR_CONFIG -u XDG_STATE_HOME -u XDG_CONFIG_HOME -u XDG_CACHE_HOME HOME={dir} DIRECTOR_HISTORY={url} TERM=xterm-256color {bin} tui\necho \"EXITED $?\"\nsleep 600\n",
        dir = home.display(),
        url = pg.url,
        bin = env!("CARGO_BIN_EXE_director"),
    );
    let tmux = harness::Tmux::start(&home, &script, 150, 40);
    // The node's facts come from the history the other operator wrote.
    tmux.wait_for(&["Nodes (1)", "localhost", "x86_64"], Duration::from_secs(20));
    tmux.keys(&["3"]);
    tmux.wait_for(
        &["Past runs (1)", "exec        succeeded", "director exec --progress plain echo 'from another"],
        Duration::from_secs(10),
    );
    tmux.keys(&["o"]);
    tmux.wait_for(&["Run an orchestration", "orchestrations/hello.yaml"], Duration::from_secs(10));
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["finished"], Duration::from_secs(30));
    tmux.keys(&["3"]);
    tmux.wait_for(&["Past runs (2)"], Duration::from_secs(10));
    tmux.keys(&["q"]);
    tmux.wait_for(&["EXITED 0"], Duration::from_secs(10));
    let runs = json_of(&manage(pg.operator(&other), &["--list-runs", "--json"]));
    assert_eq!(runs[0]["kind"], "orchestrate", "the TUI's run is in the shared history: {runs}");
    assert_eq!(runs[0]["status"], "succeeded");
    let _ = std::fs::remove_dir_all(&other);
    let _ = std::fs::remove_dir_all(&home);
}
