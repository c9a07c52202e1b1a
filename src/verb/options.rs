//! How a job's argument string and `vars` become options and the rest, for every verb.
//!
//! A known option token is taken out of the argument string wherever it stands (`ls -l
//! --retry 3 /tmp` is `ls -l /tmp` with retry 3), `--opt=v` and `--opt v` both work, and
//! `vars` (keyed by the option name with `_` for `-`) override them. Unlike Directord, a RUN
//! command keeps its own whitespace and newlines, and an unknown option is an error for every
//! verb but those whose arguments are free text (RUN, ECHO, `WAIT --cmd`). Free text that
//! starts with a word one or two letters off an option (`--timout 5 echo hi`) is refused
//! with a did-you-mean; a `--` before the text ends the options: what follows is text, as
//! written. [`Given`] is what a verb's parser reads; the options every verb takes
//! ([`COMMON`]) are read here.

use super::{Parsed, SourceRoots, Spec, Work};
use director_proto::Attrs;
use serde_json::{Map, Value};
use std::time::Duration;

/// The largest number an option takes: seconds and counts beyond a year are mistakes, and
/// bounding them keeps every duration computed from them exact.
pub(crate) const MAX_NUMBER: u64 = 365 * 24 * 3600;

/// Directord's default job timeout.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arity {
    Flag,
    One,
    /// Every following token up to the next `--option`.
    Many,
}

use Arity::{Flag, Many, One};

/// The options every verb takes.
pub(crate) const COMMON: &[(&str, Arity)] = &[
    ("--exec-help", Flag),
    ("--skip-cache", Flag),
    ("--run-once", Flag),
    ("--timeout", One),
    ("--force-lock", Flag),
    ("--stdout-arg", One),
    ("--stderr-arg", One),
];

/// How `--exec-help` describes [`COMMON`].
pub(crate) const COMMON_USAGE: &str = "options every verb takes:\n  --skip-cache        run even if the node cache says it already succeeded\n  --run-once          run on the first target only\n  --timeout SECS      kill the work after SECS (default 600)\n  --stdout-arg NAME   store the job's stdout as the cached arg NAME\n  --stderr-arg NAME   store the job's stderr as the cached arg NAME\n  --force-lock        accepted for Directord compatibility\n  --exec-help         print this and exit\n";

/// The options of ADD, COPY and WORKDIR that set a file's owner and mode.
pub(crate) const FILE_OPTS: &[(&str, Arity)] = &[("--chown", One), ("--chmod", One)];

/// A parse error; `var` names the `vars` key it is about, if any.
#[derive(Debug, PartialEq)]
pub(crate) struct VerbError {
    pub message: String,
    pub hint: Option<String>,
    pub var: Option<String>,
    /// Not an error: `--exec-help` asked for the usage, which is `message`.
    pub help: bool,
}

pub(crate) fn err(message: impl Into<String>) -> VerbError {
    VerbError { message: message.into(), hint: None, var: None, help: false }
}

impl VerbError {
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// An option taken out of a job's arguments, with its values.
pub(crate) type TakenOption = (String, Vec<String>);

/// A job's options and the rest of its arguments, as its verb's parser reads them.
pub(crate) struct Given<'a> {
    /// The verb as written (ADD or COPY, ARG or ENV).
    pub verb: &'a str,
    /// The arguments without the options, their own spacing kept.
    pub rest: String,
    pub roots: &'a SourceRoots,
    usage: &'static str,
    options: Vec<TakenOption>,
}

impl<'a> Given<'a> {
    /// Takes `spec`'s options (and the common ones) out of `args` and `vars`.
    pub(super) fn read(
        spec: &Spec,
        args: &str,
        vars: &Map<String, Value>,
        roots: &'a SourceRoots,
    ) -> Result<Given<'a>, VerbError> {
        let verb = spec.name;
        let known: Vec<(&str, Arity)> = COMMON.iter().chain(spec.options.iter()).copied().collect();
        let (mut options, rest) = split_options(args, &known, spec.free_text)?;
        for (key, value) in vars {
            let Some(&(name, arity)) = known.iter().find(|(n, _)| var_name(n) == *key) else {
                let names: Vec<String> = known.iter().map(|(n, _)| var_name(n)).collect();
                let e = VerbError { var: Some(key.clone()), ..err(format!("unknown var `{key}` for {verb}")) };
                return Err(match crate::error::suggest(key, names.iter().map(String::as_str)) {
                    Some(s) => e.hint(format!("did you mean `{s}`?")),
                    None => e.hint(format!("{verb} takes: {}", names.join(", "))),
                });
            };
            options.retain(|(n, _)| n != name);
            if let Some(values) = var_values(key, value, arity)? {
                options.push((name.to_string(), values));
            }
        }
        if options.iter().any(|(n, _)| n == "--exec-help") {
            return Err(VerbError { help: true, ..err(spec.usage()) });
        }
        Ok(Given { verb, rest, roots, usage: (spec.usage)(verb), options })
    }

    /// The values of an option, if it was given.
    pub(crate) fn get(&self, name: &str) -> Option<&[String]> {
        self.options.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value of an option that takes one.
    pub(crate) fn one(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| v.first()).cloned()
    }

    /// The values of an option that takes many (none when it was not given).
    pub(crate) fn many(&self, name: &str) -> Vec<String> {
        self.get(name).map(<[String]>::to_vec).unwrap_or_default()
    }

    /// The values of every occurrence of an option, in order (`--hook a=1 --hook b=2`).
    pub(crate) fn every(&self, name: &str) -> Vec<String> {
        self.options.iter().filter(|(n, _)| n == name).flat_map(|(_, v)| v.iter().cloned()).collect()
    }

    /// A whole number option, at most [`MAX_NUMBER`].
    pub(crate) fn number(&self, name: &str) -> Result<Option<u64>, VerbError> {
        let Some(v) = self.one(name) else { return Ok(None) };
        let n = v.parse::<u64>().map_err(|_| err(format!("option `{name}` needs a whole number, not `{v}`")))?;
        if n > MAX_NUMBER {
            return Err(err(format!("option `{name}` is at most {MAX_NUMBER} (a year in seconds), not `{v}`")));
        }
        if name == "--timeout" && n == 0 {
            return Err(err("`--timeout 0` would stop the job before it starts")
                .hint("give the seconds the job may take, at least 1"));
        }
        Ok(Some(n))
    }

    /// `--retry N` of RUN, SERVICE and the package verbs: how many times to try in all, at
    /// least once (the default).
    pub(crate) fn attempts(&self) -> Result<u32, VerbError> {
        Ok(self.number("--retry")?.unwrap_or(1).max(1) as u32)
    }

    /// `--chown` and `--chmod` ([`FILE_OPTS`]).
    pub(crate) fn attrs(&self) -> Result<Attrs, VerbError> {
        let mut attrs = Attrs::default();
        if let Some(chown) = self.one("--chown") {
            let (user, group) = match chown.split_once(':') {
                Some((u, g)) => (u.to_string(), Some(g.to_string()).filter(|g| !g.is_empty())),
                None => (chown.clone(), None),
            };
            if user.is_empty() {
                return Err(err(format!("`--chown {chown}` names no user"))
                    .hint("use USER or USER:GROUP, names or numeric ids"));
            }
            attrs.owner = Some(user);
            attrs.group = group;
        }
        if let Some(mode) = self.one("--chmod") {
            let m = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| err(format!("`--chmod {mode}` is not an octal mode")).hint("e.g. --chmod 0644"))?;
            attrs.mode = Some(m);
        }
        Ok(attrs)
    }

    /// The rest of the arguments, split at whitespace.
    pub(crate) fn words(&self) -> Vec<&str> {
        self.rest.split_whitespace().collect()
    }

    /// The usage's synopsis, as a hint.
    pub(crate) fn usage_hint(&self) -> String {
        format!("usage: {}", self.usage.lines().next().unwrap_or(""))
    }

    /// An error unless `ok`: "VERB needs WHAT", with the synopsis as hint.
    pub(crate) fn need(&self, ok: bool, what: &str) -> Result<(), VerbError> {
        if ok {
            Ok(())
        } else {
            Err(err(format!("{} needs {what}", self.verb)).hint(self.usage_hint()))
        }
    }

    /// The job: `work` with the options every verb takes.
    pub(super) fn common(&self, work: Work) -> Result<Parsed, VerbError> {
        Ok(Parsed {
            work,
            timeout: Duration::from_secs(self.number("--timeout")?.unwrap_or(DEFAULT_TIMEOUT.as_secs())),
            run_once: self.has("--run-once"),
            skip_cache: self.has("--skip-cache"),
            stdout_arg: self.one("--stdout-arg"),
            stderr_arg: self.one("--stderr-arg"),
        })
    }
}

/// Takes the known option tokens out of `args` and returns them with what is left, whose own
/// spacing and newlines are kept. With `free_text`, unknown `--options` stay in the rest.
pub(crate) fn split_options(
    args: &str,
    known: &[(&str, Arity)],
    free_text: bool,
) -> Result<(Vec<TakenOption>, String), VerbError> {
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
        let known_option = known.iter().find(|(n, _)| *n == flag);
        // Free text starting with a word one or two letters off an option is a misspelt
        // option, not a command (`--timout 5 echo hi`); `--` before the text says it is text.
        let leading = free_text && rest.is_empty() && known_option.is_none();
        let misspelt = if leading && flag.starts_with("--") && flag.len() > 2 {
            crate::error::suggest(flag, known.iter().map(|(n, _)| *n))
        } else {
            None
        };
        match known_option {
            None if leading && tok == "--" => {
                if let (Some(&(next, _)), Some(&(_, end))) = (tokens.get(i + 1), tokens.last()) {
                    rest.push_str(&args[next..end]);
                }
                break;
            }
            None if misspelt.is_some() => {
                let option = misspelt.unwrap_or_default();
                return Err(err(format!("`{flag}` is not an option here: did you mean `{option}`?"))
                    .hint(format!("if the text really starts with `{flag}`, put -- before it: `-- {tok} …`")));
            }
            Some(&(name, arity)) => {
                let mut values = Vec::new();
                match (arity, inline) {
                    (Flag, Some(_)) => return Err(err(format!("option `{name}` takes no value"))),
                    (Flag, None) => {}
                    (_, Some(v)) => values.push(v),
                    (One, None) => {
                        i += 1;
                        match tokens.get(i) {
                            Some(&(vs, ve)) => values.push(args[vs..ve].to_string()),
                            None => return Err(err(format!("option `{name}` needs a value"))),
                        }
                    }
                    (Many, None) => {
                        while let Some(&(vs, ve)) = tokens.get(i + 1) {
                            if args[vs..ve].starts_with("--") {
                                break;
                            }
                            values.push(args[vs..ve].to_string());
                            i += 1;
                        }
                        if values.is_empty() {
                            return Err(err(format!("option `{name}` needs at least one value")));
                        }
                    }
                }
                options.push((name.to_string(), values));
            }
            None if !free_text && flag.starts_with("--") && flag.len() > 2 => {
                let names = known.iter().map(|(n, _)| *n);
                let e = err(format!("unknown option `{flag}`"));
                return Err(match crate::error::suggest(flag, names) {
                    Some(s) => e.hint(format!("did you mean `{s}`?")),
                    None => e,
                });
            }
            None => {
                if !rest.is_empty() {
                    // The spacing right before this token is kept; spacing before a removed
                    // option goes with it.
                    rest.push_str(&args[tokens[i - 1].1..s]);
                }
                rest.push_str(tok);
            }
        }
        i += 1;
    }
    Ok((options, rest))
}

/// The option's `vars` name: `--stdout-arg` → `stdout_arg`.
fn var_name(option: &str) -> String {
    option.trim_start_matches('-').replace('-', "_")
}

/// `vars` values as option values: a bool switches a flag, anything else is its text (a
/// mapping its JSON).
fn var_values(key: &str, value: &Value, arity: Arity) -> Result<Option<Vec<String>>, VerbError> {
    let bad = |what: &str| VerbError { var: Some(key.to_string()), ..err(format!("`{key}` must be {what}")) };
    match (arity, value) {
        (Flag, Value::Bool(true)) => Ok(Some(Vec::new())),
        (Flag, Value::Bool(false)) | (_, Value::Null) => Ok(None),
        (Flag, _) => Err(bad("true or false")),
        (Many, Value::Array(items)) => Ok(Some(items.iter().map(text_of).collect())),
        // A mapping (CONTAINER_CONFIG_DATA's overrides) is its JSON text.
        (One, v @ Value::Object(_)) => Ok(Some(vec![v.to_string()])),
        (_, Value::Array(_) | Value::Object(_)) => Err(bad("a single value")),
        (_, v) => Ok(Some(vec![text_of(v)])),
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
