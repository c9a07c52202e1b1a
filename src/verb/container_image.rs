//! CONTAINER_IMAGE: container images through the `podman` command on the node (Directord
//! used podman's REST socket through a Python library; the command needs neither). With
//! `--socket-path` the command talks to that socket (`podman --url unix://PATH`), as
//! Directord did; `--no-tlsverify` is `--tls-verify=false` for registries. Fingerprint:
//! `action`, `images`, `socket`, `tls_verify`.
//!
//! `--pull`, `--push` and `--tag` are recorded; a pull's or a tag's cache hit is checked in
//! the job's own frame (the images are still there). `--list` and `--inspect` only read, so
//! they always run: their output is the JSON podman prints (for `--stdout-arg`).

use super::options::{err, Arity, Given, VerbError};
use super::{Cx, Finish, Syntax, Task, Traits, Verb};
use super::Rendered;
use super::podman::{self, podman};
use crate::shell::quote;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ContainerImage {
    pub action: Action,
    pub images: Vec<String>,
    /// `--socket-path`: podman's API socket on the node.
    pub socket: Option<String>,
    pub tls_verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Pull,
    Push,
    Tag,
    List,
    Inspect,
}

impl Action {
    const ALL: [(&'static str, Action); 5] = [
        ("--pull", Action::Pull),
        ("--push", Action::Push),
        ("--tag", Action::Tag),
        ("--list", Action::List),
        ("--inspect", Action::Inspect),
    ];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map(|(n, _)| *n).unwrap_or_default()
    }
}

impl Syntax for ContainerImage {
    const USAGE: &'static str = "CONTAINER_IMAGE (--pull|--push|--tag|--list|--inspect) [--socket-path PATH] [--no-tlsverify] IMAGE...\n  Manage container images with podman on the node.\n  --pull IMAGE...      pull each image\n  --push IMAGE...      push each image\n  --tag SOURCE TARGET  tag SOURCE as TARGET\n  --list               list the images (JSON)\n  --inspect IMAGE...   inspect the images (JSON)\n  --socket-path PATH   talk to podman's API socket at PATH (podman --url unix://PATH)\n  --no-tlsverify       do not verify the registry's TLS certificate";
    const OPTIONS: &'static [(&'static str, Arity)] = &[
        ("--pull", Arity::Flag),
        ("--push", Arity::Flag),
        ("--tag", Arity::Flag),
        ("--list", Arity::Flag),
        ("--inspect", Arity::Flag),
        ("--socket-path", Arity::One),
        ("--no-tlsverify", Arity::Flag),
    ];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let chosen: Vec<Action> = Action::ALL.iter().filter(|(n, _)| given.has(n)).map(|(_, a)| *a).collect();
        let [action] = chosen.as_slice() else {
            return Err(err("CONTAINER_IMAGE needs exactly one of --pull, --push, --tag, --list, --inspect")
                .hint(given.usage_hint()));
        };
        let images: Vec<String> = given.words().iter().map(std::string::ToString::to_string).collect();
        match (action, images.len()) {
            (Action::List, 0) | (Action::Pull | Action::Push | Action::Inspect, 1..) | (Action::Tag, 2) => {}
            (Action::List, _) => return Err(err("CONTAINER_IMAGE --list takes no image").hint(given.usage_hint())),
            (Action::Tag, _) => {
                return Err(err("CONTAINER_IMAGE --tag takes two images: the source and the new name")
                    .hint(given.usage_hint()))
            }
            _ => given.need(false, "at least one image")?,
        }
        if given.has("--no-tlsverify") && !matches!(action, Action::Pull | Action::Push) {
            return Err(err("CONTAINER_IMAGE --no-tlsverify goes with --pull or --push: only they reach a registry"));
        }
        Ok(ContainerImage {
            action: *action,
            images,
            socket: given.one("--socket-path"),
            tls_verify: !given.has("--no-tlsverify"),
        })
    }
}

impl ContainerImage {
    /// The podman commands, joined to stop at the first that fails.
    pub fn script(&self) -> String {
        let podman = podman(self.socket.as_deref());
        let tls = podman::tls(self.tls_verify);
        let images: Vec<String> = self.images.iter().map(|i| quote(i)).collect();
        match self.action {
            Action::Pull => images.iter().map(|i| format!("{podman} pull -q{tls} {i}")).collect::<Vec<_>>().join(" && "),
            Action::Push => images.iter().map(|i| format!("{podman} push -q{tls} {i}")).collect::<Vec<_>>().join(" && "),
            Action::Tag => format!("{podman} tag {}", images.join(" ")),
            Action::List => format!("{podman} images --format json"),
            Action::Inspect => format!("{podman} image inspect {}", images.join(" ")),
        }
    }
}

impl Verb for ContainerImage {
    fn spelled(&self) -> String {
        format!("{} {}", self.action.name(), self.images.join(" ")).trim_end().to_string()
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("action".into(), json!(self.action.name()));
        fields.insert("images".into(), json!(self.images));
        fields.insert("socket".into(), json!(self.socket));
        fields.insert("tls_verify".into(), json!(self.tls_verify));
    }

    fn info(&self, _: &Rendered) -> Option<String> {
        Some(self.script())
    }

    fn check(&self, _: &Rendered, recorded: bool) -> Option<String> {
        let podman = podman(self.socket.as_deref());
        let present = |images: &[String]| {
            let list: Vec<String> = images.iter().map(|i| quote(i)).collect();
            format!("for i in {}; do {podman} image exists \"$i\" || {{ echo \"the image $i is gone\"; exit 1; }}; done", list.join(" "))
        };
        match self.action {
            Action::Pull if recorded => Some(present(&self.images)),
            Action::Tag if recorded => Some(present(&self.images[1..])),
            _ => None,
        }
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, rendered: r, mut cancel, recorded, .. } = task;
        let env = cx.state().cache().env_pairs();
        cx.checked_command(job, self.check(r, recorded), &self.script(), env, &mut cancel).await.0
    }

    fn traits(&self) -> Traits {
        Traits { cacheable: matches!(self.action, Action::Pull | Action::Push | Action::Tag), streams_output: true, ..Traits::DEFAULT }
    }
}
