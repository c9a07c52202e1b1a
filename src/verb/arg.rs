//! ARG and ENV: a value stored in the node cache, as a cached arg (templates see it) or as an
//! environment variable for later commands. Fingerprint: `key`, `value` (rendered),
//! `extend`. They only change the cache: `cached` when the value was already there.

use super::options::{Arity, Given, VerbError};
use super::{Cx, Finish, Task, Render, Syntax, Traits, Verb};
use crate::node::cache::Kind;
use super::Rendered;
use crate::catalog::literal;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Arg {
    /// ENV rather than ARG.
    pub env: bool,
    pub key: String,
    /// Its strings are templates.
    pub value: Value,
    pub extend: bool,
    /// Masked everywhere but on the node.
    pub secret: bool,
}

const ARG_USAGE: &str = "ARG [--extend-args] [--secret] KEY VALUE\n  Store VALUE (a Python literal, else text) as the cached arg KEY on the node; templates see it.\n  --extend-args  extend lists and merge mappings instead of replacing\n  --secret       the value is secret: shown and recorded as [secret]";
const ENV_USAGE: &str = "ENV [--extend-args] [--secret] KEY VALUE\n  Store VALUE as the environment variable KEY for later commands on the node.\n  --extend-args  extend lists and merge mappings instead of replacing\n  --secret       the value is secret: shown and recorded as [secret]";

impl Syntax for Arg {
    const USAGE: &'static str = ARG_USAGE;
    const OPTIONS: &'static [(&'static str, Arity)] = &[("--extend-args", Arity::Flag), ("--secret", Arity::Flag)];

    fn usage(name: &str) -> &'static str {
        if name == "ENV" {
            ENV_USAGE
        } else {
            ARG_USAGE
        }
    }

    fn parse(given: &Given) -> Result<Self, VerbError> {
        given.need(!given.words().is_empty(), "a key and a value")?;
        let rest = given.rest.trim();
        let (key, value) = match rest.split_once(char::is_whitespace) {
            Some((k, v)) => (k.to_string(), literal::parse(&v.split_whitespace().collect::<Vec<_>>().join(" "))),
            None => (rest.to_string(), Value::Null),
        };
        Ok(Arg { env: given.verb == "ENV", key, value, extend: given.has("--extend-args"), secret: given.has("--secret") })
    }
}

impl Verb for Arg {
    fn spelled(&self) -> String {
        match &self.value {
            Value::String(s) => format!("{} {s}", self.key),
            v => format!("{} {v}", self.key),
        }
    }

    fn templates(&self) -> Vec<&str> {
        fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::String(s) => out.push(s),
                Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
                Value::Object(map) => map.values().for_each(|i| strings(i, out)),
                _ => {}
            }
        }
        let mut texts = Vec::new();
        strings(&self.value, &mut texts);
        texts
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        r.rendered.value = r.value(&self.value)?;
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("key".into(), json!(self.key));
        fields.insert("value".into(), r.value.clone());
        fields.insert("extend".into(), json!(self.extend));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        Some(format!("{} = {}", self.key, r.value))
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { rendered: r, .. } = task;
        let (kind, what) = if self.env { (Kind::Envs, "envs") } else { (Kind::Args, "args") };
        if r.value.is_null() {
            return Finish::cache_only(false, format!("Nothing added to cache. {what} had no value"));
        }
        let state = cx.state();
        let now = state.now();
        let changed = {
            let mut cache = state.cache();
            let set = cache.set(kind, &self.key, r.value.clone(), self.extend, now, cx.args_ttl);
            set | (self.secret && cache.mark_secret(kind, &self.key))
        };
        Finish::cache_only(changed, format!("{what} added to cache"))
    }

    fn traits(&self) -> Traits {
        Traits::CACHE_ONLY
    }

    fn secret(&self) -> Option<&Value> {
        self.secret.then_some(&self.value)
    }
}
