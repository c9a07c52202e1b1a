//! Orchestration files, in Directord's format exactly.
//!
//! A file is a list of entries; each entry has optional `name`, `targets`, `assign` (which
//! overrides `targets`), `async` (a bool or a yes/no string), and a required `jobs` list. A job
//! is a mapping of one verb, whose value is the argument string (scalars are coerced to
//! strings: `REBOOT: 5` is `"5"`), and the optional keys `name`, `vars` and `assign`, in any
//! order. Verbs are matched without regard to case and kept upper-case.
//!
//! Unlike Directord, nothing written is ignored: an unknown key in an entry or a job, or a
//! second verb in one job, is an error at its line and column with a did-you-mean.
//!
//! This module checks shape and verb names only; what a verb's arguments mean, and whether the
//! targets exist, is the plan's business.

use crate::catalog::portion::Portion;
use crate::catalog::yaml::{child, scalar_text, Document, Seg};
use crate::error::Error;
use serde_json::{Map, Value};
use std::path::Path;

/// The keys of an entry.
pub(crate) const ENTRY_KEYS: &[&str] =
    &["name", "targets", "assign", "async", "become", "become_user", "serial", "jobs"];

/// The keys a job has beside its one verb.
pub(crate) const JOB_KEYS: &[&str] = &["name", "vars", "assign", "become", "become_user"];

#[derive(Debug, Clone)]
pub struct Orchestration {
    pub doc: Document,
    pub entries: Vec<Entry>,
}

/// A name given in `targets` or `assign`, with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRef {
    pub name: String,
    pub path: Vec<Seg>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Option<String>,
    /// `assign` if present, else `targets`; `None` means every node.
    pub targets: Option<Vec<TargetRef>>,
    pub is_async: bool,
    /// `become` and `become_user` for the entry's jobs (see [`crate::catalog::account`]).
    pub becomes: BecomeSpec,
    /// `serial`: the run takes its nodes in batches of this size ([`crate::plan::batch`]).
    pub serial: Option<Portion>,
    pub jobs: Vec<JobSpec>,
    pub path: Vec<Seg>,
}

#[derive(Debug, Clone)]
pub struct JobSpec {
    pub verb: String,
    pub args: String,
    pub name: Option<String>,
    pub vars: Map<String, Value>,
    pub assign: Option<Vec<TargetRef>>,
    /// The job's own `become` and `become_user`, over its entry's.
    pub becomes: BecomeSpec,
    pub path: Vec<Seg>,
}

/// `become` and `become_user` as an entry or a job wrote them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BecomeSpec {
    pub enabled: Option<bool>,
    pub user: Option<String>,
}

impl BecomeSpec {
    fn read(doc: &Document, path: &[Seg], map: &Map<String, Value>) -> Result<Self, Error> {
        let user = match map.get("become_user") {
            None | Some(Value::Null) => None,
            Some(v) => match scalar_text(v) {
                Some(u) if crate::catalog::is_word(&u) => Some(u),
                _ => {
                    return Err(doc
                        .error_at(&child(path, "become_user"), "`become_user` must be a user name")
                        .hint("e.g. `become_user: postgres`"))
                }
            },
        };
        Ok(BecomeSpec { enabled: crate::catalog::fields::bool_field(doc, path, map, "become")?, user })
    }

    /// `self` (a job's) over `under` (its entry's).
    pub fn over(&self, under: &BecomeSpec) -> BecomeSpec {
        BecomeSpec { enabled: self.enabled.or(under.enabled), user: self.user.clone().or(under.user.clone()) }
    }
}

impl Orchestration {
    pub fn load(path: &Path) -> Result<Self, Error> {
        Self::from_document(Document::load(path)?)
    }

    /// `exec --verb V ARGS`: one entry with one job, built from the command line (its nodes
    /// are the selection's: `--target` and `--restrict`).
    pub fn command_line(verb: &str, args: &[String]) -> Result<Self, Error> {
        let mut entry = Map::new();
        let mut job = Map::new();
        job.insert(verb.to_string(), Value::String(args.join(" ")));
        // Named, so the history lists the job's entry as `exec`, not as a bare hash.
        entry.insert("name".into(), Value::String("exec".into()));
        entry.insert("jobs".into(), serde_json::json!([job]));
        Self::from_document(Document::synthetic("command line", serde_json::json!([entry])))
    }

    pub fn from_document(doc: Document) -> Result<Self, Error> {
        let list = match &doc.root {
            Value::Array(list) => list,
            Value::Null => {
                return Err(doc
                    .error_at(&[], "the orchestration is empty")
                    .hint("an orchestration is a list of entries, e.g. `- jobs: [{RUN: uptime}]`"))
            }
            _ => {
                return Err(doc
                    .error_at(&[], "an orchestration must be a list of entries")
                    .hint("start each entry with `- `, e.g. `- jobs: [{RUN: uptime}]`"))
            }
        };
        let mut entries = Vec::new();
        for (i, item) in list.iter().enumerate() {
            let path = vec![Seg::Index(i)];
            let Value::Object(map) = item else {
                return Err(doc
                    .error_at(&path, format!("entry {} must be a mapping with `jobs`", i + 1))
                    .hint("e.g. `- jobs: [{RUN: uptime}]`"));
            };
            entries.push(entry(&doc, path, i, map)?);
        }
        Ok(Orchestration { doc, entries })
    }
}

fn entry(doc: &Document, path: Vec<Seg>, index: usize, map: &Map<String, Value>) -> Result<Entry, Error> {
    let at = |key: &str| child(&path, key);
    crate::catalog::fields::check_keys(doc, &path, map, ENTRY_KEYS, "entry")?;
    let name = name_field(doc, &path, map)?;
    let targets = match map.get("assign") {
        Some(v) if !v.is_null() => Some(targets(doc, at("assign"), v, "assign")?),
        _ => match map.get("targets") {
            Some(v) if !v.is_null() => Some(targets(doc, at("targets"), v, "targets")?),
            _ => None,
        },
    };
    let is_async = crate::catalog::fields::bool_field(doc, &path, map, "async")?.unwrap_or(false);
    let becomes = BecomeSpec::read(doc, &path, map)?;
    let serial = match map.get("serial") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(Portion::parse(&text).map_err(|e| {
                doc.error_at(&at("serial"), format!("`serial: {text}`: {e}"))
                    .hint("`serial: 2` runs the nodes two at a time; `serial: 25%` a quarter of them at a time")
            })?)
        }
    };
    let jobs = match map.get("jobs") {
        Some(Value::Array(jobs)) if !jobs.is_empty() => jobs,
        Some(Value::Array(_)) => {
            return Err(doc
                .error_at(&at("jobs"), format!("entry {} has an empty `jobs` list", index + 1))
                .hint("give it at least one job, e.g. `- RUN: uptime`"))
        }
        None | Some(Value::Null) => {
            return Err(doc
                .error_at(&path, format!("entry {} has no `jobs`", index + 1))
                .hint("every entry needs a `jobs:` list, e.g. `jobs: [{RUN: uptime}]`"))
        }
        Some(_) => {
            return Err(doc
                .error_at(&at("jobs"), "`jobs` must be a list of jobs")
                .hint("write each job as `- VERB: arguments`"))
        }
    };
    let mut specs = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        specs.push(job_spec(doc, child(&at("jobs"), j), index, j, job)?);
    }
    Ok(Entry { name, targets, is_async, becomes, serial, jobs: specs, path })
}

/// An entry's or a job's optional `name`: any scalar, as text.
fn name_field(doc: &Document, path: &[Seg], map: &Map<String, Value>) -> Result<Option<String>, Error> {
    match map.get("name") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            scalar_text(v).map(Some).ok_or_else(|| doc.error_at(&child(path, "name"), "`name` must be a string"))
        }
    }
}

fn targets(doc: &Document, path: Vec<Seg>, v: &Value, key: &str) -> Result<Vec<TargetRef>, Error> {
    let Value::Array(items) = v else {
        return Err(doc
            .error_at(&path, format!("`{key}` must be a list of node names"))
            .hint(format!("write `{key}: [web1, web2]`")));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let p = child(&path, i);
            match item {
                Value::String(_) | Value::Number(_) => {
                    Ok(TargetRef { name: scalar_text(item).unwrap_or_default(), path: p })
                }
                _ => Err(doc.error_at(&p, format!("`{key}` items must be node names"))),
            }
        })
        .collect()
}

fn job_spec(doc: &Document, path: Vec<Seg>, entry: usize, index: usize, job: &Value) -> Result<JobSpec, Error> {
    let what = format!("job {} of entry {}", index + 1, entry + 1);
    let Value::Object(map) = job else {
        return Err(doc
            .error_at(&path, format!("{what} must be a mapping like `RUN: command`"))
            .hint("write each job as `- VERB: arguments`"));
    };
    let at = |key: &str| child(&path, key);
    let name = name_field(doc, &path, map)?;
    let vars = match map.get("vars") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(doc.error_at(&at("vars"), "`vars` must be a mapping").hint("e.g. `vars: {timeout: 30}`"))
        }
    };
    let assign = match map.get("assign") {
        None | Some(Value::Null) => None,
        Some(v) => Some(targets(doc, at("assign"), v, "assign")?),
    };
    let becomes = BecomeSpec::read(doc, &path, map)?;
    let mut verbs = map.iter().filter(|(k, _)| !JOB_KEYS.contains(&k.as_str()));
    let Some((key, value)) = verbs.next() else {
        return Err(doc
            .error_at(&path, format!("{what} has no verb"))
            .hint("write the job as `- RUN: command` (or another verb)"));
    };
    let known = |k: &str| crate::verb::known(&k.to_ascii_uppercase());
    // A job is one verb and the keys beside it: anything else is a typo or a second job.
    if let Some((other, _)) = verbs.next() {
        let (first, second) = (key.as_str(), other.as_str());
        let err = match (known(first), known(second)) {
            (true, true) => doc
                .error_at(
                    &child(&path, Seg::KeyName(other.clone())),
                    format!("{what} has two verbs, `{first}` and `{second}`"),
                )
                .hint(format!("a job has one verb: make `{second}` a job of its own (`- {second}: ...`)")),
            (false, _) => return Err(unknown_job_key(doc, &path, first, &what)),
            (true, false) => return Err(unknown_job_key(doc, &path, second, &what)),
        };
        return Err(err);
    }
    let verb = key.to_ascii_uppercase();
    if !known(key) {
        let err = doc.error_at(&child(&path, Seg::KeyName(key.clone())), format!("unknown verb `{key}` in {what}"));
        return Err(match crate::error::suggest(&verb, crate::verb::known_names()) {
            Some(s) => err.hint(format!("did you mean `{s}`?")),
            None => err.hint(format!("known verbs: {}", crate::verb::known_names().collect::<Vec<_>>().join(", "))),
        });
    }
    let args = scalar_text(value).ok_or_else(|| {
        doc.error_at(&at(key), format!("the value of `{key}` in {what} must be a string, not a list or mapping"))
            .hint(format!("quote it: `{key}: \"...\"`"))
    })?;
    Ok(JobSpec { verb, args, name, vars, assign, becomes, path })
}

/// A key beside a job's verb that is neither a verb nor a job key.
fn unknown_job_key(doc: &Document, path: &[Seg], key: &str, what: &str) -> Error {
    let at = child(path, Seg::KeyName(key.to_string()));
    let err = doc.error_at(&at, format!("unknown key `{key}` in {what}"));
    let keys = format!("a job has one verb and the keys {}", JOB_KEYS.join(", "));
    match crate::catalog::fields::suggest_key(key, JOB_KEYS)
        .or_else(|| crate::error::suggest(&key.to_ascii_uppercase(), crate::verb::known_names()))
    {
        Some(s) => err.hint(format!("did you mean `{s}`? {keys}")),
        None => err.hint(keys),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Orchestration, Error> {
        Orchestration::from_document(Document::parse(Path::new("o.yaml"), text.to_string())?)
    }

    #[test]
    fn directord_shape_parses_with_assign_and_coercion() {
        let o = parse("- name: p\n  targets: [a]\n  assign: [b]\n  async: 'yes'\n  jobs:\n    - name: j\n      vars: {timeout: 3}\n      REBOOT: 5\n    - run: echo hi\n").unwrap();
        let e = &o.entries[0];
        assert_eq!(e.targets.as_ref().unwrap()[0].name, "b");
        assert!(e.is_async);
        assert_eq!((e.jobs[0].verb.as_str(), e.jobs[0].args.as_str()), ("REBOOT", "5"));
        assert_eq!(e.jobs[0].vars["timeout"], 3);
        assert_eq!((e.jobs[1].verb.as_str(), e.jobs[1].args.as_str()), ("RUN", "echo hi"));
    }

    #[test]
    fn become_is_read_before_or_after_the_verb_and_at_the_entry() {
        let o = parse("- become: yes\n  become_user: postgres\n  jobs:\n    - RUN: whoami\n      become: false\n    - become_user: app\n      RUN: id\n    - RUN: id\n").unwrap();
        let e = &o.entries[0];
        assert_eq!(e.becomes, BecomeSpec { enabled: Some(true), user: Some("postgres".into()) });
        let folded: Vec<BecomeSpec> = e.jobs.iter().map(|j| j.becomes.over(&e.becomes)).collect();
        assert_eq!(folded[0], BecomeSpec { enabled: Some(false), user: Some("postgres".into()) });
        assert_eq!(folded[1], BecomeSpec { enabled: Some(true), user: Some("app".into()) });
        assert_eq!(folded[2], BecomeSpec { enabled: Some(true), user: Some("postgres".into()) });
    }

    #[test]
    fn every_corpus_orchestration_parses() {
        let dir = Path::new("tests/fixtures/corpus/orchestrations");
        let mut count = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                Orchestration::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                count += 1;
            }
        }
        assert!(count >= 20, "only {count} files");
    }

    #[test]
    fn error_texts() {
        let cases = [
            ("- jobs:\n    - RUNN: echo\n", "error: o.yaml:2:7: unknown verb `RUNN` in job 1 of entry 1\n  hint: did you mean `RUN`?"),
            ("- name: x\n", "error: o.yaml:1:3: entry 1 has no `jobs`\n  hint: every entry needs a `jobs:` list, e.g. `jobs: [{RUN: uptime}]`"),
            ("jobs: []\n", "error: o.yaml:1:1: an orchestration must be a list of entries\n  hint: start each entry with `- `, e.g. `- jobs: [{RUN: uptime}]`"),
            ("- jobs:\n  - RUN: [a]\n", "error: o.yaml:2:10: the value of `RUN` in job 1 of entry 1 must be a string, not a list or mapping\n  hint: quote it: `RUN: \"...\"`"),
            ("- async: maybe\n  jobs: [{RUN: x}]\n", "error: o.yaml:1:10: `async` must be true or false, not `maybe`\n  hint: yes/no, true/false, on/off and 1/0 are accepted"),
            ("- jobs:\n  - name: only\n", "error: o.yaml:2:5: job 1 of entry 1 has no verb\n  hint: write the job as `- RUN: command` (or another verb)"),
            ("- name: x\n  target: [tb1]\n  jobs: [{RUN: x}]\n", "error: o.yaml:2:3: unknown key `target` in entry\n  hint: did you mean `targets`? entry keys are: name, targets, assign, async, become, become_user, serial, jobs"),
            ("- hosts: all\n  jobs: [{RUN: x}]\n", "error: o.yaml:1:3: unknown key `hosts` in entry\n  hint: did you mean `targets`? entry keys are: name, targets, assign, async, become, become_user, serial, jobs"),
            ("- when: x\n  jobs: [{RUN: x}]\n", "error: o.yaml:1:3: unknown key `when` in entry\n  hint: entry keys are: name, targets, assign, async, become, become_user, serial, jobs"),
            ("- jobs:\n  - RUN: echo one\n    ECHO: two\n", "error: o.yaml:3:5: job 1 of entry 1 has two verbs, `RUN` and `ECHO`\n  hint: a job has one verb: make `ECHO` a job of its own (`- ECHO: ...`)"),
            ("- jobs:\n  - RUN: echo one\n    nmae: x\n", "error: o.yaml:3:5: unknown key `nmae` in job 1 of entry 1\n  hint: did you mean `name`? a job has one verb and the keys name, vars, assign, become, become_user"),
            ("- jobs:\n  - nmae: x\n    RUN: echo one\n", "error: o.yaml:2:5: unknown key `nmae` in job 1 of entry 1\n  hint: did you mean `name`? a job has one verb and the keys name, vars, assign, become, become_user"),
            ("- jobs:\n  - RUN: whoami\n    become: maybe\n", "error: o.yaml:3:13: `become` must be true or false, not `maybe`\n  hint: yes/no, true/false, on/off and 1/0 are accepted"),
            ("- become_user: [a]\n  jobs: [{RUN: x}]\n", "error: o.yaml:1:16: `become_user` must be a user name\n  hint: e.g. `become_user: postgres`"),
            ("- jobs:\n  - RUN: whoami\n    becom: true\n", "error: o.yaml:3:5: unknown key `becom` in job 1 of entry 1\n  hint: did you mean `become`? a job has one verb and the keys name, vars, assign, become, become_user"),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), want, "for {text:?}");
        }
    }
}
