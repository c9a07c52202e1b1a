//! What the verbs that write files share (ADD/COPY, POD's kube files, bootstrap's sends):
//! sending them to the node once per content per run, their fingerprint field and info, and
//! how a written file's mode and owner drift is said.

use super::{Body, Cx, Finish, Outgoing, Rendered};
use crate::node::diff;
use crate::node::session::Content;
use crate::node::shared::lock;
use director_proto::{Attrs, Done};
use serde_json::{json, Value};

/// `path changed (mode …, owner …)` when what is there is not as `attrs` asks.
pub(crate) fn attrs_drift(path: &str, stat: &director_proto::FileStat, attrs: &Attrs) -> Option<String> {
    let changes = diff::attr_changes(Some(stat), attrs);
    (!changes.is_empty()).then(|| format!("{path} changed ({})", changes.join(", ")))
}

/// The fingerprint's `files`: each destination with its content hash.
pub(crate) fn files_field(r: &Rendered) -> Value {
    Value::Array(r.files.iter().map(|(dest, sha3)| json!({"dest": dest, "sha3": sha3})).collect())
}

/// Each file sent, a line each, as the job's info.
pub(crate) fn files_info(r: &Rendered) -> String {
    r.files.iter().map(|(dest, sha3)| format!("{dest} (sha3-224 {sha3})")).collect::<Vec<_>>().join("\n")
}

/// Sends each file (or copies it on the node if this run already sent the same content).
pub(crate) async fn send(cx: &Cx<'_>, outgoing: Vec<Outgoing>, attrs: &Attrs) -> Finish {
    let state = cx.state();
    let mut hashes = Vec::new();
    let mut files = Vec::new();
    for file in outgoing {
        let earlier = lock(&state.sent).get(&file.sha3).cloned();
        let mut answer = Err(String::new());
        if let Some(from) = earlier {
            answer = cx
                .session
                .put(file.dest.clone(), file.size, file.sha3.clone(), attrs.clone(), Content::CopyOf(from))
                .await;
        }
        if !matches!(answer, Ok(Done::Ok)) {
            let content = match &file.body {
                Body::File(p) => Content::File(p),
                Body::Rendered(b) => Content::Bytes(b),
            };
            answer = cx.session.put(file.dest.clone(), file.size, file.sha3.clone(), attrs.clone(), content).await;
        }
        match answer {
            Ok(Done::Ok) => {
                lock(&state.sent).insert(file.sha3.clone(), file.dest.clone());
                hashes.push(file.sha3.clone());
                files.push((file.dest, file.sha3));
            }
            Ok(Done::Failed { message }) => return Finish::failed(message),
            Ok(other) => return Finish::failed(format!("unexpected answer {other:?}")),
            Err(e) => return Finish::failed(e),
        }
    }
    Finish { files, ..Finish::ok(hashes.join("\n")) }
}
