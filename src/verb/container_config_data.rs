//! CONTAINER_CONFIG_DATA, as Directord defined it (after the Ansible module of the same
//! name): the JSON files matching `--config-pattern` (default `*.json`) in `--config-path`
//! on the node are read, each keyed by its file name, `--config-overrides` (a mapping of file
//! name to values) merged over them, and the result stored. Directord stored it in a cache
//! key of its own, `configs`; director stores it as the cached arg `configs`, so templates
//! see it. Fingerprint: `path`, `pattern`, `overrides`. It only changes the cache.

use super::options::{err, Arity, Given, VerbError};
use super::{Cx, Finish, Syntax, Task, Traits, Verb};
use crate::node::cache::{merged, Kind};
use super::Rendered;
use crate::shell::quote;
use director_proto::Request;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfigData {
    pub path: String,
    pub pattern: String,
    pub overrides: Map<String, Value>,
    pub debug: bool,
}

impl Syntax for ContainerConfigData {
    const USAGE: &'static str = "CONTAINER_CONFIG_DATA --config-path DIR [--config-pattern GLOB] [--config-overrides JSON] [--debug]\n  Read the JSON files matching GLOB (default *.json) in DIR on the node, merge the overrides\n  (a mapping of file name to values) over them, and store them as the cached arg `configs`,\n  keyed by file name.\n  --debug  print what was stored";
    const OPTIONS: &'static [(&'static str, Arity)] = &[
        ("--config-path", Arity::One),
        ("--config-pattern", Arity::One),
        ("--config-overrides", Arity::One),
        ("--debug", Arity::Flag),
    ];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        given.need(given.words().is_empty(), "no arguments beside its options")?;
        let path = given.one("--config-path").ok_or_else(|| err("CONTAINER_CONFIG_DATA needs --config-path DIR").hint(given.usage_hint()))?;
        let pattern = given.one("--config-pattern").unwrap_or_else(|| "*.json".to_string());
        if pattern.contains('/') {
            return Err(err(format!("`--config-pattern {pattern}` names a path: it matches file names in --config-path")));
        }
        let overrides = match given.one("--config-overrides") {
            None => Map::new(),
            // JSON, as the hint says, or a Python literal as Directord's YAML often held.
            Some(text) => match serde_json::from_str(&text).unwrap_or_else(|_| crate::catalog::literal::parse(&text)) {
                Value::Object(map) => map,
                _ => {
                    return Err(err(format!("`--config-overrides {text}` is not a mapping"))
                        .hint("give a JSON mapping of file name to values: {\"a.json\": {\"k\": 1}}"))
                }
            },
        };
        Ok(ContainerConfigData { path, pattern, overrides, debug: given.has("--debug") })
    }
}

impl Verb for ContainerConfigData {
    fn spelled(&self) -> String {
        format!("--config-path {} --config-pattern {}", self.path, self.pattern)
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("path".into(), json!(self.path));
        fields.insert("pattern".into(), json!(self.pattern));
        fields.insert("overrides".into(), Value::Object(self.overrides.clone()));
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, mut cancel, .. } = task;
        // The file names, one per line (the shell expands the pattern; no match, no name).
        let list = format!(
            "cd {} || exit 1; for f in {}; do [ -f \"$f\" ] && printf '%s\\n' \"$f\"; done; true",
            quote(&self.path),
            self.pattern.replace(' ', "\\ ")
        );
        let listed = cx.command(job, &list, Vec::new(), &mut cancel).await;
        if listed.status != crate::event::JobStatus::Ok {
            return listed;
        }
        let mut configs = Map::new();
        for name in listed.stdout.lines().filter(|l| !l.is_empty()) {
            let path = format!("{}/{name}", self.path.trim_end_matches('/'));
            let text = match cx.text(|id| Request::Read { id, path: path.clone() }).await {
                Ok(t) => t,
                Err(e) => return Finish::failed(format!("cannot read {path}: {e}")),
            };
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => configs.insert(name.to_string(), v),
                Err(e) => return Finish::failed(format!("{path} is not JSON: {e}")),
            };
        }
        for (name, values) in &self.overrides {
            let old = configs.get(name).cloned().unwrap_or(Value::Null);
            configs.insert(name.clone(), merged(&old, values.clone()));
        }
        let said = if self.debug {
            Value::Object(configs.clone()).to_string()
        } else {
            format!("{} config file(s) stored as configs", configs.len())
        };
        let state = cx.state();
        let now = state.now();
        let changed = state.cache().set(Kind::Args, "configs", Value::Object(configs), false, now, cx.args_ttl);
        Finish::cache_only(changed, said)
    }

    fn traits(&self) -> Traits {
        Traits::UNCACHED
    }
}
