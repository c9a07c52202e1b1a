//! Resolved settings: what the run will use, after flags, environment and defaults.
//!
//! Built once from [`crate::cli::RunArgs`] and read-only afterwards, so nothing past this point
//! looks at clap types or the environment.

use crate::catalog::HostKeyPolicy;
use crate::cli::{HostKeyChecking, Progress, RunArgs};
use crate::frontend::text::Mode;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Text(Mode),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub catalogs: Vec<PathBuf>,
    pub restrict: Vec<String>,
    pub output: Output,
    pub host_key_override: Option<HostKeyPolicy>,
    pub known_hosts: PathBuf,
    pub connect_timeout: Duration,
    pub connect_concurrency: usize,
    pub ignore_cache: bool,
    /// Seconds cached args and envs live on a node.
    pub args_ttl: u64,
}

impl Config {
    pub fn resolve(args: &RunArgs) -> Config {
        let output = if args.json {
            Output::Json
        } else {
            Output::Text(match args.progress {
                Progress::Tui => Mode::Live,
                Progress::Plain => Mode::Plain,
                Progress::None => Mode::Quiet,
                Progress::Auto if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() => Mode::Live,
                Progress::Auto => Mode::Plain,
            })
        };
        Config {
            catalogs: args.catalog.clone(),
            restrict: args.restrict.clone(),
            output,
            host_key_override: args.host_key_checking.map(|h| match h {
                HostKeyChecking::AcceptNew => HostKeyPolicy::AcceptNew,
                HostKeyChecking::Strict => HostKeyPolicy::Strict,
                HostKeyChecking::Off => HostKeyPolicy::Off,
            }),
            known_hosts: args.known_hosts.clone().unwrap_or_else(crate::transport::known_hosts::default_path),
            connect_timeout: Duration::from_secs(args.connect_timeout.max(1)),
            connect_concurrency: args.connect_concurrency.max(1),
            ignore_cache: args.ignore_cache,
            args_ttl: args.args_ttl,
        }
    }
}
