//! SECONTEXT: an SELinux file context. With `semanage` on the node the context is recorded
//! in the policy (`semanage fcontext -a`, or `-m` when TARGET already has a rule) and, with
//! `--reload` (the default), applied with `restorecon -R`; with only `chcon` it is applied to
//! TARGET directly (it does not survive a relabel). A node without SELinux, or without these
//! tools, gets a clear error. Fingerprint: `target`, `setype`, `ftype`, `seuser`, `selevel`,
//! `reload`. Unlike Directord, a missing `--seuser` or `--selevel` is fine (Directord crashed).

use super::options::{err, Arity, Given, VerbError};
use super::{Cx, Finish, Syntax, Task, Traits, Verb};
use super::Rendered;
use crate::shell::quote;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeContext {
    pub target: String,
    pub setype: String,
    pub ftype: Option<char>,
    pub seuser: Option<String>,
    pub selevel: Option<String>,
    pub reload: bool,
}

/// What a node without SELinux says.
const NO_SELINUX: &str = "SECONTEXT needs SELinux on the node: it is not enabled there (selinuxenabled says no, or is missing)";
/// What a node without the tools says.
const NO_TOOLS: &str = "SECONTEXT needs semanage (policycoreutils-python-utils) or chcon on the node: neither is there";

impl Syntax for SeContext {
    const USAGE: &'static str = "SECONTEXT --setype TYPE [--ftype a|b|c|d|f|l|p|s] [--seuser USER] [--selevel LEVEL] [--reload true|false] TARGET\n  Give TARGET (a path or a path regular expression for semanage) the SELinux type TYPE:\n  recorded with semanage fcontext and applied with restorecon -R (--reload, the default), or\n  applied with chcon where semanage is missing.";
    const OPTIONS: &'static [(&'static str, Arity)] = &[
        ("--setype", Arity::One),
        ("--ftype", Arity::One),
        ("--seuser", Arity::One),
        ("--selevel", Arity::One),
        ("--reload", Arity::One),
    ];

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        given.need(words.len() == 1, "one target")?;
        let setype = given.one("--setype").ok_or_else(|| err("SECONTEXT needs --setype TYPE").hint(given.usage_hint()))?;
        let ftype = match given.one("--ftype") {
            None => None,
            Some(f) if f.len() == 1 && "abcdflps".contains(f.as_str()) => f.chars().next(),
            Some(f) => {
                return Err(err(format!("`--ftype {f}` is not a file type"))
                    .hint("a (all), b (block), c (character), d (directory), f (file), l (link), p (pipe) or s (socket)"))
            }
        };
        let reload = match given.one("--reload").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("true" | "yes" | "1") => true,
            Some("false" | "no" | "0") => false,
            Some(other) => return Err(err(format!("`--reload {other}` is not true or false"))),
        };
        Ok(SeContext {
            target: words[0].to_string(),
            setype,
            ftype,
            seuser: given.one("--seuser"),
            selevel: given.one("--selevel"),
            reload,
        })
    }
}

impl SeContext {
    /// The script: SELinux checked, then semanage (and restorecon) or chcon.
    pub fn script(&self) -> String {
        let t = quote(&self.target);
        let mut opts = format!(" -t {}", quote(&self.setype));
        if let Some(f) = self.ftype {
            opts.push_str(&format!(" -f {f}"));
        }
        if let Some(u) = &self.seuser {
            opts.push_str(&format!(" -s {}", quote(u)));
        }
        if let Some(l) = &self.selevel {
            opts.push_str(&format!(" -r {}", quote(l)));
        }
        let mut chcon = format!(" -t {}", quote(&self.setype));
        if let Some(u) = &self.seuser {
            chcon.push_str(&format!(" -u {}", quote(u)));
        }
        if let Some(l) = &self.selevel {
            chcon.push_str(&format!(" -l {}", quote(l)));
        }
        let restore = if self.reload { format!(" && restorecon -R {t}") } else { String::new() };
        format!(
            "command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled || {{ echo {} >&2; exit 1; }}; \
             if command -v semanage >/dev/null 2>&1; then \
             if semanage fcontext -l -C | grep -q \"^{re} \"; then semanage fcontext -m{opts} {t}; else semanage fcontext -a{opts} {t}; fi{restore}; \
             elif command -v chcon >/dev/null 2>&1; then chcon{chcon} {t}; \
             else echo {} >&2; exit 1; fi",
            quote(NO_SELINUX),
            quote(NO_TOOLS),
            re = self.target.replace('"', "\\\""),
        )
    }
}

impl Verb for SeContext {
    fn spelled(&self) -> String {
        format!("--setype {} {}", self.setype, self.target)
    }

    fn fingerprint(&self, _: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("target".into(), json!(self.target));
        fields.insert("setype".into(), json!(self.setype));
        fields.insert("ftype".into(), json!(self.ftype.map(String::from)));
        fields.insert("seuser".into(), json!(self.seuser));
        fields.insert("selevel".into(), json!(self.selevel));
        fields.insert("reload".into(), json!(self.reload));
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { job, mut cancel, .. } = task;
        cx.command(job, &self.script(), Vec::new(), &mut cancel).await
    }

    fn traits(&self) -> Traits {
        Traits::STREAMS
    }
}
