//! The node cache: what a node remembers between runs, kept in the remote user's cache
//! directory (`~/.cache/director/cache.json`) and written atomically by the executor.
//!
//! It holds the fingerprints of the jobs that succeeded there (with what a cache hit must
//! restore: the args a `--stdout-arg`/`--stderr-arg` captured, and the files an ADD/COPY
//! wrote with their hashes), the last status of each entry ("parents"), and the cached args
//! and envs that templates and commands see. Args and envs expire after a TTL (12 hours by
//! default) judged by the node's clock; job results stay until evicted. A file that cannot be
//! read is replaced by an empty cache, never a crash: the jobs simply run again.
//!
//! Merging (ARG/ENV `--extend-args`, CACHEFILE, QUERY) merges mappings recursively and adds
//! list items that are not there yet, so loading the same file twice changes nothing
//! (Directord appended duplicates every time).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Version of the cache file's layout.
const LAYOUT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Node time of the success, seconds since the epoch.
    pub at: u64,
    pub verb: String,
    /// Args captured by `--stdout-arg`/`--stderr-arg`, restored on a cache hit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, Value>,
    /// ADD/COPY: (destination, sha3-224) of each file written; a hit checks they still match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, String)>,
    /// What the job printed when it ran (the last [`RECORDED_OUTPUT`] bytes): a hit shows it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Which job this was ([`crate::plan::fingerprint::slot`]), and the parts of its
    /// fingerprint ([`crate::plan::fingerprint::Fingerprint::parts`]): a plan compares them with a new
    /// fingerprint's to say what changed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slot: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, String>,
}

/// Bytes of a job's output its record keeps.
pub const RECORDED_OUTPUT: usize = 4 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub value: Value,
    pub at: u64,
    /// Set by `ARG --secret`/`ENV --secret`: every run masks this value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentRecord {
    pub status: String,
    pub at: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeCache {
    #[serde(default)]
    pub v: u32,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobRecord>,
    #[serde(default)]
    pub parents: BTreeMap<String, ParentRecord>,
    #[serde(default)]
    pub args: BTreeMap<String, Stored>,
    #[serde(default)]
    pub envs: BTreeMap<String, Stored>,
    /// What [`NodeCache::load`] dropped as expired (never written back).
    #[serde(skip)]
    pub expired: Expired,
}

/// The names of the args and envs dropped from a node's cache as expired when it was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    pub args: std::collections::BTreeSet<String>,
    pub envs: std::collections::BTreeSet<String>,
}

/// ARG or ENV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Args,
    Envs,
}

impl NodeCache {
    /// Reads the file's text; expired args and envs are dropped. The second value says why
    /// the text was not usable, if it was not.
    pub fn load(text: Option<&str>, now: u64, ttl: u64) -> (NodeCache, Option<String>) {
        let Some(text) = text else { return (NodeCache::default(), None) };
        match serde_json::from_str::<NodeCache>(text) {
            Ok(mut cache) if cache.v == LAYOUT => {
                let fresh = |s: &Stored| s.at.saturating_add(ttl) > now;
                let stale = |section: &BTreeMap<String, Stored>| {
                    section.iter().filter(|(_, s)| !fresh(s)).map(|(k, _)| k.clone()).collect()
                };
                cache.expired = Expired { args: stale(&cache.args), envs: stale(&cache.envs) };
                cache.args.retain(|_, s| fresh(s));
                cache.envs.retain(|_, s| fresh(s));
                (cache, None)
            }
            Ok(cache) => (
                NodeCache::default(),
                Some(format!("the node cache has layout {}, this director writes {LAYOUT}; starting afresh", cache.v)),
            ),
            Err(e) => (NodeCache::default(), Some(format!("the node cache is unreadable ({e}); starting afresh"))),
        }
    }

    pub fn to_text(&self) -> String {
        let mut copy = self.clone();
        copy.v = LAYOUT;
        serde_json::to_string(&copy).expect("cache serializes")
    }

    fn section(&mut self, kind: Kind) -> &mut BTreeMap<String, Stored> {
        match kind {
            Kind::Args => &mut self.args,
            Kind::Envs => &mut self.envs,
        }
    }

    /// The args as one mapping: the context templates are rendered with.
    pub fn args_value(&self) -> Value {
        Value::Object(self.args.iter().map(|(k, s)| (k.clone(), s.value.clone())).collect())
    }

    pub fn arg(&self, key: &str) -> Option<&Value> {
        self.args.get(key).map(|s| &s.value)
    }

    /// The envs as text, for the environment of commands and for fingerprints.
    pub fn env_map(&self) -> Map<String, Value> {
        self.envs.iter().map(|(k, s)| (k.clone(), Value::String(env_text(&s.value)))).collect()
    }

    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.envs.iter().map(|(k, s)| (k.clone(), env_text(&s.value))).collect()
    }

    /// Sets (or with `extend`, merges into) one arg or env; true if the cache changed. An
    /// unchanged value is refreshed once it is past half its TTL, so it does not expire
    /// while it is in use.
    pub fn set(&mut self, kind: Kind, key: &str, value: Value, extend: bool, now: u64, ttl: u64) -> bool {
        // Set again in this run: what it holds now did not expire.
        match kind {
            Kind::Args => self.expired.args.remove(key),
            Kind::Envs => self.expired.envs.remove(key),
        };
        let section = self.section(kind);
        let new = match (extend, section.get(key)) {
            (true, Some(old)) => merged(&old.value, value),
            _ => value,
        };
        match section.get_mut(key) {
            Some(old) if old.value == new => {
                if now.saturating_sub(old.at) > ttl / 2 {
                    old.at = now;
                    true
                } else {
                    false
                }
            }
            _ => {
                section.insert(key.to_string(), Stored { value: new, at: now, secret: false });
                true
            }
        }
    }

    /// Marks a stored arg or env secret; true if that changed it.
    pub fn mark_secret(&mut self, kind: Kind, key: &str) -> bool {
        match self.section(kind).get_mut(key) {
            Some(stored) if !stored.secret => {
                stored.secret = true;
                true
            }
            _ => false,
        }
    }

    /// The values stored as secret.
    pub fn secret_values(&self) -> impl Iterator<Item = &Value> {
        self.args.values().chain(self.envs.values()).filter(|s| s.secret).map(|s| &s.value)
    }

    /// Forgets what `tag` names; true if anything was there.
    pub fn evict(&mut self, tag: &str) -> bool {
        let had = !(self.jobs.is_empty() && self.parents.is_empty() && self.args.is_empty() && self.envs.is_empty());
        match tag {
            "all" => {
                let changed = had;
                *self = NodeCache::default();
                changed
            }
            "jobs" => !std::mem::take(&mut self.jobs).is_empty(),
            "parents" => !std::mem::take(&mut self.parents).is_empty(),
            "args" => !std::mem::take(&mut self.args).is_empty(),
            "envs" => !std::mem::take(&mut self.envs).is_empty(),
            "query" => self.args.remove("query").is_some(),
            fingerprint => self.jobs.remove(fingerprint).is_some(),
        }
    }
}

/// An env value as the text a command sees: strings as they are, anything else as JSON.
fn env_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `new` merged into `old`: mappings recursively, lists gain the items they lack, anything
/// else is replaced.
pub fn merged(old: &Value, new: Value) -> Value {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = a.clone();
            for (k, v) in b {
                let m = match out.get(&k) {
                    Some(existing) => merged(existing, v),
                    None => v,
                };
                out.insert(k, m);
            }
            Value::Object(out)
        }
        (Value::Array(a), Value::Array(b)) => {
            let mut out = a.clone();
            for item in b {
                if !out.contains(&item) {
                    out.push(item);
                }
            }
            Value::Array(out)
        }
        (_, new) => new,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TTL: u64 = 12 * 3600;

    #[test]
    fn args_expire_and_jobs_stay() {
        let mut c = NodeCache::default();
        assert!(c.set(Kind::Args, "a", json!(1), false, 1000, TTL));
        assert!(!c.set(Kind::Args, "a", json!(1), false, 1001, TTL));
        c.jobs.insert("f".into(), JobRecord { at: 1000, verb: "RUN".into(), ..JobRecord::default() });
        let text = c.to_text();
        let (fresh, why) = NodeCache::load(Some(&text), 1000 + TTL - 1, TTL);
        assert_eq!((fresh.arg("a"), why), (Some(&json!(1)), None));
        let (old, _) = NodeCache::load(Some(&text), 1000 + TTL, TTL);
        assert_eq!(old.arg("a"), None);
        assert_eq!(old.expired.args, ["a".to_string()].into());
        assert!(old.jobs.contains_key("f"));
        let (broken, why) = NodeCache::load(Some("{\"v\":1,"), 0, TTL);
        assert_eq!(broken, NodeCache::default());
        assert!(why.unwrap().starts_with("the node cache is unreadable"));
    }

    #[test]
    fn merging_is_idempotent() {
        let mut c = NodeCache::default();
        let file = json!({"list": ["a", "b"], "map": {"x": 1}});
        c.set(Kind::Args, "k", file.clone(), true, 0, TTL);
        assert!(!c.set(Kind::Args, "k", file, true, 1, TTL));
        assert!(c.set(Kind::Args, "k", json!({"list": ["c"], "map": {"y": 2}}), true, 2, TTL));
        assert_eq!(c.arg("k"), Some(&json!({"list": ["a", "b", "c"], "map": {"x": 1, "y": 2}})));
    }

    #[test]
    fn every_evict_tag_works() {
        let full = || {
            let mut c = NodeCache::default();
            c.set(Kind::Args, "query", json!({"n1": {}}), false, 0, TTL);
            c.set(Kind::Args, "a", json!(1), false, 0, TTL);
            c.set(Kind::Envs, "E", json!("x"), false, 0, TTL);
            c.jobs.insert("f".repeat(56), JobRecord::default());
            c.parents.insert("p".into(), ParentRecord { status: "ok".into(), at: 0 });
            c
        };
        for (tag, check) in [
            (
                "jobs",
                Box::new(|c: &NodeCache| c.jobs.is_empty() && !c.args.is_empty()) as Box<dyn Fn(&NodeCache) -> bool>,
            ),
            ("parents", Box::new(|c: &NodeCache| c.parents.is_empty() && !c.jobs.is_empty())),
            ("args", Box::new(|c: &NodeCache| c.args.is_empty() && !c.envs.is_empty())),
            ("envs", Box::new(|c: &NodeCache| c.envs.is_empty() && !c.args.is_empty())),
            ("query", Box::new(|c: &NodeCache| c.arg("query").is_none() && c.arg("a").is_some())),
            ("all", Box::new(|c: &NodeCache| *c == NodeCache::default())),
        ] {
            let mut c = full();
            assert!(c.evict(tag), "{tag}");
            assert!(check(&c), "{tag}");
            assert!(!c.evict(tag), "{tag} twice");
        }
        let mut c = full();
        assert!(c.evict(&"f".repeat(56)));
        assert!(c.jobs.is_empty());
    }
}
