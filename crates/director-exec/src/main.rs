//! director-exec: the tiny static executor the operator uploads to each node.
//!
//! It owns the node side of one run: it reads [`Request`] frames on stdin, runs each job as
//! `/bin/sh -c` in its own process group, streams the job's output back as [`Reply`] frames on
//! stdout, and kills a job's whole process group on timeout or cancel. When stdin closes (the
//! operator went away, the SSH connection dropped) it kills every job still running and exits,
//! so nothing is left behind on the node. It uses plain threads, not an async runtime, to stay
//! small: a job is a waiter thread, two pipe readers and a timer.
//!
//! `director-exec verify SHA3` hashes the executor's own file and exits 0 only if it matches:
//! the operator uses it to check an upload before renaming it into place.

mod job;

use director_proto::{decode, encode, Facts, Reply, Request, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// Where every frame to the operator goes; one lock per whole frame keeps frames intact.
#[derive(Clone)]
pub struct Outbox(Arc<Mutex<std::io::Stdout>>);

impl Outbox {
    pub fn send(&self, reply: &Reply) {
        let frame = encode(reply);
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A closed stdout means the operator is gone; stdin will close too and end the loop.
        let _ = out.write_all(&frame).and_then(|_| out.flush());
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

fn serve() {
    let outbox = Outbox(Arc::new(Mutex::new(std::io::stdout())));
    let jobs = job::Jobs::default();
    outbox.send(&Reply::Hello { version: PROTOCOL_VERSION, pid: std::process::id(), facts: facts() });

    let mut stdin = std::io::stdin().lock();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = [0u8; 64 * 1024];
    'read: loop {
        let n = match stdin.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match decode::<Request>(&buf) {
                Ok(None) => break,
                Ok(Some((request, used))) => {
                    buf.drain(..used);
                    match request {
                        Request::Run { id, command, env, cwd, timeout_ms } => {
                            jobs.start(outbox.clone(), id, command, env, cwd, timeout_ms)
                        }
                        Request::Cancel { id } => jobs.cancel(id),
                        Request::Shutdown => break 'read,
                    }
                }
                Err(e) => {
                    outbox.send(&Reply::Error { message: e.to_string() });
                    break 'read;
                }
            }
        }
    }
    jobs.kill_all();
}

fn facts() -> Facts {
    // SAFETY: uname fills the zeroed struct we own; the fields are NUL-terminated C strings.
    let (kernel, hostname) = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            let s = |f: &[libc::c_char]| {
                std::ffi::CStr::from_ptr(f.as_ptr()).to_string_lossy().into_owned()
            };
            (s(&u.release), s(&u.nodename))
        } else {
            (String::new(), String::new())
        }
    };
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_default();
    Facts { arch: std::env::consts::ARCH.to_string(), kernel, hostname, os }
}
