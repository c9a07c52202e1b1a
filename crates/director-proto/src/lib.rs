//! The wire protocol between the director operator and its executor.
//!
//! This crate owns the frame format and every message that crosses the one SSH exec channel
//! (or the local child's pipes) between operator and executor. Both sides link it, so a change
//! here is a change to both; bump [`PROTOCOL_VERSION`] whenever a message changes shape.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON. The executor
//! speaks first with [`Reply::Hello`]; then the operator sends [`Request`]s and the executor
//! answers each job with [`Reply::Started`], any number of [`Reply::Output`], and exactly one
//! [`Reply::Finished`]. Jobs are identified by an operator-chosen `id`, so several may be in
//! flight on one channel.
//!
//! Decoding follows the three steps of a streaming parser: is a whole frame there
//! ([`decode`] returns `Ok(None)` when not), parse it, and tell the caller how many bytes to
//! advance. An incomplete frame is never an error.

use serde::{Deserialize, Serialize};

/// Version of this protocol. The executor announces it in [`Reply::Hello`]; the operator
/// refuses (and re-installs) an executor that speaks another one.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts. Output is sent in chunks far below this.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Size of the output chunks the executor reads from a job's pipes.
pub const OUTPUT_CHUNK: usize = 16 * 1024;

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
    },
    /// Kill the process group of job `id`; it finishes as [`Outcome::Cancelled`].
    Cancel { id: u64 },
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
    Exited { code: i32 },
    Signaled { signal: i32 },
    TimedOut,
    Cancelled,
    SpawnFailed { message: String },
}

/// Facts the executor reports about its node when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Facts {
    pub arch: String,
    pub kernel: String,
    pub hostname: String,
    /// `PRETTY_NAME` from /etc/os-release, when there is one.
    pub os: String,
}

/// What the executor sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Reply {
    Hello {
        version: u32,
        pid: u32,
        facts: Facts,
    },
    Started {
        id: u64,
        pid: u32,
    },
    Output {
        id: u64,
        stream: Stream,
        data: String,
    },
    Finished {
        id: u64,
        outcome: Outcome,
        /// Wall time of the job on the node, in milliseconds.
        ms: u64,
    },
    /// A request the executor could not understand.
    Error {
        message: String,
    },
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

/// Encodes one message as a whole frame.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let body = serde_json::to_vec(message).expect("protocol messages always serialize");
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
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

/// Splits `bytes` into the longest valid UTF-8 prefix and a tail of at most three bytes that
/// may be the start of a character cut by a chunk boundary. Invalid bytes in the prefix are
/// replaced, so output is always text.
pub fn split_utf8(bytes: &[u8]) -> (String, &[u8]) {
    let mut cut = bytes.len();
    // A multi-byte character is at most 4 bytes: look back at most 3 for an unfinished lead.
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0b1100_0000 == 0b1100_0000 {
            let need = if b >= 0xF0 { 4 } else if b >= 0xE0 { 3 } else { 2 };
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
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_more_bytes() {
        let req = Request::Run { id: 7, command: "echo hi".into(), env: vec![], cwd: None, timeout_ms: 1000 };
        let frame = encode(&req);
        assert!(decode::<Request>(&frame[..3]).unwrap().is_none());
        assert!(decode::<Request>(&frame[..frame.len() - 1]).unwrap().is_none());
        let mut two = frame.clone();
        two.extend_from_slice(&encode(&Request::Shutdown));
        let (first, used) = decode::<Request>(&two).unwrap().unwrap();
        assert_eq!(first, req);
        let (second, _) = decode::<Request>(&two[used..]).unwrap().unwrap();
        assert_eq!(second, Request::Shutdown);
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        let mut big = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        big.extend_from_slice(b"{}");
        assert!(matches!(decode::<Request>(&big), Err(FrameError::TooLarge(_))));
        let mut junk = 3u32.to_be_bytes().to_vec();
        junk.extend_from_slice(b"{x}");
        assert!(matches!(decode::<Request>(&junk), Err(FrameError::Malformed(_))));
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
