//! CACHEEVICT: forget part of the node cache. Fingerprint: `tag`. It only changes the cache.

use super::options::{err, Given, VerbError};
use super::{Cx, Finish, Task, Syntax, Traits, Verb};
use crate::node::shared::lock;
use super::Rendered;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CacheEvict {
    pub tag: String,
}

impl Syntax for CacheEvict {
    const USAGE: &'static str = "CACHEEVICT TAG\n  Forget part of the node cache: jobs, parents, args, envs, query, all, or one job fingerprint.";
    const OPTIONS: &'static [(&'static str, super::Arity)] = &[];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        given.need(words.len() == 1, "one tag")?;
        let tag = words[0];
        let fingerprint = tag.len() == 56 && tag.bytes().all(|b| b.is_ascii_hexdigit());
        if !fingerprint && !["jobs", "parents", "args", "envs", "query", "all"].contains(&tag) {
            return Err(err(format!("CACHEEVICT does not know the tag `{tag}`"))
                .hint("use jobs, parents, args, envs, query, all, or a job fingerprint (56 hex digits)"));
        }
        Ok(CacheEvict { tag: tag.to_string() })
    }
}

impl Verb for CacheEvict {
    fn spelled(&self) -> String {
        self.tag.clone()
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("tag".into(), json!(self.tag));
    }

    async fn perform(&self, cx: &Cx<'_>, _: Task<'_>) -> Finish {
        let state = cx.state();
        let changed = state.cache().evict(&self.tag);
        if self.tag == "all" || self.tag == "jobs" {
            lock(&state.sent).clear();
        }
        Finish::cache_only(changed, format!("{} evicted from the cache", self.tag))
    }

    fn traits(&self) -> Traits {
        Traits::CACHE_ONLY
    }
}
