//! The only module that touches YAML (serde_yaml is unmaintained upstream: keep it here).
//!
//! A file is read once into a plain value tree (`serde_json::Value`, key order kept), which the
//! rest of the program validates with a path to each node. Only when something is wrong does
//! this module look at the text again: [`Document::error_at`] re-reads the file with a seed that
//! stops at that path, and serde_yaml's error carries the line and column of the node there.
//! So every error can name file:line:column without the rest of the code knowing about marks.

use crate::error::Error;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Index(usize),
    /// The value under a key.
    Key(String),
    /// The key itself (for "unknown key" errors); only last in a path.
    KeyName(String),
}

/// `path` extended by one step: `child(&p, "jobs")`, `child(&p, 3)`, `child(&p, Seg::KeyName(k))`.
pub fn child(path: &[Seg], step: impl Into<Seg>) -> Vec<Seg> {
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

/// A loaded YAML file: its name, its text (for locating errors), and its value tree.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    /// `None` for a document made from the command line: errors then name only `file`.
    text: Option<String>,
    pub root: Value,
}

impl Document {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::input(format!("cannot read {}: {}", path.display(), io_reason(&e)))
                .hint("check the path; it is taken relative to the current directory")
        })?;
        Self::parse(path, text)
    }

    pub fn parse(file: &Path, text: String) -> Result<Self, Error> {
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
            let at = match e.location() {
                Some(l) => format!("{}:{}:{}", file.display(), l.line(), l.column()),
                None => file.display().to_string(),
            };
            Error::input(format!("{at}: invalid YAML: {}", bare_message(&e)))
                .hint("check the indentation and the quoting on that line and the one before it")
        })?;
        let root = to_value(yaml);
        Ok(Document { file: file.to_path_buf(), text: Some(text), root })
    }

    /// A document built in memory (from command-line arguments); `name` stands in for a
    /// file name in errors.
    pub fn synthetic(name: &str, root: Value) -> Self {
        Document { file: PathBuf::from(name), text: None, root }
    }

    /// `file:line:column` of the node at `path` (or of the deepest node that exists on it).
    pub fn position(&self, path: &[Seg]) -> String {
        match self.line_column(path) {
            Some((line, column)) => format!("{}:{line}:{column}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }

    fn line_column(&self, path: &[Seg]) -> Option<(usize, usize)> {
        let text = self.text.as_ref()?;
        if let Some((Seg::KeyName(key), parent)) = path.split_last() {
            // serde_yaml marks a key error at its mapping; find the key on its value's line.
            let (line, column) = self.line_column(&child(parent, key.as_str()))?;
            let on_line = text.lines().nth(line - 1).unwrap_or("");
            let before: String = on_line.chars().take(column.saturating_sub(1)).collect();
            return Some(match before.rfind(key.as_str()) {
                Some(byte) => (line, before[..byte].chars().count() + 1),
                None => (line, column),
            });
        }
        let seed = Locate { path };
        let err = seed.deserialize(serde_yaml::Deserializer::from_str(text)).err()?;
        err.location().map(|l| (l.line(), l.column()))
    }

    /// An input error located at `path` in this document.
    pub fn error_at(&self, path: &[Seg], message: impl fmt::Display) -> Error {
        Error::input(format!("{}: {message}", self.position(path)))
    }
}

/// A value as YAML text (for `manage --export-jobs`).
pub fn to_yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

/// The reason of an I/O error without Rust's "(os error N)" suffix.
pub fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// A YAML (or JSON, which is YAML) text from elsewhere than a file of ours, such as a node's
/// CACHEFILE, as a value; the error says where in that text it went wrong.
pub fn parse_value(text: &str) -> Result<Value, String> {
    serde_yaml::from_str::<serde_yaml::Value>(text).map(to_value).map_err(|e| match e.location() {
        Some(l) => format!("line {} column {}: {}", l.line(), l.column(), bare_message(&e)),
        None => bare_message(&e),
    })
}

/// serde_yaml's message without its path prefix and its " at line N column M" suffix.
fn bare_message(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.to_string()
}

fn to_value(yaml: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_value).collect()),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match to_value(k) {
                    Value::String(s) => s,
                    other => scalar_text(&other).unwrap_or_else(|| other.to_string()),
                };
                out.insert(key, to_value(v));
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => to_value(tagged.value),
    }
}

/// The text of a scalar, as job values are coerced to strings; `None` for a list or a map.
/// Booleans read back as YAML wrote them (`RUN: true` runs `true`), where Directord crashed.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// A seed that walks the document along `path` and fails on the node it reaches, so that
/// serde_yaml's error carries that node's position.
struct Locate<'a> {
    path: &'a [Seg],
}

const FOUND: &str = "located";

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let mut i = 0;
        loop {
            if i == *want {
                if seq.next_element_seed(Locate { path: rest })?.is_none() {
                    break;
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        // The index is past the end: point at the sequence itself.
        Err(de::Error::custom(FOUND))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.path.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        while let Some(key) = map.next_key::<KeyText>()? {
            if key.0 == *want {
                map.next_value_seed(Locate { path: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Err(de::Error::custom(FOUND))
    }
}

/// A mapping key read as text whatever its scalar type.
struct KeyText(String);

impl<'de> de::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = <serde_yaml::Value as de::Deserialize>::deserialize(d)?;
        Ok(KeyText(match to_value(v) {
            Value::String(s) => s,
            other => scalar_text(&other).unwrap_or_default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document::parse(Path::new("d.yaml"), text.to_string()).unwrap()
    }

    #[test]
    fn positions_point_at_the_node_on_the_path() {
        let d = doc("- name: a\n  targets: [x, y]\n  jobs:\n    - RUN: echo hi\n    - RUN: ok\n");
        assert_eq!(d.position(&[0.into(), "targets".into(), 1.into()]), "d.yaml:2:16");
        assert_eq!(d.position(&[0.into(), "jobs".into(), 1.into()]), "d.yaml:5:7");
        assert_eq!(d.position(&[0.into()]), "d.yaml:1:3");
        // A missing key points at the map that lacks it.
        assert_eq!(d.position(&[0.into(), "nope".into()]), "d.yaml:1:3");
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = Document::parse(Path::new("bad.yaml"), "- a: b\n  c: [d\n".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: bad.yaml:3:1: invalid YAML: did not find expected ',' or ']'\n  hint: check the indentation and the quoting on that line and the one before it"
        );
    }

    #[test]
    fn key_order_is_kept_and_scalars_coerce() {
        let d = doc("b: 1\na: true\nc: 1.5\n");
        let keys: Vec<_> = d.root.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["b", "a", "c"]);
        assert_eq!(scalar_text(&d.root["a"]).unwrap(), "true");
        assert_eq!(scalar_text(&d.root["c"]).unwrap(), "1.5");
    }
}
