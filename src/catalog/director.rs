//! director's own catalog format: `defaults`, `groups` and `nodes` (see the module docs of
//! [`super`]), each level's settings over the one before, with jump hosts, become settings,
//! vars and secrets.

use super::fields::{bool_field, check_keys, list_of_text, map_field, port_field, text_field, word_field};
use super::yaml::{child, Document, Seg};
use super::{
    local_user, Become, BecomeMethod, HostKeyPolicy, IdentityOrigin, Jump, Node, Relay, SshOptions, TransportKind,
};
use crate::error::Error;
use crate::paths::expand_home;
use serde_json::{Map, Value};

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
    "relay",
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
    "relay",
    "become",
    "become_user",
    "become_method",
];

const GROUP_KEYS: &[&str] = &["vars", "relay", "become", "become_user", "become_method"];

const TOP_KEYS: &[&str] = &["defaults", "groups", "nodes", "vars", "secrets", "secrets_file"];

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

/// The `relay:` of the level at `path` (defaults, a group or a node), `map` its mapping: a
/// catalog node's name.
fn relay_field(doc: &Document, index: usize, path: &[Seg], map: Option<&Value>) -> Result<Option<Relay>, Error> {
    let Some(Value::Object(map)) = map else { return Ok(None) };
    Ok(word_field(doc, path, map, "relay")?.map(|name| Relay { name, at: (index, child(path, "relay")) }))
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

/// The nodes of document `index`, a catalog in director's own format.
pub(super) fn nodes(index: usize, doc: &Document) -> Result<Vec<Node>, Error> {
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
        let path = doc.dir.join(expand_home(&file));
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
        // Relay: the node's own, else its last group's that names one, else the defaults'.
        let mut relay = relay_field(doc, index, &defaults_path, top.get("defaults"))?;
        for (gi, g) in node_groups.iter().enumerate() {
            match groups.get(g) {
                Some(Value::Object(gm)) => {
                    if let Some(Value::Object(gv)) = gm.get("vars") {
                        vars.extend(gv.clone());
                    }
                    let path = [Seg::Key("groups".into()), Seg::Key(g.clone())];
                    becomes = BecomeSettings::read(doc, &path, gm)?.over(becomes);
                    relay = relay_field(doc, index, &path, groups.get(g))?.or(relay);
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
        let relay = relay_field(doc, index, &path, Some(item))?.or(relay);
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
            relay,
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
