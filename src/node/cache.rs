//! The node cache: what a node remembers between runs, kept in the remote user's cache
//! directory (`~/.cache/director/cache.json` and its journal, see
//! [`director_proto::journal`]) by the executor.
//!
//! A run loads it whole from the executor's greeting and changes it through this type's
//! methods, each of which notes the keys it changed; saving sends only those, as journal
//! lines ([`NodeCache::take_journal`]), so a job costs one short append whatever the cache's
//! size, and two runs on one node keep each other's records.
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
//!
//! Large arg and env values are shared between the nodes' caches ([`shared`]): a QUERY's map
//! of every node is one value in memory, not one per node (which made the operator's memory
//! quadratic in the fleet's size).

use super::shared::lock;
use director_proto::journal::line_of;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

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
    #[serde(default, skip_serializing_if = "Parts::is_empty")]
    pub parts: Parts,
}

/// The parts of a job's fingerprint as its record keeps them: their JSON text, in one
/// allocation, read back only when a plan says what changed ([`Parts::map`]). Kept as maps
/// (a string and a tree slot per part) they were 7 MB of the operator's 79 at 1,000 hosts; as
/// one text per record, 2.5 MB of 69. A job's parts are the same on every node it runs on
/// unless its rendering differs there, so equal texts are one allocation ([`PARTS`]).
#[derive(Debug, Clone, Default)]
pub struct Parts(Option<Arc<str>>);

impl Parts {
    pub fn of(parts: &BTreeMap<String, String>) -> Parts {
        if parts.is_empty() {
            return Parts(None);
        }
        Parts(Some(shared_parts(&serde_json::to_string(parts).expect("a map of strings serializes"))))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The parts, by name (none when the text is not such a map).
    pub fn map(&self) -> BTreeMap<String, String> {
        self.0.as_deref().and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default()
    }
}

impl PartialEq for Parts {
    fn eq(&self, other: &Parts) -> bool {
        self.map() == other.map()
    }
}

impl Serialize for Parts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        match self.0.as_deref() {
            // The text was JSON when it was kept: it is written as it is.
            Some(text) => {
                serde_json::from_str::<&serde_json::value::RawValue>(text).map_err(S::Error::custom)?.serialize(s)
            }
            None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for Parts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Parts, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let empty = raw.get().chars().filter(|c| !c.is_whitespace()).eq("{}".chars());
        Ok(Parts((!empty).then(|| shared_parts(raw.get()))))
    }
}

/// Every fingerprint parts text some record holds, by a hash of it (see [`shared_parts`]).
static PARTS: LazyLock<Mutex<WeakBins<str>>> = LazyLock::new(Mutex::default);

/// `text` as one allocation shared with every record that holds an equal one.
fn shared_parts(text: &str) -> Arc<str> {
    let hash =
        std::hash::BuildHasher::hash_one(&std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(), text);
    let mut bins = lock(&PARTS);
    if let Some(held) = bins.held(hash).find(|t| **t == *text) {
        return held;
    }
    let kept: Arc<str> = text.into();
    bins.keep(hash, &kept);
    kept
}

/// Weak references to shared allocations by a hash of their content; the dead ones are
/// dropped as the bins grow.
struct WeakBins<T: ?Sized> {
    by_hash: std::collections::HashMap<u64, Vec<Weak<T>>>,
    /// Bins counted when the dead ones were last dropped.
    pruned_at: usize,
}

impl<T: ?Sized> Default for WeakBins<T> {
    fn default() -> Self {
        WeakBins { by_hash: Default::default(), pruned_at: 0 }
    }
}

impl<T: ?Sized> WeakBins<T> {
    /// The live allocations whose content has this hash.
    fn held(&self, hash: u64) -> impl Iterator<Item = Arc<T>> + '_ {
        self.by_hash.get(&hash).into_iter().flatten().filter_map(Weak::upgrade)
    }

    fn keep(&mut self, hash: u64, value: &Arc<T>) {
        let bin = self.by_hash.entry(hash).or_default();
        bin.retain(|w| w.strong_count() > 0);
        bin.push(Arc::downgrade(value));
        if self.by_hash.len() > 2 * self.pruned_at.max(64) {
            self.by_hash.retain(|_, b| {
                b.retain(|w| w.strong_count() > 0);
                !b.is_empty()
            });
            self.pruned_at = self.by_hash.len();
        }
    }
}

/// Bytes of a job's output its record keeps.
pub(crate) const RECORDED_OUTPUT: usize = 4 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Shared with every other cache holding an equal large value ([`shared`]).
    #[serde(deserialize_with = "shared_from_text")]
    pub value: Arc<Value>,
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
    /// What [`NodeCache::load`] dropped as expired (removed from the node at the next save).
    #[serde(skip)]
    pub expired: Expired,
    /// The keys changed since the last save, in order.
    #[serde(skip)]
    dirty: Vec<Dirty>,
    /// How large the cache on the node may be now: its size when loaded and every line
    /// appended since (an upper bound: a key set twice counts twice).
    #[serde(skip)]
    pub size: usize,
    /// Whether the base and journal it was read from are due to be folded into one
    /// ([`director_proto::journal::compacts`]).
    #[serde(skip)]
    compact: bool,
}

/// One journal line as the operator reads it: the value is kept as its text until it is
/// parsed as its section's type.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    s: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    k: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    v: Option<&'a serde_json::value::RawValue>,
}

/// Replays the journal's `lines` onto `cache`, read from a base of `base` bytes (see
/// [`director_proto::journal`]), each value parsed straight as its section's type. A line
/// that does not parse (the torn end of an append cut short by a crash), or whose value is
/// not what its section holds, is skipped; every line before and after it applies. Gives
/// back about how many of the bytes read are dead: every line but one that adds a key counts
/// its own length (what it replaced or removed was about as large, or it is itself of no
/// use), and emptying a section or all of them counts everything read before it.
fn replay(cache: &mut NodeCache, lines: &str, base: usize) -> usize {
    /// Sets or removes `k`; whether that added a key.
    fn put<T: serde::de::DeserializeOwned>(section: &mut BTreeMap<String, T>, k: String, v: Option<&str>) -> bool {
        match v.map(serde_json::from_str) {
            None => {
                section.remove(&k);
                false
            }
            Some(Ok(value)) => section.insert(k, value).is_none(),
            Some(Err(_)) => false,
        }
    }
    let (mut dead, mut read) = (0, base);
    for line in lines.split_inclusive('\n') {
        read += line.len();
        let Ok(Line { s, k, v }) = serde_json::from_str::<Line>(line) else {
            dead += line.len();
            continue;
        };
        let v = v.map(serde_json::value::RawValue::get);
        let added = match (&*s, Section::named(&s), k.map(std::borrow::Cow::into_owned)) {
            ("*", _, _) => {
                for section in Section::ALL {
                    cache.empty(section);
                }
                dead = read;
                continue;
            }
            (_, Some(section), None) => {
                cache.empty(section);
                dead = read;
                continue;
            }
            (_, Some(Section::Jobs), Some(k)) => put(&mut cache.jobs, k, v),
            (_, Some(Section::Parents), Some(k)) => put(&mut cache.parents, k, v),
            (_, Some(Section::Args), Some(k)) => put(&mut cache.args, k, v),
            (_, Some(Section::Envs), Some(k)) => put(&mut cache.envs, k, v),
            (_, None, _) => false,
        };
        if !added {
            dead += line.len();
        }
    }
    dead
}

/// One section of the cache, as the journal names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Jobs,
    Parents,
    Args,
    Envs,
}

impl Section {
    const ALL: [Section; 4] = [Section::Jobs, Section::Parents, Section::Args, Section::Envs];

    /// The section the journal (and CACHEEVICT) calls `name`.
    fn named(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Section::Jobs => "jobs",
            Section::Parents => "parents",
            Section::Args => "args",
            Section::Envs => "envs",
        }
    }
}

/// What changed since the last save.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dirty {
    Key(Section, String),
    Clear(Section),
    All,
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

impl Kind {
    fn section(self) -> Section {
        match self {
            Kind::Args => Section::Args,
            Kind::Envs => Section::Envs,
        }
    }
}

impl NodeCache {
    /// Reads the base file's text and replays the journal's lines onto it ([`replay`]);
    /// expired args and envs are dropped. The second value says why the base was not usable,
    /// if it was not (the journal is then not replayed: the run starts afresh).
    pub fn load(text: Option<&str>, journal: Option<&str>, now: u64, ttl: u64) -> (NodeCache, Option<String>) {
        let parsed = match text {
            Some(text) => serde_json::from_str::<NodeCache>(text),
            None if journal.is_some() => Ok(NodeCache { v: LAYOUT, ..NodeCache::default() }),
            None => return (NodeCache::default(), None),
        };
        match parsed {
            Ok(mut cache) if cache.v == LAYOUT => {
                let (base, lines) = (text.map_or(0, str::len), journal.map_or(0, str::len));
                if let Some(journal) = journal {
                    let dead = replay(&mut cache, journal, base);
                    cache.compact = director_proto::journal::compacts(dead, base + lines);
                }
                let fresh = |s: &Stored| s.at.saturating_add(ttl) > now;
                let stale = |section: &BTreeMap<String, Stored>| {
                    section.iter().filter(|(_, s)| !fresh(s)).map(|(k, _)| k.clone()).collect()
                };
                cache.expired = Expired { args: stale(&cache.args), envs: stale(&cache.envs) };
                cache.args.retain(|_, s| fresh(s));
                cache.envs.retain(|_, s| fresh(s));
                // The expired ones go from the node with the next save.
                let gone = cache.expired.args.iter().map(|k| Dirty::Key(Section::Args, k.clone()));
                let gone = gone.chain(cache.expired.envs.iter().map(|k| Dirty::Key(Section::Envs, k.clone())));
                cache.dirty = gone.collect();
                cache.size = base + lines;
                (cache, None)
            }
            Ok(cache) => (
                NodeCache::default(),
                Some(format!("the node cache has layout {}, this director writes {LAYOUT}; starting afresh", cache.v)),
            ),
            Err(e) => (NodeCache::default(), Some(format!("the node cache is unreadable ({e}); starting afresh"))),
        }
    }

    /// The whole cache as the base file holds it.
    pub fn to_text(&self) -> String {
        #[derive(Serialize)]
        struct Base<'a> {
            v: u32,
            jobs: &'a BTreeMap<String, JobRecord>,
            parents: &'a BTreeMap<String, ParentRecord>,
            args: &'a BTreeMap<String, Stored>,
            envs: &'a BTreeMap<String, Stored>,
        }
        let base = Base { v: LAYOUT, jobs: &self.jobs, parents: &self.parents, args: &self.args, envs: &self.envs };
        serde_json::to_string(&base).expect("cache serializes")
    }

    /// The whole cache as the new base, when the journal it was read with is due to be folded
    /// into its base (once: the cache is then considered folded).
    pub fn take_compaction(&mut self) -> Option<String> {
        std::mem::take(&mut self.compact).then(|| self.to_text())
    }

    fn touch(&mut self, dirty: Dirty) {
        match &dirty {
            Dirty::All => self.dirty.clear(),
            Dirty::Clear(section) => self.dirty.retain(|d| !matches!(d, Dirty::Key(s, _) if s == section)),
            Dirty::Key(..) if self.dirty.contains(&dirty) => return,
            Dirty::Key(..) => {}
        }
        self.dirty.push(dirty);
    }

    /// Records a job's success under its fingerprint.
    pub fn put_job(&mut self, fingerprint: &str, record: JobRecord) {
        self.jobs.insert(fingerprint.to_string(), record);
        self.touch(Dirty::Key(Section::Jobs, fingerprint.to_string()));
    }

    /// Records how an entry last ended.
    pub fn put_parent(&mut self, fingerprint: &str, record: ParentRecord) {
        self.parents.insert(fingerprint.to_string(), record);
        self.touch(Dirty::Key(Section::Parents, fingerprint.to_string()));
    }

    /// The journal lines of what changed since the last call, and their size; the changes
    /// are then considered saved.
    pub fn take_journal(&mut self) -> (Vec<String>, usize) {
        let dirty = std::mem::take(&mut self.dirty);
        let lines: Vec<String> = dirty
            .into_iter()
            .map(|d| match d {
                Dirty::All => line_of::<()>("*", None, None),
                Dirty::Clear(section) => line_of::<()>(section.as_str(), None, None),
                Dirty::Key(section, key) => {
                    let (s, k) = (section.as_str(), Some(key.as_str()));
                    match section {
                        Section::Jobs => line_of(s, k, self.jobs.get(&key)),
                        Section::Parents => line_of(s, k, self.parents.get(&key)),
                        Section::Args => line_of(s, k, self.args.get(&key).map(StoredLine::of).as_ref()),
                        Section::Envs => line_of(s, k, self.envs.get(&key).map(StoredLine::of).as_ref()),
                    }
                }
            })
            .collect();
        let size = lines.iter().map(String::len).sum();
        (lines, size)
    }

    fn section(&mut self, kind: Kind) -> &mut BTreeMap<String, Stored> {
        match kind {
            Kind::Args => &mut self.args,
            Kind::Envs => &mut self.envs,
        }
    }

    pub fn arg(&self, key: &str) -> Option<&Value> {
        self.args.get(key).map(|s| &*s.value)
    }

    /// An arg, shared rather than copied (templates' contexts hold it).
    pub fn arg_shared(&self, key: &str) -> Option<Arc<Value>> {
        self.args.get(key).map(|s| s.value.clone())
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
    pub fn set(
        &mut self,
        kind: Kind,
        key: &str,
        value: impl Into<Arc<Value>>,
        extend: bool,
        now: u64,
        ttl: u64,
    ) -> bool {
        let value = value.into();
        // Set again in this run: what it holds now did not expire.
        match kind {
            Kind::Args => self.expired.args.remove(key),
            Kind::Envs => self.expired.envs.remove(key),
        };
        let section = self.section(kind);
        let new = match (extend, section.get(key)) {
            // Merging a value into its equal changes nothing: keep the one held.
            (_, Some(old)) if same(&old.value, &value) => old.value.clone(),
            (true, Some(old)) => shared(Arc::new(merged(&old.value, Arc::unwrap_or_clone(value)))),
            _ => shared(value),
        };
        let changed = match section.get_mut(key) {
            Some(old) if same(&old.value, &new) => {
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
        };
        if changed {
            self.touch(Dirty::Key(kind.section(), key.to_string()));
        }
        changed
    }

    /// Marks a stored arg or env secret; true if that changed it.
    pub fn mark_secret(&mut self, kind: Kind, key: &str) -> bool {
        match self.section(kind).get_mut(key) {
            Some(stored) if !stored.secret => {
                stored.secret = true;
                self.touch(Dirty::Key(kind.section(), key.to_string()));
                true
            }
            _ => false,
        }
    }

    /// The values stored as secret.
    pub fn secret_values(&self) -> impl Iterator<Item = &Value> {
        self.args.values().chain(self.envs.values()).filter(|s| s.secret).map(|s| &*s.value)
    }

    /// Empties one section; whether it held anything.
    fn empty(&mut self, section: Section) -> bool {
        match section {
            Section::Jobs => !std::mem::take(&mut self.jobs).is_empty(),
            Section::Parents => !std::mem::take(&mut self.parents).is_empty(),
            Section::Args => !std::mem::take(&mut self.args).is_empty(),
            Section::Envs => !std::mem::take(&mut self.envs).is_empty(),
        }
    }

    /// Forgets what `tag` names; true if anything was there.
    pub fn evict(&mut self, tag: &str) -> bool {
        let had = !(self.jobs.is_empty() && self.parents.is_empty() && self.args.is_empty() && self.envs.is_empty());
        let (changed, dirty) = match (tag, Section::named(tag)) {
            ("all", _) => {
                let size = self.size;
                *self = NodeCache { size, ..NodeCache::default() };
                (had, Dirty::All)
            }
            (_, Some(section)) => (self.empty(section), Dirty::Clear(section)),
            ("query", None) => (self.args.remove("query").is_some(), Dirty::Key(Section::Args, "query".to_string())),
            (fingerprint, None) => {
                (self.jobs.remove(fingerprint).is_some(), Dirty::Key(Section::Jobs, fingerprint.to_string()))
            }
        };
        if changed {
            self.touch(dirty);
        }
        changed
    }
}

fn same(a: &Arc<Value>, b: &Arc<Value>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// Every large value some cache holds, by a hash of its text (see [`shared`]).
static VALUES: LazyLock<Mutex<Shelf>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct Shelf {
    by_hash: WeakBins<Value>,
    /// The large values loaded from nodes' caches, by their text there ([`shared_from_text`]).
    by_text: std::collections::HashMap<Box<str>, Weak<Value>>,
    texts_pruned_at: usize,
}

thread_local! {
    /// The value this thread last shelved or found: given again (a QUERY's map, one
    /// allocation set on every node), it is known without hashing its text again, a thousand
    /// times (once a thread, not once a node; and another thread's values do not displace it).
    static LAST: std::cell::RefCell<Weak<Value>> = const { std::cell::RefCell::new(Weak::new()) };
}

#[cfg(test)]
thread_local! {
    /// How many values [`shared`] hashed on this thread.
    static HASHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Texts from this long are looked up on the shelf before they are parsed.
const SHARED_TEXT_FROM: usize = 1024;

/// A stored value read from a node's cache, as [`shared`] would return it; a long text that
/// another cache already held is not parsed again. Every node's cache holds the same QUERY
/// map of every node (Directord's semantics: 15 KB a node at 1,000 nodes): parsed on each
/// node's greeting, that was a million map entries built and dropped for one kept.
fn shared_from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<Value>, D::Error> {
    use serde::de::Error;
    let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
    let text = raw.get();
    let parse = || serde_json::from_str::<Value>(text).map(Arc::new).map_err(D::Error::custom);
    if text.len() < SHARED_TEXT_FROM {
        return Ok(shared(parse()?));
    }
    if let Some(held) = lock(&VALUES).by_text.get(text).and_then(Weak::upgrade) {
        return Ok(held);
    }
    let value = shared(parse()?);
    let mut shelf = lock(&VALUES);
    shelf.by_text.insert(text.into(), Arc::downgrade(&value));
    if shelf.by_text.len() > 2 * shelf.texts_pruned_at.max(64) {
        shelf.by_text.retain(|_, w| w.strong_count() > 0);
        shelf.texts_pruned_at = shelf.by_text.len();
    }
    Ok(value)
}

/// `value`, or an equal value another cache already holds: a large mapping or list (a QUERY's
/// map of every node, the same CACHEFILE on every node) is kept once for the whole fleet. Small
/// values are returned as they are.
pub(crate) fn shared(value: Arc<Value>) -> Arc<Value> {
    if !crate::catalog::template::is_large(&value) {
        return value;
    }
    // The weak reference keeps the allocation: the same address is the same value.
    if LAST.with(|last| std::ptr::eq(last.borrow().as_ptr(), Arc::as_ptr(&value))) {
        return value;
    }
    #[cfg(test)]
    HASHED.with(|h| h.set(h.get() + 1));
    let mut hasher = std::hash::DefaultHasher::new();
    serde_json::to_writer(HashWriter(&mut hasher), &*value).expect("a value serializes");
    let hash = std::hash::Hasher::finish(&hasher);
    let candidates: Vec<Arc<Value>> = {
        let shelf = lock(&VALUES);
        shelf.by_hash.held(hash).collect()
    };
    // Compared outside the lock: two equal values shelved at once only miss one sharing.
    if let Some(held) = candidates.into_iter().find(|c| same(c, &value)) {
        LAST.with(|last| *last.borrow_mut() = Arc::downgrade(&held));
        return held;
    }
    LAST.with(|last| *last.borrow_mut() = Arc::downgrade(&value));
    lock(&VALUES).by_hash.keep(hash, &value);
    value
}

/// A [`Stored`] as a journal line holds it: the same JSON, with a large value's text written
/// once a thread and copied after ([`written`]).
#[derive(Serialize)]
struct StoredLine<'a> {
    value: ValueText<'a>,
    at: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    secret: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ValueText<'a> {
    Held(&'a Value),
    Written(Arc<serde_json::value::RawValue>),
}

impl<'a> StoredLine<'a> {
    fn of(stored: &'a Stored) -> StoredLine<'a> {
        let value = match written(&stored.value) {
            Some(text) => ValueText::Written(text),
            None => ValueText::Held(&stored.value),
        };
        StoredLine { value, at: stored.at, secret: stored.secret }
    }
}

thread_local! {
    /// The large value this thread last wrote into a journal line, and its text: a QUERY's
    /// map, one allocation set on every node, is serialized once, not once a node (a thousand
    /// times its thousand entries at 1,000 nodes). The weak reference keeps the allocation, so
    /// the same address is the same value (a shared value is never changed in place:
    /// `Arc::make_mut` moves it while a weak reference is held).
    static WRITTEN: std::cell::RefCell<(Weak<Value>, Option<Arc<serde_json::value::RawValue>>)> =
        const { std::cell::RefCell::new((Weak::new(), None)) };
}

#[cfg(test)]
thread_local! {
    /// How many large values [`written`] serialized on this thread.
    static WROTE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The JSON text of a large value, serialized once for every cache that holds the same
/// allocation in a row; none for a small one (written as it is).
fn written(value: &Arc<Value>) -> Option<Arc<serde_json::value::RawValue>> {
    if !crate::catalog::template::is_large(value) {
        return None;
    }
    WRITTEN.with(|last| {
        let mut last = last.borrow_mut();
        if std::ptr::eq(last.0.as_ptr(), Arc::as_ptr(value)) {
            return last.1.clone();
        }
        #[cfg(test)]
        WROTE.with(|w| w.set(w.get() + 1));
        let text: Arc<serde_json::value::RawValue> =
            serde_json::value::to_raw_value(&**value).expect("a value serializes").into();
        *last = (Arc::downgrade(value), Some(text.clone()));
        Some(text)
    })
}

/// Feeds what is written to a hasher.
struct HashWriter<'a>(&'a mut std::hash::DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
pub(crate) fn merged(old: &Value, new: Value) -> Value {
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
        let (fresh, why) = NodeCache::load(Some(&text), None, 1000 + TTL - 1, TTL);
        assert_eq!((fresh.arg("a"), why), (Some(&json!(1)), None));
        let (old, _) = NodeCache::load(Some(&text), None, 1000 + TTL, TTL);
        assert_eq!(old.arg("a"), None);
        assert_eq!(old.expired.args, ["a".to_string()].into());
        assert!(old.jobs.contains_key("f"));
        let (broken, why) = NodeCache::load(Some("{\"v\":1,"), None, 0, TTL);
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
            (
                "all",
                Box::new(|c: &NodeCache| {
                    c.jobs.is_empty() && c.parents.is_empty() && c.args.is_empty() && c.envs.is_empty()
                }),
            ),
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

    /// A QUERY's map of 300 nodes, one allocation set on 50 nodes' caches at `now`.
    fn query_on_fifty_nodes(now: u64) -> (Arc<Value>, Vec<NodeCache>) {
        let map = Arc::new(Value::Object((0..300).map(|i| (format!("n{i}"), json!({"user": "root"}))).collect()));
        let mut caches: Vec<NodeCache> = (0..50).map(|_| NodeCache::default()).collect();
        for cache in &mut caches {
            cache.set(Kind::Args, "query", map.clone(), false, now, TTL);
        }
        (map, caches)
    }

    /// One allocation set on every node (a QUERY's map) is hashed once, not once a node; an
    /// equal value from another allocation is still found by its hash.
    #[test]
    fn a_value_set_on_every_node_is_hashed_once() {
        let before = HASHED.with(std::cell::Cell::get);
        let (map, caches) = query_on_fifty_nodes(0);
        assert_eq!(HASHED.with(std::cell::Cell::get) - before, 1);
        assert!(caches.iter().all(|c| Arc::ptr_eq(&c.args["query"].value, &map)));
        let copy = Arc::new((*map).clone());
        assert!(Arc::ptr_eq(&shared(copy), &map));
        assert_eq!(HASHED.with(std::cell::Cell::get) - before, 2);
    }

    /// The same large value set on every node is serialized once for all their journal lines,
    /// and each line is the one [`Stored`] itself makes.
    #[test]
    fn a_value_set_on_every_node_is_written_once() {
        let before = WROTE.with(std::cell::Cell::get);
        let (map, mut caches) = query_on_fifty_nodes(7);
        caches[3].mark_secret(Kind::Args, "query");
        let lines: Vec<Vec<String>> = caches.iter_mut().map(|c| c.take_journal().0).collect();
        assert_eq!(WROTE.with(std::cell::Cell::get) - before, 1);
        for (cache, lines) in caches.iter().zip(&lines) {
            assert_eq!(lines, &[line_of("args", Some("query"), Some(&cache.args["query"]))]);
        }
        assert!(lines[3][0].contains(r#""secret":true"#) && !lines[4][0].contains("secret"));
        // Another value, then the first again: each is written again (one is remembered).
        let mut other = NodeCache::default();
        other.set(Kind::Args, "query", json!((0..40).collect::<Vec<_>>()), false, 7, TTL);
        other.set(Kind::Envs, "small", json!("v"), false, 7, TTL);
        other.take_journal();
        caches[0].set(Kind::Args, "query", map.clone(), false, 9 + TTL, TTL);
        assert_eq!(caches[0].take_journal().0, [line_of("args", Some("query"), Some(&caches[0].args["query"]))]);
        assert_eq!(WROTE.with(std::cell::Cell::get) - before, 3);
    }

    /// A large value is held once however many caches hold it: loaded from each node's file,
    /// set on each node, or merged the same way on each.
    #[test]
    fn large_values_are_shared_between_caches() {
        let big = |n: usize| Value::Object((0..n).map(|i| (format!("node{i}"), json!({"k": i}))).collect());
        let mut one = NodeCache::default();
        one.set(Kind::Args, "query", big(40), false, 0, TTL);
        one.set(Kind::Args, "small", json!({"a": 1}), false, 0, TTL);
        let text = one.to_text();
        let (a, _) = NodeCache::load(Some(&text), None, 1, TTL);
        let (b, _) = NodeCache::load(Some(&text), None, 1, TTL);
        let shared = |x: &NodeCache, y: &NodeCache, key: &str| Arc::ptr_eq(&x.args[key].value, &y.args[key].value);
        assert!(shared(&a, &b, "query") && shared(&a, &one, "query"));
        assert!(!shared(&a, &b, "small"), "small values are not worth sharing");
        // A long one is found by its text, parsed once: loaded from a cache that never held it
        // in this process, and again from another.
        let wide = Value::Object((0..200).map(|i| (format!("node{i}"), json!(format!("host-{i}")))).collect());
        let text = format!(r#"{{"v":{LAYOUT},"args":{{"wide":{{"value":{wide},"at":0}}}}}}"#);
        assert!(!lock(&VALUES).by_text.contains_key(wide.to_string().as_str()));
        let (e, why) = NodeCache::load(Some(&text), None, 1, TTL);
        assert_eq!(why, None);
        assert!(lock(&VALUES).by_text.contains_key(wide.to_string().as_str()), "not shelved by its text");
        let (f, _) = NodeCache::load(Some(&text), None, 1, TTL);
        assert!(shared(&e, &f, "wide"));
        assert_eq!(*e.args["wide"].value, wide);
        // Set on two nodes from separate allocations, and merged the same way on both.
        let (mut c, mut d) = (NodeCache::default(), NodeCache::default());
        c.set(Kind::Args, "q", big(50), false, 0, TTL);
        d.set(Kind::Args, "q", big(50), false, 0, TTL);
        assert!(shared(&c, &d, "q"));
        assert!(c.set(Kind::Args, "q", json!({"extra": 1}), true, 0, TTL));
        assert!(d.set(Kind::Args, "q", json!({"extra": 1}), true, 0, TTL));
        assert!(shared(&c, &d, "q"));
        assert_eq!(c.arg("q").unwrap().as_object().unwrap().len(), 51);
        // Setting an equal value keeps the one held and changes nothing.
        let held = c.arg_shared("q").unwrap();
        assert!(!c.set(Kind::Args, "q", (*held).clone(), true, 0, TTL));
        assert!(Arc::ptr_eq(&held, &c.args["q"].value));
    }

    /// What the journal says, replayed onto the base the node had, is the cache the run holds.
    #[test]
    fn the_journal_replays_to_the_cache_in_memory() {
        let mut before = NodeCache::default();
        before.set(Kind::Args, "old", json!("expires"), false, 0, TTL);
        before.set(Kind::Args, "a", json!(1), false, 10 * TTL, TTL);
        before.put_job("f1", JobRecord { at: 1, verb: "RUN".into(), ..JobRecord::default() });
        before.put_job("f2", JobRecord { at: 2, verb: "RUN".into(), ..JobRecord::default() });
        let base = before.to_text();
        let (mut c, _) = NodeCache::load(Some(&base), None, 10 * TTL, TTL);
        assert_eq!(c.size, base.len());
        assert!(c.arg("old").is_none());
        c.put_job(
            "f3",
            JobRecord { at: 3, verb: "COPY".into(), files: vec![("/x".into(), "h".into())], ..JobRecord::default() },
        );
        c.evict("f1");
        c.set(Kind::Envs, "E", json!("x"), false, 10 * TTL, TTL);
        c.mark_secret(Kind::Envs, "E");
        c.put_parent("p", ParentRecord { status: "ok".into(), at: 4 });
        c.set(Kind::Args, "a", json!({"m": [1]}), true, 10 * TTL, TTL);
        c.put_job("f3", JobRecord { at: 5, verb: "COPY".into(), ..JobRecord::default() });
        let (lines, size) = c.take_journal();
        assert_eq!(size, lines.iter().map(String::len).sum::<usize>());
        // Each key once, in the order first changed; the expired arg's removal first.
        let keys: Vec<String> = lines
            .iter()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                format!("{}:{}", v["s"].as_str().unwrap(), v["k"].as_str().unwrap_or("-"))
            })
            .collect();
        assert_eq!(keys, ["args:old", "jobs:f3", "jobs:f1", "envs:E", "parents:p", "args:a"]);
        let mut node: Map<String, Value> = serde_json::from_str(&base).unwrap();
        director_proto::journal::replay(&mut node, &lines.concat());
        let (replayed, why) = NodeCache::load(Some(&Value::Object(node).to_string()), None, 10 * TTL, TTL);
        assert_eq!(why, None);
        assert_eq!(
            (&replayed.jobs, &replayed.parents, &replayed.args, &replayed.envs),
            (&c.jobs, &c.parents, &c.args, &c.envs)
        );
        // The operator's own replay of the same lines (as the executor greets with them) makes
        // the same cache.
        let (replayed, why) = NodeCache::load(Some(&base), Some(&lines.concat()), 10 * TTL, TTL);
        assert_eq!(why, None);
        assert_eq!(
            (&replayed.jobs, &replayed.parents, &replayed.args, &replayed.envs),
            (&c.jobs, &c.parents, &c.args, &c.envs)
        );
        assert_eq!(replayed.size, base.len() + lines.concat().len());
        assert!(c.take_journal().0.is_empty(), "saved changes are not sent twice");
        // Emptying a section supersedes the keys changed in it before.
        c.put_job("f4", JobRecord::default());
        c.evict("jobs");
        let lines = c.take_journal().0;
        assert_eq!(lines, ["{\"s\":\"jobs\"}\n"]);
    }

    /// Replayed by the operator: a torn line, or one whose value is not what its section
    /// holds, is skipped and every other line applies; sections are emptied one or all; the
    /// cache is due to be folded once the journal made enough of it dead.
    #[test]
    fn the_operator_replays_whole_lines_and_knows_when_to_fold() {
        let base = r#"{"v":1,"jobs":{"a":{"at":1,"verb":"RUN"},"b":{"at":2,"verb":"RUN"}},"parents":{"p":{"status":"ok","at":1}}}"#;
        let journal = [
            r#"{"s":"jobs","k":"c","v":{"at":3,"verb":"COPY","files":[["/x","h"]]}}"#,
            r#"{"s":"jobs","k":"a"}"#,
            r#"{"s":"jobs","k":"d","v":{"at":"#,
            r#"{"s":"jobs","k":"e","v":"not a record"}"#,
            r#"{"s":"args","k":"q","v":{"value":{"n1":[1,2]},"at":5,"secret":true}}"#,
            r#"{"s":"nosuch","k":"z","v":1}"#,
            r#"{"s":"parents"}"#,
            "",
            r#"{"s":"envs","k":"E","v":{"value":"x","at":5}}"#,
        ]
        .join(
            "
",
        );
        let (c, why) = NodeCache::load(Some(base), Some(&journal), 6, TTL);
        assert_eq!(why, None);
        assert_eq!(c.jobs.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(c.jobs["c"].files, [("/x".to_string(), "h".to_string())]);
        assert!(c.parents.is_empty());
        assert_eq!(c.arg("q"), Some(&json!({"n1": [1, 2]})));
        assert!(c.args["q"].secret);
        assert_eq!(c.env_pairs(), [("E".to_string(), "x".to_string())]);
        let (all, _) = NodeCache::load(Some(base), Some(&format!("{journal}\n{{\"s\":\"*\"}}\n")), 6, TTL);
        assert!(all.jobs.is_empty() && all.args.is_empty() && all.envs.is_empty() && all.parents.is_empty());
        // No base yet: the journal alone.
        let (fresh, why) = NodeCache::load(None, Some(&journal), 6, TTL);
        assert_eq!(why, None);
        assert_eq!(fresh.jobs.keys().collect::<Vec<_>>(), ["c"]);
        // An unreadable base is not replayed onto.
        let (broken, why) = NodeCache::load(Some("{\"v\":1,"), Some(&journal), 6, TTL);
        assert!(why.unwrap().starts_with("the node cache is unreadable"));
        assert!(broken.jobs.is_empty());
        // Folded once the dead weight is past a quarter of what is live (and COMPACT_MIN),
        // once; a journal of live records only is not, however long.
        let records: String = (0..2_000)
            .map(|n| format!("{{\"s\":\"jobs\",\"k\":\"n{n}\",\"v\":{{\"at\":1,\"verb\":\"RUN\"}}}}\n"))
            .collect();
        assert!(records.len() > director_proto::journal::COMPACT_MIN);
        let (mut live, _) = NodeCache::load(Some(base), Some(&records), 6, TTL);
        assert_eq!(live.jobs.len(), 2_002);
        assert_eq!(live.take_compaction(), None);
        let short = r#"{"s":"jobs","k":"a"}"#;
        let (mut small, _) = NodeCache::load(Some(base), Some(short), 6, TTL);
        assert_eq!(small.take_compaction(), None);
        let long = format!("{short}\n").repeat(director_proto::journal::COMPACT_MIN / short.len() + 1);
        let (mut due, _) = NodeCache::load(Some(base), Some(&long), 6, TTL);
        let folded = due.take_compaction().expect("due");
        assert_eq!(due.take_compaction(), None);
        let (again, why) = NodeCache::load(Some(&folded), None, 6, TTL);
        assert_eq!(why, None);
        assert_eq!(again.jobs.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(again.parents, due.parents);
    }

    /// A record's fingerprint parts are kept as the text the node has and come back as the
    /// map they were made from, through the base file and through the journal.
    #[test]
    fn fingerprint_parts_keep_their_text_and_read_back() {
        let map: BTreeMap<String, String> = [("command", "0a1b"), ("arg:version", "ff00"), ("file:/etc/x", "")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let parts = Parts::of(&map);
        assert_eq!(parts.map(), map);
        assert!(Parts::of(&BTreeMap::new()).is_empty());
        let mut c = NodeCache::default();
        c.put_job("f1", JobRecord { at: 1, verb: "RUN".into(), parts, ..JobRecord::default() });
        c.put_job("f2", JobRecord { at: 2, verb: "RUN".into(), ..JobRecord::default() });
        let text = c.to_text();
        assert!(text.contains(r#""parts":{"arg:version":"ff00","command":"0a1b","file:/etc/x":""}"#), "{text}");
        assert!(!text.contains(r#""f2":{"at":2,"verb":"RUN","parts""#), "no parts, none written: {text}");
        let (loaded, why) = NodeCache::load(Some(&text), None, 1, TTL);
        assert_eq!(why, None);
        assert_eq!(loaded.jobs["f1"].parts.map(), map);
        assert!(loaded.jobs["f2"].parts.is_empty());
        // Spaced as a hand edit may leave them, empty as an earlier director wrote none, and
        // through the journal.
        let spaced = r#"{"v":1,"jobs":{"f":{"at":1,"verb":"RUN","parts":{ "command" : "0a1b" }},"g":{"at":1,"verb":"RUN","parts":{ }}}}"#;
        let (old, why) = NodeCache::load(Some(spaced), None, 1, TTL);
        assert_eq!(why, None);
        assert_eq!(old.jobs["f"].parts.map(), BTreeMap::from([("command".to_string(), "0a1b".to_string())]));
        assert!(old.jobs["g"].parts.is_empty());
        let mut node: Map<String, Value> = serde_json::from_str(r#"{"v":1}"#).unwrap();
        director_proto::journal::replay(&mut node, &c.take_journal().0.concat());
        let (replayed, _) = NodeCache::load(Some(&Value::Object(node).to_string()), None, 1, TTL);
        assert_eq!(replayed.jobs["f1"].parts.map(), map);
    }

    /// Equal parts are one text however many records hold them, made or read from a node.
    #[test]
    fn equal_fingerprint_parts_are_kept_once() {
        let map: BTreeMap<String, String> = [("command".to_string(), "77aa".to_string())].into();
        let (a, b) = (Parts::of(&map), Parts::of(&map));
        let same = |x: &Parts, y: &Parts| Arc::ptr_eq(x.0.as_ref().unwrap(), y.0.as_ref().unwrap());
        assert!(same(&a, &b));
        let (loaded, _) = NodeCache::load(
            Some(r#"{"v":1,"jobs":{"f":{"at":1,"verb":"RUN","parts":{"command":"77aa"}}}}"#),
            None,
            1,
            TTL,
        );
        assert!(same(&a, &loaded.jobs["f"].parts));
        let other = Parts::of(&[("command".to_string(), "77ab".to_string())].into());
        assert!(!same(&a, &other));
        assert_ne!(a, other);
    }
}
