//! Frontends: the consumers of the engine's events that a person or a script sees.
//!
//! `--json` writes every event as one JSON line on stdout ([`json`]); on a terminal, [`live`]
//! keeps progress and the jobs in flight in a few lines at the bottom; otherwise [`text`]
//! prints one line per finished job (with the output tail of failures) and a summary. [`tui`]
//! is the full-screen app (`director tui`); [`board`] is the run state the live views share;
//! [`manage`] prints the history. Only frontends print. A closed stdout (a pipe whose reader
//! went away) silences the frontend; it never stops the run.
//!
//! What nodes send (output, facts, errors) can hold terminal escapes; everything a person
//! sees goes through [`printable`] first, so a job cannot retitle the terminal, move the
//! cursor or forge a line. `--json` and the history keep the bytes as they were.

pub(crate) mod board;
pub(crate) mod json;
pub(crate) mod live;
pub(crate) mod manage;
pub(crate) mod nodeset;
pub(crate) mod text;
pub(crate) mod tui;

use crate::config::Output;
use crate::error::Error;
use crate::event::Event;
use crate::launch::{Incoming, Running};
use crate::node::CancelLevel;
use ratatui::backend::CrosstermBackend;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `text` safe to print on a terminal: line breaks and tabs are kept (a `\r\n` ending
/// becomes `\n`); every other control character is shown in caret notation (`^[` for ESC,
/// `^M` for a lone carriage return, `^?` for DEL) or as `<U+009B>` for the C1 controls.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            c if !unsafe_char(c) => out.push(c),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(c as u8 + 0x40));
            }
            '\u{7f}' => out.push_str("^?"),
            c => out.push_str(&format!("<U+{:04X}>", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// `event` with every text a person will read made [`printable`].
pub(crate) fn for_people(event: &Event) -> Event {
    let mut e = event.clone();
    e.map_texts(|s| {
        if let Cow::Owned(c) = printable(s) {
            *s = c;
        }
    });
    e
}

pub(crate) enum Frontend {
    Json(json::JsonLines),
    Text(text::TextView),
    Live(Box<live::LiveView<CrosstermBackend<std::io::Stdout>>>),
}

impl Frontend {
    /// The frontend for `output`. When the live view cannot take the terminal, plain lines
    /// are used and `fallback` says why.
    pub(crate) fn new(output: Output, shown: text::Shown) -> (Frontend, Option<String>) {
        let plain = |mode| Frontend::Text(text::TextView::new(mode, shown, Box::new(std::io::stdout())));
        match output {
            Output::Json => (Frontend::Json(json::JsonLines::new(Box::new(std::io::stdout()))), None),
            Output::Text(text::Mode::Live) => {
                match live::LiveView::new(CrosstermBackend::new(std::io::stdout()), shown) {
                    Ok(view) => (Frontend::Live(Box::new(view)), None),
                    Err(e) => (
                        plain(text::Mode::Plain),
                        Some(format!("cannot show the live view ({e}): printing plain lines")),
                    ),
                }
            }
            Output::Text(mode) => (plain(mode), None),
        }
    }

    pub(crate) fn handle(&mut self, event: &Event) {
        match self {
            Frontend::Json(j) => j.handle(event),
            Frontend::Text(t) => t.handle(&for_people(event)),
            Frontend::Live(l) => l.handle(&for_people(event), Instant::now()),
        }
    }

    /// Called on a timer: live views show elapsed times, plain lines held for folding go out.
    pub(crate) fn tick(&mut self, now: Instant) {
        match self {
            Frontend::Live(l) => l.tick(now),
            Frontend::Text(t) => t.tick(now),
            Frontend::Json(_) => {}
        }
    }

    /// Says something to the person running the command, out of band of events.
    pub(crate) fn notice(&mut self, text: &str) {
        match self {
            Frontend::Json(_) => eprintln!("{text}"),
            Frontend::Text(t) => t.notice(text),
            Frontend::Live(l) => l.notice(text),
        }
    }

    /// The run is over: a live view leaves the screen tidy.
    pub(crate) fn finish(&mut self) {
        if let Frontend::Live(l) = self {
            l.finish();
        }
    }
}

/// Host keys recorded for new nodes, said once for the nodes first contacted together, as
/// `ssh` says "Permanently added": "recorded host keys of 40 new nodes (web[1-40]) in FILE".
#[derive(Default)]
struct RecordedKeys {
    /// Nodes by known_hosts file.
    files: BTreeMap<String, Vec<String>>,
    since: Option<Instant>,
}

impl RecordedKeys {
    fn see(&mut self, event: &Event) {
        if let Event::HostKeyRecorded { node, file } = event {
            self.files.entry(file.clone()).or_default().push(node.clone());
            self.since.get_or_insert_with(Instant::now);
        }
    }

    /// What to say now: everything once `now` is [`text::FOLD_WAIT`] past the first (as plain
    /// ok lines wait for others like them), or `all`.
    fn due(&mut self, now: Instant, all: bool) -> Vec<String> {
        if !all && self.since.is_none_or(|since| now.duration_since(since) < text::FOLD_WAIT) {
            return Vec::new();
        }
        self.since = None;
        std::mem::take(&mut self.files)
            .into_iter()
            .map(|(file, nodes)| match nodes.as_slice() {
                [one] => format!("recorded the host key of new node {one} in {file}"),
                _ => format!("recorded host keys of {} new nodes ({}) in {file}", nodes.len(), nodeset::fold(&nodes)),
            })
            .collect()
    }
}

/// Shows a run's events until it ends; Ctrl-C once drains, twice kills.
pub(crate) async fn follow(mut running: Running, output: Output, shown: text::Shown) -> Result<i32, Error> {
    let (mut frontend, fallback) = Frontend::new(output, shown);
    for text in fallback.iter().chain(running.warnings.iter()) {
        frontend.notice(text);
    }
    let (notice_tx, mut notices) = tokio::sync::mpsc::unbounded_channel::<String>();
    let cancel = running.cancel_handle();
    tokio::spawn(async move {
        let mut presses = 0u8;
        while tokio::signal::ctrl_c().await.is_ok() {
            presses += 1;
            if presses == 1 {
                cancel.raise(CancelLevel::Drain);
                let _ = notice_tx
                    .send("cancelling: no new jobs will start; press Ctrl-C again to kill the running ones".into());
            } else {
                cancel.raise(CancelLevel::Kill);
                let _ = notice_tx.send("killing the running jobs".into());
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // --json carries them as events; people are told once per burst of first contacts.
    let mut keys = RecordedKeys::default();
    let said_keys = !matches!(frontend, Frontend::Json(_));
    loop {
        tokio::select! {
            incoming = running.next() => match incoming {
                Some(Incoming::Event(event)) => {
                    if said_keys {
                        keys.see(&event);
                        let ending = matches!(event, Event::RunFinished { .. });
                        for text in keys.due(Instant::now(), ending) {
                            frontend.notice(&text);
                        }
                    }
                    frontend.handle(&event);
                }
                Some(Incoming::CancelledElsewhere) => frontend.notice("cancelled from another terminal (`director manage --cancel`): killing the running jobs"),
                None => break,
            },
            Some(text) = notices.recv() => frontend.notice(&text),
            now = tick.tick() => {
                for text in keys.due(now.into_std(), false) {
                    frontend.notice(&text);
                }
                frontend.tick(now.into_std());
            }
        }
    }
    frontend.finish();
    running.finish().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_obeyed() {
        assert_eq!(printable("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(printable("\x1b]2;owned\x07title"), "^[]2;owned^Gtitle");
        assert_eq!(printable("a\r\nb\rc\x7f\u{9b}31m"), "a\nb^Mc^?<U+009B>31m");
        let e = Event::JobOutput {
            node: "n".into(),
            job: 0,
            stream: crate::event::Stream::Stdout,
            data: "\x1b[2Jgone".into(),
        };
        assert!(matches!(for_people(&e), Event::JobOutput { data, .. } if data == "^[[2Jgone"));
    }
}
