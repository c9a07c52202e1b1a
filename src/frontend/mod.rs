//! Frontends: the consumers of the engine's events that a person or a script sees.
//!
//! `--json` writes every event as one JSON line on stdout ([`json`]); otherwise [`text`] prints
//! one line per finished job (with the output tail of failures) and a summary, and on a
//! terminal keeps a live status line of what is in flight. Only frontends print. A closed
//! stdout (a pipe whose reader went away) silences the frontend; it never stops the run.

pub mod json;
pub mod manage;
pub mod text;

use crate::event::Event;
use std::time::Instant;

pub enum Frontend {
    Json(json::JsonLines),
    Text(text::TextView),
}

impl Frontend {
    pub fn handle(&mut self, event: &Event) {
        match self {
            Frontend::Json(j) => j.handle(event),
            Frontend::Text(t) => t.handle(event),
        }
    }

    /// Called on a timer so live views can show elapsed times.
    pub fn tick(&mut self, now: Instant) {
        if let Frontend::Text(t) = self {
            t.tick(now)
        }
    }

    /// Says something to the person running the command (stderr), out of band of events.
    pub fn notice(&mut self, text: &str) {
        match self {
            Frontend::Json(_) => eprintln!("{text}"),
            Frontend::Text(t) => t.notice(text),
        }
    }
}
