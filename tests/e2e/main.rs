//! End-to-end tests: the real `director` binary against real OpenSSH servers (see harness.rs)
//! and against the local transport. Error texts are compared word for word.

mod auth; // keys, the agent, passwords, ssh_config identities
mod cache; // the node cache's journal: killed executors, concurrent runs, size
mod cli; // the command line: bad input, usage errors, a closed stdout, completions
mod corpus; // Directord's own functional tests, unchanged
mod elf; // what a linked binary holds (nm, readelf), shared with the scale bench
mod escalate; // become: sudo, su, passwords kept secret
mod exec; // `director exec`
mod executor; // the executor: install, replacement, probe, death
mod faults; // stalls, lost and hostile nodes, Ctrl-C, pacing, open-file limits
mod harness; // the fleet: real sshd hosts in their own namespaces
mod helpers; // running the binary and reading its events
mod history; // history, manage, locks, cancel, retry, bootstrap
mod hostkeys; // known_hosts with ssh-keygen as the oracle
mod inputs; // the bad-input suite (tests/inputs/)
mod inventory; // Ansible inventories
mod layout; // the release build's code layout (packaging/hot_code.rs), linked for real
mod logging; // DIRECTOR_LOG and -v
mod plan; // --plan and --diff
mod podman; // CONTAINER_IMAGE and POD with podman
mod relay; // sites behind relays: one session per gateway, the engine there
mod postgres; // the history on a PostgreSQL server operators share
mod rollout; // --serial batches
mod run; // orchestrations: jobs, entries, selection, templates, facts
mod schema; // the --json events, typed
mod secrets; // secrets never reach a log, an event or the history
mod ssh_config; // ssh_config with ssh -G as the oracle
mod systemd; // SERVICE, the package verbs and REBOOT on systemd booted in nspawn
mod tui; // the TUI and the inline view in tmux
mod verbs; // each verb on a real node

use harness::Fleet;
pub(crate) use helpers::*;
use schema::Event;
use std::path::Path;
use std::process::{Command, Output};
