//! The operator's side of the protocol with one executor.
//!
//! A [`Session`] wraps a transport [`Link`]: it checks the executor's hello (protocol
//! version), then multiplexes jobs over the one pipe. Each job gets an id and a receiver of
//! its replies; a dispatcher task decodes frames and routes them by id. When the link closes,
//! every job still waiting sees its receiver end, and [`Session::lost`] says why.
//!
//! File operations are one request and one [`Done`]; [`Session::put`] streams a local file as
//! data frames, one chunk at a time, so the operator's memory stays flat whatever the size.
//! Content of [`PACK_MIN`] to [`PACK_MAX`] bytes that LZ4 makes an eighth smaller or more goes
//! packed instead: packed once per process, whichever node asks first, and the same frames
//! sent to every node (fewer bytes through both ends' ciphers and the network, and a smaller
//! SSH write buffer kept per connection).

use crate::transport::{Incoming, Link};
use director_proto::{
    data_header, decode, decode_data, encode, encode_data, Attrs, DataFrame, Done, Facts, Reply, Request, DATA_CHUNK,
    DATA_HEADER, MAX_CACHE, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Why a session could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The executor answered, but not in this protocol: install the right one and retry.
    WrongExecutor(String),
    /// Anything else, as text for the node's event.
    Failed(String),
}

type Routes = Arc<Mutex<HashMap<u64, mpsc::Sender<Box<Reply>>>>>;

/// Content smaller than this goes as it is: a frame or two either way.
const PACK_MIN: u64 = 4 * 1024;
/// Content larger than this is streamed as it is, not held in memory.
const PACK_MAX: u64 = 8 * 1024 * 1024;
/// Packed content kept, all of it together; past it, new content goes as it is.
const PACKED_KEPT: usize = 64 * 1024 * 1024;

/// A content's packed frames, by its sha3: `None` once it was found not to pack well.
type Pieces = Arc<tokio::sync::OnceCell<Option<Arc<[Vec<u8>]>>>>;

/// The packed contents of this process, and their bytes.
#[derive(Default)]
struct Packed {
    by_sha3: HashMap<String, Pieces>,
    kept: usize,
}

static PACKED: std::sync::LazyLock<Mutex<Packed>> = std::sync::LazyLock::new(Mutex::default);

/// `content` (`size` bytes, hash `sha3`) as packed data frames, when it is worth it.
async fn packed(sha3: &str, size: u64, content: &Content<'_>) -> Option<Arc<[Vec<u8>]>> {
    if !(PACK_MIN..=PACK_MAX).contains(&size) || matches!(content, Content::CopyOf(_)) {
        return None;
    }
    let cell = {
        let mut packed = PACKED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match packed.by_sha3.get(sha3) {
            Some(cell) => cell.clone(),
            None if packed.kept >= PACKED_KEPT => return None,
            None => packed.by_sha3.entry(sha3.to_string()).or_default().clone(),
        }
    };
    cell.get_or_init(|| async {
        let bytes = match content {
            Content::Bytes(bytes) => bytes.to_vec(),
            // Unreadable here: streamed as it is, which says why.
            Content::File(path) => tokio::fs::read(path).await.ok()?,
            Content::CopyOf(_) => return None,
        };
        if bytes.len() as u64 != size {
            return None;
        }
        let pieces = tokio::task::spawn_blocking(move || pack_pieces(&bytes)).await.ok()??;
        let total: usize = pieces.iter().map(Vec::len).sum();
        PACKED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).kept += total;
        Some(Arc::from(pieces))
    })
    .await
    .clone()
}

/// `bytes` as packed data frames (a [`director_proto::pack`]ed piece of [`DATA_CHUNK`] bytes
/// each), when that makes them an eighth smaller or more.
fn pack_pieces(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let pieces: Vec<Vec<u8>> = bytes.chunks(DATA_CHUNK).map(director_proto::pack).collect();
    let (total, size) = (pieces.iter().map(Vec::len).sum::<usize>(), bytes.len());
    (total <= size - size / 8).then_some(pieces)
}

/// Replies a request's route holds before the link waits for its reader: a job's output
/// streams through at the pace of whoever reads it, in memory bounded per job, and the node's
/// executor is held back by the SSH channel's window when the operator cannot keep up.
const ROUTE_DEPTH: usize = 16;

/// The capacity a link's read buffer keeps between bursts.
const READ_KEPT: usize = 4096;

/// A session with the node's executor. Its link can be replaced in place
/// ([`Session::adopt`]), as after a reboot: whoever holds the session keeps it.
pub struct Session {
    pipe: std::sync::RwLock<Arc<Pipe>>,
}

/// One live link to an executor.
struct Pipe {
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    routes: Routes,
    next_id: AtomicU64,
    lost: Arc<Mutex<Option<String>>>,
    drained: Arc<Mutex<Option<String>>>,
    _guard: Option<Box<dyn Send + Sync>>,
}

/// The replies to one request, in order; they end when the link is lost. Each is boxed
/// while it waits: a queue's first block is 32 slots, 1.8 KB of replies held inline for every
/// request in flight on every node, 288 bytes of pointers.
pub struct Replies(mpsc::Receiver<Box<Reply>>);

impl Replies {
    pub async fn recv(&mut self) -> Option<Reply> {
        self.0.recv().await.map(|reply| *reply)
    }

    pub fn try_recv(&mut self) -> Result<Reply, mpsc::error::TryRecvError> {
        self.0.try_recv().map(|reply| *reply)
    }
}

/// A request sent ahead ([`Session::ask_all`]); dropped unasked, its answer is thrown away.
pub struct Asked {
    pipe: Arc<Pipe>,
    rx: Replies,
}

impl Asked {
    /// Whether it was asked of `session`'s executor (the same account's, on the same link).
    pub fn is_of(&self, session: &Session) -> bool {
        Arc::ptr_eq(&self.pipe, &session.pipe())
    }

    /// The request's [`Done`], once the node has answered.
    pub async fn done(self) -> Result<Done, String> {
        self.pipe.done_of(self.rx).await
    }
}

/// What the executor said when it started.
pub struct Greeting {
    pub facts: Facts,
    /// The node cache's base file's text, if there is one.
    pub cache: Option<String>,
    /// The journal lines to replay onto it, if there are any.
    pub journal: Option<String>,
    /// The size of a cache file too large to send, which the executor set aside.
    pub cache_set_aside: Option<u64>,
    /// The node's clock.
    pub now: u64,
}

/// Where the bytes of a [`Session::put`] come from.
pub enum Content<'a> {
    /// A local file, streamed.
    File(&'a std::path::Path),
    /// Bytes in memory (a rendered blueprint).
    Bytes(&'a [u8]),
    /// A file already on the node with the same content.
    CopyOf(String),
}

/// Waits for more bytes of the executor's output into `buf` (its stderr into `stderr`); an
/// executor that exits meanwhile is an error that says how, with the end of its stderr.
async fn read_more(link: &mut Link, buf: &mut Vec<u8>, stderr: &mut Vec<u8>) -> Result<(), OpenError> {
    loop {
        match link.incoming.recv().await {
            Incoming::Data(d) => {
                buf.extend_from_slice(&d);
                return Ok(());
            }
            Incoming::Stderr(e) => stderr.extend_from_slice(&e),
            Incoming::Closed(status) => {
                return Err(OpenError::Failed(format!(
                    "the executor exited before greeting (exit {}){}",
                    status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                    match stderr_tail(stderr) {
                        t if t.is_empty() => String::new(),
                        t => format!(": {t}"),
                    }
                )))
            }
        }
    }
}

fn silent(hello_timeout: Duration) -> OpenError {
    OpenError::Failed(format!("the executor did not answer within {} s", hello_timeout.as_secs()))
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let tail: String = text.chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
    tail
}

impl Session {
    /// Waits for the executor's hello and starts routing its replies.
    pub async fn open(mut link: Link, hello_timeout: Duration) -> Result<(Session, Greeting), OpenError> {
        let mut buf = std::mem::take(&mut link.pending);
        let mut stderr = Vec::new();
        // The greeting, then the node cache in data frames: each must come within the time.
        let hello = tokio::time::timeout(hello_timeout, async {
            loop {
                match decode::<Reply>(&buf) {
                    Ok(Some((reply, used))) => {
                        buf.drain(..used);
                        return Ok(reply);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(OpenError::WrongExecutor(format!("the executor's greeting is not readable: {e}")))
                    }
                }
                read_more(&mut link, &mut buf, &mut stderr).await?;
            }
        })
        .await
        .map_err(|_| silent(hello_timeout))??;
        let (facts, cache_bytes, journal_bytes, cache_set_aside, now) = match hello {
            Reply::Hello { version, facts, cache_bytes, journal_bytes, cache_set_aside, now, .. }
                if version == PROTOCOL_VERSION =>
            {
                (facts, cache_bytes, journal_bytes, cache_set_aside, now)
            }
            Reply::Hello { version, .. } => {
                return Err(OpenError::WrongExecutor(format!(
                    "the executor speaks protocol {version}, this director speaks {PROTOCOL_VERSION}"
                )))
            }
            other => return Err(OpenError::WrongExecutor(format!("the executor greeted with {other:?}"))),
        };
        let base = cache_bytes.unwrap_or(0);
        let size = base.saturating_add(journal_bytes);
        if size > MAX_CACHE as u64 {
            return Err(OpenError::WrongExecutor(format!(
                "the executor announced a node cache of {size} bytes, over the {} MiB a node cache may hold",
                MAX_CACHE >> 20
            )));
        }
        // The base's text, then the journal's, in the same data frames.
        let mut text = Vec::with_capacity(size as usize);
        while text.len() < size as usize {
            match decode_data(&buf) {
                Ok(Some(DataFrame { id: 0, bytes, used })) if text.len() + bytes.len() <= size as usize => {
                    text.extend_from_slice(bytes);
                    buf.drain(..used);
                }
                Ok(Some(_)) => {
                    return Err(OpenError::WrongExecutor(
                        "the executor sent more than the node cache it announced".into(),
                    ))
                }
                Ok(None) => tokio::time::timeout(hello_timeout, read_more(&mut link, &mut buf, &mut stderr))
                    .await
                    .map_err(|_| silent(hello_timeout))??,
                Err(e) => return Err(OpenError::WrongExecutor(format!("the node cache is not readable: {e}"))),
            }
        }
        // Bytes that are not UTF-8 (a line torn inside a character by a crash, a damaged base)
        // are read as U+FFFD: the torn line is skipped as it is replayed, a damaged base is
        // reported if it no longer parses.
        let text_of = |bytes: Vec<u8>| {
            String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        let lines = text.split_off(base as usize);
        let (cache, journal) = (cache_bytes.map(|_| text_of(text)), (journal_bytes > 0).then(|| text_of(lines)));
        let cache_set_aside = (cache_set_aside > 0).then_some(cache_set_aside);
        let greeting = Greeting { facts: *facts, cache, journal, cache_set_aside, now };
        let routes: Routes = Arc::default();
        let lost = Arc::new(Mutex::new(None));
        let drained = Arc::new(Mutex::new(None));
        tokio::spawn(dispatch(link.incoming, buf, stderr, routes.clone(), lost.clone(), drained.clone()));
        let pipe = Pipe {
            writer: tokio::sync::Mutex::new(link.writer),
            routes,
            next_id: AtomicU64::new(1),
            lost,
            drained,
            _guard: link.guard,
        };
        Ok((Session { pipe: std::sync::RwLock::new(Arc::new(pipe)) }, greeting))
    }

    fn pipe(&self) -> Arc<Pipe> {
        self.pipe.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Takes `other`'s link (a new executor of the same account, after a reboot): what is
    /// asked of this session from now on goes there.
    pub fn adopt(&self, other: Session) {
        *self.pipe.write().unwrap_or_else(std::sync::PoisonError::into_inner) = other.pipe();
    }

    /// Starts a command; see [`Request::Run`].
    pub async fn run(
        &self,
        command: String,
        check: Option<String>,
        env: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<(u64, Replies), String> {
        self.pipe().run(command, check, env, timeout).await
    }

    /// A file operation: one request, one [`Done`].
    pub async fn call(&self, make: impl FnOnce(u64) -> Request) -> Result<Done, String> {
        self.pipe().call(make).await
    }

    /// Sends every request `makes` builds (each with a fresh id) in one write, before anyone
    /// needs its answer: what the node then answers waits in its [`Asked`].
    pub async fn ask_all<F: FnOnce(u64) -> Request>(&self, makes: Vec<F>) -> Result<Vec<Asked>, String> {
        let pipe = self.pipe();
        let started = pipe.start_all(makes).await?;
        Ok(started.into_iter().map(|rx| Asked { pipe: pipe.clone(), rx }).collect())
    }

    /// Writes `path` on the node atomically with `content` of `size` bytes and hash `sha3`.
    pub async fn put(
        &self,
        path: String,
        size: u64,
        sha3: String,
        attrs: Attrs,
        content: Content<'_>,
    ) -> Result<Done, String> {
        self.pipe().put(path, size, sha3, attrs, content).await
    }

    /// Replaces the node cache's base with `text` and starts its journal again, if both are
    /// still what the executor greeted with ([`Request::Compact`]).
    pub async fn compact(&self, text: String) -> Result<Done, String> {
        self.pipe().compact(text).await
    }

    /// Set once another run (or a job of this one) sent a QUEUESENTINEL to this node.
    pub fn drained(&self) -> Option<String> {
        self.pipe().drained()
    }

    pub fn drain(&self, why: String) {
        self.pipe().drain(why);
    }

    pub async fn cancel(&self, id: u64) {
        self.pipe().cancel(id).await;
    }

    /// Asks the executor to exit; it kills whatever still runs.
    pub async fn shutdown(&self) {
        self.pipe().shutdown().await;
    }

    /// Why the link closed, once it has.
    pub fn lost(&self) -> Option<String> {
        self.pipe().lost()
    }
}

impl Pipe {
    async fn send(&self, request: &Request) -> Result<(), String> {
        let frame = encode(request).map_err(|e| format!("the request cannot be sent: {e}"))?;
        self.send_frame(&frame).await
    }

    async fn send_frame(&self, frame: &[u8]) -> Result<(), String> {
        let mut w = self.writer.lock().await;
        w.write_all(frame).await.map_err(|e| e.to_string())?;
        w.flush().await.map_err(|e| e.to_string())
    }

    /// The route the dispatcher sends request `id`'s replies on, and where they arrive.
    fn route(&self, id: u64) -> Replies {
        let (tx, rx) = mpsc::channel(ROUTE_DEPTH);
        self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, tx);
        Replies(rx)
    }

    /// Sends the request `make` builds with a fresh id; its replies arrive on the receiver,
    /// which ends if the link is lost.
    async fn start(&self, make: impl FnOnce(u64) -> Request) -> Result<(u64, Replies), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = self.route(id);
        // A link already lost has no dispatcher left to end this route: the request would
        // wait forever. (The dispatcher marks the link lost before it drops the routes.)
        if let Some(lost) = self.lost() {
            self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
            return Err(lost);
        }
        if let Err(e) = self.send(&make(id)).await {
            self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&id);
            return Err(self.lost().unwrap_or(format!("cannot send the request: {e}")));
        }
        Ok((id, rx))
    }

    /// [`Pipe::start`] for several requests, sent in one write.
    async fn start_all<F: FnOnce(u64) -> Request>(&self, makes: Vec<F>) -> Result<Vec<Replies>, String> {
        let (mut frames, mut ids) = (Vec::new(), Vec::new());
        // Every request is encoded before any is routed: one that cannot be leaves no route
        // of the others behind.
        for make in makes {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let frame = encode(&make(id)).map_err(|e| format!("the request cannot be sent: {e}"))?;
            frames.extend_from_slice(&frame);
            ids.push(id);
        }
        let receivers = ids.iter().map(|&id| self.route(id)).collect();
        let forget = || {
            let mut routes = self.routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in &ids {
                routes.remove(id);
            }
        };
        if let Some(lost) = self.lost() {
            forget();
            return Err(lost);
        }
        if let Err(e) = self.send_frame(&frames).await {
            forget();
            return Err(self.lost().unwrap_or(format!("cannot send the requests: {e}")));
        }
        Ok(receivers)
    }

    async fn run(
        &self,
        command: String,
        check: Option<String>,
        env: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<(u64, Replies), String> {
        let timeout_ms = timeout.as_millis() as u64;
        self.start(|id| Request::Run { id, command, env, cwd: None, timeout_ms, check }).await
    }

    async fn done_of(&self, mut rx: Replies) -> Result<Done, String> {
        while let Some(reply) = rx.recv().await {
            if let Reply::Done { done, .. } = reply {
                return Ok(done);
            }
        }
        Err(self.lost().unwrap_or_else(|| "connection to the executor lost".to_string()))
    }

    async fn call(&self, make: impl FnOnce(u64) -> Request) -> Result<Done, String> {
        let (_, rx) = self.start(make).await?;
        self.done_of(rx).await
    }

    async fn put(
        &self,
        path: String,
        size: u64,
        sha3: String,
        attrs: Attrs,
        content: Content<'_>,
    ) -> Result<Done, String> {
        let copy_from = match &content {
            Content::CopyOf(p) => Some(p.clone()),
            _ => None,
        };
        let pieces = packed(&sha3, size, &content).await;
        let packed = pieces.is_some();
        let (id, mut rx) = self.start(|id| Request::Put { id, path, size, sha3, attrs, copy_from, packed }).await?;
        if let Some(pieces) = pieces {
            for piece in pieces.iter() {
                // The node may give up early (no such directory): stop sending then.
                if let Ok(Reply::Done { done, .. }) = rx.try_recv() {
                    return Ok(done);
                }
                self.send_frame(&encode_data(id, piece)).await?;
            }
            return self.done_of(rx).await;
        }
        match content {
            Content::CopyOf(_) => {}
            Content::Bytes(bytes) => {
                for chunk in bytes.chunks(DATA_CHUNK) {
                    self.send_frame(&encode_data(id, chunk)).await?;
                }
            }
            Content::File(local) => {
                let mut file =
                    tokio::fs::File::open(local).await.map_err(|e| format!("cannot read {}: {e}", local.display()))?;
                // Each chunk is read straight after its frame's header: one buffer, no
                // larger than the file (a thousand nodes receive a small file at once).
                let mut frame = vec![0u8; DATA_HEADER + (size as usize).min(DATA_CHUNK)];
                let mut sent = 0u64;
                while sent < size {
                    // The node may give up early (no such directory): stop sending then.
                    if let Ok(Reply::Done { done, .. }) = rx.try_recv() {
                        return Ok(done);
                    }
                    let want = ((size - sent) as usize).min(DATA_CHUNK);
                    let n = file
                        .read(&mut frame[DATA_HEADER..DATA_HEADER + want])
                        .await
                        .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
                    if n == 0 {
                        return Err(format!("{} shrank while it was being sent", local.display()));
                    }
                    frame[..DATA_HEADER].copy_from_slice(&data_header(id, n));
                    self.send_frame(&frame[..DATA_HEADER + n]).await?;
                    sent += n as u64;
                }
            }
        }
        self.done_of(rx).await
    }

    async fn compact(&self, text: String) -> Result<Done, String> {
        let text = text.into_bytes();
        let size = text.len() as u64;
        // Packed when it packs well (a QUERY's map of many nodes does): fewer bytes through
        // the cipher on both ends.
        let pieces = (size >= PACK_MIN).then(|| pack_pieces(&text)).flatten();
        let packed = pieces.is_some();
        let (id, rx) = self.start(|id| Request::Compact { id, size, packed }).await?;
        let frames: Vec<&[u8]> = match &pieces {
            Some(pieces) => pieces.iter().map(Vec::as_slice).collect(),
            None => text.chunks(DATA_CHUNK).collect(),
        };
        for frame in frames {
            self.send_frame(&encode_data(id, frame)).await?;
        }
        // Not held while the node writes and syncs it (a thousand nodes may fold at once).
        drop((text, pieces));
        self.done_of(rx).await
    }

    fn drained(&self) -> Option<String> {
        self.drained.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn drain(&self, why: String) {
        self.drained.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(why);
    }

    async fn cancel(&self, id: u64) {
        let _ = self.send(&Request::Cancel { id }).await;
    }

    async fn shutdown(&self) {
        let _ = self.send(&Request::Shutdown).await;
        let _ = self.writer.lock().await.shutdown().await;
    }

    fn lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

async fn dispatch(
    mut incoming: crate::transport::Feed,
    mut buf: Vec<u8>,
    mut stderr: Vec<u8>,
    routes: Routes,
    lost: Arc<Mutex<Option<String>>>,
    drained: Arc<Mutex<Option<String>>>,
) {
    let reason = 'outer: loop {
        loop {
            match decode::<Reply>(&buf) {
                Ok(Some((reply, used))) => {
                    buf.drain(..used);
                    let (id, last) = match &reply {
                        Reply::Output { id, .. } | Reply::Unheld { id, .. } => (*id, false),
                        Reply::Finished { id, .. } | Reply::Done { id, .. } => (*id, true),
                        Reply::Drain { from } => {
                            drained
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .get_or_insert(format!("omitted: queue sentinel from {from}"));
                            continue;
                        }
                        Reply::Error { message } => {
                            break 'outer format!("the executor reported a protocol error: {message}")
                        }
                        Reply::Hello { .. } => continue,
                    };
                    let tx = {
                        let mut map = routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if last {
                            map.remove(&id)
                        } else {
                            map.get(&id).cloned()
                        }
                    };
                    if let Some(tx) = tx {
                        // A reader that went away is not waited for.
                        let _ = tx.send(Box::new(reply)).await;
                    }
                }
                Ok(None) => break,
                Err(e) => break 'outer format!("unreadable reply from the executor: {e}"),
            }
        }
        // What a large reply (the node cache, a long output) grew the buffer to is given back
        // once it is read, while the link waits: kept, it was tens of KB a node for the run.
        // (Not while a frame is half read: that would copy it again at every piece.)
        if buf.len() < READ_KEPT && buf.capacity() > READ_KEPT {
            buf.shrink_to(READ_KEPT);
        }
        match incoming.recv().await {
            Incoming::Data(d) => buf.extend_from_slice(&d),
            Incoming::Stderr(e) => {
                stderr.extend_from_slice(&e);
                if stderr.len() > 64 * 1024 {
                    stderr.drain(..stderr.len() - 16 * 1024);
                }
            }
            Incoming::Closed(status) => {
                let tail = stderr_tail(&stderr);
                break format!(
                    "connection to the executor lost (exit {}){}",
                    status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
                    if tail.is_empty() { String::new() } else { format!(": {tail}") }
                );
            }
        }
    };
    *lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    routes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests sent together: one that cannot be encoded (over the frame limit) sends none
    /// and leaves no route behind, not even those of the requests before it.
    #[tokio::test]
    async fn requests_that_cannot_all_be_sent_leave_no_route() {
        let pipe = Pipe {
            writer: tokio::sync::Mutex::new(Box::new(tokio::io::sink())),
            routes: Routes::default(),
            next_id: AtomicU64::new(1),
            lost: Arc::default(),
            drained: Arc::default(),
            _guard: None,
        };
        let huge = "x".repeat(director_proto::MAX_FRAME);
        let makes: Vec<Box<dyn FnOnce(u64) -> Request>> = vec![
            Box::new(|id| Request::Stat { id, path: "/etc/hostname".into(), text_limit: 0 }),
            Box::new(move |id| Request::Stat { id, path: huge, text_limit: 0 }),
        ];
        let refused = pipe.start_all(makes).await.err().expect("refused");
        assert!(refused.starts_with("the request cannot be sent: "), "{refused}");
        assert!(pipe.routes.lock().unwrap().is_empty());
        let sent = pipe.start_all(vec![|id| Request::Stat { id, path: "/".into(), text_limit: 0 }]).await;
        assert_eq!(sent.map(|replies| replies.len()), Ok(1));
        assert_eq!(pipe.routes.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn content_goes_packed_once_when_it_packs_well() {
        let text: Vec<u8> = (0..40_000).flat_map(|i| format!("payload line {i}\n").into_bytes()).collect();
        let size = text.len() as u64;
        let pieces = packed("text", size, &Content::Bytes(&text)).await.expect("packed");
        assert_eq!(pieces.len(), text.len().div_ceil(DATA_CHUNK));
        let mut whole = Vec::new();
        for piece in pieces.iter() {
            let mut into = Vec::new();
            director_proto::unpack(piece, &mut into).unwrap();
            whole.extend(into);
        }
        assert_eq!(whole, text);
        // The next node gets the same frames, not a second packing.
        let again = packed("text", size, &Content::Bytes(&text)).await.expect("packed");
        assert!(Arc::ptr_eq(&pieces, &again));
        // From a file, the same.
        let file = std::env::temp_dir().join(format!("director-pack-{}", std::process::id()));
        std::fs::write(&file, &text[..300_000]).unwrap();
        let from_file = packed("text file", 300_000, &Content::File(&file)).await;
        let _ = std::fs::remove_file(&file);
        assert_eq!(from_file.expect("packed").len(), 3);
    }

    #[tokio::test]
    async fn content_that_does_not_pack_well_or_is_small_goes_as_it_is() {
        let noise = crate::node::noise(50_000);
        assert!(packed("noise", noise.len() as u64, &Content::Bytes(&noise)).await.is_none());
        let small = vec![b'a'; PACK_MIN as usize - 1];
        assert!(packed("small", small.len() as u64, &Content::Bytes(&small)).await.is_none());
        let copy = Content::CopyOf("/elsewhere".into());
        assert!(packed("any", 100_000, &copy).await.is_none());
        // A file that is not the size planned (changed since): as it is, which says so.
        let file = std::env::temp_dir().join(format!("director-pack-short-{}", std::process::id()));
        std::fs::write(&file, vec![b'b'; 10_000]).unwrap();
        let changed = packed("changed", 20_000, &Content::File(&file)).await;
        let _ = std::fs::remove_file(&file);
        assert!(changed.is_none());
    }
}
