//! A job's fingerprint on one node: sha3-224 over a canonical encoding of everything that
//! decides what the job does there.
//!
//! The encoding is a JSON object, keys sorted bytewise at every level, no whitespace, strings
//! escaped as serde_json does (UTF-8 kept, `"` `\` and control characters escaped), numbers as
//! integers. It always holds `v` (1, the version of this encoding), `verb`, `timeout`
//! (seconds), `run_once`, `stdout_arg` and `stderr_arg` (null when unset), and the verb's own
//! fields, which each verb's module names ([`crate::verb`]): RUN's `command` (rendered) and
//! `env` (the node's cached envs), ADD/COPY's `files` (each final path with its content hash),
//! and so on.
//!
//! A job that runs as another user than the login user (become) also holds `as`, that user:
//! the same command as root and as the login user are different work. Jobs run as the login
//! user have no `as`, so their fingerprints are those of earlier versions.
//!
//! Left out on purpose: `--skip-cache`, the job's name, targets, position and entry, so the
//! same work anywhere has the same fingerprint. Unlike Directord, the content of ADD/COPY
//! sources is in (editing a source re-sends it), and so are the rendered command and the
//! environment (a changed ARG or ENV used by a later RUN makes that RUN run again).
//!
//! What holds a secret value (a fingerprint whose body does, a recorded part, a variable a
//! template read) is hashed with HMAC-SHA3-224 under this operator's key instead ([`Seal`]):
//! the history and the node caches keep these hashes, and a plain hash of a short secret could
//! be matched by trying candidates. The same key gives the same fingerprints, so cache hits
//! hold from run to run; another history (another key) does not recognise them.

use super::Job;
use crate::secret::Secrets;
use crate::verb::Rendered;
use serde_json::{json, Value};
use sha3::{Digest, Sha3_224};
use std::sync::Arc;

/// How a run hashes what holds a secret: with the key kept beside its history.
#[derive(Clone)]
pub(crate) struct Seal {
    key: Arc<[u8]>,
    secrets: Arc<Secrets>,
}

impl Seal {
    pub(crate) fn new(key: Arc<[u8]>, secrets: Arc<Secrets>) -> Self {
        Seal { key, secrets }
    }

    /// The key, for a relay to seal as this run does.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The digest of `text`: keyed when it holds a secret value, plain sha3-224 otherwise.
    fn digest(&self, text: &str) -> Vec<u8> {
        if !self.secrets.occurs_in(text) {
            return Sha3_224::digest(text.as_bytes()).to_vec();
        }
        hmac_sha3_224(&self.key, text.as_bytes()).to_vec()
    }

    /// [`hash`], keyed when the text holds a secret.
    pub(crate) fn hash(&self, text: &str) -> String {
        crate::verb::source::hex(&self.digest(text))
    }

    /// [`short`], keyed when the value holds a secret.
    pub(crate) fn short(&self, value: &Value) -> String {
        crate::verb::source::hex(&self.digest(&canonical(value))[..8])
    }
}

/// A job's fingerprint on a node, with the body it was hashed from (for [`Fingerprint::parts`]).
pub(crate) struct Fingerprint {
    pub hash: String,
    body: Value,
    seal: Seal,
}

/// SHA3-224's block (its rate), in bytes: what HMAC pads the key to.
const SHA3_224_BLOCK: usize = 144;

/// HMAC (RFC 2104) over SHA3-224, as NIST and Python's `hmac` compute it. Written here, ten
/// lines, because the `hmac` crate the project has (for known_hosts) takes the digest traits
/// of a newer sha3, which is slower here, even in release.
fn hmac_sha3_224(key: &[u8], message: &[u8]) -> [u8; 28] {
    let mut block = [0u8; SHA3_224_BLOCK];
    if key.len() > SHA3_224_BLOCK {
        block[..28].copy_from_slice(&Sha3_224::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha3_224::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha3_224::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The fingerprint of `job` as rendered on a node; `seal` hashes it if it holds a secret.
pub(crate) fn of(job: &Job, r: &Rendered, seal: &Seal) -> Fingerprint {
    let body = body(job, r);
    Fingerprint { hash: seal.hash(&canonical(&body)), body, seal: seal.clone() }
}

/// The fingerprint's hash alone, of a job without secrets.
#[cfg(test)]
pub(crate) fn compute(job: &Job, r: &Rendered) -> String {
    hash(&canonical(&body(job, r)))
}

impl Fingerprint {
    /// What a job's record keeps to explain a changed fingerprint: [`short`] of each field of
    /// the body (each file of `files` on its own, as `file:DEST`; sealed where it holds a
    /// secret), and of each variable the templates use (`r.uses`, as `arg:NAME`).
    pub(crate) fn parts(&self, r: &Rendered) -> std::collections::BTreeMap<String, String> {
        let mut parts = std::collections::BTreeMap::new();
        if let Value::Object(fields) = &self.body {
            for (k, v) in fields {
                match (k.as_str(), v) {
                    ("files", Value::Array(files)) => {
                        for f in files {
                            let dest = f["dest"].as_str().unwrap_or_default();
                            parts.insert(format!("file:{dest}"), self.seal.short(&f["sha3"]));
                        }
                    }
                    (_, v) => {
                        parts.insert(k.clone(), self.seal.short(v));
                    }
                }
            }
        }
        for (name, value) in &r.uses {
            parts.insert(format!("arg:{name}"), value.clone());
        }
        parts
    }
}

/// Which job this is, whatever it renders to: its verb, how it is shown (its name, or its
/// arguments as written) and who it runs as. A job whose fingerprint is new but whose slot
/// has a record is a job that ran before with other inputs.
pub(crate) fn slot(job: &Job, run_as: Option<&str>) -> String {
    short(&json!([job.verb, job.full_name(), run_as]))
}

/// 16 hex digits of the sha3-224 of a value's canonical text: enough to tell values apart.
pub(crate) fn short(value: &Value) -> String {
    crate::verb::source::hex(&Sha3_224::digest(canonical(value).as_bytes())[..8])
}

/// The fingerprint's body: the object whose canonical text is hashed (see the module docs).
pub(crate) fn body(job: &Job, r: &Rendered) -> Value {
    let mut body = json!({
        "v": 1,
        "verb": job.verb,
        "timeout": job.timeout.as_secs(),
        "run_once": job.run_once,
        "stdout_arg": job.stdout_arg,
        "stderr_arg": job.stderr_arg,
    });
    let fields = body.as_object_mut().expect("object");
    if let Some(user) = &r.run_as {
        fields.insert("as".to_string(), json!(user));
    }
    job.work.fingerprint(r, fields);
    body
}

/// The canonical text of a JSON value (see the module docs).
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = Vec::new();
    write(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("a string serializes");
                out.push(b':');
                write(&map[k.as_str()], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("a scalar serializes"),
    }
}

/// sha3-224 of `text`, lower-case hex.
pub(crate) fn hash(text: &str) -> String {
    crate::verb::source::hex(&Sha3_224::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verb::{self as verbs, SourceRoots};
    use serde_json::Map;
    use std::path::PathBuf;

    fn job(verb: &str, args: &str) -> Job {
        let roots = SourceRoots { cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")), file_dir: None };
        Job::parsed(verb, verbs::parse(verb, args, &Map::new(), &roots).unwrap(), 0, 0)
    }

    /// What holds a secret is hashed with the key (HMAC-SHA3-224, checked against Python's
    /// `hmac.new(key, text, 'sha3_224')`); what does not keeps its plain hash, so jobs without
    /// secrets keep their fingerprints.
    #[test]
    fn what_holds_a_secret_is_sealed_with_the_key() {
        let secrets = Arc::new(Secrets::new(["4711".to_string(), "a\"b".to_string()]));
        let seal = Seal::new(Arc::from(&b"0123456789abcdef0123456789abcdef"[..]), secrets);
        assert_eq!(seal.hash("echo 42"), hash("echo 42"));
        assert_eq!(seal.hash("echo 4711"), "def9e906883020cc963df0d2ce744595799d208fe4310682976c9c18");
        // A key longer than the block is hashed first, as RFC 2104 says.
        let long = crate::verb::source::hex(&hmac_sha3_224(&[b'k'; 200], b"abc"));
        assert_eq!(long, "c7008e8989a0464597c097eadcddd9e0569f656f0dc6ea401667137f");
        assert_ne!(seal.hash("echo 4711"), hash("echo 4711"));
        // A secret with a quote is found in the canonical JSON, where it is escaped.
        let escaped = canonical(&json!("say a\"b"));
        assert_ne!(seal.short(&json!("say a\"b")), short(&json!("say a\"b")));
        assert!(escaped.contains("a\\\"b"));
        assert_eq!(seal.short(&json!(42)), short(&json!(42)));
    }

    /// Golden values: the canonical text is written out by hand, and each hash was computed
    /// from that text independently (Python's hashlib.sha3_224).
    #[test]
    fn golden_values() {
        let cases: Vec<(Job, Rendered, &str, &str)> = vec![
            (
                job("RUN", "echo hello world"),
                Rendered { text: "echo hello world".into(), ..Rendered::default() },
                r#"{"command":"echo hello world","env":{},"no_block":false,"retry":1,"run_once":false,"stderr_arg":null,"stdout_arg":null,"timeout":600,"v":1,"verb":"RUN"}"#,
                "cffd7b9d7021304d0e429bca1c56ffe6ab4aba4d81859c952d73ecb4",
            ),
            (
                job("RUN", "--stdout-arg x echo hi"),
                Rendered {
                    text: "echo hi".into(),
                    env: json!({"k": "12345"}).as_object().unwrap().clone(),
                    ..Rendered::default()
                },
                r#"{"command":"echo hi","env":{"k":"12345"},"no_block":false,"retry":1,"run_once":false,"stderr_arg":null,"stdout_arg":"x","timeout":600,"v":1,"verb":"RUN"}"#,
                "eb1a561566f863c5b8229556deaa275aee088c2908187daf94c1a799",
            ),
            (
                job("ARG", "k ['a', 1]"),
                Rendered { value: json!(["a", 1]), ..Rendered::default() },
                r#"{"extend":false,"key":"k","run_once":false,"stderr_arg":null,"stdout_arg":null,"timeout":600,"v":1,"value":["a",1],"verb":"ARG"}"#,
                "d0eabaf8b4515a39db9c13610f0845ae2bf7322936eb6fc15325c693",
            ),
            (
                job("WORKDIR", "--chown=0:0 --chmod=0777 /tmp/x"),
                Rendered { text: "/tmp/x".into(), ..Rendered::default() },
                r#"{"group":"0","mode":511,"owner":"0","path":"/tmp/x","run_once":false,"stderr_arg":null,"stdout_arg":null,"timeout":600,"v":1,"verb":"WORKDIR"}"#,
                "338f9e686967285493f9f388a0ffde6dbe71493082eb45f99ab5660e",
            ),
            (
                job("COPY", "--chown=0 --chmod=0644 Cargo.toml /tmp/y"),
                Rendered { files: vec![("/tmp/y".into(), "d".repeat(56))], ..Rendered::default() },
                r#"{"blueprint":false,"files":[{"dest":"/tmp/y","sha3":"dddddddddddddddddddddddddddddddddddddddddddddddddddddddd"}],"group":null,"mode":420,"owner":"0","run_once":false,"stderr_arg":null,"stdout_arg":null,"timeout":600,"v":1,"verb":"COPY"}"#,
                "153715984cefea5de4e23cfb5e812dc429c58b99396f941bf0f991dd",
            ),
            (
                job("CACHEEVICT", "--timeout 30 all"),
                Rendered::default(),
                r#"{"run_once":false,"stderr_arg":null,"stdout_arg":null,"tag":"all","timeout":30,"v":1,"verb":"CACHEEVICT"}"#,
                "0de06a16d127915e3b66446e3df9e41ad9a006dc51f6c431f38024f9",
            ),
        ];
        for (job, rendered, text, golden) in cases {
            assert_eq!(hash(text), golden, "hash of {text}");
            assert_eq!(compute(&job, &rendered), golden, "{} {:?}", job.verb, job.work);
        }
    }

    #[test]
    fn what_changes_the_fingerprint() {
        let run = job("RUN", "echo a");
        let base = compute(&run, &Rendered { text: "echo a".into(), ..Rendered::default() });
        assert_ne!(base, compute(&run, &Rendered { text: "echo b".into(), ..Rendered::default() }));
        let env = json!({"x": "1"}).as_object().unwrap().clone();
        assert_ne!(base, compute(&run, &Rendered { text: "echo a".into(), env, ..Rendered::default() }));
        let as_root = Rendered { text: "echo a".into(), run_as: Some("root".into()), ..Rendered::default() };
        assert_ne!(base, compute(&run, &as_root));
        let mut skip = job("RUN", "--skip-cache echo a");
        skip.name = Some("named".into());
        skip.id = 7;
        assert_eq!(base, compute(&skip, &Rendered { text: "echo a".into(), ..Rendered::default() }));
        assert_ne!(
            base,
            compute(&job("RUN", "--run-once echo a"), &Rendered { text: "echo a".into(), ..Rendered::default() })
        );
        let copy = job("COPY", "Cargo.toml /tmp/y");
        let one = compute(&copy, &Rendered { files: vec![("/tmp/y".into(), "a".repeat(56))], ..Rendered::default() });
        assert_ne!(
            one,
            compute(&copy, &Rendered { files: vec![("/tmp/y".into(), "b".repeat(56))], ..Rendered::default() })
        );
    }
}
