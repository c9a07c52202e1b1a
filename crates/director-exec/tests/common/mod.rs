//! The executor as its tests drive it: the built binary serving on pipes, with its own home.

// Each test crate that includes this module uses part of it.
#![allow(dead_code)]

use director_proto::{decode, encode, Reply, Request};
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct Executor {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// What it wrote and was not read yet.
    pub buf: Vec<u8>,
}

impl Executor {
    /// Starts `director-exec serve` with `home` as its home; its greeting is not read yet.
    pub fn spawn(home: &std::path::Path) -> Executor {
        let mut child = Command::new(env!("CARGO_BIN_EXE_director-exec"))
            .arg("serve")
            .env("HOME", home)
            .env_remove("XDG_CACHE_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (stdin, stdout) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
        Executor { child, stdin, stdout, buf: Vec::new() }
    }

    /// Reads more of its output into `buf`.
    pub fn read_more(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stdout.read(&mut chunk).unwrap();
        assert!(n > 0, "the executor closed its output");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    pub fn send_frame(&mut self, frame: &[u8]) {
        self.stdin.write_all(frame).unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn send(&mut self, request: &Request) {
        self.send_frame(&encode(request).unwrap());
    }

    pub fn next(&mut self) -> Reply {
        loop {
            if let Some((reply, used)) = decode::<Reply>(&self.buf).unwrap() {
                self.buf.drain(..used);
                return reply;
            }
            self.read_more();
        }
    }

    /// Asks it to exit and waits until it has.
    pub fn stop(mut self) {
        self.send(&Request::Shutdown);
        let _ = self.child.wait();
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
