//! The only module that touches YAML, through serde-saphyr (maintained, panic-free, with
//! budgets on nesting, aliases and size).
//!
//! A file is read once, with a size limit, into two trees built in the same pass: a plain
//! value tree (`serde_json::Value`, key order kept), which the rest of the program validates
//! with a path to each node, and a tree of positions beside it. So every error can name
//! file:line:column without the rest of the code knowing about marks.
//!
//! Scalars follow YAML 1.2's core schema as serde_yaml did: only `true`/`false` are booleans
//! (`yes`, `on` and `y` stay text), `.nan` and `.inf` are text, and a key twice in one
//! mapping is an error. A file holds one document.

use crate::error::io_reason;
use crate::error::Error;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest file director reads (a catalog of 80,000 nodes fits).
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Deepest nesting of mappings and lists.
const MAX_DEPTH: usize = 64;

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Seg {
    Index(usize),
    /// The value under a key.
    Key(String),
    /// The key itself (for "unknown key" errors); only last in a path.
    KeyName(String),
}

/// `path` extended by one step: `child(&p, "jobs")`, `child(&p, 3)`, `child(&p, Seg::KeyName(k))`.
pub(crate) fn child(path: &[Seg], step: impl Into<Seg>) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(step.into());
    p
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

impl From<String> for Seg {
    fn from(k: String) -> Self {
        Seg::Key(k)
    }
}

impl From<&str> for Seg {
    fn from(k: &str) -> Self {
        Seg::Key(k.to_string())
    }
}

/// Line and column (from 1) of a node.
type At = (usize, usize);

/// Where each node of a value tree was written.
#[derive(Debug, Clone, Default)]
struct Spans {
    at: At,
    kids: Kids,
}

#[derive(Debug, Clone, Default)]
enum Kids {
    #[default]
    Scalar,
    Seq(Vec<Spans>),
    /// Each key's text, its own position, and its value's spans.
    Map(Vec<(String, At, Spans)>),
}

/// A loaded YAML file: its name, where its nodes were written, and its value tree.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    /// The directory the relative paths written in it are taken from: its file's, or the
    /// current one (empty) for standard input, pipes and documents made in memory.
    pub dir: PathBuf,
    /// `None` for a document made from the command line: errors then name only `file`.
    spans: Option<Spans>,
    pub root: Value,
}

impl Document {
    /// Reads and parses `path`: a regular file of at most [`MAX_FILE_BYTES`] of UTF-8 text.
    pub fn load(path: &Path) -> Result<Self, Error> {
        Self::parse(path, read_text(path)?)
    }

    pub fn parse(file: &Path, text: String) -> Result<Self, Error> {
        let (root, spans) = parse_tree(&text).map_err(|e| {
            let at = match e.at {
                Some((line, column)) => format!("{}:{line}:{column}", file.display()),
                None => file.display().to_string(),
            };
            Error::input(format!("{at}: invalid YAML: {}", e.message)).hint(e.hint)
        })?;
        Ok(Document { file: file.to_path_buf(), dir: dir_of(file), spans: Some(spans), root })
    }

    /// A document built in memory (from command-line arguments); `name` stands in for a
    /// file name in errors.
    pub fn synthetic(name: &str, root: Value) -> Self {
        Document { file: PathBuf::from(name), dir: dir_of(Path::new(name)), spans: None, root }
    }

    /// `file:line:column` of the node at `path` (or of the deepest node that exists on it).
    pub fn position(&self, path: &[Seg]) -> String {
        match self.line_column(path) {
            Some((line, column)) => format!("{}:{line}:{column}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }

    fn line_column(&self, path: &[Seg]) -> Option<At> {
        let mut node = self.spans.as_ref()?;
        for seg in path {
            let next = match (seg, &node.kids) {
                (Seg::Index(i), Kids::Seq(items)) => items.get(*i),
                (Seg::Key(k), Kids::Map(entries)) => entries.iter().find(|(name, _, _)| name == k).map(|(_, _, v)| v),
                (Seg::KeyName(k), Kids::Map(entries)) => {
                    return Some(entries.iter().find(|(name, _, _)| name == k).map(|(_, at, _)| *at).unwrap_or(node.at))
                }
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        Some(node.at)
    }

    /// An input error located at `path` in this document.
    pub fn error_at(&self, path: &[Seg], message: impl fmt::Display) -> Error {
        Error::input(format!("{}: {message}", self.position(path)))
    }
}

/// The name that stands for standard input, as a catalog, an orchestration or a settings file.
pub(crate) const STDIN: &str = "-";

/// How long a named pipe may wait for its writer before it is refused (a FIFO nobody
/// writes to would block forever).
const PIPE_WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The text of a file of ours: a regular file, `-` (standard input, read once) or a pipe
/// (`<(generate-inventory)`, a FIFO): at most [`MAX_FILE_BYTES`], UTF-8.
pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    let cannot = |reason: String| {
        Error::input(format!("cannot read {}: {reason}", path.display()))
            .hint("check the path; it is taken relative to the current directory")
    };
    if path == Path::new(STDIN) {
        return text_of(path, read_stdin()?);
    }
    let meta = std::fs::metadata(path).map_err(|e| cannot(io_reason(&e)))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return text_of(path, read_pipe(path)?);
        }
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(Error::input(format!("cannot read {}: it is {what}", path.display()))
            .hint("name a YAML file (or, for a catalog, an Ansible inventory file)"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    let file = std::fs::File::open(path).map_err(|e| cannot(io_reason(&e)))?;
    text_of(path, bounded(file).map_err(|e| cannot(io_reason(&e)))?)
}

/// The directory the relative paths written in `file` are taken from: its own, or the
/// current one (an empty path) for standard input and pipes ([`Document::dir`]).
fn dir_of(file: &Path) -> PathBuf {
    let piped = file == Path::new(STDIN) || std::fs::metadata(file).is_ok_and(|m| !m.is_file());
    match file.parent() {
        Some(d) if !piped => d.to_path_buf(),
        _ => PathBuf::new(),
    }
}

fn too_large(path: &Path) -> Error {
    Error::input(format!("cannot read {}: it is larger than {} MiB", path.display(), MAX_FILE_BYTES >> 20))
        .hint("director reads catalogs, orchestrations and settings of at most 16 MiB; split the file")
}

/// At most one byte past [`MAX_FILE_BYTES`] of `from` (so that too much can be told).
fn bounded(from: impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    from.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Standard input, once: two files cannot both come from it.
fn read_stdin() -> Result<Vec<u8>, Error> {
    use std::io::IsTerminal;
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::input("`-` (standard input) is named twice")
            .hint("only one file can come from standard input; name the others by path"));
    }
    if std::io::stdin().is_terminal() {
        return Err(Error::input("cannot read - (standard input): it is a terminal")
            .hint("pipe the file in (`generate | director orchestrate -`), or name it"));
    }
    bounded(std::io::stdin().lock())
        .map_err(|e| Error::input(format!("cannot read - (standard input): {}", io_reason(&e))))
}

/// A pipe or FIFO, read once to its end; refused when no writer opens it in time.
fn read_pipe(path: &Path) -> Result<Vec<u8>, Error> {
    let (opened_tx, opened) = std::sync::mpsc::channel();
    let (done_tx, done) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    // Opening a FIFO for reading waits for its writer: in a thread, so the wait is bounded.
    std::thread::spawn(move || {
        let file = std::fs::File::open(&owned);
        let _ = opened_tx.send(());
        let _ = done_tx.send(file.and_then(bounded));
    });
    if opened.recv_timeout(PIPE_WRITER_WAIT).is_err() {
        return Err(Error::input(format!(
            "cannot read {}: nothing opened the named pipe to write it within {} s",
            path.display(),
            PIPE_WRITER_WAIT.as_secs()
        ))
        .hint("start what writes it first, or give a file"));
    }
    let bytes = done
        .recv()
        .map_err(|_| Error::internal(format!("reading {} stopped", path.display())))?
        .map_err(|e| Error::input(format!("cannot read {}: {}", path.display(), io_reason(&e))))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(bytes)
}

/// `bytes` as text: at most [`MAX_FILE_BYTES`], UTF-8 (the error says where it is not).
fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, Error> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        Error::input(format!("{}:{line}:{column}: the file is not UTF-8 text", path.display()))
            .hint("save it as UTF-8; binary files are not catalogs or orchestrations")
    })
}

/// A value as YAML text (for `manage --export-jobs`).
pub(crate) fn to_yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_default()
}

/// A YAML (or JSON, which is YAML) text from elsewhere than a file of ours, such as a node's
/// CACHEFILE, as a value; the error says where in that text it went wrong. Bounded like a
/// file of ours: size, nesting and alias expansion.
pub(crate) fn parse_value(text: &str) -> Result<Value, String> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is larger than {} MiB", MAX_FILE_BYTES >> 20));
    }
    parse_tree(text).map(|(value, _)| value).map_err(|e| match e.at {
        Some((line, column)) => format!("line {line} column {column}: {}", e.message),
        None => e.message,
    })
}

/// The text of a scalar, as job values are coerced to strings; `None` for a list or a map.
/// Booleans read back as YAML wrote them (`RUN: true` runs `true`), where Directord crashed.
pub(crate) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// A syntax error: where, what, and a hint fitting it.
struct SyntaxError {
    at: Option<At>,
    message: String,
    hint: &'static str,
}

const LAYOUT_HINT: &str = "check the indentation and the quoting on that line and the one before it";

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    budget.max_documents = 1;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 100_000;
    serde_saphyr::options! {
        budget: Some(budget),
        alias_limits: alias_limits,
        strict_booleans: true,
        non_finite_float_policy: serde_saphyr::options::NonFiniteFloatPolicy::AsString,
        with_snippet: false,
    }
}

fn parse_tree(text: &str) -> Result<(Value, Spans), SyntaxError> {
    if text.trim().is_empty() {
        return Ok((Value::Null, Spans { at: (1, 1), kids: Kids::Scalar }));
    }
    let parsed: Result<Spanned<Parsed>, _> = serde_saphyr::from_str_with_options(text, options());
    match parsed {
        Ok(top) => {
            let Parsed(value, mut spans) = top.value;
            spans.at = at_of(&top.referenced);
            Ok((value, spans))
        }
        Err(e) => {
            let at = e.location().map(|l| (l.line() as usize, l.column() as usize)).filter(|&(l, _)| l > 0);
            let text = e.to_string();
            let bare = match text.rfind(" at line ") {
                Some(i) => &text[..i],
                None => &text,
            };
            let (message, hint) = reword(bare);
            Err(SyntaxError { at, message, hint })
        }
    }
}

/// serde-saphyr's wording, turned towards what the user can do.
fn reword(message: &str) -> (String, &'static str) {
    if message.starts_with("multiple YAML documents") || message.contains("Documents") {
        return (
            "the file holds more than one YAML document (a second `---`)".to_string(),
            "keep one document per file: remove the `---` line or split the file",
        );
    }
    if message.contains("recursion limit") || message.contains("Depth") {
        return (format!("nesting deeper than {MAX_DEPTH} levels"), "flatten the structure");
    }
    if message.contains("budget breached") || message.contains("replay") {
        return (
            "the document is too large once its aliases are expanded".to_string(),
            "write the values out instead of nesting aliases (`*name`) inside each other",
        );
    }
    if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
        let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
        return (
            format!("the key `{key}` appears twice in one mapping"),
            "remove one of them: YAML keeps no duplicates",
        );
    }
    (message.to_string(), LAYOUT_HINT)
}

fn at_of(location: &serde_saphyr::Location) -> At {
    (location.line() as usize, location.column() as usize)
}

/// A node read with its spans; children are read through `Spanned`, which carries their
/// positions.
struct Parsed(Value, Spans);

impl<'de> Deserialize<'de> for Parsed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

fn scalar<E>(value: Value) -> Result<Parsed, E> {
    Ok(Parsed(value, Spans::default()))
}

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Parsed, E> {
        scalar(Value::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Parsed, E> {
        scalar(Value::from(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Parsed, E> {
        scalar(Value::from(n))
    }
    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Parsed, E> {
        scalar(Value::String(n.to_string()))
    }
    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Parsed, E> {
        scalar(Value::String(n.to_string()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Parsed, E> {
        scalar(serde_json::Number::from_f64(n).map(Value::Number).unwrap_or_else(|| Value::String(n.to_string())))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Parsed, E> {
        scalar(Value::String(s.to_string()))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Parsed, E> {
        scalar(Value::String(s))
    }
    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Parsed, E> {
        scalar(Value::String(String::from_utf8_lossy(b).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Parsed, E> {
        scalar(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Parsed, E> {
        scalar(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let mut values = Vec::new();
        let mut spans = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Parsed>>()? {
            let Parsed(value, mut s) = item.value;
            s.at = at_of(&item.referenced);
            values.push(value);
            spans.push(s);
        }
        Ok(Parsed(Value::Array(values), Spans { at: (0, 0), kids: Kids::Seq(spans) }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut values = Map::new();
        let mut spans = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Parsed>>()? {
            let name = match key.value.0 {
                Value::String(s) => s,
                other => match scalar_text(&other) {
                    Some(text) => text,
                    None => {
                        return Err(de::Error::custom("a mapping key must be a plain value, not a list or mapping"))
                    }
                },
            };
            if values.contains_key(&name) {
                return Err(de::Error::custom(format!("duplicate mapping key: {name}")));
            }
            let item = map.next_value::<Spanned<Parsed>>()?;
            let Parsed(value, mut s) = item.value;
            s.at = at_of(&item.referenced);
            spans.push((name.clone(), at_of(&key.referenced), s));
            values.insert(name, value);
        }
        Ok(Parsed(Value::Object(values), Spans { at: (0, 0), kids: Kids::Map(spans) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document::parse(Path::new("d.yaml"), text.to_string()).unwrap()
    }

    fn syntax(text: &str) -> String {
        Document::parse(Path::new("bad.yaml"), text.into()).unwrap_err().to_string()
    }

    #[test]
    fn positions_point_at_the_node_on_the_path() {
        let d = doc("- name: a\n  targets: [x, y]\n  jobs:\n    - RUN: echo hi\n    - RUN: ok\n");
        assert_eq!(d.position(&[0.into(), "targets".into(), 1.into()]), "d.yaml:2:16");
        assert_eq!(d.position(&[0.into(), "jobs".into(), 1.into()]), "d.yaml:5:7");
        assert_eq!(d.position(&[0.into()]), "d.yaml:1:3");
        assert_eq!(d.position(&[0.into(), Seg::KeyName("jobs".into())]), "d.yaml:3:3");
        // A missing key points at the map that lacks it.
        assert_eq!(d.position(&[0.into(), "nope".into()]), "d.yaml:1:3");
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        assert_eq!(
            syntax("- a: b\n  c: [d\n"),
            "error: bad.yaml:2:6: invalid YAML: unclosed bracket '['\n  hint: check the indentation and the quoting on that line and the one before it"
        );
        assert_eq!(
            syntax("a: 1\nb: 2\na: 3\n"),
            "error: bad.yaml:3:1: invalid YAML: the key `a` appears twice in one mapping\n  hint: remove one of them: YAML keeps no duplicates"
        );
        assert_eq!(
            syntax("a: 1\n---\nb: 2\n"),
            "error: bad.yaml:2:1: invalid YAML: the file holds more than one YAML document (a second `---`)\n  hint: keep one document per file: remove the `---` line or split the file"
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            syntax(&deep),
            "error: bad.yaml:1:65: invalid YAML: nesting deeper than 64 levels\n  hint: flatten the structure"
        );
    }

    #[test]
    fn key_order_is_kept_and_scalars_coerce_as_yaml_1_2() {
        let d = doc("b: 1\na: true\nc: 1.5\nd: yes\ne: .nan\nf: ~\ng: 0x10\n");
        let keys: Vec<_> = d.root.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a", "c", "d", "e", "f", "g"]);
        assert_eq!(scalar_text(&d.root["a"]).unwrap(), "true");
        assert_eq!(scalar_text(&d.root["c"]).unwrap(), "1.5");
        assert_eq!(d.root["d"], "yes");
        assert_eq!(d.root["e"], ".nan");
        assert_eq!(d.root["f"], Value::Null);
        assert_eq!(d.root["g"], 16);
    }

    #[test]
    fn alias_bombs_and_node_text_are_bounded() {
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
        for (name, prev) in [("b", "a"), ("c", "b"), ("d", "c"), ("e", "d"), ("f", "e"), ("g", "f"), ("h", "g")] {
            bomb.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 9].join(",")));
        }
        let err = syntax(&bomb);
        assert!(err.contains("invalid YAML: the document is too large once its aliases are expanded"), "{err}");
        assert!(parse_value("{a: [1, {b: c}]}").is_ok());
        assert_eq!(parse_value("a: [1").unwrap_err(), "line 1 column 4: unclosed bracket '['");
    }
}
