//! Typed fields of a YAML mapping, each refused at its line and column with a hint: the
//! readers of catalogs and orchestrations share them (known keys with a did-you-mean, words,
//! ports, booleans the way Ansible writes them, lists of text).

use super::yaml::{child, scalar_text, Document, Seg};
use crate::error::Error;
use serde_json::{Map, Value};

/// Words other tools use for a key director names differently (Ansible's `hosts` is an
/// entry's `targets`), so the hint can name the right one where edit distance cannot.
const SYNONYMS: &[(&str, &str)] = &[
    ("hosts", "targets"),
    ("target", "targets"),
    ("nodes", "targets"),
    ("tasks", "jobs"),
    ("hostname", "host"),
    ("address", "host"),
    ("ansible_host", "host"),
    ("username", "user"),
    ("remote_user", "user"),
    ("ansible_user", "user"),
    ("key_file", "identity_file"),
    ("private_key", "identity_file"),
    ("ansible_port", "port"),
    ("group", "groups"),
    ("vars_files", "vars"),
    ("sudo", "become"),
    ("sudo_user", "become_user"),
    ("ansible_become", "become"),
    ("ansible_become_user", "become_user"),
    ("ansible_become_method", "become_method"),
];

/// The key `key` was probably meant to be, among `allowed`.
pub(crate) fn suggest_key(key: &str, allowed: &[&str]) -> Option<String> {
    SYNONYMS
        .iter()
        .find(|(other, ours)| other.eq_ignore_ascii_case(key) && allowed.contains(ours))
        .map(|(_, ours)| ours.to_string())
        .or_else(|| crate::error::suggest(key, allowed.iter().copied()))
}

/// The error for `key`, which `what` does not have: at the key, with a did-you-mean and the
/// keys it does have.
pub(crate) fn unknown_key(doc: &Document, path: &[Seg], key: &str, allowed: &[&str], what: &str) -> Error {
    let at = child(path, Seg::KeyName(key.to_string()));
    let err = doc.error_at(&at, format!("unknown key `{key}` in {what}"));
    match suggest_key(key, allowed) {
        Some(s) => err.hint(format!("did you mean `{s}`? {what} keys are: {}", allowed.join(", "))),
        None => err.hint(format!("{what} keys are: {}", allowed.join(", "))),
    }
}

/// Refuses the first key of `map` that is not in `allowed`.
pub(crate) fn check_keys(
    doc: &Document,
    path: &[Seg],
    map: &Map<String, Value>,
    allowed: &[&str],
    what: &str,
) -> Result<(), Error> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(unknown_key(doc, path, key, allowed, what)),
        None => Ok(()),
    }
}

pub(crate) fn text_field(
    doc: &Document,
    path: &[Seg],
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ (Value::String(_) | Value::Number(_))) => Ok(scalar_text(v)),
        Some(_) => {
            let at = child(path, key);
            Err(doc.error_at(&at, format!("`{key}` must be a string")))
        }
    }
}

/// Whether `text` is one word: not empty, no spaces, no control characters (which could
/// forge lines on the operator's terminal). Names, hosts and users must be.
pub(crate) fn is_word(text: &str) -> bool {
    !text.is_empty() && !text.contains(|c: char| c.is_whitespace() || c.is_control())
}

/// A name, host or user: one word of printable characters. An empty one, or one with spaces
/// or control characters (which could forge lines on the operator's terminal), is refused.
pub(crate) fn word_field(
    doc: &Document,
    path: &[Seg],
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, Error> {
    let Some(text) = text_field(doc, path, map, key)? else { return Ok(None) };
    let at = || child(path, key);
    if text.is_empty() {
        return Err(doc
            .error_at(&at(), format!("`{key}` is empty"))
            .hint(format!("give `{key}` a value or leave the key out")));
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(doc
            .error_at(&at(), format!("`{key}` {:?} contains {}", text, describe_char(c)))
            .hint(format!("a {key} is one word without spaces or control characters")));
    }
    Ok(Some(text))
}

pub(crate) fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\t' => "a tab".to_string(),
        '\n' | '\r' => "a line break".to_string(),
        c => format!("the control character U+{:04X}", c as u32),
    }
}

pub(crate) fn port_field(
    doc: &Document,
    path: &[Seg],
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<u16>, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let parsed = match v {
                Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
                Value::String(s) => s.parse::<u16>().ok(),
                _ => None,
            };
            match parsed {
                Some(p) if p > 0 => Ok(Some(p)),
                _ => {
                    let at = child(path, key);
                    Err(doc.error_at(&at, format!("`{key}` must be a port number from 1 to 65535")))
                }
            }
        }
    }
}

pub(crate) fn map_field<'a>(
    doc: &Document,
    path: &[Seg],
    map: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => {
            let at = child(path, key);
            Err(doc.error_at(&at, format!("`{key}` must be a mapping")))
        }
    }
}

pub(crate) fn list_of_text(
    doc: &Document,
    path: &[Seg],
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, Error> {
    let at = child(path, key);
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(_) | Value::Number(_) => Ok(scalar_text(v).unwrap_or_default()),
                _ => Err(doc.error_at(&child(&at, i), format!("`{key}` items must be strings"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v @ Value::String(_)) => Ok(Some(vec![scalar_text(v).unwrap_or_default()])),
        Some(_) => Err(doc.error_at(&at, format!("`{key}` must be a list of strings"))),
    }
}

/// A yes/no key: a YAML boolean, or one of the words Python's strtobool takes (Ansible's
/// habit).
pub(crate) fn bool_field(
    doc: &Document,
    path: &[Seg],
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<bool>, Error> {
    let refuse = |shown: String| {
        doc.error_at(&child(path, key), format!("`{key}` must be true or false{shown}"))
            .hint("yes/no, true/false, on/off and 1/0 are accepted")
    };
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => strtobool(s).map(Some).ok_or_else(|| refuse(format!(", not `{s}`"))),
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 1) => Ok(Some(n.as_u64() == Some(1))),
        Some(_) => Err(refuse(String::new())),
    }
}

/// Python's `strtobool`, which Directord applies to `async`.
pub(crate) fn strtobool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Some(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}
