//! The plan: catalog + orchestrations + selection → which job runs on which node.
//!
//! Pure and synchronous: nothing here touches the network or the clock. It resolves each
//! entry's targets against the catalog (node names first, then hosts), applies `--restrict`,
//! parses each job's options the way Directord does (a known option token is taken out of the
//! argument string wherever it stands; `vars` then override), and gives every job its
//! fingerprint. Every mistake becomes an input error with file:line:column.
//!
//! Unlike Directord, a RUN command keeps its own whitespace and newlines: Directord split the
//! string on whitespace and joined it with single spaces, which broke multi-line scripts.

use crate::catalog::orchestration::{JobSpec, Orchestration, TargetRef};
use crate::catalog::yaml::{child, Document, Seg};
use crate::catalog::{Catalog, Node};
use crate::error::Error;
use serde_json::Value;
use sha3::{Digest, Sha3_224};
use std::time::Duration;

/// Directord's default job timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Verbs the executor can run today; the others Directord knows are refused at plan time.
pub const SUPPORTED_VERBS: &[&str] = &["RUN"];

/// What a job does on a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    Run { command: String, retry: u32, no_block: bool },
}

#[derive(Debug, Clone)]
pub struct Job {
    /// Position in the whole run, from 0; stable across nodes.
    pub id: usize,
    /// Index of the entry (across all files) this job belongs to.
    pub entry: usize,
    pub name: Option<String>,
    pub verb: String,
    pub work: Work,
    pub timeout: Duration,
    pub run_once: bool,
    pub skip_cache: bool,
    pub fingerprint: String,
    /// Indices into [`Plan::nodes`].
    pub targets: Vec<usize>,
}

impl Job {
    /// How the job is shown to a person: its name, or its verb and arguments.
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match &self.work {
            Work::Run { command, .. } => {
                let one_line = command.split_whitespace().collect::<Vec<_>>().join(" ");
                let short: String = one_line.chars().take(60).collect();
                if short.len() < one_line.len() {
                    format!("{} {short}…", self.verb)
                } else {
                    format!("{} {short}", self.verb)
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlannedEntry {
    pub name: Option<String>,
    pub is_async: bool,
    pub jobs: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Only the nodes some job runs on, in catalog order.
    pub nodes: Vec<Node>,
    pub entries: Vec<PlannedEntry>,
    pub jobs: Vec<Job>,
}

/// What the user asked for beyond the files.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--restrict`: node names, group names or globs; empty means no restriction.
    pub restrict: Vec<String>,
}

impl Plan {
    pub fn build(catalog: &Catalog, orchestrations: &[Orchestration], selection: &Selection) -> Result<Plan, Error> {
        let allowed = restrict_mask(catalog, &selection.restrict)?;
        let mut jobs = Vec::new();
        let mut entries = Vec::new();
        for orch in orchestrations {
            for entry in &orch.entries {
                let entry_targets = match &entry.targets {
                    Some(t) => resolve(catalog, &orch.doc, t)?,
                    None => (0..catalog.nodes.len()).collect(),
                };
                let mut planned = PlannedEntry { name: entry.name.clone(), is_async: entry.is_async, jobs: Vec::new() };
                for spec in &entry.jobs {
                    let mut job = plan_job(&orch.doc, spec, jobs.len(), entries.len())?;
                    let targets = match &spec.assign {
                        Some(a) => resolve(catalog, &orch.doc, a)?,
                        None => entry_targets.clone(),
                    };
                    let mut targets: Vec<usize> = targets.into_iter().filter(|&i| allowed[i]).collect();
                    if job.run_once {
                        targets.truncate(1);
                    }
                    job.targets = targets;
                    planned.jobs.push(job.id);
                    jobs.push(job);
                }
                entries.push(planned);
            }
        }
        // Keep only the nodes something runs on, and renumber targets to match.
        let mut used = vec![false; catalog.nodes.len()];
        for job in &jobs {
            for &t in &job.targets {
                used[t] = true;
            }
        }
        let mut renumber = vec![usize::MAX; catalog.nodes.len()];
        let mut nodes = Vec::new();
        for (i, node) in catalog.nodes.iter().enumerate() {
            if used[i] {
                renumber[i] = nodes.len();
                nodes.push(node.clone());
            }
        }
        for job in &mut jobs {
            for t in &mut job.targets {
                *t = renumber[*t];
            }
        }
        Ok(Plan { nodes, entries, jobs })
    }

    /// The jobs of `node` in the order its lanes will run them: one lane for every non-async
    /// entry in order (Directord's single per-node queue), one lane per async entry.
    pub fn lanes(&self, node: usize) -> Vec<Vec<Vec<usize>>> {
        let mut general: Vec<Vec<usize>> = Vec::new();
        let mut lanes = Vec::new();
        for entry in &self.entries {
            let jobs: Vec<usize> = entry.jobs.iter().copied().filter(|&j| self.jobs[j].targets.contains(&node)).collect();
            if jobs.is_empty() {
                continue;
            }
            if entry.is_async {
                lanes.push(vec![jobs]);
            } else {
                general.push(jobs);
            }
        }
        if !general.is_empty() {
            lanes.insert(0, general);
        }
        lanes
    }

    /// How many (job, node) pairs the run holds.
    pub fn total_tasks(&self) -> usize {
        self.jobs.iter().map(|j| j.targets.len()).sum()
    }
}

/// Which catalog nodes `--restrict` lets through.
fn restrict_mask(catalog: &Catalog, restrict: &[String]) -> Result<Vec<bool>, Error> {
    if restrict.is_empty() {
        return Ok(vec![true; catalog.nodes.len()]);
    }
    let mut mask = vec![false; catalog.nodes.len()];
    for pattern in restrict {
        let glob = glob::Pattern::new(pattern).map_err(|e| {
            Error::input(format!("--restrict `{pattern}` is not a valid pattern: {}", e.msg)).hint("use node names, group names or globs like `web*`")
        })?;
        let mut hit = false;
        for (i, node) in catalog.nodes.iter().enumerate() {
            if node.name == *pattern || node.groups.iter().any(|g| g == pattern) || glob.matches(&node.name) {
                mask[i] = true;
                hit = true;
            }
        }
        if !hit {
            let groups = catalog.groups();
            let names = catalog.nodes.iter().map(|n| n.name.as_str()).chain(groups.iter().map(|g| g.as_str()));
            let mut err = Error::input(format!("--restrict `{pattern}` matches no node or group in the catalog"));
            err = match crate::suggest(pattern, names) {
                Some(s) => err.hint(format!("did you mean `{s}`? the catalog has {}", catalog.names_hint())),
                None => err.hint(format!("the catalog has {}", catalog.names_hint())),
            };
            return Err(err);
        }
    }
    Ok(mask)
}

/// Catalog indices of the named targets: a node name first, then a host.
fn resolve(catalog: &Catalog, doc: &Document, targets: &[TargetRef]) -> Result<Vec<usize>, Error> {
    let mut out = Vec::new();
    for t in targets {
        let found = catalog
            .nodes
            .iter()
            .position(|n| n.name == t.name)
            .map(|i| vec![i])
            .unwrap_or_else(|| catalog.nodes.iter().enumerate().filter(|(_, n)| n.host == t.name).map(|(i, _)| i).collect());
        if found.is_empty() {
            let err = doc.error_at(&t.path, format!("unknown target `{}`", t.name));
            return Err(match crate::suggest(&t.name, catalog.nodes.iter().map(|n| n.name.as_str())) {
                Some(s) => err.hint(format!("did you mean `{s}`? targets are catalog node names or hosts; the catalog has {}", catalog.names_hint())),
                None => err.hint(format!("targets are catalog node names or hosts; the catalog has {}", catalog.names_hint())),
            });
        }
        for i in found {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// Options every verb takes, and RUN's own; `true` when the option takes a value.
const RUN_OPTIONS: &[(&str, bool)] = &[
    ("--skip-cache", false),
    ("--run-once", false),
    ("--force-lock", false),
    ("--timeout", true),
    ("--stdout-arg", true),
    ("--stderr-arg", true),
    ("--no-block", false),
    ("--retry", true),
];

/// An option taken out of a job's arguments, with its value if it takes one.
type TakenOption = (String, Option<String>);

/// Takes the known option tokens out of `args` (anywhere, as Directord's argparse does) and
/// returns them with what is left, whose own spacing and newlines are kept.
fn split_options(args: &str, known: &[(&str, bool)]) -> Result<(Vec<TakenOption>, String), String> {
    // Tokens with their byte spans.
    let mut tokens: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in args.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                tokens.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        tokens.push((s, args.len()));
    }
    let mut options = Vec::new();
    let mut rest = String::new();
    let mut i = 0;
    while i < tokens.len() {
        let (s, e) = tokens[i];
        let tok = &args[s..e];
        let (flag, inline) = match tok.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (tok, None),
        };
        if let Some(&(name, takes_value)) = known.iter().find(|(n, _)| *n == flag) {
            let value = if takes_value {
                match inline {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        match tokens.get(i) {
                            Some(&(vs, ve)) => Some(args[vs..ve].to_string()),
                            None => return Err(format!("option `{name}` needs a value")),
                        }
                    }
                }
            } else if inline.is_some() {
                return Err(format!("option `{name}` takes no value"));
            } else {
                None
            };
            options.push((name.to_string(), value));
        } else {
            if !rest.is_empty() {
                // The spacing right before this token is kept; spacing before a removed
                // option goes with it.
                rest.push_str(&args[tokens[i - 1].1..s]);
            }
            rest.push_str(tok);
        }
        i += 1;
    }
    Ok((options, rest))
}

fn plan_job(doc: &Document, spec: &JobSpec, id: usize, entry_index: usize) -> Result<Job, Error> {
    if !SUPPORTED_VERBS.contains(&spec.verb.as_str()) {
        return Err(doc
            .error_at(&spec.path, format!("verb `{}` is not supported yet", spec.verb))
            .hint(format!("director runs {} today; the other Directord verbs are on the way", SUPPORTED_VERBS.join(", "))));
    }
    let verb_path = child(&spec.path, doc_key(doc, &spec.path, &spec.verb));
    let (options, command) = split_options(&spec.args, RUN_OPTIONS).map_err(|m| doc.error_at(&verb_path, m))?;
    let mut timeout = DEFAULT_TIMEOUT;
    let mut run_once = false;
    let mut skip_cache = false;
    let mut retry = 1u32;
    let mut no_block = false;
    let number = |name: &str, v: &str| -> Result<u64, Error> {
        v.parse::<u64>().map_err(|_| doc.error_at(&verb_path, format!("option `{name}` needs a whole number, not `{v}`")))
    };
    for (name, value) in &options {
        let v = value.as_deref().unwrap_or("");
        match name.as_str() {
            "--timeout" => timeout = Duration::from_secs(number(name, v)?),
            "--retry" => retry = number(name, v)?.max(1) as u32,
            "--run-once" => run_once = true,
            "--skip-cache" => skip_cache = true,
            "--no-block" => no_block = true,
            _ => {}
        }
    }
    for (key, value) in &spec.vars {
        let at = child(&child(&spec.path, "vars"), key.as_str());
        let as_u64 = || match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let as_bool = || match value {
            Value::Bool(b) => Some(*b),
            _ => None,
        };
        match key.as_str() {
            "timeout" => timeout = Duration::from_secs(as_u64().ok_or_else(|| doc.error_at(&at, "`timeout` must be a whole number of seconds"))?),
            "retry" => retry = as_u64().ok_or_else(|| doc.error_at(&at, "`retry` must be a whole number"))?.max(1) as u32,
            "run_once" => run_once = as_bool().ok_or_else(|| doc.error_at(&at, "`run_once` must be true or false"))?,
            "skip_cache" => skip_cache = as_bool().ok_or_else(|| doc.error_at(&at, "`skip_cache` must be true or false"))?,
            "no_block" => no_block = as_bool().ok_or_else(|| doc.error_at(&at, "`no_block` must be true or false"))?,
            // Directord sets any other var on the parsed arguments; the verbs built so far
            // read none of them.
            _ => {}
        }
    }
    if command.trim().is_empty() {
        return Err(doc.error_at(&verb_path, "RUN needs a command").hint("e.g. `RUN: uptime`"));
    }
    let work = Work::Run { command, retry, no_block };
    let fingerprint = fingerprint(&spec.verb, &work, timeout, run_once);
    Ok(Job { id, entry: entry_index, name: spec.name.clone(), verb: spec.verb.clone(), work, timeout, run_once, skip_cache, fingerprint, targets: Vec::new() })
}

/// The key the verb was written with (it may be lower-case in the file).
fn doc_key(doc: &Document, path: &[Seg], verb: &str) -> String {
    let mut node = &doc.root;
    for seg in path {
        node = match seg {
            Seg::Index(i) => &node[*i],
            Seg::Key(k) | Seg::KeyName(k) => &node[k.as_str()],
        };
    }
    node.as_object()
        .and_then(|m| m.keys().find(|k| k.eq_ignore_ascii_case(verb)).cloned())
        .unwrap_or_else(|| verb.to_string())
}

/// sha3-224 over a canonical JSON encoding of what decides what the job does: a JSON object
/// with sorted keys and no whitespace. Provisional: the remote cache (a later issue) pins it.
pub fn fingerprint(verb: &str, work: &Work, timeout: Duration, run_once: bool) -> String {
    let body = match work {
        Work::Run { command, retry, no_block } => serde_json::json!({
            "command": command, "no_block": no_block, "retry": retry, "run_once": run_once,
            "timeout": timeout.as_secs(), "verb": verb, "v": 1,
        }),
    };
    // serde_json with preserve_order keeps insertion order; the literal above is sorted.
    let text = serde_json::to_string(&body).expect("json");
    Sha3_224::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn catalog() -> Catalog {
        let text = "groups: {web: {}, db: {}}\nnodes:\n  - {name: web1, host: 10.0.0.1, groups: [web]}\n  - {name: web2, host: 10.0.0.2, groups: [web]}\n  - {name: db1, host: 10.0.0.3, groups: [db]}\n";
        Catalog::from_documents(vec![Document::parse(Path::new("c.yaml"), text.into()).unwrap()]).unwrap()
    }

    fn plan(text: &str, restrict: &[&str]) -> Result<Plan, Error> {
        let o = Orchestration::from_document(Document::parse(Path::new("o.yaml"), text.into()).unwrap())?;
        Plan::build(&catalog(), &[o], &Selection { restrict: restrict.iter().map(|s| s.to_string()).collect() })
    }

    #[test]
    fn options_are_taken_out_anywhere_and_spacing_kept() {
        let (opts, rest) = split_options("ls -l --retry 3 /tmp", RUN_OPTIONS).unwrap();
        assert_eq!(opts, [("--retry".to_string(), Some("3".to_string()))]);
        assert_eq!(rest, "ls -l /tmp");
        let (opts, rest) = split_options("--timeout=5 echo 'a   b'\necho c", RUN_OPTIONS).unwrap();
        assert_eq!(opts, [("--timeout".to_string(), Some("5".to_string()))]);
        assert_eq!(rest, "echo 'a   b'\necho c");
        assert_eq!(split_options("echo --retry", RUN_OPTIONS).unwrap_err(), "option `--retry` needs a value");
    }

    #[test]
    fn targets_restrict_and_assign() {
        let p = plan("- targets: [web1, 10.0.0.3]\n  jobs:\n    - RUN: a\n    - RUN: b\n      assign: [web2]\n- jobs:\n    - RUN: --run-once c\n", &[]).unwrap();
        let names = |j: &Job| j.targets.iter().map(|&t| p.nodes[t].name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&p.jobs[0]), ["web1", "db1"]);
        assert_eq!(names(&p.jobs[1]), ["web2"]);
        assert_eq!(names(&p.jobs[2]), ["web1"]);
        let p = plan("- jobs: [{RUN: a}]\n", &["web*"]).unwrap();
        assert_eq!(p.nodes.len(), 2);
        let p = plan("- jobs: [{RUN: a}]\n", &["db"]).unwrap();
        assert_eq!(p.nodes[0].name, "db1");
    }

    #[test]
    fn lanes_put_async_entries_apart() {
        let p = plan("- jobs: [{RUN: a}, {RUN: b}]\n- async: true\n  jobs: [{RUN: c}]\n- jobs: [{RUN: d}]\n", &[]).unwrap();
        assert_eq!(p.lanes(0), vec![vec![vec![0, 1], vec![3]], vec![vec![2]]]);
    }

    #[test]
    fn error_texts() {
        let err = plan("- targets: [web9]\n  jobs: [{RUN: a}]\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:1:13: unknown target `web9`\n  hint: did you mean `web1`? targets are catalog node names or hosts; the catalog has web1, web2, db1");
        let err = plan("- jobs: [{RUN: a}]\n", &["mail*"]).unwrap_err();
        assert_eq!(err.to_string(), "error: --restrict `mail*` matches no node or group in the catalog\n  hint: the catalog has web1, web2, db1");
        let err = plan("- jobs:\n    - ARG: k v\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:2:7: verb `ARG` is not supported yet\n  hint: director runs RUN today; the other Directord verbs are on the way");
        let err = plan("- jobs:\n    - RUN: --timeout soon sleep 1\n", &[]).unwrap_err();
        assert_eq!(err.to_string(), "error: o.yaml:2:12: option `--timeout` needs a whole number, not `soon`");
    }

    #[test]
    fn fingerprint_depends_on_what_runs() {
        let a = fingerprint("RUN", &Work::Run { command: "echo a".into(), retry: 1, no_block: false }, DEFAULT_TIMEOUT, false);
        let b = fingerprint("RUN", &Work::Run { command: "echo b".into(), retry: 1, no_block: false }, DEFAULT_TIMEOUT, false);
        assert_ne!(a, b);
        assert_eq!(a.len(), 56);
    }
}
