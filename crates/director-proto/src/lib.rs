//! The wire protocol between the director operator and its executor.
//!
//! This crate owns the frame format and every message that crosses the one SSH exec channel
//! (or the local child's pipes) between operator and executor. Both sides link it, so a change
//! here is a change to both; bump [`PROTOCOL_VERSION`] whenever a message changes shape.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON. The executor
//! speaks first with [`Reply::Hello`]; then the operator sends [`Request`]s and the executor
//! answers each job with any number of [`Reply::Output`] and exactly one [`Reply::Finished`]
//! (a short job's output and end come in one write). Jobs are identified by an
//! operator-chosen `id`, so several may be in flight on one channel.
//!
//! Besides jobs, the executor does the few file operations the verbs need (make a directory,
//! hash a file, read a file, write a file atomically, append to the node cache's journal),
//! each answered by one [`Reply::Done`]. File content travels in raw data frames ([`encode_data`]): the length
//! word has its top bit set and the body is the 8-byte transfer id followed by the bytes, so a
//! file is streamed without JSON or base64 and never held whole on either side.
//!
//! Decoding follows the three steps of a streaming parser: is a whole frame there
//! ([`decode`] returns `Ok(None)` when not), parse it, and tell the caller how many bytes to
//! advance. An incomplete frame is never an error.

use serde::{Deserialize, Serialize};

pub mod journal;

/// Version of this protocol. The executor announces it in [`Reply::Hello`]; the operator
/// refuses (and re-installs) an executor that speaks another one.
pub const PROTOCOL_VERSION: u32 = 9;

/// Largest frame either side accepts. Output is sent in chunks far below this.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Largest node cache: 64 MiB, about 140,000 job records. It follows [`Reply::Hello`] in
/// data frames of [`DATA_CHUNK`] bytes, so no frame comes near [`MAX_FRAME`] however large it
/// is; the bound keeps a runaway cache (large captures kept run after run) from costing every
/// run on that node its memory and time. The operator refuses to grow one past it; the
/// executor sets a larger one aside instead of greeting with it.
pub const MAX_CACHE: usize = 64 * 1024 * 1024;

/// Size of the output chunks the executor reads from a job's pipes.
pub const OUTPUT_CHUNK: usize = 16 * 1024;

/// Size of the data frames a file is sent in.
pub const DATA_CHUNK: usize = 128 * 1024;

/// A piece of a file (at most [`DATA_CHUNK`] bytes) as a packed data frame carries it: its
/// length (u32, little endian), then an LZ4 block of it.
pub fn pack(piece: &[u8]) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(piece)
}

/// The piece a packed data frame carries, decoded into `into` (which it replaces); an error
/// for a frame that does not decode, or decodes to more than [`DATA_CHUNK`] bytes.
pub fn unpack(frame: &[u8], into: &mut Vec<u8>) -> Result<(), &'static str> {
    const BAD: &str = "a packed data frame does not decode";
    let (len, block) = frame.split_first_chunk::<4>().ok_or(BAD)?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > DATA_CHUNK {
        return Err(BAD);
    }
    into.resize(len, 0);
    match lz4_flex::block::decompress_into(block, into) {
        Ok(n) if n == len => Ok(()),
        _ => Err(BAD),
    }
}

/// Journal lines as a packed [`Request::AppendCache`] carries them: in pieces of at most
/// [`DATA_CHUNK`] bytes, each [`pack`]ed and preceded by its packed length (u32, little
/// endian), all in hex (a JSON string that needs no escaping).
pub fn pack_text(text: &str) -> String {
    let mut bytes = Vec::new();
    for piece in text.as_bytes().chunks(DATA_CHUNK) {
        let packed = pack(piece);
        bytes.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&packed);
    }
    hex(&bytes)
}

/// The text [`pack_text`] packed; an error for anything else.
pub fn unpack_text(packed: &str) -> Result<String, &'static str> {
    const BAD: &str = "packed journal lines do not decode";
    let bytes = unhex(packed).ok_or(BAD)?;
    let (mut rest, mut text, mut piece) = (&bytes[..], Vec::new(), Vec::new());
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let block = tail.get(..len).ok_or(BAD)?;
        unpack(block, &mut piece).map_err(|_| BAD)?;
        text.extend_from_slice(&piece);
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return Err(BAD);
    }
    String::from_utf8(text).map_err(|_| BAD)
}

/// Top bit of a frame's length word: the frame is raw file data, not JSON.
const DATA_FLAG: u32 = 0x8000_0000;

/// Ownership and mode to give a file or directory; names or numeric ids, resolved on the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// What the operator asks of the executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Request {
    /// Run `command` with `/bin/sh -c` in a new process group.
    Run {
        id: u64,
        command: String,
        /// Variables set on top of the executor's own environment.
        #[serde(default)]
        env: Vec<(String, String)>,
        /// Working directory; the executor's own when absent.
        #[serde(default)]
        cwd: Option<String>,
        /// The whole process group is killed when this runs out.
        timeout_ms: u64,
        /// A command run first, in the same way: when it exits 0 what `command` would do
        /// already holds, and the job finishes [`Outcome::Held`] without running it;
        /// otherwise [`Reply::Unheld`] says what it printed and `command` runs. This is how a
        /// verb checks the node's state in the same frame as its work.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check: Option<String>,
    },
    /// Kill the process group of job `id`; it finishes as [`Outcome::Cancelled`].
    Cancel { id: u64 },
    /// Create `path` and its parents, then apply `attrs` (also when it already existed).
    Mkdir { id: u64, path: String, attrs: Attrs },
    /// sha3-224 of a regular file: [`Done::Hash`], `None` when there is no such file.
    Hash { id: u64, path: String },
    /// A text file's content (at most [`MAX_FRAME`] / 2 bytes): [`Done::Text`].
    Read { id: u64, path: String },
    /// What is at `path` (not following a final symbolic link): [`Done::Stat`], `None` when
    /// nothing is. A regular file's text comes along when it is at most `text_limit` bytes
    /// of UTF-8 without NUL bytes.
    Stat { id: u64, path: String, text_limit: u64 },
    /// Write `path` atomically: a temp file beside it receives `size` bytes (data frames with
    /// this id, or a local copy of `copy_from`), is checked against `sha3` (sha3-224), gets
    /// `attrs`, is fsynced and renamed over `path`. Answered once all bytes arrived. With
    /// `packed`, each data frame is a [`pack`]ed piece of at most [`DATA_CHUNK`] bytes.
    Put {
        id: u64,
        path: String,
        size: u64,
        sha3: String,
        attrs: Attrs,
        copy_from: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        packed: bool,
    },
    /// Append `lines` ([`journal::Change`] lines, at most [`journal::APPEND_CHUNK`] bytes) to
    /// the node cache's journal before answering (synced to disk when the session ends). With
    /// `more`, they are a piece of a larger batch (cut anywhere, even inside a line): kept,
    /// answered at once, and appended with the piece that ends the batch, in one write.
    AppendCache {
        id: u64,
        lines: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
        /// The batch's text (its pieces joined) is [`pack_text`]ed: the node decodes it
        /// before it appends.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        packed: bool,
    },
    /// Replace the node cache's base with `size` bytes of data frames (with `packed`, each
    /// a [`pack`]ed piece), the base and journal this executor greeted with folded into one
    /// by the operator, and start the journal again: durably (written beside, fsynced,
    /// renamed) and only if neither changed since the greeting (another run appended or
    /// folded meanwhile: [`Done::Failed`], and nothing changes). It is queued behind the
    /// appends asked before it.
    Compact {
        id: u64,
        size: u64,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        packed: bool,
    },
    /// Ask every other executor of this user on the node to drain its queues (QUEUESENTINEL):
    /// [`Done::Text`] tells how many were told.
    Sentinel { id: u64, from: String },
    /// The node's facts, gathered by the executor (and `facter --json` where facter is
    /// installed, with these directories): [`Done::Text`], a JSON object.
    Facter { id: u64, custom_dir: Option<String>, external_dir: Option<String> },
    /// Kill whatever still runs and exit.
    Shutdown,
}

/// Which pipe an output chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a job ended on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    TimedOut,
    Cancelled,
    SpawnFailed {
        message: String,
    },
    /// The job's check passed: its command did not run.
    Held,
}

/// Facts the executor reports about its node when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Facts {
    pub arch: String,
    pub kernel: String,
    pub hostname: String,
    /// `PRETTY_NAME` from /etc/os-release, when there is one.
    pub os: String,
    /// The package manager the node has, the first of apt-get, dnf, yum, zypper and apk
    /// found (empty: none).
    #[serde(default)]
    pub packager: String,
}

/// The answer to a file operation. The stat is boxed: inline, it made every [`Reply`] (and
/// every slot of the operator's reply queues) 160 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Done {
    Ok,
    Hash { sha3: Option<String> },
    Text { data: String },
    Stat { stat: Option<Box<FileStat>> },
    Failed { message: String },
}

/// What [`Request::Stat`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    /// `file`, `dir`, `link` or `other`.
    pub kind: String,
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Names from /etc/passwd and /etc/group, when they have one.
    pub owner: Option<String>,
    pub group: Option<String>,
    /// sha3-224 of a regular file's bytes.
    pub sha3: Option<String>,
    /// A regular file's text (see [`Request::Stat`]).
    pub text: Option<String>,
}

/// What the executor sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        version: u32,
        pid: u32,
        /// Boxed, as [`Done::Stat`]'s stat: a [`Reply`] is as large as its largest variant.
        facts: Box<Facts>,
        /// The size of the node cache's base file, if there is one: its text follows at
        /// once, in data frames of transfer 0 ([`encode_data`], [`decode_data`]).
        cache_bytes: Option<u64>,
        /// The size of the journal lines to replay onto the base (its header left out, see
        /// [`journal`]), 0 when there are none: they follow the base's text in the same data
        /// frames. The operator replays them; the executor does not parse the cache.
        #[serde(default, skip_serializing_if = "is_zero")]
        journal_bytes: u64,
        /// The size of a cache file larger than [`MAX_CACHE`], which was set aside (renamed
        /// `cache.json.too-large`) instead of sent; 0 when none was. (Sizes that may be none
        /// are 0 instead, so a [`Reply`] stays small.)
        #[serde(default, skip_serializing_if = "is_zero")]
        cache_set_aside: u64,
        /// The node's clock, seconds since the epoch: cache expiry is judged by it.
        now: u64,
    },
    Output {
        id: u64,
        stream: Stream,
        data: String,
    },
    /// The job's check failed (it printed `why`): its command runs now.
    Unheld {
        id: u64,
        why: String,
    },
    Finished {
        id: u64,
        outcome: Outcome,
        /// Wall time of the job on the node, in milliseconds.
        ms: u64,
    },
    /// The end of a file operation.
    Done {
        id: u64,
        done: Done,
    },
    /// Another run on this node sent a QUEUESENTINEL: drop every job not yet started.
    Drain {
        from: String,
    },
    /// A request the executor could not understand.
    Error {
        message: String,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why a frame could not be decoded.
#[derive(Debug)]
pub enum FrameError {
    TooLarge(usize),
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the {MAX_FRAME}-byte limit"),
            FrameError::Malformed(m) => write!(f, "malformed frame: {m}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes one message as a whole frame; a message larger than [`MAX_FRAME`], which the
/// other side would refuse, is an error here instead.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    // The body is written after room for its length: one buffer, not a body and its copy.
    let mut frame = vec![0u8; 4];
    serde_json::to_writer(&mut frame, message).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = frame.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(frame)
}

/// Encodes one raw data frame of transfer `id`.
pub fn encode_data(id: u64, bytes: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(DATA_HEADER + bytes.len());
    frame.extend_from_slice(&data_header(id, bytes.len()));
    frame.extend_from_slice(bytes);
    frame
}

/// The bytes a data frame of transfer `id` starts with, before its `n` bytes: a sender can
/// read a chunk straight into a buffer after them, and send that buffer as the frame.
pub fn data_header(id: u64, n: usize) -> [u8; DATA_HEADER] {
    let len = 8 + n;
    assert!(len <= MAX_FRAME, "data chunks are far below the frame limit");
    let mut header = [0u8; DATA_HEADER];
    header[..4].copy_from_slice(&(len as u32 | DATA_FLAG).to_be_bytes());
    header[4..].copy_from_slice(&id.to_be_bytes());
    header
}

/// The length of [`data_header`].
pub const DATA_HEADER: usize = 12;

/// A frame from the operator: a request, or a chunk of a file.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    Request(Request),
    Data { id: u64, bytes: Vec<u8> },
}

/// Decodes the first frame from the operator, like [`decode`] but also raw data frames.
pub fn decode_inbound(buf: &[u8]) -> Result<Option<(Inbound, usize)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let word = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if word & DATA_FLAG == 0 {
        return Ok(decode::<Request>(buf)?.map(|(r, used)| (Inbound::Request(r), used)));
    }
    Ok(decode_data(buf)?.map(|d| (Inbound::Data { id: d.id, bytes: d.bytes.to_vec() }, d.used)))
}

/// One raw data frame, decoded in place.
#[derive(Debug, PartialEq, Eq)]
pub struct DataFrame<'a> {
    /// The transfer it belongs to.
    pub id: u64,
    pub bytes: &'a [u8],
    /// How many bytes of the buffer the whole frame took.
    pub used: usize,
}

/// Decodes the first frame in `buf`, which must be a raw data frame: `Ok(None)` if it is not
/// all there yet.
pub fn decode_data(buf: &[u8]) -> Result<Option<DataFrame<'_>>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let word = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if word & DATA_FLAG == 0 {
        return Err(FrameError::Malformed("a message where a data frame was expected".into()));
    }
    let len = (word & !DATA_FLAG) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if len < 8 {
        return Err(FrameError::Malformed("data frame without a transfer id".into()));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let id = u64::from_be_bytes(buf[4..12].try_into().expect("8 bytes"));
    Ok(Some(DataFrame { id, bytes: &buf[12..4 + len], used: 4 + len }))
}

/// Decodes the first frame in `buf`: `Ok(None)` if it is not all there yet, otherwise the
/// message and the number of bytes it took.
pub fn decode<T: for<'de> Deserialize<'de>>(buf: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let message = serde_json::from_slice(&buf[4..4 + len]).map_err(|e| FrameError::Malformed(e.to_string()))?;
    Ok(Some((message, 4 + len)))
}

/// `bytes` as lowercase hex: how hashes are written, on both ends.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The bytes `text` writes in hex ([`hex`]); `None` if it is not whole hex pairs.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| text.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

/// Splits `bytes` into the longest valid UTF-8 prefix and a tail of at most three bytes that
/// may be the start of a character cut by a chunk boundary. Invalid bytes in the prefix are
/// replaced, so output is always text.
pub fn split_utf8(bytes: &[u8]) -> (String, &[u8]) {
    let mut cut = bytes.len();
    // A multi-byte character is at most 4 bytes: look back at most 3 for an unfinished lead.
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0b1100_0000 == 0b1100_0000 {
            let need = if b >= 0xF0 {
                4
            } else if b >= 0xE0 {
                3
            } else {
                2
            };
            if need > back {
                cut = bytes.len() - back;
            }
            break;
        }
        if b & 0b1000_0000 == 0 {
            break;
        }
    }
    (String::from_utf8_lossy(&bytes[..cut]).into_owned(), &bytes[cut..])
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_goes_both_ways_and_half_pairs_are_not_hex() {
        assert_eq!(hex(&[0, 0xab, 0x7f]), "00ab7f");
        assert_eq!(unhex("00ab7f"), Some(vec![0, 0xab, 0x7f]));
        assert_eq!(unhex("00AB"), Some(vec![0, 0xab]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(""), Some(Vec::new()));
    }

    use super::*;

    /// The operator keeps a reply queue per request in flight on every node, each with a
    /// first block of 32 slots the size of a [`Reply`]: a variant that grows past this (a
    /// stat, the facts) goes behind a `Box`.
    #[test]
    fn a_reply_and_a_done_stay_small() {
        assert!(std::mem::size_of::<Reply>() <= 56, "Reply is {} bytes", std::mem::size_of::<Reply>());
        assert!(std::mem::size_of::<Done>() <= 40, "Done is {} bytes", std::mem::size_of::<Done>());
    }

    #[test]
    fn a_packed_piece_unpacks_to_itself_and_a_bad_one_is_refused() {
        let piece: Vec<u8> = (0..DATA_CHUNK).map(|i| (i % 251) as u8).collect();
        let frame = pack(&piece);
        assert!(frame.len() < piece.len() / 8);
        let mut into = vec![7u8; 3];
        unpack(&frame, &mut into).unwrap();
        assert_eq!(into, piece);
        let bad = "a packed data frame does not decode";
        assert_eq!(unpack(&frame[..frame.len() - 1], &mut into), Err(bad));
        assert_eq!(unpack(&frame[..3], &mut into), Err(bad));
        // A length past a data chunk is not decoded (nor allocated).
        let mut long = frame.clone();
        long[..4].copy_from_slice(&(DATA_CHUNK as u32 + 1).to_le_bytes());
        assert_eq!(unpack(&long, &mut into), Err(bad));
        // A length that is not what the block decodes to.
        let mut short = frame;
        short[..4].copy_from_slice(&(DATA_CHUNK as u32 - 1).to_le_bytes());
        assert_eq!(unpack(&short, &mut into), Err(bad));
    }

    #[test]
    fn packed_journal_lines_unpack_to_themselves_and_anything_else_is_refused() {
        let text: String = (0..20_000).map(|i| format!("{{\"s\":\"args\",\"k\":\"h{i}\",\"v\":\"é\"}}\n")).collect();
        assert!(text.len() > 2 * DATA_CHUNK);
        let packed = pack_text(&text);
        assert!(packed.len() < text.len() / 2, "{} of {}", packed.len(), text.len());
        assert!(packed.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(unpack_text(&packed).unwrap(), text);
        assert_eq!(unpack_text(&pack_text("")).unwrap(), "");
        let bad = Err("packed journal lines do not decode");
        assert_eq!(unpack_text(&packed[..packed.len() - 2]), bad);
        assert_eq!(unpack_text("zz"), bad);
        assert_eq!(unpack_text(&format!("{packed}00")), bad);
        // Bytes that are not UTF-8 once decoded.
        assert_eq!(
            unpack_text(&hex(&{
                let p = pack(&[0xff, 0xfe]);
                [(p.len() as u32).to_le_bytes().to_vec(), p].concat()
            })),
            bad
        );
    }

    #[test]
    fn a_put_is_packed_only_when_it_says_so() {
        let put = |packed| Request::Put {
            id: 1,
            path: "/x".into(),
            size: 2,
            sha3: "s".into(),
            attrs: Attrs::default(),
            copy_from: None,
            packed,
        };
        let plain = String::from_utf8(encode(&put(false)).unwrap()).unwrap();
        assert!(!plain.contains("packed"), "{plain}");
        let packed = encode(&put(true)).unwrap();
        assert!(String::from_utf8_lossy(&packed).contains(r#""packed":true"#));
        match decode::<Request>(&encode(&put(false)).unwrap()).unwrap() {
            Some((Request::Put { packed, .. }, _)) => assert!(!packed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_round_trip_and_wait_for_more_bytes() {
        let req =
            Request::Run { id: 7, command: "echo hi".into(), env: vec![], cwd: None, timeout_ms: 1000, check: None };
        let frame = encode(&req).unwrap();
        assert!(decode::<Request>(&frame[..3]).unwrap().is_none());
        assert!(decode::<Request>(&frame[..frame.len() - 1]).unwrap().is_none());
        let mut two = frame.clone();
        two.extend_from_slice(&encode(&Request::Shutdown).unwrap());
        let (first, used) = decode::<Request>(&two).unwrap().unwrap();
        assert_eq!(first, req);
        let (second, _) = decode::<Request>(&two[used..]).unwrap().unwrap();
        assert_eq!(second, Request::Shutdown);
    }

    #[test]
    fn data_frames_interleave_with_requests() {
        let mut buf = encode(&Request::Hash { id: 1, path: "/x".into() }).unwrap();
        buf.extend_from_slice(&encode_data(9, b"\x00\xffbytes"));
        buf.extend_from_slice(&encode(&Request::Shutdown).unwrap());
        let (a, n1) = decode_inbound(&buf).unwrap().unwrap();
        assert_eq!(a, Inbound::Request(Request::Hash { id: 1, path: "/x".into() }));
        assert!(decode_inbound(&buf[n1..n1 + 12]).unwrap().is_none());
        let (b, n2) = decode_inbound(&buf[n1..]).unwrap().unwrap();
        assert_eq!(b, Inbound::Data { id: 9, bytes: b"\x00\xffbytes".to_vec() });
        let (c, _) = decode_inbound(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!(c, Inbound::Request(Request::Shutdown));
    }

    #[test]
    fn a_greeting_is_followed_by_the_cache_in_data_frames() {
        let mut buf = encode(&Reply::Done { id: 1, done: Done::Ok }).unwrap();
        let n1 = buf.len();
        buf.extend_from_slice(&encode_data(0, b"{\"v\":1}"));
        // A message where data was expected is an error, not data.
        assert!(matches!(decode_data(&buf), Err(FrameError::Malformed(_))));
        assert!(decode_data(&buf[n1..buf.len() - 1]).unwrap().is_none());
        let frame = decode_data(&buf[n1..]).unwrap().unwrap();
        assert_eq!(frame, DataFrame { id: 0, bytes: b"{\"v\":1}", used: buf.len() - n1 });
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        let mut big = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        big.extend_from_slice(b"{}");
        assert!(matches!(decode::<Request>(&big), Err(FrameError::TooLarge(_))));
        let mut junk = 3u32.to_be_bytes().to_vec();
        junk.extend_from_slice(b"{x}");
        assert!(matches!(decode::<Request>(&junk), Err(FrameError::Malformed(_))));
        // What decode would refuse, encode refuses to write.
        let huge = Request::AppendCache { id: 1, lines: "x".repeat(MAX_FRAME), more: false, packed: false };
        assert!(matches!(encode(&huge), Err(FrameError::TooLarge(n)) if n > MAX_FRAME));
        // Journal pieces of the largest size, even all quotes (escaped twice as long), fit.
        let fits = Request::AppendCache { id: 1, lines: "\"".repeat(journal::APPEND_CHUNK), more: true, packed: false };
        assert!(encode(&fits).is_ok());
    }

    #[test]
    fn utf8_split_keeps_cut_characters_for_the_next_chunk() {
        let text = "né€😀".as_bytes();
        for cut in 0..=text.len() {
            let (head, tail) = split_utf8(&text[..cut]);
            let mut joined = head.into_bytes();
            joined.extend_from_slice(tail);
            assert_eq!(joined, &text[..cut]);
        }
        let (head, tail) = split_utf8(&text[..text.len() - 1]);
        assert_eq!(head, "né€");
        assert_eq!(tail.len(), 3);
    }
}
