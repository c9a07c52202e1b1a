//! Ansible inventories as catalogs, INI or YAML, told apart from director's own catalogs by
//! their content (so `-c inventory.ini` and `-c hosts.yml` work as they are).
//!
//! Groups (`[web]`, `hosts:`), nested groups (`[prod:children]`, `children:`), group vars
//! (`[web:vars]`, `vars:`) and host vars, and host ranges (`web[01:20]`) are read as Ansible
//! reads them: a host is in every group that holds it and every ancestor of those, and its
//! vars are `all`'s, then its groups' from the outermost to the innermost, then its own. The
//! connection vars become the node's settings: `ansible_host`, `ansible_port`, `ansible_user`,
//! `ansible_ssh_private_key_file`, `ansible_connection: local`. Other vars become catalog vars
//! that templates see; an `ansible_*` var director has no use for (yet) is named once in a
//! warning, never dropped silently.
//!
//! The INI form is read into the YAML form's tree, so one reader builds the nodes; an INI
//! line that cannot be read is an error at its line and column.

use super::yaml::{child, scalar_text, Document, Seg};
use super::{local_user, unknown_key, Node, TransportKind};
use crate::error::Error;
use crate::paths::expand_home;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

const GROUP_KEYS: &[&str] = &["hosts", "vars", "children"];

/// Whether a YAML document is an Ansible inventory: a mapping of groups (`all:` or others),
/// each a mapping with `hosts`, `children` or `vars`.
pub fn is_inventory(root: &Value) -> bool {
    let Value::Object(top) = root else { return false };
    if top.contains_key("nodes") || top.keys().any(|k| k.starts_with("directord_")) {
        return false;
    }
    top.contains_key("all")
        || (!top.is_empty()
            && top.values().all(|g| g.as_object().is_some_and(|m| m.keys().any(|k| GROUP_KEYS.contains(&k.as_str())))))
}

/// Whether a text that is not a YAML mapping looks like an INI inventory: its first line
/// that is not blank or a comment is a `[group]` header, or a host followed by `key=value`.
pub fn looks_like_ini(text: &str) -> bool {
    let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
    else {
        return false;
    };
    let header = first.starts_with('[') && first.ends_with(']') && !first[1..first.len() - 1].contains([',', ' ', '[']);
    let host_line = first.split_whitespace().nth(1).is_some_and(|w| w.contains('=') && !w.starts_with('='));
    header || host_line
}

/// Reads an INI inventory into the tree of the YAML form: `{all: {hosts, children: {group:
/// {hosts, vars, children}}}}`.
pub fn ini_to_tree(file: &Path, text: &str) -> Result<Value, Error> {
    let mut groups: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut ungrouped: Map<String, Value> = Map::new();
    let mut section: Option<(String, &str)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let column = raw.len() - raw.trim_start().len() + 1;
        let at = |col: usize| format!("{}:{}:{col}", file.display(), n + 1);
        if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let (name, kind) = match inner.split_once(':') {
                Some((name, kind @ ("vars" | "children"))) => (name, kind),
                Some((_, kind)) => {
                    return Err(Error::input(format!(
                        "{}: unknown section kind `:{kind}` in an Ansible inventory",
                        at(column)
                    ))
                    .hint("sections are [group], [group:vars] and [group:children]"))
                }
                None => (inner, "hosts"),
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(Error::input(format!("{}: `[{inner}]` does not name a group", at(column)))
                    .hint("a group name is one word, e.g. [web]"));
            }
            if !groups.contains_key(name) {
                order.push(name.to_string());
            }
            groups.entry(name.to_string()).or_default();
            section = Some((name.to_string(), kind));
            continue;
        }
        match &section {
            Some((group, "vars")) => {
                let Some((key, value)) = line.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
                    return Err(Error::input(format!("{}: a [{group}:vars] line must be `key=value`", at(column)))
                        .hint("e.g. http_port=80"));
                };
                let vars =
                    groups.entry(group.clone()).or_default().entry("vars").or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(vars) = vars {
                    vars.insert(key.trim().to_string(), Value::String(unquote(value.trim())));
                }
            }
            Some((group, "children")) => {
                if line.contains(char::is_whitespace) {
                    return Err(Error::input(format!("{}: a [{group}:children] line names one group", at(column)))
                        .hint("write one child group per line"));
                }
                let children = groups
                    .entry(group.clone())
                    .or_default()
                    .entry("children")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(children) = children {
                    children.insert(line.to_string(), Value::Null);
                }
            }
            _ => {
                let hosts = host_line(line).map_err(|(offset, why)| {
                    Error::input(format!("{}: {why}", at(column + offset)))
                        .hint("a host line is `NAME [key=value ...]`, e.g. `web1 ansible_host=192.0.2.10`")
                })?;
                let into = match &section {
                    Some((group, _)) => {
                        let g = groups.entry(group.clone()).or_default();
                        match g.entry("hosts").or_insert_with(|| Value::Object(Map::new())) {
                            Value::Object(m) => m,
                            _ => unreachable!("hosts is a mapping"),
                        }
                    }
                    None => &mut ungrouped,
                };
                for (name, vars) in hosts {
                    into.insert(name, Value::Object(vars));
                }
            }
        }
    }
    // `all` is the root: its own hosts (and the hosts before any header), its vars, and every
    // other group as a child (a group nested elsewhere too is the same group).
    let mut all = groups.remove("all").unwrap_or_default();
    if !ungrouped.is_empty() {
        match all.entry("hosts").or_insert_with(|| Value::Object(Map::new())) {
            Value::Object(hosts) => hosts.extend(ungrouped),
            _ => unreachable!("hosts is a mapping"),
        }
    }
    let mut children = match all.remove("children") {
        Some(Value::Object(c)) => c,
        _ => Map::new(),
    };
    for name in order.into_iter().filter(|n| n != "all") {
        children.insert(name.clone(), Value::Object(groups.remove(&name).unwrap_or_default()));
    }
    all.insert("children".into(), Value::Object(children));
    Ok(Value::Object(Map::from_iter([("all".to_string(), Value::Object(all))])))
}

/// A host and the vars written with it.
type HostVars = (String, Map<String, Value>);

/// A host line: its hosts (a range gives several) with their vars; an error says at which
/// byte of the line and why.
fn host_line(line: &str) -> Result<Vec<HostVars>, (usize, String)> {
    let words = split_words(line).map_err(|why| (0, why))?;
    let (first_at, name) = words.first().cloned().ok_or((0, "an empty host line".to_string()))?;
    if name.contains('=') {
        return Err((first_at, format!("`{name}` is not a host name")));
    }
    let mut vars = Map::new();
    for (at, word) in &words[1..] {
        let Some((key, value)) = word.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err((*at, format!("`{word}` is not `key=value`")));
        };
        // Ansible reads host-line values as Python literals.
        vars.insert(key.to_string(), crate::catalog::literal::parse(value));
    }
    let names = expand_range(&name).map_err(|why| (first_at, why))?;
    Ok(names.into_iter().map(|n| (n, vars.clone())).collect())
}

/// Words split on whitespace, with '…' and "…" quoting; each with its byte offset.
fn split_words(line: &str) -> Result<Vec<(usize, String)>, String> {
    let mut words = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.get_or_insert((i, String::new())).1.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                current.get_or_insert((i, String::new()));
            }
            (None, c) if c.is_whitespace() => words.extend(current.take()),
            (None, c) => current.get_or_insert((i, String::new())).1.push(c),
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".to_string());
    }
    words.extend(current);
    Ok(words)
}

fn unquote(value: &str) -> String {
    let quoted = value.len() >= 2
        && (value.starts_with('"') && value.ends_with('"') || value.starts_with('\'') && value.ends_with('\''));
    if quoted {
        value[1..value.len() - 1].to_string()
    } else {
        value.to_string()
    }
}

/// Most hosts one name may expand to.
const MAX_RANGE_HOSTS: usize = 100_000;

/// Ansible's host ranges: `web[01:03]` is web01, web02, web03; `db-[a:c]` db-a … db-c; an
/// optional stride `[1:9:2]`; several ranges in one name multiply (at most 100,000 hosts).
fn expand_range(name: &str) -> Result<Vec<String>, String> {
    let bad = || format!("`{name}`: a host range is [START:END] or [START:END:STEP], e.g. web[01:20]");
    // The name as literal pieces and ranges, each range as its list of items.
    let mut parts: Vec<Vec<String>> = Vec::new();
    let mut rest = name;
    let mut total: usize = 1;
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']').map(|c| open + c).ok_or_else(bad)?;
        parts.push(vec![rest[..open].to_string()]);
        let items = range_items(&rest[open + 1..close]).ok_or_else(bad)?;
        total = total.saturating_mul(items.len());
        if total > MAX_RANGE_HOSTS {
            return Err(format!("`{name}` expands to more than {MAX_RANGE_HOSTS} hosts"));
        }
        parts.push(items);
        rest = &rest[close + 1..];
    }
    if rest.contains(']') {
        return Err(bad());
    }
    parts.push(vec![rest.to_string()]);
    let mut names = vec![String::new()];
    for part in parts {
        names = names.iter().flat_map(|n| part.iter().map(move |p| format!("{n}{p}"))).collect();
    }
    Ok(names)
}

/// The items of one range `START:END[:STEP]`, numbers (zero-padded as START is) or letters.
fn range_items(spec: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (start, end) = match parts.as_slice() {
        [s, e] | [s, e, _] => (*s, *e),
        _ => return None,
    };
    let step: usize = match parts.get(2) {
        Some(s) => s.parse().ok().filter(|s| *s > 0)?,
        None => 1,
    };
    match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b && b - a < MAX_RANGE_HOSTS as u64 => {
            let width = if start.starts_with('0') && start.len() > 1 { start.len() } else { 0 };
            Some((a..=b).step_by(step).map(|i| format!("{i:0width$}")).collect())
        }
        _ if start.len() == 1 && end.len() == 1 && start <= end => {
            let (a, b) = (start.as_bytes()[0], end.as_bytes()[0]);
            (a.is_ascii_alphabetic() && b.is_ascii_alphabetic())
                .then(|| (a..=b).step_by(step).map(|c| (c as char).to_string()).collect())
        }
        _ => None,
    }
}

/// What one group holds, gathered over every place it appears.
#[derive(Default)]
struct Group {
    vars: Map<String, Value>,
    parents: Vec<String>,
    /// Hosts directly in the group, with the vars written on them there.
    hosts: Vec<(String, Map<String, Value>, Vec<Seg>)>,
}

/// One place a host is written: the group, the vars written on it there, the path.
type Placement<'a> = (&'a str, &'a Map<String, Value>, &'a Vec<Seg>);

/// Hosts in the order first written, and the set of them.
#[derive(Default)]
struct HostOrder(Vec<String>, std::collections::HashSet<String>);

/// The nodes of an inventory document, and the warnings about vars director does not use.
pub fn nodes(index: usize, doc: &Document) -> Result<(Vec<Node>, Vec<String>), Error> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut order = HostOrder::default();
    let top = doc.root.as_object().expect("checked by is_inventory");
    for (name, value) in top {
        walk(doc, &[Seg::Key(name.clone())], name, value, None, &mut groups, &mut order)?;
    }
    let host_order = order.0;
    // Depth from `all` (the longest chain of parents): outer groups' vars first, inner win.
    let depth: std::collections::HashMap<&str, usize> = groups
        .keys()
        .map(|g| {
            let mut d = 0;
            let mut frontier = vec![g.as_str()];
            while !frontier.is_empty() && d < 64 {
                frontier = frontier
                    .iter()
                    .flat_map(|f| {
                        groups
                            .get(*f)
                            .map(|g| g.parents.iter().map(String::as_str).collect::<Vec<_>>())
                            .unwrap_or_default()
                    })
                    .collect();
                d += 1;
            }
            (g.as_str(), if g == "all" { 0 } else { d })
        })
        .collect();
    // Where each host is written: its groups, with the vars written on it there.
    let mut placed: std::collections::HashMap<&str, Vec<Placement>> = std::collections::HashMap::new();
    for (name, group) in &groups {
        for (host, own, path) in &group.hosts {
            placed.entry(host.as_str()).or_default().push((name.as_str(), own, path));
        }
    }
    let mut warned: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let mut nodes = Vec::new();
    for host in &host_order {
        let places = placed.get(host.as_str()).map(Vec::as_slice).unwrap_or_default();
        let mut member: Vec<String> = places.iter().map(|(g, _, _)| g.to_string()).collect();
        member.dedup();
        let mut i = 0;
        while i < member.len() {
            for p in groups.get(&member[i]).map(|g| g.parents.clone()).unwrap_or_default() {
                if !member.contains(&p) {
                    member.push(p);
                }
            }
            i += 1;
        }
        if !member.iter().any(|g| g == "all") {
            member.push("all".into());
        }
        member.sort_by_key(|g| (depth.get(g.as_str()).copied().unwrap_or(0), g.clone()));
        let mut vars = Map::new();
        for g in &member {
            if let Some(group) = groups.get(g) {
                vars.extend(group.vars.clone());
            }
        }
        for g in &member {
            for (_, own, _) in places.iter().filter(|(pg, _, _)| pg == g) {
                vars.extend((*own).clone());
            }
        }
        let origin: Vec<Seg> = places.first().map(|(_, _, path)| (*path).clone()).unwrap_or_default();
        let mut node = Node {
            name: host.clone(),
            host: host.clone(),
            port: 22,
            user: local_user(),
            identity_file: None,
            identity_at: super::IdentityOrigin::KeyFile,
            jumps: Vec::new(),
            hash_known_hosts: false,
            proxy_command: None,
            user_known_hosts: Vec::new(),
            global_known_hosts: Vec::new(),
            user_set: false,
            port_set: false,
            groups: member,
            vars: Map::new(),
            secret_vars: Vec::new(),
            transport: TransportKind::Ssh,
            host_key_checking: None,
            becomes: super::Become::default(),
            ssh: super::SshOptions::default(),
            relay: None,
            origin: (index, origin.clone()),
        };
        for (key, value) in vars {
            let text = scalar_text(&value).unwrap_or_default();
            let bad = |what: &str| {
                doc.error_at(&child(&origin, key.as_str()), format!("`{key}` of host `{host}` must be {what}"))
            };
            match key.as_str() {
                "ansible_host" | "ansible_ssh_host" => node.host = text,
                "ansible_port" | "ansible_ssh_port" => {
                    node.port_set = true;
                    node.port = text
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad("a port number from 1 to 65535"))?;
                }
                "ansible_user" | "ansible_ssh_user" => {
                    node.user_set = true;
                    node.user = text;
                }
                "ansible_ssh_private_key_file" => {
                    node.identity_file = Some(expand_home(&text));
                    node.identity_at = super::IdentityOrigin::Catalog(child(&origin, key.as_str()));
                }
                "ansible_connection" => {
                    node.transport = match text.as_str() {
                        "local" => TransportKind::Local,
                        "ssh" | "smart" | "paramiko" => TransportKind::Ssh,
                        other => {
                            return Err(bad("`ssh` or `local`").hint(format!("director cannot connect with `{other}`")))
                        }
                    }
                }
                "ansible_become" => {
                    node.becomes.enabled = super::fields::strtobool(&text)
                        .ok_or_else(|| bad("true or false").hint("e.g. ansible_become=true"))?;
                }
                "ansible_become_user" => {
                    if !super::is_word(&text) {
                        return Err(bad("a user name"));
                    }
                    node.becomes.user = text;
                }
                "ansible_become_method" => {
                    node.becomes.method = super::BecomeMethod::parse(&text).ok_or_else(|| {
                        bad("a become method director knows")
                            .hint(format!("become methods: {}", super::BecomeMethod::NAMES.join(", ")))
                    })?;
                }
                k if k.starts_with("ansible_") => {
                    if !warned.contains(&key) {
                        let why = if k.starts_with("ansible_become_pass") || k == "ansible_become_password" {
                            "give the become password with --ask-become-pass or --become-password-file"
                        } else {
                            "director has no use for it"
                        };
                        warnings.push(format!("warning: {}: `{key}` is ignored: {why}", doc.file.display()));
                        warned.push(key.clone());
                    }
                }
                _ => {
                    node.vars.insert(key, value);
                }
            }
        }
        for (what, v) in [("host", &node.host), ("user", &node.user)] {
            if !super::is_word(v) {
                return Err(doc.error_at(&origin, format!("the {what} of `{host}` is empty or not one word")));
            }
        }
        nodes.push(node);
    }
    Ok((nodes, warnings))
}

fn walk(
    doc: &Document,
    path: &[Seg],
    name: &str,
    value: &Value,
    parent: Option<&str>,
    groups: &mut BTreeMap<String, Group>,
    hosts: &mut HostOrder,
) -> Result<(), Error> {
    let entry = groups.entry(name.to_string()).or_default();
    if let Some(p) = parent {
        if !entry.parents.iter().any(|x| x == p) {
            entry.parents.push(p.to_string());
        }
    }
    let map = match value {
        Value::Null => return Ok(()),
        Value::Object(m) => m,
        _ => {
            return Err(doc
                .error_at(path, format!("group `{name}` must be a mapping with `hosts`, `vars` or `children`"))
                .hint("e.g. `web: {hosts: {web1: {ansible_host: 192.0.2.10}}}`"))
        }
    };
    if let Some(key) = map.keys().find(|k| !GROUP_KEYS.contains(&k.as_str())) {
        return Err(unknown_key(doc, path, key, GROUP_KEYS, "inventory group"));
    }
    if let Some(vars) = map.get("vars") {
        match vars {
            Value::Object(v) => groups.get_mut(name).expect("inserted").vars.extend(v.clone()),
            Value::Null => {}
            _ => return Err(doc.error_at(&child(path, "vars"), "`vars` must be a mapping")),
        }
    }
    match map.get("hosts") {
        Some(Value::Object(list)) => {
            for (host, own) in list {
                let at = child(&child(path, "hosts"), host.as_str());
                let own = match own {
                    Value::Object(m) => m.clone(),
                    Value::Null => Map::new(),
                    _ => return Err(doc.error_at(&at, format!("host `{host}` must be a mapping of vars (or empty)"))),
                };
                for expanded in expand_range(host).map_err(|why| doc.error_at(&at, why))? {
                    if hosts.1.insert(expanded.clone()) {
                        hosts.0.push(expanded.clone());
                    }
                    groups.get_mut(name).expect("inserted").hosts.push((expanded, own.clone(), at.clone()));
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(doc.error_at(&child(path, "hosts"), "`hosts` must be a mapping of host names")),
    }
    match map.get("children") {
        Some(Value::Object(children)) => {
            for (c, v) in children {
                walk(doc, &child(&child(path, "children"), c.as_str()), c, v, Some(name), groups, hosts)?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(doc.error_at(&child(path, "children"), "`children` must be a mapping of groups")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str) -> Result<(Vec<Node>, Vec<String>), Error> {
        let doc = if looks_like_ini(text) {
            Document::synthetic(name, ini_to_tree(Path::new(name), text)?)
        } else {
            Document::parse(Path::new(name), text.to_string())?
        };
        assert!(is_inventory(&doc.root), "{:?}", doc.root);
        nodes(0, &doc)
    }

    #[test]
    fn ini_groups_children_vars_and_ranges() {
        let text = "ungrouped1 ansible_host=192.0.2.9\n[web]\nweb[01:02] ansible_user=deploy\nweb3 ansible_host=192.0.2.3 ansible_port=2222 role='front end'\n\n[web:vars]\nhttp_port=80\nansible_python_interpreter=/usr/bin/python3\n\n[prod:children]\nweb\n\n[prod:vars]\nhttp_port=8080\nregion=eu\n\n[all:vars]\nregion=us\n";
        let (nodes, warnings) = load("hosts.ini", text).unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["ungrouped1", "web01", "web02", "web3"]);
        let web3 = &nodes[3];
        assert_eq!((web3.host.as_str(), web3.port), ("192.0.2.3", 2222));
        assert_eq!(web3.groups, ["all", "prod", "web"]);
        // web (inner) beats prod (outer) beats all.
        assert_eq!(web3.vars["http_port"], "80");
        assert_eq!(web3.vars["region"], "eu");
        assert_eq!(web3.vars["role"], "front end");
        assert_eq!(nodes[1].user, "deploy");
        assert_eq!(nodes[0].host, "192.0.2.9");
        assert_eq!(nodes[0].groups, ["all"]);
        assert_eq!(
            warnings,
            ["warning: hosts.ini: `ansible_python_interpreter` is ignored: director has no use for it"]
        );
    }

    #[test]
    fn yaml_inventory_with_nested_children() {
        let text = "all:\n  vars: {ntp: pool}\n  children:\n    db:\n      hosts:\n        db1: {ansible_host: 192.0.2.20, ansible_become: true, ansible_become_user: postgres, ansible_become_pass: x}\n    prod:\n      children:\n        db:\n      vars: {env: prod}\n";
        let (nodes, warnings) = load("inv.yaml", text).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].groups, ["all", "prod", "db"]);
        assert_eq!((nodes[0].vars["ntp"].as_str(), nodes[0].vars["env"].as_str()), (Some("pool"), Some("prod")));
        assert_eq!(
            nodes[0].becomes,
            crate::catalog::Become {
                enabled: true,
                user: "postgres".into(),
                method: crate::catalog::BecomeMethod::Sudo
            }
        );
        assert_eq!(
            warnings,
            ["warning: inv.yaml: `ansible_become_pass` is ignored: give the become password with --ask-become-pass or --become-password-file"]
        );
        let err = load("inv.yaml", "all:\n  hosts: {a: {}}\n  childen: {}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: inv.yaml:3:3: unknown key `childen` in inventory group\n  hint: did you mean `children`? inventory group keys are: hosts, vars, children"
        );
    }

    #[test]
    fn ini_errors_name_the_line() {
        let err = load("h.ini", "[web]\nweb1 ansible_host=x\n= oops\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: h.ini:3:1: `=` is not a host name\n  hint: a host line is `NAME [key=value ...]`, e.g. `web1 ansible_host=192.0.2.10`"
        );
        let err = load("h.ini", "[web]\nweb[1:x]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error: h.ini:2:1: `web[1:x]`: a host range is [START:END] or [START:END:STEP], e.g. web[01:20]\n  hint: a host line is `NAME [key=value ...]`, e.g. `web1 ansible_host=192.0.2.10`"
        );
        assert_eq!(expand_range("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
        assert_eq!(expand_range("n[1:5:2]").unwrap(), ["n1", "n3", "n5"]);
        assert_eq!(expand_range("r[1:2]n[a:b]").unwrap(), ["r1na", "r1nb", "r2na", "r2nb"]);
        // Ranges multiply: a name cannot make an inventory of billions.
        assert_eq!(
            expand_range("w[a:z]x[a:z]y[a:z]z[a:z]").unwrap_err(),
            "`w[a:z]x[a:z]y[a:z]z[a:z]` expands to more than 100000 hosts"
        );
    }
}
