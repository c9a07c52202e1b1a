//! SERVICE: systemd units brought to a state through `systemctl`, in Directord's order:
//! `daemon-reload`, then `mask`/`unmask`, then `enable`/`disable`, then
//! `start`/`restart`/`stop`/`reload` (start by default), stopping at the first step that
//! fails. A node not booted with systemd gets a clear error. Fingerprint: `units` (rendered),
//! `state`, `enablement`, `daemon_reload`, `retry`.
//!
//! A cache hit is checked in the job's own frame ([`Verb::check`]): every unit is still
//! active (inactive for `--stopped`) and enabled, disabled, masked or not as asked; when not,
//! the job runs again and says why (`was cached, but nginx.service is inactive`).
//!
//! Unlike Directord, `--daemon-reload` goes with any state (Directord refused it with
//! `--restarted`, which the corpus's own sonarr orchestration uses).

use super::options::{err, Arity, Given, VerbError};
use super::{Cx, Finish, Render, Syntax, Task, Traits, Verb};
use super::Rendered;
use crate::shell::quote;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Service {
    /// The units, a template (split at whitespace once rendered).
    pub units: String,
    pub state: State,
    pub enablement: Option<Enablement>,
    pub daemon_reload: bool,
    pub retry: u32,
}

/// What the units are left doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    Started,
    Restarted,
    Reloaded,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Enablement {
    Enable,
    Disable,
    Mask,
    Unmask,
}

impl State {
    fn command(self) -> &'static str {
        match self {
            State::Started => "start",
            State::Restarted => "restart",
            State::Reloaded => "reload",
            State::Stopped => "stop",
        }
    }
}

impl Enablement {
    fn command(self) -> &'static str {
        match self {
            Enablement::Enable => "enable",
            Enablement::Disable => "disable",
            Enablement::Mask => "mask",
            Enablement::Unmask => "unmask",
        }
    }
}

/// What a node without systemd says.
const NO_SYSTEMD: &str = "SERVICE needs systemd on the node, which was not booted with it (/run/systemd/system is missing)";

impl Syntax for Service {
    const USAGE: &'static str = "SERVICE [--restarted|--reloaded|--stopped] [--enable|--disable|--mask|--unmask] [--daemon-reload] [--retry N] UNIT...\n  Bring systemd units to a state with systemctl: daemon-reload, then mask/unmask, then\n  enable/disable, then start (the default), restart, reload or stop; the first failing step\n  ends the job.\n  --restarted      restart the units\n  --reloaded       reload the units\n  --stopped        stop the units\n  --enable         enable them (--disable, --mask, --unmask likewise)\n  --daemon-reload  reload systemd's unit files first\n  --retry N        try the steps up to N times until they succeed (default 1)";
    const OPTIONS: &'static [(&'static str, Arity)] = &[
        ("--restarted", Arity::Flag),
        ("--reloaded", Arity::Flag),
        ("--stopped", Arity::Flag),
        ("--daemon-reload", Arity::Flag),
        ("--enable", Arity::Flag),
        ("--disable", Arity::Flag),
        ("--mask", Arity::Flag),
        ("--unmask", Arity::Flag),
        ("--retry", Arity::One),
    ];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        given.need(!given.words().is_empty(), "at least one unit")?;
        let one_of = |names: &[&'static str]| -> Result<Option<&'static str>, VerbError> {
            let set: Vec<&'static str> = names.iter().copied().filter(|n| given.has(n)).collect();
            match set.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some(one)),
                [a, b, ..] => Err(err(format!("SERVICE takes one of {}, not both {a} and {b}", names.join(", ")))
                    .hint(given.usage_hint())),
            }
        };
        let state = match one_of(&["--restarted", "--reloaded", "--stopped"])? {
            Some("--restarted") => State::Restarted,
            Some("--reloaded") => State::Reloaded,
            Some(_) => State::Stopped,
            None => State::Started,
        };
        let enablement = one_of(&["--enable", "--disable", "--mask", "--unmask"])?.map(|o| match o {
            "--enable" => Enablement::Enable,
            "--disable" => Enablement::Disable,
            "--mask" => Enablement::Mask,
            _ => Enablement::Unmask,
        });
        if enablement == Some(Enablement::Mask) && state != State::Stopped {
            return Err(err("SERVICE --mask cannot start a unit: a masked unit does not start")
                .hint("mask a unit with --stopped --mask"));
        }
        Ok(Service {
            units: given.words().join(" "),
            state,
            enablement,
            daemon_reload: given.has("--daemon-reload"),
            retry: given.attempts()?,
        })
    }
}

impl Service {
    /// The units as rendered on the node, each quoted for the shell.
    fn units(r: &Rendered) -> String {
        r.text.split_whitespace().map(quote).collect::<Vec<_>>().join(" ")
    }

    /// The systemctl steps, in order.
    fn steps(&self, r: &Rendered) -> Vec<String> {
        let units = Self::units(r);
        let mut steps = Vec::new();
        if self.daemon_reload {
            steps.push("systemctl daemon-reload".to_string());
        }
        if let Some(e @ (Enablement::Mask | Enablement::Unmask)) = self.enablement {
            steps.push(format!("systemctl {} {units}", e.command()));
        }
        if let Some(e @ (Enablement::Enable | Enablement::Disable)) = self.enablement {
            steps.push(format!("systemctl {} {units}", e.command()));
        }
        steps.push(format!("systemctl {} {units}", self.state.command()));
        steps
    }
}

impl Verb for Service {
    fn spelled(&self) -> String {
        let mut words: Vec<&str> = Vec::new();
        if self.daemon_reload {
            words.push("--daemon-reload");
        }
        if let Some(e) = self.enablement {
            words.push(match e {
                Enablement::Enable => "--enable",
                Enablement::Disable => "--disable",
                Enablement::Mask => "--mask",
                Enablement::Unmask => "--unmask",
            });
        }
        match self.state {
            State::Started => {}
            State::Restarted => words.push("--restarted"),
            State::Reloaded => words.push("--reloaded"),
            State::Stopped => words.push("--stopped"),
        }
        words.push(&self.units);
        words.join(" ")
    }

    fn templates(&self) -> Vec<&str> {
        vec![&self.units]
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        r.rendered.text = r.text(&self.units)?.split_whitespace().collect::<Vec<_>>().join(" ");
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("units".into(), json!(r.text));
        fields.insert("state".into(), json!(self.state.command()));
        fields.insert("enablement".into(), json!(self.enablement.map(Enablement::command)));
        fields.insert("daemon_reload".into(), json!(self.daemon_reload));
        fields.insert("retry".into(), json!(self.retry));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        Some(self.steps(r).join(" && "))
    }

    fn check(&self, r: &Rendered, recorded: bool) -> Option<String> {
        if !recorded {
            return None;
        }
        // Each unit's state as asked; the first that is not says so.
        let active = match self.state {
            State::Stopped => r#"case "$a" in active|reloading|activating) echo "$u is $a"; exit 1;; esac"#,
            _ => r#"[ "$a" = active ] || { echo "$u is $a"; exit 1; }"#,
        };
        let enabled = match self.enablement {
            None => "",
            Some(Enablement::Enable) => {
                r#"e=$(systemctl is-enabled "$u" 2>&1); case "$e" in enabled|enabled-runtime|static|indirect|alias|generated) ;; *) echo "$u is $e, not enabled"; exit 1;; esac; "#
            }
            Some(Enablement::Disable) => {
                r#"e=$(systemctl is-enabled "$u" 2>&1); [ "$e" = disabled ] || { echo "$u is $e, not disabled"; exit 1; }; "#
            }
            Some(Enablement::Mask) => {
                r#"e=$(systemctl is-enabled "$u" 2>&1); case "$e" in masked|masked-runtime) ;; *) echo "$u is $e, not masked"; exit 1;; esac; "#
            }
            Some(Enablement::Unmask) => {
                r#"e=$(systemctl is-enabled "$u" 2>&1); case "$e" in masked|masked-runtime) echo "$u is masked"; exit 1;; esac; "#
            }
        };
        Some(format!(
            "[ -d /run/systemd/system ] || exit 1; for u in {}; do {enabled}a=$(systemctl is-active \"$u\" 2>&1); {active}; done",
            Self::units(r)
        ))
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, rendered: r, mut cancel, recorded, .. } = task;
        let script = format!(
            "if [ ! -d /run/systemd/system ]; then echo {} >&2; exit 1; fi; {}",
            quote(NO_SYSTEMD),
            self.steps(r).join(" && ")
        );
        let env = cx.state().cache().env_pairs();
        let check = self.check(r, recorded);
        cx.retried_command(job, check, &script, env, &mut cancel, self.retry).await.0
    }

    fn traits(&self) -> Traits {
        Traits::STREAMS
    }
}
