//! A catalog node: who it is, how to reach it (address, user, key, jump hosts, transport),
//! whose account its jobs run as, and the host-key policy it is checked with. The readers of
//! the catalog formats fill it; the transport reads it.

use super::account::Become;
use super::yaml::Seg;
use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TransportKind {
    Ssh,
    Local,
}

/// What to do with a host key that known_hosts does not have, or has another of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HostKeyPolicy {
    /// Record unknown keys; refuse changed ones (OpenSSH's `accept-new`).
    AcceptNew,
    /// Refuse unknown and changed keys.
    Strict,
    /// Check nothing. Only when asked for, and with a warning.
    Off,
}

impl HostKeyPolicy {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "accept-new" => Some(HostKeyPolicy::AcceptNew),
            "strict" | "yes" => Some(HostKeyPolicy::Strict),
            "off" | "no" => Some(HostKeyPolicy::Off),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    /// Where `identity_file` was written, for errors about the key.
    pub identity_at: IdentityOrigin,
    /// ssh_config's ProxyCommand for the node, its tokens expanded: run with `sh -c`, the
    /// session goes over its stdin and stdout.
    pub proxy_command: Option<String>,
    /// ssh_config's `UserKnownHostsFile` and `GlobalKnownHostsFile` for the node (empty: not
    /// set there).
    pub user_known_hosts: Vec<PathBuf>,
    pub global_known_hosts: Vec<PathBuf>,
    /// Write the node's host key hashed when recording it (ssh_config's HashKnownHosts).
    pub hash_known_hosts: bool,
    /// Jump hosts to reach the node through, first hop first (`via:`, else ssh_config's
    /// ProxyJump); resolved before any contact.
    pub jumps: Vec<Jump>,
    /// Whether the catalog set the user and the port (they beat ssh_config; the defaults do
    /// not).
    pub user_set: bool,
    pub port_set: bool,
    pub groups: Vec<String>,
    pub vars: Map<String, Value>,
    /// The names among `vars` whose values are secret (see [`crate::secret`]).
    pub secret_vars: Vec<String>,
    pub transport: TransportKind,
    pub host_key_checking: Option<HostKeyPolicy>,
    /// Whether its jobs become another user, which, and how (see [`account`]).
    pub becomes: Become,
    /// What ssh_config says of it beyond where it is.
    pub ssh: SshOptions,
    /// The catalog node it is driven through (`relay:`), and where that was written.
    pub relay: Option<Relay>,
    /// Where the node was defined: document index and path, for error messages.
    pub origin: (usize, Vec<Seg>),
}

/// A node's `relay:`: the catalog node (a site's gateway) that runs the engine for it, and
/// where the catalog says so (document index and path), for errors.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Relay {
    pub name: String,
    pub at: (usize, Vec<Seg>),
}

/// One jump host on the way to a node: written `[user@]host[:port]`, then resolved through
/// ssh_config as `ssh` resolves a jump host.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Jump {
    /// As written (for messages and to share one connection per bastion).
    pub spec: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
    /// What ssh_config says of the hop beyond where it is.
    pub ssh: SshOptions,
}

/// What ssh_config says of a node (or a jump host) beyond where it is: filled in by
/// `transport::ssh_config::apply`, used by the SSH transport. Empty for nodes no ssh_config
/// speaks of.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SshOptions {
    /// HostKeyAlias: the name its host key is looked up and recorded under (no port).
    pub host_key_alias: Option<String>,
    /// ConnectTimeout, where `--connect-timeout` was not given.
    pub connect_timeout: Option<std::time::Duration>,
    /// ServerAliveInterval (seconds, 0: none) and ServerAliveCountMax.
    pub server_alive: Option<(u64, u32)>,
    /// IdentitiesOnly: the agent's other keys are not offered.
    pub identities_only: bool,
    /// CertificateFile: user certificates, offered with the key they certify.
    pub certificate_files: Vec<PathBuf>,
    /// IdentityAgent.
    pub agent: AgentSocket,
    /// KexAlgorithms, Ciphers, MACs and HostKeyAlgorithms as written (`+`, `-`, `^` lists),
    /// mapped onto what director's SSH offers.
    pub kex: Option<String>,
    pub ciphers: Option<String>,
    pub macs: Option<String>,
    pub host_key_algorithms: Option<String>,
}

/// Where ssh-agent is reached (IdentityAgent).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum AgentSocket {
    /// `SSH_AUTH_SOCK`.
    #[default]
    Environment,
    /// `none`: no agent.
    Off,
    Path(PathBuf),
}

impl Jump {
    /// `[user@]host[:port]`, with the node's login user and port 22 as defaults; the
    /// resolution through ssh_config fills in the rest.
    pub fn parse(spec: &str) -> Option<Jump> {
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
            _ => (rest.to_string(), None),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return None;
        }
        Some(Jump {
            spec: spec.to_string(),
            host,
            port: port.unwrap_or(0),
            user: user.unwrap_or_default(),
            identity_file: None,
            ssh: SshOptions::default(),
        })
    }
}

/// Where a node's identity file was given.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum IdentityOrigin {
    /// A path in the node's document (its own key, `defaults:`, a Directord `args`).
    Catalog(Vec<Seg>),
    /// `bootstrap --key-file`.
    KeyFile,
    /// An `IdentityFile` line of ssh_config (`file:line`).
    SshConfig(String),
}

/// The user name SSH uses when the catalog gives none, as OpenSSH does.
pub(crate) fn local_user() -> String {
    std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "root".to_string())
}
