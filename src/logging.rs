//! Logs for a person finding out why a node misbehaves (`-v`, `-vv`, `-vvv`, `DIRECTOR_LOG`):
//! the `tracing` ecosystem, written to stderr or to `--log-file`, never to stdout (where
//! `--json` events go).
//!
//! `-v` logs, per node, the resolved connection settings and the time of each phase (TCP,
//! handshake, authentication, probe, upload, executor start); `-vv` adds the negotiated
//! algorithms, each key offered, each job's start and end; `-vvv` adds russh's own debug
//! lines. `DIRECTOR_LOG` takes `tracing`'s filter syntax (`director=debug,russh=info`) and
//! beats `-v`. The log file is created private (0600) and appended to. Without either, nothing
//! is logged and nothing is set up.

use crate::error::Error;
use std::path::Path;
use tracing_subscriber::EnvFilter;

/// Where the log goes, once set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logging {
    Off,
    Stderr,
    File,
}

/// Sets up the log for the process from `-v` (`verbose` times), `DIRECTOR_LOG` and
/// `--log-file`.
pub(crate) fn init(verbose: u8, file: Option<&Path>) -> Result<Logging, Error> {
    let directives = match std::env::var("DIRECTOR_LOG") {
        Ok(d) if !d.trim().is_empty() => d,
        _ => match verbose {
            0 if file.is_none() => return Ok(Logging::Off),
            0 | 1 => "director=info".to_string(),
            2 => "director=debug".to_string(),
            _ => "director=trace,russh=debug".to_string(),
        },
    };
    let filter = EnvFilter::try_new(&directives).map_err(|e| {
        Error::input(format!("DIRECTOR_LOG `{directives}` is not a log filter: {e}"))
            .hint("e.g. DIRECTOR_LOG=director=debug, or DIRECTOR_LOG=director=info,russh=debug")
    })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let installed = match file {
        Some(path) => {
            let log = crate::private::append(path).map_err(|e| {
                Error::input(format!("cannot open the log file {}: {e}", path.display()))
                    .hint("--log-file takes a file director can create or append to")
            })?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(log)).try_init().map(|_| Logging::File)
        }
        None => {
            use std::io::IsTerminal;
            let ansi = std::io::stderr().is_terminal();
            builder.with_ansi(ansi).with_writer(std::io::stderr).try_init().map(|_| Logging::Stderr)
        }
    };
    installed.map_err(|e| Error::internal(format!("cannot set up logging: {e}")))
}
