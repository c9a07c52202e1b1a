//! ssh_config, resolved for one host as OpenSSH resolves it (`readconf.c`, `ssh.c`).
//!
//! The files: an explicit one (as `ssh -F`: then nothing else is read), else `~/.ssh/config`
//! and then `/etc/ssh/ssh_config`. Lines are `Keyword value`, `Keyword=value` or quoted;
//! keywords are case-insensitive; a `#` word ends the line. Options before any `Host` apply
//! to every host. `Host` patterns (globs, `!` negation ruling the block out) match the host as
//! typed; `Match` takes `all`, `host` (the name after `HostName`), `originalhost`, `user`,
//! `localuser`, `exec` (the command succeeds) and `final` (a second pass once the host name
//! is known), each maybe negated. `Include` reads files (globs; relative to `~/.ssh` or
//! `/etc/ssh`) in the block it stands in. The first value obtained wins, except
//! `IdentityFile` and `CertificateFile`, which add up. `HostName` may use `%h` and `%%`.
//!
//! `tests/e2e/ssh_config.rs` compares what this resolves with `ssh -G` on a corpus of configs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Keywords whose values add up instead of the first winning.
const MULTI: &[&str] = &["identityfile", "certificatefile"];

/// Deepest `Include` nesting, as OpenSSH's READCONF_MAX_DEPTH.
const MAX_DEPTH: usize = 16;

/// What the files say for one host: each keyword (lower case) with its values, and where.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Resolved {
    pub options: BTreeMap<String, Vec<String>>,
    /// `file:line` of the first value of each keyword.
    pub origin: BTreeMap<String, String>,
    /// In which order the keywords were first obtained (ProxyJump and ProxyCommand: the
    /// first one obtained wins over the other).
    pub order: BTreeMap<String, usize>,
}

impl Resolved {
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.options.get(keyword).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, keyword: &str) -> &[String] {
        self.options.get(keyword).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The files to read.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// An explicit file (`ssh -F`): the only one read. `none` reads nothing.
    pub explicit: Option<PathBuf>,
    pub home: PathBuf,
    pub local_user: String,
}

struct Pass<'a> {
    /// The host as typed (`originalhost`, and what `Host` matches on the first pass).
    original: &'a str,
    /// What `Host` matches: the host as typed, or on the final pass the resolved name.
    host: String,
    final_pass: bool,
    want_final: bool,
    resolved: Resolved,
    errors: Vec<String>,
}

impl SshConfig {
    /// The user's `~/.ssh/config` and the system file, or `explicit`.
    pub fn new(explicit: Option<PathBuf>) -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        SshConfig { explicit, home, local_user: crate::catalog::local_user() }
    }

    /// Resolves `host` (as it would be typed after `ssh`); errors are `file:line: what`.
    pub fn resolve(&self, host: &str) -> Result<Resolved, String> {
        let mut pass = Pass {
            original: host,
            host: host.to_string(),
            final_pass: false,
            want_final: false,
            resolved: Resolved::default(),
            errors: Vec::new(),
        };
        self.read_all(&mut pass);
        if pass.want_final {
            // ssh.c: the files are read again, `Host` now matching the host name resolved so
            // far (which becomes HostName); what the first pass obtained stays.
            let name = hostname(&pass.resolved, host).to_ascii_lowercase();
            pass.resolved.options.insert("hostname".into(), vec![name.clone()]);
            pass.host = name;
            pass.final_pass = true;
            self.read_all(&mut pass);
        }
        match pass.errors.first() {
            Some(e) => Err(e.clone()),
            None => Ok(pass.resolved),
        }
    }

    fn read_all(&self, pass: &mut Pass) {
        match &self.explicit {
            Some(p) if p.as_os_str() == "none" => {}
            Some(p) => {
                if let Err(e) = std::fs::metadata(p) {
                    pass.errors.push(format!(
                        "cannot read ssh config {}: {}",
                        p.display(),
                        crate::error::io_reason(&e)
                    ));
                    return;
                }
                self.read_file(p, true, pass, &mut true, 0);
            }
            None => {
                self.read_file(&self.home.join(".ssh/config"), true, pass, &mut true, 0);
                self.read_file(Path::new("/etc/ssh/ssh_config"), false, pass, &mut true, 0);
            }
        }
    }

    fn read_file(&self, path: &Path, user_file: bool, pass: &mut Pass, active: &mut bool, depth: usize) {
        let Ok(text) = std::fs::read_to_string(path) else { return };
        *active = true;
        for (n, raw) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), n + 1);
            let Some((keyword, args)) = split_line(raw) else { continue };
            let keyword = keyword.to_ascii_lowercase();
            match keyword.as_str() {
                "host" => {
                    *active = false;
                    for arg in &args {
                        let (negated, pattern) = match arg.strip_prefix('!') {
                            Some(p) => (true, p),
                            None => (false, arg.as_str()),
                        };
                        if super::pattern::glob(pattern, &pass.host) {
                            if negated {
                                *active = false;
                                break;
                            }
                            *active = true;
                        }
                    }
                }
                "match" => match self.match_line(&args, pass) {
                    Ok(m) => *active = m,
                    Err(e) => {
                        pass.errors.push(format!("{at}: {e}"));
                        *active = false;
                    }
                },
                "include" => {
                    if depth >= MAX_DEPTH {
                        pass.errors.push(format!("{at}: Include nested too deep"));
                        continue;
                    }
                    let outer = *active;
                    for arg in &args {
                        let full = if arg.starts_with('/') {
                            arg.clone()
                        } else if let Some(rest) = arg.strip_prefix("~/") {
                            self.home.join(rest).display().to_string()
                        } else if user_file {
                            self.home.join(".ssh").join(arg).display().to_string()
                        } else {
                            format!("/etc/ssh/{arg}")
                        };
                        let mut files: Vec<PathBuf> =
                            glob::glob(&full).map(|g| g.flatten().collect()).unwrap_or_default();
                        files.sort();
                        for file in files {
                            // Lines of an include inside an inactive block are read, not applied.
                            let mut inner = outer;
                            if outer {
                                self.read_file(&file, user_file, pass, &mut inner, depth + 1);
                            }
                        }
                    }
                    // An include's Host and Match do not change the including block.
                    *active = outer;
                }
                _ if *active => {
                    if args.is_empty() {
                        continue;
                    }
                    let values = &mut pass.resolved.options;
                    let next = pass.resolved.order.len();
                    if MULTI.contains(&keyword.as_str()) {
                        values.entry(keyword.clone()).or_default().extend(args);
                        pass.resolved.order.entry(keyword.clone()).or_insert(next);
                        pass.resolved.origin.entry(keyword).or_insert(at);
                    } else if !values.contains_key(&keyword) {
                        values.insert(keyword.clone(), args);
                        pass.resolved.order.insert(keyword.clone(), next);
                        pass.resolved.origin.insert(keyword, at);
                    }
                }
                _ => {}
            }
        }
    }

    /// A `Match` line's criteria, all of which must hold.
    fn match_line(&self, args: &[String], pass: &mut Pass) -> Result<bool, String> {
        let mut result = true;
        let mut words = args.iter();
        let mut count = 0;
        while let Some(word) = words.next() {
            count += 1;
            let (negated, criterion) = match word.strip_prefix('!') {
                Some(c) => (true, c.to_ascii_lowercase()),
                None => (false, word.to_ascii_lowercase()),
            };
            let (criterion, inline) = match criterion.split_once('=') {
                Some((c, v)) => (c.to_string(), Some(v.to_string())),
                None => (criterion, None),
            };
            let hit = match criterion.as_str() {
                "all" => {
                    if count > 1 || words.len() > 0 {
                        return Err("'all' cannot be combined with other Match attributes".into());
                    }
                    true
                }
                "final" | "canonical" => {
                    if criterion == "final" && !negated {
                        pass.want_final = true;
                    }
                    pass.final_pass
                }
                _ => {
                    let arg = match inline {
                        Some(v) => v,
                        None => words.next().cloned().ok_or_else(|| format!("missing argument for Match '{word}'"))?,
                    };
                    match criterion.as_str() {
                        "host" => {
                            let host = if pass.final_pass {
                                pass.host.clone()
                            } else {
                                hostname(&pass.resolved, pass.original)
                            };
                            super::pattern::list(&arg, &host.to_ascii_lowercase())
                        }
                        "originalhost" => super::pattern::list(&arg, &pass.original.to_ascii_lowercase()),
                        "user" => {
                            let user = pass.resolved.get("user").unwrap_or(&self.local_user).to_string();
                            super::pattern::list(&arg, &user)
                        }
                        "localuser" => super::pattern::list(&arg, &self.local_user),
                        "exec" => {
                            // Only when what came before holds, as OpenSSH skips it.
                            result
                                && std::process::Command::new("/bin/sh")
                                    .arg("-c")
                                    .arg(expand(&arg, &pass.resolved, pass.original, &self.local_user))
                                    .stdin(std::process::Stdio::null())
                                    .stdout(std::process::Stdio::null())
                                    .stderr(std::process::Stdio::null())
                                    .status()
                                    .is_ok_and(|s| s.success())
                        }
                        other => return Err(format!("unsupported Match attribute {other}")),
                    }
                }
            };
            if hit == negated {
                result = false;
            }
        }
        if count == 0 {
            return Err("Match needs criteria (all, host, originalhost, user, localuser, exec, final)".into());
        }
        Ok(result)
    }
}

/// Directives director honours; any other that applies to a node is named in a warning.
const HONOURED: &[&str] = &[
    "hostname",
    "user",
    "port",
    "identityfile",
    "identitiesonly",
    "certificatefile",
    "identityagent",
    "stricthostkeychecking",
    "hashknownhosts",
    "userknownhostsfile",
    "globalknownhostsfile",
    "hostkeyalias",
    "proxyjump",
    "proxycommand",
    "connecttimeout",
    "serveraliveinterval",
    "serveralivecountmax",
    "kexalgorithms",
    "ciphers",
    "macs",
    "hostkeyalgorithms",
];

/// Directives that cannot change what director does on a node: forwarding (X11, ports,
/// tunnels), authentication methods director does not offer (GSSAPI, passwords, host-based),
/// environment sent to sshd's AcceptEnv, connection sharing, terminal, escape, log and
/// keep-alive settings of the interactive client, extra host-key checks director does not make
/// (CheckHostIP, VerifyHostKeyDNS, UpdateHostKeys). Debian's and Ubuntu's stock ssh_config
/// set some of them under `Host *`: they are logged at `-v`, never warned. Any other
/// directive director does not use is warned about: its absence may change what happens.
const NO_EFFECT: &[&str] = &[
    "addkeystoagent",
    "batchmode",
    "canonicaldomains",
    "checkhostip",
    "clearallforwardings",
    "compression",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "dynamicforward",
    "enableescapecommandline",
    "enablesshkeysign",
    "escapechar",
    "exitonforwardfailure",
    "fingerprinthash",
    "forkafterauthentication",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "gssapiauthentication",
    "gssapiclientidentity",
    "gssapidelegatecredentials",
    "gssapikeyexchange",
    "gssapirenewalforcesrekey",
    "gssapiserveridentity",
    "gssapitrustdns",
    "hostbasedacceptedalgorithms",
    "hostbasedauthentication",
    "hostbasedkeytypes",
    "ipqos",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "localcommand",
    "localforward",
    "loglevel",
    "logverbose",
    "nohostauthenticationforlocalhost",
    "numberofpasswordprompts",
    "passwordauthentication",
    "permitlocalcommand",
    "permitremoteopen",
    "rekeylimit",
    "remotecommand",
    "remoteforward",
    "requesttty",
    "sendenv",
    "sessiontype",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "tcpkeepalive",
    "tunnel",
    "tunneldevice",
    "updatehostkeys",
    "usekeychain",
    "verifyhostkeydns",
    "visualhostkey",
    "xauthlocation",
];

/// The `%` tokens of a connection, as ssh.c's DEFAULT_CLIENT_PERCENT_EXPAND_ARGS: `%h` the
/// host name, `%n` the host as typed, `%p` the port, `%r` the remote user, `%u` the local
/// user, `%d` the local home, `%l` the local host name (`%L` its first part), `%i` the local
/// uid, `%k` the host key alias (else the host as typed), `%j` the last ProxyJump hop, `%C`
/// the sha1 of `%l%h%p%r%j`.
pub struct Tokens(Vec<(char, String)>);

impl Tokens {
    pub fn new(
        host: &str,
        original: &str,
        port: u16,
        user: &str,
        alias: Option<&str>,
        jump: &str,
        config: &SshConfig,
    ) -> Self {
        use sha1::Digest;
        let (local, uid) = local_identity().clone();
        let short = local.split('.').next().unwrap_or_default().to_string();
        let port = port.to_string();
        let hash: String = sha1::Sha1::digest(format!("{local}{host}{port}{user}{jump}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Tokens(vec![
            ('h', host.to_string()),
            ('n', original.to_string()),
            ('p', port),
            ('r', user.to_string()),
            ('u', config.local_user.clone()),
            ('d', config.home.display().to_string()),
            ('l', local),
            ('L', short),
            ('i', uid),
            ('k', alias.unwrap_or(original).to_string()),
            ('j', jump.to_string()),
            ('C', hash),
        ])
    }

    /// `text` with its tokens expanded, then a leading `~/` as the local home (`%d`).
    pub fn path(&self, text: &str) -> PathBuf {
        let pairs: Vec<(char, &str)> = self.0.iter().map(|(c, v)| (*c, v.as_str())).collect();
        let expanded = percent(text, &pairs);
        match (expanded.strip_prefix("~/"), pairs.iter().find(|(c, _)| *c == 'd')) {
            (Some(rest), Some((_, home))) => Path::new(home).join(rest),
            _ => PathBuf::from(expanded),
        }
    }
}

/// This machine's host name and the user's uid (`%l`, `%i`): read once per process, not per
/// node.
fn local_identity() -> &'static (String, String) {
    static LOCAL: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    LOCAL.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:").and_then(|r| r.split_whitespace().next().map(str::to_string)))
            .unwrap_or_default();
        (host, uid)
    })
}

/// What ssh_config says of a host beyond where it is (see [`crate::catalog::SshOptions`]),
/// and the warnings it calls for; a value it cannot use is an input error at its line.
fn options(r: &Resolved, tokens: &Tokens) -> Result<(crate::catalog::SshOptions, Vec<String>), crate::error::Error> {
    use crate::catalog::AgentSocket;
    use crate::error::Error;
    let at = |k: &str| r.origin.get(k).cloned().unwrap_or_default();
    let number = |k: &str, what: &str| -> Result<Option<u64>, Error> {
        match r.get(k) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                Error::input(format!("{}: `{v}` is not {what}", at(k))).hint("give a whole number of seconds")
            }),
        }
    };
    let yes = |k: &str| r.get(k).is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let mut options = crate::catalog::SshOptions {
        host_key_alias: r.get("hostkeyalias").map(str::to_string),
        connect_timeout: number("connecttimeout", "a number of seconds")?
            .filter(|s| *s > 0)
            .map(std::time::Duration::from_secs),
        identities_only: yes("identitiesonly"),
        certificate_files: r.all("certificatefile").iter().map(|f| tokens.path(f)).collect(),
        agent: match r.get("identityagent") {
            None => AgentSocket::Environment,
            Some(v) if v.eq_ignore_ascii_case("none") => AgentSocket::Off,
            Some("SSH_AUTH_SOCK") => AgentSocket::Environment,
            Some(v) => match v.strip_prefix('$') {
                Some(var) => match std::env::var_os(var) {
                    Some(p) => AgentSocket::Path(PathBuf::from(p)),
                    None => AgentSocket::Off,
                },
                None => AgentSocket::Path(tokens.path(v)),
            },
        },
        kex: r.get("kexalgorithms").map(str::to_string),
        ciphers: r.get("ciphers").map(str::to_string),
        macs: r.get("macs").map(str::to_string),
        host_key_algorithms: r.get("hostkeyalgorithms").map(str::to_string),
        server_alive: None,
    };
    let interval = number("serveraliveinterval", "a number of seconds")?;
    let count = number("serveralivecountmax", "a count")?;
    if interval.is_some() || count.is_some() {
        options.server_alive = Some((interval.unwrap_or(0), count.unwrap_or(3).min(u64::from(u32::MAX)) as u32));
    }
    // The algorithm lists: an empty one is an error; names director's SSH lacks are warned
    // about, once each, at their line.
    let missing = match crate::transport::ssh::preferred(&options) {
        Ok((_, missing)) => missing,
        Err(e) => {
            let key = ["kexalgorithms", "ciphers", "macs", "hostkeyalgorithms"]
                .into_iter()
                .find(|k| e.to_ascii_lowercase().starts_with(k))
                .unwrap_or("kexalgorithms");
            return Err(
                Error::input(format!("{}: {e}", at(key))).hint("name at least one algorithm director's SSH has")
            );
        }
    };
    let warnings = missing
        .into_iter()
        .map(|n| {
            let keyword = n.split(' ').next().unwrap_or_default().to_ascii_lowercase();
            format!("warning: ssh_config: {}: director's SSH has no {n}; it is left out", at(&keyword))
        })
        .collect();
    Ok((options, warnings))
}

/// Resolves every SSH node through ssh_config before anything is contacted, as `ssh NODE`
/// would: its `host` may be an alias (`HostName`), and `User`, `Port`, `IdentityFile` and
/// `StrictHostKeyChecking` apply where the catalog set none (the catalog beats the file, as
/// `-o` beats it for `ssh`). `ProxyJump` hops (or the catalog's `via:`) are resolved the same
/// way; `ProxyCommand` runs with `sh -c` and the session goes over its stdin and stdout (the
/// first obtained of the two wins, as in `ssh`). The warnings name the directives that applied but director
/// does not honour, once each.
pub fn apply(nodes: &mut [crate::catalog::Node], config: &SshConfig) -> Result<Vec<String>, crate::error::Error> {
    use crate::catalog::{HostKeyPolicy, IdentityOrigin, TransportKind};
    use crate::error::Error;
    let mut ignored: BTreeMap<String, String> = BTreeMap::new();
    let mut no_effect: BTreeMap<String, String> = BTreeMap::new();
    let mut warned: Vec<String> = Vec::new();
    for node in nodes.iter_mut().filter(|n| n.transport == TransportKind::Ssh) {
        let r = config.resolve(&node.host).map_err(|e| {
            Error::input(format!("ssh_config, for node `{}`: {e}", node.name))
                .hint("fix the line, or choose another file with --ssh-config (`none` reads none)")
        })?;
        let at = |k: &str| r.origin.get(k).cloned().unwrap_or_default();
        // ProxyJump and ProxyCommand exclude each other: the first obtained wins.
        let command = r.all("proxycommand").join(" ");
        let command = Some(command).filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("none"));
        let jump_first = match (r.order.get("proxyjump"), r.order.get("proxycommand")) {
            (Some(j), Some(c)) => j < c,
            _ => true,
        };
        // The hops: the catalog's `via:` wins; else ssh_config's ProxyJump, whose hops log in
        // as ssh would (their own User, else the local user).
        let from_config = node.jumps.is_empty();
        if from_config && (command.is_none() || jump_first) {
            if let Some(route) = r.get("proxyjump").filter(|v| !v.eq_ignore_ascii_case("none")) {
                node.jumps = route
                    .split(',')
                    .map(|h| {
                        crate::catalog::Jump::parse(h).ok_or_else(|| {
                            Error::input(format!("{}: ProxyJump hop `{h}` is not [user@]host[:port]", at("proxyjump")))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
        }
        for hop in &mut node.jumps {
            let hr = config
                .resolve(&hop.host)
                .map_err(|e| Error::input(format!("ssh_config, for jump host `{}`: {e}", hop.spec)))?;
            if hop.user.is_empty() {
                hop.user = match hr.get("user") {
                    Some(u) => u.to_string(),
                    None if from_config => config.local_user.clone(),
                    None => node.user.clone(),
                };
            }
            if hop.port == 0 {
                hop.port = hr.get("port").and_then(|p| p.parse().ok()).unwrap_or(22);
            }
            let hop_name = hostname(&hr, &hop.host);
            let tokens = Tokens::new(&hop_name, &hop.host, hop.port, &hop.user, hr.get("hostkeyalias"), "", config);
            hop.identity_file = hr
                .all("identityfile")
                .iter()
                .map(|f| tokens.path(f))
                .find(|f| f.exists())
                .or_else(|| node.identity_file.clone());
            let (ssh, said) = options(&hr, &tokens)?;
            hop.ssh = ssh;
            warned.extend(said);
            hop.host = hop_name;
        }
        let name = hostname(&r, &node.host);
        if !node.user_set {
            if let Some(user) = r.get("user") {
                node.user = user.to_string();
            }
        }
        if !node.port_set {
            if let Some(port) = r.get("port") {
                node.port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| Error::input(format!("{}: `Port {port}` is not a port number", at("port"))))?;
            }
        }
        // %j: the last hop's host as written.
        let last_hop = node.jumps.last().and_then(|j| crate::catalog::Jump::parse(&j.spec)).map(|j| j.host);
        let last_hop = last_hop.unwrap_or_default();
        let tokens = Tokens::new(&name, &node.host, node.port, &node.user, r.get("hostkeyalias"), &last_hop, config);
        if node.identity_file.is_none() {
            // ssh offers each in turn; the first that exists is the one director uses.
            if let Some(file) = r.all("identityfile").iter().map(|f| tokens.path(f)).find(|f| f.exists()) {
                node.identity_file = Some(file);
                node.identity_at = IdentityOrigin::SshConfig(at("identityfile"));
            }
        }
        if node.host_key_checking.is_none() {
            node.host_key_checking = match r.get("stricthostkeychecking").map(str::to_ascii_lowercase).as_deref() {
                Some("yes" | "ask") => Some(HostKeyPolicy::Strict),
                Some("accept-new") => Some(HostKeyPolicy::AcceptNew),
                Some("no" | "off") => Some(HostKeyPolicy::Off),
                _ => None,
            };
        }
        node.hash_known_hosts = r.get("hashknownhosts").is_some_and(|v| v.eq_ignore_ascii_case("yes"));
        let files = |keyword: &str| -> Vec<PathBuf> {
            let values = r.all(keyword);
            if values.first().is_some_and(|v| v.eq_ignore_ascii_case("none")) {
                // `none`: no file of that kind (a file that does not exist reads as empty).
                return vec![PathBuf::from("/dev/null")];
            }
            values.iter().map(|f| tokens.path(f)).collect()
        };
        node.user_known_hosts = files("userknownhostsfile");
        node.global_known_hosts = files("globalknownhostsfile");
        if from_config && node.jumps.is_empty() {
            node.proxy_command = command.map(|c| {
                let port = node.port.to_string();
                percent(&c, &[('h', &name), ('p', &port), ('r', &node.user), ('n', &node.host)])
            });
        }
        let (ssh, said) = options(&r, &tokens)?;
        node.ssh = ssh;
        warned.extend(said);
        node.host = name;
        for (keyword, where_) in &r.origin {
            if NO_EFFECT.contains(&keyword.as_str()) {
                no_effect.entry(keyword.clone()).or_insert_with(|| where_.clone());
            } else if !HONOURED.contains(&keyword.as_str()) {
                ignored.entry(keyword.clone()).or_insert_with(|| where_.clone());
            }
        }
    }
    if !no_effect.is_empty() {
        let named: Vec<String> = no_effect.iter().map(|(k, at)| format!("{k} ({at})")).collect();
        tracing::info!("ssh_config: {} change nothing director does", named.join(", "));
    }
    let mut warnings = Vec::new();
    if !ignored.is_empty() {
        let named: Vec<String> = ignored.iter().map(|(k, at)| format!("{k} ({at})")).collect();
        warnings.push(format!("warning: ssh_config: director does not use {} yet", named.join(", ")));
    }
    warned.sort();
    warned.dedup();
    warnings.extend(warned);
    Ok(warnings)
}

/// The host name to connect to: `HostName` with `%h` expanded, else the host as typed.
pub fn hostname(resolved: &Resolved, original: &str) -> String {
    match resolved.get("hostname") {
        Some(name) => percent(name, &[('h', original)]),
        None => original.to_string(),
    }
}

/// `%` tokens: `%%` and the given ones; an unknown token is kept as written.
fn percent(text: &str, tokens: &[(char, &str)]) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => match tokens.iter().find(|(k, _)| *k == t) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push('%');
                    out.push(t);
                }
            },
            None => out.push('%'),
        }
    }
    out
}

/// The tokens of a `Match exec` command.
fn expand(text: &str, resolved: &Resolved, original: &str, local_user: &str) -> String {
    let host = hostname(resolved, original);
    let user = resolved.get("user").unwrap_or(local_user).to_string();
    let port = resolved.get("port").unwrap_or("22").to_string();
    percent(text, &[('h', &host), ('n', original), ('r', &user), ('u', local_user), ('p', &port)])
}

/// A line's keyword and arguments: `Keyword value`, `Keyword=value`, `Keyword = "a b"`; `None`
/// for a blank line or a comment.
fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let keyword = line[..end].to_string();
    let mut rest = line[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') if matches!(chars.peek(), Some('"' | '\'' | '\\')) => {
                current.get_or_insert_with(String::new).push(chars.next().unwrap_or('\\'));
            }
            (Some(_), c) => current.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                current.get_or_insert_with(String::new);
            }
            (None, '#') if current.is_none() => break,
            (None, c) if c.is_whitespace() => args.extend(current.take()),
            (None, c) => current.get_or_insert_with(String::new).push(c),
        }
    }
    args.extend(current);
    Some((keyword, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_like_openssh() {
        assert_eq!(split_line("  HostName=web.example.com"), Some(("HostName".into(), vec!["web.example.com".into()])));
        assert_eq!(split_line("User = deploy # the deploy user"), Some(("User".into(), vec!["deploy".into()])));
        assert_eq!(
            split_line("IdentityFile \"~/my keys/id\""),
            Some(("IdentityFile".into(), vec!["~/my keys/id".into()]))
        );
        assert_eq!(split_line("# comment"), None);
        assert_eq!(percent("%h.example.com%%", &[('h', "web1")]), "web1.example.com%");
    }
}
