//! ECHO: words printed on the node. Fingerprint: `text`.

use super::options::{Given, VerbError};
use super::{Cx, Finish, Task, Syntax, Traits, Verb};
use super::Rendered;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Echo {
    pub text: String,
}

impl Syntax for Echo {
    const USAGE: &'static str = "ECHO WORDS...\n  Print WORDS on the node.";
    const OPTIONS: &'static [(&'static str, super::Arity)] = &[];
    const FREE_TEXT: bool = true;

    fn parse(given: &Given) -> Result<Self, VerbError> {
        Ok(Echo { text: given.words().join(" ") })
    }
}

impl Verb for Echo {
    fn spelled(&self) -> String {
        self.text.clone()
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("text".into(), json!(self.text));
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, mut cancel, .. } = task;
        let command = format!("printf '%s\\n' {}", crate::shell::quote(&self.text));
        cx.command(job, &command, Vec::new(), &mut cancel).await
    }

    fn traits(&self) -> Traits {
        Traits::STREAMS
    }
}
