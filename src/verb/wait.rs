//! WAIT: sleep, or wait on the node until a URL answers 2xx/3xx or a command succeeds.
//! Fingerprint: one of `seconds`, `url` (rendered), `command` (rendered, with `env`); then
//! `retry`, `retry_wait`, `insecure`.

use super::options::{err, Arity, Given, VerbError};
use super::{Cx, Finish, Task, Render, Syntax, Traits, Verb};
use crate::node::CancelLevel;
use crate::event::JobStatus;
use super::Rendered;
use crate::shell::quote;
use serde_json::{json, Map, Value};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Wait {
    pub on: WaitOn,
    pub retry: u32,
    pub retry_wait: Duration,
    pub insecure: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum WaitOn {
    Seconds(u64),
    /// A template.
    Url(String),
    /// A template.
    Cmd(String),
}

impl Syntax for Wait {
    const USAGE: &'static str = "WAIT (--seconds N | --url URL | --cmd COMMAND...) [--retry N] [--retry-wait SECS] [--insecure]\n  Sleep, or wait for a URL to answer 2xx/3xx, or for a command to succeed, on the node.\n  --retry N         attempts after the first (default 30)\n  --retry-wait S    seconds between attempts (default 1)\n  --insecure        do not verify TLS certificates";
    const OPTIONS: &'static [(&'static str, Arity)] = &[
        ("--seconds", Arity::One),
        ("--url", Arity::Flag),
        ("--cmd", Arity::Flag),
        ("--retry", Arity::One),
        ("--retry-wait", Arity::One),
        ("--insecure", Arity::Flag),
    ];
    const FREE_TEXT: bool = true;

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        let on = match (given.number("--seconds")?, given.has("--url"), given.has("--cmd")) {
            (Some(s), false, false) => {
                given.need(given.rest.trim().is_empty(), "nothing after `--seconds N`")?;
                WaitOn::Seconds(s)
            }
            (None, true, false) => {
                given.need(words.len() == 1, "one URL after --url")?;
                WaitOn::Url(words[0].to_string())
            }
            (None, false, true) => {
                given.need(!given.rest.trim().is_empty(), "a command after --cmd")?;
                WaitOn::Cmd(given.rest.clone())
            }
            _ => {
                return Err(err("WAIT needs exactly one of --seconds N, --url URL, --cmd COMMAND")
                    .hint(given.usage_hint()))
            }
        };
        // A sleep is not retried and reaches no URL: options that would mean nothing are errors.
        for (option, applies) in [
            ("--retry", !matches!(on, WaitOn::Seconds(_))),
            ("--retry-wait", !matches!(on, WaitOn::Seconds(_))),
            ("--insecure", matches!(on, WaitOn::Url(_))),
        ] {
            if given.has(option) && !applies {
                let with = if option == "--insecure" { "--url" } else { "--url or --cmd" };
                return Err(err(format!("WAIT {option} goes with {with}")).hint(given.usage_hint()));
            }
        }
        Ok(Wait {
            on,
            retry: given.number("--retry")?.unwrap_or(30) as u32,
            retry_wait: Duration::from_secs(given.number("--retry-wait")?.unwrap_or(1)),
            insecure: given.has("--insecure"),
        })
    }
}

impl Verb for Wait {
    fn spelled(&self) -> String {
        match &self.on {
            WaitOn::Seconds(s) => format!("--seconds {s}"),
            WaitOn::Url(u) => format!("--url {u}"),
            WaitOn::Cmd(c) => format!("--cmd {c}"),
        }
    }

    fn templates(&self) -> Vec<&str> {
        match &self.on {
            WaitOn::Url(t) | WaitOn::Cmd(t) => vec![t],
            WaitOn::Seconds(_) => Vec::new(),
        }
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        if let WaitOn::Url(t) | WaitOn::Cmd(t) = &self.on {
            r.rendered.text = r.text(t)?;
        }
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        match &self.on {
            WaitOn::Seconds(s) => fields.insert("seconds".into(), json!(s)),
            WaitOn::Url(_) => fields.insert("url".into(), json!(r.text)),
            WaitOn::Cmd(_) => {
                fields.insert("env".into(), Value::Object(r.env.clone()));
                fields.insert("command".into(), json!(r.text))
            }
        };
        fields.insert("retry".into(), json!(self.retry));
        fields.insert("retry_wait".into(), json!(self.retry_wait.as_secs()));
        fields.insert("insecure".into(), json!(self.insecure));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        match self.on {
            WaitOn::Seconds(_) => None,
            _ => Some(r.text.clone()),
        }
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, rendered: r, cancel, .. } = task;
        let command = match &self.on {
            WaitOn::Seconds(s) => format!("sleep {s}"),
            WaitOn::Url(_) => url_probe(&r.text, self.insecure),
            WaitOn::Cmd(_) => r.text.clone(),
        };
        let attempts = if matches!(self.on, WaitOn::Seconds(_)) { 1 } else { self.retry + 1 };
        let env = cx.state().cache().env_pairs();
        let work = async {
            let mut finish = Finish::failed("not run");
            for attempt in 0..attempts {
                if attempt > 0 {
                    tokio::time::sleep(self.retry_wait).await;
                }
                finish = cx.command(job, &command, env.clone(), &mut cancel.clone()).await;
                if finish.status == JobStatus::Ok || *cancel.borrow() != CancelLevel::None {
                    return finish;
                }
            }
            if attempts > 1 {
                finish.reason =
                    Some(format!("still not ready after {attempts} attempts ({})", finish.reason.unwrap_or_default()));
            }
            finish
        };
        match tokio::time::timeout(job.left(), work).await {
            Ok(f) => f,
            Err(_) => Finish::timed_out(format!("timed out after {} s", job.timeout.as_secs())),
        }
    }

    fn traits(&self) -> Traits {
        Traits::STREAMS
    }
}

/// A shell command that succeeds when `url` answers 2xx or 3xx, with curl or wget.
fn url_probe(url: &str, insecure: bool) -> String {
    let u = quote(url);
    let (k, nc) = if insecure { (" -k", " --no-check-certificate") } else { ("", "") };
    format!(
        "if command -v curl >/dev/null 2>&1; then c=$(curl -s{k} -o /dev/null -w '%{{http_code}}' --max-time 10 {u}); case \"$c\" in 2??|3??) exit 0;; esac; echo \"HTTP status $c\" >&2; exit 1; \
         elif command -v wget >/dev/null 2>&1; then exec wget -q{nc} -T 10 -O /dev/null {u}; \
         else echo 'WAIT --url needs curl or wget on the node' >&2; exit 127; fi"
    )
}
