//! The node cache as the executor keeps it, driven over its own protocol: it greets with the
//! base and the journal's lines as they are on disk (it parses neither); a compaction the
//! operator sends replaces both, and is refused when another executor changed the journal
//! since this one greeted; a journal no operator folded, past the size sent as it is, is
//! folded by the executor itself.

mod common;

use common::Executor;
use director_proto::journal::{Header, COMPACT_AT};
use director_proto::{decode_data, encode_data, Done, Reply, Request};
use std::path::{Path, PathBuf};

/// What an executor greeted with: the base's text and the journal's lines, as sent.
#[derive(Debug, PartialEq)]
struct Greeting {
    base: Option<String>,
    journal: Option<String>,
}

/// An executor serving in `home`, and what it greeted with.
fn start(home: &Path) -> (Executor, Greeting) {
    let mut e = Executor::spawn(home);
    let Reply::Hello { cache_bytes, journal_bytes, .. } = e.next() else { panic!("no greeting") };
    let (base, journal) = (cache_bytes.unwrap_or(0) as usize, journal_bytes as usize);
    let mut text = Vec::new();
    while text.len() < base + journal {
        match decode_data(&e.buf).unwrap() {
            Some(frame) => {
                text.extend_from_slice(frame.bytes);
                let used = frame.used;
                e.buf.drain(..used);
            }
            None => e.read_more(),
        }
    }
    assert_eq!(text.len(), base + journal);
    let lines = String::from_utf8(text.split_off(base)).unwrap();
    let text = String::from_utf8(text).unwrap();
    (e, Greeting { base: cache_bytes.map(|_| text), journal: (journal_bytes > 0).then_some(lines) })
}

fn call(e: &mut Executor, request: &Request) -> Done {
    e.send(request);
    match e.next() {
        Reply::Done { done, .. } => done,
        other => panic!("unexpected {other:?}"),
    }
}

fn append(e: &mut Executor, lines: &str) -> Done {
    call(e, &Request::AppendCache { id: 1, lines: lines.into(), more: false, packed: false })
}

/// Sends `base` as the new base, in two data frames, unpacked or packed.
fn compact(e: &mut Executor, base: &str, packed: bool) -> Done {
    let size = base.len() as u64;
    e.send(&Request::Compact { id: 2, size, packed });
    let (a, b) = base.split_at(base.len() / 2);
    for piece in [a, b] {
        let piece = if packed { director_proto::pack(piece.as_bytes()) } else { piece.as_bytes().to_vec() };
        e.send_frame(&encode_data(2, &piece));
    }
    match e.next() {
        Reply::Done { id: 2, done } => done,
        other => panic!("unexpected {other:?}"),
    }
}

fn scratch(tag: &str) -> PathBuf {
    let home = std::env::temp_dir().join(format!("director-exec-cache-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    home
}

fn line(n: usize) -> String {
    format!("{{\"s\":\"jobs\",\"k\":\"f{n}\",\"v\":{{\"at\":{n},\"verb\":\"RUN\"}}}}\n")
}

fn state(home: &Path) -> (Option<String>, String) {
    let dir = home.join(".cache/director");
    (std::fs::read_to_string(dir.join("cache.json")).ok(), std::fs::read_to_string(dir.join("cache.journal")).unwrap())
}

/// The header a journal starts with once its base is `home`'s current one.
fn header(home: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let base = home.join(".cache/director/cache.json");
    let name = match std::fs::metadata(base) {
        Ok(m) => format!("{}-{}.{}-{}", m.len(), m.mtime(), m.mtime_nsec(), m.ino()),
        Err(_) => "none".into(),
    };
    Header { base: name }.line()
}

#[test]
fn the_greeting_carries_base_and_journal_as_they_are_and_a_compaction_replaces_them() {
    let home = scratch("greet");
    let (mut e, greeting) = start(&home);
    assert_eq!(greeting, Greeting { base: None, journal: None });
    let lines: String = (0..3).map(line).collect();
    assert_eq!(append(&mut e, &lines), Done::Ok);
    e.stop();
    // The lines come back as they were written, the header left out, with no base.
    let (mut e, greeting) = start(&home);
    assert_eq!(greeting, Greeting { base: None, journal: Some(lines.clone()) });
    // A base folded by the operator (any text: the executor does not read it), packed.
    let folded = format!("{{\"v\":1,\"jobs\":{{{}}}}}", "\"f\":{\"at\":1,\"verb\":\"RUN\"},".repeat(400) + "\"g\":{}");
    assert_eq!(compact(&mut e, &folded, true), Done::Ok);
    let (base, journal) = state(&home);
    assert_eq!(base.as_deref(), Some(folded.as_str()));
    assert_eq!(journal, header(&home));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.join(".cache/director/cache.json")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // What is appended after it goes to the new journal.
    assert_eq!(append(&mut e, &line(9)), Done::Ok);
    e.stop();
    let (e, greeting) = start(&home);
    assert_eq!(greeting, Greeting { base: Some(folded.clone()), journal: Some(line(9)) });
    e.stop();
    // Unpacked, too.
    let (mut e, _) = start(&home);
    assert_eq!(compact(&mut e, "{\"v\":1}", false), Done::Ok);
    e.stop();
    let (e, greeting) = start(&home);
    assert_eq!(greeting, Greeting { base: Some("{\"v\":1}".into()), journal: None });
    e.stop();
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_compaction_is_refused_once_another_executor_changed_the_cache() {
    let home = scratch("refuse");
    let (mut e, _) = start(&home);
    assert_eq!(append(&mut e, &line(1)), Done::Ok);
    e.stop();
    // Two executors greet with the same journal; one appends, then the other's operator
    // sends the cache it folded, which lacks that line.
    let (mut a, greeted) = start(&home);
    let (mut b, same) = start(&home);
    assert_eq!(greeted, same);
    assert_eq!(append(&mut b, &line(2)), Done::Ok);
    let before = state(&home);
    let Done::Failed { message } = compact(&mut a, "{\"v\":1}", false) else { panic!("the compaction was made") };
    assert_eq!(message, "the node cache changed since this executor read it: it is not rewritten");
    assert_eq!(state(&home), before);
    b.stop();
    // Nor when another folded it first (the base is another, its journal started again).
    let (mut c, _) = start(&home);
    let (mut d, _) = start(&home);
    assert_eq!(compact(&mut c, "{\"v\":1}", false), Done::Ok);
    let Done::Failed { message } = compact(&mut d, "{\"v\":2}", false) else { panic!("the compaction was made") };
    assert_eq!(message, "the node cache changed since this executor read it: it is not rewritten");
    assert_eq!(state(&home).0.as_deref(), Some("{\"v\":1}"));
    // No temp file is left behind by either.
    let left: Vec<_> = std::fs::read_dir(home.join(".cache/director"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    a.stop();
    c.stop();
    d.stop();
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_journal_past_what_is_sent_as_it_is_is_folded_by_the_executor() {
    let home = scratch("fold");
    let (mut e, _) = start(&home);
    let lines: String = (0..COMPACT_AT / 40).map(line).collect();
    assert!(lines.len() > COMPACT_AT);
    assert_eq!(append(&mut e, &lines), Done::Ok);
    e.stop();
    let (e, greeting) = start(&home);
    assert_eq!(greeting.journal, None);
    let base: serde_json::Value = serde_json::from_str(greeting.base.as_deref().unwrap()).unwrap();
    assert_eq!(base["jobs"].as_object().unwrap().len(), COMPACT_AT / 40);
    assert_eq!(base["jobs"]["f7"], serde_json::json!({"at": 7, "verb": "RUN"}));
    e.stop();
    let (base, journal) = state(&home);
    assert_eq!(base, greeting.base);
    assert_eq!(journal, header(&home));
    let _ = std::fs::remove_dir_all(&home);
}
