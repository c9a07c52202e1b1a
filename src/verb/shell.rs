//! Bootstrap's RUN: the whole string is the shell command (it has no options), a template.
//! Fingerprint: `command` (rendered). Bootstrap always runs it.

use super::{Cx, Finish, Task, Render, Verb};
use super::Rendered;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Shell {
    pub command: String,
}

impl Verb for Shell {
    fn spelled(&self) -> String {
        self.command.clone()
    }

    fn templates(&self) -> Vec<&str> {
        vec![&self.command]
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        r.rendered.text = r.text(&self.command)?;
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("command".into(), json!(r.text));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        Some(r.text.clone())
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, rendered: r, mut cancel, .. } = task;
        let env = cx.state().cache().env_pairs();
        cx.command(job, &r.text, env, &mut cancel).await
    }

    fn cacheable(&self) -> bool {
        false
    }

    fn streams_output(&self) -> bool {
        true
    }
}
