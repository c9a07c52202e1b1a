//! `--json`: every event as one JSON object per line on stdout.
//!
//! Each line has `"v"` (the schema version, [`crate::event::SCHEMA_VERSION`]) and `"type"`;
//! the README documents every type and field, and `tests/e2e` parses every line it sees with
//! unknown fields denied. Human text never goes to stdout in this mode.

use crate::event::Event;
use std::io::Write;

pub(crate) struct JsonLines {
    out: Box<dyn Write + Send>,
    closed: bool,
}

impl JsonLines {
    pub(crate) fn new(out: Box<dyn Write + Send>) -> Self {
        JsonLines { out, closed: false }
    }

    pub(crate) fn handle(&mut self, event: &Event) {
        if self.closed {
            return;
        }
        let line = event.to_json_line();
        // A reader that went away (EPIPE) is not an error of the run: stop writing.
        if self.out.write_all(line.as_bytes()).and_then(|_| self.out.flush()).is_err() {
            self.closed = true;
        }
    }
}
