//! The SSH transport: one russh connection per node for the whole run.
//!
//! It owns the handshake (bounded by a timeout, paced by [`Gates`] so a burst of connections
//! never trips sshd's MaxStartups, retried when sshd drops one anyway), host key checking
//! (through [`super::known_hosts`]), authentication (the catalog's key file, else ssh-agent,
//! else the default key files), and exec channels: the probe and install scripts of
//! [`super::Connection`] run on them, and the executor's session is one of them. Every job of
//! the run then streams over that channel (one per account the node's jobs run as); no
//! channel is opened per job.

use super::known_hosts::HostKeyCheck;
use super::{Incoming, Link};
use crate::catalog::{Catalog, HostKeyPolicy, Node, TransportKind};
use crate::error::Error;
use russh::client;
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::ChannelMsg;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};

/// Handshakes in flight towards one address (sshd's MaxStartups starts dropping at 10).
pub const PER_ADDRESS_HANDSHAKES: usize = 8;
/// Idle time after which a keepalive is sent.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Attempts for a handshake that sshd dropped (reset, early EOF).
const HANDSHAKE_ATTEMPTS: u32 = 4;

/// A key named by `identity_file`: loaded, or (protected by a passphrase) held by ssh-agent,
/// which signs with it without the key ever being decrypted here.
enum Identity {
    /// The key, and its certificate when `FILE-cert.pub` is beside it (offered first, as
    /// ssh offers it).
    Key(Arc<PrivateKey>, Option<Box<russh::keys::Certificate>>),
    Agent(PublicKey),
}

/// Keys for authentication, loaded and checked before any node is contacted.
#[derive(Default)]
pub struct Credentials {
    by_path: HashMap<PathBuf, Identity>,
    defaults: Vec<Arc<PrivateKey>>,
}

impl Credentials {
    /// Loads every identity file the SSH nodes name; an unreadable one is an input error
    /// located at the catalog line that names it. A key protected by a passphrase is used
    /// through ssh-agent when the agent holds it (matched by its public key, read from the
    /// file's clear part or `FILE.pub`), as `ssh` does.
    pub fn load(catalog: &Catalog, nodes: &[Node]) -> Result<Self, Error> {
        let mut creds = Credentials::default();
        let mut agent_keys: Option<Vec<PublicKey>> = None;
        // Each node's identity file, and its jump hosts'.
        let wanted = nodes.iter().filter(|n| n.transport == TransportKind::Ssh).flat_map(|n| {
            n.identity_file.iter().chain(n.jumps.iter().filter_map(|j| j.identity_file.as_ref())).map(move |p| (n, p))
        });
        for (node, path) in wanted {
            if creds.by_path.contains_key(path) {
                continue;
            }
            let refuse = |reason: String, hint: &str| {
                Error::input(format!(
                    "{}: cannot use identity file {} of node `{}`: {reason}",
                    catalog.identity_position(node),
                    path.display(),
                    node.name
                ))
                .hint(hint)
            };
            let identity = match russh::keys::load_secret_key(path, None) {
                Ok(key) => Identity::Key(Arc::new(key), certificate_of(path).map(Box::new)),
                Err(russh::keys::Error::KeyIsEncrypted) => {
                    let public = public_half(path).ok_or_else(|| {
                        refuse(
                            "the key is protected by a passphrase and its public key cannot be read".into(),
                            "put the public key beside it as FILE.pub, or use a key without a passphrase",
                        )
                    })?;
                    let held = agent_keys.get_or_insert_with(agent_identities);
                    if !held.iter().any(|k| k.key_data() == public.key_data()) {
                        return Err(refuse(
                            "the key is protected by a passphrase and ssh-agent does not hold it".into(),
                            &format!("add it to the agent first: ssh-add {}", path.display()),
                        ));
                    }
                    Identity::Agent(public)
                }
                Err(russh::keys::Error::IO(io)) => {
                    return Err(refuse(crate::catalog::yaml::io_reason(&io), "check the path and its permissions"))
                }
                Err(other) => {
                    return Err(refuse(other.to_string(), "it must be a private key in OpenSSH or PEM format"))
                }
            };
            creds.by_path.insert(path.clone(), identity);
        }
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let path = crate::catalog::expand_home(&format!("~/.ssh/{name}"));
            if let Ok(key) = russh::keys::load_secret_key(&path, None) {
                creds.defaults.push(Arc::new(key));
            }
        }
        Ok(creds)
    }
}

/// The user certificate beside a private key file (`FILE-cert.pub`), as ssh finds it.
fn certificate_of(path: &std::path::Path) -> Option<russh::keys::Certificate> {
    let mut cert = path.as_os_str().to_owned();
    cert.push("-cert.pub");
    russh::keys::Certificate::read_file(std::path::Path::new(&cert)).ok()
}

/// The public key of a private key file: its clear part (OpenSSH format keeps it there even
/// when the private part is encrypted), else `FILE.pub`.
fn public_half(path: &std::path::Path) -> Option<PublicKey> {
    let text = std::fs::read_to_string(path).ok()?;
    if let Ok(private) = PrivateKey::from_openssh(&text) {
        return Some(private.public_key().clone());
    }
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    russh::keys::load_public_key(PathBuf::from(pub_path)).ok()
}

/// The public keys ssh-agent (`SSH_AUTH_SOCK`) holds, asked over its socket: this runs before
/// the async runtime serves connections, so it speaks the agent protocol's one request
/// (REQUEST_IDENTITIES) itself. No agent, or an agent that does not answer: none.
fn agent_identities() -> Vec<PublicKey> {
    use std::io::{Read, Write};
    let Some(sock) = std::env::var_os("SSH_AUTH_SOCK") else { return Vec::new() };
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(sock) else { return Vec::new() };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // uint32 length, byte SSH_AGENTC_REQUEST_IDENTITIES (11).
    if stream.write_all(&[0, 0, 0, 1, 11]).is_err() {
        return Vec::new();
    }
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).is_err() {
        return Vec::new();
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > 1 << 20 {
        return Vec::new();
    }
    let mut body = vec![0u8; len];
    if stream.read_exact(&mut body).is_err() || body.first() != Some(&12) {
        return Vec::new();
    }
    // byte SSH_AGENT_IDENTITIES_ANSWER (12), uint32 count, then (string blob, string comment)*.
    let mut at = 5;
    let mut keys = Vec::new();
    let next = |at: &mut usize| -> Option<Vec<u8>> {
        let n = u32::from_be_bytes(body.get(*at..*at + 4)?.try_into().ok()?) as usize;
        let item = body.get(*at + 4..*at + 4 + n)?.to_vec();
        *at += 4 + n;
        Some(item)
    };
    while let (Some(blob), Some(_comment)) = (next(&mut at), next(&mut at)) {
        if let Ok(key) = PublicKey::from_bytes(&blob) {
            keys.push(key);
        }
    }
    keys
}

/// Limits on handshakes in flight: overall, and per address.
pub struct Gates {
    overall: Semaphore,
    per_address: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Gates {
    pub fn new(overall: usize) -> Self {
        Gates { overall: Semaphore::new(overall.max(1)), per_address: Mutex::new(HashMap::new()) }
    }

    fn address(&self, address: &str) -> Arc<Semaphore> {
        let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(address.to_string()).or_insert_with(|| Arc::new(Semaphore::new(PER_ADDRESS_HANDSHAKES))).clone()
    }
}

pub struct SshSettings {
    pub connect_timeout: Duration,
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
pub struct Bastions(Mutex<HashMap<String, Arc<BastionCell>>>);

/// One jump-host session: opened once by the first node that needs it, or why it could not be.
type BastionCell = tokio::sync::OnceCell<Result<Arc<client::Handle<Client>>, String>>;

struct Client {
    check: HostKeyCheck,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.check.check(key),
            PublicKeyOrCertificate::Certificate(cert) => self.check.check_certificate(cert),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(reason) => {
                *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                Ok(false)
            }
        }
    }
}

pub struct SshConnection {
    handle: client::Handle<Client>,
    /// The ProxyCommand the session goes through: killed when the connection goes.
    _proxy: Option<Box<tokio::process::Child>>,
}

/// russh's algorithms, with the host key types known for the host first, as OpenSSH orders
/// them: a host known by its RSA key is asked for that key, so a second key type it has
/// does not read as a changed key.
fn preferred_for(known: &[russh::keys::Algorithm]) -> russh::Preferred {
    let mut preferred = russh::Preferred::default();
    if !known.is_empty() {
        let rsa = |a: &russh::keys::Algorithm| matches!(a, russh::keys::Algorithm::Rsa { .. });
        let same = |a: &russh::keys::Algorithm, b: &russh::keys::Algorithm| a == b || (rsa(a) && rsa(b));
        let mut keys = preferred.key.to_vec();
        keys.sort_by_key(|a| !known.iter().any(|k| same(k, a)));
        preferred.key = std::borrow::Cow::Owned(keys);
    }
    preferred
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

fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => crate::catalog::yaml::io_reason(io),
        other => other.to_string(),
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
}

/// Opens an SSH session to `target`, directly or through the session `via` (a direct-tcpip
/// channel on it): bounded by the connect timeout, retried when sshd drops a burst, host key
/// checked. Authentication is the caller's.
async fn handshake(
    target: &Target<'_>,
    via: Option<&client::Handle<Client>>,
    settings: &SshSettings,
    policy: HostKeyPolicy,
) -> Result<(client::Handle<Client>, Option<tokio::process::Child>), String> {
    let address = format!("{}:{}", target.host, target.port);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let refusal = Arc::new(Mutex::new(None));
        let handler = Client {
            check: HostKeyCheck {
                node: target.name.clone(),
                host: target.host.to_string(),
                port: target.port,
                policy,
                files: target.files.clone(),
                hash: target.hash,
            },
            refusal: refusal.clone(),
        };
        let mut preferred = preferred_for(&target.files.known_algorithms(target.host, target.port));
        if target.files.has_authority(target.host, target.port) {
            // A CA is trusted for this host: ask for its certificate first, as ssh does.
            preferred.host_key_certificates = preferred.key.clone();
        }
        let config = Arc::new(client::Config {
            preferred,
            inactivity_timeout: None,
            // A lost node is noticed within about 15 s (three unanswered keepalives 5 s
            // apart), not after a TCP timeout of minutes.
            keepalive_interval: Some(KEEPALIVE_INTERVAL),
            keepalive_max: 2,
            nodelay: true,
            ..Default::default()
        });
        let mut proxy = None;
        let outcome = tokio::time::timeout(settings.connect_timeout, async {
            match (via, target.proxy) {
                (Some(bastion), _) => {
                    let channel =
                        bastion.channel_open_direct_tcpip(target.host, u32::from(target.port), "127.0.0.1", 0).await?;
                    client::connect_stream(config, channel.into_stream(), handler).await
                }
                (None, Some(command)) => {
                    let mut child = tokio::process::Command::new("/bin/sh")
                        .arg("-c")
                        .arg(command)
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
                (None, None) => client::connect(config, (target.host, target.port), handler).await,
            }
        })
        .await;
        match outcome {
            Err(_) => {
                return Err(format!("connection to {address} timed out after {} s", settings.connect_timeout.as_secs()))
            }
            Ok(Ok(handle)) => return Ok((handle, proxy)),
            Ok(Err(e)) => {
                if let Some(reason) = refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
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
            let mut map = settings.bastions.0.lock().unwrap_or_else(|p| p.into_inner());
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
                };
                let (handle, _) = handshake(&target, before.as_deref(), settings, policy).await?;
                let mut conn = SshConnection { handle, _proxy: None };
                let login = Node {
                    name: target.name.clone(),
                    host: hop.host.clone(),
                    port: hop.port,
                    user: hop.user.clone(),
                    identity_file: hop.identity_file.clone(),
                    jumps: Vec::new(),
                    ..node.clone()
                };
                match tokio::time::timeout(settings.connect_timeout, conn.authenticate(&login, &settings.credentials))
                    .await
                {
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
pub async fn connect(node: &Node, settings: &SshSettings) -> Result<(SshConnection, u64), String> {
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
    };
    let (handle, proxy) = handshake(&target, via.as_deref(), settings, policy).await?;
    let mut conn = SshConnection { handle, _proxy: proxy.map(Box::new) };
    match tokio::time::timeout(settings.connect_timeout, conn.authenticate(node, &settings.credentials)).await {
        Err(_) => {
            return Err(format!("authentication to {address} timed out after {} s", settings.connect_timeout.as_secs()))
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    Ok((conn, started.elapsed().as_millis() as u64))
}

impl SshConnection {
    /// Offers `key`; whether the server accepted it.
    async fn with_key(&mut self, user: &str, key: &Arc<PrivateKey>, rsa_hash: Option<HashAlg>) -> Result<bool, String> {
        let res = self
            .handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(key.clone(), rsa_hash))
            .await
            .map_err(|e| describe(&e))?;
        Ok(res.success())
    }

    async fn authenticate(&mut self, node: &Node, creds: &Credentials) -> Result<(), String> {
        let user = node.user.clone();
        let rsa_hash = self.handle.best_supported_rsa_hash().await.map_err(|e| describe(&e))?.flatten();
        let mut tried = Vec::new();
        if let Some(path) = &node.identity_file {
            match creds.by_path.get(path) {
                Some(Identity::Key(key, cert)) => {
                    if let Some(cert) = cert {
                        let res = self
                            .handle
                            .authenticate_openssh_cert(&user, key.clone(), (**cert).clone())
                            .await
                            .map_err(|e| describe(&e))?;
                        if res.success() {
                            return Ok(());
                        }
                        tried.push(format!("certificate {}-cert.pub", path.display()));
                    }
                    if self.with_key(&user, key, rsa_hash).await? {
                        return Ok(());
                    }
                    tried.push(format!("key {}", path.display()));
                }
                Some(Identity::Agent(public)) => {
                    let mut agent = russh::keys::agent::client::AgentClient::connect_env()
                        .await
                        .map_err(|e| format!("cannot reach ssh-agent for {}: {e}", path.display()))?;
                    let hash = if public.algorithm().is_rsa() { rsa_hash } else { None };
                    let res = self
                        .handle
                        .authenticate_publickey_with(&user, public.clone(), hash, &mut agent)
                        .await
                        .map_err(|e| format!("ssh-agent could not sign with {}: {e}", path.display()))?;
                    if res.success() {
                        return Ok(());
                    }
                    tried.push(format!("key {} (through ssh-agent)", path.display()));
                }
                None => {}
            }
        } else {
            if std::env::var_os("SSH_AUTH_SOCK").is_some() {
                if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
                    let identities = agent.request_identities().await.unwrap_or_default();
                    for id in identities {
                        let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else { continue };
                        let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
                        if let Ok(res) = self.handle.authenticate_publickey_with(&user, key, hash, &mut agent).await {
                            if res.success() {
                                return Ok(());
                            }
                        }
                    }
                    tried.push("ssh-agent".to_string());
                }
            }
            for key in &creds.defaults {
                if self.with_key(&user, key, rsa_hash).await? {
                    return Ok(());
                }
            }
            if !creds.defaults.is_empty() {
                tried.push("~/.ssh/id_*".to_string());
            }
        }
        if tried.is_empty() {
            return Err(format!(
                "no key to authenticate as {user}: set `identity_file` for node {} or start ssh-agent",
                node.name
            ));
        }
        Err(format!("authentication as {user} failed (tried {})", tried.join(", ")))
    }

    /// Runs `command` on a channel of its own: a link to whatever it starts.
    pub(super) async fn exec_link(&self, command: String) -> Result<Link, String> {
        let channel =
            self.handle.channel_open_session().await.map_err(|e| format!("cannot open a channel: {}", describe(&e)))?;
        channel.exec(true, command).await.map_err(|e| format!("cannot start the executor: {}", describe(&e)))?;
        let (mut read, write) = channel.split();
        let writer = write.make_writer();
        let (tx, incoming) = mpsc::channel(256);
        tokio::spawn(async move {
            let mut status = None;
            while let Some(msg) = read.wait().await {
                let item = match msg {
                    ChannelMsg::Data { data } => Incoming::Data(data.to_vec()),
                    ChannelMsg::ExtendedData { data, .. } => Incoming::Stderr(data.to_vec()),
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(exit_status);
                        continue;
                    }
                    _ => continue,
                };
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Incoming::Closed(status)).await;
        });
        Ok(Link { writer: Box::new(writer), incoming, pending: Vec::new(), guard: Some(Box::new(write)) })
    }

    pub async fn close(self) {
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}
