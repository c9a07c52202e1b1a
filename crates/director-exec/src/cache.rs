//! The node cache on disk: the base file `cache.json` and its journal `cache.journal` (the
//! format is [`director_proto::journal`]'s), in the state directory.
//!
//! Every access holds an exclusive `flock` on the journal, so the executors of two runs on one
//! node append whole lines in turn and a compaction never drops a line appended meanwhile.
//! An append is one `write` of whole lines after making sure the file ends with a newline (a
//! crash mid-append leaves a torn line, which replay skips): what the operator was told is
//! saved survives the executor being killed or its connection dropped. The journal is synced
//! to disk once, when the executor's session ends ([`serve`]), not per append: a node that
//! loses power during a run or right after it may forget that run's last records, and those
//! jobs run again next time (a RUN's own effects, which nothing syncs, may not have reached
//! the disk either). One executor appends at most once per [`APPEND_GAP`] ([`serve`]): the
//! operator sends the records of the jobs that finish meanwhile in its next append, so a
//! long run of short jobs costs the node (and the operator) one append per batch of jobs,
//! not one per job.
//!
//! The executor greets with the base and the journal's lines as they are on disk ([`load`]):
//! the operator parses them anyway, so it replays the journal, and once the journal made
//! enough of the cache dead weight (see [`director_proto::journal::compacts`]) it sends the
//! folded cache back ([`Work::Compact`]), which replaces the base (written to a temp file,
//! fsynced, renamed) and starts the journal again. A journal past
//! [`director_proto::journal::COMPACT_AT`] (no operator folded it) is folded here. A base
//! larger than [`director_proto::MAX_CACHE`] is set aside as `cache.json.too-large`.

use crate::files::{cache_path, Put, Temp};
use director_proto::journal::{self, Header};
use director_proto::{Attrs, Done, Reply, MAX_CACHE};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The least time between two appends of one executor.
pub const APPEND_GAP: Duration = Duration::from_millis(10);

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

    fn bytes(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let _ = self.0.seek(SeekFrom::Start(0)).and_then(|_| self.0.read_to_end(&mut bytes));
        bytes
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

/// What the journal's thread is asked to do, in the order asked.
pub enum Work {
    /// Append journal lines; answer request `id` once they are written.
    Append(u64, String),
    /// Put the new base the operator sent (received whole, not yet committed) in place.
    Compact(u64, Box<Put>),
}

/// Does the work that comes on `queued`, in order, each answered once done, until `queued`
/// closes; then syncs the journal if it appended to it. An append that comes less than
/// [`APPEND_GAP`] after the last one waits for the rest of it; appends that came meanwhile
/// join it, in one write, and are answered together (one call of `answer`). A compaction is
/// checked against what this executor `greeted` with.
pub fn serve(queued: Receiver<Work>, greeted: Greeted, mut answer: impl FnMut(&[Reply])) {
    let mut appended = false;
    let mut last: Option<Instant> = None;
    let mut next: Option<Work> = None;
    loop {
        let work = match next.take() {
            Some(work) => work,
            None => match queued.recv() {
                Ok(work) => work,
                Err(_) => break,
            },
        };
        let first = match work {
            Work::Compact(id, put) => {
                answer(&[Reply::Done { id, done: compact(put, &greeted) }]);
                continue;
            }
            Work::Append(id, lines) => (id, lines),
        };
        if let Some(at) = last {
            std::thread::sleep((at + APPEND_GAP).saturating_duration_since(Instant::now()));
        }
        let mut batch = vec![first];
        for work in queued.try_iter() {
            match work {
                Work::Append(id, lines) => batch.push((id, lines)),
                compaction => {
                    next = Some(compaction);
                    break;
                }
            }
        }
        let mut lines = String::new();
        for (_, more) in &batch {
            if !lines.is_empty() && !lines.ends_with('\n') {
                lines.push('\n');
            }
            lines.push_str(more);
        }
        let done = append(&lines);
        appended |= matches!(done, Done::Ok);
        last = Some(Instant::now());
        let replies: Vec<Reply> = batch.into_iter().map(|(id, _)| Reply::Done { id, done: done.clone() }).collect();
        answer(&replies);
    }
    if appended {
        // No lock: syncing another run's appends with ours does no harm.
        let _ = File::open(journal_path()).and_then(|journal| journal.sync_data());
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
        journal.0.write_all(text.as_bytes()).map_err(|e| format!("cannot append to the node cache's journal: {e}"))
    });
    match result {
        Ok(()) => Done::Ok,
        Err(message) => Done::Failed { message },
    }
}

/// What the executor greets with: the base's bytes and the journal's lines (its header left
/// out), each as it is on disk, for the operator to parse and replay; the size of a base too
/// large to send, which was set aside instead; and what the files were then ([`Greeted`]).
pub struct Loaded {
    pub base: Option<Vec<u8>>,
    pub journal: Option<Vec<u8>>,
    pub set_aside: Option<u64>,
    pub greeted: Greeted,
}

/// The journal's length and the base's signature when the executor greeted: a compaction
/// the operator sends later folds exactly those, so it is made only if both are unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeted {
    journal_len: u64,
    base: String,
}

/// Reads the node cache for the greeting (see the module docs). The journal is sent as it
/// is while it is at most [`director_proto::journal::COMPACT_AT`] and the whole at most
/// [`MAX_CACHE`]: the executor parses nothing. Past either (a journal no operator folded, an
/// older director's), the executor replays it onto the base itself, as before, and folds it.
pub fn load() -> Loaded {
    let base = cache_path();
    let Ok(mut journal) = Locked::open(false) else {
        // No journal (none written yet, or none can be kept here): the base alone, as it is.
        let (text, set_aside) = match fs::metadata(&base) {
            Ok(m) if m.len() > MAX_CACHE as u64 => (None, Some(set_aside(&base, m.len()))),
            _ => (fs::read(&base).ok(), None),
        };
        let greeted = Greeted { journal_len: 0, base: signature(&base) };
        return Loaded { base: text, journal: None, set_aside, greeted };
    };
    let (text, lines, set_aside) = read(&base, &mut journal);
    let greeted = Greeted { journal_len: journal.len(), base: signature(&base) };
    Loaded { base: text, journal: lines, set_aside, greeted }
}

/// Renames a base of `size` bytes, too large to send, out of the way; gives back the size.
fn set_aside(base: &Path, size: u64) -> u64 {
    let _ = fs::rename(base, base.with_extension("json.too-large"));
    size
}

/// [`load`] with the journal locked: the base, the journal's lines to replay, the size of a
/// base set aside.
fn read(base: &Path, journal: &mut Locked) -> (Option<Vec<u8>>, Option<Vec<u8>>, Option<u64>) {
    let own = journal.own();
    let text = match fs::metadata(base) {
        Ok(m) if m.len() > MAX_CACHE as u64 && own => {
            let size = set_aside(base, m.len());
            let _ = journal.restart(base);
            return (None, None, Some(size));
        }
        Ok(m) if m.len() > MAX_CACHE as u64 => return (None, None, Some(m.len())),
        _ => fs::read(base).ok(),
    };
    let mut log = journal.bytes();
    let header = Header { base: signature(base) }.line();
    let current = log.starts_with(header.as_bytes());
    if !current || log[header.len()..].iter().all(u8::is_ascii_whitespace) {
        // Nothing to replay, or a journal of another base (replaced without it): start anew.
        if !log.is_empty() && !current && own {
            let _ = journal.restart(base);
        }
        return (text, None, None);
    }
    let lines = log.len() - header.len();
    let base_len = text.as_ref().map_or(0, Vec::len);
    if lines <= journal::COMPACT_AT && base_len + lines <= MAX_CACHE {
        log.drain(..header.len());
        return (text, Some(log), None);
    }
    let (merged, set_aside) = fold(base, text, &log[header.len()..], own, journal);
    (merged, None, set_aside)
}

/// Replays journal `lines` onto the base `text` here, for a journal past what is sent as it
/// is; the result is set aside when too large, and written as the new base when the
/// executor owns the cache.
fn fold(
    base: &Path,
    text: Option<Vec<u8>>,
    lines: &[u8],
    own: bool,
    journal: &mut Locked,
) -> (Option<Vec<u8>>, Option<u64>) {
    let mut cache = match text.as_deref().map(serde_json::from_slice::<serde_json::Value>) {
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
    journal::replay(&mut cache, &String::from_utf8_lossy(lines));
    let merged = serde_json::to_string(&cache).expect("a cache serializes");
    if merged.len() > MAX_CACHE {
        let size = merged.len() as u64;
        if own {
            set_aside(base, size);
            let _ = journal.restart(base);
        }
        return (None, Some(size));
    }
    if own {
        let _ = write_base(base, &merged, journal);
    }
    (Some(merged.into_bytes()), None)
}

/// Puts the base the operator folded (`put`, received whole) in place of the base and
/// journal this executor greeted with, and starts the journal again; refused when either
/// changed since (another run appended or folded: what it wrote is not in `put`).
fn compact(put: Box<Put>, greeted: &Greeted) -> Done {
    let base = cache_path();
    let journal = Locked::open(false)
        .map_err(|e| format!("cannot open the node cache's journal {}: {e}", journal_path().display()));
    let result = journal.and_then(|mut journal| {
        if !journal.own() {
            return Err("the node cache belongs to another user: it is not rewritten".to_string());
        }
        if (Greeted { journal_len: journal.len(), base: signature(&base) }) != *greeted {
            return Err("the node cache changed since this executor read it: it is not rewritten".to_string());
        }
        match put.finish() {
            Done::Ok => journal.restart(&base),
            Done::Failed { message } => Err(message),
            // A put ends Ok or Failed (no Debug text of a Done here: it weighs on the executor).
            _ => Err("the new base was not written".to_string()),
        }
    });
    match result {
        Ok(()) => Done::Ok,
        Err(message) => Done::Failed { message },
    }
}

/// Writes `merged` as the new base and starts the journal again, under its lock.
fn write_base(base: &Path, merged: &str, journal: &mut Locked) -> Result<(), String> {
    let mut temp = Temp::create(base, 0)?;
    temp.file
        .as_mut()
        .expect("open")
        .write_all(merged.as_bytes())
        .map_err(|e| format!("cannot write the node cache: {e}"))?;
    temp.commit(&Attrs { mode: Some(0o600), ..Attrs::default() })?;
    journal.restart(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_within_the_gap_share_one_write() {
        let home = std::env::temp_dir().join(format!("director-exec-cache-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        // The only test of this crate that reads the state directory.
        std::env::set_var("XDG_CACHE_HOME", &home);
        let (appends, queued) = std::sync::mpsc::channel();
        let (tell, told) = std::sync::mpsc::channel::<Vec<u64>>();
        let greeted = load().greeted;
        let server = std::thread::spawn(move || {
            serve(queued, greeted, |replies| {
                let ids = replies.iter().map(|r| match r {
                    Reply::Done { id, done: Done::Ok } => *id,
                    other => panic!("unexpected {other:?}"),
                });
                tell.send(ids.collect()).unwrap();
            });
        });
        let line = |n: u64| format!("{{\"s\":\"jobs\",\"k\":\"{n}\",\"v\":{{}}}}\n");
        appends.send(Work::Append(1, line(1))).unwrap();
        assert_eq!(told.recv().unwrap(), vec![1]);
        // Four more, 2 ms apart, right after the first was written: each would be written
        // alone; they wait for the gap and go together (a thread of this test held up
        // past the gap may split them once).
        for n in 2..=5 {
            std::thread::sleep(Duration::from_millis(2));
            appends.send(Work::Append(n, line(n))).unwrap();
        }
        drop(appends);
        server.join().unwrap();
        let batches: Vec<Vec<u64>> = told.iter().collect();
        assert!(batches.len() <= 2, "4 appends within the gap took {} writes: {batches:?}", batches.len());
        assert_eq!(batches.concat(), (2..=5).collect::<Vec<_>>());
        let text = fs::read_to_string(home.join("director/cache.journal")).unwrap();
        let keys: Vec<String> = text
            .lines()
            .skip(1)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["k"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(keys, (1..=5).map(|n| n.to_string()).collect::<Vec<_>>());
        let _ = fs::remove_dir_all(&home);
    }
}
