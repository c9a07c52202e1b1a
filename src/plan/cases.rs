//! The verb cases: each verb's jobs as data, in `tests/verbs/<verb>.cases`, the way the
//! bad-input suite is. A case is a job as an orchestration writes it (`VERB ARGS`) and what it
//! becomes on a node whose args and facts are [`vars`]: its label, its traits, what it says
//! it does (`info`), its fingerprint body (every input of the work on the node, the rendered
//! command or files included, as the canonical JSON that is hashed), and the check command
//! that runs before it (`check`, and `check recorded` when the node has a record of it). A
//! job the parser refuses has `error:` instead, word for word.
//!
//! `DIRECTOR_BLESS=1 cargo test --lib verb_cases` writes what the code says into the files, to
//! read in review; without it a difference fails the test with the file and the case.

use super::fingerprint;
use super::Job;
use crate::catalog::template::Renderer;
use crate::verb::{self, Render, Rendered, SourceRoots, Work};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The args and facts of the node every case renders on.
fn vars() -> Map<String, Value> {
    let vars = json!({
        "greeting": "hello",
        "port": 8080,
        "pkgs": ["vim", "curl"],
        "unit": "nginx",
        "facts": {"packager": "apt-get", "arch": "x86_64", "os_id": "debian"},
    });
    vars.as_object().cloned().unwrap_or_default()
}

/// What one case says, in the order the file writes it.
fn outcome(verb: &str, args: &str, roots: &SourceRoots) -> Vec<(&'static str, String)> {
    let parsed = match verb::parse(verb, args, &Map::new(), roots) {
        Ok(p) => p,
        Err(e) => {
            let hint = e.hint.map(|h| format!(" / {h}")).unwrap_or_default();
            return vec![("error", format!("{}{hint}", e.message))];
        }
    };
    let job = Job::parsed(verb, parsed, 0, 0);
    let rendered = match render(&job.work) {
        Ok(r) => r,
        Err(e) => return vec![("label", job.label()), ("render error", e)],
    };
    let traits = job.work.traits();
    let on: Vec<&str> = [
        ("cacheable", traits.cacheable),
        ("cache_only", traits.cache_only),
        ("streams_output", traits.streams_output),
        ("heavy", traits.heavy),
        ("waits_for_others", traits.waits_for_others),
        ("gathers", traits.gathers),
        ("reboots", traits.reboots),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let body = fingerprint::canonical(&fingerprint::body(&job, &rendered));
    let mut out = vec![("label", job.label()), ("traits", on.join(" "))];
    if let Some(info) = job.work.info(&rendered) {
        out.push(("info", info));
    }
    out.push(("fingerprint", body));
    if let Some(check) = job.work.check(&rendered, false) {
        out.push(("check", check));
    }
    if let Some(check) = job.work.check(&rendered, true) {
        out.push(("check recorded", check));
    }
    out
}

/// The job's templates rendered on the case node, as the engine renders them.
fn render(work: &Work) -> Result<Rendered, String> {
    let renderer = Renderer::default();
    let vars = vars();
    let facts = vars.get("facts").cloned().unwrap_or(Value::Null);
    let context = renderer.context(vars.into_iter().map(|(k, v)| (k, Arc::new(v))).collect());
    let blueprints = work
        .blueprints()
        .iter()
        .map(|s| std::fs::read_to_string(&s.path).map_err(|e| format!("{}: {e}", s.path.display())))
        .collect::<Result<Vec<_>, _>>()?;
    let text = |t: &str| renderer.render_noting(t, &context, None);
    let mut into = Render::new(&text, &facts, blueprints, Rendered::default());
    work.render(&mut into)?;
    Ok(into.rendered)
}

/// A value on one line: `\` and line breaks escaped, this checkout's directory said `$ROOT`
/// (the cases hold on any machine).
fn one_line(text: &str) -> String {
    text.replace(env!("CARGO_MANIFEST_DIR"), "$ROOT").replace('\\', "\\\\").replace('\n', "\\n")
}

/// The cases of one file: each `VERB ARGS` line (ARGS as one line, `\n` for a line break) with
/// the indented `key: value` lines under it; `#` lines and blank lines are kept as they are.
fn check_file(path: &Path, bless: bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let roots = SourceRoots { cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")), file_dir: None };
    let mut failures = Vec::new();
    let mut written = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            written.push_str(line);
            written.push('\n');
            continue;
        }
        assert!(!line.starts_with(' '), "{}: an indented line outside a case: {line}", path.display());
        let (verb, args) = line.split_once(' ').unwrap_or((line, ""));
        let args = args.replace("\\n", "\n");
        let mut expected = Vec::new();
        while let Some(next) = lines.peek().filter(|l| l.starts_with("  ")) {
            expected.push(next.trim_start().to_string());
            lines.next();
        }
        let actual: Vec<String> =
            outcome(verb, &args, &roots).into_iter().map(|(k, v)| format!("{k}: {}", one_line(&v))).collect();
        if actual != expected {
            failures.push(format!(
                "{}: `{line}`\n  expected:\n    {}\n  got:\n    {}",
                path.display(),
                expected.join("\n    "),
                actual.join("\n    ")
            ));
        }
        written.push_str(line);
        written.push('\n');
        for l in &actual {
            written.push_str("  ");
            written.push_str(l);
            written.push('\n');
        }
    }
    if bless {
        std::fs::write(path, written).unwrap();
    }
    failures
}

#[test]
fn verb_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verbs");
    let bless = std::env::var_os("DIRECTOR_BLESS").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut failures = Vec::new();
    let mut verbs_with_cases = std::collections::BTreeSet::new();
    for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "cases")) {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with([' ', '#'])) {
            verbs_with_cases.insert(line.split(' ').next().unwrap_or_default().to_string());
        }
        failures.extend(check_file(file, bless));
    }
    let missing: Vec<&str> = verb::known_names().filter(|v| !verbs_with_cases.contains(*v)).collect();
    assert!(missing.is_empty(), "verbs without a case in tests/verbs/: {missing:?}");
    assert!(failures.is_empty(), "{} case(s) differ:\n\n{}", failures.len(), failures.join("\n\n"));
}
