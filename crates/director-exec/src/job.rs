//! One running job on the node: spawn, stream its pipes, enforce its timeout, report its end.
//!
//! Every job gets its own process group (the shell is the leader), so a timeout or a cancel
//! kills everything the command started, not only the shell. A job with a check runs the
//! check first, the same way, and runs its command only when the check fails.

use crate::{watchdog, Outbox};
use director_proto::{split_utf8, Outcome, Reply, Stream, OUTPUT_CHUNK};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
            watchdog::kill_group(pgid);
        }
        let armed = watchdog::arm(pgid, started + Duration::from_millis(timeout_ms));
        let jobs = self.clone();
        crate::pool::spawn(move || {
            let mut output = Output::new(id, outbox);
            let status = supervise(&mut child, &mut output);
            // Exited (not reaped yet): no deadline and no cancel may reach its group now.
            let timed_out = armed.fired();
            drop(armed);
            jobs.lock().remove(&id);
            let status = status.and_then(|()| child.wait());
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
            output.finish(Reply::Finished { id, outcome, ms: started.elapsed().as_millis() as u64 });
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
                watchdog::kill_group(pgid);
            }
            // The job's time runs for the check too.
            let armed = watchdog::arm(pgid, started + Duration::from_millis(timeout_ms));
            let output = child.wait_with_output();
            let timed_out = armed.fired();
            drop(armed);
            if cancelled.load(Ordering::SeqCst) {
                return outbox.send(&finished(Outcome::Cancelled));
            }
            if timed_out {
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
            watchdog::kill_group(job.pgid);
        }
    }

    pub fn kill_all(&self) {
        for job in self.lock().values() {
            watchdog::kill_group(job.pgid);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Running>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long output waits for more before it is sent: the frames of a chatty job are
/// fewer, and a short job's output goes with its end, in one write.
const FLUSH_AFTER: Duration = Duration::from_millis(5);
/// How often a job whose pipes stay open is checked for having exited.
const EXIT_CHECK: Duration = Duration::from_millis(100);

/// A job's output on its way to the operator: what was read and not sent yet, in the order it
/// came (stdout and stderr interleaved as read), and a character cut by a read, per stream.
struct Output {
    id: u64,
    outbox: Outbox,
    unsent: Vec<Reply>,
    size: usize,
    since: Option<Instant>,
    carry: [Vec<u8>; 2],
}

impl Output {
    fn new(id: u64, outbox: Outbox) -> Output {
        Output { id, outbox, unsent: Vec::new(), size: 0, since: None, carry: [Vec::new(), Vec::new()] }
    }

    fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let carry = &mut self.carry[stream as usize];
        carry.extend_from_slice(bytes);
        let (text, tail) = split_utf8(carry);
        *carry = tail.to_vec();
        self.text(stream, text);
        if self.size >= OUTPUT_CHUNK {
            self.flush();
        }
    }

    fn text(&mut self, stream: Stream, text: String) {
        if text.is_empty() {
            return;
        }
        self.size += text.len();
        self.since.get_or_insert_with(Instant::now);
        match self.unsent.last_mut() {
            Some(Reply::Output { stream: last, data, .. }) if *last == stream => data.push_str(&text),
            _ => self.unsent.push(Reply::Output { id: self.id, stream, data: text }),
        }
    }

    /// When what is unsent must go, if anything is.
    fn due(&self) -> Option<Instant> {
        self.since.map(|t| t + FLUSH_AFTER)
    }

    fn flush(&mut self) {
        if !self.unsent.is_empty() {
            self.outbox.send_all(&self.unsent);
        }
        self.unsent.clear();
        self.size = 0;
        self.since = None;
    }

    /// Sends what is left, a cut character included, then `last`, in one write.
    fn finish(mut self, last: Reply) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let tail = std::mem::take(&mut self.carry[stream as usize]);
            self.text(stream, String::from_utf8_lossy(&tail).into_owned());
        }
        self.unsent.push(last);
        self.outbox.send_all(&self.unsent);
    }
}

/// Reads the job's pipes until both close, or until [`PIPE_GRACE`] after its shell exited
/// (a background process may hold them); returns once the shell has exited, not reaped.
fn supervise(child: &mut std::process::Child, output: &mut Output) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let mut pipes: Vec<(Box<dyn Read + Send>, i32, Stream)> = Vec::with_capacity(2);
    if let Some(p) = child.stdout.take() {
        let fd = p.as_raw_fd();
        pipes.push((Box::new(p), fd, Stream::Stdout));
    }
    if let Some(p) = child.stderr.take() {
        let fd = p.as_raw_fd();
        pipes.push((Box::new(p), fd, Stream::Stderr));
    }
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    let mut exited_at: Option<Instant> = None;
    let mut next_check = Instant::now() + EXIT_CHECK;
    while !pipes.is_empty() {
        let now = Instant::now();
        if let Some(at) = exited_at {
            if now >= at + PIPE_GRACE {
                break;
            }
        } else if now >= next_check {
            if exited(child)? {
                exited_at = Some(now);
            }
            next_check = now + EXIT_CHECK;
        }
        if output.due().is_some_and(|t| t <= now) {
            output.flush();
        }
        let mut until = exited_at.map_or(next_check, |at| at + PIPE_GRACE);
        if let Some(due) = output.due() {
            until = until.min(due);
        }
        let mut fds: Vec<libc::pollfd> =
            pipes.iter().map(|(_, fd, _)| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }).collect();
        let wait = until.saturating_duration_since(now).as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: poll over descriptors this function owns, for at most `wait` ms.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // Stdout first when both have something: what order they were written in is not
        // known across two pipes, only within each.
        let mut closed = [false; 2];
        for (k, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let (pipe, _, stream) = &mut pipes[k];
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => closed[k] = true,
                Ok(n) => output.push(*stream, &buf[..n]),
            }
        }
        for k in (0..pipes.len()).rev() {
            if closed[k] {
                pipes.remove(k);
            }
        }
    }
    if exited_at.is_none() {
        wait_exit(child)?;
    }
    Ok(())
}

/// Whether the shell has exited, without reaping it.
fn exited(child: &std::process::Child) -> std::io::Result<bool> {
    wait_id(child, libc::WNOHANG)
}

/// Waits until the shell has exited, without reaping it.
fn wait_exit(child: &std::process::Child) -> std::io::Result<()> {
    wait_id(child, 0).map(|_| ())
}

fn wait_id(child: &std::process::Child, flags: i32) -> std::io::Result<bool> {
    loop {
        // SAFETY: waitid on our own child, into a zeroed siginfo this function owns; WNOWAIT
        // leaves it to be reaped by `Child::wait`.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::waitid(libc::P_PID, child.id(), &mut info, libc::WEXITED | libc::WNOWAIT | flags) };
        if r == 0 {
            // SAFETY: si_pid is set by waitid when a child changed state, zero otherwise.
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
