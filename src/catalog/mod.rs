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

pub mod account;
pub mod ansible;
pub mod bootstrap;
pub mod fields;
pub mod literal;
pub mod portion;
pub mod template;
pub mod yaml;

use crate::error::Error;
pub use account::{Account, Become, BecomeMethod};
pub use fields::is_word;
use fields::{bool_field, check_keys, list_of_text, map_field, port_field, text_field, unknown_key, word_field};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use yaml::{child, Document, Seg};

/// The catalog used when none is given: one node run through a local child process.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../catalogs/local.yaml");
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded catalogs/local.yaml>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Ssh,
    Local,
}

/// What to do with a host key that known_hosts does not have, or has another of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Record unknown keys; refuse changed ones (OpenSSH's `accept-new`).
    AcceptNew,
    /// Refuse unknown and changed keys.
    Strict,
    /// Check nothing. Only when asked for, and with a warning.
    Off,
}

impl HostKeyPolicy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "accept-new" => Some(HostKeyPolicy::AcceptNew),
            "strict" | "yes" => Some(HostKeyPolicy::Strict),
            "off" | "no" => Some(HostKeyPolicy::Off),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    /// Where `identity_file` was written, for errors about the key.
    pub identity_at: IdentityOrigin,
    /// ssh_config's ProxyCommand for the node, its tokens expanded: run with `sh -c`, the
    /// session goes over its stdin and stdout.
    pub proxy_command: Option<String>,
    /// ssh_config's `UserKnownHostsFile` and `GlobalKnownHostsFile` for the node (empty: not
    /// set there).
    pub user_known_hosts: Vec<PathBuf>,
    pub global_known_hosts: Vec<PathBuf>,
    /// Write the node's host key hashed when recording it (ssh_config's HashKnownHosts).
    pub hash_known_hosts: bool,
    /// Jump hosts to reach the node through, first hop first (`via:`, else ssh_config's
    /// ProxyJump); resolved before any contact.
    pub jumps: Vec<Jump>,
    /// Whether the catalog set the user and the port (they beat ssh_config; the defaults do
    /// not).
    pub user_set: bool,
    pub port_set: bool,
    pub groups: Vec<String>,
    pub vars: Map<String, Value>,
    /// The names among `vars` whose values are secret (see [`crate::secret`]).
    pub secret_vars: Vec<String>,
    pub transport: TransportKind,
    pub host_key_checking: Option<HostKeyPolicy>,
    /// Whether its jobs become another user, which, and how (see [`account`]).
    pub becomes: Become,
    /// What ssh_config says of it beyond where it is.
    pub ssh: SshOptions,
    /// Where the node was defined: document index and path, for error messages.
    pub origin: (usize, Vec<Seg>),
}

/// One jump host on the way to a node: written `[user@]host[:port]`, then resolved through
/// ssh_config as `ssh` resolves a jump host.
#[derive(Debug, Clone, PartialEq)]
pub struct Jump {
    /// As written (for messages and to share one connection per bastion).
    pub spec: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    /// What ssh_config says of the hop beyond where it is.
    pub ssh: SshOptions,
}

/// What ssh_config says of a node (or a jump host) beyond where it is: filled in by
/// `transport::ssh_config::apply`, used by the SSH transport. Empty for nodes no ssh_config
/// speaks of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SshOptions {
    /// HostKeyAlias: the name its host key is looked up and recorded under (no port).
    pub host_key_alias: Option<String>,
    /// ConnectTimeout, where `--connect-timeout` was not given.
    pub connect_timeout: Option<std::time::Duration>,
    /// ServerAliveInterval (seconds, 0: none) and ServerAliveCountMax.
    pub server_alive: Option<(u64, u32)>,
    /// IdentitiesOnly: the agent's other keys are not offered.
    pub identities_only: bool,
    /// CertificateFile: user certificates, offered with the key they certify.
    pub certificate_files: Vec<PathBuf>,
    /// IdentityAgent.
    pub agent: AgentSocket,
    /// KexAlgorithms, Ciphers, MACs and HostKeyAlgorithms as written (`+`, `-`, `^` lists),
    /// mapped onto what director's SSH offers.
    pub kex: Option<String>,
    pub ciphers: Option<String>,
    pub macs: Option<String>,
    pub host_key_algorithms: Option<String>,
}

/// Where ssh-agent is reached (IdentityAgent).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum AgentSocket {
    /// `SSH_AUTH_SOCK`.
    #[default]
    Environment,
    /// `none`: no agent.
    Off,
    Path(PathBuf),
}

impl Jump {
    /// `[user@]host[:port]`, with the node's login user and port 22 as defaults; the
    /// resolution through ssh_config fills in the rest.
    pub fn parse(spec: &str) -> Option<Jump> {
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
            _ => (rest.to_string(), None),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return None;
        }
        Some(Jump {
            spec: spec.to_string(),
            host,
            port: port.unwrap_or(0),
            user: user.unwrap_or_default(),
            identity_file: None,
            ssh: SshOptions::default(),
        })
    }
}

/// Where a node's identity file was given.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityOrigin {
    /// A path in the node's document (its own key, `defaults:`, a Directord `args`).
    Catalog(Vec<Seg>),
    /// `bootstrap --key-file`.
    KeyFile,
    /// An `IdentityFile` line of ssh_config (`file:line`).
    SshConfig(String),
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub docs: Vec<Document>,
    pub nodes: Vec<Node>,
    /// What the user wrote that director reads but does not use (an Ansible inventory's
    /// `ansible_python_interpreter`): the caller shows these, once each.
    pub warnings: Vec<String>,
}

const NODE_KEYS: &[&str] = &[
    "name",
    "host",
    "port",
    "user",
    "identity_file",
    "groups",
    "vars",
    "transport",
    "host_key_checking",
    "via",
    "become",
    "become_user",
    "become_method",
];
const DEFAULT_KEYS: &[&str] = &[
    "port",
    "user",
    "identity_file",
    "vars",
    "transport",
    "host_key_checking",
    "via",
    "become",
    "become_user",
    "become_method",
];
const GROUP_KEYS: &[&str] = &["vars", "become", "become_user", "become_method"];
const TOP_KEYS: &[&str] = &["defaults", "groups", "nodes", "vars", "secrets", "secrets_file"];

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
            for section in DIRECTORD_SECTIONS {
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
                    if DIRECTORD_SECTIONS.iter().any(|s| top.contains_key(*s)) && !top.contains_key("nodes") =>
                {
                    directord_nodes(index, doc, &directord_args)?
                }
                Value::Object(_) => director_nodes(index, doc)?,
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

const DIRECTORD_SECTIONS: &[&str] = &["directord_server", "directord_clients"];
/// A Directord section's `args`: defaults for its targets.
const DIRECTORD_ARG_KEYS: &[&str] = &["port", "username", "key_file"];
const DIRECTORD_TARGET_KEYS: &[&str] = &["host", "name", "port", "username"];

/// Expands a leading `~/` to the operator's home directory.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The user name SSH uses when the catalog gives none, as OpenSSH does.
pub fn local_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".to_string())
}

struct Settings {
    /// Jump hosts, as ProxyJump writes them (`[user@]host[:port]`, first hop first).
    via: Option<Vec<String>>,
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<String>,
    transport: Option<TransportKind>,
    host_key_checking: Option<HostKeyPolicy>,
    becomes: BecomeSettings,
    vars: Map<String, Value>,
}

/// `become`, `become_user` and `become_method` as one level (defaults, a group, a node) wrote
/// them.
#[derive(Default, Clone)]
struct BecomeSettings {
    enabled: Option<bool>,
    user: Option<String>,
    method: Option<BecomeMethod>,
}

impl BecomeSettings {
    fn read(doc: &Document, path: &[Seg], map: &Map<String, Value>) -> Result<Self, Error> {
        let method = match text_field(doc, path, map, "become_method")? {
            None => None,
            Some(m) => Some(BecomeMethod::parse(&m).ok_or_else(|| {
                doc.error_at(&child(path, "become_method"), format!("unknown become_method `{m}`"))
                    .hint(format!("become_method is one of {}", BecomeMethod::NAMES.join(", ")))
            })?),
        };
        Ok(BecomeSettings {
            enabled: bool_field(doc, path, map, "become")?,
            user: word_field(doc, path, map, "become_user")?,
            method,
        })
    }

    /// These settings over `under` (a later level over an earlier one).
    fn over(&self, under: Become) -> Become {
        Become {
            enabled: self.enabled.unwrap_or(under.enabled),
            user: self.user.clone().unwrap_or(under.user),
            method: self.method.unwrap_or(under.method),
        }
    }
}

fn settings(doc: &Document, path: &[Seg], map: &Map<String, Value>) -> Result<Settings, Error> {
    let transport = match text_field(doc, path, map, "transport")? {
        None => None,
        Some(t) => Some(match t.as_str() {
            "ssh" => TransportKind::Ssh,
            "local" => TransportKind::Local,
            other => {
                let at = child(path, "transport");
                return Err(doc
                    .error_at(&at, format!("unknown transport `{other}`"))
                    .hint("transport is `ssh` or `local`"));
            }
        }),
    };
    let host_key_checking = match text_field(doc, path, map, "host_key_checking")? {
        None => None,
        Some(t) => Some(HostKeyPolicy::parse(&t).ok_or_else(|| {
            let at = child(path, "host_key_checking");
            doc.error_at(&at, format!("unknown host_key_checking `{t}`"))
                .hint("host_key_checking is `accept-new`, `strict` or `off`")
        })?),
    };
    Ok(Settings {
        via: list_of_text(doc, path, map, "via")?,
        port: port_field(doc, path, map, "port")?,
        user: word_field(doc, path, map, "user")?,
        identity_file: text_field(doc, path, map, "identity_file")?,
        transport,
        host_key_checking,
        becomes: BecomeSettings::read(doc, path, map)?,
        vars: map_field(doc, path, map, "vars")?.cloned().unwrap_or_default(),
    })
}

/// `via:` hops, each `[user@]host[:port]`.
fn parse_jumps(doc: &Document, path: &[Seg], hops: &[String]) -> Result<Vec<Jump>, Error> {
    hops.iter()
        .map(|h| {
            Jump::parse(h).ok_or_else(|| {
                doc.error_at(&child(path, "via"), format!("`via` hop `{h}` is not [user@]host[:port]"))
                    .hint("e.g. `via: [admin@bastion.example:2222]`, first hop first")
            })
        })
        .collect()
}

fn director_nodes(index: usize, doc: &Document) -> Result<Vec<Node>, Error> {
    let top = doc.root.as_object().expect("checked by caller");
    check_keys(doc, &[], top, TOP_KEYS, "catalog")?;
    let defaults_path = [Seg::Key("defaults".into())];
    let defaults = match map_field(doc, &[], top, "defaults")? {
        Some(d) => {
            check_keys(doc, &defaults_path, d, DEFAULT_KEYS, "defaults")?;
            settings(doc, &defaults_path, d)?
        }
        None => settings(doc, &defaults_path, &Map::new())?,
    };
    let mut global_vars = map_field(doc, &[], top, "vars")?.cloned().unwrap_or_default();
    // Secrets: the vars `secrets:` names, and every var of `secrets_file:` and of the
    // DIRECTOR_SECRET_* environment, which come in as global vars.
    let mut secret_vars = list_of_text(doc, &[], top, "secrets")?.unwrap_or_default();
    if let Some(file) = text_field(doc, &[], top, "secrets_file")? {
        let path = doc.file.parent().unwrap_or(Path::new(".")).join(expand_home(&file));
        let secrets = Document::load(&path)?;
        let Value::Object(values) = secrets.root.clone() else {
            return Err(secrets
                .error_at(&[], "a secrets file must be a mapping of names to values")
                .hint("e.g. `db_password: hunter2`"));
        };
        secret_vars.extend(values.keys().cloned());
        global_vars.extend(values);
    }
    let from_env = crate::secret::from_environment();
    secret_vars.extend(from_env.keys().cloned());
    global_vars.extend(from_env);
    let groups = map_field(doc, &[], top, "groups")?.cloned().unwrap_or_default();
    for (name, group) in &groups {
        let path = [Seg::Key("groups".into()), Seg::Key(name.clone())];
        match group {
            Value::Object(g) => {
                check_keys(doc, &path, g, GROUP_KEYS, "group")?;
                BecomeSettings::read(doc, &path, g)?;
            }
            Value::Null => {}
            _ => {
                return Err(
                    doc.error_at(&path, format!("group `{name}` must be a mapping, e.g. `{name}: {{vars: {{}}}}`"))
                )
            }
        }
    }
    let list = match top.get("nodes") {
        Some(Value::Array(list)) => list,
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(_) => {
            return Err(doc
                .error_at(&[Seg::Key("nodes".into())], "`nodes` must be a list")
                .hint("write `nodes:` followed by `- name: ...` items"))
        }
    };
    let mut nodes = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let path = vec![Seg::Key("nodes".into()), Seg::Index(i)];
        let Value::Object(map) = item else {
            return Err(doc
                .error_at(&path, "a node must be a mapping with at least `name`")
                .hint("e.g. `- {name: web1, host: 192.0.2.10}`"));
        };
        check_keys(doc, &path, map, NODE_KEYS, "node")?;
        let own = settings(doc, &path, map)?;
        let name = word_field(doc, &path, map, "name")?;
        let host = word_field(doc, &path, map, "host")?;
        let Some(name) = name.or_else(|| host.clone()) else {
            return Err(doc
                .error_at(&path, "node has neither `name` nor `host`")
                .hint("give each node at least a `name`"));
        };
        let node_groups = list_of_text(doc, &path, map, "groups")?.unwrap_or_default();
        // Vars: global, then each group's in order, then the node's own; later wins.
        // Become: the defaults', then each group's in order, then the node's own.
        let mut vars = global_vars.clone();
        vars.extend(defaults.vars.clone());
        let mut becomes = defaults.becomes.over(Become::default());
        for (gi, g) in node_groups.iter().enumerate() {
            match groups.get(g) {
                Some(Value::Object(gm)) => {
                    if let Some(Value::Object(gv)) = gm.get("vars") {
                        vars.extend(gv.clone());
                    }
                    let path = [Seg::Key("groups".into()), Seg::Key(g.clone())];
                    becomes = BecomeSettings::read(doc, &path, gm)?.over(becomes);
                }
                Some(_) => {}
                None if groups.is_empty() => {}
                None => {
                    let at = child(&child(&path, "groups"), gi);
                    let known: Vec<&str> = groups.keys().map(String::as_str).collect();
                    let err =
                        doc.error_at(&at, format!("node `{name}` is in group `{g}`, which `groups:` does not define"));
                    return Err(match crate::error::suggest(g, known.iter().copied()) {
                        Some(s) => err.hint(format!("did you mean `{s}`? defined groups: {}", known.join(", "))),
                        None => err.hint(format!("defined groups: {}", known.join(", "))),
                    });
                }
            }
        }
        vars.extend(own.vars);
        let (user_set, port_set) =
            (own.user.is_some() || defaults.user.is_some(), own.port.is_some() || defaults.port.is_some());
        nodes.push(Node {
            host: host.unwrap_or_else(|| name.clone()),
            name,
            port: own.port.or(defaults.port).unwrap_or(22),
            user: own.user.or(defaults.user.clone()).unwrap_or_else(local_user),
            identity_at: IdentityOrigin::Catalog(match own.identity_file {
                Some(_) => child(&path, "identity_file"),
                None => child(&defaults_path, "identity_file"),
            }),
            hash_known_hosts: false,
            proxy_command: None,
            user_known_hosts: Vec::new(),
            global_known_hosts: Vec::new(),
            jumps: match own.via.clone().or(defaults.via.clone()) {
                Some(hops) => parse_jumps(doc, &path, &hops)?,
                None => Vec::new(),
            },
            user_set,
            port_set,
            identity_file: own.identity_file.or(defaults.identity_file.clone()).map(|p| expand_home(&p)),
            groups: node_groups,
            secret_vars: secret_vars.iter().filter(|n| vars.contains_key(n.as_str())).cloned().collect(),
            vars,
            transport: own.transport.or(defaults.transport).unwrap_or(TransportKind::Ssh),
            host_key_checking: own.host_key_checking.or(defaults.host_key_checking),
            becomes: own.becomes.over(becomes),
            ssh: SshOptions::default(),
            origin: (index, path),
        });
    }
    // A name in `secrets:` that no var has would protect nothing: a typo, said so.
    let listed = list_of_text(doc, &[], top, "secrets")?.unwrap_or_default();
    for (i, name) in listed.iter().enumerate() {
        if !nodes.iter().any(|n| n.vars.contains_key(name)) {
            let known: Vec<&str> = nodes.iter().flat_map(|n| n.vars.keys().map(String::as_str)).collect();
            let err = doc.error_at(
                &[Seg::Key("secrets".into()), Seg::Index(i)],
                format!("`secrets` names `{name}`, which is no node's var"),
            );
            return Err(match crate::error::suggest(name, known.iter().copied()) {
                Some(s) => err.hint(format!("did you mean `{s}`? `secrets` lists var names whose values are secret")),
                None => {
                    err.hint("`secrets` lists var names whose values are secret (from `vars`, a group's or a node's)")
                }
            });
        }
    }
    Ok(nodes)
}

fn directord_nodes(index: usize, doc: &Document, merged_args: &Map<String, Value>) -> Result<Vec<Node>, Error> {
    let top = doc.root.as_object().expect("checked by caller");
    // Other top-level keys are data for bootstrap templates, as in Directord; but a near
    // miss of a section name is a typo that would drop the section silently.
    for key in top.keys().filter(|k| !DIRECTORD_SECTIONS.contains(&k.as_str())) {
        if let Some(meant) = crate::error::suggest(key, DIRECTORD_SECTIONS.iter().copied()) {
            return Err(doc
                .error_at(&[Seg::KeyName(key.clone())], format!("unknown section `{key}` in bootstrap catalog"))
                .hint(format!("did you mean `{meant}`? the sections are directord_server and directord_clients")));
        }
    }
    let mut nodes = Vec::new();
    for section in DIRECTORD_SECTIONS {
        let Some(sec) = top.get(*section) else { continue };
        let sec_path = [Seg::Key(section.to_string())];
        let Value::Object(sec) = sec else {
            return Err(doc.error_at(&sec_path, format!("`{section}` must be a mapping with `targets`")));
        };
        check_keys(doc, &sec_path, sec, &["args", "targets", "jobs"], section)?;
        if let Some(Value::Object(args)) = sec.get("args") {
            check_keys(doc, &child(&sec_path, "args"), args, DIRECTORD_ARG_KEYS, &format!("{section} args"))?;
        }
        let args = merged_args.get(*section).and_then(Value::as_object).cloned().unwrap_or_default();
        let args_path = [Seg::Key(section.to_string()), Seg::Key("args".into())];
        let arg_port = port_field(doc, &args_path, &args, "port")?;
        let arg_user = word_field(doc, &args_path, &args, "username")?;
        let arg_key = text_field(doc, &args_path, &args, "key_file")?;
        let targets = match sec.get("targets") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(t)) => t,
            Some(_) => {
                let at = child(&sec_path, "targets");
                return Err(doc.error_at(&at, "`targets` must be a list of `{host: ...}` mappings"));
            }
        };
        for (i, t) in targets.iter().enumerate() {
            let path = vec![Seg::Key(section.to_string()), Seg::Key("targets".into()), Seg::Index(i)];
            let Value::Object(t) = t else {
                return Err(doc.error_at(&path, "a target must be a mapping with `host`"));
            };
            check_keys(doc, &path, t, DIRECTORD_TARGET_KEYS, "target")?;
            let Some(host) = word_field(doc, &path, t, "host")? else {
                return Err(doc
                    .error_at(&path, "[host] is undefined in bootstrap catalog")
                    .hint("every target needs `host:`"));
            };
            let name = word_field(doc, &path, t, "name")?.unwrap_or_else(|| host.clone());
            nodes.push(Node {
                name,
                host,
                port: port_field(doc, &path, t, "port")?.or(arg_port).unwrap_or(22),
                user: word_field(doc, &path, t, "username")?.or(arg_user.clone()).unwrap_or_else(local_user),
                identity_file: arg_key.as_deref().map(expand_home),
                identity_at: IdentityOrigin::Catalog(child(&args_path, "key_file")),
                jumps: Vec::new(),
                hash_known_hosts: false,
                proxy_command: None,
                user_known_hosts: Vec::new(),
                global_known_hosts: Vec::new(),
                user_set: t.contains_key("username") || arg_user.is_some(),
                port_set: t.contains_key("port") || arg_port.is_some(),
                groups: vec![section.to_string()],
                vars: Map::new(),
                secret_vars: Vec::new(),
                transport: TransportKind::Ssh,
                host_key_checking: None,
                becomes: Become::default(),
                ssh: SshOptions::default(),
                origin: (index, path),
            });
        }
    }
    Ok(nodes)
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
            "error: c.yaml:3:5: unknown key `hots` in node\n  hint: did you mean `host`? node keys are: name, host, port, user, identity_file, groups, vars, transport, host_key_checking, via, become, become_user, become_method"
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
