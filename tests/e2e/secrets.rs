//! Secrets: values marked secret reach the node, and nothing else. Checked where they could
//! leak: the `--json` events, the history database file, `manage` output, and the command
//! lines on the node (`ps`) while the job runs.

use super::harness::Fleet;
use super::{code, output, stderr};

const SECRETS: [&str; 5] = ["hunter2-file", "tok-12345", "env-secret-9", "s3cr3t-env", "dyn-tok-12345"];

#[test]
fn secret_values_reach_the_node_and_nothing_else() {
    let fleet = Fleet::start(1);
    fleet.file("secrets.yaml", "db_password: hunter2-file\n");
    let base = std::fs::read_to_string(fleet.catalog()).unwrap();
    let catalog = fleet.file(
        "secret-catalog.yaml",
        &format!("secrets_file: secrets.yaml\nvars: {{api_token: tok-12345}}\nsecrets: [api_token]\n{base}"),
    );
    let file = fleet.file(
        "s.yaml",
        concat!(
            "- jobs:\n",
            "    - ENV: --secret DB_PASS s3cr3t-env\n",
            "    - ARG: --secret dyn dyn-{{ api_token }}\n",
            "    - RUN: echo \"$DB_PASS {{ db_password }} {{ api_token }} {{ envpass }} {{ dyn }}\" > ~/got; ps -eo args > ~/ps.txt; cat ~/got\n",
            "    - RUN: echo {{ db_password }} >&2; exit 1\n",
        ),
    );
    let history = fleet.path().join("history.db");
    let out = output(
        fleet
            .director()
            .env("DIRECTOR_SECRET_ENVPASS", "env-secret-9")
            .env("DIRECTOR_HISTORY", &history)
            .arg("orchestrate")
            .arg(&file)
            .arg("--catalog")
            .arg(&catalog)
            .arg("--json"),
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    // The node got every real value.
    let got = std::fs::read_to_string(fleet.hosts[0].home_path("got")).unwrap();
    assert_eq!(got, "s3cr3t-env hunter2-file tok-12345 env-secret-9 dyn-tok-12345\n");
    // Nothing else did.
    let events = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(events.contains("[secret] [secret] [secret] [secret] [secret]"), "{events}");
    let ps = std::fs::read_to_string(fleet.hosts[0].home_path("ps.txt")).unwrap();
    let db = std::fs::read(&history).unwrap();
    let exported =
        output(fleet.director().env("DIRECTOR_HISTORY", &history).args(["manage", "--export-jobs", "-"])).stdout;
    let info = output(fleet.director().env("DIRECTOR_HISTORY", &history).args(["manage", "--job-info", "last"])).stdout;
    for secret in SECRETS {
        assert!(!events.contains(secret), "{secret} in the events");
        assert!(!ps.contains(secret), "{secret} on a command line on the node:\n{ps}");
        assert!(!String::from_utf8_lossy(&db).contains(secret), "{secret} in the history file");
        assert!(!String::from_utf8_lossy(&exported).contains(secret), "{secret} in export-jobs");
        assert!(!String::from_utf8_lossy(&info).contains(secret), "{secret} in job-info");
        assert!(!stderr(&out).contains(secret), "{secret} on stderr");
    }
    // The history is private to the operator.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&history).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // A later run that only uses what the node cache holds keeps it secret too.
    let later = fleet.file("later.yaml", "- jobs:\n    - RUN: echo {{ dyn }}\n");
    let out =
        output(fleet.director().arg("orchestrate").arg(&later).arg("--catalog").arg(fleet.catalog()).arg("--json"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(!events.contains("dyn-tok-12345") && events.contains("[secret]"), "{events}");
}

#[test]
fn a_secrets_list_naming_no_var_is_an_error() {
    let fleet = Fleet::start(1);
    let base = std::fs::read_to_string(fleet.catalog()).unwrap();
    let catalog = fleet.file("c.yaml", &format!("vars: {{api_token: x}}\nsecrets: [api_tokn]\n{base}"));
    let file = fleet.file("o.yaml", "- jobs: [{RUN: true}]\n");
    let out = output(fleet.director().arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog));
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        format!(
            "error: {}:2:11: `secrets` names `api_tokn`, which is no node's var\n  hint: did you mean `api_token`? `secrets` lists var names whose values are secret\n",
            catalog.display()
        )
    );
}

/// A job whose inputs hold a secret is fingerprinted with HMAC under the key beside the
/// history: neither the history nor the node cache holds a plain hash a guess of the secret
/// could be checked against, a re-run with the same history is still answered from the cache,
/// and another history (another key) does not recognise it.
#[test]
fn secret_inputs_are_fingerprinted_with_the_historys_key() {
    use sha3::Digest;
    let fleet = Fleet::start(2);
    let run = |history: &str, secret: bool, node: &str| {
        let flag = if secret { "--secret " } else { "" };
        let file = fleet
            .file("pin.yaml", &format!("- jobs:\n    - ARG: {flag}pin 4711\n    - RUN: echo {{{{ pin }}}} > ~/pin\n"));
        let out = output(fleet.orchestrate(&file).env("DIRECTOR_HISTORY", fleet.path().join(history)).args([
            "--json",
            "--restrict",
            node,
        ]));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let events = super::schema::parse(&out.stdout);
        let started = events.iter().find_map(|e| match e {
            super::schema::Event::JobStarted { job: 1, fingerprint, .. } => Some(fingerprint.clone()),
            _ => None,
        });
        (started.unwrap(), super::finished(&events, node)[1].1.to_string())
    };
    // The same job, its value not secret, on h1 with another history: the plain fingerprint.
    let (plain, status) = run("plain.db", false, "h1");
    assert_eq!(status, "ok");
    let (sealed, status) = run("h.db", true, "h2");
    assert_eq!(status, "ok");
    assert_ne!(sealed, plain);
    // The plain hash of the value alone, as a recorded part would have it.
    let part = sha3::Sha3_224::digest(b"\"4711\"")[..8].iter().map(|b| format!("{b:02x}")).collect::<String>();
    let (cache, db) = (fleet.hosts[1].cache_files(), std::fs::read(fleet.path().join("h.db")).unwrap());
    for (what, bytes) in [("the node cache", &cache), ("the history", &db)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(text.contains(&sealed[..16]) || what == "the history", "{what} lacks the job");
        assert!(!text.contains(&plain) && !text.contains(&part), "{what} holds a plain hash of the secret");
    }
    // The key: beside the history, private, 32 bytes.
    let key = std::fs::metadata(fleet.path().join("h.db.key")).unwrap();
    assert_eq!((std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, key.len()), (0o600, 32));
    // The same history: answered from the cache. Another: not recognised, it runs again.
    assert_eq!(run("h.db", true, "h2"), (sealed.clone(), "cached".to_string()));
    let (other, status) = run("other.db", true, "h2");
    assert_ne!(other, sealed);
    assert_eq!(status, "ok");
}
