//! The SSH transport: one russh connection per node for the whole run.
//!
//! It owns the handshake (bounded by a timeout, paced by [`Gates`] so a burst of connections
//! never trips sshd's MaxStartups, retried when sshd drops one anyway), host key checking
//! (through [`super::known_hosts`]), authentication (the catalog's key file, else ssh-agent,
//! else the default key files), and exec channels: the probe and install scripts of
//! [`super::Connection`] run on them, and the executor's session is one of them. Every job of
//! the run then streams over that channel (one per account the node's jobs run as); no
//! channel is opened per job.

use super::auth::describe;
pub(crate) use super::auth::Credentials;
use super::known_hosts::HostKeyCheck;
use super::{lock, Link};
use crate::catalog::{HostKeyPolicy, Node};
use russh::client;
use russh::keys::PublicKeyOrCertificate;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Handshakes in flight towards one address (sshd's MaxStartups starts dropping at 10).
pub(crate) const PER_ADDRESS_HANDSHAKES: usize = 8;
/// Idle time after which a keepalive is sent.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Attempts for a handshake that sshd dropped (reset, early EOF).
const HANDSHAKE_ATTEMPTS: u32 = 4;

/// Limits on handshakes in flight: overall, and per address.
pub(crate) struct Gates {
    overall: Semaphore,
    per_address: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Gates {
    pub(crate) fn new(overall: usize) -> Self {
        Gates { overall: Semaphore::new(overall.max(1)), per_address: Mutex::new(HashMap::new()) }
    }

    fn address(&self, address: &str) -> Arc<Semaphore> {
        let mut map = lock(&self.per_address);
        map.entry(address.to_string()).or_insert_with(|| Arc::new(Semaphore::new(PER_ADDRESS_HANDSHAKES))).clone()
    }
}

pub(crate) struct SshSettings {
    pub connect_timeout: Duration,
    /// `--connect-timeout` was given: it beats ssh_config's ConnectTimeout.
    pub connect_timeout_given: bool,
    pub known_hosts: Arc<super::known_hosts::KnownHosts>,
    /// Used for nodes whose catalog entry does not set `host_key_checking`.
    pub host_key_policy: HostKeyPolicy,
    /// Set by `--host-key-checking`: beats the catalog.
    pub host_key_override: Option<HostKeyPolicy>,
    pub credentials: Credentials,
    pub gates: Gates,
    /// Sessions on jump hosts, by route: one per bastion for every node behind it.
    pub bastions: Bastions,
}

/// The jump-host sessions of a run, by route (each opened once, on first use).
#[derive(Default)]
pub(crate) struct Bastions(Mutex<HashMap<String, Arc<BastionCell>>>);

/// One jump-host session: opened once by the first node that needs it, or why it could not be.
type BastionCell = tokio::sync::OnceCell<Result<Arc<client::Handle<Client>>, String>>;

struct Client {
    check: HostKeyCheck,
    refusal: Arc<Mutex<Option<String>>>,
    /// The known_hosts file the host's key was just recorded in, when it was new.
    recorded: Arc<Mutex<Option<std::path::PathBuf>>>,
    /// The local ssh-agent to forward to, once a channel of this session asked for agent
    /// forwarding ([`SshConnection::exec_forwarding_agent`]); until then, or for a session
    /// that never asks, a server's agent channel is refused.
    agent: Arc<Mutex<Option<std::path::PathBuf>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn kex_done(
        &mut self,
        _secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        tracing::debug!(
            node = %self.check.node,
            kex = %names.kex.as_ref(),
            host_key = %names.key,
            cipher = %names.cipher.as_ref(),
            mac = %names.client_mac.as_ref(),
            "algorithms negotiated"
        );
        Ok(())
    }

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check.check(key),
            PublicKeyOrCertificate::Certificate(cert) => self.check.check_certificate(cert),
        };
        match verdict {
            Ok(recorded) => {
                *lock(&self.recorded) = recorded;
                Ok(true)
            }
            Err(reason) => {
                *lock(&self.refusal) = Some(reason);
                Ok(false)
            }
        }
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let Some(socket) = lock(&self.agent).clone() else {
            tracing::warn!(node = %self.check.node, "the server opened an agent channel nobody asked for: refused");
            reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        // Accepted at once and connected aside: the session's loop must not wait on the
        // agent (its backlog may be full for a moment).
        reply.accept().await;
        let node = self.check.node.clone();
        tokio::spawn(async move {
            match super::auth::connect_agent(&socket).await {
                Ok(mut agent) => {
                    let mut stream = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut agent).await;
                }
                Err(e) => {
                    tracing::warn!(node = %node, "cannot reach the ssh-agent at {}: {e}", socket.display());
                    let _ = channel.close().await;
                }
            }
        });
        Ok(())
    }
}

/// A session whose host key was accepted: its handle, the ProxyCommand it goes through, and
/// the known_hosts file its key was just recorded in when it was new.
struct Handshake {
    handle: client::Handle<Client>,
    proxy: Option<tokio::process::Child>,
    recorded: Option<std::path::PathBuf>,
    agent: Arc<Mutex<Option<std::path::PathBuf>>>,
}

pub(crate) struct SshConnection {
    handle: client::Handle<Client>,
    /// The ProxyCommand the session goes through: killed when the connection goes.
    proxy: Option<Box<tokio::process::Child>>,
    /// Commands started on the node that have not yet done what they were started for.
    unsettled: Unsettled,
    /// The known_hosts file the node's key was recorded in by this connection (a new host).
    pub(crate) recorded: Option<std::path::PathBuf>,
    /// Where the server's agent channels go ([`Client::agent`]).
    agent: Arc<Mutex<Option<std::path::PathBuf>>>,
}

/// The channels of commands that have not yet done what they were started for (a probe whose
/// executor has not answered, a script still running), by channel: when the connection
/// closes, sshd is asked to signal each one's processes ([`SshConnection::close`]). Closing
/// the channel is not enough: sshd leaves a command without a terminal running, and a login
/// script that stalls (`sleep 1000` in `~/.bashrc`) would stay on the node.
type Unsettled = Arc<Mutex<HashMap<russh::ChannelId, Arc<russh::ChannelWriteHalf<client::Msg>>>>>;

/// How long processes signalled with TERM get before KILL (sudo passes TERM on to the command
/// it runs in a session of its own; KILL cannot be passed on).
const TERM_GRACE: Duration = Duration::from_millis(200);

/// russh's algorithms, with the host key types known for the host first, as OpenSSH orders
/// them: a host known by its RSA key is asked for that key, so a second key type it has
/// does not read as a changed key.
fn preferred_for(mut preferred: russh::Preferred, known: &[russh::keys::Algorithm]) -> russh::Preferred {
    if !known.is_empty() {
        let rsa = |a: &russh::keys::Algorithm| matches!(a, russh::keys::Algorithm::Rsa { .. });
        let same = |a: &russh::keys::Algorithm, b: &russh::keys::Algorithm| a == b || (rsa(a) && rsa(b));
        let mut keys = preferred.key.to_vec();
        keys.sort_by_key(|a| !known.iter().any(|k| same(k, a)));
        preferred.key = std::borrow::Cow::Owned(keys);
    }
    preferred
}

/// An OpenSSH algorithm list applied to `defaults`: `a,b` replaces them, `+a,b` appends,
/// `-a*,b` removes (patterns), `^a,b` puts first. Only names in `supported` are kept; the
/// others come back to be warned about.
fn algorithm_list(spec: &str, defaults: &[String], supported: &[String]) -> (Vec<String>, Vec<String>) {
    let (mode, names) = match spec.chars().next() {
        Some(c @ ('+' | '-' | '^')) => (c, &spec[1..]),
        _ => (' ', spec),
    };
    let wanted: Vec<&str> = names.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let unknown: Vec<String> = match mode {
        '-' => Vec::new(),
        _ => {
            wanted.iter().filter(|n| !supported.iter().any(|s| s == *n)).map(std::string::ToString::to_string).collect()
        }
    };
    let known = wanted.iter().filter(|n| supported.iter().any(|s| s == *n)).map(std::string::ToString::to_string);
    let list: Vec<String> = match mode {
        '+' => defaults.iter().cloned().chain(known.filter(|n| !defaults.contains(n))).collect(),
        '^' => {
            let first: Vec<String> = known.collect();
            first.iter().cloned().chain(defaults.iter().filter(|d| !first.contains(d)).cloned()).collect()
        }
        '-' => defaults.iter().filter(|d| !super::pattern::list(names, d)).cloned().collect(),
        _ => known.collect(),
    };
    (list, unknown)
}

/// The ciphers asked for when ssh_config names none: russh's, but with AES-GCM first where
/// this machine has AES instructions (AES-NI and carry-less multiply, or ARMv8's AES and
/// PMULL), where it costs a fraction of ChaCha20-Poly1305 on both ends (the operator's and
/// sshd's) for everything sent: the executor on first contact, ADD's files, outputs. Without
/// them ChaCha20-Poly1305 stays first, as OpenSSH puts it (it is the faster one then, and
/// constant-time). ssh_config's `Ciphers` (`+`, `-`, `^` included) applies to this list.
fn default_ciphers(hardware_aes: bool) -> Vec<russh::cipher::Name> {
    let mut ciphers = russh::Preferred::default().cipher.into_owned();
    if hardware_aes {
        if let Some(at) = ciphers.iter().position(|c| *c == russh::cipher::AES_256_GCM) {
            let gcm = ciphers.remove(at);
            ciphers.insert(0, gcm);
        }
    }
    ciphers
}

/// Whether this machine has the instructions AES-GCM runs fast with.
fn hardware_aes() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull");
    #[allow(unreachable_code)]
    false
}

/// russh's algorithms for a node as ssh_config's KexAlgorithms, Ciphers, MACs and
/// HostKeyAlgorithms say, and the names asked for that director's SSH does not have. A
/// list that leaves nothing is an error.
pub(crate) fn preferred(options: &crate::catalog::SshOptions) -> Result<(russh::Preferred, Vec<String>), String> {
    let mut preferred = russh::Preferred { cipher: default_ciphers(hardware_aes()).into(), ..Default::default() };
    let mut unknown = Vec::new();
    let mut pick = |what: &str, spec: &Option<String>, defaults: Vec<String>, supported: Vec<String>| {
        let Some(spec) = spec else { return Ok(None) };
        let (list, missing) = algorithm_list(spec, &defaults, &supported);
        unknown.extend(missing.into_iter().map(|m| format!("{what} {m}")));
        if list.is_empty() {
            return Err(format!(
                "{what} `{spec}` leaves no algorithm director's SSH has (it has: {})",
                supported.join(",")
            ));
        }
        Ok(Some(list))
    };
    let kex = preferred.kex.iter().map(|n| n.as_ref().to_string()).collect();
    let all_kex = russh::kex::ALL_KEX_ALGORITHMS.iter().map(|n| n.as_ref().to_string()).collect();
    if let Some(list) = pick("KexAlgorithms", &options.kex, kex, all_kex)? {
        preferred.kex = list.iter().filter_map(|n| russh::kex::Name::try_from(n.as_str()).ok()).collect();
    }
    let ciphers = preferred.cipher.iter().map(|n| n.as_ref().to_string()).collect();
    let all_ciphers = russh::cipher::ALL_CIPHERS.iter().map(|n| n.as_ref().to_string()).collect();
    if let Some(list) = pick("Ciphers", &options.ciphers, ciphers, all_ciphers)? {
        preferred.cipher = list.iter().filter_map(|n| russh::cipher::Name::try_from(n.as_str()).ok()).collect();
    }
    let macs = preferred.mac.iter().map(|n| n.as_ref().to_string()).collect();
    let all_macs = russh::mac::ALL_MAC_ALGORITHMS.iter().map(|n| n.as_ref().to_string()).collect();
    if let Some(list) = pick("MACs", &options.macs, macs, all_macs)? {
        preferred.mac = list.iter().filter_map(|n| russh::mac::Name::try_from(n.as_str()).ok()).collect();
    }
    // Host key algorithms: certificate types are asked for where a @cert-authority line
    // trusts a CA for the host (see handshake); the plain types are these.
    let keys: Vec<String> = preferred.key.iter().map(|a| a.as_str().to_string()).collect();
    let host_keys = options
        .host_key_algorithms
        .as_ref()
        .map(|spec| spec.split(',').filter(|n| !n.contains("-cert-v01@openssh.com")).collect::<Vec<_>>().join(","));
    let host_keys = host_keys.map(|h| match options.host_key_algorithms.as_deref().and_then(|s| s.chars().next()) {
        Some(c @ ('+' | '-' | '^')) if !h.starts_with(c) => format!("{c}{h}"),
        _ => h,
    });
    let all_keys = russh::keys::key::ALL_KEY_TYPES.iter().map(|a| a.as_str().to_string()).collect();
    if let Some(list) = pick("HostKeyAlgorithms", &host_keys, keys, all_keys)? {
        preferred.key = list.iter().filter_map(|n| russh::keys::Algorithm::new(n).ok()).collect();
    }
    Ok((preferred, unknown))
}

fn transient(e: &russh::Error) -> bool {
    match e {
        russh::Error::IO(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted
        ),
        russh::Error::Disconnect | russh::Error::HUP => true,
        _ => false,
    }
}

/// What a handshake reaches: a node, or a jump host on the way to one.
struct Target<'a> {
    /// How it is named in messages and host-key errors.
    name: String,
    host: &'a str,
    port: u16,
    /// Record a new host key hashed.
    hash: bool,
    /// A ProxyCommand to reach it through (its stdin and stdout carry the session).
    proxy: Option<&'a str>,
    /// The known_hosts files its key is checked against.
    files: Arc<super::known_hosts::KnownHosts>,
    /// What ssh_config says of it (HostKeyAlias, ConnectTimeout, ServerAlive*, algorithms).
    ssh: &'a crate::catalog::SshOptions,
}

impl Target<'_> {
    /// The name and port its host key is looked up and recorded under: HostKeyAlias (with no
    /// port, as sshconnect.c records it), else the host and port.
    fn key_name(&self) -> (&str, u16) {
        match &self.ssh.host_key_alias {
            Some(alias) => (alias, 22),
            None => (self.host, self.port),
        }
    }
}

/// The connect timeout for `ssh`: `--connect-timeout` when given, else ssh_config's
/// ConnectTimeout, else the default.
fn connect_timeout(settings: &SshSettings, ssh: &crate::catalog::SshOptions) -> Duration {
    match (settings.connect_timeout_given, ssh.connect_timeout) {
        (false, Some(t)) => t,
        _ => settings.connect_timeout,
    }
}

/// Opens an SSH session to `target`, directly or through the session `via` (a direct-tcpip
/// channel on it): bounded by the connect timeout, retried when sshd drops a burst, host key
/// checked. Authentication is the caller's.
async fn handshake(
    target: &Target<'_>,
    via: Option<&client::Handle<Client>>,
    settings: &SshSettings,
    policy: HostKeyPolicy,
) -> Result<Handshake, String> {
    let address = format!("{}:{}", target.host, target.port);
    let (key_host, key_port) = target.key_name();
    let timeout = connect_timeout(settings, target.ssh);
    // ssh_config's lists were checked when it was applied.
    let (base, _) = preferred(target.ssh)?;
    // A lost node is noticed within about 15 s (three unanswered keepalives 5 s apart), not
    // after a TCP timeout of minutes; ServerAliveInterval/CountMax say otherwise (0: none).
    let (keepalive_interval, keepalive_max) = match target.ssh.server_alive {
        Some((0, _)) => (None, 0),
        Some((secs, count)) => (Some(Duration::from_secs(secs)), count as usize),
        None => (Some(KEEPALIVE_INTERVAL), 2),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let refusal = Arc::new(Mutex::new(None));
        let recorded = Arc::new(Mutex::new(None));
        let agent = Arc::new(Mutex::new(None));
        let handler = Client {
            agent: agent.clone(),
            check: HostKeyCheck {
                node: target.name.clone(),
                host: key_host.to_string(),
                port: key_port,
                policy,
                files: target.files.clone(),
                hash: target.hash,
            },
            refusal: refusal.clone(),
            recorded: recorded.clone(),
        };
        let mut preferred = preferred_for(base.clone(), &target.files.known_algorithms(key_host, key_port));
        if target.files.has_authority(key_host, key_port) {
            // A CA is trusted for this host: ask for its certificate first, as ssh does.
            preferred.host_key_certificates = preferred.key.clone();
        }
        let config = Arc::new(client::Config {
            preferred,
            inactivity_timeout: None,
            keepalive_interval,
            keepalive_max,
            nodelay: true,
            ..Default::default()
        });
        let mut proxy = None;
        let outcome = tokio::time::timeout(timeout, async {
            match (via, target.proxy) {
                (Some(bastion), _) => {
                    let channel =
                        bastion.channel_open_direct_tcpip(target.host, u32::from(target.port), "127.0.0.1", 0).await?;
                    client::connect_stream(config, channel.into_stream(), handler).await
                }
                (None, Some(command)) => {
                    // As sshconnect.c runs it: `sh -c "exec COMMAND"`, so the process killed
                    // when the node is done is the command itself, not a shell around it.
                    let mut child = tokio::process::Command::new("/bin/sh")
                        .arg("-c")
                        .arg(format!("exec {command}"))
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::null())
                        .kill_on_drop(true)
                        .spawn()
                        .map_err(russh::Error::IO)?;
                    let (Some(out), Some(input)) = (child.stdout.take(), child.stdin.take()) else {
                        return Err(russh::Error::Disconnect);
                    };
                    proxy = Some(child);
                    client::connect_stream(config, tokio::io::join(out, input), handler).await
                }
                (None, None) => {
                    // What client::connect does, with the TCP connect timed on its own.
                    let tcp = Instant::now();
                    let socket = tokio::net::TcpStream::connect((target.host, target.port)).await?;
                    let _ = socket.set_nodelay(true);
                    tracing::info!(node = %target.name, ms = tcp.elapsed().as_millis() as u64, "tcp connected to {address}");
                    client::connect_stream(config, super::tcp::QuickAck::new(socket), handler).await
                }
            }
        })
        .await;
        match outcome {
            Err(_) => return Err(format!("connection to {address} timed out after {} s", timeout.as_secs())),
            Ok(Ok(handle)) => return Ok(Handshake { handle, proxy, recorded: lock(&recorded).take(), agent }),
            Ok(Err(e)) => {
                if let Some(reason) = lock(&refusal).take() {
                    return Err(reason);
                }
                if transient(&e) && attempt < HANDSHAKE_ATTEMPTS {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    continue;
                }
                let how = match (via, target.proxy) {
                    (Some(_), _) => " through the jump host".to_string(),
                    (None, Some(command)) => format!(" through ProxyCommand `{command}`"),
                    (None, None) => String::new(),
                };
                return Err(format!("cannot connect to {address}{how}: {}", describe(&e)));
            }
        }
    }
}

/// The session on the last jump host of `node`'s route, shared by every node behind the same
/// hops: opened once (each hop through the one before), authenticated, kept for the run.
async fn bastion(
    node: &Node,
    settings: &SshSettings,
    policy: HostKeyPolicy,
) -> Result<Arc<client::Handle<Client>>, String> {
    let mut via: Option<Arc<client::Handle<Client>>> = None;
    let mut key = String::new();
    for hop in &node.jumps {
        key.push_str(&format!("{}@{}:{}>", hop.user, hop.host, hop.port));
        let cell = {
            let mut map = lock(&settings.bastions.0);
            map.entry(key.clone()).or_default().clone()
        };
        let before = via.clone();
        let opened = cell
            .get_or_init(|| async {
                let target = Target {
                    name: format!("jump host {}", hop.spec),
                    host: &hop.host,
                    port: hop.port,
                    hash: node.hash_known_hosts,
                    proxy: None,
                    files: settings.known_hosts.for_node(&node.user_known_hosts, &node.global_known_hosts),
                    ssh: &hop.ssh,
                };
                let Handshake { handle, agent, .. } = handshake(&target, before.as_deref(), settings, policy).await?;
                let mut conn =
                    SshConnection { handle, proxy: None, unsettled: Unsettled::default(), recorded: None, agent };
                let login = Node {
                    name: target.name.clone(),
                    host: hop.host.clone(),
                    port: hop.port,
                    user: hop.user.clone(),
                    identity_file: hop.identity_file.clone(),
                    jumps: Vec::new(),
                    ssh: hop.ssh.clone(),
                    ..node.clone()
                };
                let timeout = connect_timeout(settings, &hop.ssh);
                match tokio::time::timeout(timeout, conn.authenticate(&login, &settings.credentials)).await {
                    Err(_) => Err(format!("authentication to jump host {} timed out", hop.spec)),
                    Ok(Err(e)) => Err(format!("jump host {}: {e}", hop.spec)),
                    Ok(Ok(())) => Ok(Arc::new(conn.handle)),
                }
            })
            .await
            .clone()?;
        via = Some(opened);
    }
    via.ok_or_else(|| "no jump host".to_string())
}

/// Connects and authenticates, directly or through the node's jump hosts; every failure is
/// text for the node's event.
pub(crate) async fn connect(node: &Node, settings: &SshSettings) -> Result<(SshConnection, u64), String> {
    let _overall = settings.gates.overall.acquire().await.map_err(|e| e.to_string())?;
    let address = format!("{}:{}", node.host, node.port);
    let gate = settings.gates.address(&address);
    let _slot = gate.acquire().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let policy = settings.host_key_override.or(node.host_key_checking).unwrap_or(settings.host_key_policy);
    let via = if node.jumps.is_empty() { None } else { Some(bastion(node, settings, policy).await?) };
    let target = Target {
        name: node.name.clone(),
        host: &node.host,
        port: node.port,
        hash: node.hash_known_hosts,
        proxy: node.proxy_command.as_deref(),
        files: settings.known_hosts.for_node(&node.user_known_hosts, &node.global_known_hosts),
        ssh: &node.ssh,
    };
    tracing::info!(
        node = %node.name,
        user = %node.user,
        jump = %node.jumps.iter().map(|j| format!("{}@{}:{}", j.user, j.host, j.port)).collect::<Vec<_>>().join(","),
        proxy_command = node.proxy_command.as_deref().unwrap_or(""),
        identity = %node.identity_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        host_key_checking = ?policy,
        connect_timeout_s = connect_timeout(settings, &node.ssh).as_secs(),
        waited_ms = started.elapsed().as_millis() as u64,
        "resolved {address}"
    );
    let handshake_started = Instant::now();
    let Handshake { handle, proxy, recorded, agent } = handshake(&target, via.as_deref(), settings, policy).await?;
    tracing::info!(node = %node.name, ms = handshake_started.elapsed().as_millis() as u64, "handshake done, host key accepted");
    let mut conn =
        SshConnection { handle, proxy: proxy.map(Box::new), unsettled: Unsettled::default(), recorded, agent };
    let timeout = connect_timeout(settings, &node.ssh);
    let auth_started = Instant::now();
    match tokio::time::timeout(timeout, conn.authenticate(node, &settings.credentials)).await {
        Err(_) => return Err(format!("authentication to {address} timed out after {} s", timeout.as_secs())),
        Ok(Err(e)) => {
            tracing::info!(node = %node.name, ms = auth_started.elapsed().as_millis() as u64, "authentication failed: {e}");
            return Err(e);
        }
        Ok(Ok(())) => {}
    }
    tracing::info!(node = %node.name, ms = auth_started.elapsed().as_millis() as u64, "authenticated as {}", node.user);
    Ok((conn, started.elapsed().as_millis() as u64))
}

impl SshConnection {
    async fn authenticate(&mut self, node: &Node, creds: &Credentials) -> Result<(), String> {
        super::auth::authenticate(&mut self.handle, node, creds).await
    }

    /// Runs `command` on a channel of its own: a link to whatever it starts, unsettled until
    /// [`Link::settled`] says it did what it was started for.
    pub(super) async fn exec_link(&self, command: String) -> Result<Link, String> {
        self.exec_with(command, None).await
    }

    /// [`SshConnection::exec_link`] with the local ssh-agent at `agent` forwarded to the
    /// command for as long as the session lasts (`ssh -A` for one command): what a relay
    /// authenticates to its site's nodes with, without a private key leaving this machine.
    pub(crate) async fn exec_forwarding_agent(&self, command: String, agent: &std::path::Path) -> Result<Link, String> {
        self.exec_with(command, Some(agent)).await
    }

    async fn exec_with(&self, command: String, agent: Option<&std::path::Path>) -> Result<Link, String> {
        let channel =
            self.handle.channel_open_session().await.map_err(|e| format!("cannot open a channel: {}", describe(&e)))?;
        let id = channel.id();
        let (read, write) = channel.split();
        let write = Arc::new(write);
        lock(&self.unsettled).insert(id, write.clone());
        if let Some(socket) = agent {
            *lock(&self.agent) = Some(socket.to_path_buf());
            write.agent_forward(false).await.map_err(|e| format!("cannot forward the ssh-agent: {}", describe(&e)))?;
        }
        write.exec(true, command).await.map_err(|e| format!("cannot start the executor: {}", describe(&e)))?;
        let writer = write.make_writer();
        let unsettled = Arc::downgrade(&self.unsettled);
        let settle = move || {
            if let Some(unsettled) = unsettled.upgrade() {
                lock(&unsettled).remove(&id);
            }
        };
        Ok(Link {
            writer: Box::new(writer),
            incoming: super::Feed::channel(read),
            pending: Vec::new(),
            guard: Some(Box::new(write)),
            settle: Some(Box::new(settle)),
        })
    }

    /// Ends the session; a ProxyCommand it went through is killed and waited for. The
    /// processes of commands that are still unsettled are signalled first, TERM then KILL
    /// (sshd sends a signal to the command's process group; OpenSSH 8.1 and later).
    pub(crate) async fn close(self) {
        let unsettled: Vec<_> = lock(&self.unsettled).drain().map(|(_, channel)| channel).collect();
        if !unsettled.is_empty() {
            for channel in &unsettled {
                let _ = channel.signal(russh::Sig::TERM).await;
            }
            tokio::time::sleep(TERM_GRACE).await;
            for channel in &unsettled {
                let _ = channel.signal(russh::Sig::KILL).await;
            }
            for channel in &unsettled {
                let _ = channel.close().await;
            }
            tracing::info!(commands = unsettled.len(), "signalled the unsettled commands on the node");
        }
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
        if let Some(mut proxy) = self.proxy {
            let _ = proxy.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::SshOptions;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    /// russh is the patched copy in vendor/russh (its PATCHED.md): each connection's four
    /// internal queues allocate 32 slots of these at once, 17.5 KB a queue unpatched.
    #[test]
    fn russh_is_the_patched_copy_whose_queue_slots_are_small() {
        let slot = std::mem::size_of::<russh::client::Msg>();
        assert!(slot <= 128, "russh::client::Msg is {slot} bytes: is vendor/russh still the russh built?");
    }

    #[test]
    fn aes_gcm_comes_first_where_the_machine_has_aes_instructions() {
        let names = |list: Vec<russh::cipher::Name>| list.iter().map(|c| c.as_ref().to_string()).collect::<Vec<_>>();
        let russh = names(russh::Preferred::default().cipher.into_owned());
        assert_eq!(russh[..2], ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com"]);
        assert_eq!(names(default_ciphers(false)), russh);
        let fast = names(default_ciphers(true));
        assert_eq!(fast[..2], ["aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]);
        assert_eq!(fast[2..], russh[2..]);
        // What a node is offered follows this machine, and ssh_config's Ciphers still rules.
        let (chosen, _) = preferred(&crate::catalog::SshOptions::default()).unwrap();
        assert_eq!(names(chosen.cipher.into_owned()), names(default_ciphers(hardware_aes())));
        let options = crate::catalog::SshOptions { ciphers: Some("^aes128-ctr".into()), ..Default::default() };
        let (chosen, _) = preferred(&options).unwrap();
        let mut asked = vec!["aes128-ctr".to_string()];
        asked.extend(names(default_ciphers(hardware_aes())).into_iter().filter(|c| c != "aes128-ctr"));
        assert_eq!(names(chosen.cipher.into_owned()), asked);
    }

    /// OpenSSH's four forms of an algorithm list (ssh_config(5), KexAlgorithms): replace,
    /// `+` append, `-` remove by pattern, `^` put first; names this SSH lacks come back.
    #[test]
    fn algorithm_lists_read_as_openssh_reads_them() {
        let defaults = names(&["a", "b", "c"]);
        let supported = names(&["a", "b", "c", "d", "e-1", "e-2"]);
        let list = |spec: &str| algorithm_list(spec, &defaults, &supported);
        assert_eq!(list("d,a"), (names(&["d", "a"]), vec![]));
        assert_eq!(list("+d,a"), (names(&["a", "b", "c", "d"]), vec![]));
        assert_eq!(list("^c,d"), (names(&["c", "d", "a", "b"]), vec![]));
        assert_eq!(list("-b"), (names(&["a", "c"]), vec![]));
        assert_eq!(list("-a*,c"), (names(&["b"]), vec![]));
        assert_eq!(list("x,a, y"), (names(&["a"]), names(&["x", "y"])));
        assert_eq!(list("-x"), (names(&["a", "b", "c"]), vec![]));
        assert_eq!(list("x"), (vec![], names(&["x"])));
    }

    #[test]
    fn a_list_that_leaves_no_algorithm_is_an_error_and_unknown_names_are_said() {
        let options = SshOptions { ciphers: Some("nosuch-cipher".into()), ..SshOptions::default() };
        let err = preferred(&options).err().unwrap();
        assert!(err.starts_with("Ciphers `nosuch-cipher` leaves no algorithm director's SSH has (it has: "), "{err}");
        let options = SshOptions { macs: Some("+hmac-sha2-256,umac-64@openssh.com".into()), ..SshOptions::default() };
        let (_, unknown) = preferred(&options).unwrap();
        assert_eq!(unknown, ["MACs umac-64@openssh.com"]);
        let options = SshOptions { kex: Some("curve25519-sha256".into()), ..SshOptions::default() };
        let (chosen, unknown) = preferred(&options).unwrap();
        assert_eq!(chosen.kex.iter().map(|k| k.as_ref().to_string()).collect::<Vec<_>>(), ["curve25519-sha256"]);
        assert!(unknown.is_empty());
    }

    /// Certificate host key types in HostKeyAlgorithms are not plain types: they are left to
    /// the handshake, which asks for them where a CA is trusted.
    #[test]
    fn host_key_algorithms_keep_their_mode_without_the_certificate_types() {
        let options = SshOptions {
            host_key_algorithms: Some("^ssh-ed25519-cert-v01@openssh.com,ssh-ed25519".into()),
            ..SshOptions::default()
        };
        let (chosen, unknown) = preferred(&options).unwrap();
        assert_eq!(chosen.key.first().map(russh::keys::Algorithm::as_str), Some("ssh-ed25519"));
        assert!(chosen.key.len() > 1, "^ puts first and keeps the rest");
        assert!(unknown.is_empty(), "{unknown:?}");
    }

    /// The key types known_hosts already holds for a host are asked for first, so a known
    /// host does not offer a key of another type (OpenSSH's order_hostkeyalgs).
    #[test]
    fn known_key_types_come_first() {
        use russh::keys::Algorithm;
        let defaults = russh::Preferred::default();
        let rsa = |a: &Algorithm| matches!(a, Algorithm::Rsa { .. });
        let last = defaults.key.iter().rev().find(|a| !rsa(a)).unwrap().clone();
        let ordered = preferred_for(defaults.clone(), std::slice::from_ref(&last));
        assert_eq!(ordered.key.first(), Some(&last));
        assert_eq!(ordered.key.len(), defaults.key.len());
        assert_eq!(preferred_for(defaults.clone(), &[]).key, defaults.key);
        // An RSA host key is one type whatever its signature hash: the SHA-2 ones come first,
        // in the default order.
        let ordered = preferred_for(defaults.clone(), &[Algorithm::Rsa { hash: None }]);
        let first_rsa = defaults.key.iter().find(|a| rsa(a)).unwrap();
        assert_eq!(ordered.key.first(), Some(first_rsa));
    }

    #[test]
    fn a_host_key_alias_is_looked_up_without_the_port() {
        let files = Arc::new(super::super::known_hosts::KnownHosts::new(Some("/nonexistent".into())));
        let aliased = SshOptions { host_key_alias: Some("db-primary".into()), ..SshOptions::default() };
        let plain = SshOptions::default();
        let target = |ssh| Target {
            name: "db".into(),
            host: "10.0.0.5",
            port: 2222,
            hash: false,
            proxy: None,
            files: files.clone(),
            ssh,
        };
        assert_eq!(target(&aliased).key_name(), ("db-primary", 22));
        assert_eq!(target(&plain).key_name(), ("10.0.0.5", 2222));
    }

    #[test]
    fn a_dropped_handshake_is_retried_and_a_refusal_is_not() {
        let io = |kind| russh::Error::IO(std::io::Error::from(kind));
        assert!(transient(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(transient(&io(std::io::ErrorKind::UnexpectedEof)));
        assert!(transient(&russh::Error::Disconnect));
        assert!(!transient(&io(std::io::ErrorKind::ConnectionRefused)));
        assert!(!transient(&russh::Error::NoAuthMethod));
    }
}
