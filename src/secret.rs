//! Values marked secret, and how they are kept out of everything director writes.
//!
//! A value is secret when it is written with `ARG --secret` or `ENV --secret`, named in a
//! catalog's `secrets:` list, read from a catalog's `secrets_file:`, or given as a
//! `DIRECTOR_SECRET_<NAME>` environment variable. The node still gets the real value (ENV
//! values travel as the environment of commands, never on a command line); everything else
//! sees `[secret]` in its place: events (so `--json`, the screen and the history, which are
//! all written from events), the jobs' definitions and the command line the history records.
//!
//! [`Secrets`] sits at the engine's event sink. Output arrives in chunks, so a secret could
//! be cut in two by a chunk boundary: the tail of a chunk that could be the start of a secret
//! is held back until the next chunk of that stream (or the job's end) tells.

use crate::event::{Event, Stream};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

/// What a secret value is replaced with.
pub(crate) const MASK: &str = "[secret]";

#[derive(Debug, Default)]
pub struct Secrets {
    /// Longest first, so a secret that contains another is masked whole.
    values: RwLock<Vec<String>>,
    /// Output held back per (node, job, stream): it may be the start of a secret.
    held: Mutex<HashMap<(String, usize, Stream), String>>,
}

impl Secrets {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let secrets = Secrets::default();
        for v in values {
            secrets.add(&v);
        }
        secrets
    }

    /// Marks `value` secret from now on (an empty value masks nothing).
    pub fn add(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        let mut values = self.values.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !values.iter().any(|v| v == value) {
            values.push(value.to_string());
            values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Marks every string inside `value` secret (a secret list or mapping).
    pub fn add_value(&self, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => self.add(s),
            serde_json::Value::Array(items) => items.iter().for_each(|v| self.add_value(v)),
            serde_json::Value::Object(map) => map.values().for_each(|v| self.add_value(v)),
            serde_json::Value::Number(n) => self.add(&n.to_string()),
            _ => {}
        }
    }

    /// Whether a secret value occurs in `text`, as written or as a JSON string holds it
    /// (quotes, backslashes and control characters escaped).
    pub fn occurs_in(&self, text: &str) -> bool {
        let values = self.values.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        values.iter().any(|v| {
            text.contains(v.as_str()) || {
                let quoted = serde_json::to_string(v).unwrap_or_default();
                let escaped = &quoted[1..quoted.len().saturating_sub(1).max(1)];
                escaped != v && text.contains(escaped)
            }
        })
    }

    pub fn is_empty(&self) -> bool {
        self.values.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }

    /// `text` with every secret value replaced by [`MASK`].
    pub fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let values = self.values.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Cow::Borrowed(text);
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = Cow::Owned(out.replace(v.as_str(), MASK));
            }
        }
        out
    }

    /// The events to send for `event`: masked, with output held back where a secret may
    /// continue in the next chunk, and what was held flushed when its job finishes.
    pub fn filter(&self, mut event: Event) -> Vec<Event> {
        if self.is_empty() {
            return vec![event];
        }
        let mut out = Vec::with_capacity(1);
        match &mut event {
            Event::JobOutput { node, job, stream, data } => {
                let key = (node.clone(), *job, *stream);
                let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut text = held.remove(&key).unwrap_or_default();
                text.push_str(data);
                let keep = self.partial_tail(&text);
                let tail = text.split_off(text.len() - keep);
                if !tail.is_empty() {
                    held.insert(key, tail);
                }
                if text.is_empty() {
                    return out;
                }
                *data = text;
            }
            Event::JobFinished { node, job, .. } => {
                let mut held = self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for stream in [Stream::Stdout, Stream::Stderr] {
                    if let Some(rest) = held.remove(&(node.clone(), *job, stream)) {
                        let data = self.mask(&rest).into_owned();
                        out.push(Event::JobOutput { node: node.clone(), job: *job, stream, data });
                    }
                }
            }
            _ => {}
        }
        event.map_texts(|s| {
            if let Cow::Owned(masked) = self.mask(s) {
                *s = masked;
            }
        });
        out.push(event);
        out
    }

    /// Bytes at the end of `text` that are the start of a secret (but not a whole one).
    fn partial_tail(&self, text: &str) -> usize {
        let values = self.values.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bytes = text.as_bytes();
        values
            .iter()
            .filter_map(|v| {
                let v = v.as_bytes();
                (1..v.len().min(bytes.len() + 1)).rev().find(|&k| bytes.ends_with(&v[..k]))
            })
            .max()
            .unwrap_or(0)
    }
}

/// The values of the `DIRECTOR_SECRET_<NAME>` environment variables, as catalog vars named
/// `<name>` (lower case), for every node.
pub(crate) fn from_environment() -> serde_json::Map<String, serde_json::Value> {
    std::env::vars()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("DIRECTOR_SECRET_")?;
            (!name.is_empty()).then(|| (name.to_ascii_lowercase(), serde_json::Value::String(v)))
        })
        .collect()
}

/// The become password of a run (`--ask-become-pass`, `--become-password-file`): held in
/// memory only, shown as `[secret]` by `Debug`, zeroed when dropped. The engine adds it to
/// the run's [`Secrets`] and writes it only to a become method's standard input.
pub(crate) struct Password(zeroize::Zeroizing<String>);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Password({MASK})")
    }
}

impl Password {
    /// One line of text; a line break would end the password early at the node's prompt.
    pub(crate) fn new(text: String) -> Result<Password, String> {
        let mut text = zeroize::Zeroizing::new(text);
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        if text.is_empty() {
            return Err("the become password is empty".to_string());
        }
        if text.contains(['\n', '\r']) {
            return Err("the become password holds a line break".to_string());
        }
        Ok(Password(text))
    }

    pub(crate) fn reveal(&self) -> &str {
        &self.0
    }
}

/// Where the become password comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum PasswordSource {
    #[default]
    None,
    /// `--ask-become-pass`: asked on the terminal (echo off) when stdin is one, else one line
    /// read from stdin, as `sudo -S` reads it.
    Ask,
    /// `--become-password-file`: its first line; the file must be private to its owner.
    File(std::path::PathBuf),
}

impl PasswordSource {
    /// Reads the password, once, before anything is contacted.
    pub(crate) fn read(&self) -> Result<Option<Password>, crate::error::Error> {
        use crate::error::Error;
        use std::io::{BufRead, IsTerminal};
        let text = match self {
            PasswordSource::None => return Ok(None),
            PasswordSource::Ask if std::io::stdin().is_terminal() => rpassword::prompt_password("BECOME password: ")
                .map_err(|e| Error::input(format!("--ask-become-pass: cannot read the password: {e}")))?,
            PasswordSource::Ask => {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                    Error::input(format!("--ask-become-pass: cannot read the password from stdin: {e}"))
                })?;
                line
            }
            PasswordSource::File(path) => {
                use std::os::unix::fs::MetadataExt;
                let refuse = |why: String| {
                    Error::input(format!("--become-password-file {}: {why}", path.display()))
                        .hint("write the password as the file's first line, in a file only you can read (chmod 600)")
                };
                let meta = std::fs::metadata(path).map_err(|e| refuse(crate::error::io_reason(&e)))?;
                if !meta.is_file() {
                    return Err(refuse("not a regular file".into()));
                }
                if meta.mode() & 0o077 != 0 {
                    return Err(refuse(format!("others can read or change it (mode {:04o})", meta.mode() & 0o7777)));
                }
                let text = zeroize::Zeroizing::new(
                    std::fs::read_to_string(path).map_err(|e| refuse(crate::error::io_reason(&e)))?,
                );
                text.lines().next().unwrap_or_default().to_string()
            }
        };
        let (flag, hint) = match self {
            PasswordSource::File(path) => {
                (format!("--become-password-file {}", path.display()), "write the password as the file's first line")
            }
            _ => ("--ask-become-pass".to_string(), "type the password at the prompt, or pipe it on stdin"),
        };
        Password::new(text).map(Some).map_err(|why| Error::input(format!("{flag}: {why}")).hint(hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(data: &str) -> Event {
        Event::JobOutput { node: "n".into(), job: 0, stream: Stream::Stdout, data: data.into() }
    }

    fn data(events: &[Event]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                Event::JobOutput { data, .. } => Some(data.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_text_of_an_event_is_masked() {
        let s = Secrets::new(["hunter2".to_string(), "hunter2-long".to_string()]);
        assert_eq!(s.mask("pw=hunter2-long and hunter2"), "pw=[secret] and [secret]");
        let e = Event::JobFinished {
            node: "n".into(),
            job: 0,
            name: "ENV PW hunter2".into(),
            status: crate::event::JobStatus::Failed,
            exit_code: None,
            reason: Some("bad hunter2".into()),
            ms: 0,
        };
        match &s.filter(e)[..] {
            [Event::JobFinished { name, reason, .. }] => {
                assert_eq!((name.as_str(), reason.as_deref()), ("ENV PW [secret]", Some("bad [secret]")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_secret_cut_by_chunks_is_still_masked() {
        let s = Secrets::new(["hunter2".to_string()]);
        let mut seen = Vec::new();
        for chunk in ["pass: hun", "te", "r2 ok; hu", "nt"] {
            seen.extend(s.filter(output(chunk)));
        }
        seen.extend(s.filter(Event::JobFinished {
            node: "n".into(),
            job: 0,
            name: "x".into(),
            status: crate::event::JobStatus::Ok,
            exit_code: Some(0),
            reason: None,
            ms: 0,
        }));
        assert_eq!(data(&seen), "pass: [secret] ok; hunt");
        assert!(matches!(seen.last(), Some(Event::JobFinished { .. })));
        // Without secrets nothing is held.
        assert_eq!(data(&Secrets::default().filter(output("hun"))), "hun");
    }
}
