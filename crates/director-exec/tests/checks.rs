//! The executor's jobs, driven over its own protocol: a short job's output comes with its end,
//! a long one's output comes while it runs, a timeout ends the whole group, a background
//! process holding the pipes does not hold the job; a check that passes holds the job (its
//! command never runs), one that fails says why and lets the command run, and a cancel that
//! arrives while the check runs cancels the job (its command never runs).

mod common;

use common::Executor;
use director_proto::{Outcome, Reply, Request};
use std::time::Duration;

/// An executor serving in `home`, its greeting read.
fn start(home: &std::path::Path) -> Executor {
    let mut e = Executor::spawn(home);
    assert!(matches!(e.next(), Reply::Hello { .. }));
    e
}

/// The replies of job `id` up to its end.
fn until_finished(e: &mut Executor, id: u64) -> Vec<Reply> {
    let mut replies = Vec::new();
    loop {
        let reply = e.next();
        match &reply {
            Reply::Finished { id: i, .. } if *i == id => {
                replies.push(reply);
                return replies;
            }
            _ => replies.push(reply),
        }
    }
}

fn run(id: u64, check: &str, command: &str) -> Request {
    Request::Run {
        id,
        command: command.to_string(),
        env: Vec::new(),
        cwd: None,
        timeout_ms: 20_000,
        check: Some(check.to_string()),
    }
}

fn plain(id: u64, command: &str, timeout_ms: u64) -> Request {
    Request::Run { id, command: command.to_string(), env: Vec::new(), cwd: None, timeout_ms, check: None }
}

fn said(replies: &[Reply]) -> Vec<(director_proto::Stream, &str)> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::Output { stream, data, .. } => Some((*stream, data.as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn jobs_stream_their_output_end_on_time_and_are_not_held_by_a_background_process() {
    use director_proto::Stream::{Stderr, Stdout};
    let home = std::env::temp_dir().join(format!("director-exec-jobs-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let mut e = start(&home);
    // A short job: its output, in the order written (across the two pipes as far as reads
    // can tell: here a moment apart), then its end.
    e.send(&plain(1, "echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three", 20_000));
    let replies = until_finished(&mut e, 1);
    assert_eq!(said(&replies), [(Stdout, "one\n"), (Stderr, "two\n"), (Stdout, "three\n")]);
    assert_eq!(outcome(replies.last().unwrap()), &Outcome::Exited { code: 0 });
    // A long job's first output comes while it still runs.
    e.send(&plain(2, "echo early; sleep 1; echo late", 20_000));
    assert!(matches!(e.next(), Reply::Output { id: 2, data, .. } if data == "early\n"));
    let replies = until_finished(&mut e, 2);
    assert_eq!(said(&replies), [(Stdout, "late\n")]);
    // A timeout kills the whole group, the shell's children too.
    e.send(&plain(3, "sleep 30 & sleep 30; echo never", 300));
    let replies = until_finished(&mut e, 3);
    assert_eq!((said(&replies), outcome(replies.last().unwrap())), (vec![], &Outcome::TimedOut));
    // A background process that keeps the pipes open does not keep the job from ending.
    e.send(&plain(4, "sleep 3 & echo started", 20_000));
    let replies = until_finished(&mut e, 4);
    assert_eq!(
        (said(&replies), outcome(replies.last().unwrap())),
        (vec![(Stdout, "started\n")], &Outcome::Exited { code: 0 })
    );
    // A character cut between two reads arrives whole.
    e.send(&plain(5, "printf '\\303'; sleep 0.1; printf '\\251\\n'", 20_000));
    let text: String = said(&until_finished(&mut e, 5)).into_iter().map(|(_, t)| t).collect();
    assert_eq!(text, "é\n");
    let _ = std::fs::remove_dir_all(&home);
}

fn outcome(reply: &Reply) -> &Outcome {
    match reply {
        Reply::Finished { outcome, .. } => outcome,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_check_holds_a_job_or_lets_it_run_and_a_cancel_during_it_is_kept() {
    let home = std::env::temp_dir().join(format!("director-exec-checks-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let marker = |name: &str| home.join(name);
    let mut e = start(&home);

    e.send(&run(1, "true", &format!("touch {}", marker("held").display())));
    let replies = until_finished(&mut e, 1);
    assert_eq!(outcome(&replies[0]), &Outcome::Held);
    assert!(!marker("held").exists(), "a held job's command does not run");

    e.send(&run(2, "echo 'nginx.service is inactive'; exit 3", &format!("touch {}", marker("ran").display())));
    let replies = until_finished(&mut e, 2);
    assert!(matches!(&replies[0], Reply::Unheld { id: 2, why } if why == "nginx.service is inactive"), "{replies:?}");
    assert_eq!(outcome(replies.last().unwrap()), &Outcome::Exited { code: 0 });
    assert!(marker("ran").exists());

    e.send(&run(3, "sleep 10", &format!("touch {}", marker("cancelled").display())));
    std::thread::sleep(Duration::from_millis(200));
    e.send(&Request::Cancel { id: 3 });
    let replies = until_finished(&mut e, 3);
    assert_eq!(outcome(replies.last().unwrap()), &Outcome::Cancelled);
    // Cancelled right after it was asked (no race with a later start): the check was killed.
    e.send(&run(4, "sleep 10", "true"));
    e.send(&Request::Cancel { id: 4 });
    assert_eq!(outcome(until_finished(&mut e, 4).last().unwrap()), &Outcome::Cancelled);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker("cancelled").exists(), "a job cancelled during its check never runs its command");
    let _ = std::fs::remove_dir_all(&home);
}
