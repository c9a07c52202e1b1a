//! DNF, APT and PKG: packages installed, brought to their latest version, or removed, with
//! Directord's DNF options. DNF and APT name their manager; PKG uses the node's own (apt-get,
//! dnf, yum, zypper or apk: the first the executor found when it started, `facts.packager`).
//! Fingerprint: `manager`, `packages` (rendered), `state`, `exclude`, `clear_metadata`,
//! `retry`.
//!
//! The packages' state is checked on the node before anything is done, in the job's own
//! frame ([`Verb::check`]): packages already installed (or absent, or at their candidate
//! version for `--latest` with apt and dnf) are `cached` even without a record, and a record
//! the node no longer matches runs again, saying why (`was cached, but vim is not
//! installed`). Always non-interactive; apt and zypper wait for the package database's lock
//! instead of failing (dnf, yum and apk wait on their own), for as long as the job's timeout.

use super::options::{err, Arity, Given, VerbError};
use super::{Cx, Finish, Render, Syntax, Task, Traits, Verb};
use crate::node::Checked;
use super::Rendered;
use crate::shell::quote;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Package {
    /// `None`: PKG, the node's own.
    pub manager: Option<Manager>,
    /// A template (split at whitespace once rendered).
    pub packages: String,
    pub state: State,
    pub exclude: Vec<String>,
    pub clear_metadata: bool,
    pub retry: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Manager {
    Apt,
    Dnf,
    Yum,
    Zypper,
    Apk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    Present,
    Latest,
    Absent,
}

impl Manager {
    /// Every manager PKG knows, by the command `facts.packager` names.
    const ALL: [Manager; 5] = [Manager::Apt, Manager::Dnf, Manager::Yum, Manager::Zypper, Manager::Apk];

    pub fn command(self) -> &'static str {
        match self {
            Manager::Apt => "apt-get",
            Manager::Dnf => "dnf",
            Manager::Yum => "yum",
            Manager::Zypper => "zypper",
            Manager::Apk => "apk",
        }
    }

    /// The shell test that package `$p` is installed.
    fn installed(self) -> &'static str {
        match self {
            Manager::Apt => r#"dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii'"#,
            // dnf and yum need no rpm command (Debian's dnf comes without it).
            Manager::Dnf => r#"if command -v rpm >/dev/null 2>&1; then rpm -q --quiet "$p"; else dnf -q list --installed "$p" >/dev/null 2>&1; fi"#,
            Manager::Yum => r#"if command -v rpm >/dev/null 2>&1; then rpm -q --quiet "$p"; else yum -q list installed "$p" >/dev/null 2>&1; fi"#,
            Manager::Zypper => r#"rpm -q --quiet "$p""#,
            Manager::Apk => r#"apk info -e "$p" >/dev/null 2>&1"#,
        }
    }

    /// The shell test that installed package `$p` has no newer candidate, where the local
    /// metadata can tell without a network.
    fn newest(self) -> Option<&'static str> {
        match self {
            Manager::Apt => Some(
                r#"i=$(dpkg-query -W -f='${Version}' "$p"); c=$(apt-cache policy "$p" | sed -n 's/^ *Candidate: //p'); [ "$i" = "$c" ] || { echo "$p is $i, not its candidate $c"; exit 1; }"#,
            ),
            Manager::Dnf | Manager::Yum => Some(
                r#"r=0; MANAGER -q -C check-update "$p" >/dev/null 2>&1 || r=$?; [ $r = 0 ] || { echo "$p may have an update"; exit 1; }"#,
            ),
            Manager::Zypper | Manager::Apk => None,
        }
    }
}

impl Syntax for Package {
    const USAGE: &'static str = "DNF [--latest|--absent] [--clear-metadata] [--exclude PKG,...] [--retry N] PACKAGE...\n  Install PACKAGEs with dnf (APT: apt-get; PKG: the node's own package manager: apt-get,\n  dnf, yum, zypper or apk). Packages already as asked are not touched (`cached`).\n  --latest          install or upgrade to the newest version\n  --absent          remove them\n  --clear-metadata  refresh the package metadata first (dnf clean all and makecache; apt-get update)\n  --exclude A,B     leave these packages out (dnf and yum)\n  --retry N         try up to N times until it succeeds (default 1)";
    const OPTIONS: &'static [(&'static str, Arity)] = &[
        ("--latest", Arity::Flag),
        ("--absent", Arity::Flag),
        ("--clear-metadata", Arity::Flag),
        ("--exclude", Arity::One),
        ("--retry", Arity::One),
    ];

    fn usage(name: &str) -> &'static str {
        match name {
            "APT" => "APT [--latest|--absent] [--clear-metadata] [--retry N] PACKAGE...\n  Same as DNF, with apt-get (non-interactive; --clear-metadata runs apt-get update).",
            "PKG" => "PKG [--latest|--absent] [--clear-metadata] [--exclude PKG,...] [--retry N] PACKAGE...\n  Same as DNF, with the node's own package manager (apt-get, dnf, yum, zypper or apk).",
            _ => Self::USAGE,
        }
    }

    fn parse(given: &Given) -> Result<Self, VerbError> {
        given.need(!given.words().is_empty(), "at least one package")?;
        let manager = match given.verb {
            "DNF" => Some(Manager::Dnf),
            "APT" => Some(Manager::Apt),
            _ => None,
        };
        let state = match (given.has("--latest"), given.has("--absent")) {
            (true, true) => {
                return Err(err(format!("{} takes --latest or --absent, not both", given.verb)).hint(given.usage_hint()))
            }
            (true, false) => State::Latest,
            (false, true) => State::Absent,
            (false, false) => State::Present,
        };
        let exclude: Vec<String> = given
            .one("--exclude")
            .map(|e| e.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        if manager == Some(Manager::Apt) && !exclude.is_empty() {
            return Err(err("APT has no --exclude: apt-get cannot leave packages out of a transaction")
                .hint("hold a package back with `RUN: apt-mark hold PACKAGE`"));
        }
        Ok(Package {
            manager,
            packages: given.words().join(" "),
            state,
            exclude,
            clear_metadata: given.has("--clear-metadata"),
            retry: given.attempts()?,
        })
    }
}

impl Package {
    /// The manager as rendered on the node (`r.value`).
    fn manager(r: &Rendered) -> Option<Manager> {
        Manager::ALL.into_iter().find(|m| r.value.as_str() == Some(m.command()))
    }

    /// The packages as rendered, each quoted for the shell.
    fn packages(r: &Rendered) -> String {
        r.text.split_whitespace().map(quote).collect::<Vec<_>>().join(" ")
    }

    /// The commands that do the work, in order; `timeout`: how long to wait for a lock.
    pub fn commands(&self, manager: Manager, packages: &str, timeout: u64) -> Vec<String> {
        let exclude: String = self.exclude.iter().map(|e| format!(" --exclude={}", quote(e))).collect();
        let mut out = Vec::new();
        match manager {
            Manager::Apt => {
                let apt = format!(
                    "apt-get -q -y -o DPkg::Lock::Timeout={timeout} -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
                );
                if self.clear_metadata {
                    out.push(format!("{apt} update"));
                }
                out.push(match self.state {
                    State::Present | State::Latest => format!("{apt} install {packages}"),
                    State::Absent => format!("{apt} remove {packages}"),
                });
            }
            Manager::Dnf | Manager::Yum => {
                let m = manager.command();
                if self.clear_metadata {
                    out.push(format!("{m} clean all"));
                    out.push(format!("{m} makecache"));
                }
                out.push(match self.state {
                    State::Present => format!("{m} -q -y{exclude} install {packages}"),
                    State::Latest => format!("{m} -q -y --best{exclude} install {packages}"),
                    State::Absent => format!("{m} -q -y{exclude} remove {packages}"),
                });
            }
            Manager::Zypper => {
                if self.clear_metadata {
                    out.push("zypper --non-interactive refresh --force".to_string());
                }
                out.push(match self.state {
                    State::Present => format!("zypper --non-interactive install {packages}"),
                    State::Latest => format!("zypper --non-interactive update {packages}"),
                    State::Absent => format!("zypper --non-interactive remove {packages}"),
                });
            }
            Manager::Apk => {
                if self.clear_metadata {
                    out.push(format!("apk update --wait {timeout}"));
                }
                out.push(match self.state {
                    State::Present => format!("apk add --wait {timeout} {packages}"),
                    State::Latest => format!("apk add --wait {timeout} --upgrade {packages}"),
                    State::Absent => format!("apk del --wait {timeout} {packages}"),
                });
            }
        }
        out
    }

    /// The environment the commands need: never a question, a zypper lock waited for.
    fn env(manager: Manager, timeout: u64) -> Vec<(String, String)> {
        match manager {
            Manager::Apt => vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())],
            Manager::Zypper => vec![("ZYPP_LOCK_TIMEOUT".into(), timeout.to_string())],
            _ => Vec::new(),
        }
    }
}

impl Verb for Package {
    fn spelled(&self) -> String {
        let mut words: Vec<String> = Vec::new();
        match self.state {
            State::Present => {}
            State::Latest => words.push("--latest".into()),
            State::Absent => words.push("--absent".into()),
        }
        if self.clear_metadata {
            words.push("--clear-metadata".into());
        }
        if !self.exclude.is_empty() {
            words.push(format!("--exclude {}", self.exclude.join(",")));
        }
        words.push(self.packages.clone());
        words.join(" ")
    }

    fn templates(&self) -> Vec<&str> {
        vec![&self.packages]
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        let manager = match self.manager {
            Some(m) => m,
            None => {
                let found = r.fact("packager");
                match Manager::ALL.into_iter().find(|m| Some(m.command()) == found) {
                    Some(m) => m,
                    None => {
                        return Err(
                            "PKG found no package manager on the node (it looks for apt-get, dnf, yum, zypper and apk)"
                                .to_string(),
                        )
                    }
                }
            }
        };
        if !self.exclude.is_empty() && !matches!(manager, Manager::Dnf | Manager::Yum) {
            return Err(format!("--exclude works with dnf and yum; this node's package manager is {}", manager.command()));
        }
        r.rendered.text = r.text(&self.packages)?.split_whitespace().collect::<Vec<_>>().join(" ");
        r.rendered.value = json!(manager.command());
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("manager".into(), r.value.clone());
        fields.insert("packages".into(), json!(r.text));
        fields.insert(
            "state".into(),
            json!(match self.state {
                State::Present => "present",
                State::Latest => "latest",
                State::Absent => "absent",
            }),
        );
        fields.insert("exclude".into(), json!(self.exclude));
        fields.insert("clear_metadata".into(), json!(self.clear_metadata));
        fields.insert("retry".into(), json!(self.retry));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        let manager = Self::manager(r)?;
        Some(self.commands(manager, &Self::packages(r), 600).join(" && "))
    }

    fn check(&self, r: &Rendered, recorded: bool) -> Option<String> {
        let manager = Self::manager(r)?;
        let installed = manager.installed();
        let each = match self.state {
            State::Present => format!(r#"{installed} || {{ echo "$p is not installed"; exit 1; }}"#),
            State::Absent => format!(r#"if {installed}; then echo "$p is installed"; exit 1; fi"#),
            // The newest version is known only from fresh metadata: with --clear-metadata
            // the job always runs.
            State::Latest if self.clear_metadata && !recorded => return None,
            State::Latest => {
                let newest = manager.newest()?.replace("MANAGER", manager.command());
                format!(r#"{installed} || {{ echo "$p is not installed"; exit 1; }}; {newest}"#)
            }
        };
        Some(format!("for p in {}; do {each}; done", Self::packages(r)))
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, rendered: r, mut cancel, recorded, .. } = task;
        let Some(manager) = Self::manager(r) else { return Finish::failed("no package manager") };
        let timeout = job.timeout.as_secs();
        let script = self.commands(manager, &Self::packages(r), timeout).join(" && ");
        let mut env = cx.state().cache().env_pairs();
        env.extend(Self::env(manager, timeout));
        let check = self.check(r, recorded);
        let (mut finish, checked) = cx.retried_command(job, check, &script, env, &mut cancel, self.retry).await;
        if checked == Checked::Held && !recorded {
            finish.reason = Some(format!(
                "already {} on the node: nothing to do",
                match self.state {
                    State::Present => "installed",
                    State::Latest => "installed at their newest version",
                    State::Absent => "absent",
                }
            ));
        }
        finish
    }

    fn traits(&self) -> Traits {
        Traits::STREAMS
    }
}
