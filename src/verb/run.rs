//! RUN: a shell command on the node. Fingerprint: `command` (rendered), `env` (the node's
//! cached envs), `no_block`, `retry`. A cache hit is trusted: what a command did cannot be
//! checked (`--skip-cache` is the escape).

use super::options::{Arity, Given, VerbError};
use super::{Cx, Finish, Task, Render, Syntax, Traits, Verb};
use crate::node::CancelLevel;
use crate::event::JobStatus;
use super::Rendered;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// A template.
    pub command: String,
    pub retry: u32,
    pub no_block: bool,
}

impl Syntax for Run {
    const USAGE: &'static str = "RUN [--no-block] [--retry N] COMMAND...\n  Run COMMAND with /bin/sh on the node; it succeeds when the command exits 0.\n  --no-block  start it in the background and succeed at once\n  --retry N   try up to N times until it succeeds (default 1)";
    const OPTIONS: &'static [(&'static str, Arity)] = &[("--no-block", Arity::Flag), ("--retry", Arity::One)];
    const FREE_TEXT: bool = true;

    fn parse(given: &Given) -> Result<Self, VerbError> {
        given.need(!given.rest.trim().is_empty(), "a command")?;
        Ok(Run {
            command: given.rest.clone(),
            retry: given.attempts()?,
            no_block: given.has("--no-block"),
        })
    }
}

impl Verb for Run {
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
        fields.insert("env".into(), Value::Object(r.env.clone()));
        fields.insert("no_block".into(), json!(self.no_block));
        fields.insert("retry".into(), json!(self.retry));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        Some(r.text.clone())
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, rendered: r, mut cancel, .. } = task;
        let command = if self.no_block {
            format!("(setsid /bin/sh -c {} </dev/null >/dev/null 2>&1 &)", crate::shell::quote(&r.text))
        } else {
            r.text.clone()
        };
        let env = cx.state().cache().env_pairs();
        let mut finish = Finish::failed("not run");
        for _ in 0..self.retry.max(1) {
            finish = cx.command(job, &command, env.clone(), &mut cancel).await;
            if finish.status == JobStatus::Ok || finish.status == JobStatus::Cancelled || *cancel.borrow() != CancelLevel::None
            {
                break;
            }
        }
        finish
    }

    fn traits(&self) -> Traits {
        Traits { cacheable: !self.no_block, streams_output: true, ..Traits::DEFAULT }
    }
}
