//! What the user typed: the clap definitions, and nothing resolved yet; the completions and
//! the man page made from them.
//!
//! Only this file speaks clap. `config.rs` turns the run options into one read-only set of
//! settings; `manage` reads its own options ([`ManageArgs`]) as they are.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "director",
    version = env!("DIRECTOR_LONG_VERSION"),
    about = "Agentless SSH push orchestrator",
    after_long_help = AFTER_HELP
)]
pub(crate) struct Cli {
    /// The run history database [default: ~/.local/state/director/history.db].
    #[arg(
        help_heading = "Global options",
        long,
        global = true,
        value_name = "FILE",
        env = "DIRECTOR_HISTORY",
        hide_env_values = true
    )]
    pub history: Option<PathBuf>,
    /// Settings file [default: ~/.config/director/config.yaml, when it exists].
    #[arg(
        help_heading = "Global options",
        long,
        global = true,
        value_name = "FILE",
        env = "DIRECTOR_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,
    /// Log what happens on each node to stderr (or --log-file): -v connection settings and
    /// the time of each phase, -vv algorithms, keys offered and jobs, -vvv russh's own debug.
    /// DIRECTOR_LOG (e.g. `director=debug`) beats it.
    #[arg(help_heading = "Global options", short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Write the log to FILE (created 0600, appended to) instead of stderr.
    #[arg(
        help_heading = "Global options",
        long,
        global = true,
        value_name = "FILE",
        env = "DIRECTOR_LOG_FILE",
        hide_env_values = true
    )]
    pub log_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Examples and exit codes, below `director --help`.
const AFTER_HELP: &str = "Examples:
  director tui catalog.yaml                            full-screen: nodes, runs, live output
  director bootstrap --catalog catalog.yaml            first contact with every node
  director orchestrate deploy.yaml -c catalog.yaml --plan --diff    what a run would change
  director orchestrate deploy.yaml -c catalog.yaml --serial 10% --max-fail 2
  director orchestrate deploy.yaml --restrict 'web,!web3' -v
  director exec -c catalog.yaml 'uname -r'             outputs folded by host
  director orchestrate deploy.yaml --json              NDJSON events for scripts

Exit codes:
  0    every job ok or cached (or a --plan that could judge every job)
  1    a job failed or timed out
  2    bad input or usage: nothing was contacted
  3    a node was unreachable (and no job failed)
  4    another run holds some of the nodes (see --wait)
  130  cancelled (Ctrl-C, or manage --cancel)";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run orchestration files on the catalog's nodes.
    Orchestrate {
        /// Orchestration files (Directord's format), run in order.
        #[arg(required_unless_present = "retry_failed", value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Run again only on the nodes that did not end ok in that run (default: the last);
        /// without FILEs, that run's files and catalogs are used.
        #[arg(long, value_name = "RUN", num_args = 0..=1, default_missing_value = "last")]
        retry_failed: Option<String>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run one job on the catalog's nodes.
    Exec {
        /// The verb of the job.
        #[arg(long, default_value = "RUN")]
        verb: String,
        /// Nodes to run on, as --restrict selects them; all catalog nodes when absent.
        #[arg(long = "target", value_name = "SELECTION")]
        targets: Vec<String>,
        /// Answer from the node caches when this exact job already succeeded there (by
        /// default an ad-hoc command always runs).
        #[arg(long)]
        cached: bool,
        /// The job's arguments, e.g. the command for RUN. Options go before it: a later word
        /// that is one of exec's own options is refused, unless `--` comes before the command.
        #[arg(required = true, value_name = "ARGS", allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
        /// Whether `--` came before ARGS (set by `parse`, not by clap): then every word is
        /// command text.
        #[arg(skip)]
        escaped: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// First contact with a fleet: connect every node, record its host key, install the
    /// executor, gather facts, then run the catalogs' own jobs (servers first, one at a time).
    Bootstrap {
        /// Clients bootstrapped at once.
        #[arg(long, value_name = "N", default_value_t = 10, env = "DIRECTOR_BOOTSTRAP_THREADS", value_parser = clap::value_parser!(u16).range(1..), hide_env_values = true)]
        threads: u16,
        /// SSH private key for every node (instead of the catalog's).
        #[arg(long, value_name = "FILE", env = "DIRECTOR_BOOTSTRAP_SSH_KEY_FILE", hide_env_values = true)]
        key_file: Option<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Read and tidy the run history; cancel a run.
    Manage(ManageArgs),
    /// Print a shell completion script: `director completions bash > /etc/bash_completion.d/director`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `director man | man -l -`, `director man orchestrate`; or
    /// write them all: `director man --dir /usr/local/share/man/man1`.
    Man {
        /// The subcommand whose page to print (director-PAGE(1)); none: director(1).
        #[arg(value_name = "PAGE")]
        page: Option<String>,
        /// Write every page (director.1, director-orchestrate.1, …) into DIR instead.
        #[arg(long, value_name = "DIR", conflicts_with = "page")]
        dir: Option<PathBuf>,
    },
    /// Serve a run's nodes behind this machine for an operator (started by director itself,
    /// over SSH, on a catalog node named as a `relay:`).
    #[command(hide = true)]
    Relay {
        /// Just uploaded: check this binary's sha3-256 and move it to PATH first.
        #[arg(long, num_args = 2, value_names = ["SHA3", "PATH"])]
        install: Option<Vec<String>>,
    },
    /// The full-screen terminal UI: nodes, runs as they go, past runs, actions.
    Tui {
        /// Catalog file(s); several are merged. Default: --catalog, else the embedded local catalog.
        #[arg(value_name = "CATALOG")]
        catalogs: Vec<PathBuf>,
        #[command(flatten)]
        run: RunArgs,
    },
}

/// Parses a command line as clap does, then marks an `exec` whose ARGS follow a `--` (clap
/// takes that `--` without saying so).
pub(crate) fn parse(argv: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    let mut cli = Cli::try_parse_from(argv)?;
    if let Command::Exec { args, escaped, .. } = &mut cli.command {
        // ARGS run to the end of the line, so the word before them is the one before the
        // last `args.len()` words.
        *escaped = argv.len().checked_sub(args.len() + 1).is_some_and(|i| argv[i] == "--");
    }
    Ok(cli)
}

/// The first word of an exec's ARGS, after the command's first word and before any `--`
/// among them, that is one of exec's own options (`--restrict`, `--json=…`, `-c`, `-cFILE`,
/// `-vv`): the user meant it for director, and it must not reach the nodes as text. A job
/// that asks for `--exec-help` runs nothing, so any word may follow it.
pub(crate) fn exec_option_in_command(args: &[String]) -> Option<&str> {
    let words = || args.iter().take_while(|w| *w != "--");
    if words().any(|w| w == "--exec-help") {
        return None;
    }
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    let exec = cli.find_subcommand("exec")?;
    let options: Vec<&clap::Arg> = exec.get_arguments().filter(|a| !a.is_positional()).collect();
    let long = |name: &str| {
        options
            .iter()
            .any(|a| a.get_long() == Some(name) || a.get_all_aliases().into_iter().flatten().any(|x| x == name))
    };
    // A short option, and whether it takes a value.
    let short = |c: char| {
        options
            .iter()
            .find(|a| a.get_short() == Some(c) || a.get_all_short_aliases().into_iter().flatten().any(|x| x == c))
            .map(|a| a.get_action().takes_values())
    };
    let is_option = |word: &str| {
        if let Some(name) = word.strip_prefix("--") {
            return long(name.split_once('=').map_or(name, |(n, _)| n));
        }
        let Some(letters) = word.strip_prefix('-') else { return false };
        let mut chars = letters.chars();
        match chars.next().and_then(short) {
            Some(true) => true,
            Some(false) => chars.all(|c| short(c) == Some(false)),
            None => false,
        }
    };
    words().skip(1).map(String::as_str).find(|w| is_option(w))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum JobFilter {
    Success,
    Failed,
    Processing,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").required(true).multiple(false)))]
pub(crate) struct ManageArgs {
    /// Every node the history knows, with its facts.
    #[arg(long, group = "action")]
    pub list_nodes: bool,
    /// Every recorded job, with how many nodes succeeded and failed.
    #[arg(long, group = "action")]
    pub list_jobs: bool,
    /// Every recorded run.
    #[arg(long, group = "action")]
    pub list_runs: bool,
    /// One job in full: definition, fingerprint, and each node's result and output.
    #[arg(long, value_name = "ID|last", group = "action")]
    pub job_info: Option<String>,
    /// One run in full: command, files, status, and each node's outcome.
    #[arg(long, value_name = "ID|last", group = "action")]
    pub run_info: Option<String>,
    /// Write every job and its results to FILE as YAML.
    #[arg(long, value_name = "FILE", group = "action")]
    pub export_jobs: Option<PathBuf>,
    /// Forget every finished run and its jobs (running runs are kept).
    #[arg(long, group = "action")]
    pub purge_jobs: bool,
    /// Forget every node's facts.
    #[arg(long, group = "action")]
    pub purge_nodes: bool,
    /// Stop a running run: its running jobs are killed on the nodes.
    #[arg(long, value_name = "RUN", group = "action")]
    pub cancel: Option<String>,
    /// With --list-jobs: only these jobs.
    #[arg(long, value_enum, requires = "list_jobs")]
    pub filter: Option<JobFilter>,
    /// With --list-runs, --list-jobs or --list-nodes: only the newest N.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// JSON on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Progress {
    /// Live view on a terminal, plain lines otherwise.
    Auto,
    /// The live view, even when stdout is not a terminal.
    Tui,
    /// One line per finished job and a summary.
    Plain,
    /// Only failures and the summary.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputShown {
    None,
    Failed,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum HostKeyChecking {
    AcceptNew,
    Strict,
    Off,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Catalog file(s); several are merged. Default: the embedded local catalog.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        env = "DIRECTOR_CATALOG",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub catalog: Vec<PathBuf>,
    /// Only these nodes: a comma list of node names, groups, hosts, globs (`web*`) and ranges
    /// (`web[1-4]`); `&TERM` intersects, `!TERM` excludes (repeatable).
    #[arg(long, value_name = "SELECTION")]
    pub restrict: Vec<String>,
    /// Print the nodes the run would reach and exit, contacting none.
    #[arg(long)]
    pub list_nodes: bool,
    /// Write one JSON event per line on stdout (see README, "JSON events").
    #[arg(long)]
    pub json: bool,
    /// How progress is shown.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: Progress,
    /// Whose output the results show: none, failed jobs', or all [default: all for exec,
    /// failed for orchestrate and bootstrap].
    /// (`--json` events carry every output: the two do not go together.)
    #[arg(long, value_enum, value_name = "WHICH", conflicts_with = "json")]
    pub output: Option<OutputShown>,
    /// Host key policy for every node (default: the catalog's, else accept-new).
    #[arg(long, value_enum, value_name = "POLICY")]
    pub host_key_checking: Option<HostKeyChecking>,
    /// ssh_config file to resolve nodes with, as `ssh -F` (`none`: none) [default:
    /// ~/.ssh/config, then /etc/ssh/ssh_config].
    #[arg(long, value_name = "FILE", env = "DIRECTOR_SSH_CONFIG", hide_env_values = true)]
    pub ssh_config: Option<PathBuf>,
    /// known_hosts file to check and record host keys in.
    #[arg(long, value_name = "FILE", env = "DIRECTOR_KNOWN_HOSTS", hide_env_values = true)]
    pub known_hosts: Option<PathBuf>,
    /// Seconds allowed for TCP connect plus SSH handshake, and again for authentication
    /// [default: ssh_config's ConnectTimeout, else 10].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub connect_timeout: Option<u64>,
    /// Run every job, whatever the node caches say (like --skip-cache on each job).
    #[arg(long)]
    pub ignore_cache: bool,
    /// Run nothing: connect, read each node's cache and report which jobs a run would run
    /// and why, and which it would answer from the cache. Nothing on the nodes changes.
    #[arg(long)]
    pub plan: bool,
    /// Show, as the job's output, the unified diff of every file an ADD/COPY writes (with
    /// --plan: would write), and the mode and owner changes; --output then defaults to all.
    #[arg(long)]
    pub diff: bool,
    /// Run the nodes in batches of N (or N% of them), each batch finishing all its jobs
    /// before the next starts.
    #[arg(long, value_name = "N|N%", value_parser = portion)]
    pub serial: Option<crate::catalog::portion::Portion>,
    /// Start no new batch once N nodes (or N% of them) failed or were unreachable; the nodes
    /// left are reported skipped [default: stop after a batch in which every node failed].
    #[arg(long, value_name = "N|N%", value_parser = portion)]
    pub max_fail: Option<crate::catalog::portion::Portion>,
    /// How long cached args and envs live on a node: seconds, or with a unit (90m, 12h, 2d).
    #[arg(long, value_name = "DURATION", default_value = "12h", value_parser = parse_duration)]
    pub args_ttl: u64,
    /// When another run holds some of these nodes, wait for it instead of exiting with 4.
    #[arg(long)]
    pub wait: bool,
    /// SSH handshakes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub connect_concurrency: u16,
    /// Run the jobs as another user on every node (--become-user, else the catalog's
    /// become_user, else root), through sudo unless the catalog says otherwise.
    #[arg(long = "become", short = 'b')]
    pub become_on: bool,
    /// The user to become (beats the catalog's become_user).
    #[arg(long, value_name = "USER", value_parser = user_name)]
    pub become_user: Option<String>,
    /// How to become it (beats the catalog's become_method).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub become_method: Option<BecomeMethodArg>,
    /// Ask for the become password once (on the terminal, or one line on stdin).
    #[arg(long, short = 'K')]
    pub ask_become_pass: bool,
    /// Read the become password from this file's first line (private to you: chmod 600).
    #[arg(
        long,
        value_name = "FILE",
        env = "DIRECTOR_BECOME_PASSWORD_FILE",
        conflicts_with = "ask_become_pass",
        hide_env_values = true
    )]
    pub become_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BecomeMethodArg {
    Sudo,
    Su,
    Doas,
}

fn portion(text: &str) -> Result<crate::catalog::portion::Portion, String> {
    crate::catalog::portion::Portion::parse(text)
}

/// A user name: one word without spaces or control characters.
fn user_name(text: &str) -> Result<String, String> {
    if !crate::catalog::is_word(text) {
        return Err(format!("`{text}` is not a user name"));
    }
    Ok(text.to_string())
}

/// `90`, `90s`, `15m`, `12h`, `2d` → seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (digits, unit) =
        text.trim().split_at(text.trim().find(|c: char| !c.is_ascii_digit()).unwrap_or(text.trim().len()));
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` is not a duration; use e.g. 3600, 90m, 12h or 2d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("`{text}` has an unknown unit; use s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|s| *s <= 10 * 365 * 86400)
        .ok_or_else(|| format!("`{text}` is longer than ten years; use e.g. 12h or 2d"))
}

/// The completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "director", &mut out);
    out
}

/// What `director man` prints: the page asked for (director(1) when none is), or, with
/// `dir`, every page written there and a line that says so.
pub(crate) fn man(page: Option<&str>, dir: Option<&std::path::Path>) -> Result<Vec<u8>, crate::error::Error> {
    use crate::error::{io_reason, suggest, Error};
    let mut pages = man_pages().map_err(|e| Error::internal(format!("cannot render the man pages: {e}")))?;
    if let Some(dir) = dir {
        for (name, text) in &pages {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| {
                Error::input(format!("cannot write {}: {}", path.display(), io_reason(&e)))
                    .hint("give a directory that exists and that you may write to")
            })?;
        }
        return Ok(format!("wrote {} man pages in {}\n", pages.len(), dir.display()).into_bytes());
    }
    let file = match page {
        Some(p) => format!("director-{p}.1"),
        None => "director.1".to_string(),
    };
    if let Some(at) = pages.iter().position(|(name, _)| *name == file) {
        return Ok(pages.swap_remove(at).1);
    }
    let names: Vec<&str> = pages.iter().filter_map(|(n, _)| n.strip_prefix("director-")?.strip_suffix(".1")).collect();
    let given = page.unwrap_or_default();
    let e = Error::input(format!("there is no man page `{given}`"));
    Err(match suggest(given, names.iter().copied()) {
        Some(s) => e.hint(format!("did you mean `director man {s}`?")),
        None => e.hint(format!("the pages: {}", names.join(", "))),
    })
}

/// Every man page: director(1), then director-SUBCOMMAND(1) for each subcommand, each as its
/// file name and its roff text.
pub(crate) fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut top = <Cli as clap::CommandFactory>::command();
    // Built, so that each subcommand carries the global options it takes.
    top.build();
    let version = env!("CARGO_PKG_VERSION");
    let page = |cmd: clap::Command| -> std::io::Result<(String, Vec<u8>)> {
        let name = cmd.get_name().to_string();
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd)
            .date(env!("DIRECTOR_DATE"))
            .source(format!("director {version}"))
            .manual("User Commands")
            .render(&mut out)?;
        Ok((format!("{name}.1"), out))
    };
    let subcommands: Vec<clap::Command> = top
        .get_subcommands()
        // `relay` is director's own business (started over SSH on a gateway): no page.
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
        .map(|s| {
            // clap names are 'static; these few live as long as the process does anyway.
            let name: &'static str = Box::leak(format!("director-{}", s.get_name()).into_boxed_str());
            let bin: &'static str = Box::leak(name.replacen('-', " ", 1).into_boxed_str());
            s.clone().name(name).bin_name(bin)
        })
        .collect();
    let mut pages = vec![page(top.clone())?];
    for sub in subcommands {
        pages.push(page(sub)?);
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(line: &str) -> (Vec<String>, bool) {
        let argv: Vec<std::ffi::OsString> = line.split(' ').map(Into::into).collect();
        match parse(&argv).unwrap().command {
            Command::Exec { args, escaped, .. } => (args, escaped),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_word_before_exec_args_is_an_escape_only_when_it_is_the_separator() {
        assert_eq!(
            exec("director exec echo hi --restrict x"),
            (vec!["echo".into(), "hi".into(), "--restrict".into(), "x".into()], false)
        );
        assert!(exec("director exec -- echo hi --restrict x").1);
        assert!(exec("director exec -c f.yaml -- echo").1);
        assert!(!exec("director exec -c f.yaml echo -- hi").1);
        assert!(!exec("director exec --verb RUN echo").1);
    }

    #[test]
    fn exec_options_after_the_command_are_found_and_other_words_are_text() {
        let found = |line: &str| {
            let args: Vec<String> = line.split(' ').map(Into::into).collect();
            exec_option_in_command(&args).map(str::to_string)
        };
        assert_eq!(found("echo hi --restrict nosuchnode").as_deref(), Some("--restrict"));
        assert_eq!(found("systemctl restart app --target web1").as_deref(), Some("--target"));
        assert_eq!(found("uname -n --json").as_deref(), Some("--json"));
        assert_eq!(found("uptime -c fleet.yaml").as_deref(), Some("-c"));
        assert_eq!(found("uptime -cfleet.yaml").as_deref(), Some("-cfleet.yaml"));
        assert_eq!(found("uptime --catalog=fleet.yaml").as_deref(), Some("--catalog=fleet.yaml"));
        assert_eq!(found("uptime -vv").as_deref(), Some("-vv"), "a global option");
        assert_eq!(found("uptime --history h.db").as_deref(), Some("--history"), "a global option");
        assert_eq!(found("uptime --help").as_deref(), Some("--help"));
        assert_eq!(found("ls -la /tmp"), None);
        assert_eq!(found("uname -n"), None);
        assert_eq!(found("grep --restricted x"), None);
        assert_eq!(found("echo hi -- --restrict x"), None, "after -- every word is text");
        assert_eq!(found("--json"), None, "the first word is never one: clap would have taken it");
        assert_eq!(found("--exec-help --catalog f.yaml"), None, "help runs nothing");
    }
}
