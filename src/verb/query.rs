//! QUERY: the cached arg KEY of every target of the job, collected and stored on each of them
//! as `query.<node>.<key>`. Fingerprint: `key`. Nodes meet here ([`crate::node::shared`]);
//! it asks every target even with `--run-once`, as Directord's did.

use super::options::{Arity, Given, VerbError};
use super::{Cx, Finish, Task, Syntax, Traits, Verb};
use crate::node::cache::Kind;
use super::Rendered;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Query {
    pub key: String,
}

impl Syntax for Query {
    const USAGE: &'static str = "QUERY [--no-wait] KEY\n  Collect the cached arg KEY from every target of the job and store the map as\n  query.<node>.<key> on each of them.\n  --no-wait  accepted for Directord compatibility; the collection always completes";
    const OPTIONS: &'static [(&'static str, Arity)] = &[("--no-wait", Arity::Flag)];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        given.need(words.len() == 1, "one key")?;
        Ok(Query { key: words[0].to_string() })
    }
}

impl Verb for Query {
    fn spelled(&self) -> String {
        self.key.clone()
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("key".into(), json!(self.key));
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, .. } = task;
        let state = cx.state();
        let key = &self.key;
        let own = state.cache().arg(key).cloned();
        let names = |node: usize| cx.shared.nodes[node].name.clone();
        let build = |answers: &[(usize, &Option<Value>)]| {
            let mut map = Map::new();
            for (node, value) in answers {
                let mut entry = Map::new();
                if let Some(v) = value {
                    entry.insert(key.clone(), v.clone());
                }
                map.insert(names(*node), Value::Object(entry));
            }
            Value::Object(map)
        };
        let Ok(map) = tokio::time::timeout(job.left(), cx.shared.query(job.id, cx.index, own.clone(), build)).await
        else {
            return Finish::timed_out(format!(
                "not every target reached this QUERY within {} s",
                job.timeout.as_secs()
            ));
        };
        let now = state.now();
        let changed = state.cache().set(Kind::Args, "query", map, true, now, cx.args_ttl);
        Finish::cache_only(changed, json!({ key.as_str(): own }).to_string())
    }

    fn traits(&self) -> Traits {
        Traits { cacheable: false, cache_only: true, waits_for_others: true, gathers: true, ..Traits::DEFAULT }
    }
}
