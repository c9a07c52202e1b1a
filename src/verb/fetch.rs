//! Bootstrap's GET: a file copied from the node to the operator, written there 0600 (what is
//! fetched is often a key). Both paths are templates. Fingerprint: `remote`, `local`.

use super::{Cx, Finish, Task, Render, Traits, Verb};
use super::Rendered;
use director_proto::Request;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fetch {
    pub remote: String,
    pub local: String,
}

impl Verb for Fetch {
    fn spelled(&self) -> String {
        format!("{} {}", self.remote, self.local)
    }

    fn templates(&self) -> Vec<&str> {
        vec![&self.remote, &self.local]
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        r.rendered.text = r.text(&self.remote)?;
        r.rendered.value = Value::String(r.text(&self.local)?);
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("remote".into(), json!(r.text));
        fields.insert("local".into(), r.value.clone());
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        Some(format!("{} -> {}", r.text, r.value.as_str().unwrap_or_default()))
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { rendered: r, .. } = task;
        let (remote, local) = (r.text.clone(), r.value.as_str().unwrap_or_default().to_string());
        let path = remote.clone();
        match cx.text(|id| Request::Read { id, path }).await {
            Ok(data) => match write_local(&local, data.as_bytes()) {
                Ok(()) => Finish::ok(format!("fetched {remote} to {local} ({} bytes)", data.len())),
                Err(e) => Finish::failed(e),
            },
            Err(e) => Finish::failed(e),
        }
    }

    fn traits(&self) -> Traits {
        Traits { cacheable: false, heavy: true, ..Traits::DEFAULT }
    }
}

/// Writes a fetched file on the operator atomically (a temp file renamed over it), mode 0600.
fn write_local(path: &str, bytes: &[u8]) -> Result<(), String> {
    crate::private::write_file(std::path::Path::new(path), bytes)
        .map_err(|e| format!("cannot write {path} on the operator: {}", crate::error::io_reason(&e)))
}
