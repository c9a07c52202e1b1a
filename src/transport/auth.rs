//! Public-key authentication as OpenSSH does it (`sshconnect2.c`, `pubkey_prepare`).
//!
//! [`Credentials`] loads every identity file the nodes name (or the default ones) before any
//! node is contacted: a key without a passphrase is loaded; a key protected by one is used
//! through ssh-agent when the agent holds it (it is never decrypted here), else its
//! passphrase is asked on the terminal, once per key per run, and without a terminal the run
//! stops with a clear error. Certificates are `FILE-cert.pub` beside a key and ssh_config's
//! `CertificateFile`s.
//!
//! [`authenticate`] offers, in OpenSSH's order: the agent's keys that are identity files,
//! then the agent's other keys (not with `IdentitiesOnly`), then the identity files the agent
//! does not hold; each identity's certificates just before it. It stops after
//! [`MAX_OFFERS`], under sshd's default MaxAuthTries, so a long agent never ends in "too many
//! authentication failures"; a failure lists everything offered. RSA certificates are signed
//! here with SHA-2 (russh's own certificate method offers `ssh-rsa-cert-v01` and signs with
//! SHA-512, which sshd refuses), through russh's signer interface.

use crate::catalog::{AgentSocket, Catalog, Node, TransportKind};
use crate::error::Error;
use russh::client;
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{Certificate, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Keys offered at most: one fewer than sshd's default MaxAuthTries (6), at which sshd drops
/// the connection with "too many authentication failures".
pub(crate) const MAX_OFFERS: usize = 5;

/// OpenSSH's default identity files, in its order (`readconf.c`).
const DEFAULT_IDENTITIES: &[&str] = &["~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519"];

/// An identity file: loaded, or (protected by a passphrase) held by ssh-agent, which signs
/// with it without the key ever being decrypted here.
#[derive(Clone)]
enum Identity {
    Key(Arc<PrivateKey>),
    Agent(PublicKey),
}

impl Identity {
    fn public(&self) -> PublicKey {
        match self {
            Identity::Key(key) => key.public_key().clone(),
            Identity::Agent(public) => public.clone(),
        }
    }
}

/// Keys and certificates for authentication, loaded and checked before any node is contacted.
#[derive(Default)]
pub(crate) struct Credentials {
    by_path: HashMap<PathBuf, Identity>,
    /// The default identity files that exist and could be loaded.
    defaults: Vec<(PathBuf, Identity)>,
    /// Certificates by file: `FILE-cert.pub` of each identity, and each CertificateFile.
    certificates: HashMap<PathBuf, Certificate>,
    /// The agents this run signs with, by socket.
    agents: std::sync::Mutex<HashMap<PathBuf, Arc<RunAgent>>>,
}

/// One ssh-agent as a run uses it: asked once for the keys it holds, and its connections
/// kept for the next login. ssh asks a fresh connection per login; a run of a thousand logins
/// made the agent accept, poll among and close a thousand, and list its keys a thousand times,
/// for the same answer within one run.
struct RunAgent {
    socket: PathBuf,
    /// The keys it holds (and their comments), asked with the first login that needs them;
    /// none when it cannot be reached.
    held: tokio::sync::OnceCell<Vec<(PublicKey, String)>>,
    /// Connections not in use (the agent answers one request at a time on each).
    idle: std::sync::Mutex<Vec<AgentClient<tokio::net::UnixStream>>>,
    /// A turn on one of at most [`AGENT_LINKS`] connections: ssh-agent serves one request at
    /// a time whatever their number, and every connection kept open is one more descriptor of
    /// its own (its limit is the user's) that its `poll` goes through at each wake: a burst of
    /// a thousand logins must not leave a thousand open for the run.
    turns: tokio::sync::Semaphore,
}

/// The most connections a run holds to one agent.
const AGENT_LINKS: usize = 4;

impl RunAgent {
    fn new(socket: PathBuf) -> Self {
        RunAgent::with_held(socket, None)
    }

    /// One whose keys were already asked (`held`: [`Credentials::load`] asks them before the
    /// runtime serves, when an identity file may be the agent's copy).
    fn with_held(socket: PathBuf, held: Option<Vec<(PublicKey, String)>>) -> Self {
        RunAgent {
            socket,
            held: tokio::sync::OnceCell::new_with(held),
            idle: std::sync::Mutex::default(),
            turns: tokio::sync::Semaphore::new(AGENT_LINKS),
        }
    }

    /// A connection kept from before, if any.
    fn kept(&self) -> Option<AgentClient<tokio::net::UnixStream>> {
        super::lock(&self.idle).pop()
    }

    fn keep(&self, client: AgentClient<tokio::net::UnixStream>) {
        super::lock(&self.idle).push(client);
    }

    async fn connect(&self) -> std::io::Result<AgentClient<tokio::net::UnixStream>> {
        connect_agent(&self.socket).await.map(AgentClient::connect)
    }

    /// The keys it holds, asked once.
    async fn held(&self) -> &[(PublicKey, String)] {
        self.held
            .get_or_init(|| async {
                let Ok(_turn) = self.turns.acquire().await else { return Vec::new() };
                let Ok(mut client) = self.connect().await else { return Vec::new() };
                let held = client.request_identities().await;
                self.keep(client);
                held.unwrap_or_default()
                    .into_iter()
                    .filter_map(|id| match id {
                        AgentIdentity::PublicKey { key, comment } => Some((key, comment)),
                        _ => None,
                    })
                    .collect()
            })
            .await
    }
}

/// Signs through a run's [`RunAgent`], on a kept connection when there is one: one that went
/// (the agent restarted) is dropped and the request made once more on a fresh one; a refusal
/// by the agent itself is not asked again.
struct AgentSigner<'a>(&'a RunAgent);

impl russh::Signer for AgentSigner<'_> {
    type Error = SignError;

    fn auth_sign(
        &mut self,
        key: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let agent = self.0;
        async move {
            let fail = |e: russh::AgentAuthError| SignError(e.to_string());
            let _turn = agent.turns.acquire().await.map_err(|e| SignError(e.to_string()))?;
            if let Some(mut client) = agent.kept() {
                match client.auth_sign(key, hash_alg, to_sign.clone()).await {
                    Err(russh::AgentAuthError::Key(russh::keys::Error::IO(_))) => {}
                    Ok(signed) => {
                        agent.keep(client);
                        return Ok(signed);
                    }
                    Err(e) => return Err(fail(e)),
                }
            }
            let mut client = agent.connect().await.map_err(|e| SignError(crate::error::io_reason(&e)))?;
            let signed = client.auth_sign(key, hash_alg, to_sign).await.map_err(fail)?;
            agent.keep(client);
            Ok(signed)
        }
    }
}

impl Credentials {
    /// Loads every identity file and certificate the SSH nodes (and their jump hosts) name;
    /// an unreadable identity file is an input error located where it was written.
    pub(crate) fn load(catalog: &Catalog, nodes: &[Node]) -> Result<Self, Error> {
        let mut creds = Credentials::default();
        let mut agents: HashMap<Option<PathBuf>, Vec<(PublicKey, String)>> = HashMap::new();
        let ssh_nodes = nodes.iter().filter(|n| n.transport == TransportKind::Ssh);
        for node in ssh_nodes.clone() {
            let own = node.identity_file.iter().map(|p| (p, &node.ssh));
            let hops = node.jumps.iter().filter_map(|j| j.identity_file.as_ref().map(|p| (p, &j.ssh)));
            for (path, ssh) in own.chain(hops) {
                if !creds.by_path.contains_key(path) {
                    let held = agents.entry(socket(&ssh.agent)).or_insert_with_key(|s| agent_identities(s.as_deref()));
                    let identity = load_identity(path, held).map_err(|(reason, hint)| {
                        Error::input(format!(
                            "{}: cannot use identity file {} of node `{}`: {reason}",
                            catalog.identity_position(node),
                            path.display(),
                            node.name
                        ))
                        .hint(hint)
                    })?;
                    creds.by_path.insert(path.clone(), identity);
                }
                creds.add_certificate(&with_suffix(path, "-cert.pub"));
            }
            for file in
                node.ssh.certificate_files.iter().chain(node.jumps.iter().flat_map(|j| &j.ssh.certificate_files))
            {
                creds.add_certificate(file);
            }
        }
        // What the agents said is what the run's logins use: they are not asked again.
        let known = agents.into_iter().filter_map(|(socket, held)| Some((socket?, held)));
        let run_agents = creds.agents.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        run_agents
            .extend(known.map(|(socket, held)| (socket.clone(), Arc::new(RunAgent::with_held(socket, Some(held))))));
        if ssh_nodes.clone().any(|n| n.identity_file.is_none() || n.jumps.iter().any(|j| j.identity_file.is_none())) {
            for name in DEFAULT_IDENTITIES {
                let path = crate::paths::expand_home(name);
                // A default key that cannot be used is skipped, as ssh skips it.
                if let Ok(key) = russh::keys::load_secret_key(&path, None) {
                    creds.defaults.push((path.clone(), Identity::Key(Arc::new(key))));
                    creds.add_certificate(&with_suffix(&path, "-cert.pub"));
                }
            }
        }
        Ok(creds)
    }

    /// The run's agent at `socket`.
    fn agent(&self, socket: PathBuf) -> Arc<RunAgent> {
        let mut agents = super::lock(&self.agents);
        agents.entry(socket).or_insert_with_key(|s| Arc::new(RunAgent::new(s.clone()))).clone()
    }

    fn add_certificate(&mut self, path: &Path) {
        if !self.certificates.contains_key(path) {
            if let Ok(cert) = Certificate::read_file(path) {
                self.certificates.insert(path.to_path_buf(), cert);
            }
        }
    }

    /// The certificates (and their files) that certify `key`.
    fn certificates_of(&self, key: &PublicKey, node: &Node, file: Option<&Path>) -> Vec<(PathBuf, Certificate)> {
        let beside = file.map(|f| with_suffix(f, "-cert.pub"));
        beside
            .iter()
            .chain(node.ssh.certificate_files.iter())
            .filter_map(|p| self.certificates.get(p).map(|c| (p.clone(), c.clone())))
            .filter(|(_, c)| c.public_key() == key.key_data())
            .collect()
    }
}

/// `path` with `suffix` added to its name (`id_ed25519` → `id_ed25519-cert.pub`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Loads one identity file: the key; or, protected by a passphrase, the agent's copy, else
/// the key decrypted with a passphrase asked on the terminal.
fn load_identity(path: &Path, agent: &[(PublicKey, String)]) -> Result<Identity, (String, String)> {
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Ok(Identity::Key(Arc::new(key))),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            if let Some(public) = public_half(path) {
                if agent.iter().any(|(k, _)| k.key_data() == public.key_data()) {
                    return Ok(Identity::Agent(public));
                }
            }
            ask_passphrase(path).map(|key| Identity::Key(Arc::new(key)))
        }
        Err(russh::keys::Error::IO(io)) => {
            Err((crate::error::io_reason(&io), "check the path and its permissions".into()))
        }
        Err(other) => Err((other.to_string(), "it must be a private key in OpenSSH or PEM format".into())),
    }
}

/// The passphrase of an encrypted key, asked on the terminal as ssh asks it (three tries).
fn ask_passphrase(path: &Path) -> Result<PrivateKey, (String, String)> {
    use std::io::IsTerminal;
    let no_agent = || {
        (
            "the key is protected by a passphrase, ssh-agent does not hold it, and there is no terminal to ask it on"
                .to_string(),
            format!("add it to the agent first: ssh-add {}", path.display()),
        )
    };
    if !std::io::stdin().is_terminal() || std::fs::File::open("/dev/tty").is_err() {
        return Err(no_agent());
    }
    for _ in 0..3 {
        let passphrase = zeroize::Zeroizing::new(
            rpassword::prompt_password(format!("Enter passphrase for key '{}': ", path.display()))
                .map_err(|_| no_agent())?,
        );
        match russh::keys::load_secret_key(path, Some(&passphrase)) {
            Ok(key) => return Ok(key),
            Err(_) => continue,
        }
    }
    Err(("the passphrase was wrong three times".into(), "check the passphrase, or add the key to ssh-agent".into()))
}

/// The public key of a private key file: its clear part (OpenSSH format keeps it there even
/// when the private part is encrypted), else `FILE.pub`.
fn public_half(path: &Path) -> Option<PublicKey> {
    let text = std::fs::read_to_string(path).ok()?;
    if let Ok(private) = PrivateKey::from_openssh(&text) {
        return Some(private.public_key().clone());
    }
    russh::keys::load_public_key(with_suffix(path, ".pub")).ok()
}

/// The agent's socket for IdentityAgent: `SSH_AUTH_SOCK`, a path, or none.
fn socket(agent: &AgentSocket) -> Option<PathBuf> {
    match agent {
        AgentSocket::Environment => std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
        AgentSocket::Off => None,
        AgentSocket::Path(p) => Some(p.clone()),
    }
}

/// The public keys the agent at `sock` holds, and their comments, asked over its socket: this runs before the
/// async runtime serves connections, so it speaks the agent protocol's one request
/// (REQUEST_IDENTITIES) itself. No agent, or an agent that does not answer: none.
fn agent_identities(sock: Option<&Path>) -> Vec<(PublicKey, String)> {
    use std::io::{Read, Write};
    let Some(sock) = sock else { return Vec::new() };
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
    while let (Some(blob), Some(comment)) = (next(&mut at), next(&mut at)) {
        if let Ok(key) = PublicKey::from_bytes(&blob) {
            keys.push((key, String::from_utf8_lossy(&comment).into_owned()));
        }
    }
    keys
}

/// Signs with a loaded key for russh's signer interface, with the hash asked for: how an
/// RSA certificate is offered as `rsa-sha2-512-cert-v01` and signed to match.
struct KeySigner(Arc<PrivateKey>);

#[derive(Debug)]
struct SignError(String);

impl From<russh::SendError> for SignError {
    fn from(e: russh::SendError) -> Self {
        SignError(e.to_string())
    }
}

impl russh::Signer for KeySigner {
    type Error = SignError;

    fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        mut to_sign: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, Self::Error>> + Send {
        let key = self.0.clone();
        async move {
            use russh::keys::signature::Signer;
            use russh::keys::ssh_encoding::Encode;
            let signature = match key.key_data() {
                russh::keys::ssh_key::private::KeypairData::Rsa(rsa) => (rsa, hash_alg).try_sign(&to_sign),
                _ => key.as_ref().try_sign(&to_sign),
            }
            .map_err(|e| SignError(e.to_string()))?;
            // The signature blob (string algorithm, string signature), as one string.
            signature.encode_prefixed(&mut to_sign).map_err(|e| SignError(e.to_string()))?;
            Ok(to_sign)
        }
    }
}

/// One thing offered to the server.
enum Offer {
    Certificate { file: PathBuf, cert: Box<Certificate>, signer: Signer },
    Key { what: String, signer: Signer },
}

/// Who signs an offer: a loaded key, or the agent for a public key it holds.
#[derive(Clone)]
enum Signer {
    Key(Arc<PrivateKey>),
    Agent(PublicKey),
}

impl Offer {
    fn describe(&self) -> String {
        match self {
            Offer::Certificate { file, .. } => format!("certificate {}", file.display()),
            Offer::Key { what, .. } => what.clone(),
        }
    }
}

/// Connects to the ssh-agent at `path`, as a blocking `connect` would: a Unix socket whose
/// backlog is full answers a non-blocking connect with EAGAIN at once (ssh-agent listens
/// with a backlog of 128, and hundreds of logins at once, a relay's forwarded ones above all,
/// fill it), so that is waited out (up to 10 s) instead of taken for "no agent".
pub(crate) async fn connect_agent(path: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match tokio::net::UnixStream::connect(path).await {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Authenticates as `node.user` on `handle`, offering keys in OpenSSH's order (see the
/// module); the error names everything offered.
pub(crate) async fn authenticate<H: client::Handler>(
    handle: &mut client::Handle<H>,
    node: &Node,
    creds: &Credentials,
) -> Result<(), String> {
    let user = node.user.clone();
    let describe = |e: russh::Error| describe(&e);
    let rsa_hash = handle.best_supported_rsa_hash().await.map_err(describe)?.flatten();
    let agent = socket(&node.ssh.agent).map(|path| creds.agent(path));
    let held: &[(PublicKey, String)] = match &agent {
        Some(agent) => agent.held().await,
        None => &[],
    };
    // The identity files: the node's, else the default ones.
    let files: Vec<(PathBuf, Identity)> = match &node.identity_file {
        Some(path) => creds.by_path.get(path).map(|i| vec![(path.clone(), i.clone())]).unwrap_or_default(),
        None => creds.defaults.clone(),
    };
    let mut offers: Vec<Offer> = Vec::new();
    let push = |offers: &mut Vec<Offer>, public: &PublicKey, file: Option<&Path>, what: String, signer: Signer| {
        for (cert_file, cert) in creds.certificates_of(public, node, file) {
            offers.push(Offer::Certificate { file: cert_file, cert: Box::new(cert), signer: signer.clone() });
        }
        offers.push(Offer::Key { what, signer });
    };
    // 1. The agent's keys that are identity files; 2. its other keys (not with
    // IdentitiesOnly); 3. the identity files it does not hold.
    let mut from_agent = Vec::new();
    for (key, comment) in held {
        match files.iter().find(|(_, id)| id.public().key_data() == key.key_data()) {
            Some((path, _)) => {
                let what = format!("key {} (through ssh-agent)", path.display());
                push(&mut offers, key, Some(path), what, Signer::Agent(key.clone()));
            }
            None if !node.ssh.identities_only => from_agent.push((key, comment)),
            None => {}
        }
    }
    for (key, comment) in from_agent {
        let what = format!("ssh-agent key {} ({})", comment, key.fingerprint(HashAlg::Sha256));
        push(&mut offers, key, None, what, Signer::Agent(key.clone()));
    }
    for (path, identity) in &files {
        if held.iter().any(|(k, _)| k.key_data() == identity.public().key_data()) {
            continue;
        }
        let what = format!("key {}", path.display());
        match identity {
            Identity::Key(key) => push(&mut offers, key.public_key(), Some(path), what, Signer::Key(key.clone())),
            // Held encrypted by an agent that is not this node's: nothing can sign with it.
            Identity::Agent(_) => {}
        }
    }
    if offers.is_empty() {
        return Err(format!(
            "no key to authenticate as {user}: set `identity_file` for node {} or start ssh-agent",
            node.name
        ));
    }
    let mut offered = Vec::new();
    let total = offers.len();
    for offer in offers.into_iter().take(MAX_OFFERS) {
        offered.push(offer.describe());
        tracing::debug!(node = %node.name, "offering {}", offered.last().map(String::as_str).unwrap_or_default());
        let accepted = match offer {
            Offer::Certificate { cert, signer: Signer::Key(key), .. } => {
                let hash = if key.algorithm().is_rsa() { rsa_hash.or(Some(HashAlg::Sha512)) } else { None };
                let mut signer = KeySigner(key);
                handle
                    .authenticate_certificate_with(&user, *cert, hash, &mut signer)
                    .await
                    .map_err(|e| {
                        format!("signing with {} failed: {}", offered.last().cloned().unwrap_or_default(), e.0)
                    })?
                    .success()
            }
            Offer::Certificate { cert, signer: Signer::Agent(public), .. } => {
                let Some(agent) = agent.as_deref() else { continue };
                let hash = if public.algorithm().is_rsa() { rsa_hash.or(Some(HashAlg::Sha512)) } else { None };
                handle
                    .authenticate_certificate_with(&user, *cert, hash, &mut AgentSigner(agent))
                    .await
                    .map_err(|e| format!("ssh-agent could not sign: {}", e.0))?
                    .success()
            }
            Offer::Key { signer: Signer::Key(key), .. } => {
                let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
                handle
                    .authenticate_publickey(&user, PrivateKeyWithHashAlg::new(key, hash))
                    .await
                    .map_err(describe)?
                    .success()
            }
            Offer::Key { signer: Signer::Agent(public), .. } => {
                let Some(agent) = agent.as_deref() else { continue };
                let hash = if public.algorithm().is_rsa() { rsa_hash } else { None };
                handle
                    .authenticate_publickey_with(&user, public, hash, &mut AgentSigner(agent))
                    .await
                    .map_err(|e| format!("ssh-agent could not sign: {}", e.0))?
                    .success()
            }
        };
        if accepted {
            tracing::debug!(node = %node.name, "accepted: {}", offered.last().map(String::as_str).unwrap_or_default());
            return Ok(());
        }
    }
    let mut reason = format!("authentication as {user} failed (tried {})", offered.join(", "));
    if total > MAX_OFFERS {
        reason.push_str(&format!(
            "; {} more not offered, to stay under sshd's MaxAuthTries: name the key with `identity_file` (and IdentitiesOnly)",
            total - MAX_OFFERS
        ));
    }
    Err(reason)
}

/// A russh error as a person reads it (an I/O error without Rust's "(os error N)").
pub(super) fn describe(e: &russh::Error) -> String {
    match e {
        russh::Error::IO(io) => crate::error::io_reason(io),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    /// A directory of its own, made afresh.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("director-auth-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A key made by OpenSSH's own ssh-keygen, with `passphrase` (empty: none).
    fn keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
        let path = dir.join(name);
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen");
        path
    }

    /// A real ssh-agent on a socket of its own, stopped when dropped.
    struct Agent(Child, PathBuf);

    impl Agent {
        fn start(dir: &Path) -> Agent {
            let sock = dir.join("agent.sock");
            let child = Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).stdout(Stdio::null()).spawn().unwrap();
            for _ in 0..200 {
                if sock.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Agent(child, sock)
        }

        /// Adds an encrypted key, its passphrase given as ssh-add asks it (SSH_ASKPASS).
        fn add_with(&self, key: &Path, passphrase: &str) {
            let askpass = key.with_extension("askpass");
            std::fs::write(&askpass, format!("#!/bin/sh\necho '{passphrase}'\n")).unwrap();
            std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
            let ok = Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.1)
                .env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-add with a passphrase");
        }

        fn add(&self, key: &Path) {
            let ok = Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.1)
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "ssh-add");
        }
    }

    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn the_agent_is_asked_for_its_keys_over_its_socket() {
        let dir = scratch("agent");
        let agent = Agent::start(&dir);
        assert!(agent_identities(Some(&agent.1)).is_empty());
        let key = keygen(&dir, "id_ed25519", "");
        agent.add(&key);
        let held = agent_identities(Some(&agent.1));
        let public = russh::keys::load_public_key(with_suffix(&key, ".pub")).unwrap();
        assert_eq!(
            held.iter().map(|(k, c)| (k.key_data(), c.as_str())).collect::<Vec<_>>(),
            [(public.key_data(), "id_ed25519")]
        );
        assert!(agent_identities(Some(&dir.join("no-agent-here"))).is_empty());
        assert!(agent_identities(None).is_empty());
    }

    #[test]
    fn an_identity_is_the_key_or_the_agents_copy_of_an_encrypted_one() {
        let dir = scratch("identity");
        let plain = keygen(&dir, "plain", "");
        assert!(matches!(load_identity(&plain, &[]), Ok(Identity::Key(_))));
        // Encrypted, and the agent holds it: the agent signs; nothing is asked. (The clear
        // part of an OpenSSH key file names its public key without the passphrase.)
        let locked = keygen(&dir, "locked", "correct horse");
        let public = public_half(&locked).unwrap();
        let published = russh::keys::load_public_key(with_suffix(&locked, ".pub")).unwrap();
        assert_eq!(public.key_data(), published.key_data());
        match load_identity(&locked, &[(public.clone(), String::new())]) {
            Ok(Identity::Agent(k)) => assert_eq!(k.key_data(), public.key_data()),
            Ok(Identity::Key(_)) => panic!("an encrypted key was read without its passphrase"),
            Err(e) => panic!("{e:?}"),
        }
        // Encrypted, no agent, no terminal: said, with what to do (run from a terminal, the
        // passphrase would be asked on it, so that is left to the end-to-end suite).
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            let (why, hint) = load_identity(&locked, &[]).err().unwrap();
            assert_eq!(
                why,
                "the key is protected by a passphrase, ssh-agent does not hold it, and there is no terminal to ask it on"
            );
            assert_eq!(hint, format!("add it to the agent first: ssh-add {}", locked.display()));
        }
        let (why, hint) = load_identity(&dir.join("missing"), &[]).err().unwrap();
        assert_eq!((why.as_str(), hint.as_str()), ("No such file or directory", "check the path and its permissions"));
        std::fs::write(dir.join("garbage"), "not a key\n").unwrap();
        let (_, hint) = load_identity(&dir.join("garbage"), &[]).err().unwrap();
        assert_eq!(hint, "it must be a private key in OpenSSH or PEM format");
    }

    /// Asked for its keys while the identity files are loaded (one is encrypted: the agent's
    /// copy may sign), the agent is not asked again by the run's logins: its answer, comments
    /// and all, is theirs. The agent is gone by the time they would ask.
    #[test]
    fn the_agent_asked_while_loading_keys_is_not_asked_again() {
        let dir = scratch("asked-once");
        let locked = keygen(&dir, "id_locked", "correct horse");
        let agent = Agent::start(&dir);
        agent.add_with(&locked, "correct horse");
        let yaml = format!("nodes:\n  - {{name: n1, host: 10.0.0.1, identity_file: {}}}\n", locked.display());
        let mut catalog =
            Catalog::from_documents(vec![crate::catalog::yaml::Document::parse(Path::new("c.yaml"), yaml).unwrap()])
                .unwrap();
        catalog.nodes[0].ssh.agent = AgentSocket::Path(agent.1.clone());
        let creds = Credentials::load(&catalog, &catalog.nodes).unwrap();
        assert!(matches!(creds.by_path[&locked], Identity::Agent(_)));
        let socket = agent.1.clone();
        drop(agent);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let run = creds.agent(socket);
        let held = rt.block_on(run.held());
        let public = public_half(&locked).unwrap();
        assert_eq!(
            held.iter().map(|(k, c)| (k.key_data(), c.as_str())).collect::<Vec<_>>(),
            [(public.key_data(), "id_locked")]
        );
    }

    /// A run asks the agent for its keys once and keeps its connection; a kept connection that
    /// went (the agent restarted) is replaced for the same request, and the agent's own
    /// refusal is said, not asked again.
    #[test]
    fn a_runs_agent_connection_is_kept_and_replaced_when_it_went() {
        let dir = scratch("kept");
        let key = keygen(&dir, "id_ed25519", "");
        let agent = Agent::start(&dir);
        agent.add(&key);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let run = RunAgent::new(agent.1.clone());
        let kept = || run.idle.lock().unwrap().len();
        let held = rt.block_on(run.held()).to_vec();
        assert_eq!(held.len(), 1);
        assert_eq!(kept(), 1);
        let identity = AgentIdentity::PublicKey { key: held[0].0.clone(), comment: String::new() };
        let sign =
            || rt.block_on(russh::Signer::auth_sign(&mut AgentSigner(&run), &identity, None, b"session".to_vec()));
        assert!(sign().is_ok());
        assert_eq!(kept(), 1);
        // The agent restarts on the same socket: the kept connection fails, a fresh one signs.
        let socket = agent.1.clone();
        drop(agent);
        std::fs::remove_file(&socket).unwrap();
        let agent = Agent::start(&dir);
        agent.add(&key);
        assert!(sign().is_ok());
        assert_eq!(kept(), 1);
        // Sixteen logins signing at once share a few connections.
        let burst = (0..16).map(|_| async {
            russh::Signer::auth_sign(&mut AgentSigner(&run), &identity, None, b"session".to_vec()).await
        });
        assert!(rt.block_on(futures::future::join_all(burst)).iter().all(Result::is_ok));
        assert!((1..=AGENT_LINKS).contains(&kept()), "{} kept", kept());
        // A key the agent no longer holds: its refusal.
        let ok = Command::new("ssh-add").arg("-D").env("SSH_AUTH_SOCK", &agent.1).stderr(Stdio::null()).status();
        assert!(ok.unwrap().success());
        assert_eq!(sign().err().map(|e| e.0).as_deref(), Some("Agent failure"));
        // Gone for good (its socket left behind): why, as an I/O error reads.
        drop(agent);
        assert_eq!(sign().err().map(|e| e.0).as_deref(), Some("Connection refused"));
    }

    #[test]
    fn a_certificate_is_found_beside_its_key() {
        assert_eq!(with_suffix(Path::new("/k/id_ed25519"), "-cert.pub"), Path::new("/k/id_ed25519-cert.pub"));
    }
}
