//! ADD and COPY (the same verb): local files sent to the node, written atomically with the
//! mode and owner asked; with `--blueprint` each file is a template rendered on the node's
//! args first. Fingerprint: `files` (`[{"dest", "sha3"}]`, the final path and the content
//! hash after rendering), `owner`, `group`, `mode`, `blueprint`. A cache hit is checked: every
//! file it wrote still has the recorded hash and the mode, owner and group asked (one stat per
//! file).

use super::options::{Arity, Given, VerbError, FILE_OPTS};
use super::files::{attrs_drift, files_field, files_info, send};
use super::source::{self, Source};
use super::{Body, Cx, Finish, Outgoing, Task, Render, Syntax, Traits, Verb};
use crate::node::cache::JobRecord;
use super::Rendered;
use director_proto::Attrs;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Copy {
    pub sources: Vec<Source>,
    /// A template; a directory when it ends with `/`.
    pub dest: String,
    pub attrs: Attrs,
    pub blueprint: bool,
}

impl Syntax for Copy {
    const USAGE: &'static str = "ADD [--chown USER[:GROUP]] [--chmod MODE] [--blueprint] SRC... DEST\n  Copy local files (globs allowed) to DEST on the node; a DEST ending in / is a directory.\n  --chown      owner (and group) of the file\n  --chmod      octal mode, e.g. 0644\n  --blueprint  render the file as a template with the node's cached args";
    const OPTIONS: &'static [(&'static str, Arity)] = &[FILE_OPTS[0], FILE_OPTS[1], ("--blueprint", Arity::Flag)];

    fn usage(name: &str) -> &'static str {
        if name == "COPY" {
            "COPY [--chown USER[:GROUP]] [--chmod MODE] [--blueprint] SRC... DEST\n  Same as ADD."
        } else {
            Self::USAGE
        }
    }

    fn parse(given: &Given) -> Result<Self, VerbError> {
        let words = given.words();
        given.need(words.len() >= 2, "at least one source and a destination")?;
        let (dest, patterns) = words.split_last().expect("two words");
        let mut sources = Vec::new();
        for pattern in patterns {
            sources.extend(source::resolve(pattern, given.roots)?);
        }
        if sources.len() > 1 && !dest.ends_with('/') {
            return Err(super::options::err(format!(
                "{} files match but the destination `{dest}` does not end with /",
                sources.len()
            ))
            .hint(format!("copy them into a directory: `{dest}/`")));
        }
        Ok(Copy { sources, dest: dest.to_string(), attrs: given.attrs()?, blueprint: given.has("--blueprint") })
    }
}

impl Verb for Copy {
    fn spelled(&self) -> String {
        let names: Vec<String> = self
            .sources
            .iter()
            .map(|s| s.path.file_name().unwrap_or_default().to_string_lossy().into_owned())
            .collect();
        format!("{} {}", names.join(" "), self.dest)
    }

    fn templates(&self) -> Vec<&str> {
        vec![&self.dest]
    }

    fn blueprints(&self) -> Vec<&Source> {
        if self.blueprint {
            self.sources.iter().collect()
        } else {
            Vec::new()
        }
    }

    fn render(&self, r: &mut Render<'_>) -> Result<(), String> {
        let dest = r.text(&self.dest)?;
        let mut texts = std::mem::take(&mut r.blueprints).into_iter();
        for source in &self.sources {
            let to = if dest.ends_with('/') {
                format!("{dest}{}", source.path.file_name().unwrap_or_default().to_string_lossy())
            } else {
                dest.clone()
            };
            let file = match texts.next().filter(|_| self.blueprint) {
                Some(text) => {
                    let bytes = r
                        .text(&text)
                        .map_err(|e| format!("{e} in blueprint {}", source.path.display()))?
                        .into_bytes();
                    let sha3 = source::hex(&<sha3::Sha3_224 as sha3::Digest>::digest(&bytes));
                    Outgoing { dest: to, size: bytes.len() as u64, sha3, body: Body::Rendered(bytes) }
                }
                None => Outgoing {
                    dest: to,
                    size: source.size,
                    sha3: source.sha3.clone(),
                    body: Body::File(source.path.clone()),
                },
            };
            r.send(file);
        }
        Ok(())
    }

    fn fingerprint(&self, r: &Rendered, fields: &mut Map<String, Value>) {
        fields.insert("files".into(), files_field(r));
        fields.insert("owner".into(), json!(self.attrs.owner));
        fields.insert("group".into(), json!(self.attrs.group));
        fields.insert("mode".into(), json!(self.attrs.mode));
        fields.insert("blueprint".into(), json!(self.blueprint));
    }

    fn info(&self, r: &Rendered) -> Option<String> {
        Some(files_info(r))
    }

    async fn perform(&self, cx: &Cx<'_>, task: Task<'_>) -> Finish {
        let Task { outgoing: out, .. } = task;
        send(cx, out, &self.attrs).await
    }

    async fn verify(&self, cx: &Cx<'_>, record: &JobRecord, _: &Rendered) -> Option<String> {
        for (dest, sha3) in &record.files {
            match cx.stat(dest).await {
                Ok(None) => return Some(format!("{dest} is gone")),
                Ok(Some(s)) if s.kind != "file" => return Some(format!("{dest} is no longer a file")),
                Ok(Some(s)) if s.sha3.as_deref() != Some(sha3.as_str()) => return Some(format!("{dest} was changed")),
                Ok(Some(s)) => {
                    if let Some(why) = attrs_drift(dest, &s, &self.attrs) {
                        return Some(why);
                    }
                }
                Err(_) => return Some(format!("{dest} could not be checked")),
            }
        }
        None
    }

    fn probes(&self, record: &JobRecord, _: &Rendered) -> Vec<String> {
        record.files.iter().map(|(dest, _)| dest.clone()).collect()
    }

    fn traits(&self) -> Traits {
        Traits { heavy: self.blueprint, probes: true, ..Traits::DEFAULT }
    }

    fn attrs(&self) -> Attrs {
        self.attrs.clone()
    }
}
