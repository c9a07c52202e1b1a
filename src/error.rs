//! Errors that stop the whole program, and the exit codes director documents.
//!
//! A failed or unreachable node is never one of these: it is an event in the run. These are
//! for what makes a run impossible: bad input (exit 2) or the operator's own machine failing.
//! The text is product surface: each message names what was wrong and where, and most carry a
//! hint. Tests compare it word for word.

use std::fmt;

/// Exit codes, documented in the README.
pub(crate) mod exit {
    /// Every job succeeded (or was skipped because an earlier one failed on no node).
    pub(crate) const OK: i32 = 0;
    /// At least one job failed or timed out.
    pub(crate) const JOB_FAILED: i32 = 1;
    /// Bad input or usage; nothing was contacted.
    pub(crate) const USAGE: i32 = 2;
    /// At least one node was unreachable, and no job failed.
    pub(crate) const UNREACHABLE: i32 = 3;
    /// A node of the run is held by another run that is still running (see `--wait`).
    pub(crate) const LOCKED: i32 = 4;
    /// The run was cancelled (Ctrl-C, or `manage --cancel`).
    pub(crate) const CANCELLED: i32 = 130;
}

/// An error that ends the program before (or instead of) a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    pub hint: Option<String>,
    pub code: i32,
}

impl Error {
    /// Bad input: exit 2.
    pub fn input(message: impl Into<String>) -> Self {
        Error { message: message.into(), hint: None, code: exit::USAGE }
    }

    /// A failure of the operator's own machine (cannot write a file, no runtime): exit 1.
    pub fn internal(message: impl Into<String>) -> Self {
        Error { message: message.into(), hint: None, code: exit::JOB_FAILED }
    }

    /// Not a failure: text asked for (a verb's usage for `--exec-help`), printed on stdout
    /// as it is, exit 0.
    pub fn help(text: impl Into<String>) -> Self {
        Error { message: text.into(), hint: None, code: exit::OK }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code == exit::OK {
            return write!(f, "{}", self.message);
        }
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The closest candidate to `word` by edit distance, if one is close enough to be a typo.
pub(crate) fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// The reason of an I/O error without Rust's "(os error N)" suffix.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
