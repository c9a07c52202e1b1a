//! Threads kept for the next job: [`spawn`] hands work to an idle thread, or starts one.
//!
//! Every RUN, check, local copy and fact gathering needs a thread; starting and ending one per
//! job costs the node a 2 MiB stack mapped, guarded, unmapped and flushed from every core's
//! TLB, each time, which for a short job is more than its own shell. A thread that finishes
//! its work waits [`IDLE_FOR`] for more before it ends, so a run of short jobs reuses the
//! same few threads and an idle executor keeps none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::Duration;

type Work = Box<dyn FnOnce() + Send + 'static>;

/// How long a thread with nothing to do waits for more before it ends.
const IDLE_FOR: Duration = Duration::from_secs(10);

/// Threads waiting for work, each by its number and the way to hand it some.
static IDLE: Mutex<Vec<(u64, Sender<Work>)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Runs `work` on an idle thread, or on a new one when none is idle.
pub fn spawn(work: impl FnOnce() + Send + 'static) {
    let work: Work = Box::new(work);
    // A thread taken from the list is waiting for exactly this hand-over: it leaves the
    // list only under its lock, before it ends, so the send cannot fail.
    let taken = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
    match taken {
        Some((_, hand)) => hand.send(work).expect("a listed thread waits for its work"),
        None => {
            std::thread::spawn(move || serve(work));
        }
    }
}

fn serve(first: Work) {
    let me = NEXT.fetch_add(1, Ordering::Relaxed);
    let (hand, handed) = channel::<Work>();
    let mut work = first;
    loop {
        work();
        IDLE.lock().unwrap_or_else(|p| p.into_inner()).push((me, hand.clone()));
        work = match handed.recv_timeout(IDLE_FOR) {
            Ok(next) => next,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
                match idle.iter().position(|(id, _)| *id == me) {
                    Some(at) => {
                        idle.swap_remove(at);
                        return;
                    }
                    // Taken just now: its work is on the way.
                    None => {
                        drop(idle);
                        match handed.recv() {
                            Ok(next) => next,
                            Err(_) => return,
                        }
                    }
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn threads_are_reused_and_every_work_runs() {
        let (tx, rx) = mpsc::channel();
        for n in 0..200 {
            let tx = tx.clone();
            spawn(move || tx.send((n, std::thread::current().id())).unwrap());
            // Let the thread go idle before the next hand-over.
            while IDLE.lock().unwrap().is_empty() {
                std::thread::yield_now();
            }
        }
        drop(tx);
        let got: Vec<_> = rx.iter().collect();
        let mut numbers: Vec<_> = got.iter().map(|(n, _)| *n).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..200).collect::<Vec<_>>());
        let threads: std::collections::HashSet<_> = got.iter().map(|(_, t)| *t).collect();
        assert!(threads.len() < 20, "200 short works used {} threads", threads.len());
    }

    #[test]
    fn works_that_block_get_threads_of_their_own() {
        let (tx, rx) = mpsc::channel();
        let gate = std::sync::Arc::new(std::sync::Barrier::new(8));
        for _ in 0..8 {
            let (tx, gate) = (tx.clone(), gate.clone());
            // Each waits for all the others: they must run at the same time.
            spawn(move || {
                gate.wait();
                tx.send(()).unwrap();
            });
        }
        drop(tx);
        assert_eq!(rx.iter().count(), 8);
    }
}
