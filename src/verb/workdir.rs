//! WORKDIR: a directory and its parents on the node, with the mode and owner asked.
//! Fingerprint: `path` (rendered), `owner`, `group`, `mode`. A cache hit is checked: the
//! directory is still there, a directory, as asked (one stat).

use super::files::attrs_drift;
use super::options::{Given, VerbError, FILE_OPTS};
use super::{Cx, Finish, Render, Syntax, Task, Traits, Verb};
use crate::node::cache::JobRecord;
use super::Rendered;
use director_proto::{Attrs, Request};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Workdir {
    /// A template.
    pub path: String,
    pub attrs: Attrs,
}

impl Syntax for Workdir {
    const USAGE: &'static str =
        "WORKDIR [--chown USER[:GROUP]] [--chmod MODE] PATH\n  Create the directory PATH and its parents on the node.";
    const OPTIONS: &'static [(&'static str, super::Arity)] = FILE_OPTS;

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        given.need(words.len() == 1, "one path")?;
        Ok(Workdir { path: words[0].to_string(), attrs: given.attrs()? })
    }
}

impl Verb for Workdir {
    fn spelled(&self) -> String {
        self.path.clone()
    }

    fn templates(&self) -> Vec<&str> {
        vec![&self.path]
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        r.rendered.text = r.text(&self.path)?;
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("path".into(), json!(r.text));
        fields.insert("owner".into(), json!(self.attrs.owner));
        fields.insert("group".into(), json!(self.attrs.group));
        fields.insert("mode".into(), json!(self.attrs.mode));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        Some(r.text.clone())
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { rendered: r, .. } = task;
        let (path, attrs) = (r.text.clone(), self.attrs.clone());
        match cx.done(|id| Request::Mkdir { id, path, attrs }).await {
            Ok(()) => Finish::ok(format!("Directory {} OK", r.text)),
            Err(e) => Finish::failed(e),
        }
    }

    async fn verify(&self, cx: &Cx<'_>, _: &JobRecord, r: &Rendered) -> Option<String> {
        let path = &r.text;
        match cx.stat(path).await {
            Ok(None) => Some(format!("{path} is gone")),
            Ok(Some(s)) if s.kind != "dir" => Some(format!("{path} is no longer a directory")),
            Ok(Some(s)) => attrs_drift(path, &s, &self.attrs),
            Err(_) => Some(format!("{path} could not be checked")),
        }
    }

    fn traits(&self) -> Traits {
        Traits { probes: true, ..Traits::DEFAULT }
    }

    fn probes(&self, _: &JobRecord, r: &Rendered) -> Vec<String> {
        vec![r.text.clone()]
    }

    fn attrs(&self) -> Attrs {
        self.attrs.clone()
    }
}
