//! Bootstrap's ADD: one file on the operator (looked up in the catalog's directory, then the
//! working directory) sent to the node with its local mode, as Directord did. Source and
//! destination are templates. Fingerprint: `files`.

use super::files::{self, files_field, files_info};
use super::{source, Body, Cx, Finish, Outgoing, Task, Render, Traits, Verb};
use super::Rendered;
use director_proto::Attrs;
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Send {
    pub source: String,
    pub dest: String,
    pub roots: Vec<PathBuf>,
}

impl Verb for Send {
    fn spelled(&self) -> String {
        format!("{} {}", self.source, self.dest)
    }

    fn templates(&self) -> Vec<&str> {
        vec![&self.source, &self.dest]
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        let source = r.text(&self.source)?;
        let dest = r.text(&self.dest)?;
        let found = source::find(&source, &self.roots).map_err(|e| e.message)?;
        r.send(Outgoing { dest, size: found.size, sha3: found.sha3, body: Body::File(found.path) });
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("files".into(), files_field(r));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        Some(files_info(r))
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { outgoing: out, .. } = task;
        let mode = out.first().and_then(|o| match &o.body {
            Body::File(p) => {
                std::fs::metadata(p).ok().map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            }
            Body::Rendered(_) => None,
        });
        files::send(cx, out, &Attrs { mode, ..Default::default() }).await
    }

    fn traits(&self) -> Traits {
        Traits { cacheable: false, heavy: true, ..Traits::DEFAULT }
    }
}
