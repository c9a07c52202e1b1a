//! The node cache on disk: the base file `cache.json` and its journal `cache.journal` (the
//! format is [`director_proto::journal`]'s), in the state directory.
//!
//! Every access holds an exclusive `flock` on the journal, so the executors of two runs on one
//! node append whole lines in turn and a compaction never drops a line appended meanwhile.
//! An append is one `write` of whole lines after making sure the file ends with a newline (a
//! crash mid-append leaves a torn line, which replay skips), then `fdatasync`: what the
//! operator was told is saved survives a crash of the executor or of the node. The executor
//! greets with the base and the journal replayed; a journal past
//! [`director_proto::journal::COMPACT_AT`] is then folded into a new base (written to a temp
//! file, fsynced, renamed) and started again. A base larger than
//! [`director_proto::MAX_CACHE`] is set aside as `cache.json.too-large`.

use crate::files::{cache_path, Temp};
use director_proto::journal::{self, Header};
use director_proto::{Attrs, Done, MAX_CACHE};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

fn journal_path() -> PathBuf {
    cache_path().with_extension("journal")
}

/// The journal, open and exclusively locked until dropped.
struct Locked(File);

impl Locked {
    /// Opens (`create`: or creates) the journal and waits for its lock.
    fn open(create: bool) -> Result<Locked, std::io::Error> {
        let path = journal_path();
        if create {
            if let Some(dir) = path.parent() {
                let _ = fs::create_dir_all(dir);
            }
        }
        let file = OpenOptions::new().read(true).append(true).create(create).mode(0o600).open(&path)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Locked(file))
    }

    /// Whether this process's user owns the journal: only the cache's own account rewrites
    /// it (an executor that became another user may see the same home and must not take the
    /// files from their owner).
    fn own(&self) -> bool {
        // SAFETY: geteuid has no preconditions.
        self.0.metadata().is_ok_and(|m| m.uid() == unsafe { libc::geteuid() })
    }

    fn len(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }

    fn text(&mut self) -> String {
        let mut bytes = Vec::new();
        let _ = self.0.seek(SeekFrom::Start(0)).and_then(|_| self.0.read_to_end(&mut bytes));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Empties the journal and names the base it now applies to.
    fn restart(&mut self, base: &Path) -> Result<(), String> {
        self.0.set_len(0).map_err(|e| format!("cannot empty the node cache's journal: {e}"))?;
        self.0
            .write_all(Header { base: signature(base) }.line().as_bytes())
            .and_then(|_| self.0.sync_data())
            .map_err(|e| format!("cannot write the node cache's journal: {e}"))
    }
}

/// What identifies a base file's version: its size, modification time and inode.
fn signature(base: &Path) -> String {
    match fs::metadata(base) {
        Ok(m) => format!("{}-{}.{}-{}", m.len(), m.mtime(), m.mtime_nsec(), m.ino()),
        Err(_) => "none".to_string(),
    }
}

/// Appends journal lines (see the module docs).
pub fn append(lines: &str) -> Done {
    let opened = Locked::open(true)
        .map_err(|e| format!("cannot open the node cache's journal {}: {e}", journal_path().display()));
    let result = opened.and_then(|mut journal| {
        let base = cache_path();
        let mut text = String::with_capacity(lines.len() + 1);
        let len = journal.len();
        if len == 0 {
            text.push_str(&Header { base: signature(&base) }.line());
        } else {
            let mut last = [0u8; 1];
            let ends = journal.0.seek(SeekFrom::Start(len - 1)).and_then(|_| journal.0.read_exact(&mut last));
            if ends.is_err() || last[0] != b'\n' {
                text.push('\n');
            }
        }
        text.push_str(lines);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        journal
            .0
            .write_all(text.as_bytes())
            .and_then(|_| journal.0.sync_data())
            .map_err(|e| format!("cannot append to the node cache's journal: {e}"))
    });
    match result {
        Ok(()) => Done::Ok,
        Err(message) => Done::Failed { message },
    }
}

/// The node cache's text for the greeting, and the size of a cache too large to send, which
/// was set aside instead.
pub fn load() -> (Option<String>, Option<u64>) {
    let base = cache_path();
    let set_aside = |size: u64| {
        let _ = fs::rename(&base, base.with_extension("json.too-large"));
        size
    };
    let Ok(mut journal) = Locked::open(false) else {
        // No journal (none written yet, or none can be kept here): the base alone, as it is.
        return match fs::metadata(&base) {
            Ok(m) if m.len() > MAX_CACHE as u64 => (None, Some(set_aside(m.len()))),
            _ => (fs::read_to_string(&base).ok(), None),
        };
    };
    let own = journal.own();
    let text = match fs::metadata(&base) {
        Ok(m) if m.len() > MAX_CACHE as u64 && own => {
            let size = set_aside(m.len());
            let _ = journal.restart(&base);
            return (None, Some(size));
        }
        Ok(m) if m.len() > MAX_CACHE as u64 => return (None, Some(m.len())),
        _ => fs::read_to_string(&base).ok(),
    };
    let log = journal.text();
    let (names, lines) = journal::split(&log);
    let current = names.as_deref() == Some(signature(&base).as_str());
    if lines.trim().is_empty() || !current {
        // Nothing to replay, or a journal of another base (replaced without it): start anew.
        if !log.is_empty() && !current && own {
            let _ = journal.restart(&base);
        }
        return (text, None);
    }
    let mut cache = match text.as_deref().map(serde_json::from_str::<serde_json::Value>) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        // An unreadable base is reported by the operator; the journal still holds what came
        // after it, which is kept.
        Some(_) => return (text, None),
        None => {
            let mut map = serde_json::Map::new();
            map.insert("v".to_string(), serde_json::Value::from(1));
            map
        }
    };
    journal::replay(&mut cache, lines);
    let merged = serde_json::to_string(&cache).expect("a cache serializes");
    if merged.len() > MAX_CACHE {
        let size = merged.len() as u64;
        if own {
            set_aside(size);
            let _ = journal.restart(&base);
        }
        return (None, Some(size));
    }
    if log.len() > journal::COMPACT_AT && own {
        let _ = compact(&base, &merged, &mut journal);
    }
    (Some(merged), None)
}

/// Writes `merged` as the new base and starts the journal again, under its lock.
fn compact(base: &Path, merged: &str, journal: &mut Locked) -> Result<(), String> {
    let mut temp = Temp::create(base, 0)?;
    temp.file
        .as_mut()
        .expect("open")
        .write_all(merged.as_bytes())
        .map_err(|e| format!("cannot write the node cache: {e}"))?;
    temp.commit(&Attrs { mode: Some(0o600), ..Attrs::default() })?;
    journal.restart(base)
}
