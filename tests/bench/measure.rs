//! Running director as a user does and measuring it, shared by the scale and relay benches:
//! wall time, the operator's CPU (wait4) and its peak RSS (VmHWM, polled while it runs).

#![allow(dead_code)] // each bench uses what it needs

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one director process did.
pub(crate) struct Measured {
    pub wall: Duration,
    /// The operator's own CPU time (user + system).
    pub cpu: Duration,
    pub max_rss_kb: u64,
    pub stdout: String,
    /// The CPU time the whole machine spent meanwhile (every process: sshd, shells,
    /// executors, the operator; [`machine_cpu`]).
    pub machine_cpu: Duration,
}

/// The CPU time this machine has spent so far, all its CPUs and processes (user, nice, system,
/// interrupts; not idle, waiting for I/O, or stolen by the hypervisor: that is not work done
/// here, and it would count a busy host as ours), from `/proc/stat`, in its clock ticks
/// (10 ms). Around a workload on a CPU-bound fleet on this machine, the work it took, whoever
/// did it: a steadier figure than its time for changes of a few per cent.
pub(crate) fn machine_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .map(|l| {
            let v: Vec<u64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal
            [0, 1, 2, 5, 6].iter().filter_map(|&i| v.get(i)).sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// The peak resident memory of process `pid` so far (VmHWM), in KiB; `None` once it is gone
/// or a zombie.
pub(crate) fn vm_hwm_kb(pid: u32) -> Option<u64> {
    status_kb(&proc_status(pid)?, "VmHWM:")
}

/// Process `pid`'s `/proc/<pid>/status`; `None` once it is gone.
fn proc_status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// The field `name` (with its colon) of a process's status, in KiB.
fn status_kb(status: &str, name: &str) -> Option<u64> {
    let v = status.lines().find_map(|l| l.strip_prefix(name))?;
    v.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The CPU time (user + system) this process has used so far, all its threads: around an
/// in-process floor, what the bare client cost.
pub(crate) fn own_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs `cmd` to its end; its wall time, CPU time (from `wait4`) and peak RSS (its VmHWM,
/// polled while it runs).
pub(crate) fn measure(mut cmd: Command) -> Result<Measured, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
    let (started, machine) = (Instant::now(), machine_cpu());
    let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    let id = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let done = done.clone();
        std::thread::spawn(move || {
            // BENCH_RSS_PARTS=1: also what is resident at its highest, anonymous (heap,
            // stacks) and file-backed (code and data mapped from the binary and libraries).
            let split = std::env::var_os("BENCH_RSS_PARTS").is_some();
            let (mut peak, mut parts) = (0, (0, 0));
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let status = proc_status(id).unwrap_or_default();
                match status_kb(&status, "VmHWM:") {
                    Some(kb) => peak = peak.max(kb),
                    None if peak > 0 => break,
                    None => {}
                }
                if split {
                    if let (Some(anon), Some(file)) = (status_kb(&status, "RssAnon:"), status_kb(&status, "RssFile:")) {
                        if anon + file > parts.0 + parts.1 {
                            parts = (anon, file);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            if split {
                eprintln!("  [rss] at its highest: {} KiB anonymous, {} KiB file-backed", parts.0, parts.1);
            }
            peak
        })
    };
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let mut stdout = String::new();
    let _ = out.read_to_string(&mut stdout);
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, whose Child handle is never waited on again.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let (wall, machine_cpu) = (started.elapsed(), machine_cpu() - machine);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_rss_kb = poller.join().unwrap_or(0);
    let stderr = reader.join().unwrap_or_default();
    if pid < 0 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let status = std::process::ExitStatus::from_raw(status);
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        // What the run said went wrong: its first few unreachable nodes and failed jobs.
        let said: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains("\"node_unreachable\"") || l.contains("\"status\":\"failed\""))
            .take(3)
            .collect();
        return Err(format!(
            "exit {status}: {} {} | {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            said.join(" | "),
            summary(&stdout)
        ));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Ok(Measured { wall, cpu, max_rss_kb, stdout, machine_cpu })
}

/// The `run_finished` line of a `--json` run.
pub(crate) fn summary(stdout: &str) -> &str {
    stdout.lines().rev().find(|l| l.contains("\"run_finished\"")).unwrap_or("(no run_finished event)")
}

/// The value of the summary's count `key`.
pub(crate) fn count(stdout: &str, key: &str) -> Option<usize> {
    let line = summary(stdout);
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Checks that a run did `want` jobs with status `key`.
pub(crate) fn expect(m: &Measured, key: &str, want: usize) -> Result<(), String> {
    match count(&m.stdout, key) {
        Some(n) if n == want => Ok(()),
        _ => Err(format!("expected {key} = {want}: {}", summary(&m.stdout))),
    }
}

/// An ssh-agent (`ssh-agent -D`) at `dir/agent.sock` holding `key`, as a user's: the
/// process (to kill at the end) and its socket.
pub(crate) fn start_agent(dir: &Path, key: &Path) -> (std::process::Child, std::path::PathBuf) {
    let agent = dir.join("agent.sock");
    let process = Command::new("ssh-agent").arg("-D").arg("-a").arg(&agent).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let added = Command::new("ssh-add").arg("-q").arg(key).env("SSH_AUTH_SOCK", &agent).output().unwrap();
    assert!(added.status.success(), "ssh-add: {}", String::from_utf8_lossy(&added.stderr));
    (process, agent)
}

/// Removes a node cache (its base and its journal) from the state directory `dir`.
pub(crate) fn wipe_cache(dir: &Path) {
    for file in ["cache.json", "cache.journal"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
}

/// Raises this process's soft open-file limit to its hard limit.
pub(crate) fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// The bench process's allocator, counting the bytes live on its heap and their peak: the
/// memory floor is what bare russh holds live while it runs the deploy on every node at
/// once (the kernel's socket buffers and the binary itself are not counted).
pub(crate) struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, std::sync::atomic::Ordering::Relaxed) + size;
    PEAK.fetch_max(live, std::sync::atomic::Ordering::Relaxed);
}

/// Starts counting a new peak: returns the bytes live now.
pub(crate) fn heap_reset_peak() -> usize {
    let live = LIVE.load(std::sync::atomic::Ordering::Relaxed);
    PEAK.store(live, std::sync::atomic::Ordering::Relaxed);
    live
}

/// The most bytes live on the heap since [`heap_reset_peak`].
pub(crate) fn heap_peak() -> usize {
    PEAK.load(std::sync::atomic::Ordering::Relaxed)
}
