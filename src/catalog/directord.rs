//! Directord's bootstrap catalogs: `directord_server` and `directord_clients`, each with
//! `args` (defaults for its targets) and `targets`; their nodes land in the groups of the
//! same names. Several files merge their `args` first (see [`super::Catalog`]).

use super::fields::{check_keys, port_field, text_field, word_field};
use super::yaml::{child, Document, Seg};
use super::{local_user, Become, IdentityOrigin, Node, SshOptions, TransportKind};
use crate::error::Error;
use crate::paths::expand_home;
use serde_json::{Map, Value};

/// The sections of a Directord catalog.
pub(super) const SECTIONS: &[&str] = &["directord_server", "directord_clients"];

/// A Directord section's `args`: defaults for its targets.
const ARG_KEYS: &[&str] = &["port", "username", "key_file"];

const TARGET_KEYS: &[&str] = &["host", "name", "port", "username"];

/// The nodes of document `index`, a Directord catalog, with the `args` of every file merged.
pub(super) fn nodes(index: usize, doc: &Document, merged_args: &Map<String, Value>) -> Result<Vec<Node>, Error> {
    let top = doc.root.as_object().expect("checked by caller");
    // Other top-level keys are data for bootstrap templates, as in Directord; but a near
    // miss of a section name is a typo that would drop the section silently.
    for key in top.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
        if let Some(meant) = crate::error::suggest(key, SECTIONS.iter().copied()) {
            return Err(doc
                .error_at(&[Seg::KeyName(key.clone())], format!("unknown section `{key}` in bootstrap catalog"))
                .hint(format!("did you mean `{meant}`? the sections are directord_server and directord_clients")));
        }
    }
    let mut nodes = Vec::new();
    for section in SECTIONS {
        let Some(sec) = top.get(*section) else { continue };
        let sec_path = [Seg::Key(section.to_string())];
        let Value::Object(sec) = sec else {
            return Err(doc.error_at(&sec_path, format!("`{section}` must be a mapping with `targets`")));
        };
        check_keys(doc, &sec_path, sec, &["args", "targets", "jobs"], section)?;
        if let Some(Value::Object(args)) = sec.get("args") {
            check_keys(doc, &child(&sec_path, "args"), args, ARG_KEYS, &format!("{section} args"))?;
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
            check_keys(doc, &path, t, TARGET_KEYS, "target")?;
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
                relay: None,
                origin: (index, path),
            });
        }
    }
    Ok(nodes)
}
