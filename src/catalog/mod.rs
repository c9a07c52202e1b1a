//! The catalog: which nodes exist and how to reach them; and the YAML every user file is read
//! with.
//!
//! This module owns reading user files (through [`yaml`], the only YAML code, and the typed
//! [`fields`] of a mapping) and turning catalogs into plain, validated values: a [`Catalog`] of
//! [`Node`]s. The orchestration files are read on the same ground by
//! [`crate::plan::orchestration`], which knows the verbs. Every mistake in a file becomes an
//! [`Error`] naming file:line:column with a hint. It knows nothing of SSH or of running
//! anything.
//!
//! Two catalog shapes load. Director's own:
//!
//! ```yaml
//! defaults: {user: root, port: 22, identity_file: ~/.ssh/id_ed25519, transport: ssh}
//! groups: {web: {vars: {http_port: 80}}}
//! nodes:
//!   - {name: web1, host: 192.0.2.10, groups: [web], vars: {role: front}}
//! ```
//!
//! and Directord's bootstrap catalogs (`directord_server` / `directord_clients`, each with
//! `args` and `targets`), whose nodes land in the groups `directord_server` and
//! `directord_clients`. Several files merge: their nodes are concatenated; a name twice is an
//! error.

pub(crate) mod account;
pub mod ansible;
pub(crate) mod bootstrap;
mod director;
mod directord;
pub(crate) mod fields;
pub(crate) mod literal;
pub(crate) mod node;
pub(crate) mod portion;
pub(crate) mod template;
pub(crate) mod yaml;

use crate::error::Error;
pub(crate) use account::{Account, Become, BecomeMethod};
pub(crate) use fields::is_word;
use fields::unknown_key;
pub(crate) use node::{
    local_user, AgentSocket, HostKeyPolicy, IdentityOrigin, Jump, Node, Relay, SshOptions, TransportKind,
};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use yaml::Document;

/// The catalog used when none is given: one node run through a local child process.
pub(crate) const EMBEDDED_DEFAULT: &str = include_str!("../../catalogs/local.yaml");
pub(crate) const EMBEDDED_DEFAULT_NAME: &str = "<embedded catalogs/local.yaml>";

#[derive(Debug, Clone)]
pub struct Catalog {
    pub docs: Vec<Document>,
    pub nodes: Vec<Node>,
    /// What the user wrote that director reads but does not use (an Ansible inventory's
    /// `ansible_python_interpreter`): the caller shows these, once each.
    pub warnings: Vec<String>,
}

impl Catalog {
    /// Loads and merges catalog files; with none, the embedded default.
    pub fn load(paths: &[PathBuf]) -> Result<Self, Error> {
        Self::from_documents(Self::documents(paths)?)
    }

    /// Like [`Catalog::load`], but a catalog without nodes is not an error: the TUI opens
    /// it and says so.
    pub fn load_browsable(paths: &[PathBuf]) -> Result<Self, Error> {
        Self::merge(Self::documents(paths)?)
    }

    fn documents(paths: &[PathBuf]) -> Result<Vec<Document>, Error> {
        if paths.is_empty() {
            Ok(vec![Document::parse(Path::new(EMBEDDED_DEFAULT_NAME), EMBEDDED_DEFAULT.to_string())?])
        } else {
            paths.iter().map(|p| Self::document(p)).collect()
        }
    }

    /// A catalog file as a document: YAML, or an Ansible INI inventory read into the tree
    /// of the YAML form.
    fn document(path: &Path) -> Result<Document, Error> {
        let text = yaml::read_text(path)?;
        if ansible::looks_like_ini(&text) {
            return Ok(Document::synthetic(&path.display().to_string(), ansible::ini_to_tree(path, &text)?));
        }
        Document::parse(path, text)
    }

    pub fn from_documents(docs: Vec<Document>) -> Result<Self, Error> {
        let catalog = Self::merge(docs)?;
        if catalog.nodes.is_empty() {
            let files: Vec<String> = catalog.docs.iter().map(|d| d.file.display().to_string()).collect();
            return Err(Error::input(format!("no nodes in catalog {}", files.join(", ")))
                .hint("add a `nodes:` list, e.g. `nodes: [{name: web1, host: 192.0.2.10}]`"));
        }
        Ok(catalog)
    }

    fn merge(docs: Vec<Document>) -> Result<Self, Error> {
        let mut nodes: Vec<Node> = Vec::new();
        // Directord catalogs split `args` and `targets` across files; merge args first.
        let mut directord_args: Map<String, Value> = Map::new();
        for doc in &docs {
            for section in directord::SECTIONS {
                if let Some(Value::Object(args)) = doc.root.get(section).and_then(|s| s.get("args")) {
                    let merged = directord_args.entry(section.to_string()).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(m) = merged {
                        m.extend(args.clone());
                    }
                }
            }
        }
        let mut warnings = Vec::new();
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (index, doc) in docs.iter().enumerate() {
            let found = match &doc.root {
                Value::Null => Vec::new(),
                root if ansible::is_inventory(root) => {
                    let (found, said) = ansible::nodes(index, doc)?;
                    warnings.extend(said);
                    found
                }
                Value::Object(top)
                    if directord::SECTIONS.iter().any(|s| top.contains_key(*s)) && !top.contains_key("nodes") =>
                {
                    directord::nodes(index, doc, &directord_args)?
                }
                Value::Object(_) => director::nodes(index, doc)?,
                _ => {
                    return Err(doc.error_at(&[], "this is not a catalog").hint(
                        "director reads its own YAML catalogs (`nodes:`, see catalogs/example.yaml), Directord's bootstrap catalogs (`directord_server:`, `directord_clients:`) and Ansible inventories (INI or YAML)",
                    ))
                }
            };
            for node in found {
                if let Some(first) = seen.get(&node.name).map(|&i| &nodes[i]) {
                    let here = docs[node.origin.0].position(&node.origin.1);
                    let there = docs[first.origin.0].position(&first.origin.1);
                    return Err(Error::input(format!("{here}: node `{}` is defined twice", node.name))
                        .hint(format!("the first definition is at {there}; node names must be unique")));
                }
                seen.insert(node.name.clone(), nodes.len());
                nodes.push(node);
            }
        }
        relays(&docs, &mut nodes)?;
        Ok(Catalog { docs, nodes, warnings })
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every group name any node has, sorted.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.nodes.iter().flat_map(|n| n.groups.iter().cloned()).collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// The catalog's node names for a hint, shortened when there are many.
    pub fn names_hint(&self) -> String {
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        if names.len() <= 8 {
            names.join(", ")
        } else {
            format!("{}, … ({} nodes)", names[..8].join(", "), names.len())
        }
    }

    /// Where the node's `identity_file` was written, for error messages about the key:
    /// `file:line:column`, `--key-file`, or the ssh_config line.
    pub fn identity_position(&self, node: &Node) -> String {
        match &node.identity_at {
            IdentityOrigin::Catalog(path) => self.docs[node.origin.0].position(path),
            IdentityOrigin::KeyFile => "--key-file".to_string(),
            IdentityOrigin::SshConfig(at) => at.clone(),
        }
    }
}

/// Checks every `relay:`: it names a catalog node that is reached over SSH and is not itself
/// behind a relay (relays do not chain). A relay named for itself (a group's `relay:` that
/// takes in its own gateway) is reached directly.
fn relays(docs: &[Document], nodes: &mut [Node]) -> Result<(), Error> {
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    for node in nodes.iter_mut() {
        if node.relay.as_ref().is_some_and(|r| r.name == node.name) {
            node.relay = None;
        }
    }
    for node in nodes.iter() {
        let Some(relay) = &node.relay else { continue };
        let here = docs[relay.at.0].position(&relay.at.1);
        let Some(gateway) = nodes.iter().find(|n| n.name == relay.name) else {
            let err = Error::input(format!(
                "{here}: node `{}` has relay `{}`, which is no catalog node",
                node.name, relay.name
            ));
            return Err(match crate::error::suggest(&relay.name, names.iter().map(String::as_str)) {
                Some(s) => err.hint(format!(
                    "did you mean `{s}`? a relay is a catalog node (the site's gateway) that director reaches over SSH"
                )),
                None => err.hint(
                    "a relay is a catalog node (the site's gateway) that director reaches over SSH: add it to `nodes:`",
                ),
            });
        };
        if let Some(further) = &gateway.relay {
            return Err(Error::input(format!(
                "{here}: node `{}` has relay `{}`, which is itself behind relay `{}`: relays do not chain",
                node.name, relay.name, further.name
            ))
            .hint(format!(
                "give `{}` the relay `{}` directly, or reach `{}` with `via:` (a jump host) instead of a relay",
                node.name, further.name, relay.name
            )));
        }
        if gateway.transport != TransportKind::Ssh || node.transport != TransportKind::Ssh {
            let local = if gateway.transport != TransportKind::Ssh { &gateway.name } else { &node.name };
            return Err(Error::input(format!(
                "{here}: node `{}` has relay `{}`, but `{local}` uses the local transport",
                node.name, relay.name
            ))
            .hint("a relay and the nodes behind it are reached over SSH"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Catalog, Error> {
        Catalog::from_documents(vec![Document::parse(Path::new("c.yaml"), text.to_string())?])
    }

    #[test]
    fn director_catalog_with_defaults_groups_and_vars() {
        let c = load(
            "vars: {a: 0}\ndefaults: {user: ops, port: 2222, vars: {b: 1}}\ngroups: {web: {vars: {a: 2}}}\nnodes:\n  - {name: w1, host: 10.0.0.1, groups: [web], vars: {c: 3}}\n  - {name: local, transport: local, port: 22}\n",
        )
        .unwrap();
        let w1 = c.node("w1").unwrap();
        assert_eq!((w1.host.as_str(), w1.port, w1.user.as_str()), ("10.0.0.1", 2222, "ops"));
        assert_eq!(Value::Object(w1.vars.clone()), serde_json::json!({"a": 2, "b": 1, "c": 3}));
        let local = c.node("local").unwrap();
        assert_eq!((local.host.as_str(), local.port, local.transport), ("local", 22, TransportKind::Local));
    }

    #[test]
    fn directord_inventory_loads_with_groups() {
        let c = load(&std::fs::read_to_string("tests/fixtures/corpus/tools/directord-inventory-catalog.yaml").unwrap())
            .unwrap();
        let names: Vec<_> = c.nodes.iter().map(|n| (n.name.as_str(), n.groups[0].as_str())).collect();
        assert_eq!(names, [("127.0.0.1", "directord_server"), ("client1", "directord_clients")]);
    }

    #[test]
    fn unknown_node_key_suggests_the_right_one() {
        let err = load("nodes:\n  - name: a\n    hots: x\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: c.yaml:3:5: unknown key `hots` in node\n  hint: did you mean `host`? node keys are: name, host, port, user, identity_file, groups, vars, transport, host_key_checking, via, relay, become, become_user, become_method"
        );
        assert_eq!(err.code, 2);
    }

    #[test]
    fn shipped_catalogs_load() {
        let c = Catalog::load(&[PathBuf::from("catalogs/example.yaml")]).unwrap();
        assert_eq!(c.nodes.len(), 4);
        assert_eq!(c.node("db1").unwrap().vars["pg_version"], 16);
        assert_eq!(c.groups(), ["db", "web"]);
        let embedded = Catalog::load(&[]).unwrap();
        assert_eq!(embedded.nodes[0].transport, TransportKind::Local);
    }

    #[test]
    fn duplicate_node_names_are_refused() {
        let err = load("nodes:\n  - name: a\n  - name: a\n").unwrap_err();
        assert_eq!(err.to_string(), "error: c.yaml:3:5: node `a` is defined twice\n  hint: the first definition is at c.yaml:2:5; node names must be unique");
    }

    #[test]
    fn bad_port_and_empty_catalog() {
        let err = load("nodes:\n  - {name: a, port: 70000}\n").unwrap_err();
        assert_eq!(err.to_string(), "error: c.yaml:2:21: `port` must be a port number from 1 to 65535");
        let err = load("nodes: []\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: no nodes in catalog c.yaml\n  hint: add a `nodes:` list, e.g. `nodes: [{name: web1, host: 192.0.2.10}]`"
        );
    }
}
