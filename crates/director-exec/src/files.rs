//! The executor's file operations: directories, hashes, reads, atomic writes, and the
//! QUEUESENTINEL mailbox between executors of one user (the node cache is [`crate::cache`]'s).
//!
//! Every write goes to a temp file beside its destination, is checked, gets its owner and
//! mode, is fsynced and then renamed into place: an interrupted transfer or a crash never
//! leaves a truncated destination or a half-written cache. A [`Put`] that is dropped before
//! it completes (stdin closed mid-transfer) deletes its temp file.
//!
//! The state directory is `${XDG_CACHE_HOME:-$HOME/.cache}/director`, the same place the
//! executor itself is installed under: `cache.json` and `cache.journal` are the node cache,
//! `drain/<pid>` asks the executor `pid` to drain its run (the serving executors are found in
//! /proc, see [`sentinel`]; a start writes nothing to mark itself).

use director_proto::{Attrs, Done, Reply};
use sha3::{Digest, Sha3_224};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The state directory (see the module docs).
pub fn state_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("director"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(".cache/director"),
    }
}

pub fn cache_path() -> PathBuf {
    state_dir().join("cache.json")
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn failed(message: impl Into<String>) -> Done {
    Done::Failed { message: message.into() }
}

/// Looks a user or group up in /etc/passwd or /etc/group; numbers pass through.
fn lookup_id(name: &str, file: &str, what: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let text = fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let n = f.next()?;
            let id = f.nth(1)?;
            (n == name).then(|| id.parse::<u32>().ok()).flatten()
        })
        .next()
        .ok_or_else(|| format!("no {what} `{name}` in {file}"))
}

/// The name of user or group `id` in /etc/passwd or /etc/group.
fn name_of(id: u32, file: &str) -> Option<String> {
    let text = fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}

/// What is at `path` (see [`director_proto::Request::Stat`]).
pub fn stat(path: &str, text_limit: u64) -> Done {
    use std::os::unix::fs::MetadataExt;
    let p = Path::new(path);
    let meta = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Done::Stat { stat: None },
        Err(e) => return failed(format!("cannot look at {path}: {e}")),
    };
    let kind = if meta.is_file() {
        "file"
    } else if meta.is_dir() {
        "dir"
    } else if meta.file_type().is_symlink() {
        "link"
    } else {
        "other"
    };
    let (mut sha3, mut text) = (None, None);
    if meta.is_file() {
        sha3 = hash_file(p, meta.len()).ok();
        if meta.len() <= text_limit {
            text = fs::read(p).ok().filter(|b| !b.contains(&0)).and_then(|b| String::from_utf8(b).ok());
        }
    }
    Done::Stat {
        stat: Some(Box::new(director_proto::FileStat {
            kind: kind.to_string(),
            size: meta.len(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            owner: name_of(meta.uid(), "/etc/passwd"),
            group: name_of(meta.gid(), "/etc/group"),
            sha3,
            text,
        })),
    }
}

/// Applies owner, group and mode to the open `file` (shown as `path` in errors): through
/// the descriptor, so a path swapped in the meantime is never the one changed.
fn apply_attrs(file: &File, path: &Path, attrs: &Attrs) -> Result<(), String> {
    let uid = attrs.owner.as_deref().map(|u| lookup_id(u, "/etc/passwd", "user")).transpose()?;
    let gid = attrs.group.as_deref().map(|g| lookup_id(g, "/etc/group", "group")).transpose()?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(file, uid, gid).map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
    }
    if let Some(mode) = attrs.mode {
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Creates `path` and its parents, then gives it `attrs`. A symbolic link at `path` (planted
/// in a shared directory such as /tmp by another user) is refused, never followed: its
/// target's owner and mode are not ours to change.
pub fn mkdir(path: &str, attrs: &Attrs) -> Done {
    let p = Path::new(path);
    if let Ok(meta) = fs::symlink_metadata(p) {
        if meta.file_type().is_symlink() {
            let target = fs::read_link(p).map(|t| t.display().to_string()).unwrap_or_default();
            return failed(format!("{path} is a symbolic link (to {target}), not a directory: refusing to follow it"));
        }
    }
    if let Err(e) = fs::create_dir_all(p) {
        return failed(format!("cannot create directory {path}: {e}"));
    }
    // O_NOFOLLOW: a link swapped in after the check above is refused too.
    let dir = match OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(p) {
        Ok(d) => d,
        Err(e) => return failed(format!("cannot open directory {path}: {e}")),
    };
    match apply_attrs(&dir, p, attrs) {
        Ok(()) => Done::Ok,
        Err(e) => failed(e),
    }
}

/// A buffer to read a file of `size` bytes through: the file's size and a byte (never empty, so
/// a file that grew since its size was read is still read to its end), at most 128 KiB. A
/// short job's small file then costs no 128 KiB of pages cleared and faulted in.
fn read_buffer(size: u64) -> Vec<u8> {
    vec![0u8; usize::try_from(size).unwrap_or(usize::MAX).saturating_add(1).min(128 * 1024)]
}

/// sha3-224 of a file's bytes, streamed.
fn hash_file(path: &Path, size: u64) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha3_224::new();
    let mut buf = read_buffer(size);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hash(path: &str) -> Done {
    let p = Path::new(path);
    match fs::metadata(p) {
        Ok(m) if m.is_file() => match hash_file(p, m.len()) {
            Ok(h) => Done::Hash { sha3: Some(h) },
            Err(e) => failed(format!("cannot read {path}: {e}")),
        },
        _ => Done::Hash { sha3: None },
    }
}

/// A text file's content. Only a regular file is read, and at most the limit: a FIFO or a
/// device named by a CACHEFILE would otherwise block this executor or fill its memory.
pub fn read(path: &str) -> Done {
    let limit = (director_proto::MAX_FRAME / 2) as u64;
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) => return failed(format!("cannot read {path}: {e}")),
    };
    match file.metadata() {
        Ok(m) if !m.is_file() => return failed(format!("{path} is not a regular file")),
        Ok(m) if m.len() > limit => return failed(format!("{path} is {} bytes; at most {limit} can be read", m.len())),
        Err(e) => return failed(format!("cannot read {path}: {e}")),
        Ok(_) => {}
    }
    let mut bytes = Vec::new();
    match file.take(limit + 1).read_to_end(&mut bytes) {
        Ok(_) if bytes.len() as u64 > limit => failed(format!("{path} grew past {limit} bytes while it was read")),
        Ok(_) => match String::from_utf8(bytes) {
            Ok(data) => Done::Text { data },
            Err(_) => failed(format!("{path} is not UTF-8 text")),
        },
        Err(e) => failed(format!("cannot read {path}: {e}")),
    }
}

/// A temp file beside `dest` that is removed unless [`Temp::commit`] renames it into place.
pub struct Temp {
    path: PathBuf,
    dest: PathBuf,
    pub file: Option<File>,
}

impl Temp {
    pub fn create(dest: &Path, tag: u64) -> Result<Temp, String> {
        let name = dest.file_name().ok_or_else(|| format!("{} is not a file path", dest.display()))?;
        if dest.is_dir() {
            return Err(format!("{} is a directory; end the destination with / to copy into it", dest.display()));
        }
        let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let path = dir.join(format!(".{}.director-{}-{tag}.tmp", name.to_string_lossy(), std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot create a file in {}: {e}", dir.display()))?;
        Ok(Temp { path, dest: dest.to_path_buf(), file: Some(file) })
    }

    /// Mode/owner, fsync, rename; a destination that exists keeps its mode unless `attrs` says.
    pub fn commit(mut self, attrs: &Attrs) -> Result<(), String> {
        let file = self.file.take().expect("open until commit");
        let mut attrs = attrs.clone();
        if attrs.mode.is_none() {
            attrs.mode = Some(match fs::metadata(&self.dest) {
                Ok(m) => m.permissions().mode() & 0o7777,
                Err(_) => 0o666 & !umask(),
            });
        }
        apply_attrs(&file, &self.path, &attrs)?;
        file.sync_all().map_err(|e| format!("cannot sync {}: {e}", self.path.display()))?;
        drop(file);
        fs::rename(&self.path, &self.dest).map_err(|e| format!("cannot rename into {}: {e}", self.dest.display()))?;
        if let Some(dir) = self.dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn umask() -> u32 {
    // SAFETY: umask only swaps the process mask; it is put back at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old as u32
    }
}

/// An atomic write in progress, fed by data frames.
pub struct Put {
    temp: Temp,
    /// The hasher and the sha3-224 it must end with; none for a transfer checked by its
    /// size alone (the node cache's new base: the SSH channel's integrity is its check).
    hasher: Option<(Sha3_224, String)>,
    left: u64,
    attrs: Attrs,
    failed: Option<String>,
    /// A packed transfer's decoded piece (its data frames are [`director_proto::pack`]ed).
    unpacked: Option<Vec<u8>>,
}

impl Put {
    pub fn begin(
        id: u64,
        path: &Path,
        size: u64,
        sha3: Option<String>,
        attrs: Attrs,
        packed: bool,
    ) -> Result<Put, String> {
        Ok(Put {
            temp: Temp::create(path, id)?,
            hasher: sha3.map(|sha3| (Sha3_224::new(), sha3)),
            left: size,
            attrs,
            failed: None,
            unpacked: packed.then(Vec::new),
        })
    }

    /// Takes a data frame; true once every byte has arrived (or a packed frame did not decode).
    pub fn take(&mut self, frame: &[u8]) -> bool {
        let Some(mut piece) = self.unpacked.take() else { return self.feed(frame) };
        let done = match director_proto::unpack(frame, &mut piece) {
            Ok(()) => self.feed(&piece),
            Err(e) => {
                self.failed.get_or_insert_with(|| e.to_string());
                true
            }
        };
        self.unpacked = Some(piece);
        done
    }

    /// Takes a chunk; true once every byte has arrived.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.failed.is_none() {
            if bytes.len() as u64 > self.left {
                self.failed = Some("more bytes arrived than announced".into());
            } else if let Err(e) = self.temp.file.as_mut().expect("open").write_all(bytes) {
                self.failed = Some(format!("cannot write {}: {e}", self.temp.path.display()));
            }
            if let Some((hasher, _)) = &mut self.hasher {
                hasher.update(bytes);
            }
        }
        self.left = self.left.saturating_sub(bytes.len() as u64);
        self.left == 0
    }

    pub fn finish(self) -> Done {
        if let Some(message) = self.failed {
            return failed(message);
        }
        if let Some((hasher, sha3)) = self.hasher {
            let got = hex(&hasher.finalize());
            if got != sha3 {
                return failed(format!("data integrity failure: expected sha3-224 {sha3}, received {got}"));
            }
        }
        match self.temp.commit(&self.attrs) {
            Ok(()) => Done::Ok,
            Err(e) => failed(e),
        }
    }
}

/// Copies a file already on the node (sent earlier in this run) to `path`, atomically.
pub fn copy_local(id: u64, from: &str, path: &str, size: u64, sha3: String, attrs: Attrs) -> Done {
    let mut put = match Put::begin(id, Path::new(path), size, Some(sha3), attrs, false) {
        Ok(p) => p,
        Err(e) => return failed(e),
    };
    let mut source = match File::open(from) {
        Ok(f) => f,
        Err(e) => return failed(format!("cannot open {from}: {e}")),
    };
    let mut buf = read_buffer(size);
    loop {
        match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                put.feed(&buf[..n]);
            }
            Err(e) => return failed(format!("cannot read {from}: {e}")),
        }
    }
    if put.left != 0 {
        return failed(format!("{from} changed since it was sent"));
    }
    put.finish()
}

/// The pids of this user's executors serving from this state directory, but this one: found
/// in /proc (their `exe` in `bin/`, started as `serve`), so a start marks nothing on disk.
/// Another user's processes do not let their `exe` be read, and another state directory's
/// executors live in another `bin/`. A job's process between its fork and its exec looks the
/// same: its parent is an executor, and it is left out (a letter to it would wait for the
/// next process given its pid).
fn serving_executors() -> Vec<u32> {
    let bin = state_dir().join("bin");
    let serving = |pid: u32| {
        let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else { return false };
        // A replaced executor still runs from its unlinked file.
        let exe = exe.to_string_lossy();
        let exe = Path::new(exe.strip_suffix(" (deleted)").unwrap_or(&exe));
        exe.parent() == Some(bin.as_path())
            && exe.file_name().is_some_and(|n| n.to_string_lossy().starts_with("director-exec-"))
            && fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).nth(1) == Some(b"serve".as_slice()))
    };
    let me = std::process::id();
    let Ok(procs) = fs::read_dir("/proc") else { return Vec::new() };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && serving(pid) && !parent_of(pid).is_some_and(serving))
        .collect()
}

/// The parent of process `pid`, from /proc.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Tells every other live executor of this user to drain; returns how many were told.
pub fn sentinel(from: &str) -> Done {
    let drain = state_dir().join("drain");
    let _ = fs::create_dir_all(&drain);
    let me = std::process::id();
    let mut told = 0;
    for pid in serving_executors() {
        let pid = pid.to_string();
        let tmp = drain.join(format!(".{pid}.{me}.tmp"));
        if fs::write(&tmp, from).and_then(|_| fs::rename(&tmp, drain.join(&pid))).is_ok() {
            told += 1;
        }
    }
    Done::Text { data: format!("queue sentinel delivered to {told} running executor(s)") }
}

/// This executor's drain mailbox, looked at by the reading thread at most every
/// [`Mailbox::EVERY`] (not a thread of its own: a short run would start one for nothing), and
/// removed when the executor goes, so a letter left unread never reaches a later process
/// given the same pid.
pub struct Mailbox {
    path: PathBuf,
    next: std::time::Instant,
}

impl Mailbox {
    pub const EVERY: std::time::Duration = std::time::Duration::from_millis(200);

    pub fn new() -> Mailbox {
        let path = state_dir().join("drain").join(std::process::id().to_string());
        Mailbox { path, next: std::time::Instant::now() + Mailbox::EVERY }
    }

    /// How long until the next look, in milliseconds (for `poll`), rounded up: rounded down,
    /// the last fraction of a millisecond was a `poll` of 0 again and again, a busy loop every
    /// executor ran every 200 ms (at 1,000 nodes on one machine, enough to fill its cores).
    pub fn due_in_ms(&self) -> i32 {
        let left = self.next.saturating_duration_since(std::time::Instant::now());
        left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    }

    /// When it is time, looks: a letter becomes [`Reply::Drain`].
    pub fn look(&mut self, outbox: &crate::Outbox) {
        let now = std::time::Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + Mailbox::EVERY;
        if let Ok(from) = fs::read_to_string(&self.path) {
            let _ = fs::remove_file(&self.path);
            outbox.send(&Reply::Drain { from });
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_mailbox_due_within_a_millisecond_is_waited_for_a_whole_one() {
        let due = |after: Duration| Mailbox { path: PathBuf::new(), next: Instant::now() + after }.due_in_ms();
        // Not 0: poll would return at once, again and again, until it is due.
        assert_eq!(due(Duration::from_micros(300)), 1);
        assert!((200..=201).contains(&due(Duration::from_micros(200_500))));
        assert_eq!(Mailbox { path: PathBuf::new(), next: Instant::now() }.due_in_ms(), 0);
    }
}
