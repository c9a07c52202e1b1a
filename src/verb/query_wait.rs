//! QUERY_WAIT: wait until a QUERY made `query.<node>.ITEM` known on this node, for every
//! listed node (or any). Fingerprint: `item`, `query_timeout`, `identities`.

use super::options::{Arity, Given, VerbError};
use super::{Cx, Finish, Task, Syntax, Traits, Verb};
use crate::node::shared::until;
use super::Rendered;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryWait {
    pub item: String,
    pub timeout: Duration,
    pub identities: Vec<String>,
}

impl Syntax for QueryWait {
    const USAGE: &'static str = "QUERY_WAIT ITEM [--query-timeout SECS] [--identity NODE...]\n  Wait until query.<node>.ITEM is known for every listed node (or for any node).";
    const OPTIONS: &'static [(&'static str, Arity)] = &[("--query-timeout", Arity::One), ("--identity", Arity::Many)];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        given.need(words.len() == 1, "one item")?;
        Ok(QueryWait {
            item: words[0].to_string(),
            timeout: Duration::from_secs(given.number("--query-timeout")?.unwrap_or(600)),
            identities: given.many("--identity"),
        })
    }
}

impl Verb for QueryWait {
    fn spelled(&self) -> String {
        self.item.clone()
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("item".into(), json!(self.item));
        fields.insert("query_timeout".into(), json!(self.timeout.as_secs()));
        fields.insert("identities".into(), json!(self.identities));
    }

    async fn perform(&self, cx: &Cx<'_>, _: Task<'_>) -> Finish {
        let state = cx.state();
        let item = &self.item;
        let ready = || {
            let cache = state.cache();
            let query = cache.arg("query")?.as_object()?;
            let has = |node: &str| query.get(node).and_then(|v| v.get(item.as_str())).is_some();
            let ok = if self.identities.is_empty() {
                query.keys().any(|n| has(n))
            } else {
                self.identities.iter().all(|n| has(n))
            };
            ok.then_some(())
        };
        match tokio::time::timeout(self.timeout, until(&state.changed, ready)).await {
            Ok(()) => Finish::ok(format!("query item {item} is known")),
            Err(_) => Finish::failed(format!(
                "Timeout after {} seconds waiting for query item {item}",
                self.timeout.as_secs()
            )),
        }
    }

    fn traits(&self) -> Traits {
        Traits { cacheable: false, cache_only: true, waits_for_others: true, ..Traits::DEFAULT }
    }

    fn identities(&self) -> &[String] {
        &self.identities
    }
}
