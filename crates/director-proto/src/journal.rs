//! The node cache's journal: how a run changes a node's cache without sending it whole.
//!
//! A node's cache is a base file (`cache.json`: one JSON object with the sections `jobs`,
//! `parents`, `args` and `envs`, each a map by key) and a journal beside it
//! (`cache.journal`): one JSON object a line, appended by the executor as the operator sends
//! them ([`crate::Request::AppendCache`]), in the order they happened. A line is a
//! [`Change`]: set one key of a section (`{"s":"jobs","k":FP,"v":RECORD}`), remove it (no
//! `v`), empty a section (no `k`), or empty every section (`"s":"*"`). So a job costs one
//! short append however large the cache, and two runs on one node both keep their records.
//!
//! The journal's first line names the base it applies to ([`Header`]: the base file's size,
//! modification time and inode when the journal was started): a base replaced by anything
//! else (an older director, a hand edit) makes the journal stale, and it is dropped rather
//! than replayed onto the wrong base. Replaying skips a line that does not parse (the torn
//! end of an append cut short by a crash); every whole line before and after it applies.
//!
//! The executor greets with the base and the journal's lines as they are, and the operator
//! replays them (it parses the cache anyway; the executor parses neither). Once the dead
//! weight the journal made (entries replaced or removed) passes a quarter of the live (see
//! [`compacts`]), the operator sends the result back as the new base
//! ([`crate::Request::Compact`]) and the executor starts an empty journal. A journal past
//! [`COMPACT_AT`] (which no operator folded) is replayed ([`replay`]) and folded by the
//! executor itself. This module owns the format and the replay onto a JSON object; the
//! executor owns the files and their locking, the operator its typed replay.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Journal size past which the executor folds it as it starts, however large the base,
/// instead of sending it (a journal no operator folded: an older director's, or one of live
/// entries only that grew this large).
pub const COMPACT_AT: usize = 256 * 1024;
/// Dead bytes a cache keeps, however small it is (see [`compacts`]).
pub const COMPACT_MIN: usize = 32 * 1024;

/// Whether a cache of `total` bytes (its base and journal) of which about `dead` bytes are
/// dead (lines and entries that later lines replaced or removed, lines that do not parse) is
/// folded into a new base: once the dead bytes are past a quarter of the live ones, and at
/// least [`COMPACT_MIN`]. Every run sends and replays the journal, so the dead weight of a
/// cache that changes often stays small (a node that runs the same jobs often is not slowed
/// by a quarter of a megabyte of old records), and it is rewritten once in a few dozen runs;
/// a journal that holds only live entries (a first deploy's records) is never rewritten: a
/// base would hold the same bytes.
pub fn compacts(dead: usize, total: usize) -> bool {
    dead > (total.saturating_sub(dead) / 4).max(COMPACT_MIN)
}

/// Largest piece of journal lines in one [`crate::Request::AppendCache`]: a larger batch goes
/// in several pieces (`more`), so no frame comes near [`crate::MAX_FRAME`] even when one
/// record is larger than a frame.
pub const APPEND_CHUNK: usize = 1024 * 1024;

/// The sections of a node cache, as the base file and the journal name them.
pub const SECTIONS: [&str; 4] = ["jobs", "parents", "args", "envs"];

/// One line of the journal (see the module docs), as the executor reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Change {
    /// The section, or `*` for all of them.
    pub s: String,
    /// The key; none empties the section.
    #[serde(default)]
    pub k: Option<String>,
    /// The new value; none removes the key.
    #[serde(default)]
    pub v: Option<Value>,
}

impl Change {
    /// The change as one journal line, with its newline.
    pub fn line(&self) -> String {
        line_of(&self.s, self.k.as_deref(), self.v.as_ref())
    }
}

/// A journal line, with its newline: the one place its shape is written. The value is
/// serialized as it is held (no copy of it as a [`Value`] first, which for a large shared
/// value, a QUERY's map on every node, was a deep copy per node).
pub fn line_of<V: Serialize + ?Sized>(s: &str, k: Option<&str>, v: Option<&V>) -> String {
    #[derive(Serialize)]
    struct Line<'a, V: ?Sized> {
        s: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        k: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        v: Option<&'a V>,
    }
    let mut text = serde_json::to_string(&Line { s, k, v }).expect("a change serializes");
    text.push('\n');
    text
}

/// The journal's first line: which base file it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    pub base: String,
}

impl Header {
    pub fn line(&self) -> String {
        let mut text = serde_json::to_string(self).expect("a header serializes");
        text.push('\n');
        text
    }
}

/// Applies one change to a cache object.
pub fn apply(cache: &mut Map<String, Value>, change: Change) {
    if change.s == "*" {
        for name in SECTIONS {
            cache.insert(name.to_string(), Value::Object(Map::new()));
        }
        return;
    }
    if !SECTIONS.contains(&change.s.as_str()) {
        return;
    }
    let entry = cache.entry(change.s).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    let Value::Object(map) = entry else { return };
    match (change.k, change.v) {
        (None, _) => map.clear(),
        (Some(k), Some(v)) => {
            map.insert(k, v);
        }
        (Some(k), None) => {
            map.remove(&k);
        }
    }
}

/// Replays journal `lines` (without their header) onto `cache`; returns how many applied.
/// A line that does not parse is skipped.
pub fn replay(cache: &mut Map<String, Value>, lines: &str) -> usize {
    let mut applied = 0;
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(change) = serde_json::from_str::<Change>(line) {
            apply(cache, change);
            applied += 1;
        }
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(s: &str, k: &str, v: Value) -> String {
        Change { s: s.into(), k: Some(k.into()), v: Some(v) }.line()
    }

    #[test]
    fn a_cache_is_folded_once_its_dead_bytes_pass_a_quarter_of_its_live_ones() {
        // A small cache: dead bytes are kept up to COMPACT_MIN.
        assert!(!compacts(COMPACT_MIN, COMPACT_MIN + 5_000));
        assert!(compacts(COMPACT_MIN + 1, COMPACT_MIN + 5_000));
        // A middling one: a quarter of its live bytes.
        assert!(!compacts(100_000, 500_000));
        assert!(compacts(100_001, 500_000));
        // All live, however large: never.
        assert!(!compacts(0, 45_000_000));
    }

    #[test]
    fn a_change_given_as_held_is_the_line_of_its_value() {
        // Keys in order, so the text is the same with serde_json's preserve_order or without.
        let v = json!({"at": 3, "value": {"a": true, "b": [1, null, "q\"uote"]}});
        assert_eq!(line_of("args", Some("k"), Some(&v)), put("args", "k", v.clone()));
        assert_eq!(
            line_of("args", Some("k"), Some(&v)),
            "{\"s\":\"args\",\"k\":\"k\",\"v\":{\"at\":3,\"value\":{\"a\":true,\"b\":[1,null,\"q\\\"uote\"]}}}\n"
        );
        assert_eq!(
            line_of::<()>("jobs", Some("k"), None),
            Change { s: "jobs".into(), k: Some("k".into()), v: None }.line()
        );
        assert_eq!(line_of::<()>("jobs", Some("k"), None), "{\"s\":\"jobs\",\"k\":\"k\"}\n");
        assert_eq!(line_of::<()>("*", None, None), "{\"s\":\"*\"}\n");
    }

    #[test]
    fn changes_replay_in_order_and_torn_lines_are_skipped() {
        let mut cache = json!({"v": 1, "jobs": {"a": {"at": 1}}, "args": {"x": {"value": 1, "at": 0}}})
            .as_object()
            .unwrap()
            .clone();
        let mut journal = String::new();
        journal.push_str(&put("jobs", "b", json!({"at": 2})));
        journal.push_str(&Change { s: "jobs".into(), k: Some("a".into()), v: None }.line());
        // A torn append: half a line, then whole lines appended after it.
        journal.push_str("{\"s\":\"jobs\",\"k\":\"c\",\"v\":{\"a");
        journal.push('\n');
        journal.push_str(&put("parents", "p", json!({"status": "ok", "at": 3})));
        journal.push_str(&Change { s: "args".into(), k: None, v: None }.line());
        assert_eq!(replay(&mut cache, &journal), 4);
        assert_eq!(
            Value::Object(cache.clone()),
            json!({"v": 1, "jobs": {"b": {"at": 2}}, "args": {}, "parents": {"p": {"status": "ok", "at": 3}}})
        );
        replay(&mut cache, &Change { s: "*".into(), k: None, v: None }.line());
        assert_eq!(Value::Object(cache), json!({"v": 1, "jobs": {}, "args": {}, "parents": {}, "envs": {}}));
    }

    #[test]
    fn the_header_names_the_base_in_one_line_of_fixed_shape() {
        // The executor compares a journal's first line with this, byte for byte: the line
        // every director wrote for the same base.
        assert_eq!(Header { base: "12-34.5-56".into() }.line(), "{\"base\":\"12-34.5-56\"}\n");
    }
}
