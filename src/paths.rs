//! Where the operator's own files are: `~/` expanded to the home directory, and director's
//! directories under the XDG base directories (state: the history; config: the settings
//! file; cache: the local transport's executors). Nothing here creates a file.

use std::ffi::OsString;
use std::path::PathBuf;

/// Expands a leading `~/` to the operator's home directory.
pub(crate) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// `$VARIABLE/director` when the variable is set and not empty, else `FALLBACK/director`
/// (`~/` expanded).
fn director_dir(variable: &str, fallback: &str) -> PathBuf {
    let base = match std::env::var_os(variable).filter(|v: &OsString| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => expand_home(fallback),
    };
    base.join("director")
}

/// `$XDG_STATE_HOME/director`, else `~/.local/state/director`: the run history.
pub(crate) fn state_dir() -> PathBuf {
    director_dir("XDG_STATE_HOME", "~/.local/state")
}

/// `$XDG_CONFIG_HOME/director`, else `~/.config/director`: the settings file.
pub(crate) fn config_dir() -> PathBuf {
    director_dir("XDG_CONFIG_HOME", "~/.config")
}

/// `$XDG_CACHE_HOME/director`, else `~/.cache/director`: the local transport's executors.
pub(crate) fn cache_dir() -> PathBuf {
    director_dir("XDG_CACHE_HOME", "~/.cache")
}
