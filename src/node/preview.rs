//! A plan (`--plan`): what a run would do on each node, and why, without doing it.
//!
//! The engine connects, starts the executors and reads each node's cache as a run does, then
//! takes every job in the order a run would: it renders and fingerprints it on the node, and
//! instead of running it decides whether a run would answer it from the cache. The verbs that
//! only change the in-memory cache (ARG, ENV, CACHEFILE, CACHEEVICT, QUERY, QUERY_WAIT) are
//! done in memory, so the jobs after them see what a run's would; nothing is saved, no command
//! runs, no file is written.
//!
//! This module owns the words of a plan: why a job would run. A fingerprint with no record on
//! the node is compared with the newest record of the same job ([`fingerprint::slot`]): the
//! [`fingerprint::parts`] that differ say what changed (a source file, an arg its templates
//! use, the envs, the rendered command, an option). A job that uses an arg a job before it
//! would capture (`--stdout-arg`, `--stderr-arg`) cannot be known before that job runs: it is
//! marked as depending on it.
//!
//! [`fingerprint::slot`]: crate::plan::fingerprint::slot
//! [`fingerprint::parts`]: crate::plan::fingerprint::Fingerprint::parts

use super::cache::{Expired, JobRecord};
use std::collections::{BTreeMap, BTreeSet};

/// The reason of a job that would run because nothing of it is recorded on the node.
pub(crate) const NEVER_RAN: &str = "never ran on this node";

/// A job that would run before the current one and captures args it cannot foresee.
#[derive(Debug, Clone)]
pub struct Pending {
    pub job: usize,
    pub label: String,
    pub captures: Vec<String>,
}

impl Pending {
    /// The reason of a job that uses one of the args `pending` would capture, if any does.
    pub fn blocking(pending: &[Pending], uses: &BTreeSet<String>) -> Option<String> {
        pending.iter().find(|p| p.captures.iter().any(|c| uses.contains(c))).map(|p| {
            let name = p.captures.iter().find(|c| uses.contains(*c)).map(String::as_str).unwrap_or_default();
            format!(
                "depends on a job that would run first: job {} `{}` captures the arg {name} it uses",
                p.job + 1,
                p.label
            )
        })
    }
}

/// Why a job whose fingerprint has no record on the node would run, given the newest record
/// of the same job (`before`) and its parts now.
pub(crate) fn why_new(now: &BTreeMap<String, String>, before: Option<&JobRecord>, expired: &Expired) -> String {
    let Some(before) = before.filter(|b| !b.parts.is_empty()) else { return NEVER_RAN.to_string() };
    let before = before.parts.map();
    let changed: Vec<&str> = now
        .keys()
        .chain(before.keys())
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| now.get(*k) != before.get(*k))
        .collect();
    let mut reasons = Vec::new();
    let mut files = Vec::new();
    for k in changed.iter().filter_map(|k| k.strip_prefix("file:")) {
        let key = format!("file:{k}");
        files.push(match (before.contains_key(&key), now.contains_key(&key)) {
            (true, true) => format!("the source of {k} changed"),
            (false, _) => format!("it now writes {k}"),
            (true, false) => format!("it no longer writes {k}"),
        });
    }
    reasons.extend(files);
    let mut args_changed = false;
    for name in changed.iter().filter_map(|k| k.strip_prefix("arg:")) {
        args_changed = true;
        let gone = now.get(&format!("arg:{name}")).is_none_or(String::is_empty);
        reasons.push(if expired.args.contains(name) {
            format!("the cached arg {name} it uses expired")
        } else if gone {
            format!("the arg {name} it uses is no longer set")
        } else {
            format!("the arg {name} it uses changed")
        });
    }
    if changed.contains(&"env") {
        reasons.push(if expired.envs.is_empty() {
            "the cached envs changed".to_string()
        } else {
            format!("cached envs expired ({})", expired.envs.iter().cloned().collect::<Vec<_>>().join(", "))
        });
    }
    let rendered = ["command", "path", "url", "remote", "local", "value", "text", "key", "tag", "item"];
    if !args_changed && changed.iter().any(|k| rendered.contains(k)) {
        reasons.push("the rendered command changed".to_string());
    }
    let options: Vec<&str> = changed
        .iter()
        .copied()
        .filter(|k| !k.contains(':') && *k != "env" && !rendered.contains(k))
        .filter(|k| *k != "files")
        .collect();
    if !options.is_empty() {
        reasons.push(format!("its options changed ({})", options.join(", ")));
    }
    if reasons.is_empty() {
        // Same parts, another fingerprint: an encoding change between versions.
        return NEVER_RAN.to_string();
    }
    reasons.join("; ")
}

/// The newest record of the job `slot` on the node.
pub(crate) fn newest<'a>(jobs: &'a BTreeMap<String, JobRecord>, slot: &str) -> Option<&'a JobRecord> {
    jobs.values().filter(|r| r.slot == slot).max_by_key(|r| r.at)
}

#[cfg(test)]
mod tests {
    use super::super::cache::Parts;
    use super::*;

    fn parts(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn record(items: &[(&str, &str)]) -> JobRecord {
        JobRecord { parts: Parts::of(&parts(items)), slot: "s".into(), ..JobRecord::default() }
    }

    #[test]
    fn says_what_changed() {
        let none = Expired::default();
        let now = parts(&[("command", "b"), ("arg:version", "2"), ("timeout", "1")]);
        assert_eq!(why_new(&now, None, &none), "never ran on this node");
        let before = record(&[("command", "a"), ("arg:version", "1"), ("timeout", "1")]);
        assert_eq!(why_new(&now, Some(&before), &none), "the arg version it uses changed");
        let before = record(&[("command", "a"), ("arg:version", "2"), ("timeout", "9")]);
        assert_eq!(why_new(&now, Some(&before), &none), "the rendered command changed; its options changed (timeout)");
        let gone = parts(&[("command", "b"), ("arg:version", ""), ("timeout", "1")]);
        let expired = Expired { args: ["version".to_string()].into(), ..Expired::default() };
        let before = record(&[("command", "a"), ("arg:version", "1"), ("timeout", "1")]);
        assert_eq!(why_new(&gone, Some(&before), &expired), "the cached arg version it uses expired");
        assert_eq!(why_new(&gone, Some(&before), &none), "the arg version it uses is no longer set");
        // Expired, and the catalog's default shows through.
        let default = parts(&[("command", "b"), ("arg:version", "3"), ("timeout", "1")]);
        assert_eq!(why_new(&default, Some(&before), &expired), "the cached arg version it uses expired");
        let files = parts(&[("file:/etc/a", "2"), ("file:/etc/c", "1"), ("mode", "x")]);
        let before = record(&[("file:/etc/a", "1"), ("file:/etc/b", "1"), ("mode", "x")]);
        assert_eq!(
            why_new(&files, Some(&before), &none),
            "the source of /etc/a changed; it no longer writes /etc/b; it now writes /etc/c"
        );
        let env = parts(&[("command", "a"), ("env", "2")]);
        let before = record(&[("command", "a"), ("env", "1")]);
        assert_eq!(why_new(&env, Some(&before), &none), "the cached envs changed");
        let expired = Expired { envs: ["PATH".to_string()].into(), ..Expired::default() };
        assert_eq!(why_new(&env, Some(&before), &expired), "cached envs expired (PATH)");
        // A record from before records kept their parts says only that it is new.
        assert_eq!(why_new(&env, Some(&JobRecord::default()), &none), "never ran on this node");
    }

    #[test]
    fn a_captured_arg_makes_later_users_depend() {
        let pending = vec![Pending { job: 2, label: "RUN hostname".into(), captures: vec!["host".into()] }];
        let uses: BTreeSet<String> = ["host".to_string()].into();
        assert_eq!(
            Pending::blocking(&pending, &uses).unwrap(),
            "depends on a job that would run first: job 3 `RUN hostname` captures the arg host it uses"
        );
        assert_eq!(Pending::blocking(&pending, &BTreeSet::new()), None);
    }
}
