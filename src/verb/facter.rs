//! FACTER: the node's facts (OS release, kernel, architecture, processors, memory, host
//! name and FQDN, network interfaces and their addresses, block devices, virtualisation),
//! gathered by the executor itself, so the node needs no facter; where facter is installed
//! its `facter --json` is merged over them. They are stored as the cached arg `facter`:
//! unlike Directord, which replaced every arg with them, the other args stay. Fingerprint:
//! `custom_dir`, `external_dir`. It only changes the cache: `cached` when the facts are the
//! same as last time.

use super::options::{Arity, Given, VerbError};
use super::{Cx, Finish, Syntax, Task, Traits, Verb};
use crate::node::cache::Kind;
use super::Rendered;
use director_proto::Request;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Facter {
    pub custom_dir: Option<String>,
    pub external_dir: Option<String>,
}

impl Syntax for Facter {
    const USAGE: &'static str = "FACTER [--custom-dir DIR] [--external-dir DIR]\n  Gather the node's facts and store them as the cached arg `facter` (templates see\n  facter.os.name, facter.networking.ip, ...). No facter is needed on the node; where it is\n  installed, `facter --json` is merged over them.\n  --custom-dir DIR    facter's own --custom-dir\n  --external-dir DIR  facter's own --external-dir";
    const OPTIONS: &'static [(&'static str, Arity)] = &[("--custom-dir", Arity::One), ("--external-dir", Arity::One)];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        given.need(given.words().is_empty(), "no arguments beside its options")?;
        Ok(Facter { custom_dir: given.one("--custom-dir"), external_dir: given.one("--external-dir") })
    }
}

impl Verb for Facter {
    fn spelled(&self) -> String {
        let mut words = Vec::new();
        if let Some(d) = &self.custom_dir {
            words.push(format!("--custom-dir {d}"));
        }
        if let Some(d) = &self.external_dir {
            words.push(format!("--external-dir {d}"));
        }
        words.join(" ")
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("custom_dir".into(), json!(self.custom_dir));
        fields.insert("external_dir".into(), json!(self.external_dir));
    }

    async fn perform(&self, cx: &Cx<'_>, _: Task<'_>) -> Finish {
        let (custom_dir, external_dir) = (self.custom_dir.clone(), self.external_dir.clone());
        let text = match cx.text(|id| Request::Facter { id, custom_dir, external_dir }).await {
            Ok(text) => text,
            Err(e) => return Finish::failed(format!("cannot gather the facts: {e}")),
        };
        let facts: Value = match serde_json::from_str(&text) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Finish::failed("the node's facts are not a JSON object"),
        };
        let summary = format!(
            "facts gathered: {} on {} ({} CPUs)",
            facts["os"]["distro"]["description"].as_str().or(facts["os"]["name"].as_str()).unwrap_or("an unknown OS"),
            facts["architecture"].as_str().unwrap_or("an unknown architecture"),
            facts["processors"]["count"]
        );
        let state = cx.state();
        let now = state.now();
        let changed = state.cache().set(Kind::Args, "facter", facts, false, now, cx.args_ttl);
        Finish::cache_only(changed, summary)
    }

    fn traits(&self) -> Traits {
        Traits::CACHE_ONLY
    }
}
