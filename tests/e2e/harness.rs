//! A fleet of real OpenSSH servers for end-to-end tests.
//!
//! As root, each host is an `sshd` in its own network namespace with its own address on a
//! veth pair (10.B.X.Y: X unique to the fleet, B 231 for its first 64 hosts, 232 for the next
//! 64, and so on), and in its own mount namespace where `/root`
//! (its user's home) and `/tmp` are private: each host has its own filesystem state, so the
//! executor cache and any file a job writes belong to that host alone. Without root, hosts are
//! sshd processes on loopback ports whose sessions get their own HOME and TMPDIR. Every host has its own
//! host key. Dropping the fleet kills the servers and removes namespaces, links and files,
//! also when a test panics.
//!
//! A fleet may also have systemd hosts ([`Fleet::add_systemd_host`], root only): a Debian
//! bookworm root (built once per target directory with debootstrap, then copied per host)
//! booted by `systemd-nspawn -b` in the host's network namespace, so systemd is PID 1 and the
//! distribution's own sshd answers on port 22. A reboot inside it boots it again (nspawn exits
//! 133, its supervisor starts it anew) with its filesystem kept, as a real machine's.

#![allow(dead_code)]

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static FLEETS: AtomicU32 = AtomicU32::new(0);

/// The password of the `ops` user and of root on hosts with [`Fleet::add_users`].
pub(crate) const BECOME_PASSWORD: &str = "correct-horse-42";
/// Its SHA-512 crypt, as /etc/shadow holds it (`openssl passwd -6 -salt directorE2E`).
const BECOME_PASSWORD_HASH: &str =
    "$6$directorE2E$Wo1mt0rxlNLupMr/wvLvaOIS7JMF4Mgm0EOmUaLUwXctiCPbfAZ93T1Me6rgOsveg18gxDHaCnCL/tAs44f4P/";

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub(crate) struct Host {
    pub name: String,
    pub addr: String,
    pub port: u16,
    /// This host's own state: its home (as `/root` in root mode), its /tmp, its sshd files.
    pub dir: PathBuf,
    netns: Option<String>,
    veth: Option<String>,
    sshd: Option<Child>,
    /// What `uname -m` says on this host's logins, when not the machine's own (see
    /// [`Fleet::set_arch`]).
    arch: Option<String>,
    /// The unreachable route that keeps the operator from this host (see
    /// [`Fleet::put_behind`]).
    unreachable: Option<String>,
    /// sshd presents a host certificate (see [`Fleet::certify`]).
    certified: bool,
    /// The host has the login users of [`Fleet::add_users`].
    users: bool,
    /// The types of its host keys (`ed25519` unless [`Fleet::set_host_keys`] said otherwise).
    key_types: Vec<&'static str>,
    /// Booted with systemd as PID 1 ([`Fleet::add_systemd_host`]); `sshd` holds the
    /// supervisor of its `systemd-nspawn`, in a process group of its own.
    systemd: bool,
    /// The control groups a systemd host's container lives in, its own in each hierarchy
    /// ([`own_cgroups`]), removed when it stops.
    cgroups: Vec<PathBuf>,
}

impl Host {
    /// Path, as seen from the operator's side, of `rel` under this host's home directory.
    pub(crate) fn home_path(&self, rel: &str) -> PathBuf {
        self.dir.join("home").join(rel)
    }

    /// The pids of the executors serving on this host: under its sshd, a `director-exec-*`
    /// started as `serve`, but not a job's process between its fork and its exec, which looks
    /// the same and whose parent is an executor.
    pub(crate) fn executor_pids(&self) -> Vec<u32> {
        let serving: Vec<u32> = self
            .commands("serve")
            .into_iter()
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.file_name().is_some_and(|n| n.to_string_lossy().starts_with("director-exec-")))
            })
            .collect();
        serving.iter().copied().filter(|pid| !parent_of(*pid).is_some_and(|p| serving.contains(&p))).collect()
    }

    /// Path, as seen from the operator's side, of `rel` under the home of `user`, one of
    /// [`Fleet::add_users`]'.
    pub(crate) fn user_path(&self, user: &str, rel: &str) -> PathBuf {
        self.dir.join("users").join(user).join(rel)
    }

    /// The bytes of this host's node cache files (the base, then its journal): what a run
    /// saved there, to compare before and after.
    pub(crate) fn cache_files(&self) -> Vec<u8> {
        let dir = self.home_path(".cache/director");
        let mut bytes = std::fs::read(dir.join("cache.json")).unwrap_or_default();
        bytes.extend(std::fs::read(dir.join("cache.journal")).unwrap_or_default());
        bytes
    }

    /// Runs a shell command in this host's namespaces (what a job on it would see).
    pub(crate) fn sh(&self, script: &str) -> Output {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nsenter", "--mount", "--target"]).arg(self.sshd_pid().to_string());
                c.args(["/bin/sh", "-c", script]);
                c
            }
            None => {
                let mut c = Command::new("/bin/sh");
                c.args(["-c", script]);
                c
            }
        };
        cmd.output().expect("run a shell on the host")
    }

    /// How many connections this host's sshd has logged (it logs at VERBOSE): the tripwire
    /// of the tests that assert nothing was contacted.
    pub(crate) fn connections(&self) -> usize {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default().matches("Connection from").count()
    }

    /// Freezes this host (SIGSTOP to its sshd and every process under it, executors
    /// included): to the operator it is a node whose link went silent.
    pub(crate) fn freeze(&self) {
        let mut pids = vec![self.sshd_pid()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        for pid in pids {
            // SAFETY: signalling processes this fleet started.
            unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        }
    }

    /// Kills (SIGKILL) the processes under this host's sshd whose command line holds
    /// `needle`; how many there were.
    pub(crate) fn kill_commands(&self, needle: &str) -> usize {
        let pids = self.commands(needle);
        for &pid in &pids {
            // SAFETY: signalling a process this fleet's host runs.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        pids.len()
    }

    /// The processes under this host's sshd whose command line holds `needle`.
    pub(crate) fn commands(&self, needle: &str) -> Vec<u32> {
        let mut pids = vec![self.sshd_pid()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        pids.into_iter()
            .skip(1)
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(needle)
            })
            .collect()
    }

    fn sshd_pid(&self) -> u32 {
        self.sshd.as_ref().map(std::process::Child::id).unwrap_or(0)
    }
}

/// The pids whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    // 0 stands for "no process" here (a stopped host): never the kernel's children.
    if pid == 0 {
        return Vec::new();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| parent_of(*p) == Some(pid))
        .collect()
}

/// The parent of process `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) struct Fleet {
    pub dir: PathBuf,
    /// Where sshd sees `dir`: in root mode each host's /tmp is private, and `dir` may be under
    /// /tmp (a checkout there), so each host binds `dir` to this alias before hiding /tmp.
    view: PathBuf,
    pub hosts: Vec<Host>,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    subnet: u8,
    tag: String,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The Debian root systemd hosts boot: built once per target directory (under a lock, so
/// tests in parallel wait for the one that builds it) with debootstrap from
/// `DIRECTOR_DEBIAN_MIRROR` (default deb.debian.org).
fn systemd_image(extra: &[&str]) -> PathBuf {
    let name =
        if extra.is_empty() { "systemd-bookworm".to_string() } else { format!("systemd-bookworm+{}", extra.join("+")) };
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let root = base.join("root");
    let done = root.join(".director-image-complete");
    if done.exists() {
        return root;
    }
    // A variant starts from the plain image, built first.
    let plain = if extra.is_empty() { None } else { Some(systemd_image(&[])) };
    std::fs::create_dir_all(&base).unwrap();
    let lock = std::fs::File::create(base.join("lock")).unwrap();
    // SAFETY: flock on a file this process holds open.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    if !done.exists() {
        let partial = base.join("root.partial");
        let _ = std::fs::remove_dir_all(&partial);
        match plain {
            None => {
                let mirror = std::env::var("DIRECTOR_DEBIAN_MIRROR")
                    .unwrap_or_else(|_| "http://deb.debian.org/debian".to_string());
                run(Command::new("debootstrap")
                    .args(["--variant=minbase", "--include=systemd,systemd-sysv,openssh-server,dbus", "bookworm"])
                    .arg(&partial)
                    .arg(&mirror));
            }
            Some(plain) => {
                run(Command::new("cp").args(["-a", "--reflink=auto"]).arg(&plain).arg(&partial));
                let _ = std::fs::remove_file(partial.join(".director-image-complete"));
                // Installed inside the root (not booted), from the image's own sources.
                run(Command::new("systemd-nspawn")
                    .args(["--register=no", "--keep-unit", "--quiet", "-D"])
                    .arg(&partial)
                    .args(["sh", "-c", &format!("export DEBIAN_FRONTEND=noninteractive; apt-get -qq update && apt-get install -y -qq --no-install-recommends {} >/dev/null", extra.join(" "))]));
            }
        }
        let _ = std::fs::remove_dir_all(&root);
        std::fs::rename(&partial, &root).unwrap();
        std::fs::write(&done, "").unwrap();
    }
    root
}

/// Control groups named `name` made beside this process's own, one in each hierarchy whose
/// tree a container's systemd shares with `systemd-nspawn --keep-unit`: the unified one and
/// the v1 `name=systemd` one of a hybrid host. Without them every container of the test
/// process had the same group as its root, and their systemds removed each other's units'
/// groups: a unit failed now and then at its start ("Failed at step CGROUP … No such file or
/// directory") and the host booted `degraded`.
fn own_cgroups(name: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let unified = if root.join("cgroup.procs").exists() { root.to_path_buf() } else { root.join("unified") };
    let mut made = Vec::new();
    for line in std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default().lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
        let mount = match controllers {
            "" => unified.clone(),
            "name=systemd" => root.join("systemd"),
            _ => continue,
        };
        let dir = mount.join(path.trim_start_matches('/')).join(name);
        if mount.join("cgroup.procs").exists() && std::fs::create_dir_all(&dir).is_ok() {
            made.push(dir);
        }
    }
    made
}

/// Raises the kernel's neighbour table thresholds to `entries` at least (never lowers them).
fn raise_neighbour_table(entries: u64) {
    for (name, want) in [("gc_thresh1", entries / 4), ("gc_thresh2", entries / 2), ("gc_thresh3", entries)] {
        let path = format!("/proc/sys/net/ipv4/neigh/default/{name}");
        let have: u64 = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
        if have < want {
            let _ = std::fs::write(&path, want.to_string());
        }
    }
}

/// Subnets (the third byte of 10.B.X.0/24) claimed by this process's live fleets.
static SUBNETS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// A tag for this fleet's namespaces and links, and a subnet for its addresses, neither in
/// use on this machine: a run killed before its fleets' Drop leaves namespaces, links and
/// addresses behind, and a fleet that drew them again would fail to start its hosts.
fn claim_network() -> (String, u8) {
    let pid = std::process::id();
    let out = Command::new("ip").args(["-o", "-4", "addr", "show"]).output().map(|o| o.stdout).unwrap_or_default();
    let in_use = |x: u8| {
        String::from_utf8_lossy(&out).split_whitespace().any(|w| {
            let mut bytes = w.split('/').next().unwrap_or("").split('.');
            bytes.next() == Some("10")
                && bytes.next().and_then(|b| b.parse::<u8>().ok()).is_some_and(|b| b >= 231)
                && bytes.next() == Some(&x.to_string())
        })
    };
    let mut claimed = SUBNETS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let serial = FLEETS.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{:x}{:x}", pid % 0xfff, serial);
        let subnet = ((pid.wrapping_mul(31).wrapping_add(serial * 7)) % 250) as u8 + 1;
        let stale = std::path::Path::new(&format!("/run/netns/dt{tag}n0")).exists()
            || std::path::Path::new(&format!("/sys/class/net/dt{tag}a0")).exists();
        if !stale && !claimed.contains(&subnet) && !in_use(subnet) {
            claimed.push(subnet);
            return (tag, subnet);
        }
        assert!(
            serial < 10_000,
            "no free subnet of 10.231.X.0/24 for a fleet: remove leftover `dt*` namespaces and links"
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Fleet {
    /// Starts `n` hosts named h1..hn.
    pub(crate) fn start(n: usize) -> Fleet {
        let (tag, subnet) = claim_network();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fleet-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("operator-home")).unwrap();
        let key = dir.join("id_ed25519");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "director-test", "-f"]).arg(&key));
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        if is_root() {
            std::fs::create_dir_all("/run/sshd").unwrap();
            // Each host is a neighbour of the operator's namespace: past the kernel's default
            // table (1,024 entries) connections fail with "neighbor table overflow".
            raise_neighbour_table(4 * n as u64 + 1024);
        }
        let view = if is_root() { PathBuf::from(format!("/run/director-e2e/{tag}")) } else { dir.clone() };
        std::fs::create_dir_all(&view).unwrap();
        let mut fleet = Fleet { known_hosts: dir.join("known_hosts"), dir, view, hosts: Vec::new(), key, subnet, tag };
        for i in 0..n {
            let host = fleet.make_host(i);
            fleet.hosts.push(host);
            fleet.start_host(i);
        }
        fleet
    }

    fn make_host(&self, i: usize) -> Host {
        let name = format!("h{}", i + 1);
        let dir = self.dir.join(&name);
        for sub in ["home", "tmp", "cache"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut host = Host {
            name,
            addr: "127.0.0.1".into(),
            port: 22,
            dir,
            netns: None,
            veth: None,
            sshd: None,
            arch: None,
            unreachable: None,
            certified: false,
            users: false,
            key_types: vec!["ed25519"],
            systemd: false,
            cgroups: Vec::new(),
        };
        if is_root() {
            let ns = format!("dt{}n{}", self.tag, i);
            let outer = format!("dt{}a{}", self.tag, i);
            let inner = format!("dt{}b{}", self.tag, i);
            let (a, b) = (self.address(i, 1), self.address(i, 2));
            run(Command::new("ip").args(["netns", "add", &ns]));
            host.netns = Some(ns.clone());
            run(Command::new("ip").args(["link", "add", &outer, "type", "veth", "peer", "name", &inner]));
            host.veth = Some(outer.clone());
            run(Command::new("ip").args(["link", "set", &inner, "netns", &ns]));
            run(Command::new("ip").args(["addr", "add", &format!("{a}/30"), "dev", &outer]));
            run(Command::new("ip").args(["link", "set", &outer, "up"]));
            run(Command::new("ip").args([
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{b}/30"),
                "dev",
                &inner,
            ]));
            run(Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]));
            run(Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]));
            host.addr = b;
        } else {
            host.port = free_port();
        }
        self.new_host_key(&host);
        host
    }

    fn new_host_key(&self, host: &Host) {
        let key = host.dir.join("ssh_host_ed25519_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(host.dir.join("ssh_host_ed25519_key.pub"));
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key));
    }

    /// Gives host `i` a new host key (as a reinstall would); restart it to take effect.
    pub(crate) fn rekey(&self, i: usize) {
        self.new_host_key(&self.hosts[i]);
    }

    pub(crate) fn start_host(&mut self, i: usize) {
        let authorized = self.view.join("authorized_keys");
        let (fleet_dir, view) = (self.dir.clone(), self.view.clone());
        let host = &mut self.hosts[i];
        let seen = view.join(&host.name);
        let config = host.dir.join("sshd_config");
        let host_keys: String = host
            .key_types
            .iter()
            .map(|t| format!("HostKey {}\n", seen.join(format!("ssh_host_{t}_key")).display()))
            .collect();
        let mut text = format!(
            "Port {}\nListenAddress {}\n{host_keys}PidFile none\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel VERBOSE\n",
            host.port,
            host.addr,
            authorized.display()
        );
        if host.netns.is_none() {
            // No mount namespace without root: give each host its own home and temp dir.
            text.push_str(&format!(
                "SetEnv HOME={} TMPDIR={}\n",
                host.dir.join("home").display(),
                host.dir.join("tmp").display()
            ));
        }
        if fleet_dir.join("user_ca.pub").exists() {
            text.push_str(&format!("TrustedUserCAKeys {}\n", view.join("user_ca.pub").display()));
        }
        if host.certified {
            text.push_str(&format!("HostCertificate {}\n", seen.join("ssh_host_ed25519_key-cert.pub").display()));
        }
        if let Some(arch) = &host.arch {
            // bash names the machine it was built for in HOSTTYPE (kept from its environment
            // when set there): a bash of that machine names it.
            text.push_str(&format!(
                "SetEnv PATH={}:/usr/local/bin:/usr/bin:/bin HOSTTYPE={arch}\n",
                seen.join("fakebin").display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(host.dir.join("sshd.log")).unwrap();
        let child = match &host.netns {
            Some(ns) => {
                // With users, the host's /etc is an overlay of the machine's (its own passwd,
                // shadow, group, sudoers and doas.conf) and /home is its own.
                let users = if host.users {
                    format!(
                        "mount -t overlay overlay -o lowerdir=/etc,upperdir={dir}/etc,workdir={dir}/etc-work /etc && mount --bind {dir}/users /home && ",
                        dir = seen.display()
                    )
                } else {
                    String::new()
                };
                let script = format!(
                    "{cgroups}mount --bind {fleet} {view} && {users}mount --bind {home} /root && mount --bind {tmp} /tmp && exec /usr/sbin/sshd -D -e -f {config}",
                    cgroups = cgroup_mounts(),
                    fleet = fleet_dir.display(),
                    view = view.display(),
                    home = host.dir.join("home").display(),
                    tmp = host.dir.join("tmp").display(),
                    config = seen.join("sshd_config").display()
                );
                Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        ns,
                        "unshare",
                        "--mount",
                        "--propagation",
                        "private",
                        "/bin/sh",
                        "-c",
                        &script,
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start sshd")
            }
            None => Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start sshd"),
        };
        host.sshd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let target = format!("{}:{}", host.addr, host.port);
        while TcpStream::connect_timeout(&target.parse().unwrap(), Duration::from_millis(200)).is_err() {
            if let Some(c) = host.sshd.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "sshd for {} exited with {status}: {}",
                        host.name,
                        std::fs::read_to_string(host.dir.join("sshd.log")).unwrap_or_default()
                    );
                }
            }
            assert!(Instant::now() < deadline, "sshd for {} did not start listening on {target}", host.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Address `end` (1: the operator's side, 2: the host's) of host `i`'s /30: 64 hosts to
    /// each 10.B.X.0/24, so a fleet of any size has no two hosts on one address.
    fn address(&self, i: usize, end: usize) -> String {
        assert!(i < 64 * 24, "a fleet has at most {} hosts", 64 * 24);
        format!("10.{}.{}.{}", 231 + i / 64, self.subnet, 4 * (i % 64) + end)
    }

    /// Lets every host reach every other (as root): each host's namespace routes by default
    /// through the operator's, which forwards. A bench then reaches the same nodes directly
    /// and through a relay among them. Without root every host shares loopback already.
    pub(crate) fn route_between_hosts(&self) {
        if !is_root() {
            return;
        }
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap();
        for (i, host) in self.hosts.iter().enumerate() {
            let Some(ns) = &host.netns else { continue };
            let via = self.address(i, 1);
            run(Command::new("ip").args(["netns", "exec", ns, "ip", "route", "add", "default", "via", &via]));
        }
    }

    /// Puts host `i` behind host `bastion` (as root): its link moves into the bastion's
    /// network namespace, so only the bastion can reach it and the operator has no route to
    /// it. Without root every host shares loopback, and this changes nothing.
    pub(crate) fn put_behind(&mut self, i: usize, bastion: usize) {
        let (Some(outer), Some(ns)) = (self.hosts[i].veth.clone(), self.hosts[bastion].netns.clone()) else { return };
        let gateway = self.address(i, 1);
        run(Command::new("ip").args(["link", "set", &outer, "netns", &ns]));
        run(Command::new("ip").args([
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("{gateway}/30"),
            "dev",
            &outer,
        ]));
        run(Command::new("ip").args(["netns", "exec", &ns, "ip", "link", "set", &outer, "up"]));
        // The link now lives in the bastion's namespace and goes with it. The operator's
        // namespace gets an explicit unreachable route for the link's /30, so a direct try
        // fails here at once instead of leaving by the default route.
        let net = format!("{}/30", self.address(i, 0));
        run(Command::new("ip").args(["route", "add", "unreachable", &net]));
        self.hosts[i].veth = None;
        self.hosts[i].unreachable = Some(net);
    }

    /// Makes every host trust user certificates signed by the CA whose public key is
    /// `ca_pub` (sshd's TrustedUserCAKeys), restarting them.
    pub(crate) fn trust_user_ca(&mut self, ca_pub: &Path) {
        std::fs::copy(ca_pub, self.dir.join("user_ca.pub")).unwrap();
        for i in 0..self.hosts.len() {
            self.stop_host(i);
            self.start_host(i);
        }
    }

    /// Has host `i`'s sshd present a host certificate signed by the CA key `ca`, for
    /// `principals` (comma list), valid for `validity` (`ssh-keygen -V`), restarting it.
    pub(crate) fn certify(&mut self, i: usize, ca: &Path, principals: &str, validity: &str) {
        let public = self.hosts[i].dir.join("ssh_host_ed25519_key.pub");
        run(Command::new("ssh-keygen")
            .args(["-q", "-h", "-s"])
            .arg(ca)
            .args(["-I", "director-test-host", "-n", principals, "-V", validity])
            .arg(&public));
        self.hosts[i].certified = true;
        self.stop_host(i);
        self.start_host(i);
    }

    /// Makes host `i` answer `uname -m` with `arch` on its logins, and bash's `HOSTTYPE` too
    /// (restarting its sshd): an arm64 host, with binfmt_misc running aarch64 binaries through
    /// qemu. What runs there is real; only the login shell's answers are not the machine's.
    pub(crate) fn set_arch(&mut self, i: usize, arch: &str) {
        let bin = self.hosts[i].dir.join("fakebin");
        std::fs::create_dir_all(&bin).unwrap();
        let script = format!("#!/bin/sh\ncase \"$1\" in -m) echo {arch};; *) exec /usr/bin/uname \"$@\";; esac\n");
        std::fs::write(bin.join("uname"), script).unwrap();
        std::fs::set_permissions(bin.join("uname"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        self.hosts[i].arch = Some(arch.to_string());
        self.stop_host(i);
        self.start_host(i);
    }

    /// Gives host `i` host keys of these types (`rsa`, `ed25519`, `ecdsa`), made when missing,
    /// and restarts it: a host with only an RSA key, or one that gained a second type.
    pub(crate) fn set_host_keys(&mut self, i: usize, types: &[&'static str]) {
        for t in types {
            let key = self.hosts[i].dir.join(format!("ssh_host_{t}_key"));
            if !key.exists() {
                run(Command::new("ssh-keygen").args(["-q", "-t", t, "-N", "", "-f"]).arg(&key));
            }
        }
        self.hosts[i].key_types = types.to_vec();
        self.stop_host(i);
        self.start_host(i);
    }

    /// Gives every host (as root) the login users of a real fleet, and restarts them:
    /// `deploy` may use sudo (and doas) without a password, `ops` with its password
    /// ([`BECOME_PASSWORD`], also root's, for su), and `guest` has no such rights. They log in
    /// with the fleet's key; each has a private home under the host's `users/`. `guest`'s
    /// shell is bash, the others' /bin/sh.
    pub(crate) fn add_users(&mut self) {
        assert!(is_root(), "login users need root: each host gets its own /etc overlay and /home");
        for i in 0..self.hosts.len() {
            let dir = self.hosts[i].dir.clone();
            for sub in ["etc", "etc-work", "users"] {
                std::fs::create_dir_all(dir.join(sub)).unwrap();
            }
            let read = |f: &str| std::fs::read_to_string(Path::new("/etc").join(f)).unwrap();
            let hash = BECOME_PASSWORD_HASH;
            let mut passwd = read("passwd");
            let mut shadow = read("shadow")
                .lines()
                .map(|l| match l.strip_prefix("root:") {
                    Some(rest) => format!("root:{hash}:{}", rest.split_once(':').map(|(_, r)| r).unwrap_or("")),
                    None => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            shadow.push('\n');
            let mut group = read("group");
            for (user, uid, secret, shell) in
                [("deploy", 2001, "*", "/bin/sh"), ("ops", 2002, hash, "/bin/sh"), ("guest", 2003, "*", "/bin/bash")]
            {
                passwd.push_str(&format!("{user}:x:{uid}:{uid}::/home/{user}:{shell}\n"));
                shadow.push_str(&format!("{user}:{secret}:19000:0:99999:7:::\n"));
                group.push_str(&format!("{user}:x:{uid}:\n"));
                let home = dir.join("users").join(user);
                std::fs::create_dir_all(&home).unwrap();
                std::os::unix::fs::chown(&home, Some(uid), Some(uid)).unwrap();
                std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
            }
            let etc = dir.join("etc");
            std::fs::write(etc.join("passwd"), passwd).unwrap();
            std::fs::write(etc.join("shadow"), shadow).unwrap();
            std::fs::set_permissions(etc.join("shadow"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
            std::fs::write(etc.join("group"), group).unwrap();
            // Debian's defaults, then the rules: no fqdn lookup (no DNS here), and no cached
            // credentials between tests.
            let sudoers = "Defaults env_reset\nDefaults mail_badpass\nDefaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\nDefaults use_pty\nDefaults !fqdn\nDefaults timestamp_timeout=0\nroot ALL=(ALL:ALL) ALL\ndeploy ALL=(ALL:ALL) NOPASSWD: ALL\nops ALL=(ALL:ALL) ALL\n";
            std::fs::write(etc.join("sudoers"), sudoers).unwrap();
            std::fs::set_permissions(etc.join("sudoers"), std::os::unix::fs::PermissionsExt::from_mode(0o440)).unwrap();
            std::fs::write(etc.join("doas.conf"), "permit nopass deploy as root\npermit ops as root\n").unwrap();
            self.hosts[i].users = true;
            self.stop_host(i);
            self.start_host(i);
        }
    }

    /// Stops host `i`'s sshd (the listener; sessions already open die with their clients).
    pub(crate) fn stop_host(&mut self, i: usize) {
        let systemd = self.hosts[i].systemd;
        if let Some(mut c) = self.hosts[i].sshd.take() {
            if systemd {
                // SIGTERM to the group: the supervisor ends, nspawn powers the container off.
                let group = c.id() as i32;
                // SAFETY: signalling the process group this fleet started.
                unsafe { libc::kill(-group, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(20);
                // SAFETY: probing the same group.
                while unsafe { libc::kill(-group, 0) } == 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                // SAFETY: as above; whatever did not stop in time.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            } else {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        // Deepest first: the container's systemd made its own tree inside.
        for top in std::mem::take(&mut self.hosts[i].cgroups) {
            let mut dirs: Vec<PathBuf> = Vec::new();
            let mut stack = vec![top];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(entry.path());
                    }
                }
                dirs.push(dir);
            }
            for dir in dirs.iter().rev() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// Adds a host that boots systemd as its PID 1 (see the module docs) and waits for its
    /// sshd; returns its index. Named like the others (`h{n}`), it is in [`Fleet::catalog`].
    pub(crate) fn add_systemd_host(&mut self) -> usize {
        self.add_systemd_host_with(&[])
    }

    /// [`Fleet::add_systemd_host`] with Debian packages `extra` installed in its image (a
    /// variant of the plain image, built once per target directory).
    pub(crate) fn add_systemd_host_with(&mut self, extra: &[&str]) -> usize {
        assert!(is_root(), "a systemd host boots with systemd-nspawn in a network namespace: run the tests as root");
        let image = systemd_image(extra);
        let i = self.hosts.len();
        let mut host = self.make_host(i);
        host.systemd = true;
        let root = host.dir.join("root");
        run(Command::new("cp").args(["-a", "--reflink=auto"]).arg(&image).arg(&root));
        // Its own host key (the image's were made once by debootstrap) and the fleet's key
        // for root.
        for entry in std::fs::read_dir(root.join("etc/ssh")).unwrap().flatten() {
            if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        for file in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
            std::fs::copy(host.dir.join(file), root.join("etc/ssh").join(file)).unwrap();
        }
        let ssh = root.join("root/.ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        std::fs::copy(self.dir.join("authorized_keys"), ssh.join("authorized_keys")).unwrap();
        self.hosts.push(host);
        self.boot(i);
        i
    }

    /// Boots systemd host `i` under a supervisor that boots it again when it reboots.
    fn boot(&mut self, i: usize) {
        let host = &mut self.hosts[i];
        let ns = host.netns.clone().expect("a systemd host has a network namespace");
        host.cgroups = own_cgroups(&format!("director-{ns}"));
        let join: String =
            host.cgroups.iter().map(|dir| format!("echo $$ > {}/cgroup.procs && ", dir.display())).collect();
        let script = format!(
            "{join}while :; do systemd-nspawn --register=no --keep-unit --quiet --console=passive --capability=all --system-call-filter='bpf @keyring' -D {root} --machine={name} --network-namespace-path=/run/netns/{ns} -b; rc=$?; [ $rc = 133 ] || exit $rc; done",
            root = host.dir.join("root").display(),
            name = host.name,
        );
        let log = std::fs::File::create(host.dir.join("nspawn.log")).unwrap();
        // A unified cgroup hierarchy of its own, delegated: podman runs containers in it (on
        // a hybrid host nspawn otherwise mounts the v1 controllers read-only); and runc may
        // use bpf and the keyring, which nspawn's defaults refuse.
        let child = Command::new("sh")
            .args(["-c", &script])
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        host.sshd = Some(child);
        self.wait_ssh(i, Duration::from_secs(90));
    }

    /// Waits until host `i`'s sshd greets (`SSH-2.0-…`), as after a boot or a reboot.
    pub(crate) fn wait_ssh(&self, i: usize, within: Duration) {
        let host = &self.hosts[i];
        let address: std::net::SocketAddr = format!("{}:{}", host.addr, host.port).parse().unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut banner = [0u8; 4];
                if std::io::Read::read_exact(&mut stream, &mut banner).is_ok() && &banner == b"SSH-" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer on {address} within {} s; its console:\n{}",
                host.name,
                within.as_secs(),
                std::fs::read_to_string(host.dir.join("nspawn.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Where a file of the fleet's directory is seen from its hosts (their /tmp is their own,
    /// which may hide the fleet's directory itself).
    pub(crate) fn on_hosts(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.dir) {
            Ok(rest) => self.view.join(rest),
            Err(_) => path.to_path_buf(),
        }
    }

    /// A catalog of every host, written into the fleet's directory.
    pub(crate) fn catalog(&self) -> PathBuf {
        let user = if is_root() { "root".to_string() } else { std::env::var("USER").unwrap_or_else(|_| "root".into()) };
        let mut text = format!(
            "defaults:\n  user: {user}\n  identity_file: {}\ngroups:\n  odd: {{}}\n  even: {{}}\nnodes:\n",
            self.key.display()
        );
        for (i, h) in self.hosts.iter().enumerate() {
            let group = if i % 2 == 0 { "odd" } else { "even" };
            text.push_str(&format!(
                "  - name: {}\n    host: {}\n    port: {}\n    groups: [{group}]\n",
                h.name, h.addr, h.port
            ));
        }
        let path = self.dir.join("catalog.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a file into the fleet's directory and returns its path.
    pub(crate) fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The director binary with an isolated home and this fleet's known_hosts.
    /// (`DIRECTOR_TEST_BINARY` runs another build of director instead of the test build, e.g.
    /// a static musl build serving as its own relay.)
    pub(crate) fn director(&self) -> Command {
        let binary = std::env::var_os("DIRECTOR_TEST_BINARY").unwrap_or_else(|| env!("CARGO_BIN_EXE_director").into());
        let mut cmd = Command::new(binary);
        cmd.env("HOME", self.dir.join("operator-home"))
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("DIRECTOR_CATALOG")
            .env_remove("DIRECTOR_HISTORY")
            .env_remove("DIRECTOR_CONFIG")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env("DIRECTOR_KNOWN_HOSTS", &self.known_hosts)
            // The machine's /etc/ssh/ssh_config is not the test's: resolve with none.
            .env("DIRECTOR_SSH_CONFIG", "none")
            .stdin(Stdio::null());
        cmd
    }

    /// `director orchestrate FILE --catalog <this fleet's catalog>`, to add to and run.
    pub(crate) fn orchestrate(&self, file: &Path) -> Command {
        let mut cmd = self.director();
        cmd.arg("orchestrate").arg(file).arg("--catalog").arg(self.catalog());
        cmd
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Sessions of a frozen host never die with their clients: kill them first.
        for host in self.hosts.iter().filter(|h| !h.systemd) {
            for pid in children(host.sshd_pid()) {
                // SAFETY: killing a process this fleet started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        for i in 0..self.hosts.len() {
            self.stop_host(i);
        }
        for host in &self.hosts {
            if let Some(v) = &host.veth {
                let _ = Command::new("ip").args(["link", "del", v]).output();
            }
            if let Some(net) = &host.unreachable {
                let _ = Command::new("ip").args(["route", "del", "unreachable", net]).output();
            }
            if let Some(ns) = &host.netns {
                // Kill anything a test left running in the namespace, then remove it. A listed
                // process may have exited and its pid gone to another fleet's sshd by the time
                // it is killed: each pid is checked to be in this namespace, right before.
                let ns_inode = std::os::unix::fs::MetadataExt::ino(
                    &std::fs::metadata(format!("/run/netns/{ns}")).unwrap_or_else(|_| std::fs::metadata("/").unwrap()),
                );
                let _ = Command::new("ip").args(["netns", "pids", ns]).output().map(|o| {
                    for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                        let Ok(pid) = pid.parse::<i32>() else { continue };
                        let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap_or_default();
                        if link.to_string_lossy() == format!("net:[{ns_inode}]") {
                            // SAFETY: signalling a process of this fleet's namespace.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                });
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
        }
        if self.view != self.dir {
            let _ = std::fs::remove_dir(&self.view);
        }
        SUBNETS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|&x| x != self.subnet);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Shell commands that mount this machine's cgroup hierarchies again at /sys/fs/cgroup: `ip
/// netns exec` mounts a fresh /sys for the namespace, which hides them, and podman on a test
/// host needs them (each command ends with `&& `).
fn cgroup_mounts() -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut script = String::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [_, point, kind, options, ..] = f.as_slice() else { continue };
        if !point.starts_with("/sys/fs/cgroup") || !matches!(*kind, "cgroup" | "cgroup2" | "tmpfs") {
            continue;
        }
        // The controllers of a v1 hierarchy (or its name=…) are its mount options.
        let wanted: Vec<&str> = options
            .split(',')
            .filter(|o| {
                !matches!(*o, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec") && !o.starts_with("mode=")
            })
            .collect();
        let opts = match *kind {
            "cgroup" if wanted.iter().any(|o| o.starts_with("name=")) => format!(" -o none,{}", wanted.join(",")),
            "cgroup" => format!(" -o {}", wanted.join(",")),
            _ => String::new(),
        };
        script.push_str(&format!("mkdir -p {point} && mount -t {kind}{opts} {kind} {point} && "));
    }
    script
}

/// A tmux server of the test's own (its own socket), with one session: a real terminal to
/// drive the TUI in (`send-keys` in, `capture-pane` out).
pub(crate) struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    pub(crate) fn start(dir: &Path, script: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux { socket: dir.join("tmux.sock") };
        let script_path = dir.join("pane.sh");
        std::fs::write(&script_path, script).unwrap();
        let out = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "t", "-x", &width.to_string(), "-y", &height.to_string(), "sh"])
            .arg(&script_path)
            .output()
            .expect("tmux");
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        tmux
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        for k in keys {
            let out = self.cmd().args(["send-keys", "-t", "t", k]).output().expect("tmux send-keys");
            assert!(out.status.success());
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub(crate) fn screen(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p", "-t", "t"]).output().expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows every one of `texts`; returns that screen.
    pub(crate) fn wait_for(&self, texts: &[&str], within: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if texts.iter().all(|t| screen.contains(t)) {
                return screen;
            }
            assert!(start.elapsed() < within, "the screen never showed {texts:?}; it shows:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn alternate_screen(&self) -> bool {
        let out =
            self.cmd().args(["display-message", "-p", "-t", "t", "#{alternate_on}"]).output().expect("tmux display");
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
