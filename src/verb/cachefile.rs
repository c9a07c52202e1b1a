//! CACHEFILE: a YAML or JSON file on the node loaded into its cached args. Fingerprint:
//! `path`. It only changes the cache.

use super::options::{Given, VerbError};
use super::{Cx, Finish, Task, Syntax, Traits, Verb};
use crate::node::cache::Kind;
use super::Rendered;
use director_proto::Request;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CacheFile {
    pub path: String,
}

impl Syntax for CacheFile {
    const USAGE: &'static str = "CACHEFILE PATH\n  Load the YAML or JSON file PATH on the node into the cached args.";
    const OPTIONS: &'static [(&'static str, super::Arity)] = &[];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        given.need(words.len() == 1, "one path")?;
        Ok(CacheFile { path: words[0].to_string() })
    }
}

impl Verb for CacheFile {
    fn spelled(&self) -> String {
        self.path.clone()
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("path".into(), json!(self.path));
    }

    async fn perform(&self, cx: &Cx<'_>, _: Task<'_>) -> Finish {
        let path = self.path.clone();
        let text = match cx.text(|id| Request::Read { id, path }).await {
            Ok(text) => text,
            Err(e) => return Finish::failed(e),
        };
        // The node wrote this text: it is parsed off the async threads, within the parser's
        // budgets (size, nesting, aliases).
        let parsed = tokio::task::spawn_blocking(move || crate::catalog::yaml::parse_value(&text))
            .await
            .unwrap_or_else(|e| Err(format!("the parser failed: {e}")));
        let path = &self.path;
        let value = match parsed {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Finish::failed(format!("{path} on the node is not a mapping of args")),
            Err(e) => return Finish::failed(format!("{path} on the node is not YAML or JSON: {e}")),
        };
        let state = cx.state();
        let now = state.now();
        let mut cache = state.cache();
        let mut changed = false;
        for (k, v) in value {
            changed |= cache.set(Kind::Args, &k, v, true, now, cx.args_ttl);
        }
        Finish::cache_only(changed, "Cache file loaded")
    }

    fn traits(&self) -> Traits {
        Traits::CACHE_ONLY
    }
}
