//! Resolved settings: what the run will use, after flags, environment, the settings file
//! and defaults, in that order of precedence.
//!
//! Built once from [`crate::cli::RunArgs`] and [`Settings`] and read-only afterwards, so
//! nothing past this point looks at clap types or the environment.
//!
//! The settings file (`~/.config/director/config.yaml`, or `--config FILE`) is YAML with the
//! keys `history`, `catalog` (a file or a list), `known_hosts` and `ssh_config`; relative paths in it are
//! taken from its own directory.

use crate::catalog::yaml::{child, Document, Seg};
use crate::catalog::{BecomeMethod, HostKeyPolicy};
use crate::cli::{BecomeMethodArg, HostKeyChecking, OutputShown, Progress, RunArgs};
use crate::error::Error;
use serde_json::Value;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Seconds for connect and handshake, and again for authentication, when neither
/// `--connect-timeout` nor ssh_config's ConnectTimeout says.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: u64 = 10;

/// How the text frontend shows a run (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A line for every finished node, every job's groups, the summary.
    Plain,
    /// Inside the live view: as plain, but finished nodes that are fine
    /// are the live view's to say.
    Live,
    /// Only failures and the summary.
    Quiet,
}

/// Whose output the groups show (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    None,
    Failed,
    All,
}

/// What goes on stdout: NDJSON events, or text for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Json,
    Text(Mode),
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub catalogs: Vec<PathBuf>,
    pub restrict: Vec<String>,
    /// `--list-nodes`: print the selection and exit.
    pub list_nodes: bool,
    pub output: Output,
    /// Whose output the text views show (`--output`; the command's default when not given).
    pub shown: Option<Shown>,
    pub host_key_override: Option<HostKeyPolicy>,
    /// The known_hosts files: `--known-hosts` (or the settings file's), else OpenSSH's.
    pub known_hosts: crate::transport::known_hosts::KnownHosts,
    /// The ssh_config files nodes are resolved with.
    pub ssh_config: crate::transport::ssh_config::SshConfig,
    pub connect_timeout: Duration,
    /// `--connect-timeout` was given (it beats ssh_config's ConnectTimeout).
    pub connect_timeout_given: bool,
    pub connect_concurrency: usize,
    pub ignore_cache: bool,
    /// Seconds cached args and envs live on a node.
    pub args_ttl: u64,
    /// `--wait`: wait for a run that holds our nodes instead of refusing.
    pub wait: bool,
    /// `--become`, `--become-user`, `--become-method`: over every node's catalog settings.
    pub becomes: BecomeOverride,
    /// Where the become password comes from; read once by [`Config::read_become_password`].
    pub become_password: crate::secret::PasswordSource,
    /// The become password, once read.
    pub password: Option<std::sync::Arc<crate::secret::Password>>,
    /// `--plan`: say what the run would do, and do nothing.
    pub mode: crate::event::RunMode,
    /// `--diff`: show what each file written changes.
    pub diff: bool,
    /// `--serial`, `--max-fail`.
    pub serial: Option<crate::catalog::portion::Portion>,
    pub max_fail: Option<crate::catalog::portion::Portion>,
}

/// What the command line says about become, over each node's catalog settings (as an
/// explicit `-o` beats ssh_config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BecomeOverride {
    pub on: bool,
    pub user: Option<String>,
    pub method: Option<BecomeMethod>,
}

impl BecomeOverride {
    pub(crate) fn apply(&self, node: &mut crate::catalog::Node) {
        node.becomes.enabled |= self.on;
        if let Some(user) = &self.user {
            node.becomes.user = user.clone();
        }
        if let Some(method) = self.method {
            node.becomes.method = method;
        }
    }
}

/// What the settings file says; every field is optional.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub history: Option<PathBuf>,
    pub catalog: Vec<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub ssh_config: Option<PathBuf>,
}

const SETTINGS_KEYS: &[&str] = &["history", "catalog", "known_hosts", "ssh_config"];

impl Settings {
    /// The default settings file: `$XDG_CONFIG_HOME/director/config.yaml` or
    /// `~/.config/director/config.yaml`.
    pub(crate) fn default_path() -> PathBuf {
        crate::paths::config_dir().join("config.yaml")
    }

    /// Reads `explicit`, or the default file when it exists.
    pub(crate) fn load(explicit: Option<&Path>) -> Result<Settings, Error> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = Self::default_path();
                if !p.exists() {
                    return Ok(Settings::default());
                }
                p
            }
        };
        let doc = Document::load(&path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let map = match &doc.root {
            Value::Null => return Ok(Settings::default()),
            Value::Object(m) => m.clone(),
            _ => {
                return Err(doc
                    .error_at(&[], "the settings file must be a mapping")
                    .hint(format!("its keys are: {}", SETTINGS_KEYS.join(", "))))
            }
        };
        let mut settings = Settings::default();
        for (key, value) in &map {
            let at = child(&[], Seg::KeyName(key.clone()));
            let path_of = |v: &Value, at: &[Seg]| match v {
                Value::String(s) if !s.is_empty() => {
                    let p = crate::paths::expand_home(s);
                    Ok(if p.is_absolute() { p } else { dir.join(p) })
                }
                _ => Err(doc.error_at(at, format!("`{key}` must be a file path"))),
            };
            match key.as_str() {
                // A URL is kept as written, for the history to accept or refuse.
                "history" => match value {
                    Value::String(s) if crate::history::scheme(s).is_some() => settings.history = Some(s.into()),
                    _ => settings.history = Some(path_of(value, &at)?),
                },
                "known_hosts" => settings.known_hosts = Some(path_of(value, &at)?),
                "ssh_config" => settings.ssh_config = Some(path_of(value, &at)?),
                "catalog" => {
                    settings.catalog = match value {
                        Value::Array(items) => items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| path_of(v, &child(&child(&[], key.as_str()), i)))
                            .collect::<Result<_, _>>()?,
                        v => vec![path_of(v, &at)?],
                    }
                }
                _ => {
                    let err = doc.error_at(&at, format!("unknown key `{key}` in the settings file"));
                    return Err(match crate::error::suggest(key, SETTINGS_KEYS.iter().copied()) {
                        Some(s) => err.hint(format!("did you mean `{s}`? the keys are: {}", SETTINGS_KEYS.join(", "))),
                        None => err.hint(format!("the keys are: {}", SETTINGS_KEYS.join(", "))),
                    });
                }
            }
        }
        Ok(settings)
    }
}

impl Config {
    pub(crate) fn resolve(args: &RunArgs, settings: &Settings) -> Config {
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
            catalogs: if args.catalog.is_empty() { settings.catalog.clone() } else { args.catalog.clone() },
            restrict: args.restrict.clone(),
            list_nodes: args.list_nodes,
            output,
            shown: args.output.map(|o| match o {
                OutputShown::None => Shown::None,
                OutputShown::Failed => Shown::Failed,
                OutputShown::All => Shown::All,
            }),
            host_key_override: args.host_key_checking.map(|h| match h {
                HostKeyChecking::AcceptNew => HostKeyPolicy::AcceptNew,
                HostKeyChecking::Strict => HostKeyPolicy::Strict,
                HostKeyChecking::Off => HostKeyPolicy::Off,
            }),
            ssh_config: crate::transport::ssh_config::SshConfig::new(
                args.ssh_config.clone().or_else(|| settings.ssh_config.clone()),
            ),
            known_hosts: crate::transport::known_hosts::KnownHosts::new(
                args.known_hosts.clone().or_else(|| settings.known_hosts.clone()),
            ),
            connect_timeout: Duration::from_secs(args.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)),
            connect_timeout_given: args.connect_timeout.is_some(),
            connect_concurrency: usize::from(args.connect_concurrency),
            ignore_cache: args.ignore_cache,
            args_ttl: args.args_ttl,
            wait: args.wait,
            becomes: BecomeOverride {
                on: args.become_on,
                user: args.become_user.clone(),
                method: args.become_method.map(|m| match m {
                    BecomeMethodArg::Sudo => BecomeMethod::Sudo,
                    BecomeMethodArg::Su => BecomeMethod::Su,
                    BecomeMethodArg::Doas => BecomeMethod::Doas,
                }),
            },
            become_password: match (&args.become_password_file, args.ask_become_pass) {
                (Some(file), _) => crate::secret::PasswordSource::File(file.clone()),
                (None, true) => crate::secret::PasswordSource::Ask,
                (None, false) => crate::secret::PasswordSource::None,
            },
            password: None,
            mode: if args.plan { crate::event::RunMode::Plan } else { crate::event::RunMode::Run },
            diff: args.diff,
            serial: args.serial,
            max_fail: args.max_fail,
        }
    }

    /// Reads the become password, when one was asked for: once per run, before any node is
    /// contacted.
    pub(crate) fn read_become_password(&mut self) -> Result<(), Error> {
        if self.password.is_none() {
            self.password = self.become_password.read()?.map(std::sync::Arc::new);
        }
        Ok(())
    }
}
