//! The bootstrap side of Directord catalogs: the `jobs` of `directord_server` and
//! `directord_clients`, and the merged catalog their templates see.
//!
//! A job is a one-key mapping `{RUN: "shell"}`, `{ADD: "LOCAL REMOTE"}` or
//! `{GET: "REMOTE LOCAL"}`; nested lists are flattened, as Directord does. Files merge the
//! way Directord's `merge_dict` merges them: mappings recursively, lists concatenated, any
//! other value replaced by the later file's.

use super::yaml::{child, Seg};
use super::Catalog;
use crate::error::Error;
use serde_json::{Map, Value};

/// The two sections, servers first.
pub(crate) const SECTIONS: [&str; 2] = ["directord_server", "directord_clients"];

/// The verbs a bootstrap job may use.
pub(crate) const VERBS: [&str; 3] = ["RUN", "ADD", "GET"];

#[derive(Debug, Clone)]
pub(crate) struct BootstrapJob {
    /// `directord_server` or `directord_clients`.
    pub section: &'static str,
    pub verb: String,
    pub text: String,
    /// The job as written.
    pub raw: Value,
    /// Directory of the file that defines it: relative ADD sources are looked up there first.
    pub dir: std::path::PathBuf,
}

/// Every bootstrap job of the catalog's files, servers' first, each section in file order.
pub(crate) fn jobs(catalog: &Catalog) -> Result<Vec<BootstrapJob>, Error> {
    let mut out = Vec::new();
    for section in SECTIONS {
        for doc in &catalog.docs {
            let Some(list) = doc.root.get(section).and_then(|s| s.get("jobs")) else { continue };
            let path = vec![Seg::Key(section.into()), Seg::Key("jobs".into())];
            let dir = if doc.dir.as_os_str().is_empty() { std::path::PathBuf::from(".") } else { doc.dir.clone() };
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            flatten(doc, list, &path, section, &dir, &mut out)?;
        }
    }
    Ok(out)
}

fn flatten(
    doc: &super::yaml::Document,
    value: &Value,
    path: &[Seg],
    section: &'static str,
    dir: &std::path::Path,
    out: &mut Vec<BootstrapJob>,
) -> Result<(), Error> {
    let hint = "a bootstrap job is `- RUN: \"command\"`, `- ADD: \"LOCAL REMOTE\"` or `- GET: \"REMOTE LOCAL\"`";
    match value {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(doc, item, &child(path, i), section, dir, out)?;
            }
            Ok(())
        }
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next().expect("one key");
            let at = child(path, Seg::KeyName(key.clone()));
            let verb = key.to_ascii_uppercase();
            if !VERBS.contains(&verb.as_str()) {
                let err = doc.error_at(&at, format!("unknown bootstrap verb `{key}`"));
                return Err(match crate::error::suggest(key, VERBS) {
                    Some(s) => err.hint(format!("did you mean `{s}`? bootstrap jobs use RUN, ADD and GET")),
                    None => err.hint("bootstrap jobs use RUN, ADD and GET"),
                });
            }
            let Some(text) = super::yaml::scalar_text(arg).filter(|t| !t.trim().is_empty()) else {
                return Err(doc.error_at(&child(path, key.as_str()), format!("{verb} needs a string")).hint(hint));
            };
            if verb != "RUN" && !text.contains("{{") && text.split_whitespace().count() != 2 {
                let order = if verb == "ADD" { "LOCAL REMOTE" } else { "REMOTE LOCAL" };
                return Err(doc
                    .error_at(&child(path, key.as_str()), format!("{verb} takes two paths, `{order}`"))
                    .hint(hint));
            }
            if let Err(e) = super::template::check(&text) {
                return Err(doc.error_at(&child(path, key.as_str()), e).hint(super::template::SYNTAX_HINT));
            }
            out.push(BootstrapJob { section, verb, text, raw: value.clone(), dir: dir.to_path_buf() });
            Ok(())
        }
        _ => Err(doc.error_at(path, "a bootstrap job must be a mapping with one verb").hint(hint)),
    }
}

/// The catalog's files merged, as bootstrap templates see them.
pub(crate) fn merged(catalog: &Catalog) -> Map<String, Value> {
    let mut out = Value::Object(Map::new());
    for doc in &catalog.docs {
        merge(&mut out, &doc.root);
    }
    match out {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => a.extend(b.iter().cloned()),
        (slot, v) => *slot = v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::yaml::Document;
    use std::path::{Path, PathBuf};

    fn catalog(files: &[(&str, &str)]) -> Result<Catalog, Error> {
        Catalog::from_documents(
            files.iter().map(|(n, t)| Document::parse(Path::new(n), t.to_string())).collect::<Result<_, _>>()?,
        )
    }

    #[test]
    fn merges_like_directord_and_flattens_jobs() {
        let c = catalog(&[
            ("inv.yaml", "directord_server:\n  targets: [{host: 10.0.0.1}]\ndirectord_clients:\n  args: {port: 22}\n  targets: [{host: 10.0.0.2, name: c1}]\n"),
            ("jobs.yaml", "directord_clients:\n  args: {username: ops}\n  jobs:\n  - RUN: echo one\n  - [{ADD: a b}, {GET: c d}]\ndirectord_server:\n  jobs:\n  - RUN: echo s\n"),
        ])
        .unwrap();
        let m = merged(&c);
        assert_eq!(m["directord_clients"]["args"], serde_json::json!({"port": 22, "username": "ops"}));
        assert_eq!(m["directord_server"]["targets"][0]["host"], "10.0.0.1");
        let j: Vec<String> = jobs(&c).unwrap().iter().map(|j| format!("{} {} {}", j.section, j.verb, j.text)).collect();
        assert_eq!(
            j,
            [
                "directord_server RUN echo s",
                "directord_clients RUN echo one",
                "directord_clients ADD a b",
                "directord_clients GET c d"
            ]
        );
        assert_eq!(c.node("c1").unwrap().user, "ops");
    }

    #[test]
    fn bad_jobs_are_named_with_their_position() {
        let err = catalog(&[("b.yaml", "directord_clients:\n  targets: [{host: h}]\n  jobs:\n  - COPY: a b\n")])
            .and_then(|c| jobs(&c))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: b.yaml:4:5: unknown bootstrap verb `COPY`\n  hint: bootstrap jobs use RUN, ADD and GET"
        );
        let err = catalog(&[("b.yaml", "directord_clients:\n  targets: [{host: h}]\n  jobs:\n  - ADD: onlyone\n")])
            .and_then(|c| jobs(&c))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: b.yaml:4:10: ADD takes two paths, `LOCAL REMOTE`\n  hint: a bootstrap job is `- RUN: \"command\"`, `- ADD: \"LOCAL REMOTE\"` or `- GET: \"REMOTE LOCAL\"`"
        );
    }

    #[test]
    fn every_corpus_tools_catalog_loads_with_the_inventory() {
        let dir = PathBuf::from("tests/fixtures/corpus/tools");
        let inventory = dir.join("directord-inventory-catalog.yaml");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") && path != inventory {
                let c = Catalog::load(&[inventory.clone(), path.clone()])
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                jobs(&c).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 14, "only {n} catalogs");
    }
}
