//! JOB_WAIT: wait until the job with a fingerprint has finished on every listed node.
//! Fingerprint: `job`, `identities`.

use super::options::{Arity, Given, VerbError};
use super::{Cx, Finish, Task, Syntax, Traits, Verb};
use crate::node::shared::{lock, until};
use super::Rendered;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JobWait {
    pub fingerprint: String,
    pub identities: Vec<String>,
}

impl Syntax for JobWait {
    const USAGE: &'static str =
        "JOB_WAIT FINGERPRINT --identity NODE...\n  Wait until the job with FINGERPRINT has finished on every listed node.";
    const OPTIONS: &'static [(&'static str, Arity)] = &[("--identity", Arity::Many)];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        given.need(words.len() == 1, "one job fingerprint")?;
        let identities = given.many("--identity");
        given.need(!identities.is_empty(), "`--identity NODE...`")?;
        Ok(JobWait { fingerprint: words[0].to_string(), identities })
    }
}

impl Verb for JobWait {
    fn spelled(&self) -> String {
        self.fingerprint.clone()
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("job".into(), json!(self.fingerprint));
        fields.insert("identities".into(), json!(self.identities));
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, .. } = task;
        let fingerprint = &self.fingerprint;
        let mut outcome = Vec::new();
        for name in &self.identities {
            let Some(other) = cx.shared.position(name) else { continue };
            let st = &cx.shared.nodes[other];
            let seen = || {
                if st.cache().jobs.contains_key(fingerprint) {
                    Some(Ok(()))
                } else if lock(&st.failed).contains(fingerprint) {
                    Some(Err(format!("job {fingerprint} failed on {name}")))
                } else if st.is_done() {
                    Some(Err(format!("{name} finished without running job {fingerprint}")))
                } else {
                    None
                }
            };
            match tokio::time::timeout(job.left(), until(&st.changed, seen)).await {
                Ok(Ok(())) => outcome.push(format!("{name}: done")),
                Ok(Err(e)) => return Finish::failed(e),
                Err(_) => {
                    return Finish::failed(format!(
                        "Timeout after {} seconds waiting for job {fingerprint} on {name}",
                        job.timeout.as_secs()
                    ))
                }
            }
        }
        Finish::ok(outcome.join("\n"))
    }

    fn traits(&self) -> Traits {
        Traits { cacheable: false, waits_for_others: true, ..Traits::DEFAULT }
    }

    fn identities(&self) -> &[String] {
        &self.identities
    }
}
