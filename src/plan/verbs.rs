//! Directord's job language: every verb, its options, its usage text, and what a job of it
//! does ([`Work`]), parsed from the argument string and the job's `vars`.
//!
//! Options are read the Directord way: a known option token is taken out of the argument
//! string wherever it stands (`ls -l --retry 3 /tmp` is `ls -l /tmp` with retry 3), `--opt=v`
//! and `--opt v` both work, and `vars` (keyed by the option name with `_` for `-`) override
//! them. Unlike Directord, a RUN command keeps its own whitespace and newlines, and an unknown
//! option is an error for every verb but RUN, ECHO and the command of `WAIT --cmd`, whose
//! arguments are free text.

use super::literal;
use director_proto::Attrs;
use serde_json::{Map, Value};
use sha3::{Digest, Sha3_224};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest number an option takes: seconds and counts beyond a year are mistakes, and
/// bounding them keeps every duration computed from them exact.
pub const MAX_NUMBER: u64 = 365 * 24 * 3600;

/// Directord's default job timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Verbs Directord has that director does not run yet; refused at plan time.
pub const NOT_YET: &[&str] =
    &["DNF", "SERVICE", "REBOOT", "FACTER", "CONTAINER_IMAGE", "POD", "SECONTEXT", "CONTAINER_CONFIG_DATA"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Flag,
    One,
    /// Every following token up to the next `--option`.
    Many,
}

use Arity::{Flag, Many, One};

/// The options every verb takes.
const COMMON: &[(&str, Arity)] = &[
    ("--exec-help", Flag),
    ("--skip-cache", Flag),
    ("--run-once", Flag),
    ("--timeout", One),
    ("--force-lock", Flag),
    ("--stdout-arg", One),
    ("--stderr-arg", One),
];

pub struct VerbSpec {
    pub name: &'static str,
    pub usage: &'static str,
    pub options: &'static [(&'static str, Arity)],
    /// A success is recorded in the node cache and not repeated while nothing changed.
    pub cacheable: bool,
    /// Unknown `--options` are part of the arguments (a shell command, words to echo).
    free_text: bool,
}

const FILE_OPTS: &[(&str, Arity)] = &[("--chown", One), ("--chmod", One)];

pub const VERBS: &[VerbSpec] = &[
    VerbSpec { name: "RUN", usage: "RUN [--no-block] [--retry N] COMMAND...\n  Run COMMAND with /bin/sh on the node; it succeeds when the command exits 0.\n  --no-block  start it in the background and succeed at once\n  --retry N   try up to N times until it succeeds (default 1)", options: &[("--no-block", Flag), ("--retry", One)], cacheable: true, free_text: true },
    VerbSpec { name: "ARG", usage: "ARG [--extend-args] [--secret] KEY VALUE\n  Store VALUE (a Python literal, else text) as the cached arg KEY on the node; templates see it.\n  --extend-args  extend lists and merge mappings instead of replacing\n  --secret       the value is secret: shown and recorded as [secret]", options: &[("--extend-args", Flag), ("--secret", Flag)], cacheable: false, free_text: false },
    VerbSpec { name: "ENV", usage: "ENV [--extend-args] [--secret] KEY VALUE\n  Store VALUE as the environment variable KEY for later commands on the node.\n  --extend-args  extend lists and merge mappings instead of replacing\n  --secret       the value is secret: shown and recorded as [secret]", options: &[("--extend-args", Flag), ("--secret", Flag)], cacheable: false, free_text: false },
    VerbSpec { name: "ADD", usage: "ADD [--chown USER[:GROUP]] [--chmod MODE] [--blueprint] SRC... DEST\n  Copy local files (globs allowed) to DEST on the node; a DEST ending in / is a directory.\n  --chown      owner (and group) of the file\n  --chmod      octal mode, e.g. 0644\n  --blueprint  render the file as a template with the node's cached args", options: &[("--chown", One), ("--chmod", One), ("--blueprint", Flag)], cacheable: true, free_text: false },
    VerbSpec { name: "COPY", usage: "COPY [--chown USER[:GROUP]] [--chmod MODE] [--blueprint] SRC... DEST\n  Same as ADD.", options: &[("--chown", One), ("--chmod", One), ("--blueprint", Flag)], cacheable: true, free_text: false },
    VerbSpec { name: "WORKDIR", usage: "WORKDIR [--chown USER[:GROUP]] [--chmod MODE] PATH\n  Create the directory PATH and its parents on the node.", options: FILE_OPTS, cacheable: true, free_text: false },
    VerbSpec { name: "CACHEFILE", usage: "CACHEFILE PATH\n  Load the YAML or JSON file PATH on the node into the cached args.", options: &[], cacheable: false, free_text: false },
    VerbSpec { name: "CACHEEVICT", usage: "CACHEEVICT TAG\n  Forget part of the node cache: jobs, parents, args, envs, query, all, or one job fingerprint.", options: &[], cacheable: false, free_text: false },
    VerbSpec { name: "QUERY", usage: "QUERY [--no-wait] KEY\n  Collect the cached arg KEY from every target of the job and store the map as\n  query.<node>.<key> on each of them.\n  --no-wait  accepted for Directord compatibility; the collection always completes", options: &[("--no-wait", Flag)], cacheable: false, free_text: false },
    VerbSpec { name: "QUERY_WAIT", usage: "QUERY_WAIT ITEM [--query-timeout SECS] [--identity NODE...]\n  Wait until query.<node>.ITEM is known for every listed node (or for any node).", options: &[("--query-timeout", One), ("--identity", Many)], cacheable: false, free_text: false },
    VerbSpec { name: "JOB_WAIT", usage: "JOB_WAIT FINGERPRINT --identity NODE...\n  Wait until the job with FINGERPRINT has finished on every listed node.", options: &[("--identity", Many)], cacheable: false, free_text: false },
    VerbSpec { name: "WAIT", usage: "WAIT (--seconds N | --url URL | --cmd COMMAND...) [--retry N] [--retry-wait SECS] [--insecure]\n  Sleep, or wait for a URL to answer 2xx/3xx, or for a command to succeed, on the node.\n  --retry N         attempts after the first (default 30)\n  --retry-wait S    seconds between attempts (default 1)\n  --insecure        do not verify TLS certificates", options: &[("--seconds", One), ("--url", Flag), ("--cmd", Flag), ("--retry", One), ("--retry-wait", One), ("--insecure", Flag)], cacheable: true, free_text: true },
    VerbSpec { name: "ECHO", usage: "ECHO WORDS...\n  Print WORDS on the node.", options: &[], cacheable: true, free_text: true },
    VerbSpec { name: "QUEUESENTINEL", usage: "QUEUESENTINEL [ANYTHING]\n  Drop every job not yet started on the node, in this run and in any other director run\n  there (they are reported skipped).", options: &[], cacheable: false, free_text: true },
];

pub fn spec(verb: &str) -> Option<&'static VerbSpec> {
    VERBS.iter().find(|v| v.name == verb)
}

/// The usage `--exec-help` prints, with the options every verb takes.
pub fn usage(spec: &VerbSpec) -> String {
    format!(
        "usage: {}\n\noptions every verb takes:\n  --skip-cache        run even if the node cache says it already succeeded\n  --run-once          run on the first target only\n  --timeout SECS      kill the work after SECS (default 600)\n  --stdout-arg NAME   store the job's stdout as the cached arg NAME\n  --stderr-arg NAME   store the job's stderr as the cached arg NAME\n  --force-lock        accepted for Directord compatibility\n  --exec-help         print this and exit\n",
        spec.usage
    )
}

/// One local file an ADD/COPY sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub path: PathBuf,
    pub size: u64,
    /// sha3-224 of the content, hex.
    pub sha3: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WaitOn {
    Seconds(u64),
    Url(String),
    Cmd(String),
}

/// What a job does on a node. Strings marked "template" are rendered on each node with its
/// cached args just before the job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// `command` is a template.
    Run {
        command: String,
        retry: u32,
        no_block: bool,
    },
    /// ARG (`env: false`) or ENV; string parts of `value` are templates. A `secret` value is
    /// masked everywhere but on the node.
    Arg {
        env: bool,
        key: String,
        value: Value,
        extend: bool,
        secret: bool,
    },
    /// `dest` is a template; with `blueprint`, so is each file's content.
    Copy {
        sources: Vec<Source>,
        dest: String,
        attrs: Attrs,
        blueprint: bool,
    },
    /// `path` is a template.
    Workdir {
        path: String,
        attrs: Attrs,
    },
    CacheFile {
        path: String,
    },
    CacheEvict {
        tag: String,
    },
    Query {
        key: String,
    },
    QueryWait {
        item: String,
        timeout: Duration,
        identities: Vec<String>,
    },
    JobWait {
        fingerprint: String,
        identities: Vec<String>,
    },
    /// URL and command are templates.
    Wait {
        on: WaitOn,
        retry: u32,
        retry_wait: Duration,
        insecure: bool,
    },
    Echo {
        text: String,
    },
    QueueSentinel,
    /// A bootstrap RUN: the whole string is the shell command (no options), a template.
    Shell {
        command: String,
    },
    /// A bootstrap ADD: `source` (on the operator, looked up in `roots`) and `dest` are
    /// templates, resolved on each node when the job runs.
    Send {
        source: String,
        dest: String,
        roots: Vec<PathBuf>,
    },
    /// A bootstrap GET: copy `remote` from the node to `local` on the operator; templates.
    Fetch {
        remote: String,
        local: String,
    },
}

impl Work {
    /// The texts of this work that are templates, rendered on each node (a blueprint's file
    /// content is one too, read when needed).
    pub fn templates(&self) -> Vec<&str> {
        fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::String(s) => out.push(s),
                Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
                Value::Object(map) => map.values().for_each(|i| strings(i, out)),
                _ => {}
            }
        }
        let mut texts: Vec<&str> = Vec::new();
        match self {
            Work::Run { command, .. } | Work::Shell { command } => texts.push(command),
            Work::Workdir { path, .. } => texts.push(path),
            Work::Wait { on: WaitOn::Url(t) | WaitOn::Cmd(t), .. } => texts.push(t),
            Work::Arg { value, .. } => strings(value, &mut texts),
            Work::Send { source, dest, .. } => texts.extend([source.as_str(), dest.as_str()]),
            Work::Fetch { remote, local } => texts.extend([remote.as_str(), local.as_str()]),
            Work::Copy { dest, .. } => texts.push(dest),
            _ => {}
        }
        texts
    }
}

/// A parsed job: its work and the options every verb has.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub work: Work,
    pub timeout: Duration,
    pub run_once: bool,
    pub skip_cache: bool,
    pub stdout_arg: Option<String>,
    pub stderr_arg: Option<String>,
}

/// A parse error; `var` names the `vars` key it is about, if any.
#[derive(Debug, PartialEq)]
pub struct VerbError {
    pub message: String,
    pub hint: Option<String>,
    pub var: Option<String>,
    /// Not an error: `--exec-help` asked for the usage, which is `message`.
    pub help: bool,
}

fn err(message: impl Into<String>) -> VerbError {
    VerbError { message: message.into(), hint: None, var: None, help: false }
}

impl VerbError {
    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// An option taken out of a job's arguments, with its values.
pub type TakenOption = (String, Vec<String>);

/// Takes the known option tokens out of `args` and returns them with what is left, whose own
/// spacing and newlines are kept. With `free_text`, unknown `--options` stay in the rest.
pub fn split_options(
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
        match known.iter().find(|(n, _)| *n == flag) {
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
                return Err(match crate::suggest(flag, names) {
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

/// `vars` values as option values: a bool switches a flag, anything else is its text.
fn var_values(key: &str, value: &Value, arity: Arity) -> Result<Option<Vec<String>>, VerbError> {
    let bad = |what: &str| VerbError { var: Some(key.to_string()), ..err(format!("`{key}` must be {what}")) };
    match (arity, value) {
        (Flag, Value::Bool(true)) => Ok(Some(Vec::new())),
        (Flag, Value::Bool(false)) | (_, Value::Null) => Ok(None),
        (Flag, _) => Err(bad("true or false")),
        (Many, Value::Array(items)) => Ok(Some(items.iter().map(text_of).collect())),
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

/// Where ADD/COPY look for relative sources: the working directory, then the directory of
/// the orchestration file.
pub struct SourceRoots {
    pub cwd: PathBuf,
    pub file_dir: Option<PathBuf>,
}

/// Parses one job of `verb` from its argument string and `vars`.
pub fn parse(verb: &str, args: &str, vars: &Map<String, Value>, roots: &SourceRoots) -> Result<Parsed, VerbError> {
    let spec = spec(verb).ok_or_else(|| err(format!("verb `{verb}` is not supported yet")))?;
    let known: Vec<(&str, Arity)> = COMMON.iter().chain(spec.options.iter()).copied().collect();
    let (mut options, rest) = split_options(args, &known, spec.free_text)?;
    for (key, value) in vars {
        let Some(&(name, arity)) = known.iter().find(|(n, _)| var_name(n) == *key) else {
            let names: Vec<String> = known.iter().map(|(n, _)| var_name(n)).collect();
            let e = VerbError { var: Some(key.clone()), ..err(format!("unknown var `{key}` for {verb}")) };
            return Err(match crate::suggest(key, names.iter().map(String::as_str)) {
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
        return Err(VerbError { help: true, ..err(usage(spec)) });
    }
    let get = |name: &str| options.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
    let has = |name: &str| get(name).is_some();
    let one = |name: &str| get(name).and_then(|v| v.first()).cloned();
    let number = |name: &str| -> Result<Option<u64>, VerbError> {
        let Some(v) = one(name) else { return Ok(None) };
        let n = v.parse::<u64>().map_err(|_| err(format!("option `{name}` needs a whole number, not `{v}`")))?;
        if n > MAX_NUMBER {
            return Err(err(format!("option `{name}` is at most {MAX_NUMBER} (a year in seconds), not `{v}`")));
        }
        if name == "--timeout" && n == 0 {
            return Err(err("`--timeout 0` would stop the job before it starts")
                .hint("give the seconds the job may take, at least 1"));
        }
        Ok(Some(n))
    };
    let attrs = || -> Result<Attrs, VerbError> {
        let mut attrs = Attrs::default();
        if let Some(chown) = one("--chown") {
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
        if let Some(mode) = one("--chmod") {
            let m = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| err(format!("`--chmod {mode}` is not an octal mode")).hint("e.g. --chmod 0644"))?;
            attrs.mode = Some(m);
        }
        Ok(attrs)
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let usage_hint = || format!("usage: {}", spec.usage.lines().next().unwrap_or(""));
    let need =
        |ok: bool, what: &str| if ok { Ok(()) } else { Err(err(format!("{verb} needs {what}")).hint(usage_hint())) };

    let work = match verb {
        "RUN" => {
            need(!rest.trim().is_empty(), "a command")?;
            Work::Run {
                command: rest.clone(),
                retry: number("--retry")?.unwrap_or(1).max(1) as u32,
                no_block: has("--no-block"),
            }
        }
        "ARG" | "ENV" => {
            need(!words.is_empty(), "a key and a value")?;
            let (key, value) = match rest.trim().split_once(char::is_whitespace) {
                Some((k, v)) => (k.to_string(), literal::parse(&v.split_whitespace().collect::<Vec<_>>().join(" "))),
                None => (rest.trim().to_string(), Value::Null),
            };
            Work::Arg { env: verb == "ENV", key, value, extend: has("--extend-args"), secret: has("--secret") }
        }
        "ADD" | "COPY" => {
            need(words.len() >= 2, "at least one source and a destination")?;
            let (dest, patterns) = words.split_last().expect("two words");
            let mut sources = Vec::new();
            for pattern in patterns {
                sources.extend(resolve_sources(pattern, roots)?);
            }
            if sources.len() > 1 && !dest.ends_with('/') {
                return Err(err(format!(
                    "{} files match but the destination `{dest}` does not end with /",
                    sources.len()
                ))
                .hint(format!("copy them into a directory: `{dest}/`")));
            }
            Work::Copy { sources, dest: dest.to_string(), attrs: attrs()?, blueprint: has("--blueprint") }
        }
        "WORKDIR" => {
            need(words.len() == 1, "one path")?;
            Work::Workdir { path: words[0].to_string(), attrs: attrs()? }
        }
        "CACHEFILE" => {
            need(words.len() == 1, "one path")?;
            Work::CacheFile { path: words[0].to_string() }
        }
        "CACHEEVICT" => {
            need(words.len() == 1, "one tag")?;
            let tag = words[0];
            let fingerprint = tag.len() == 56 && tag.bytes().all(|b| b.is_ascii_hexdigit());
            if !fingerprint && !["jobs", "parents", "args", "envs", "query", "all"].contains(&tag) {
                return Err(err(format!("CACHEEVICT does not know the tag `{tag}`"))
                    .hint("use jobs, parents, args, envs, query, all, or a job fingerprint (56 hex digits)"));
            }
            Work::CacheEvict { tag: tag.to_string() }
        }
        "QUERY" => {
            need(words.len() == 1, "one key")?;
            Work::Query { key: words[0].to_string() }
        }
        "QUERY_WAIT" => {
            need(words.len() == 1, "one item")?;
            Work::QueryWait {
                item: words[0].to_string(),
                timeout: Duration::from_secs(number("--query-timeout")?.unwrap_or(600)),
                identities: get("--identity").map(<[String]>::to_vec).unwrap_or_default(),
            }
        }
        "JOB_WAIT" => {
            need(words.len() == 1, "one job fingerprint")?;
            let identities = get("--identity").map(<[String]>::to_vec).unwrap_or_default();
            need(!identities.is_empty(), "`--identity NODE...`")?;
            Work::JobWait { fingerprint: words[0].to_string(), identities }
        }
        "WAIT" => {
            let on = match (number("--seconds")?, has("--url"), has("--cmd")) {
                (Some(s), false, false) => {
                    need(rest.trim().is_empty(), "nothing after `--seconds N`")?;
                    WaitOn::Seconds(s)
                }
                (None, true, false) => {
                    need(words.len() == 1, "one URL after --url")?;
                    WaitOn::Url(words[0].to_string())
                }
                (None, false, true) => {
                    need(!rest.trim().is_empty(), "a command after --cmd")?;
                    WaitOn::Cmd(rest.clone())
                }
                _ => {
                    return Err(
                        err("WAIT needs exactly one of --seconds N, --url URL, --cmd COMMAND").hint(usage_hint())
                    )
                }
            };
            Work::Wait {
                on,
                retry: number("--retry")?.unwrap_or(30) as u32,
                retry_wait: Duration::from_secs(number("--retry-wait")?.unwrap_or(1)),
                insecure: has("--insecure"),
            }
        }
        "ECHO" => Work::Echo { text: words.join(" ") },
        "QUEUESENTINEL" => Work::QueueSentinel,
        _ => return Err(err(format!("verb `{verb}` is not supported yet"))),
    };
    Ok(Parsed {
        work,
        timeout: Duration::from_secs(number("--timeout")?.unwrap_or(DEFAULT_TIMEOUT.as_secs())),
        run_once: has("--run-once"),
        skip_cache: has("--skip-cache"),
        stdout_arg: one("--stdout-arg"),
        stderr_arg: one("--stderr-arg"),
    })
}

/// A bootstrap ADD's source: one file (not a pattern), looked up in `bases` in order.
pub fn find_source(path: &str, bases: &[PathBuf]) -> Result<Source, VerbError> {
    let p = Path::new(path);
    let candidates: Vec<PathBuf> =
        if p.is_absolute() { vec![p.to_path_buf()] } else { bases.iter().map(|b| b.join(p)).collect() };
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => hash_source(found),
        None => {
            let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
            Err(err(format!("ADD source `{path}` is not a file on the operator (looked for {})", looked.join(" and "))))
        }
    }
}

/// The regular files a source pattern names, sorted, each hashed.
fn resolve_sources(pattern: &str, roots: &SourceRoots) -> Result<Vec<Source>, VerbError> {
    let mut bases = vec![roots.cwd.clone()];
    if let Some(dir) = &roots.file_dir {
        if *dir != roots.cwd {
            bases.push(dir.clone());
        }
    }
    for base in &bases {
        let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { base.join(pattern) };
        let escaped = full.to_string_lossy().into_owned();
        let paths =
            glob::glob(&escaped).map_err(|e| err(format!("source `{pattern}` is not a valid pattern: {}", e.msg)))?;
        let mut files: Vec<PathBuf> = paths.flatten().filter(|p| p.is_file()).collect();
        files.sort();
        if !files.is_empty() {
            return files.into_iter().map(|p| hash_source(&p)).collect();
        }
        if Path::new(pattern).is_absolute() {
            break;
        }
    }
    let looked: Vec<String> = bases.iter().map(|b| b.display().to_string()).collect();
    Err(err(format!("source `{pattern}` matches no file"))
        .hint(format!("relative sources are looked up in {}", looked.join(" and then "))))
}

fn hash_source(path: &Path) -> Result<Source, VerbError> {
    let read = || -> std::io::Result<Source> {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha3_224::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        Ok(Source { path: path.to_path_buf(), size, sha3: hex(&hasher.finalize()) })
    };
    read().map_err(|e| err(format!("cannot read source {}: {}", path.display(), crate::catalog::yaml::io_reason(&e))))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roots() -> SourceRoots {
        SourceRoots { cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")), file_dir: None }
    }

    fn p(verb: &str, args: &str) -> Result<Parsed, VerbError> {
        parse(verb, args, &Map::new(), &roots())
    }

    #[test]
    fn options_are_taken_out_anywhere_and_spacing_kept() {
        let known: Vec<(&str, Arity)> = COMMON.iter().chain(spec("RUN").unwrap().options).copied().collect();
        let (opts, rest) = split_options("ls -l --retry 3 /tmp", &known, true).unwrap();
        assert_eq!(opts, [("--retry".to_string(), vec!["3".to_string()])]);
        assert_eq!(rest, "ls -l /tmp");
        let (opts, rest) = split_options("--timeout=5 echo 'a   b'\necho c --color", &known, true).unwrap();
        assert_eq!(opts, [("--timeout".to_string(), vec!["5".to_string()])]);
        assert_eq!(rest, "echo 'a   b'\necho c --color");
        assert_eq!(split_options("echo --retry", &known, true).unwrap_err().message, "option `--retry` needs a value");
    }

    #[test]
    fn every_verb_parses() {
        let run = p("RUN", "--stdout-arg x --no-block echo hi").unwrap();
        assert_eq!(run.work, Work::Run { command: "echo hi".into(), retry: 1, no_block: true });
        assert_eq!(run.stdout_arg.as_deref(), Some("x"));
        assert_eq!(
            p("ARG", "k ['a', 1]").unwrap().work,
            Work::Arg { env: false, key: "k".into(), value: json!(["a", 1]), extend: false, secret: false }
        );
        assert_eq!(
            p("ENV", "k 12345").unwrap().work,
            Work::Arg { env: true, key: "k".into(), value: json!(12345), extend: false, secret: false }
        );
        assert_eq!(
            p("WORKDIR", "--chown=0:0 --chmod=0777 /tmp/x").unwrap().work,
            Work::Workdir {
                path: "/tmp/x".into(),
                attrs: Attrs { owner: Some("0".into()), group: Some("0".into()), mode: Some(0o777) }
            }
        );
        let copy = p("COPY", "--chown=0 --chmod=0644 Cargo.toml /tmp/y").unwrap().work;
        let Work::Copy { sources, dest, attrs, blueprint } = copy else { panic!() };
        assert_eq!(
            (dest.as_str(), attrs.owner.as_deref(), attrs.group, attrs.mode, blueprint),
            ("/tmp/y", Some("0"), None, Some(0o644), false)
        );
        assert_eq!(sources.len(), 1);
        assert_eq!(sources[0].sha3.len(), 56);
        assert_eq!(p("CACHEEVICT", "all").unwrap().work, Work::CacheEvict { tag: "all".into() });
        assert_eq!(p("QUERY", "foo").unwrap().work, Work::Query { key: "foo".into() });
        assert_eq!(
            p("QUERY_WAIT", "k --identity a b --query-timeout 5").unwrap().work,
            Work::QueryWait {
                item: "k".into(),
                timeout: Duration::from_secs(5),
                identities: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            p("WAIT", "--cmd test -e /tmp/x --retry 3").unwrap().work,
            Work::Wait {
                on: WaitOn::Cmd("test -e /tmp/x".into()),
                retry: 3,
                retry_wait: Duration::from_secs(1),
                insecure: false
            }
        );
        assert_eq!(
            p("WAIT", "--seconds 2").unwrap().work,
            Work::Wait { on: WaitOn::Seconds(2), retry: 30, retry_wait: Duration::from_secs(1), insecure: false }
        );
        assert_eq!(p("ECHO", "hello   world").unwrap().work, Work::Echo { text: "hello world".into() });
        assert_eq!(p("QUEUESENTINEL", "x").unwrap().work, Work::QueueSentinel);
        let help = p("RUN", "--exec-help").unwrap_err();
        assert!(help.help && help.message.starts_with("usage: RUN [--no-block] [--retry N] COMMAND...\n"));
        assert!(p("WORKDIR", "/x --exec-help").unwrap_err().help);
    }

    #[test]
    fn vars_override_and_are_checked() {
        let mut vars = Map::new();
        vars.insert("stdout_arg".into(), json!("out"));
        vars.insert("skip_cache".into(), json!(true));
        vars.insert("timeout".into(), json!(30));
        let job = parse("RUN", "--stdout-arg x echo hi", &vars, &roots()).unwrap();
        assert_eq!(
            (job.stdout_arg.as_deref(), job.skip_cache, job.timeout),
            (Some("out"), true, Duration::from_secs(30))
        );
        let mut vars = Map::new();
        vars.insert("stdout_ag".into(), json!("out"));
        let e = parse("RUN", "echo", &vars, &roots()).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.hint.as_deref(), e.var.as_deref()),
            ("unknown var `stdout_ag` for RUN", Some("did you mean `stdout_arg`?"), Some("stdout_ag"))
        );
    }

    #[test]
    fn error_texts() {
        let e = |verb: &str, args: &str| {
            let e = p(verb, args).unwrap_err();
            format!("{}{}", e.message, e.hint.map(|h| format!(" / {h}")).unwrap_or_default())
        };
        assert_eq!(e("WORKDIR", "--chmode 0644 /x"), "unknown option `--chmode` / did you mean `--chmod`?");
        assert_eq!(
            e("RUN", "--timeout 18446744073709552 true"),
            "option `--timeout` is at most 31536000 (a year in seconds), not `18446744073709552`"
        );
        assert_eq!(
            e("RUN", "--timeout 0 true"),
            "`--timeout 0` would stop the job before it starts / give the seconds the job may take, at least 1"
        );
        assert_eq!(
            e("WAIT", "--seconds 99999999999"),
            "option `--seconds` is at most 31536000 (a year in seconds), not `99999999999`"
        );
        assert_eq!(e("WORKDIR", "--chmod 999 /x"), "`--chmod 999` is not an octal mode / e.g. --chmod 0644");
        assert_eq!(e("CACHEEVICT", "everything"), "CACHEEVICT does not know the tag `everything` / use jobs, parents, args, envs, query, all, or a job fingerprint (56 hex digits)");
        assert_eq!(e("WAIT", "--seconds 1 --cmd true"), "WAIT needs exactly one of --seconds N, --url URL, --cmd COMMAND / usage: WAIT (--seconds N | --url URL | --cmd COMMAND...) [--retry N] [--retry-wait SECS] [--insecure]");
        assert_eq!(
            e("COPY", "Cargo.*  /tmp/x"),
            "2 files match but the destination `/tmp/x` does not end with / / copy them into a directory: `/tmp/x/`"
        );
        assert_eq!(
            e("JOB_WAIT", "abc"),
            "JOB_WAIT needs `--identity NODE...` / usage: JOB_WAIT FINGERPRINT --identity NODE..."
        );
        let missing = e("ADD", "no/such/file /tmp/");
        assert_eq!(
            missing,
            format!(
                "source `no/such/file` matches no file / relative sources are looked up in {}",
                env!("CARGO_MANIFEST_DIR")
            )
        );
    }
}
