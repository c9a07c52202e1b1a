//! The TUI's state: the catalog's nodes and what is known of them, the run on screen (a
//! [`Board`]), the history pages the user opened, and the dialog in front, if any.
//!
//! A plain struct changed by two functions: [`App::event`] for the run's events and
//! [`App::key`] for key presses, which answers with an [`Action`] when the key asks for
//! something outside the screen (start a run, read the history, cancel, quit). It touches no
//! terminal, clock, file or network, so tests drive it with keys and events.

use crate::catalog::Catalog;
use crate::engine;
use crate::event::Event;
use crate::frontend::board::{self, Board, Phase};
use crate::history::query::{JobInfo, LastOutcome, NodeRow, ResultBrief, RunRow};
use crate::node::CancelLevel;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

/// Whether the node has the executor this director would run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    Unknown,
    Present,
    /// Another version is installed; the next run replaces it.
    Old,
}

/// A catalog node and what the history and this session know of it.
#[derive(Debug, Clone)]
pub struct NodeLine {
    pub name: String,
    pub address: String,
    pub groups: Vec<String>,
    pub arch: String,
    pub os: String,
    pub executor: Executor,
    /// Outcome in the latest run that held the node, and that run.
    pub last: Option<(String, String)>,
    /// Connect plus executor greeting in this session's latest contact.
    pub round_trip_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Nodes,
    Run,
    History,
    Results,
    Job,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    Help,
    /// `/`: the filter being typed.
    Filter,
    /// `x`: an ad-hoc command for the target nodes.
    Command(String),
    /// `o`: an orchestration to run: typed text, the files that match, the highlighted one.
    Pick {
        input: String,
        cursor: usize,
    },
    /// Enter on a node: what is known of it (index into [`App::nodes`]).
    Node(usize),
}

/// What a key asks of the loop that owns the terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Quit,
    Orchestrate {
        files: Vec<PathBuf>,
        nodes: Vec<String>,
    },
    Exec {
        command: String,
        nodes: Vec<String>,
    },
    /// Raise the cancel level of the run in flight.
    Cancel(CancelLevel),
    /// Run again the history's run `run` on its nodes that did not end ok.
    RetryRun {
        run: String,
    },
    LoadRuns,
    LoadResults {
        run: String,
        node: Option<String>,
    },
    LoadJob {
        job_id: String,
        node: String,
    },
}

/// What was last started, to retry on the nodes that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Orchestrate(Vec<PathBuf>),
    Exec(String),
}

/// A list's highlighted row and the first row shown (kept by the renderer).
#[derive(Debug, Default)]
pub struct ListState {
    pub cursor: usize,
    pub offset: Cell<usize>,
}

impl ListState {
    fn step(&mut self, key: KeyCode, len: usize) -> bool {
        let last = len.saturating_sub(1);
        self.cursor = match key {
            KeyCode::Up | KeyCode::Char('k') => self.cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => (self.cursor + 1).min(last),
            KeyCode::PageUp => self.cursor.saturating_sub(20),
            KeyCode::PageDown => (self.cursor + 20).min(last),
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => last,
            _ => return false,
        };
        true
    }

    fn clamp(&mut self, len: usize) {
        self.cursor = self.cursor.min(len.saturating_sub(1));
    }
}

pub struct App {
    /// The catalog files, for the title.
    pub title: String,
    pub nodes: Vec<NodeLine>,
    pub filter: String,
    /// Indices into `nodes` that the filter lets through.
    pub shown: Vec<usize>,
    pub node_list: ListState,
    pub selected: BTreeSet<String>,
    pub screen: Screen,
    /// Where Esc goes back to from the results and job pages.
    back: Vec<Screen>,
    pub dialog: Option<Dialog>,
    /// The run on the run screen: in flight, or the last one of this session.
    pub board: Option<Board>,
    /// What the board's run is, for a person (`deploy.yaml on 3 nodes`).
    pub run_label: String,
    pub in_flight: bool,
    pub run_list: ListState,
    pub started: Option<Started>,
    pub runs: Vec<RunRow>,
    pub runs_list: ListState,
    /// The results page: whose, and the rows.
    pub results: Option<(String, Option<String>, Vec<ResultBrief>)>,
    pub results_list: ListState,
    /// The job page: the job and the node whose result is shown.
    pub job: Option<(JobInfo, String)>,
    pub job_scroll: u16,
    /// One line at the bottom: what just happened or went wrong.
    pub message: Option<String>,
    /// Found `orchestrations/*.yaml` files, offered by `o`.
    pub orchestrations: Vec<PathBuf>,
    /// Set by the first `q` while a run is in flight.
    pub quit_armed: bool,
    pub now: Instant,
}

impl App {
    pub fn new(catalog: &Catalog, title: String, orchestrations: Vec<PathBuf>, now: Instant) -> App {
        let nodes: Vec<NodeLine> = catalog
            .nodes
            .iter()
            .map(|n| NodeLine {
                name: n.name.clone(),
                address: engine::address(n),
                groups: n.groups.clone(),
                arch: String::new(),
                os: String::new(),
                executor: Executor::Unknown,
                last: None,
                round_trip_ms: None,
            })
            .collect();
        let mut app = App {
            title,
            shown: (0..nodes.len()).collect(),
            nodes,
            filter: String::new(),
            node_list: ListState::default(),
            selected: BTreeSet::new(),
            screen: Screen::Nodes,
            back: Vec::new(),
            dialog: None,
            board: None,
            run_label: String::new(),
            in_flight: false,
            run_list: ListState::default(),
            started: None,
            runs: Vec::new(),
            runs_list: ListState::default(),
            results: None,
            results_list: ListState::default(),
            job: None,
            job_scroll: 0,
            message: None,
            orchestrations,
            quit_armed: false,
            now,
        };
        app.refilter();
        app
    }

    /// Facts and last outcomes from the history.
    /// Takes in what the history knows of the nodes; `current` tells whether an executor hash
    /// is one this director carries.
    pub fn know(&mut self, facts: &[NodeRow], outcomes: &[LastOutcome], current: fn(&str) -> bool) {
        let facts: HashMap<&str, &NodeRow> = facts.iter().map(|f| (f.name.as_str(), f)).collect();
        let outcomes: HashMap<&str, &LastOutcome> = outcomes.iter().map(|o| (o.node.as_str(), o)).collect();
        for n in &mut self.nodes {
            if let Some(f) = facts.get(n.name.as_str()) {
                n.arch = f.arch.clone();
                n.os = f.os.clone();
                n.executor = match f.executor_sha3.as_str() {
                    "" => Executor::Unknown,
                    s if current(s) => Executor::Present,
                    _ => Executor::Old,
                };
            }
            if let Some(o) = outcomes.get(n.name.as_str()) {
                n.last = Some((o.outcome.clone(), o.run.clone()));
            }
        }
    }

    /// The node in the run on screen, when that run holds it.
    pub fn on_board(&self, node: &str) -> Option<&board::NodeBoard> {
        self.board.as_ref().and_then(|b| b.node(node))
    }

    fn refilter(&mut self) {
        let pattern = self.filter.trim();
        let glob = glob::Pattern::new(pattern).ok();
        self.shown = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                pattern.is_empty()
                    || n.name.contains(pattern)
                    || n.groups.iter().any(|g| g == pattern)
                    || glob.as_ref().is_some_and(|g| g.matches(&n.name))
            })
            .collect();
        self.node_list.clamp(self.shown.len());
    }

    /// The nodes an action applies to: the selected ones, else those the filter shows.
    pub fn targets(&self) -> Vec<String> {
        if !self.selected.is_empty() {
            return self.nodes.iter().filter(|n| self.selected.contains(&n.name)).map(|n| n.name.clone()).collect();
        }
        self.shown.iter().map(|&i| self.nodes[i].name.clone()).collect()
    }

    /// The files `o` offers for what has been typed.
    pub fn picks(&self, input: &str) -> Vec<PathBuf> {
        self.orchestrations.iter().filter(|p| p.display().to_string().contains(input)).cloned().collect()
    }

    /// A run was started: a fresh board for its nodes.
    pub fn run_started(&mut self, label: String, started: Started) {
        self.board = Some(Board::new());
        self.run_label = label;
        self.in_flight = true;
        self.started = Some(started);
        self.run_list = ListState::default();
        self.screen = Screen::Run;
        self.back.clear();
        self.message = None;
    }

    pub fn event(&mut self, event: &Event, at: Instant) {
        if let Event::NodeReady { node, arch, os, ms, .. } = event {
            if let Some(n) = self.nodes.iter_mut().find(|n| &n.name == node) {
                n.arch = arch.clone();
                n.os = os.clone();
                n.executor = Executor::Present;
                n.round_trip_ms = Some(*ms);
            }
        }
        if let Some(b) = self.board.as_mut() {
            b.handle(event, at);
        }
    }

    /// The run in flight has ended and is recorded.
    pub fn run_ended(&mut self, code: i32) {
        self.in_flight = false;
        let failed = self.board.as_ref().map(|b| b.failure_groups().len()).unwrap_or(0);
        self.message = Some(match code {
            0 => "run finished: every node ok".to_string(),
            _ if failed > 0 => {
                format!("run finished with exit code {code}: failures below (R retries the failed nodes)")
            }
            _ => format!("run finished with exit code {code}"),
        });
        if self.quit_armed {
            self.message = Some("run stopped; quitting".into());
        }
    }

    /// Nodes of the board's run that did not end ok.
    pub fn failed_nodes(&self) -> Vec<String> {
        let Some(b) = &self.board else { return Vec::new() };
        b.nodes
            .iter()
            .filter(|n| matches!(n.phase, Phase::Failed | Phase::Unreachable | Phase::Cancelled))
            .map(|n| n.name.clone())
            .collect()
    }

    /// The run screen's rows: node indices into the board, in display order.
    pub fn run_rows(&self) -> Vec<usize> {
        self.board.as_ref().map(super::super::board::Board::display_order).unwrap_or_default()
    }

    pub fn open(&mut self, screen: Screen) {
        if screen != self.screen {
            if matches!(screen, Screen::Results | Screen::Job) {
                self.back.push(self.screen);
            } else {
                self.back.clear();
            }
            self.screen = screen;
        }
    }

    /// The tab the current page belongs to: results and job pages belong to where they
    /// were opened from.
    pub fn tab(&self) -> Screen {
        match self.screen {
            Screen::Results | Screen::Job => self.back.first().copied().unwrap_or(Screen::History),
            s => s,
        }
    }

    fn back(&mut self) {
        if let Some(s) = self.back.pop() {
            self.screen = s;
        }
    }

    pub fn key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if ctrl_c {
            return self.cancel_or_quit();
        }
        if let Some(dialog) = self.dialog.clone() {
            return self.dialog_key(dialog, key);
        }
        let was_armed = std::mem::take(&mut self.quit_armed);
        match key.code {
            KeyCode::Char('?') => self.dialog = Some(Dialog::Help),
            KeyCode::Char('q') => {
                if self.in_flight && !was_armed {
                    self.quit_armed = true;
                    self.message = Some("a run is in flight: q again kills it and quits; c cancels it".into());
                } else if self.in_flight {
                    self.quit_armed = true;
                    return Some(Action::Cancel(CancelLevel::Kill));
                } else {
                    return Some(Action::Quit);
                }
            }
            KeyCode::Char('1') => self.open(Screen::Nodes),
            KeyCode::Char('2') => self.open(Screen::Run),
            KeyCode::Char('3') => {
                self.open(Screen::History);
                return Some(Action::LoadRuns);
            }
            KeyCode::Tab => {
                let next = match self.screen {
                    Screen::Nodes => Screen::Run,
                    Screen::Run => Screen::History,
                    _ => Screen::Nodes,
                };
                self.open(next);
                if next == Screen::History {
                    return Some(Action::LoadRuns);
                }
            }
            KeyCode::Esc | KeyCode::Backspace => self.back(),
            KeyCode::Char('c') if self.in_flight => return self.cancel_or_quit(),
            KeyCode::Char('o') if !self.in_flight => {
                self.dialog = Some(Dialog::Pick { input: String::new(), cursor: 0 });
            }
            KeyCode::Char('x') if !self.in_flight => self.dialog = Some(Dialog::Command(String::new())),
            KeyCode::Char('o' | 'x' | 'R') if self.in_flight => {
                self.message = Some("a run is in flight: wait for it or cancel it (c)".into());
            }
            KeyCode::Char('R') if self.screen == Screen::History => {
                let run = self.runs.get(self.runs_list.cursor)?;
                return Some(Action::RetryRun { run: run.id.clone() });
            }
            KeyCode::Char('R') => return self.retry(),
            code => return self.screen_key(code),
        }
        None
    }

    fn cancel_or_quit(&mut self) -> Option<Action> {
        if !self.in_flight {
            return Some(Action::Quit);
        }
        let level = self.board.as_ref().map(|b| b.cancel).unwrap_or_default();
        let next = if level == CancelLevel::None { CancelLevel::Drain } else { CancelLevel::Kill };
        if let Some(b) = self.board.as_mut() {
            b.cancel = next;
        }
        self.message = Some(if next == CancelLevel::Drain {
            "cancelling: no new jobs will start; press c again to kill the running ones".into()
        } else {
            "killing the running jobs".into()
        });
        Some(Action::Cancel(next))
    }

    fn retry(&mut self) -> Option<Action> {
        let nodes = self.failed_nodes();
        match (&self.started, nodes.is_empty()) {
            (None, _) => {
                self.message = Some("nothing run in this session: pick a run in the history (3) and press R".into());
                None
            }
            (Some(_), true) => {
                self.message = Some("no failed node to retry".into());
                None
            }
            (Some(Started::Orchestrate(files)), false) => Some(Action::Orchestrate { files: files.clone(), nodes }),
            (Some(Started::Exec(command)), false) => Some(Action::Exec { command: command.clone(), nodes }),
        }
    }

    fn screen_key(&mut self, code: KeyCode) -> Option<Action> {
        match self.screen {
            Screen::Nodes => match code {
                KeyCode::Char('/') => self.dialog = Some(Dialog::Filter),
                KeyCode::Char(' ') => {
                    if let Some(&i) = self.shown.get(self.node_list.cursor) {
                        let name = self.nodes[i].name.clone();
                        if !self.selected.remove(&name) {
                            self.selected.insert(name);
                        }
                        self.node_list.step(KeyCode::Down, self.shown.len());
                    }
                }
                KeyCode::Enter => {
                    if let Some(&i) = self.shown.get(self.node_list.cursor) {
                        self.dialog = Some(Dialog::Node(i));
                    }
                }
                KeyCode::Char('a') => {
                    let names: Vec<String> = self.shown.iter().map(|&i| self.nodes[i].name.clone()).collect();
                    if names.iter().all(|n| self.selected.contains(n)) {
                        for n in &names {
                            self.selected.remove(n);
                        }
                    } else {
                        self.selected.extend(names);
                    }
                }
                code => {
                    self.node_list.step(code, self.shown.len());
                }
            },
            Screen::Run => match code {
                KeyCode::Enter => {
                    let board = self.board.as_ref()?;
                    let row = *self.run_rows().get(self.run_list.cursor)?;
                    return Some(Action::LoadResults {
                        run: board.run.clone(),
                        node: Some(board.nodes[row].name.clone()),
                    });
                }
                code => {
                    let len = self.board.as_ref().map(|b| b.nodes.len()).unwrap_or(0);
                    self.run_list.step(code, len);
                }
            },
            Screen::History => match code {
                KeyCode::Enter => {
                    let run = self.runs.get(self.runs_list.cursor)?;
                    return Some(Action::LoadResults { run: run.id.clone(), node: None });
                }
                code => {
                    self.runs_list.step(code, self.runs.len());
                }
            },
            Screen::Results => match code {
                KeyCode::Enter => {
                    let (_, _, rows) = self.results.as_ref()?;
                    let row = rows.get(self.results_list.cursor)?;
                    return Some(Action::LoadJob { job_id: row.job_id.clone(), node: row.node.clone() });
                }
                code => {
                    let len = self.results.as_ref().map(|r| r.2.len()).unwrap_or(0);
                    self.results_list.step(code, len);
                }
            },
            Screen::Job => {
                self.job_scroll = match code {
                    KeyCode::Up | KeyCode::Char('k') => self.job_scroll.saturating_sub(1),
                    KeyCode::Down | KeyCode::Char('j') => self.job_scroll.saturating_add(1),
                    KeyCode::PageUp => self.job_scroll.saturating_sub(20),
                    KeyCode::PageDown | KeyCode::Char(' ') => self.job_scroll.saturating_add(20),
                    KeyCode::Home | KeyCode::Char('g') => 0,
                    _ => self.job_scroll,
                }
            }
        }
        None
    }

    fn dialog_key(&mut self, dialog: Dialog, key: KeyEvent) -> Option<Action> {
        match dialog {
            Dialog::Help => self.dialog = None,
            Dialog::Node(i) => {
                self.dialog = None;
                let node = self.nodes.get(i)?;
                if let (KeyCode::Enter, Some((_, run))) = (key.code, &node.last) {
                    return Some(Action::LoadResults { run: run.clone(), node: Some(node.name.clone()) });
                }
            }
            Dialog::Filter => match key.code {
                KeyCode::Enter => self.dialog = None,
                KeyCode::Esc => {
                    self.filter.clear();
                    self.dialog = None;
                    self.refilter();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                    self.refilter();
                }
                KeyCode::Char(c) => {
                    self.filter.push(c);
                    self.refilter();
                }
                _ => {}
            },
            Dialog::Command(mut text) => match key.code {
                KeyCode::Esc => self.dialog = None,
                KeyCode::Enter if !text.trim().is_empty() => {
                    self.dialog = None;
                    return Some(Action::Exec { command: text.trim().to_string(), nodes: self.targets() });
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.dialog = Some(Dialog::Command(text));
                }
                KeyCode::Char(c) => {
                    text.push(c);
                    self.dialog = Some(Dialog::Command(text));
                }
                _ => {}
            },
            Dialog::Pick { mut input, mut cursor } => {
                let picks = self.picks(&input);
                match key.code {
                    KeyCode::Esc => {
                        self.dialog = None;
                        return None;
                    }
                    KeyCode::Enter => {
                        let file = match picks.get(cursor) {
                            Some(p) => p.clone(),
                            None if !input.trim().is_empty() => crate::paths::expand_home(input.trim()),
                            None => return None,
                        };
                        self.dialog = None;
                        return Some(Action::Orchestrate { files: vec![file], nodes: self.targets() });
                    }
                    KeyCode::Up => cursor = cursor.saturating_sub(1),
                    KeyCode::Down => cursor = (cursor + 1).min(picks.len().saturating_sub(1)),
                    KeyCode::Backspace => {
                        input.pop();
                        cursor = 0;
                    }
                    KeyCode::Char(c) => {
                        input.push(c);
                        cursor = 0;
                    }
                    _ => {}
                }
                self.dialog = Some(Dialog::Pick { input, cursor });
            }
        }
        None
    }
}
