//! The words the history stores for how a run stands and how a job ended on a node (and a
//! run's kind and mode), as types:
//! what the recorder writes and what `manage` and the TUI read back. The SQL of this room
//! names the same words in its `WHERE` clauses; [`RunStatus::as_str`] and
//! [`ResultStatus::as_str`] are the one list of them.

use super::store::{FromValue, Value};
use crate::event::{JobStatus, RunKind, RunMode};
use serde::{Serialize, Serializer};
use std::fmt;

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Its process died without ending it (found by the sweep).
    Abandoned,
}

impl RunStatus {
    const ALL: [RunStatus; 5] =
        [RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled, RunStatus::Abandoned];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Abandoned => "abandoned",
        }
    }

    /// The status of a run that ended with `exit_code`.
    pub fn ended(exit_code: i32) -> RunStatus {
        match exit_code {
            crate::error::exit::OK => RunStatus::Succeeded,
            crate::error::exit::CANCELLED => RunStatus::Cancelled,
            _ => RunStatus::Failed,
        }
    }
}

/// How a job stands on one node: a [`JobStatus`] once it ended, or what only the history
/// knows (running, its node unreachable, its run abandoned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultStatus {
    Ended(JobStatus),
    Running,
    /// The node was never reached: the job never started there.
    Unreachable,
    /// It was running when its run was found abandoned.
    Abandoned,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Ended(status) => status.as_str(),
            ResultStatus::Running => "running",
            ResultStatus::Unreachable => "unreachable",
            ResultStatus::Abandoned => "abandoned",
        }
    }

    fn from_word(word: &str) -> Option<ResultStatus> {
        JobStatus::from_word(word).map(ResultStatus::Ended).or(match word {
            "running" => Some(ResultStatus::Running),
            "unreachable" => Some(ResultStatus::Unreachable),
            "abandoned" => Some(ResultStatus::Abandoned),
            _ => None,
        })
    }

    /// The job did what it should there (ran ok or was answered from the cache).
    pub fn succeeded(self) -> bool {
        matches!(self, ResultStatus::Ended(JobStatus::Ok | JobStatus::Cached))
    }

    /// The job went wrong there: failed, timed out, cancelled, never reached, abandoned.
    pub fn went_wrong(self) -> bool {
        !self.succeeded()
            && !matches!(self, ResultStatus::Ended(JobStatus::Skipped | JobStatus::WouldRun) | ResultStatus::Running)
    }
}

/// A type the history stores as the word its `as_str` says: written and read back as that
/// word, shown as it.
macro_rules! word_type {
    ($ty:ident, $parse:expr) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl From<$ty> for Value {
            fn from(v: $ty) -> Value {
                Value::Text(v.as_str().to_string())
            }
        }

        impl FromValue for $ty {
            fn from_value(value: &Value) -> Result<Self, String> {
                let word = String::from_value(value)?;
                let parse: fn(&str) -> Option<$ty> = $parse;
                parse(&word).ok_or_else(|| format!("`{word}` is not a {} this director knows", stringify!($ty)))
            }
        }
    };
}

/// Serialized as its word too (in `manage --json`).
macro_rules! serialize_word {
    ($($ty:ident),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}

word_type!(RunStatus, |word| RunStatus::ALL.into_iter().find(|s| s.as_str() == word));
word_type!(ResultStatus, ResultStatus::from_word);
word_type!(RunKind, |word| RunKind::ALL.into_iter().find(|s| s.as_str() == word));
word_type!(RunMode, |word| RunMode::ALL.into_iter().find(|s| s.as_str() == word));
serialize_word!(RunStatus, ResultStatus, RunKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_reads_back_as_itself() {
        for status in RunStatus::ALL {
            let word = status.as_str();
            assert_eq!(RunStatus::from_value(&Value::from(word)).unwrap(), status);
        }
        let results = JobStatus::ALL.into_iter().map(ResultStatus::Ended).chain([
            ResultStatus::Running,
            ResultStatus::Unreachable,
            ResultStatus::Abandoned,
        ]);
        for status in results {
            let word = status.as_str();
            assert_eq!(ResultStatus::from_value(&Value::from(word)).unwrap(), status);
            // The same word as `--json` for the statuses a job ends with.
            if let ResultStatus::Ended(s) = status {
                assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(word));
            }
        }
        assert!(ResultStatus::from_value(&Value::from("finished")).is_err());
        for kind in RunKind::ALL {
            assert_eq!(RunKind::from_value(&Value::from(kind)).unwrap(), kind);
        }
        for mode in RunMode::ALL {
            assert_eq!(RunMode::from_value(&Value::from(mode)).unwrap(), mode);
            assert_eq!(serde_json::to_value(mode).unwrap(), serde_json::json!(mode.as_str()));
        }
    }

    #[test]
    fn what_went_wrong() {
        let wrong: Vec<&str> = JobStatus::ALL
            .into_iter()
            .map(ResultStatus::Ended)
            .chain([ResultStatus::Running, ResultStatus::Unreachable, ResultStatus::Abandoned])
            .filter(|s| s.went_wrong())
            .map(super::ResultStatus::as_str)
            .collect();
        assert_eq!(wrong, ["failed", "timed_out", "cancelled", "unreachable", "abandoned"]);
    }
}
