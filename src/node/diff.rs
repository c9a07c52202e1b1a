//! `--diff`: what an ADD/COPY (or bootstrap's SEND) is about to change in a file on the node,
//! written for a person.
//!
//! A text file (UTF-8 without NUL bytes, at most [`TEXT_LIMIT`] bytes on both sides) is shown
//! as a unified diff with three lines of context (`similar`), headed `--- before: PATH` and
//! `+++ after: PATH`, a new file against `/dev/null`. Anything else is summarised by its size
//! and content hash. A mode, owner or group the job asks for that the file does not have yet is
//! one line each. Nothing is said when nothing would change. The text leaves as the job's
//! output, so it passes the run's secret filter like any output.

use director_proto::{Attrs, FileStat};
use similar::TextDiff;

/// The largest file, on either side, shown as a diff rather than summarised.
pub(crate) const TEXT_LIMIT: u64 = 1 << 20;

/// The content a job would write.
pub(crate) struct New<'a> {
    /// The bytes, when they are at hand and at most [`TEXT_LIMIT`].
    pub bytes: Option<&'a [u8]>,
    pub size: u64,
    pub sha3: &'a str,
}

/// What writing `new` with `attrs` at `dest` changes, given what is there now (`old`); `None`
/// when nothing would.
pub(crate) fn describe(dest: &str, old: Option<&FileStat>, new: &New<'_>, attrs: &Attrs) -> Option<String> {
    let mut out = String::new();
    match old {
        Some(old) if old.kind != "file" => out.push_str(&format!("{dest}: a {} on the node now\n", word(&old.kind))),
        Some(old) if old.sha3.as_deref() == Some(new.sha3) => {}
        _ => {
            let before = match old {
                None => Some(String::new()),
                Some(o) => o.text.clone(),
            };
            let after = new.bytes.filter(|b| !b.contains(&0)).and_then(|b| std::str::from_utf8(b).ok());
            match (before, after) {
                (Some(before), Some(after)) => {
                    let diff = TextDiff::from_lines(before.as_str(), after);
                    let from = if old.is_none() { "/dev/null".to_string() } else { format!("before: {dest}") };
                    let text =
                        diff.unified_diff().context_radius(3).header(&from, &format!("after: {dest}")).to_string();
                    out.push_str(&text);
                    if !text.ends_with('\n') {
                        out.push('\n');
                    }
                }
                _ => out.push_str(&format!(
                    "{dest}: binary or large file, {} → {}\n",
                    summary(old.map(|o| (o.size, o.sha3.as_deref().unwrap_or("?")))),
                    summary(Some((new.size, new.sha3)))
                )),
            }
        }
    }
    let changes = attr_changes(old.filter(|o| o.kind == "file"), attrs);
    if !changes.is_empty() {
        out.push_str(&format!("{dest}: {}\n", changes.join(", ")));
    }
    (!out.is_empty()).then_some(out)
}

/// The mode, owner and group `attrs` asks for that `old` (a file or directory, when there is
/// one) does not have, each as `mode 0644 → 0600` (or `mode 0600` when there is nothing yet).
pub(crate) fn attr_changes(old: Option<&FileStat>, attrs: &Attrs) -> Vec<String> {
    let mut changes = Vec::new();
    let (mode, uid, gid, owner, group) = match old {
        Some(o) => (Some(o.mode), Some(o.uid), Some(o.gid), o.owner.clone(), o.group.clone()),
        None => (None, None, None, None, None),
    };
    if let Some(want) = attrs.mode.filter(|m| Some(*m) != mode) {
        changes.push(match mode {
            Some(m) => format!("mode {m:04o} → {want:04o}"),
            None => format!("mode {want:04o}"),
        });
    }
    for (what, want, id, name) in [("owner", &attrs.owner, uid, owner), ("group", &attrs.group, gid, group)] {
        let Some(want) = want else { continue };
        let same = id.is_some_and(|id| *want == id.to_string()) || name.as_deref() == Some(want.as_str());
        if !same {
            changes.push(match (name, id) {
                (Some(n), _) => format!("{what} {n} → {want}"),
                (None, Some(id)) => format!("{what} {id} → {want}"),
                (None, None) => format!("{what} {want}"),
            });
        }
    }
    changes
}

fn word(kind: &str) -> &str {
    match kind {
        "dir" => "directory",
        "link" => "symbolic link",
        _ => "special file",
    }
}

fn summary(side: Option<(u64, &str)>) -> String {
    match side {
        None => "nothing".to_string(),
        Some((size, sha3)) => format!("{size} bytes (sha3-224 {}…)", &sha3[..sha3.len().min(12)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str, mode: u32) -> FileStat {
        FileStat {
            kind: "file".into(),
            size: text.len() as u64,
            mode,
            uid: 0,
            gid: 0,
            owner: Some("root".into()),
            group: Some("root".into()),
            sha3: Some(format!("old{}", text.len())),
            text: Some(text.into()),
        }
    }

    fn new(text: &str) -> New<'_> {
        New { bytes: Some(text.as_bytes()), size: text.len() as u64, sha3: "newsha" }
    }

    #[test]
    fn text_changes_are_unified_diffs() {
        let old = file("a\nb\nc\n", 0o644);
        assert_eq!(
            describe("/etc/x", Some(&old), &new("a\nB\nc\n"), &Attrs::default()).unwrap(),
            "--- before: /etc/x\n+++ after: /etc/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
        assert_eq!(
            describe("/etc/y", None, &new("hello\n"), &Attrs { mode: Some(0o600), ..Attrs::default() }).unwrap(),
            "--- /dev/null\n+++ after: /etc/y\n@@ -0,0 +1 @@\n+hello\n/etc/y: mode 0600\n"
        );
    }

    #[test]
    fn same_content_says_only_attribute_changes_or_nothing() {
        let mut old = file("same\n", 0o644);
        old.sha3 = Some("newsha".into());
        assert_eq!(describe("/etc/x", Some(&old), &new("same\n"), &Attrs::default()), None);
        let attrs = Attrs { owner: Some("deploy".into()), group: Some("0".into()), mode: Some(0o640) };
        assert_eq!(
            describe("/etc/x", Some(&old), &new("same\n"), &attrs).unwrap(),
            "/etc/x: mode 0644 → 0640, owner root → deploy\n"
        );
    }

    #[test]
    fn binary_and_large_files_are_summarised() {
        let mut old = file("", 0o644);
        old.text = None;
        old.size = 4096;
        old.sha3 = Some("0123456789abcdef".into());
        let bin = New { bytes: Some(&[0, 1, 2]), size: 3, sha3: "fedcba9876543210" };
        assert_eq!(
            describe("/opt/a.bin", Some(&old), &bin, &Attrs::default()).unwrap(),
            "/opt/a.bin: binary or large file, 4096 bytes (sha3-224 0123456789ab…) → 3 bytes (sha3-224 fedcba987654…)\n"
        );
        let dir = FileStat { kind: "dir".into(), ..file("", 0o755) };
        assert_eq!(
            describe("/opt/d", Some(&dir), &new("x"), &Attrs::default()).unwrap(),
            "/opt/d: a directory on the node now\n"
        );
    }
}
