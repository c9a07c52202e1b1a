//! REBOOT: the node reboots, and the run waits for it. Unlike Directord (which fired the
//! reboot and went on), director notes the node's boot, saves the node cache, has the node
//! reboot after SECONDS (at least 1, so the job's answer gets out first), waits for the
//! connection to drop, reaches the node again (its host key checked as on first contact)
//! within `--reboot-timeout`, starts its executors there again, and checks that it booted:
//! the kernel's boot id, or PID 1's start time in a container, which shares its host's boot
//! id. The node's remaining jobs run after it. Fingerprint: `seconds`, `reboot_timeout`.
//!
//! It cannot share a node with async entries: their jobs would be cut by the reboot (the plan
//! refuses it).

use super::options::{err, Arity, Given, VerbError};
use super::{Cx, Finish, Syntax, Task, Traits, Verb};
use super::Rendered;
use director_proto::Request;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reboot {
    /// Seconds the node waits before it reboots.
    pub seconds: u64,
    /// How long the node may take to go down and come back.
    pub timeout: Duration,
}

/// Directord's reboot, kept detached so that the executor's answer gets out first.
const REBOOT: &str = "(setsid /bin/sh -c 'sleep {S}; systemctl --message=\"director reboot instruction\" reboot || reboot' </dev/null >/dev/null 2>&1 &)";

impl Syntax for Reboot {
    const USAGE: &'static str = "REBOOT [--reboot-timeout SECS] [SECONDS]\n  Reboot the node after SECONDS (default 1) and wait until it is back: the connection drops,\n  director reaches the node again, checks it booted, and the node's next jobs run after it.\n  --reboot-timeout S  how long the node may take to come back (default 600)";
    const OPTIONS: &'static [(&'static str, Arity)] = &[("--reboot-timeout", Arity::One)];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        let seconds = match words.as_slice() {
            [] => 1,
            [s] => s.parse::<u64>().ok().filter(|s| *s <= super::MAX_NUMBER).ok_or_else(|| {
                err(format!("REBOOT takes the seconds to wait before the reboot, not `{s}`")).hint(given.usage_hint())
            })?,
            _ => return Err(err("REBOOT takes one number of seconds").hint(given.usage_hint())),
        };
        let timeout = given.number("--reboot-timeout")?.unwrap_or(600);
        if timeout == 0 {
            return Err(err("`--reboot-timeout 0` leaves no time to come back").hint("give the seconds a reboot may take, e.g. 600"));
        }
        Ok(Reboot { seconds: seconds.max(1), timeout: Duration::from_secs(timeout) })
    }
}

impl Reboot {
    /// What tells one boot of the node from the next: the kernel's boot id and PID 1's start
    /// time (a container shares its host's boot id).
    async fn boot(cx: &Cx<'_>) -> Result<String, String> {
        let read = |path: &str| {
            let path = path.to_string();
            cx.text(move |id| Request::Read { id, path })
        };
        let id = read("/proc/sys/kernel/random/boot_id").await?;
        let stat = read("/proc/1/stat").await?;
        // Field 22, counted after the command name, which is in parentheses and may hold spaces.
        let start = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(19)).unwrap_or_default();
        Ok(format!("{} {start}", id.trim()))
    }
}

impl Verb for Reboot {
    fn spelled(&self) -> String {
        self.seconds.to_string()
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("seconds".into(), json!(self.seconds));
        fields.insert("reboot_timeout".into(), json!(self.timeout.as_secs()));
    }

    fn info(&self, _: &Rendered) -> Option<String> {
        Some(format!("reboot in {} s, then wait up to {} s for the node", self.seconds, self.timeout.as_secs()))
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, mut cancel, .. } = task;
        let before = match Self::boot(cx).await {
            Ok(b) => b,
            Err(e) => return Finish::failed(format!("cannot tell the node's boot: {e}")),
        };
        // What the jobs before this one recorded is on the node before it goes down.
        if let Err(e) = cx.save().await {
            return Finish::failed(e);
        }
        let told = cx.command(job, &REBOOT.replace("{S}", &self.seconds.to_string()), Vec::new(), &mut cancel).await;
        if told.status != crate::event::JobStatus::Ok {
            return told;
        }
        let (down, back) = match cx.reconnect(self.timeout).await {
            Ok(times) => times,
            Err(e) => return Finish::failed(e),
        };
        match Self::boot(cx).await {
            Ok(after) if after != before => Finish::ok(format!(
                "rebooted: the connection dropped after {:.1} s, the node answered again after {:.1} s",
                down.as_secs_f64(),
                back.as_secs_f64()
            )),
            Ok(_) => Finish::failed("the node answered again without having rebooted (the same boot)"),
            Err(e) => Finish::failed(format!("the node is back, but its boot cannot be told: {e}")),
        }
    }

    fn traits(&self) -> Traits {
        Traits { reboots: true, ..Traits::DEFAULT }
    }
}
