//! director-exec: the tiny static executor the operator uploads to each node.
//!
//! It owns the node side of one run: it reads [`Request`] frames on stdin, runs each job as
//! `/bin/sh -c` in its own process group, streams the job's output back as [`Reply`] frames on
//! stdout, and kills a job's whole process group on timeout or cancel. When stdin closes (the
//! operator went away, the SSH connection dropped) it kills every job still running and exits,
//! so nothing is left behind on the node. It uses plain threads, not an async runtime, to stay
//! small: a job is one thread that reads its pipes and waits for it, taken from threads kept
//! for the next job ([`pool`]), and one thread watches every job's deadline ([`watchdog`]).
//!
//! File operations (directories, hashes, atomic writes fed by raw data frames) live in
//! [`files`], the node cache's base and journal in [`cache`]; they run on the reading thread,
//! in arrival order, except local copies, which get a thread of their own.
//!
//! `director-exec verify SHA3` hashes the executor's own file and exits 0 only if it matches:
//! the operator uses it to check an upload before renaming it into place (when it replaces
//! a file that is not its executor). A first contact installs it with director-stage instead.

mod cache;
mod facter;
mod files;
mod job;
mod pool;
mod watchdog;

use director_proto::{
    decode_inbound, encode, Attrs, Done, Facts, Inbound, Reply, Request, MAX_CACHE, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// dlmalloc instead of musl's mallocng: mallocng maps and unmaps pages for a process's first
/// small allocations, 12 % of this executor's CPU in a 12-job deploy (`perf`); with dlmalloc
/// the executor's CPU there is 13 % lower and a job's 4 % (W4, scale bench).
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// Where every frame to the operator goes; one lock per whole frame keeps frames intact.
#[derive(Clone)]
pub struct Outbox(Arc<Mutex<std::io::Stdout>>);

impl Outbox {
    pub fn send(&self, reply: &Reply) {
        self.send_all(std::slice::from_ref(reply));
    }

    /// Sends `replies` in one write (the end of a job with its last output).
    pub fn send_all(&self, replies: &[Reply]) {
        let mut frames = Vec::new();
        for reply in replies {
            // Every reply is bounded well below the frame limit; should one not be, the
            // operator hears why instead of a frame it would refuse.
            let frame = encode(reply)
                .or_else(|e| encode(&Reply::Error { message: format!("a reply could not be sent: {e}") }))
                .expect("an error reply is small");
            frames.extend_from_slice(&frame);
        }
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A closed stdout means the operator is gone; stdin will close too and end the loop.
        let _ = out.write_all(&frames).and_then(|_| out.flush());
    }

    /// Sends `bytes` as the data frames of transfer `id`, all of them under one lock.
    pub fn send_data(&self, id: u64, bytes: &[u8]) {
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in bytes.chunks(director_proto::DATA_CHUNK) {
            if out.write_all(&director_proto::encode_data(id, chunk)).is_err() {
                return;
            }
        }
        let _ = out.flush();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => serve(),
        Some("verify") if args.len() == 3 => std::process::exit(if verify(&args[2]) { 0 } else { 1 }),
        Some("--version") => println!("director-exec {} protocol {PROTOCOL_VERSION}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("usage: director-exec serve | verify SHA3 | --version");
            std::process::exit(2);
        }
    }
}

fn verify(expected: &str) -> bool {
    use sha3::{Digest, Sha3_256};
    let Ok(bytes) = std::fs::read("/proc/self/exe") else { return false };
    let digest = Sha3_256::digest(&bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex == expected
}

/// The executor's own file, its directory or the one above it when anyone may write to it or
/// another user owns it: then whoever can change it could have, and this executor does not
/// serve. The probe checks the owners before it starts the executor; the modes are checked
/// here, without a process on every start.
fn unsafe_path() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let dir = exe.parent()?.to_path_buf();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    [dir.join(".."), dir, exe]
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o002 != 0 || m.uid() != me))
}

/// The most one read of stdin takes.
const READ_CHUNK: usize = 256 * 1024;

fn serve() {
    if let Some(path) = unsafe_path() {
        // The marker the probe prints in this case, so the operator says the same.
        println!("director-exec-unsafe {}", path.display());
        return;
    }
    let outbox = Outbox(Arc::new(Mutex::new(std::io::stdout())));
    let jobs = job::Jobs::default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let cache::Loaded { base, journal, set_aside, greeted } = cache::load();
    outbox.send(&Reply::Hello {
        version: PROTOCOL_VERSION,
        pid: std::process::id(),
        facts: Box::new(facts()),
        cache_bytes: base.as_ref().map(|c| c.len() as u64),
        journal_bytes: journal.as_ref().map_or(0, |j| j.len() as u64),
        cache_set_aside: set_aside.unwrap_or(0),
        now,
    });
    for text in [base, journal].into_iter().flatten() {
        outbox.send_data(0, &text);
    }
    let mut mailbox = files::Mailbox::new();
    // Appends to the cache journal and compactions on a thread of their own, in the order they
    // came: the next job starts while the node writes the last one's record (or waits for
    // another run's lock on the journal). The thread starts with the first of them (a run
    // answered from the cache makes none) and syncs the journal when the session ends.
    let appender: std::cell::RefCell<Option<Appender>> = std::cell::RefCell::default();
    let journal_work = |work: cache::Work| {
        let mut appender = appender.borrow_mut();
        let (appends, _) = appender.get_or_insert_with(|| {
            let (appends, queued) = std::sync::mpsc::channel();
            let (outbox, greeted) = (outbox.clone(), greeted.clone());
            let serve = move || cache::serve(queued, greeted, |replies| outbox.send_all(replies));
            (appends, std::thread::spawn(serve))
        });
        let _ = appends.send(work);
    };

    // The files being received in data frames, and where each goes once whole.
    let mut puts: HashMap<u64, (files::Put, Landing)> = HashMap::new();
    // The pieces of a batch of journal lines until the piece that ends it.
    let mut appending = String::new();
    // Read directly (not through std's buffered stdin): `poll` on it then says the truth.
    // Into the unused end of `buf` itself, not a zeroed buffer copied from: 256 KiB cleared
    // by the allocator were 64 page faults and a fifth of a short run's CPU here (`perf`).
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // The answers to what one read brought go in one write after it (a batch of stats asked
    // together, a file's last data frame and the next request), not one write each.
    let held = std::cell::RefCell::new(Vec::new());
    let done = |id: u64, done: Done| held.borrow_mut().push(Reply::Done { id, done });
    let land = |id: u64, put: files::Put, landing: Landing| match landing {
        Landing::File => done(id, put.finish()),
        Landing::CacheBase => journal_work(cache::Work::Compact(id, Box::new(put))),
    };
    let answer = || {
        let replies = std::mem::take(&mut *held.borrow_mut());
        if !replies.is_empty() {
            outbox.send_all(&replies);
        }
    };
    'read: loop {
        // Nothing to read for a while: the drain mailbox is looked at meanwhile.
        let mut wait = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: poll over one descriptor this function's struct describes.
        match unsafe { libc::poll(&mut wait, 1, mailbox.due_in_ms()) } {
            0 => {
                mailbox.look(&outbox);
                continue;
            }
            // SAFETY: errno is this thread's.
            r if r < 0 && unsafe { *libc::__errno_location() } == libc::EINTR => continue,
            _ => {}
        }
        mailbox.look(&outbox);
        buf.reserve(READ_CHUNK);
        let spare = buf.spare_capacity_mut();
        // SAFETY: fd 0 is this process's stdin, open for its whole life; read writes at most
        // `spare.len()` bytes into the vector's unused capacity, which it owns.
        let n = unsafe { libc::read(0, spare.as_mut_ptr().cast(), spare.len()) };
        match n {
            // SAFETY: errno is this thread's.
            n if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR => continue,
            n if n <= 0 => break,
            // SAFETY: read initialised these `n` bytes, right after the vector's end.
            n => unsafe { buf.set_len(buf.len() + n as usize) },
        }
        let mut at = 0;
        loop {
            match decode_inbound(&buf[at..]) {
                Ok(None) => break,
                Ok(Some((frame, used))) => {
                    at += used;
                    match frame {
                        Inbound::Data { id, bytes } => {
                            if let Some((put, _)) = puts.get_mut(&id) {
                                if put.take(&bytes) {
                                    let (put, landing) = puts.remove(&id).expect("present");
                                    land(id, put, landing);
                                }
                            }
                        }
                        Inbound::Request(request) => match request {
                            Request::Run { id, command, env, cwd, timeout_ms, check: None } => {
                                jobs.start(outbox.clone(), id, command, env, cwd, timeout_ms)
                            }
                            Request::Run { id, command, env, cwd, timeout_ms, check: Some(check) } => {
                                jobs.start_checked(outbox.clone(), id, check, command, env, cwd, timeout_ms)
                            }
                            Request::Cancel { id } => jobs.cancel(id),
                            Request::Mkdir { id, path, attrs } => done(id, files::mkdir(&path, &attrs)),
                            Request::Hash { id, path } => done(id, files::hash(&path)),
                            Request::Read { id, path } => done(id, files::read(&path)),
                            Request::Stat { id, path, text_limit } => done(id, files::stat(&path, text_limit)),
                            Request::AppendCache { id, lines, more: true, .. } => {
                                appending.push_str(&lines);
                                done(id, Done::Ok);
                            }
                            Request::AppendCache { id, mut lines, more: false, packed } => {
                                if !appending.is_empty() {
                                    lines = std::mem::take(&mut appending) + &lines;
                                }
                                if packed {
                                    match director_proto::unpack_text(&lines) {
                                        Ok(text) => lines = text,
                                        Err(message) => {
                                            done(id, Done::Failed { message: message.to_string() });
                                            continue;
                                        }
                                    }
                                }
                                journal_work(cache::Work::Append(id, lines));
                            }
                            Request::Compact { id, size, .. } if size > MAX_CACHE as u64 => {
                                done(id, Done::Failed { message: format!("a node cache of {size} bytes is too large") })
                            }
                            Request::Compact { id, size, packed } => {
                                let attrs = Attrs { mode: Some(0o600), ..Attrs::default() };
                                let path = files::cache_path();
                                match files::Put::begin(id, &path, size, None, attrs, packed) {
                                    Ok(put) if size == 0 => land(id, put, Landing::CacheBase),
                                    Ok(put) => {
                                        puts.insert(id, (put, Landing::CacheBase));
                                    }
                                    Err(message) => done(id, Done::Failed { message }),
                                }
                            }
                            Request::Sentinel { id, from } => done(id, files::sentinel(&from)),
                            Request::Put { id, path, size, sha3, attrs, copy_from: Some(from), .. } => {
                                let outbox = outbox.clone();
                                pool::spawn(move || {
                                    let d = files::copy_local(id, &from, &path, size, sha3, attrs);
                                    outbox.send(&Reply::Done { id, done: d });
                                });
                            }
                            Request::Put { id, path, size, sha3, attrs, copy_from: None, packed } => {
                                match files::Put::begin(id, Path::new(&path), size, Some(sha3), attrs, packed) {
                                    Ok(put) if size == 0 => land(id, put, Landing::File),
                                    Ok(put) => {
                                        puts.insert(id, (put, Landing::File));
                                    }
                                    // The data frames that follow find no transfer and are dropped.
                                    Err(message) => done(id, Done::Failed { message }),
                                }
                            }
                            Request::Facter { id, custom_dir, external_dir } => {
                                // facter may take seconds: not on the reading thread.
                                let outbox = outbox.clone();
                                pool::spawn(move || {
                                    let done = match facter::gather(custom_dir.as_deref(), external_dir.as_deref()) {
                                        Ok(data) if data.len() <= director_proto::MAX_FRAME / 2 => Done::Text { data },
                                        Ok(data) => Done::Failed {
                                            message: format!("the facts are {} bytes, too many to send", data.len()),
                                        },
                                        Err(message) => Done::Failed { message },
                                    };
                                    outbox.send(&Reply::Done { id, done });
                                });
                            }
                            Request::Shutdown => {
                                answer();
                                break 'read;
                            }
                        },
                    }
                }
                Err(e) => {
                    answer();
                    outbox.send(&Reply::Error { message: e.to_string() });
                    break 'read;
                }
            }
        }
        answer();
        buf.drain(..at);
    }
    // Appends already asked for are made before the executor goes.
    if let Some((appends, thread)) = appender.into_inner() {
        drop(appends);
        let _ = thread.join();
    }
    // Unfinished transfers delete their temp files here.
    drop(puts);
    jobs.kill_all();
}

/// Where a file received in data frames goes once whole.
enum Landing {
    /// The path a [`Request::Put`] named: renamed into place and answered at once.
    File,
    /// The node cache's new base ([`Request::Compact`]): handed to the journal's thread.
    CacheBase,
}

/// The journal's append thread: where its appends are queued, and the thread.
type Appender = (std::sync::mpsc::Sender<cache::Work>, std::thread::JoinHandle<()>);

fn facts() -> Facts {
    // SAFETY: uname fills the zeroed struct we own; the fields are NUL-terminated C strings.
    let (kernel, hostname) = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            let s = |f: &[libc::c_char]| std::ffi::CStr::from_ptr(f.as_ptr()).to_string_lossy().into_owned();
            (s(&u.release), s(&u.nodename))
        } else {
            (String::new(), String::new())
        }
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_default();
    let packager = ["apt-get", "dnf", "yum", "zypper", "apk"]
        .into_iter()
        .find(|p| ["/usr/bin", "/bin", "/usr/sbin", "/sbin"].iter().any(|d| std::path::Path::new(d).join(p).exists()))
        .unwrap_or_default()
        .to_string();
    Facts { arch: std::env::consts::ARCH.to_string(), kernel, hostname, os, packager }
}
