//! `--json`: every event as one JSON object per line on stdout.
//!
//! Each line has `"v"` (the schema version, [`crate::event::SCHEMA_VERSION`]) and `"type"`;
//! the README documents every type and field, and `tests/e2e` parses every line it sees with
//! unknown fields denied. Human text never goes to stdout in this mode.

use crate::event::Event;
use std::io::Write;

pub(crate) struct JsonLines {
    out: Box<dyn Write + Send>,
    /// Lines not yet written: they go out together when the caller has caught up with the
    /// run's events ([`JsonLines::flush`]), one write per burst instead of one per event.
    held: String,
    closed: bool,
}

/// Most bytes held before they are written, caught up or not.
const HOLD_AT: usize = 64 * 1024;

impl JsonLines {
    pub(crate) fn new(out: Box<dyn Write + Send>) -> Self {
        JsonLines { out, held: String::new(), closed: false }
    }

    pub(crate) fn handle(&mut self, event: &Event) {
        if self.closed {
            return;
        }
        self.held.push_str(&event.to_json_line());
        if self.held.len() >= HOLD_AT {
            self.flush();
        }
    }

    /// Writes the lines held.
    pub(crate) fn flush(&mut self) {
        if self.closed || self.held.is_empty() {
            return;
        }
        // A reader that went away (EPIPE) is not an error of the run: stop writing.
        if self.out.write_all(self.held.as_bytes()).and_then(|_| self.out.flush()).is_err() {
            self.closed = true;
        }
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Stream};
    use std::sync::{Arc, Mutex};

    /// Records each write it is given, as one piece.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn output(n: usize) -> Event {
        Event::JobOutput { node: format!("web{n}"), job: 0, stream: Stream::Stdout, data: "hi\n".into() }
    }

    #[test]
    fn lines_go_out_together_when_flushed_and_in_order() {
        let writes = Writes::default();
        let mut json = JsonLines::new(Box::new(writes.clone()));
        for n in 0..3 {
            json.handle(&output(n));
        }
        assert!(writes.0.lock().unwrap().is_empty(), "nothing is written before the flush");
        json.flush();
        json.flush();
        let got = writes.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "one write for the three lines, none for an empty flush");
        let text = String::from_utf8(got[0].clone()).unwrap();
        let nodes: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["node"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(nodes, ["web0", "web1", "web2"]);
    }

    #[test]
    fn a_long_burst_is_written_before_it_is_over() {
        let writes = Writes::default();
        let mut json = JsonLines::new(Box::new(writes.clone()));
        let line = output(0).to_json_line().len();
        for _ in 0..(HOLD_AT / line + 1) {
            json.handle(&output(0));
        }
        assert_eq!(writes.0.lock().unwrap().len(), 1, "held lines go out at {HOLD_AT} bytes");
        assert!(json.held.is_empty());
    }
}
