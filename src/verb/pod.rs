//! POD: podman pods through the `podman` command on the node (Directord used podman's REST
//! socket; `--socket-path` talks to one here too, through `podman --url`). Fingerprint:
//! `action`, `target`, `files` (for `--play`), `socket`, `env`, `command`, `privileged`,
//! `tls_verify`, `force`, `kill_signal`, `systemd`, `hooks`. Each option says what it goes
//! with: one given where it means nothing is an error.
//!
//! `--play FILE` takes a kube YAML from the operator (found like an ADD source; its content
//! is in the fingerprint, so editing it plays it again), sends it to
//! `/var/lib/director/pods/` on the node and runs `podman kube play --replace` on it. With
//! `--systemd NAME` it goes as Conductor ran services: director writes a systemd unit
//! `NAME.service` that plays the file on start and takes it down on stop, with hooks
//! (`--hook pre-start=CMD`, `post-start=CMD`, `pre-stop=CMD`) run around those, and enables
//! and (re)starts it. The unit and the hooks see the pod's configuration as environment
//! variables: `CONDUCTOR_SERVICE` (NAME), `CONDUCTOR_PLAY_FILE` (the YAML on the node),
//! `CONDUCTOR_PODS` (the pods it defines, space-separated), `CONDUCTOR_POD` (the first), and
//! each `--env K=V`.
//!
//! Cache hits are checked in the job's own frame: the pods of a `--play` (and the unit of a
//! `--systemd`) running, a `--start`ed pod running, a `--stop`ped one not; a pod to `--rm`
//! that is not there is `cached` even without a record. `--inspect` and `--kill` always run.

use super::files;
use super::podman::{self, podman};
use super::options::{err, Arity, Given, VerbError};
use super::source::{self, Source};
use super::{Body, Cx, Finish, Outgoing, Render, Syntax, Task, Traits, Verb};
use crate::node::Checked;
use super::Rendered;
use crate::shell::quote;
use director_proto::{Attrs, Request};
use serde_json::{json, Map, Value};

/// Where `--play` files and `--systemd` service files go on the node.
pub(crate) const POD_DIR: &str = "/var/lib/director/pods";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pod {
    pub action: Action,
    pub socket: Option<String>,
    pub env: Vec<(String, String)>,
    /// `--exec-run`'s command.
    pub command: Vec<String>,
    pub privileged: bool,
    /// `--no-tlsverify`: a play pulls its images without checking the registry's TLS.
    pub tls_verify: bool,
    pub force: bool,
    pub kill_signal: Option<String>,
    /// `--systemd NAME` with `--play`.
    pub systemd: Option<String>,
    pub hooks: Vec<(Hook, String)>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Start(String),
    Stop(String),
    Rm(String),
    Kill(String),
    Inspect(String),
    /// The file, and the pods it defines (`kind: Pod`).
    Play(Source, Vec<String>),
    ExecRun(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Hook {
    PreStart,
    PostStart,
    PreStop,
}

impl Hook {
    const ALL: [(&'static str, Hook); 3] =
        [("pre-start", Hook::PreStart), ("post-start", Hook::PostStart), ("pre-stop", Hook::PreStop)];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, h)| *h == self).map(|(n, _)| *n).unwrap_or_default()
    }
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Start(_) => "--start",
            Action::Stop(_) => "--stop",
            Action::Rm(_) => "--rm",
            Action::Kill(_) => "--kill",
            Action::Inspect(_) => "--inspect",
            Action::Play(..) => "--play",
            Action::ExecRun(_) => "--exec-run",
        }
    }

    fn target(&self) -> String {
        match self {
            Action::Start(n) | Action::Stop(n) | Action::Rm(n) | Action::Kill(n) | Action::Inspect(n) => n.clone(),
            Action::ExecRun(c) => c.clone(),
            Action::Play(source, _) => source.path.file_name().unwrap_or_default().to_string_lossy().into_owned(),
        }
    }
}

impl Syntax for Pod {
    const USAGE: &'static str = "POD (--start|--stop|--rm|--kill|--inspect NAME | --play FILE | --exec-run CONTAINER) [--socket-path PATH] [--env K=V,...] [--command CMD...] [--privileged] [--force] [--no-tlsverify] [--kill-signal SIG] [--systemd NAME] [--hook WHEN=CMD...]\n  Manage podman pods on the node.\n  --play FILE        play a kube YAML from the operator (sent to /var/lib/director/pods/)\n  --systemd NAME     with --play: run it as the systemd service NAME (enabled, restarted)\n  --hook WHEN=CMD    with --systemd: run CMD at pre-start, post-start or pre-stop\n  --start/--stop/--rm/--kill/--inspect NAME   that pod\n  --exec-run C       run --command in container C\n  --env K=V,...      environment for --exec-run, the service and its hooks\n  --privileged       --exec-run with extended privileges\n  --force            --rm a running pod too\n  --no-tlsverify     --play pulls images without checking the registry's TLS certificate\n  --kill-signal SIG  the signal of --kill (default SIGKILL)\n  --socket-path PATH talk to podman's API socket at PATH";
    const OPTIONS: &'static [(&'static str, Arity)] = &[
        ("--start", Arity::One),
        ("--stop", Arity::One),
        ("--rm", Arity::One),
        ("--kill", Arity::One),
        ("--inspect", Arity::One),
        ("--play", Arity::One),
        ("--exec-run", Arity::One),
        ("--socket-path", Arity::One),
        ("--env", Arity::One),
        ("--command", Arity::Many),
        ("--privileged", Arity::Flag),
        ("--no-tlsverify", Arity::Flag),
        ("--force", Arity::Flag),
        ("--kill-signal", Arity::One),
        ("--systemd", Arity::One),
        ("--hook", Arity::Many),
    ];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        given.need(given.words().is_empty(), "nothing beside its options")?;
        let names = ["--start", "--stop", "--rm", "--kill", "--inspect", "--play", "--exec-run"];
        let chosen: Vec<(&str, String)> = names.iter().filter_map(|n| given.one(n).map(|v| (*n, v))).collect();
        let [(which, value)] = chosen.as_slice() else {
            return Err(err("POD needs exactly one of --start, --stop, --rm, --kill, --inspect, --play, --exec-run")
                .hint(given.usage_hint()));
        };
        let action = match *which {
            "--start" => Action::Start(value.clone()),
            "--stop" => Action::Stop(value.clone()),
            "--rm" => Action::Rm(value.clone()),
            "--kill" => Action::Kill(value.clone()),
            "--inspect" => Action::Inspect(value.clone()),
            "--exec-run" => Action::ExecRun(value.clone()),
            _ => {
                let mut found = source::resolve(value, given.roots)?;
                if found.len() != 1 {
                    return Err(err(format!("POD --play takes one file; `{value}` matches {}", found.len())));
                }
                let file = found.remove(0);
                let pods = pod_names(&file)?;
                Action::Play(file, pods)
            }
        };
        let env = match given.one("--env") {
            None => Vec::new(),
            Some(text) => text
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                        Ok((k.to_string(), v.to_string()))
                    }
                    _ => Err(err(format!("`--env {text}`: `{pair}` is not NAME=VALUE")).hint("e.g. --env A=1,B=two")),
                })
                .collect::<Result<_, _>>()?,
        };
        let command = given.many("--command");
        if matches!(action, Action::ExecRun(_)) == command.is_empty() {
            return Err(err("POD --exec-run CONTAINER goes with --command CMD..., and --command only with --exec-run")
                .hint(given.usage_hint()));
        }
        let systemd = given.one("--systemd");
        if systemd.is_some() && !matches!(action, Action::Play(..)) {
            return Err(err("POD --systemd NAME runs a played file as a service: it goes with --play FILE"));
        }
        if let Some(name) = &systemd {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
                return Err(err(format!("`--systemd {name}` is not a unit name")).hint("letters, digits, - _ . @"));
            }
        }
        let mut hooks: Vec<(Hook, String)> = Vec::new();
        for word in given.every("--hook") {
            let starts = Hook::ALL.iter().find_map(|(n, h)| word.strip_prefix(&format!("{n}=")).map(|rest| (*h, rest)));
            match (starts, hooks.last_mut()) {
                (Some((hook, rest)), _) => hooks.push((hook, rest.to_string())),
                (None, Some((_, cmd))) => {
                    cmd.push(' ');
                    cmd.push_str(&word);
                }
                (None, None) => {
                    return Err(err(format!("`--hook {word}` does not say when"))
                        .hint("--hook pre-start=CMD, post-start=CMD or pre-stop=CMD"))
                }
            }
        }
        if !hooks.is_empty() && systemd.is_none() {
            return Err(err("POD --hook runs around a service: it goes with --play FILE --systemd NAME"));
        }
        let kill_signal = given.one("--kill-signal");
        // Nothing written is left unused: each option says what it goes with.
        let goes_with = |option: &str, ok: bool, with: &str| {
            if given.has(option) && !ok {
                Err(err(format!("POD {option} goes with {with}")))
            } else {
                Ok(())
            }
        };
        let exec_run = matches!(action, Action::ExecRun(_));
        goes_with("--kill-signal", matches!(action, Action::Kill(_)), "--kill NAME")?;
        goes_with("--privileged", exec_run, "--exec-run CONTAINER")?;
        goes_with("--force", matches!(action, Action::Rm(_)), "--rm NAME")?;
        goes_with("--no-tlsverify", matches!(action, Action::Play(..)), "--play FILE")?;
        goes_with("--env", exec_run || systemd.is_some(), "--exec-run CONTAINER or --play FILE --systemd NAME")?;
        Ok(Pod {
            action,
            socket: given.one("--socket-path"),
            env,
            command,
            privileged: given.has("--privileged"),
            tls_verify: !given.has("--no-tlsverify"),
            force: given.has("--force"),
            kill_signal,
            systemd,
            hooks,
        })
    }
}

/// The names of the pods a kube YAML defines (`kind: Pod`, `metadata.name`).
fn pod_names(file: &Source) -> Result<Vec<String>, VerbError> {
    let text = crate::catalog::yaml::read_text(&file.path).map_err(|e| err(e.message))?;
    let mut names = Vec::new();
    for doc in text.split("\n---") {
        if doc.trim().is_empty() {
            continue;
        }
        let value = crate::catalog::yaml::parse_value(doc)
            .map_err(|e| err(format!("{} is not YAML: {e}", file.path.display())))?;
        if value["kind"] == "Pod" {
            if let Some(name) = value["metadata"]["name"].as_str() {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

impl Pod {
    /// Where the played file goes on the node.
    fn play_path(&self) -> Option<String> {
        match &self.action {
            Action::Play(..) => Some(format!("{POD_DIR}/{}", self.action.target())),
            _ => None,
        }
    }

    /// The pods of a `--play`, or the one pod named.
    fn pods(&self) -> Vec<String> {
        match &self.action {
            Action::Play(_, pods) => pods.clone(),
            Action::Start(n) | Action::Stop(n) | Action::Rm(n) | Action::Kill(n) | Action::Inspect(n) => vec![n.clone()],
            Action::ExecRun(_) => Vec::new(),
        }
    }

    /// The environment of the service and its hooks.
    fn conductor_env(&self) -> Vec<(String, String)> {
        let pods = self.pods();
        let mut env = vec![
            ("CONDUCTOR_SERVICE".to_string(), self.systemd.clone().unwrap_or_default()),
            ("CONDUCTOR_PLAY_FILE".to_string(), self.play_path().unwrap_or_default()),
            ("CONDUCTOR_PODS".to_string(), pods.join(" ")),
            ("CONDUCTOR_POD".to_string(), pods.first().cloned().unwrap_or_default()),
        ];
        env.extend(self.env.iter().cloned());
        env
    }

    /// The systemd unit of `--systemd NAME`.
    pub fn unit(&self, name: &str) -> String {
        let play = self.play_path().unwrap_or_default();
        let hook = |h: Hook| {
            self.hooks.iter().any(|(k, _)| *k == h).then(|| format!("{POD_DIR}/{name}.{}", h.name()))
        };
        let mut service = format!(
            "[Unit]\nDescription=director pod service {name} ({play})\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nEnvironmentFile={POD_DIR}/{name}.env\nTimeoutStartSec=600\n"
        );
        if let Some(h) = hook(Hook::PreStart) {
            service.push_str(&format!("ExecStartPre={h}\n"));
        }
        let podman = podman(self.socket.as_deref());
        service.push_str(&format!("ExecStart=/usr/bin/env {podman} kube play --replace{} {play}\n", podman::tls(self.tls_verify)));
        if let Some(h) = hook(Hook::PostStart) {
            service.push_str(&format!("ExecStartPost={h}\n"));
        }
        if let Some(h) = hook(Hook::PreStop) {
            service.push_str(&format!("ExecStop={h}\n"));
        }
        service.push_str(&format!("ExecStop=/usr/bin/env {podman} kube down {play}\n\n[Install]\nWantedBy=multi-user.target\n"));
        service
    }

    /// The command that does the work.
    pub fn script(&self) -> String {
        let podman = podman(self.socket.as_deref());
        match &self.action {
            Action::Start(n) => format!("{podman} pod start {}", quote(n)),
            Action::Stop(n) => format!("{podman} pod stop {}", quote(n)),
            Action::Rm(n) => format!("{podman} pod rm{} {}", if self.force { " --force" } else { "" }, quote(n)),
            Action::Kill(n) => format!(
                "{podman} pod kill --signal {} {}",
                quote(self.kill_signal.as_deref().unwrap_or("SIGKILL")),
                quote(n)
            ),
            Action::Inspect(n) => format!("{podman} pod inspect {}", quote(n)),
            Action::ExecRun(c) => {
                let env: String = self.env.iter().map(|(k, v)| format!(" --env {}", quote(&format!("{k}={v}")))).collect();
                let command: Vec<String> = self.command.iter().map(|w| quote(w)).collect();
                format!(
                    "{podman} exec{}{env} {} {}",
                    if self.privileged { " --privileged" } else { "" },
                    quote(c),
                    command.join(" ")
                )
            }
            Action::Play(..) => match &self.systemd {
                None => {
                    format!("{podman} kube play --replace{} {}", podman::tls(self.tls_verify), quote(&self.play_path().unwrap_or_default()))
                }
                Some(name) => {
                    let unit = quote(&format!("{name}.service"));
                    format!("[ -d /run/systemd/system ] || {{ echo 'POD --systemd needs systemd on the node, which was not booted with it' >&2; exit 1; }}; systemctl daemon-reload && systemctl enable {unit} && systemctl restart {unit}")
                }
            },
        }
    }
}

impl Verb for Pod {
    fn spelled(&self) -> String {
        let mut words = format!("{} {}", self.action.name(), self.action.target());
        if let Some(name) = &self.systemd {
            words.push_str(&format!(" --systemd {name}"));
        }
        words
    }

    fn traits(&self) -> Traits {
        Traits { heavy: matches!(self.action, Action::Play(..)), cacheable: !matches!(self.action, Action::Inspect(_) | Action::Kill(_)), streams_output: true, ..Traits::DEFAULT }
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        let (Action::Play(source, _), Some(play)) = (&self.action, self.play_path()) else { return Ok(()) };
        r.send(Outgoing { dest: play, size: source.size, sha3: source.sha3.clone(), body: Body::File(source.path.clone()) });
        let Some(name) = &self.systemd else { return Ok(()) };
        let mut texts = vec![(format!("/etc/systemd/system/{name}.service"), self.unit(name))];
        let env: String = self
            .conductor_env()
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"\n", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        texts.push((format!("{POD_DIR}/{name}.env"), env));
        for (hook, cmd) in &self.hooks {
            texts.push((format!("{POD_DIR}/{name}.{}", hook.name()), format!("#!/bin/sh\n{cmd}\n")));
        }
        for (dest, text) in texts {
            let bytes = text.into_bytes();
            let sha3 = source::hex(&<sha3::Sha3_224 as sha3::Digest>::digest(&bytes));
            r.send(Outgoing { dest, size: bytes.len() as u64, sha3, body: Body::Rendered(bytes) });
        }
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("action".into(), json!(self.action.name()));
        fields.insert("target".into(), json!(self.action.target()));
        fields.insert("files".into(), files::files_field(r));
        fields.insert("socket".into(), json!(self.socket));
        fields.insert("env".into(), json!(self.env));
        fields.insert("command".into(), json!(self.command));
        fields.insert("privileged".into(), json!(self.privileged));
        fields.insert("tls_verify".into(), json!(self.tls_verify));
        fields.insert("force".into(), json!(self.force));
        fields.insert("kill_signal".into(), json!(self.kill_signal));
        fields.insert("systemd".into(), json!(self.systemd));
        let hooks: Vec<Value> = self.hooks.iter().map(|(h, c)| json!([h.name(), c])).collect();
        fields.insert("hooks".into(), Value::Array(hooks));
    }

    fn info(&self, _: &Rendered) -> Option<String> {
        Some(self.script())
    }

    fn check(&self, _: &Rendered, recorded: bool) -> Option<String> {
        let podman = podman(self.socket.as_deref());
        let state = |pods: &[String], running: bool| {
            let list: Vec<String> = pods.iter().map(|p| quote(p)).collect();
            let test = if running {
                r#"[ "$s" = Running ] || { echo "the pod $p is ${s:-gone}"; exit 1; }"#
            } else {
                r#"[ "$s" != Running ] || { echo "the pod $p is running"; exit 1; }"#
            };
            format!(
                "for p in {}; do s=$({podman} pod inspect \"$p\" --format '{{{{.State}}}}' 2>/dev/null); {test}; done",
                list.join(" ")
            )
        };
        match &self.action {
            Action::Play(_, pods) if recorded && !pods.is_empty() => {
                let mut check = state(pods, true);
                if let Some(name) = &self.systemd {
                    check.push_str(&format!(
                        "; a=$(systemctl is-active {u} 2>&1); [ \"$a\" = active ] || {{ echo \"{name}.service is $a\"; exit 1; }}",
                        u = quote(&format!("{name}.service"))
                    ));
                }
                Some(check)
            }
            Action::Start(n) if recorded => Some(state(std::slice::from_ref(n), true)),
            Action::Stop(n) if recorded => Some(state(std::slice::from_ref(n), false)),
            Action::Rm(n) => Some(format!(
                "if {podman} pod exists {p}; then echo \"the pod {n} is there\"; exit 1; fi",
                p = quote(n),
                n = n.replace('"', "")
            )),
            _ => None,
        }
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, rendered: r, outgoing, mut cancel, recorded } = task;
        let mut env = cx.state().cache().env_pairs();
        if matches!(self.action, Action::Play(..)) {
            env.extend(self.conductor_env());
        }
        let mut check = self.check(r, recorded);
        let mut drift = None;
        if !outgoing.is_empty() {
            // A play's record is checked before its files go out again: a hit sends nothing.
            if let Some(check) = check.take() {
                match cx.checked_command(job, Some(check), "true", env.clone(), &mut cancel).await {
                    (held, Checked::Held) => return held,
                    (_, Checked::Unheld(why)) => drift = Some(why),
                    (failed, Checked::None) => return failed,
                }
            }
            let dir = Attrs { mode: Some(0o700), ..Attrs::default() };
            if let Err(e) = cx.done(|id| Request::Mkdir { id, path: POD_DIR.to_string(), attrs: dir }).await {
                return Finish::failed(e);
            }
            // The hooks run as programs; the rest is read by podman and systemd.
            let (hooks, files): (Vec<Outgoing>, Vec<Outgoing>) =
                outgoing.into_iter().partition(|o| Hook::ALL.iter().any(|(n, _)| o.dest.ends_with(&format!(".{n}"))));
            for (batch, mode) in [(files, 0o600), (hooks, 0o700)] {
                let sent = files::send(cx, batch, &Attrs { mode: Some(mode), ..Attrs::default() }).await;
                if sent.status != crate::event::JobStatus::Ok {
                    return sent;
                }
            }
        }
        let (mut finish, checked) = cx.checked_command(job, check, &self.script(), env, &mut cancel).await;
        if checked == Checked::Held && !recorded {
            finish.reason = Some(format!("the pod {} is not there: nothing to do", self.action.target()));
        }
        // A play checked before its files went out found the drift then.
        finish.drift = finish.drift.take().or(drift);
        finish
    }
}
