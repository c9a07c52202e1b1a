//! QUEUESENTINEL: every job not yet started on the node is dropped, in this run and in any
//! other director run there. Fingerprint: the common fields only.

use super::options::{Given, VerbError};
use super::{Cx, Finish, Task, Syntax, Traits, Verb};
use director_proto::Request;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueueSentinel;

impl Syntax for QueueSentinel {
    const USAGE: &'static str = "QUEUESENTINEL [ANYTHING]\n  Drop every job not yet started on the node, in this run and in any other director run\n  there (they are reported skipped).";
    const OPTIONS: &'static [(&'static str, super::Arity)] = &[];
    const FREE_TEXT: bool = true;

    fn parse(_: &Given) -> Result<Self, VerbError> {
        Ok(QueueSentinel)
    }
}

impl Verb for QueueSentinel {
    fn spelled(&self) -> String {
        String::new()
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, .. } = task;
        let from = format!("{} (run {}, job {})", cx.node.name, cx.run_id, job.id + 1);
        cx.session.drain(format!("omitted: queue sentinel from job {} of this run", job.id + 1));
        match cx.text(|id| Request::Sentinel { id, from }).await {
            Ok(text) => Finish::ok(text),
            Err(e) => Finish::failed(e),
        }
    }

    fn traits(&self) -> Traits {
        Traits::UNCACHED
    }
}
