//! One thread that ends the jobs whose time ran out: it kills their process groups.
//!
//! A job [`arm`]s it with its group and deadline and holds the returned [`Armed`] until its
//! process is known to have exited (before it is reaped, so a group number the system has
//! given to someone else is never killed). The thread sleeps until the nearest deadline, at
//! most [`IDLE_WAKE`]; arming wakes it only for a deadline nearer than that, so a run of
//! short jobs under the usual long timeouts never wakes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The longest the thread sleeps without a deadline before it.
const IDLE_WAKE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Watch {
    /// Process groups by deadline (and a number, so two equal deadlines both stay).
    deadlines: BTreeMap<(Instant, u64), (i32, Arc<AtomicBool>)>,
    /// When the thread wakes next, while it sleeps; none before it started.
    wake_at: Option<Instant>,
    next: u64,
}

static WATCH: Mutex<Option<Watch>> = Mutex::new(None);
static WAKE: Condvar = Condvar::new();

/// Kills process group `pgid` (a job's shell and everything it started).
pub fn kill_group(pgid: i32) {
    // A job whose process is not started yet has no group: never kill(0), our own group.
    if pgid <= 0 {
        return;
    }
    // SAFETY: plain syscall; a negative pid addresses the whole process group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn lock() -> MutexGuard<'static, Option<Watch>> {
    WATCH.lock().unwrap_or_else(|p| p.into_inner())
}

/// A deadline being watched; dropping it stops the watch.
pub struct Armed {
    key: (Instant, u64),
    fired: Arc<AtomicBool>,
}

impl Armed {
    /// Whether the deadline passed and the group was killed.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        if let Some(watch) = lock().as_mut() {
            watch.deadlines.remove(&self.key);
        }
    }
}

/// Kills process group `pgid` at `at`, unless the returned guard is dropped first.
pub fn arm(pgid: i32, at: Instant) -> Armed {
    let fired = Arc::new(AtomicBool::new(false));
    let mut guard = lock();
    let watch = guard.get_or_insert_with(|| {
        std::thread::spawn(watch);
        Watch::default()
    });
    watch.next += 1;
    let key = (at, watch.next);
    watch.deadlines.insert(key, (pgid, fired.clone()));
    if watch.wake_at.is_none_or(|w| at < w) {
        WAKE.notify_one();
    }
    Armed { key, fired }
}

fn watch() {
    let mut guard = lock();
    loop {
        let now = Instant::now();
        let watch = guard.as_mut().expect("set before the thread starts");
        while let Some(entry) = watch.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (pgid, fired) = entry.remove();
            fired.store(true, Ordering::SeqCst);
            kill_group(pgid);
        }
        let wake_at = watch.deadlines.keys().next().map_or(now + IDLE_WAKE, |k| k.0.min(now + IDLE_WAKE));
        watch.wake_at = Some(wake_at);
        guard = WAKE.wait_timeout(guard, wake_at.saturating_duration_since(now)).unwrap_or_else(|p| p.into_inner()).0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn group_of(cmd: &str) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        Command::new("/bin/sh").args(["-c", cmd]).process_group(0).spawn().unwrap()
    }

    #[test]
    fn a_deadline_kills_its_group_and_a_dropped_one_does_not() {
        let mut late = group_of("sleep 5");
        let armed = arm(late.id() as i32, Instant::now() + Duration::from_millis(100));
        let mut kept = group_of("sleep 1");
        let dropped = arm(kept.id() as i32, Instant::now() + Duration::from_millis(100));
        drop(dropped);
        // Killed (a `sleep 5` left alone exits 0), and told.
        assert!(!late.wait().unwrap().success());
        assert!(armed.fired());
        assert!(kept.wait().unwrap().success());
    }
}
