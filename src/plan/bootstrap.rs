//! The plan of `director bootstrap`: every selected catalog node, the catalogs' own jobs.
//!
//! Pure, like the rest of [`crate::plan`]: servers (the `directord_server` group) get the
//! server jobs, every other node the client jobs; every node is in the plan, with or without
//! jobs, because bootstrapping is first of all connecting, recording the host key, installing
//! the executor and gathering facts. Templates see the merged catalog plus
//! `directord_bootstrap`, the node's own entry `{host, port, username, jobs, key_file, name}`.

use super::{CacheUse, Job, Plan, PlannedEntry, Schedule, Selection, Work, DEFAULT_TIMEOUT};
use crate::catalog::bootstrap::{self, SECTIONS};
use crate::catalog::{Catalog, Node};
use crate::error::Error;
use crate::verb;
use serde_json::{json, Map, Value};
use std::path::PathBuf;

impl Plan {
    pub fn bootstrap(catalog: &Catalog, selection: &Selection, threads: usize) -> Result<Plan, Error> {
        let allowed = selection.mask(catalog)?;
        let nodes: Vec<Node> =
            catalog.nodes.iter().zip(&allowed).filter(|(_, ok)| **ok).map(|(n, _)| n.clone()).collect();
        if let Some(node) = nodes.iter().find(|n| n.relay.is_some()) {
            let relay = node.relay.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
            return Err(Error::input(format!("node `{}` is behind relay `{relay}`, and bootstrap does not go through relays", node.name))
                .hint("bootstrap reaches every node from here: --restrict it to the direct nodes; `orchestrate` runs through relays"));
        }
        let is_server = |n: &Node| n.groups.iter().any(|g| g == SECTIONS[0]);
        let specs = bootstrap::jobs(catalog)?;
        let mut jobs = Vec::new();
        let mut entries = Vec::new();
        for section in SECTIONS {
            let targets: Vec<usize> =
                (0..nodes.len()).filter(|&i| is_server(&nodes[i]) == (section == SECTIONS[0])).collect();
            let mine: Vec<&bootstrap::BootstrapJob> = specs.iter().filter(|j| j.section == section).collect();
            if mine.is_empty() {
                continue;
            }
            let raw = Value::Array(mine.iter().map(|j| j.raw.clone()).collect());
            let written = super::fingerprint::canonical(&raw);
            let mut entry = PlannedEntry {
                name: Some(section.to_string()),
                fingerprint: super::fingerprint::hash(&written),
                written,
                is_async: false,
                jobs: Vec::new(),
            };
            for spec in mine {
                let work = match spec.verb.as_str() {
                    "RUN" => Work::Run(verb::run::Run { command: spec.text.clone(), retry: 1, no_block: false }),
                    verb => {
                        let (a, b) = spec
                            .text
                            .trim()
                            .split_once(char::is_whitespace)
                            .map(|(a, b)| (a.to_string(), b.trim().to_string()))
                            .unwrap_or((spec.text.clone(), String::new()));
                        if verb == "ADD" {
                            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                            Work::Send(verb::send::Send { source: a, dest: b, roots: vec![spec.dir.clone(), cwd] })
                        } else {
                            Work::Fetch(verb::fetch::Fetch { remote: a, local: b })
                        }
                    }
                };
                entry.jobs.push(jobs.len());
                jobs.push(Job {
                    id: jobs.len(),
                    entry: entries.len(),
                    name: None,
                    verb: spec.verb.clone(),
                    work,
                    timeout: DEFAULT_TIMEOUT,
                    run_once: false,
                    cache: CacheUse::Never,
                    stdout_arg: None,
                    stderr_arg: None,
                    targets: targets.clone(),
                    definition: spec.raw.clone(),
                    becomes: Default::default(),
                });
            }
            entries.push(entry);
        }
        let merged = bootstrap::merged(catalog);
        let vars = nodes
            .iter()
            .map(|node| {
                let mut vars = merged.clone();
                let section = if is_server(node) { SECTIONS[0] } else { SECTIONS[1] };
                let section_jobs =
                    merged.get(section).and_then(|s| s.get("jobs")).cloned().unwrap_or(Value::Array(Vec::new()));
                vars.insert("directord_bootstrap".into(), entry_of(node, section_jobs));
                vars
            })
            .collect();
        let servers = (0..nodes.len()).filter(|&i| is_server(&nodes[i])).collect();
        Ok(Plan {
            nodes,
            entries,
            jobs,
            vars,
            schedule: Schedule::Bootstrap { servers, threads: threads.max(1) },
            forced: Some("bootstrap runs every job".into()),
            batching: None,
            relays: Vec::new(),
            query_targets: Vec::new(),
        })
    }
}

/// `directord_bootstrap` for a node: what Directord hands its templates.
fn entry_of(node: &Node, jobs: Value) -> Value {
    let mut m = Map::new();
    m.insert("host".into(), json!(node.host));
    m.insert("port".into(), json!(node.port));
    m.insert("username".into(), json!(node.user));
    m.insert("jobs".into(), jobs);
    m.insert(
        "key_file".into(),
        node.identity_file.as_ref().map(|p| json!(p.display().to_string())).unwrap_or(Value::Null),
    );
    m.insert("name".into(), json!(node.name));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::yaml::Document;
    use std::path::Path;

    #[test]
    fn servers_get_server_jobs_and_every_node_is_planned() {
        let c = Catalog::from_documents(vec![Document::parse(
            Path::new("b.yaml"),
            "directord_server:\n  targets: [{host: 10.0.0.1, name: s0}]\n  jobs: [{RUN: echo s}]\ndirectord_clients:\n  targets: [{host: 10.0.0.2, name: c1}, {host: 10.0.0.3, name: c2}]\n  jobs: [{RUN: 'echo {{ directord_bootstrap.name }}'}, {GET: /etc/hostname out}]\n".to_string(),
        )
        .unwrap()])
        .unwrap();
        let plan = Plan::bootstrap(&c, &Selection::default(), 3).unwrap();
        assert_eq!(plan.nodes.len(), 3);
        assert_eq!(plan.schedule, Schedule::Bootstrap { servers: vec![0], threads: 3 });
        let shape: Vec<(String, Vec<usize>)> = plan.jobs.iter().map(|j| (j.label(), j.targets.clone())).collect();
        assert_eq!(
            shape,
            [
                ("RUN echo s".to_string(), vec![0]),
                ("RUN echo {{ directord_bootstrap.name }}".to_string(), vec![1, 2]),
                ("GET /etc/hostname out".to_string(), vec![1, 2])
            ]
        );
        assert_eq!(plan.vars[2]["directord_bootstrap"]["name"], "c2");
        assert_eq!(plan.vars[2]["directord_server"]["targets"][0]["host"], "10.0.0.1");
        assert!(plan.jobs.iter().all(|j| !j.cacheable()));
    }
}
