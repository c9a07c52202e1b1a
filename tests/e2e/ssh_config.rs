//! The ssh_config resolver against OpenSSH itself: for each config of the corpus and each
//! host name, what `ssh -G -F FILE HOST` prints must be what director resolves, for the
//! directives director uses.

use director::api::ssh_config::{hostname, SshConfig};
use std::process::Command;

/// (config, hosts to resolve with it). `@D@` is the test's directory.
const CORPUS: &[(&str, &[&str])] = &[
    ("Host web-*\n  HostName %h.example.com\n  User deploy\n  Port 2200\n", &["web-1", "db-1"]),
    ("Host *\n  User everyone\nHost web1\n  User web\n", &["web1"]),
    ("Host web1\n  User web\nHost *\n  User everyone\n", &["web1", "other"]),
    ("User top\nHost web1\n  User web\n", &["web1"]),
    ("Host web? !web9\n  User pattern\n", &["web1", "web9", "web10"]),
    ("Host *.prod !bad.prod\n  Port 2022\n", &["a.prod", "bad.prod", "a.dev"]),
    ("Host alias\n  HostName 192.0.2.10\n  Port 2222\n  User admin\n", &["alias", "ALIAS"]),
    ("Host = eq1\n  HostName = eq.example.com\n  User=equal\n", &["eq1"]),
    ("Host \"quoted host\" plain\n  User quoted\n", &["plain"]),
    ("Host a\n  IdentityFile ~/.ssh/a_key\nHost *\n  IdentityFile ~/.ssh/common\n", &["a", "b"]),
    ("Host a\n  IdentityFile \"~/my keys/a\"\n  IdentitiesOnly yes\n", &["a"]),
    ("Host j\n  ProxyJump bastion.example\n", &["j", "k"]),
    ("Host j\n  ProxyJump admin@b1:2222,b2\n", &["j"]),
    ("Host j\n  ProxyJump none\nHost *\n  ProxyJump everywhere\n", &["j", "x"]),
    ("Host pc\n  ProxyCommand nc -X connect %h %p\n", &["pc"]),
    ("Host s\n  StrictHostKeyChecking yes\nHost *\n  StrictHostKeyChecking accept-new\n", &["s", "t"]),
    ("Host s\n  StrictHostKeyChecking no\n", &["s"]),
    ("Host k\n  UserKnownHostsFile /tmp/kh1 /tmp/kh2\n", &["k"]),
    ("Host a\n  HostKeyAlias alias-a\n  ConnectTimeout 7\n", &["a"]),
    ("Match host 192.0.2.*\n  User by-address\nHost named\n  HostName 192.0.2.5\n", &["named", "192.0.2.9", "other"]),
    ("Host named\n  HostName 192.0.2.5\nMatch host 192.0.2.*\n  User by-address\n", &["named", "other"]),
    ("Match originalhost web*\n  User orig\n", &["web3", "db3"]),
    ("Match user root,deploy\n  Port 2300\n", &["x"]),
    ("User deploy\nMatch user deploy\n  Port 2301\n", &["x"]),
    ("Match localuser nobody-here\n  Port 2302\n", &["x"]),
    ("Match !localuser nobody-here\n  Port 2303\n", &["x"]),
    ("Match all\n  User all-match\n", &["x"]),
    ("Match exec \"test %h = ex1\"\n  User execd\n", &["ex1", "ex2"]),
    ("Match exec false\n  User never\nMatch exec true\n  User always\n", &["x"]),
    (
        "Host short\n  HostName short.example.com\nMatch final host short.example.com\n  User final-user\n",
        &["short", "long"],
    ),
    ("Match final\n  Port 2304\nHost *\n  Port 2305\n", &["x"]),
    ("Host first\n  Port 2306\n  Port 2307\n", &["first"]),
    ("Host inc\n  Include @D@/inc-*.conf\nHost *\n  User after-include\n", &["inc", "other"]),
    ("Include @D@/inc-*.conf\n", &["inc", "x"]),
    ("Host a b c\n  User abc\n", &["b", "d"]),
    ("HOST upper\n  USER shouting\n  hostname UP.example.com\n", &["upper"]),
    ("Host p\n  Port 2222 # a comment\n", &["p"]),
    ("Host *\n  HostName %h.corp.example\n", &["db", "web.x"]),
    ("Host pct\n  HostName %%literal%h\n", &["pct"]),
    ("Match host web1,web2 user root\n  Port 2400\nHost web1\n  User other\n", &["web1", "web3"]),
    ("Host cert\n  CertificateFile ~/.ssh/c1-cert.pub\n  CertificateFile ~/.ssh/c2-cert.pub\n", &["cert"]),
    ("Host *\n  ServerAliveInterval 5\n  ServerAliveCountMax 2\n", &["x"]),
];

/// What director compares: keyword, and the value it resolves to (with OpenSSH's default).
fn ours(config: &SshConfig, host: &str, local_user: &str) -> Vec<(String, String)> {
    let r = config.resolve(host).unwrap();
    let yes_no = |v: Option<&str>, default: &str| match v.map(str::to_ascii_lowercase).as_deref() {
        Some("yes") => "true".to_string(),
        Some("no") => "false".to_string(),
        Some(other) => other.to_string(),
        None => default.to_string(),
    };
    let mut out = vec![
        ("hostname".into(), hostname(&r, host).to_ascii_lowercase()),
        ("user".into(), r.get("user").unwrap_or(local_user).to_string()),
        ("port".into(), r.get("port").unwrap_or("22").to_string()),
        ("stricthostkeychecking".into(), yes_no(r.get("stricthostkeychecking"), "ask")),
        ("identitiesonly".into(), r.get("identitiesonly").unwrap_or("no").to_ascii_lowercase()),
        ("connecttimeout".into(), r.get("connecttimeout").unwrap_or("none").to_string()),
        ("serveraliveinterval".into(), r.get("serveraliveinterval").unwrap_or("0").to_string()),
        ("serveralivecountmax".into(), r.get("serveralivecountmax").unwrap_or("3").to_string()),
    ];
    for k in ["hostkeyalias", "proxycommand"] {
        if let Some(v) = r.options.get(k) {
            out.push((k.into(), v.join(" ")));
        }
    }
    if let Some(v) = r.get("proxyjump").filter(|v| *v != "none") {
        out.push(("proxyjump".into(), v.to_string()));
    }
    for k in ["identityfile", "certificatefile"] {
        for v in r.all(k) {
            out.push((k.into(), v.clone()));
        }
    }
    if let Some(v) = r.options.get("userknownhostsfile") {
        out.push(("userknownhostsfile".into(), v.join(" ")));
    }
    out.sort();
    out
}

fn theirs(
    file: &std::path::Path,
    host: &str,
    home: &std::path::Path,
    wanted: &[(String, String)],
) -> Vec<(String, String)> {
    let out = Command::new("ssh").arg("-G").arg("-F").arg(file).arg(host).env("HOME", home).output().unwrap();
    assert!(out.status.success(), "ssh -G {host}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let keys: Vec<&str> = wanted.iter().map(|(k, _)| k.as_str()).collect();
    let mut pairs: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())))
        .filter(|(k, _)| {
            keys.contains(&k.as_str()) || ["proxyjump", "proxycommand", "hostkeyalias"].contains(&k.as_str())
        })
        .collect();
    // ssh prints its default identities when none is set; director compares only set ones.
    if !keys.contains(&"identityfile") {
        pairs.retain(|(k, _)| k != "identityfile");
    }
    if !keys.contains(&"userknownhostsfile") {
        pairs.retain(|(k, _)| k != "userknownhostsfile");
    }
    pairs.sort();
    pairs.dedup();
    pairs
}

#[test]
fn ssh_config_resolves_as_ssh_g_does() {
    let dir = super::scratch("ssh-config");
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(
        dir.join("inc-1.conf"),
        "Host inc\n  Port 2501\n  User from-include\nMatch all\n  User include-wide\n",
    )
    .unwrap();
    std::fs::write(dir.join("inc-2.conf"), "HostName inc2.example.com\n").unwrap();
    let local_user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let mut cases = 0;
    let mut differ = Vec::new();
    for (i, (text, hosts)) in CORPUS.iter().enumerate() {
        let file = dir.join(format!("config-{i}"));
        std::fs::write(&file, text.replace("@D@", &dir.display().to_string())).unwrap();
        let config = SshConfig { explicit: Some(file.clone()), home: home.clone(), local_user: local_user.clone() };
        for host in *hosts {
            cases += 1;
            let mine = ours(&config, host, &local_user);
            let ssh = theirs(&file, host, &home, &mine);
            if mine != ssh {
                differ.push(format!("config {i} host {host}:\n  director {mine:?}\n  ssh      {ssh:?}"));
            }
        }
    }
    assert!(cases >= 40, "only {cases} cases");
    assert!(differ.is_empty(), "{} of {cases} resolutions differ:\n{}", differ.len(), differ.join("\n"));
}

#[test]
fn nodes_are_reached_the_way_ssh_config_says() {
    use super::{code, output, stderr};
    let fleet = super::harness::Fleet::start(2);
    let h = &fleet.hosts;
    let user = if super::harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let config = fleet.file(
        "ssh_config",
        &format!(
            "Host web-1\n  HostName {}\n  Port {}\nHost web-2\n  HostName {}\n  Port {}\nHost web-*\n  User {user}\n  IdentityFile {}\n  ForwardAgent yes\n  HashKnownHosts yes\n",
            h[0].addr,
            h[0].port,
            h[1].addr,
            h[1].port,
            fleet.key.display()
        ),
    );
    // The catalog names aliases only: ssh_config says how to reach them.
    let catalog = fleet.file("aliases.yaml", "nodes:\n  - {name: web-1}\n  - {name: web-2}\n");
    // OpenSSH reaches them with this file: the oracle.
    let ssh = Command::new("ssh")
        .args(["-F"])
        .arg(&config)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "web-1",
            "true",
        ])
        .output()
        .unwrap();
    assert!(ssh.status.success(), "ssh -F: {}", String::from_utf8_lossy(&ssh.stderr));
    let run = |catalog: &std::path::Path, extra: &[&str]| {
        output(
            fleet
                .director()
                .args(["exec", "--catalog"])
                .arg(catalog)
                .arg("--ssh-config")
                .arg(&config)
                .args(extra)
                .args(["--json", "uname", "-n"]),
        )
    };
    let out = run(&catalog, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("warning: ssh_config: director does not use forwardagent ({}:10) yet\n", config.display())
    );
    let events = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(events.contains(&format!("\"address\":\"{user}@{}:{}\"", h[0].addr, h[0].port)), "{events}");
    // HashKnownHosts: the new keys are recorded under hashed names, which ssh-keygen finds.
    let recorded = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    assert!(recorded.lines().count() == 2 && recorded.lines().all(|l| l.starts_with("|1|")), "{recorded}");
    let name = if h[0].port == 22 { h[0].addr.clone() } else { format!("[{}]:{}", h[0].addr, h[0].port) };
    let found = Command::new("ssh-keygen").args(["-F", &name, "-f"]).arg(&fleet.known_hosts).output().unwrap();
    assert!(String::from_utf8_lossy(&found.stdout).contains("ssh-ed25519"), "ssh-keygen -F does not find {name}");
    // UserKnownHostsFile from the file is where keys are checked and recorded, unless
    // --known-hosts (or DIRECTOR_KNOWN_HOSTS) names one.
    let own_kh = fleet.path().join("kh-from-config");
    let with_kh = fleet.file(
        "kh_config",
        &format!("{}  UserKnownHostsFile {}\n", std::fs::read_to_string(&config).unwrap(), own_kh.display()),
    );
    let out = output(
        fleet
            .director()
            .env_remove("DIRECTOR_KNOWN_HOSTS")
            .args(["exec", "--catalog"])
            .arg(&catalog)
            .arg("--ssh-config")
            .arg(&with_kh)
            .args(["--json", "true"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&own_kh).unwrap().lines().count(), 2);
    assert!(!fleet.path().join("operator-home/.ssh/known_hosts").exists());
    // Without --ssh-config, ~/.ssh/config is the file read (then /etc/ssh/ssh_config).
    let dot_ssh = fleet.path().join("operator-home/.ssh");
    std::fs::create_dir_all(&dot_ssh).unwrap();
    std::fs::copy(&config, dot_ssh.join("config")).unwrap();
    let out = output(
        fleet
            .director()
            .env_remove("DIRECTOR_SSH_CONFIG")
            .args(["exec", "--catalog"])
            .arg(&catalog)
            .args(["--json", "true"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("forwardagent ({}:10)", dot_ssh.join("config").display())),
        "{}",
        stderr(&out)
    );
    // A catalog value beats the file, as `ssh -o` does.
    let strict = fleet.file("user.yaml", "nodes:\n  - {name: web-1, user: nobody-here}\n");
    let out = run(&strict, &[]);
    assert_eq!(code(&out), 3);
    assert!(String::from_utf8_lossy(&out.stdout).contains("authentication as nobody-here failed"));
}

#[test]
fn nodes_behind_jump_hosts_are_reached_through_them() {
    use super::{code, output, stderr};
    let mut fleet = super::harness::Fleet::start(3);
    // h2 is behind h1, h3 behind h2: h3 is two hops away.
    fleet.put_behind(1, 0);
    fleet.put_behind(2, 1);
    let h = &fleet.hosts;
    if super::harness::is_root() {
        for behind in &h[1..] {
            let direct = std::net::TcpStream::connect_timeout(
                &format!("{}:{}", behind.addr, behind.port).parse().unwrap(),
                std::time::Duration::from_millis(500),
            );
            assert!(direct.is_err(), "{} is reachable directly", behind.name);
        }
    }
    let user = if super::harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let hop = |i: usize| format!("{user}@{}:{}", h[i].addr, h[i].port);
    let catalog = fleet.file(
        "behind.yaml",
        &format!(
            "defaults: {{user: {user}, identity_file: {}}}\nnodes:\n  - {{name: h2, host: {}, port: {}, via: [{}]}}\n  - {{name: h3, host: {}, port: {}, via: [{}, {}]}}\n",
            fleet.key.display(),
            h[1].addr,
            h[1].port,
            hop(0),
            h[2].addr,
            h[2].port,
            hop(0),
            hop(1)
        ),
    );
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: hostname > ~/reached\n");
    let before = h[0].connections();
    let out = output(fleet.director().arg("orchestrate").arg(&file).arg("--catalog").arg(&catalog).arg("--json"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(h[1].home_path("reached").exists() && h[2].home_path("reached").exists());
    // One session on the first bastion served both nodes.
    assert_eq!(h[0].connections() - before, 1);
    if super::harness::is_root() {
        // Each node's sshd saw its connection come from the hop before it (the bastion's end
        // of its link), never from the operator.
        for behind in &h[1..] {
            let (stem, last) = behind.addr.rsplit_once('.').unwrap();
            let gateway = format!("{stem}.{}", last.parse::<u8>().unwrap() - 1);
            let log = std::fs::read_to_string(behind.dir.join("sshd.log")).unwrap();
            assert!(log.contains(&format!("Connection from {gateway} ")), "{}: {log}", behind.name);
        }
    }

    // The same route from ssh_config's ProxyJump, as ssh takes it.
    let config = fleet.file(
        "jump_ssh_config",
        &format!(
            "Host far\n  HostName {}\n  Port {}\n  ProxyJump {},{}\nHost *\n  User {user}\n  IdentityFile {}\n  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n",
            h[2].addr,
            h[2].port,
            hop(0),
            hop(1),
            fleet.key.display()
        ),
    );
    let ssh = Command::new("ssh").arg("-F").arg(&config).args(["far", "true"]).output().unwrap();
    assert!(ssh.status.success(), "ssh -F: {}", String::from_utf8_lossy(&ssh.stderr));
    let aliases = fleet.file("far.yaml", "nodes:\n  - {name: far}\n");
    let out = output(
        fleet
            .director()
            .args(["exec", "--catalog"])
            .arg(&aliases)
            .arg("--ssh-config")
            .arg(&config)
            .args(["--json", "true"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // ProxyCommand: the session goes over the command's stdin and stdout (here OpenSSH's own
    // `ssh -W` through the first bastion), and the command is gone when the run is.
    let marker = format!("director-proxy-{}", std::process::id());
    let proxied = fleet.file(
        "proxy_ssh_config",
        &format!(
            "Host near\n  HostName {}\n  Port {}\n  ProxyCommand ssh -F {} -o SetEnv=M={marker} -p {} -W %h:%p {user}@{}\nHost *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n",
            h[1].addr,
            h[1].port,
            config.display(),
            h[0].port,
            h[0].addr,
        ),
    );
    let near = fleet.file(
        "near.yaml",
        &format!("nodes:\n  - {{name: near, user: {user}, identity_file: {}}}\n", fleet.key.display()),
    );
    let out = output(
        fleet
            .director()
            .args(["exec", "--catalog"])
            .arg(&near)
            .arg("--ssh-config")
            .arg(&proxied)
            .args(["--json", "true"]),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let left = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
    assert!(left.stdout.is_empty(), "the ProxyCommand outlived the run");
}

#[test]
fn host_key_alias_connect_timeout_algorithms_and_tokens_apply() {
    use super::{code, output, stderr};
    let fleet = super::harness::Fleet::start(2);
    let h = &fleet.hosts;
    let user = if super::harness::is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_default() };
    let home = fleet.path().join("operator-home");
    // IdentityFile with tokens: the fleet's key copied to ~/keys/<user>@<host>.
    std::fs::create_dir_all(home.join("keys")).unwrap();
    std::fs::copy(&fleet.key, home.join(format!("keys/{user}@{}", h[0].addr))).unwrap();
    let kh = fleet.path().join("alias_known_hosts");
    let config = fleet.file(
        "alias_ssh_config",
        &format!(
            "Host aliased\n  HostName {}\n  Port {}\n  HostKeyAlias web-alias\n  Ciphers aes128-ctr,3des-cbc\n  KexAlgorithms -diffie-hellman-*\nHost frozen\n  HostName {}\n  Port {}\n  ConnectTimeout 1\nHost *\n  User {user}\n  IdentityFile ~/keys/%r@%h\n  UserKnownHostsFile {}\n",
            h[0].addr,
            h[0].port,
            h[1].addr,
            h[1].port,
            kh.display()
        ),
    );
    let catalog = fleet.file("alias.yaml", "nodes:\n  - {name: aliased}\n");
    let run = |catalog: &std::path::Path, config: &std::path::Path, extra: &[&str]| {
        output(
            fleet
                .director()
                .env_remove("DIRECTOR_KNOWN_HOSTS")
                .args(["exec", "--catalog"])
                .arg(catalog)
                .arg("--ssh-config")
                .arg(config)
                .args(extra)
                .args(["--json", "true"]),
        )
    };
    let out = run(&catalog, &config, &[]);
    assert_eq!(code(&out), 0, "{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    // A cipher director's SSH lacks is named; the others are used.
    assert_eq!(
        stderr(&out),
        format!(
            "warning: ssh_config: {}:5: director's SSH has no Ciphers 3des-cbc; it is left out\n",
            config.display()
        )
    );
    // HostKeyAlias: the key is recorded under the alias, with no port, as ssh records it...
    let recorded = std::fs::read_to_string(&kh).unwrap();
    assert!(recorded.starts_with("web-alias ssh-ed25519 "), "{recorded}");
    // ...and ssh, strict, accepts the host with that file.
    let ssh = Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "Ciphers=aes128-ctr", "-i"])
        .arg(&fleet.key)
        .args(["aliased", "true"])
        .output()
        .unwrap();
    assert!(ssh.status.success(), "ssh: {}", String::from_utf8_lossy(&ssh.stderr));
    let out = run(&catalog, &config, &["--host-key-checking", "strict"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A list that leaves nothing director's SSH has is an input error; nothing is contacted.
    let none = fleet.file(
        "none_ssh_config",
        &std::fs::read_to_string(&config).unwrap().replace("Ciphers aes128-ctr,3des-cbc", "Ciphers 3des-cbc"),
    );
    let out = run(&catalog, &none, &[]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with(&format!(
            "error: {}:5: Ciphers `3des-cbc` leaves no algorithm director's SSH has (it has: ",
            none.display()
        )),
        "{}",
        stderr(&out)
    );
    // ConnectTimeout: a host whose sshd never answers is given up after 1 s; the flag beats it.
    h[1].freeze();
    let frozen = fleet.file("frozen.yaml", "nodes:\n  - {name: frozen}\n");
    let out = run(&frozen, &config, &[]);
    let error = |out: &std::process::Output| {
        super::unreachable_error(&super::schema::parse(&out.stdout), "frozen").map(str::to_string)
    };
    assert_eq!(error(&out), Some(format!("connection to {}:{} timed out after 1 s", h[1].addr, h[1].port)));
    let out = run(&frozen, &config, &["--connect-timeout", "2"]);
    assert_eq!(error(&out), Some(format!("connection to {}:{} timed out after 2 s", h[1].addr, h[1].port)));
}

#[test]
fn connection_tokens_expand_as_ssh_expands_them() {
    // ssh -G prints UserKnownHostsFile with its tokens expanded (%C is a hash of %l%h%p%r).
    // One difference, on purpose: director takes `~` and `%d` from $HOME (as it takes every
    // other path), ssh from the password database.
    let dir = super::scratch("ssh-config-tokens");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let file = dir.join("config");
    std::fs::write(
        &file,
        "Host t\n  HostName t.example\n  User tok\n  Port 2022\n  HostKeyAlias t-alias\n  UserKnownHostsFile ~/kh-%C %d/%u-%r-%h-%p-%n-%k-%i-%L-%l %%\n",
    )
    .unwrap();
    let catalog_file = dir.join("c.yaml");
    std::fs::write(&catalog_file, "nodes:\n  - {name: t}\n").unwrap();
    let catalog = director::api::Catalog::load(&[catalog_file]).unwrap();
    let mut nodes = catalog.nodes.clone();
    let local_user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let config = director::api::ssh_config::SshConfig {
        explicit: Some(file.clone()),
        home: home.clone(),
        local_user: local_user.clone(),
    };
    director::api::ssh_config::apply(&mut nodes, &config).unwrap();
    let ours: Vec<String> = nodes[0].user_known_hosts.iter().map(|p| p.display().to_string()).collect();
    let out = Command::new("ssh")
        .arg("-G")
        .arg("-F")
        .arg(&file)
        .arg("t")
        .env("HOME", &home)
        .env("USER", &local_user)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let theirs: Vec<String> = text
        .lines()
        .find_map(|l| l.strip_prefix("userknownhostsfile "))
        .unwrap()
        .split(' ')
        .map(str::to_string)
        .collect();
    let passwd_home = String::from_utf8_lossy(
        &Command::new("sh").args(["-c", "getent passwd $(id -u) | cut -d: -f6"]).output().unwrap().stdout,
    )
    .trim()
    .to_string();
    let theirs: Vec<String> = theirs.iter().map(|t| t.replacen(&passwd_home, &home.display().to_string(), 1)).collect();
    assert_eq!(ours, theirs);
}

/// Debian's own /etc/ssh/ssh_config (SendEnv, HashKnownHosts, GSSAPIAuthentication under
/// `Host *`, copied here as the package ships it) gives no warning: what it sets that director
/// does not use changes nothing director does, and `-v` says so once.
#[test]
fn the_distributions_stock_ssh_config_gives_no_warning() {
    use super::{code, output, stderr};
    let fleet = super::harness::Fleet::start(1);
    let stock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debian-ssh_config");
    let run = |extra: &[&str]| {
        output(
            fleet
                .director()
                .args(["exec", "--catalog"])
                .arg(fleet.catalog())
                .arg("--ssh-config")
                .arg(&stock)
                .args(extra)
                .args(["--json", "true"]),
        )
    };
    let out = run(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let out = run(&["-v"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stderr(&out);
    let at = |line: usize| format!("{}:{line}", stock.display());
    let line =
        format!("ssh_config: gssapiauthentication ({}), sendenv ({}) change nothing director does", at(53), at(51));
    assert!(said.contains(&line), "{said}");
    assert!(!said.contains("warning"), "{said}");
}
