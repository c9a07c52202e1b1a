//! One running job on the node: spawn, stream its pipes, enforce its timeout, report its end.
//!
//! Every job gets its own process group (the shell is the leader), so a timeout or a cancel
//! kills everything the command started, not only the shell. A job with a check runs the
//! check first, the same way, and runs its command only when the check fails.

use crate::Outbox;
use director_proto::{split_utf8, Outcome, Reply, Stream, OUTPUT_CHUNK};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the pipes may stay open after the shell exits (a backgrounded child holding
/// them) before the job is reported finished anyway.
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// Where the shell finds the command.
const COMMAND_VAR: &str = "DIRECTOR_COMMAND";
/// The shell's own script: take the command out of the environment, then run it.
const RUN_FROM_ENV: &str = r#"c=$DIRECTOR_COMMAND; unset DIRECTOR_COMMAND; eval "$c""#;

struct Running {
    pgid: i32,
    cancelled: Arc<AtomicBool>,
}

/// How much of a failed check's output is kept to say why.
const WHY_LIMIT: usize = 1024;

/// The jobs this executor is running, by operator-chosen id.
#[derive(Default, Clone)]
pub struct Jobs(Arc<Mutex<HashMap<u64, Running>>>);

fn kill_group(pgid: i32) {
    // A job whose process is not started yet has no group: never kill(0), our own group.
    if pgid <= 0 {
        return;
    }
    // SAFETY: plain syscall; a negative pid addresses the whole process group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

impl Jobs {
    pub fn start(
        &self,
        outbox: Outbox,
        id: u64,
        command: String,
        env: Vec<(String, String)>,
        cwd: Option<String>,
        timeout_ms: u64,
    ) {
        let started = Instant::now();
        // A job that was checked first keeps the entry of its check, so a cancel between the
        // two is not lost.
        let cancelled =
            self.lock().get(&id).map(|r| r.cancelled.clone()).unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
        if cancelled.load(Ordering::SeqCst) {
            self.lock().remove(&id);
            outbox.send(&Reply::Finished { id, outcome: Outcome::Cancelled, ms: 0 });
            return;
        }
        // The command reaches the shell through its environment, not its argv: the rendered
        // text (which may hold a secret from a template) never shows in `ps` on the node. The
        // shell takes it into an unexported variable before anything else runs.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(RUN_FROM_ENV)
            .env(COMMAND_VAR, &command)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.envs(env);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                self.lock().remove(&id);
                outbox.send(&Reply::Finished { id, outcome: Outcome::SpawnFailed { message: e.to_string() }, ms: 0 });
                return;
            }
        };
        let pgid = child.id() as i32;
        self.lock().insert(id, Running { pgid, cancelled: cancelled.clone() });
        // A cancel that came while it started found no group to kill.
        if cancelled.load(Ordering::SeqCst) {
            kill_group(pgid);
        }
        outbox.send(&Reply::Started { id, pid: child.id() });

        let finished = Arc::new(AtomicBool::new(false));
        let (pipes_tx, pipes_rx) = mpsc::channel::<()>();
        for (pipe, stream) in [
            (child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>), Stream::Stdout),
            (child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>), Stream::Stderr),
        ] {
            let Some(pipe) = pipe else { continue };
            let (outbox, finished, done) = (outbox.clone(), finished.clone(), pipes_tx.clone());
            crate::pool::spawn(move || {
                pump(pipe, stream, id, &outbox, &finished);
                let _ = done.send(());
            });
        }
        drop(pipes_tx);

        let jobs = self.clone();
        crate::pool::spawn(move || {
            let (exit_tx, exit_rx) = mpsc::channel();
            crate::pool::spawn(move || {
                let _ = exit_tx.send(child.wait());
            });
            let mut timed_out = false;
            let status = match exit_rx.recv_timeout(Duration::from_millis(timeout_ms)) {
                Ok(status) => status,
                Err(_) => {
                    timed_out = true;
                    kill_group(pgid);
                    exit_rx.recv().unwrap_or_else(|_| Err(std::io::Error::other("waiter lost")))
                }
            };
            jobs.lock().remove(&id);
            if timed_out || cancelled.load(Ordering::SeqCst) {
                // The group was killed: its pipes close at once.
                kill_group(pgid);
            }
            let deadline = Instant::now() + PIPE_GRACE;
            for _ in 0..2 {
                let left = deadline.saturating_duration_since(Instant::now());
                if pipes_rx.recv_timeout(left).is_err() {
                    break;
                }
            }
            finished.store(true, Ordering::SeqCst);
            let outcome = if cancelled.load(Ordering::SeqCst) {
                Outcome::Cancelled
            } else if timed_out {
                Outcome::TimedOut
            } else {
                match status {
                    Ok(s) => match (s.code(), s.signal()) {
                        (Some(code), _) => Outcome::Exited { code },
                        (None, Some(signal)) => Outcome::Signaled { signal },
                        _ => Outcome::Exited { code: -1 },
                    },
                    Err(e) => Outcome::SpawnFailed { message: e.to_string() },
                }
            };
            outbox.send(&Reply::Finished { id, outcome, ms: started.elapsed().as_millis() as u64 });
        });
    }

    /// Runs `check` (its output kept, not streamed); when it exits 0 the job is
    /// [`Outcome::Held`], otherwise [`Reply::Unheld`] tells its output and `command` runs.
    /// Both share the job's timeout; a cancel stops either.
    #[allow(clippy::too_many_arguments)]
    pub fn start_checked(
        &self,
        outbox: Outbox,
        id: u64,
        check: String,
        command: String,
        env: Vec<(String, String)>,
        cwd: Option<String>,
        timeout_ms: u64,
    ) {
        // The entry is there before the next request is read, so a cancel that follows finds it.
        let cancelled = Arc::new(AtomicBool::new(false));
        self.lock().insert(id, Running { pgid: 0, cancelled: cancelled.clone() });
        let jobs = self.clone();
        crate::pool::spawn(move || {
            let started = Instant::now();
            let finished = |outcome| {
                jobs.lock().remove(&id);
                Reply::Finished { id, outcome, ms: started.elapsed().as_millis() as u64 }
            };
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(RUN_FROM_ENV)
                .env(COMMAND_VAR, &check)
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.envs(env.clone());
            if let Some(dir) = &cwd {
                cmd.current_dir(dir);
            }
            let child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => return outbox.send(&finished(Outcome::SpawnFailed { message: e.to_string() })),
            };
            let pgid = child.id() as i32;
            if let Some(running) = jobs.lock().get_mut(&id) {
                running.pgid = pgid;
            }
            if cancelled.load(Ordering::SeqCst) {
                kill_group(pgid);
            }
            // A watchdog kills the check's group when the job's time runs out.
            let (done_tx, done_rx) = mpsc::channel::<()>();
            let timed_out = Arc::new(AtomicBool::new(false));
            let (decided_tx, decided) = mpsc::channel::<()>();
            {
                let timed_out = timed_out.clone();
                crate::pool::spawn(move || {
                    if let Err(mpsc::RecvTimeoutError::Timeout) =
                        done_rx.recv_timeout(Duration::from_millis(timeout_ms))
                    {
                        timed_out.store(true, Ordering::SeqCst);
                        kill_group(pgid);
                    }
                    drop(decided_tx);
                })
            };
            let output = child.wait_with_output();
            drop(done_tx);
            // The watchdog has decided (timed out or not) once it lets go of its end.
            let _ = decided.recv();
            if cancelled.load(Ordering::SeqCst) {
                return outbox.send(&finished(Outcome::Cancelled));
            }
            if timed_out.load(Ordering::SeqCst) {
                return outbox.send(&finished(Outcome::TimedOut));
            }
            let output = match output {
                Ok(o) => o,
                Err(e) => return outbox.send(&finished(Outcome::SpawnFailed { message: e.to_string() })),
            };
            if output.status.success() {
                return outbox.send(&finished(Outcome::Held));
            }
            let mut why = String::from_utf8_lossy(&output.stdout).into_owned();
            why.push_str(&String::from_utf8_lossy(&output.stderr));
            let mut why = why.trim().to_string();
            if why.len() > WHY_LIMIT {
                let mut cut = WHY_LIMIT;
                while !why.is_char_boundary(cut) {
                    cut -= 1;
                }
                why.truncate(cut);
            }
            outbox.send(&Reply::Unheld { id, why });
            let left = timeout_ms.saturating_sub(started.elapsed().as_millis() as u64).max(1);
            jobs.start(outbox, id, command, env, cwd, left);
        });
    }

    pub fn cancel(&self, id: u64) {
        if let Some(job) = self.lock().get(&id) {
            job.cancelled.store(true, Ordering::SeqCst);
            kill_group(job.pgid);
        }
    }

    pub fn kill_all(&self) {
        for job in self.lock().values() {
            kill_group(job.pgid);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Running>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Streams one pipe to the operator until it closes, keeping a character cut by a chunk
/// boundary for the next chunk. Output after the job was reported finished is dropped.
fn pump(mut pipe: Box<dyn Read + Send>, stream: Stream, id: u64, outbox: &Outbox, finished: &AtomicBool) {
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        let (text, tail) = split_utf8(&carry);
        let tail = tail.to_vec();
        if !text.is_empty() && !finished.load(Ordering::SeqCst) {
            outbox.send(&Reply::Output { id, stream, data: text });
        }
        carry = tail;
    }
    if !carry.is_empty() && !finished.load(Ordering::SeqCst) {
        outbox.send(&Reply::Output { id, stream, data: String::from_utf8_lossy(&carry).into_owned() });
    }
}
