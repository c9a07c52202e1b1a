//! Frontends: the consumers of the engine's events that a person or a script sees.
//!
//! `--json` writes every event as one JSON line on stdout ([`json`]); on a terminal, [`live`]
//! keeps progress and the jobs in flight in a few lines at the bottom; otherwise [`text`]
//! prints one line per finished job (with the output tail of failures) and a summary. [`tui`]
//! is the full-screen app (`director tui`); [`board`] is the run state the live views share;
//! [`manage`] prints the history. Only frontends print. A closed stdout (a pipe whose reader
//! went away) silences the frontend; it never stops the run.

pub mod board;
pub mod json;
pub mod live;
pub mod manage;
pub mod text;
pub mod tui;

use crate::config::Output;
use crate::event::Event;
use ratatui::backend::CrosstermBackend;
use std::time::Instant;

pub enum Frontend {
    Json(json::JsonLines),
    Text(text::TextView),
    Live(Box<live::LiveView<CrosstermBackend<std::io::Stdout>>>),
}

impl Frontend {
    /// The frontend for `output`; `totals` is each node's job count, for the live view. When
    /// the live view cannot take the terminal, plain lines are used and `fallback` says why.
    pub fn new(output: Output, totals: &[(String, usize)]) -> (Frontend, Option<String>) {
        match output {
            Output::Json => (Frontend::Json(json::JsonLines::new(Box::new(std::io::stdout()))), None),
            Output::Text(text::Mode::Live) => {
                match live::LiveView::new(CrosstermBackend::new(std::io::stdout()), totals) {
                    Ok(view) => (Frontend::Live(Box::new(view)), None),
                    Err(e) => (
                        Frontend::Text(text::TextView::new(text::Mode::Plain, Box::new(std::io::stdout()))),
                        Some(format!("cannot show the live view ({e}): printing plain lines")),
                    ),
                }
            }
            Output::Text(mode) => (Frontend::Text(text::TextView::new(mode, Box::new(std::io::stdout()))), None),
        }
    }

    pub fn handle(&mut self, event: &Event) {
        match self {
            Frontend::Json(j) => j.handle(event),
            Frontend::Text(t) => t.handle(event),
            Frontend::Live(l) => l.handle(event, Instant::now()),
        }
    }

    /// Called on a timer so live views can show elapsed times.
    pub fn tick(&mut self, now: Instant) {
        if let Frontend::Live(l) = self {
            l.tick(now)
        }
    }

    /// Says something to the person running the command, out of band of events.
    pub fn notice(&mut self, text: &str) {
        match self {
            Frontend::Json(_) => eprintln!("{text}"),
            Frontend::Text(t) => t.notice(text),
            Frontend::Live(l) => l.notice(text),
        }
    }

    /// The run is over: a live view leaves the screen tidy.
    pub fn finish(&mut self) {
        if let Frontend::Live(l) = self {
            l.finish()
        }
    }
}
