//! Host keys, decided as OpenSSH decides them (`hostfile.c`, `sshconnect.c`).
//!
//! The files: the user's (`--known-hosts`, else `~/.ssh/known_hosts` and
//! `~/.ssh/known_hosts2`; new keys are written to the first) and the global ones
//! (`/etc/ssh/ssh_known_hosts`, `/etc/ssh/ssh_known_hosts2`). A line is
//! `[@revoked|@cert-authority] PATTERNS KEYTYPE BASE64 [COMMENT]`; PATTERNS is a comma list of
//! globs (`*`, `?`), each maybe negated with `!` (a negated match rules the line out), or one
//! hashed name `|1|salt|hmac`; a host on another port than 22 is matched as `[host]:port`.
//! Lines that cannot be read are skipped, as OpenSSH skips them.
//!
//! The decision, for the lines that match the host: a `@revoked` line with the offered key
//! refuses it, whatever the policy; any line with the offered key accepts it (a stale line
//! before the right one does not matter); lines for the host with other keys, of any type,
//! mean the key has changed, and it is refused with both fingerprints; no line at all is a
//! new host, recorded under accept-new, refused under strict. A host certificate is trusted
//! when a `@cert-authority` line for the host holds its CA and it is valid for the host now;
//! otherwise its plain key is judged as above. Checking is never skipped silently: `off` must
//! be asked for, and the CLI warns when it is.

use super::lock;
use crate::catalog::HostKeyPolicy;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Serializes appends to known_hosts from the many connection tasks of one run.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// The files read so far in this process, by path: every node of a run looks its host up in
/// the same files, so each is read and split once (again only when it changed: its size,
/// modification time or inode), and the lines that match a host are parsed once per host.
/// Without it, each node read and parsed every key of every file three times: quadratic in
/// the fleet's size.
static PARSED: Mutex<Option<HashMap<PathBuf, Arc<Parsed>>>> = Mutex::new(None);

/// The hashed names this process recorded (HashKnownHosts), with the host each one hashes.
/// A first contact with a fleet looks every node up in every line recorded so far, three
/// times (before its handshake, after it, and again under the file's lock before recording):
/// with an HMAC per line and lookup, quadratic in the fleet's size. A line this process wrote
/// is matched by comparing the host with the one it hashed, which is what its HMAC would say
/// (the salted hash of one name matches that name only). Lines from anywhere else are
/// matched by their HMAC, as OpenSSH matches them.
static RECORDED: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// A line that is not blank or a comment: its number, marker, host field and key text.
type Line = Arc<(usize, Marker, Names, String)>;

/// One known_hosts file as last read.
struct Parsed {
    stamp: (u64, i64, i64, u64),
    /// The file's bytes through its last newline, and how many lines that is.
    complete: Vec<u8>,
    newlines: usize,
    /// Each line that is not blank or a comment; the first `settled` are of `complete`.
    lines: Vec<Line>,
    settled: usize,
    /// The entries that match a host, by the host as looked up.
    matches: Mutex<HashMap<String, Arc<Vec<Arc<Entry>>>>>,
}

impl Parsed {
    /// `bytes` parsed, taking the lines of `before` when the file only grew after them (a
    /// run's first contacts append a line per node: without this each append had every
    /// node re-read every line, quadratic in the fleet's size).
    fn read(stamp: (u64, i64, i64, u64), bytes: Vec<u8>, before: Option<&Parsed>) -> Parsed {
        let (mut lines, mut newlines, from) = match before {
            Some(b) if bytes.starts_with(&b.complete) => (b.lines[..b.settled].to_vec(), b.newlines, b.complete.len()),
            _ => (Vec::new(), 0, 0),
        };
        let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1).max(from);
        let mut take = |segment: &[u8], lines: &mut Vec<Line>| {
            for line in String::from_utf8_lossy(segment).lines() {
                newlines += 1;
                if let Some(parsed) = Entry::split(line, newlines) {
                    lines.push(Arc::new(parsed));
                }
            }
            newlines
        };
        // The complete lines first: what the next read can take as they are.
        let complete_newlines = take(&bytes[from..end], &mut lines);
        let settled = lines.len();
        take(&bytes[end..], &mut lines);
        let mut complete = bytes;
        complete.truncate(end);
        Parsed { stamp, complete, newlines: complete_newlines, lines, settled, matches: Mutex::default() }
    }

    /// The entries of `file` that match `host` (none when the file does not exist).
    fn matching(file: &Path, host: &str) -> Result<Arc<Vec<Arc<Entry>>>, String> {
        let cannot = |e: std::io::Error| format!("cannot read {}: {}", file.display(), crate::error::io_reason(&e));
        let stamp = match std::fs::metadata(file) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                (m.len(), m.mtime(), m.mtime_nsec(), m.ino())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Arc::default()),
            Err(e) => return Err(cannot(e)),
        };
        let known = lock(&PARSED).get_or_insert_with(HashMap::new).get(file).cloned();
        let parsed = match known {
            Some(p) if p.stamp == stamp => p,
            known => {
                let bytes = match std::fs::read(file) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Arc::default()),
                    Err(e) => return Err(cannot(e)),
                };
                let parsed = Arc::new(Parsed::read(stamp, bytes, known.as_deref()));
                let mut all = lock(&PARSED);
                all.get_or_insert_with(HashMap::new).insert(file.to_path_buf(), parsed.clone());
                parsed
            }
        };
        let mut matches = lock(&parsed.matches);
        if let Some(found) = matches.get(host) {
            return Ok(found.clone());
        }
        let lookup = Lookup::new(host);
        let found: Vec<Arc<Entry>> = parsed
            .lines
            .iter()
            .filter(|line| line.2.matches(&lookup))
            .filter_map(|line| {
                let (n, marker, _, key) = &**line;
                let key = PublicKey::from_openssh(key).ok()?;
                Some(Arc::new(Entry { marker: *marker, key, file: file.to_path_buf(), line: *n }))
            })
            .collect();
        let found = Arc::new(found);
        matches.insert(host.to_string(), found.clone());
        Ok(found)
    }
}

/// The global files OpenSSH reads by default.
const GLOBAL_FILES: [&str; 2] = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"];

/// The known_hosts files a run reads.
#[derive(Debug, Clone)]
pub(crate) struct KnownHosts {
    /// The user's files; new keys go to the first.
    pub user: Vec<PathBuf>,
    pub global: Vec<PathBuf>,
    /// Given on the command line (or the settings file): it beats ssh_config's files.
    pub explicit: bool,
}

impl KnownHosts {
    /// `explicit` (from `--known-hosts`) alone, or OpenSSH's defaults; the global files always.
    pub(crate) fn new(explicit: Option<PathBuf>) -> Self {
        let given = explicit.is_some();
        let user = match explicit {
            Some(p) => vec![p],
            None => vec![default_path(), crate::paths::expand_home("~/.ssh/known_hosts2")],
        };
        KnownHosts { user, global: GLOBAL_FILES.iter().map(PathBuf::from).collect(), explicit: given }
    }

    /// The files for a node whose ssh_config names its own (`UserKnownHostsFile`,
    /// `GlobalKnownHostsFile`; empty lists: not named); an explicit `--known-hosts` wins.
    pub(crate) fn for_node(self: &std::sync::Arc<Self>, user: &[PathBuf], global: &[PathBuf]) -> std::sync::Arc<Self> {
        if self.explicit || (user.is_empty() && global.is_empty()) {
            return self.clone();
        }
        std::sync::Arc::new(KnownHosts {
            user: if user.is_empty() { self.user.clone() } else { user.to_vec() },
            global: if global.is_empty() { self.global.clone() } else { global.to_vec() },
            explicit: false,
        })
    }

    /// Where new keys are written.
    pub(crate) fn writable(&self) -> &Path {
        &self.user[0]
    }

    fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.user.iter().chain(self.global.iter())
    }

    /// Every readable line of every file that matches `host` (`name` or `[name]:port`).
    fn entries(&self, host: &str) -> Result<Vec<Arc<Entry>>, String> {
        let mut out = Vec::new();
        for file in self.files() {
            out.extend(Parsed::matching(file, host)?.iter().cloned());
        }
        Ok(out)
    }

    /// Whether a `@cert-authority` line covers `host`: then the handshake asks for a host
    /// certificate first, as OpenSSH does.
    pub(crate) fn has_authority(&self, host: &str, port: u16) -> bool {
        self.entries(&host_pattern(host, port)).unwrap_or_default().iter().any(|e| e.marker == Marker::CertAuthority)
    }

    /// The key algorithms known for `host`, so the handshake can prefer them as OpenSSH does
    /// (a host known by its RSA key is asked for that key, not a newer ed25519 one).
    pub(crate) fn known_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let mut algs: Vec<Algorithm> = Vec::new();
        for e in self.entries(&host_pattern(host, port)).unwrap_or_default() {
            if e.marker == Marker::None && !algs.contains(&e.key.algorithm()) {
                algs.push(e.key.algorithm());
            }
        }
        algs
    }
}

/// The default known_hosts file: `~/.ssh/known_hosts`.
pub(crate) fn default_path() -> PathBuf {
    crate::paths::expand_home("~/.ssh/known_hosts")
}

/// Checks, before any node is contacted, that `path` can serve as a known_hosts file: absent
/// (it will be created), or a regular file of text.
pub(crate) fn check_file(path: &Path) -> Result<(), crate::error::Error> {
    let refuse = |why: &str| {
        crate::error::Error::input(format!("--known-hosts {}: {why}", path.display()))
            .hint("name an OpenSSH known_hosts file (it is created if it does not exist)")
    };
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(&crate::error::io_reason(&e))),
        Ok(meta) => meta,
    };
    if !meta.is_file() {
        return Err(refuse(if meta.is_dir() { "it is a directory" } else { "it is not a regular file" }));
    }
    let bytes = std::fs::read(path).map_err(|e| refuse(&crate::error::io_reason(&e)))?;
    if std::str::from_utf8(&bytes).is_err() || bytes.contains(&0) {
        return Err(refuse("it is not a text file"));
    }
    Ok(())
}

/// How a host is written in known_hosts: `name`, or `[name]:port` off port 22.
pub(crate) fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug)]
struct Entry {
    marker: Marker,
    key: PublicKey,
    file: PathBuf,
    line: usize,
}

impl Entry {
    /// A line's number, marker, patterns and key text (`TYPE BASE64`); none for a blank line,
    /// a comment or a line that cannot be read. The key is parsed only for the lines that
    /// match a host looked up.
    fn split(line: &str, n: usize) -> Option<(usize, Marker, Names, String)> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut words = line.split_whitespace();
        let mut first = words.next()?;
        let marker = match first {
            "@revoked" => Marker::Revoked,
            "@cert-authority" => Marker::CertAuthority,
            m if m.starts_with('@') => return None,
            _ => Marker::None,
        };
        if marker != Marker::None {
            first = words.next()?;
        }
        let (kind, data) = (words.next()?, words.next()?);
        Some((n, marker, Names::parse(first), format!("{kind} {data}")))
    }

    fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }
}

/// A line's host field, read once when its file is: OpenSSH's pattern list, or a hashed name
/// `|1|salt|hmac` (base64 each: HMAC-SHA1 of the host name keyed with the salt), kept as the
/// HMAC already keyed and the digest to match. Every node of a run is looked up in every
/// hashed line (nothing else can tell which host a hashed line is for): keyed once, each
/// lookup costs the line two SHA-1 blocks and no allocation, not a base64 decoding and four.
enum Names {
    Patterns(String),
    Hashed(Box<Keyed>),
    /// A hashed name this process recorded ([`RECORDED`]): the host it hashes.
    Recorded(String),
    /// A hashed name that is not readable: it matches nothing, as in OpenSSH.
    Unreadable,
}

impl Names {
    fn parse(field: &str) -> Names {
        use base64::Engine;
        let Some(hashed) = field.strip_prefix("|1|") else { return Names::Patterns(field.to_string()) };
        if let Some(host) = lock(&RECORDED).as_ref().and_then(|r| r.get(field)) {
            return Names::Recorded(host.clone());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let Some((salt, digest)) = hashed.split_once('|') else { return Names::Unreadable };
        // hostfile.c's extract_salt: a salt is SHA-1's length, else the line is skipped; a
        // digest of another length matches no host (OpenSSH compares it with one of 20 bytes).
        match (b64.decode(salt).map(<[u8; 20]>::try_from), b64.decode(digest).map(<[u8; 20]>::try_from)) {
            (Ok(Ok(salt)), Ok(Ok(digest))) => Names::Hashed(Box::new(Keyed::new(&salt, &digest))),
            _ => Names::Unreadable,
        }
    }

    /// OpenSSH's `match_hostname` over the pattern list, or the hashed name's HMAC.
    fn matches(&self, host: &Lookup<'_>) -> bool {
        match self {
            Names::Patterns(patterns) => super::pattern::list(patterns, host.name),
            Names::Hashed(keyed) => {
                #[cfg(test)]
                HMACS.with(|n| n.set(n.get() + 1));
                keyed.matches(host)
            }
            Names::Recorded(hashed) => hashed == host.name,
            Names::Unreadable => false,
        }
    }
}

/// SHA-1's initial state (FIPS 180-4, 5.3.1).
const SHA1_IV: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];

/// A hashed line's HMAC-SHA1 (RFC 2104) keyed with its 20-byte salt: SHA-1's state after the key's
/// inner pad and after its outer pad, each one block, computed once when the line is read.
/// A lookup then costs two SHA-1 blocks with nothing copied or allocated: the host's own
/// block (the same for every line, [`Lookup`]) onto the inner state, and the inner digest's
/// block onto the outer one. (Through the `hmac` crate, each of a run's thousand nodes
/// cloned, fed and finalized a keyed HMAC per line: a sixth of the operator's CPU at 1,000
/// hosts.) Checked against the `hmac` crate for every salt and host length that changes the
/// padding.
struct Keyed {
    inner: [u32; 5],
    outer: [u32; 5],
    /// The digest to match, as SHA-1's state words.
    digest: [u32; 5],
}

impl Keyed {
    fn new(salt: &[u8; 20], digest: &[u8; 20]) -> Keyed {
        // The key (shorter than a block) padded with zeros, then each pad.
        let pad = |byte: u8| {
            let mut block = [byte; 64];
            block.iter_mut().zip(salt).for_each(|(b, k)| *b ^= k);
            let mut state = SHA1_IV;
            sha1::block_api::compress(&mut state, &[block]);
            state
        };
        let mut words = [0u32; 5];
        for (word, bytes) in words.iter_mut().zip(digest.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
        }
        Keyed { inner: pad(0x36), outer: pad(0x5c), digest: words }
    }

    fn matches(&self, host: &Lookup<'_>) -> bool {
        let mut inner = self.inner;
        sha1::block_api::compress(&mut inner, &host.blocks);
        let mut block = [0u8; 64];
        for (chunk, word) in block.chunks_exact_mut(4).zip(inner) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        // The inner digest after the outer pad's block: 84 bytes in all.
        block[20] = 0x80;
        block[56..].copy_from_slice(&((64 + 20) * 8u64).to_be_bytes());
        let mut outer = self.outer;
        sha1::block_api::compress(&mut outer, &[block]);
        outer == self.digest
    }
}

/// A host as it is looked up in a file's lines: its name, and the SHA-1 blocks an HMAC of it
/// ends with after the key's block (the name, SHA-1's padding and the length of key block
/// and name), the same for every hashed line.
struct Lookup<'a> {
    name: &'a str,
    blocks: Vec<[u8; 64]>,
}

impl<'a> Lookup<'a> {
    fn new(name: &'a str) -> Lookup<'a> {
        let bytes = name.as_bytes();
        let mut padded = bytes.to_vec();
        padded.push(0x80);
        while padded.len() % 64 != 56 {
            padded.push(0);
        }
        padded.extend_from_slice(&((64 + bytes.len() as u64) * 8).to_be_bytes());
        let blocks = padded.chunks_exact(64).map(|c| c.try_into().expect("64 bytes")).collect();
        Lookup { name, blocks }
    }
}

#[cfg(test)]
thread_local! {
    /// How many HMACs [`Names::matches`] computed on this thread.
    static HMACS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn host_matches(field: &str, host: &str) -> bool {
    Names::parse(field).matches(&Lookup::new(host))
}

fn hmac_sha1(salt: &[u8], host: &str) -> Vec<u8> {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(host.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A host name hashed as `ssh-keygen -H` and `HashKnownHosts yes` write it.
pub(crate) fn hash_host(host: &str, salt: &[u8; 20]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("|1|{}|{}", b64.encode(salt), b64.encode(hmac_sha1(salt, host)))
}

#[derive(Debug, Clone)]
pub(crate) struct HostKeyCheck {
    pub node: String,
    pub host: String,
    pub port: u16,
    pub policy: HostKeyPolicy,
    pub files: std::sync::Arc<KnownHosts>,
    /// Record new keys under a hashed name (HashKnownHosts), as `ssh` does.
    pub hash: bool,
}

impl HostKeyCheck {
    /// `Ok` when the key may be used, with the file it was just recorded in when it was new;
    /// otherwise the reason, for the node's event.
    pub(crate) fn check(&self, key: &PublicKey) -> Result<Option<PathBuf>, String> {
        if self.policy == HostKeyPolicy::Off {
            return Ok(None);
        }
        let offered = key.fingerprint(HashAlg::Sha256);
        let pattern = host_pattern(&self.host, self.port);
        let entries = self.files.entries(&pattern)?;
        if let Some(revoked) = entries.iter().find(|e| e.marker == Marker::Revoked && e.key == *key) {
            return Err(format!(
                "host key for node {} ({pattern}) is revoked: {} line {} marks {offered} @revoked; refusing to connect",
                self.node,
                revoked.file.display(),
                revoked.line
            ));
        }
        let plain: Vec<&Entry> = entries.iter().map(|e| &**e).filter(|e| e.marker == Marker::None).collect();
        if plain.iter().any(|e| e.key == *key) {
            return Ok(None);
        }
        // Another key is known for the host: of the same type if there is one, to show.
        if let Some(other) = plain.iter().find(|e| e.key.algorithm() == key.algorithm()).or(plain.first()).copied() {
            return Err(format!(
                "host key for node {} ({pattern}) has changed: {} line {} has {}, the server offered {offered}; refusing to connect (if the host was reinstalled, run: ssh-keygen -R '{pattern}' -f {})",
                self.node,
                other.file.display(),
                other.line,
                other.fingerprint(),
                other.file.display()
            ));
        }
        if self.policy == HostKeyPolicy::Strict {
            // The files that exist and were read (or, when none does, the one to write).
            let mut files: Vec<String> =
                self.files.files().filter(|f| f.exists()).map(|f| f.display().to_string()).collect();
            if files.is_empty() {
                files.push(self.files.writable().display().to_string());
            }
            return Err(format!(
                "host key for node {} ({pattern}) is not in {} and host key checking is strict; the server offered {offered}",
                self.node,
                files.join(", ")
            ));
        }
        // One writer at a time: the tasks of this run (a mutex), and other processes (an
        // exclusive lock on the file itself, as long as the line is being written).
        let _guard = lock(&WRITE_LOCK);
        let path = self.files.writable();
        let failed =
            |e: std::io::Error| format!("cannot record the host key of node {} in {}: {e}", self.node, path.display());
        let file = open_locked(path).map_err(failed)?;
        // Another task or run may have just recorded it.
        if self.files.entries(&pattern)?.iter().any(|e| e.marker == Marker::None && e.key == *key) {
            return Ok(None);
        }
        let written = if self.hash { hash_host(&pattern, &salt()) } else { pattern.clone() };
        if self.hash {
            lock(&RECORDED).get_or_insert_with(HashMap::new).insert(written.clone(), pattern.clone());
        }
        record(file, &written, key).map_err(failed)?;
        Ok(Some(path.to_path_buf()))
    }
}

/// 20 random bytes for a hashed name's salt.
fn salt() -> [u8; 20] {
    use std::io::Read;
    let mut salt = [0u8; 20];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut salt)).is_err() {
        // No /dev/urandom: still a different salt per line.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        salt[..16].copy_from_slice(&nanos.to_le_bytes());
    }
    salt
}

impl HostKeyCheck {
    /// A host certificate, as `sshconnect.c` decides it: trusted when a `@cert-authority`
    /// line for the host holds its CA, it is a host certificate, its signature and validity
    /// period hold now, and its principals name the host (or there are none). A revoked CA or
    /// key is refused. Any other certificate is judged as its plain key, like OpenSSH's
    /// fallback.
    pub(crate) fn check_certificate(&self, cert: &russh::keys::Certificate) -> Result<Option<PathBuf>, String> {
        if self.policy == HostKeyPolicy::Off {
            return Ok(None);
        }
        let pattern = host_pattern(&self.host, self.port);
        let entries = self.files.entries(&pattern)?;
        let (ca, key) = (cert.signature_key(), cert.public_key());
        if let Some(revoked) =
            entries.iter().find(|e| e.marker == Marker::Revoked && (e.key.key_data() == ca || e.key.key_data() == key))
        {
            return Err(format!(
                "host certificate of node {} ({pattern}) is revoked: {} line {} marks its {} @revoked; refusing to connect",
                self.node,
                revoked.file.display(),
                revoked.line,
                if revoked.key.key_data() == ca { "authority" } else { "key" }
            ));
        }
        let trusted = entries.iter().any(|e| e.marker == Marker::CertAuthority && e.key.key_data() == ca);
        if trusted {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let fingerprint = PublicKey::from(ca.clone()).fingerprint(HashAlg::Sha256);
            let principals = cert.valid_principals();
            if cert.cert_type() == russh::keys::ssh_key::certificate::CertType::Host
                && cert.validate_at(now, [&fingerprint]).is_ok()
                && (principals.is_empty() || principals.iter().any(|p| p == &self.host))
            {
                return Ok(None);
            }
        }
        self.check(&PublicKey::from(key.clone()))
    }
}

/// Appends `pattern key` as one line, starting a new line if the file lacks a final one.
/// The known_hosts file to write, created 0600 (its directory 0700) and locked exclusively
/// until it is dropped.
fn open_locked(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        crate::private::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path)?;
    file.lock()?;
    Ok(file)
}

/// Appends `lines` (whole known_hosts lines a relay recorded for its site's nodes) to
/// `path`, under the same lock as [`HostKeyCheck::check`]'s writes.
pub(crate) fn append(path: &Path, lines: &str) -> std::io::Result<()> {
    use std::io::Write;
    let _guard = lock(&WRITE_LOCK);
    let mut file = open_locked(path)?;
    let mut text = line_start(&mut file)?.to_string();
    text.push_str(lines);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    file.write_all(text.as_bytes())
}

/// What to write before a new line at the end of `file`: a newline if its last line has none.
fn line_start(file: &mut std::fs::File) -> std::io::Result<&'static str> {
    use std::io::{Read, Seek, SeekFrom};
    if file.seek(SeekFrom::End(-1)).is_ok() {
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            return Ok("\n");
        }
    }
    Ok("")
}

/// Appends `pattern key` to the locked file.
fn record(mut file: std::fs::File, pattern: &str, key: &PublicKey) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = line_start(&mut file)?.to_string();
    let encoded = key.to_openssh().map_err(std::io::Error::other)?;
    // Drop the key's comment: known_hosts lines are `pattern algorithm base64`.
    let mut parts = encoded.split_whitespace();
    line.push_str(&format!("{pattern} {} {}\n", parts.next().unwrap_or(""), parts.next().unwrap_or("")));
    file.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host key for the tests' lines.
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    /// A directory of its own, made afresh.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("director-kh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A file that only grew is read from where it was (its earlier lines kept as they were
    /// parsed), with the right line numbers; a last line without its newline is read again
    /// once it has one; a file changed before its end is read whole again.
    #[test]
    fn an_appended_file_is_read_from_where_it_was() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ3e1qgpxYczhcepGKCQA0XjTDTAAfzJv9/TyP6v9D6";
        let numbers = |p: &Parsed| {
            p.lines
                .iter()
                .map(|l| (l.0, l.2.matches(&Lookup::new("a")) as u8 + 2 * l.2.matches(&Lookup::new("b")) as u8))
                .collect::<Vec<_>>()
        };
        let one = Parsed::read((0, 0, 0, 0), format!("# c\na {key}\n\nb {key}").into_bytes(), None);
        assert_eq!(numbers(&one), [(2, 1), (4, 2)]);
        assert_eq!((one.settled, one.newlines, one.complete.len()), (1, 3, format!("# c\na {key}\n\n").len()));
        // `b`'s line gets its newline and another line follows.
        let two = Parsed::read((1, 0, 0, 0), format!("# c\na {key}\n\nb {key}\na,b {key}\n").into_bytes(), Some(&one));
        assert_eq!(numbers(&two), [(2, 1), (4, 2), (5, 3)]);
        assert!(Arc::ptr_eq(&one.lines[0], &two.lines[0]), "the first line was parsed again");
        assert_eq!((two.settled, two.newlines), (3, 5));
        // Rewritten in place (ssh-keygen -R renames a new file; an editor may not).
        let three = Parsed::read((2, 0, 0, 0), format!("b {key}\n").into_bytes(), Some(&two));
        assert_eq!(numbers(&three), [(1, 2)]);
    }

    #[test]
    fn patterns_negation_and_hashes_match_as_openssh_does() {
        assert!(host_matches("10.0.0.*", "10.0.0.7"));
        assert!(host_matches("web?,db*", "db12"));
        assert!(!host_matches("10.0.0.*,!10.0.0.7", "10.0.0.7"));
        assert!(host_matches("10.0.0.*,!10.0.0.7", "10.0.0.8"));
        assert!(host_matches("WEB1", "web1"));
        assert!(host_matches("[web1]:2222", "[web1]:2222"));
        assert!(!host_matches("web1", "[web1]:2222"));
        // `ssh-keygen -H` of "web1" with this salt.
        let hashed = hash_host("web1", &[7u8; 20]);
        assert!(host_matches(&hashed, "web1"));
        assert!(!host_matches(&hashed, "web2"));
    }

    /// A hashed line's HMAC, made block by block, is the `hmac` crate's: for hosts of every
    /// length around where SHA-1's padding takes another block.
    #[test]
    fn hashed_names_match_as_the_hmac_crate_computes_them() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        for seed in [0u8, 11, 255] {
            let salt: Vec<u8> = (0..20u8).map(|i| i.wrapping_mul(37).wrapping_add(seed)).collect();
            for host_len in (0..=130).filter(|n| n % 13 == 0 || (50..=60).contains(n) || (115..=125).contains(n)) {
                let host: String = (0..host_len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
                let field = format!("|1|{}|{}", b64.encode(&salt), b64.encode(hmac_sha1(&salt, &host)));
                assert!(host_matches(&field, &host), "salt {seed}, host {host_len}");
                assert!(!host_matches(&field, &format!("{host}x")), "salt {seed}, host {host_len}+1");
            }
        }
        // A digest that is not SHA-1's length matches nothing.
        let short = format!("|1|{}|{}", b64.encode([1u8; 20]), b64.encode(&hmac_sha1(&[1u8; 20], "web1")[..19]));
        assert!(!host_matches(&short, "web1"));
    }

    /// A hashed name whose salt is not 20 bytes is skipped, as OpenSSH skips it: the oracle
    /// is `ssh-keygen -F` on the same file.
    #[test]
    fn a_hashed_name_with_a_salt_of_another_length_is_skipped_as_ssh_keygen_skips_it() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let dir = scratch("salt");
        let key = KEY;
        for len in [16usize, 19, 20, 21, 32] {
            let salt: Vec<u8> = (1..=len as u8).collect();
            let field = format!("|1|{}|{}", b64.encode(&salt), b64.encode(hmac_sha1(&salt, "web1")));
            let file = dir.join(format!("known_hosts-{len}"));
            std::fs::write(&file, format!("{field} {key}\n")).unwrap();
            let found = std::process::Command::new("ssh-keygen")
                .args(["-F", "web1", "-f"])
                .arg(&file)
                .output()
                .unwrap()
                .status
                .success();
            assert_eq!(host_matches(&field, "web1"), found, "salt of {len} bytes");
            assert_eq!(found, len == 20, "ssh-keygen, salt of {len} bytes");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Hashed lines this process recorded are matched without an HMAC, and match what their
    /// HMAC would: their own host only. A hashed line written by anything else (ssh, another
    /// run) is matched by its HMAC.
    #[test]
    fn hashed_lines_recorded_by_this_process_are_matched_without_an_hmac() {
        let dir = scratch("recorded");
        let file = dir.join("known_hosts");
        let key: PublicKey = KEY.parse().unwrap();
        // A line from elsewhere first: ssh's own, for `other`.
        std::fs::write(&file, format!("{} {}\n", hash_host("other", &[9u8; 20]), key.to_openssh().unwrap())).unwrap();
        let files = Arc::new(KnownHosts { user: vec![file.clone()], global: vec![], explicit: true });
        let check = |host: &str, port: u16| HostKeyCheck {
            node: host.to_string(),
            host: host.to_string(),
            port,
            policy: HostKeyPolicy::AcceptNew,
            files: files.clone(),
            hash: true,
        };
        let hosts: Vec<(String, u16)> =
            (0..20).map(|i| (format!("h{i}"), if i % 2 == 0 { 22 } else { 2222 })).collect();
        for (host, port) in &hosts {
            assert_eq!(check(host, *port).check(&key), Ok(Some(file.clone())), "{host} recorded");
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("|1|")).count(), 21, "{text}");
        let hmacs = || HMACS.with(std::cell::Cell::get);
        let before = hmacs();
        for (i, (host, port)) in hosts.iter().enumerate() {
            let found = files.entries(&host_pattern(host, *port)).unwrap();
            assert_eq!(found.iter().map(|e| e.line).collect::<Vec<_>>(), [i + 2], "{host}");
            assert_eq!(check(host, *port).check(&key), Ok(None), "{host} known");
        }
        // One HMAC a lookup: the one line from elsewhere.
        assert_eq!(hmacs() - before, hosts.len());
        assert!(files.entries("h1").unwrap().is_empty(), "h1 is recorded on port 2222 only");
        assert_eq!(files.entries("other").unwrap().iter().map(|e| e.line).collect::<Vec<_>>(), [1]);
        assert!(files.entries("h0x").unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file is read once for every lookup of a run, and again once it changed.
    #[test]
    fn a_file_is_read_again_only_when_it_changed() {
        let dir = scratch("read-again");
        let file = dir.join("known_hosts");
        let key = KEY;
        std::fs::write(&file, format!("# a comment\nweb1,web2 {key}\n@revoked web3 {key}\n")).unwrap();
        let files = KnownHosts { user: vec![file.clone()], global: vec![dir.join("absent")], explicit: true };
        let lines = |host: &str| files.entries(host).unwrap().iter().map(|e| (e.line, e.marker)).collect::<Vec<_>>();
        assert_eq!(lines("web2"), [(2, Marker::None)]);
        assert_eq!(lines("web3"), [(3, Marker::Revoked)]);
        let first = Parsed::matching(&file, "web2").unwrap();
        assert!(Arc::ptr_eq(&first, &Parsed::matching(&file, "web2").unwrap()), "looked up once");
        // A line recorded since (by this run or another): the file is read again.
        let mut text = std::fs::read_to_string(&file).unwrap();
        text.push_str(&format!("web4 {key}\n"));
        std::fs::write(&file, text).unwrap();
        assert_eq!(lines("web4"), [(4, Marker::None)]);
        assert_eq!(lines("web1"), [(2, Marker::None)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
