//! FACTER's facts, gathered here from the kernel's own files, in facter's shape (`os`,
//! `kernel`, `processors`, `memory`, `networking`, `disks`, `virtual`, …), so a node needs no
//! facter. Where facter is installed, `facter --json` runs too and its facts win.

use serde_json::{json, Map, Value};
use std::process::{Command, Stdio};

/// The node's facts as JSON text.
pub fn gather(custom_dir: Option<&str>, external_dir: Option<&str>) -> Result<String, String> {
    let mut facts = native();
    if let Some(Value::Object(theirs)) = facter(custom_dir, external_dir) {
        if let Value::Object(ours) = &mut facts {
            ours.extend(theirs);
        }
    }
    serde_json::to_string(&facts).map_err(|e| e.to_string())
}

/// `facter --json`, when facter is on the node and answers.
fn facter(custom_dir: Option<&str>, external_dir: Option<&str>) -> Option<Value> {
    let mut cmd = Command::new("facter");
    cmd.arg("--json");
    if let Some(d) = custom_dir {
        cmd.args(["--custom-dir", d]);
    }
    if let Some(d) = external_dir {
        cmd.args(["--external-dir", d]);
    }
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn native() -> Value {
    // SAFETY: uname fills the zeroed struct we own; the fields are NUL-terminated C strings.
    let (sysname, release, version, machine, nodename) = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            let s = |f: &[libc::c_char]| std::ffi::CStr::from_ptr(f.as_ptr()).to_string_lossy().into_owned();
            (s(&u.sysname), s(&u.release), s(&u.version), s(&u.machine), s(&u.nodename))
        } else {
            Default::default()
        }
    };
    let release_map: Map<String, Value> = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::String(v.trim_matches('"').to_string())))
        .collect();
    let os_field = |k: &str| release_map.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let version_id = os_field("VERSION_ID");
    let major = version_id.split('.').next().unwrap_or_default().to_string();
    let hostname = nodename.split('.').next().unwrap_or_default().to_string();
    let fqdn = fqdn(&nodename);
    let domain = fqdn.split_once('.').map(|(_, d)| d.to_string()).unwrap_or_default();
    let (total, available) = memory("MemTotal:", "MemAvailable:");
    let (swap_total, swap_free) = memory("SwapTotal:", "SwapFree:");
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let models: Vec<String> = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .collect();
    let uptime =
        read("/proc/uptime").split_whitespace().next().and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) as u64;
    let (virt, is_virtual) = virtuality();
    let interfaces = interfaces();
    let primary = interfaces
        .iter()
        .find(|(name, i)| *name != "lo" && i.get("ip").is_some())
        .map(|(name, i)| (name.clone(), i.clone()));
    let mut networking = json!({
        "hostname": hostname,
        "fqdn": fqdn,
        "domain": domain,
        "interfaces": Value::Object(interfaces.clone()),
    });
    if let Some((name, i)) = primary {
        let n = networking.as_object_mut().expect("object");
        n.insert("primary".into(), json!(name));
        for k in ["ip", "netmask", "network", "mac", "mtu", "ip6"] {
            if let Some(v) = i.get(k) {
                n.insert(k.into(), v.clone());
            }
        }
    }
    json!({
        "kernel": sysname,
        "kernelrelease": release,
        "kernelversion": release.split('-').next().unwrap_or_default(),
        "kernelmajversion": release.split('.').take(2).collect::<Vec<_>>().join("."),
        "architecture": machine,
        "hardwaremodel": machine,
        "os": {
            "name": os_field("NAME"),
            "family": os_field("ID_LIKE").split_whitespace().next().map(str::to_string).unwrap_or_else(|| os_field("ID")),
            "id": os_field("ID"),
            "architecture": machine,
            "hardware": machine,
            "release": {"full": version_id, "major": major},
            "distro": {"codename": os_field("VERSION_CODENAME"), "description": os_field("PRETTY_NAME")},
        },
        "processors": {"count": cpus, "models": models},
        "memory": {
            "system": {"total_bytes": total, "available_bytes": available, "used_bytes": total.saturating_sub(available)},
            "swap": {"total_bytes": swap_total, "available_bytes": swap_free},
        },
        "networking": networking,
        "hostname": hostname,
        "fqdn": fqdn,
        "domain": domain,
        "disks": disks(),
        "virtual": virt,
        "is_virtual": is_virtual,
        "system_uptime": {"seconds": uptime},
        "kernel_version_full": version,
    })
}

/// The host's name with its domain, from /etc/hosts or the name itself.
fn fqdn(nodename: &str) -> String {
    if nodename.contains('.') {
        return nodename.to_string();
    }
    std::fs::read_to_string("/etc/hosts")
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| {
            let names: Vec<&str> = l.split_whitespace().skip(1).collect();
            names.contains(&nodename).then(|| names.iter().find(|n| n.contains('.')).map(|n| n.to_string())).flatten()
        })
        .unwrap_or_else(|| nodename.to_string())
}

/// Two fields of /proc/meminfo, in bytes.
fn memory(a: &str, b: &str) -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field(a), field(b))
}

/// Whether the node is a container or a virtual machine, and which (facter's words).
fn virtuality() -> (String, bool) {
    let container = read("/run/systemd/container");
    let environ = std::fs::read("/proc/1/environ").unwrap_or_default();
    let from_env = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"container="))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let found = if !container.is_empty() {
        Some(container)
    } else if let Some(c) = from_env {
        Some(c)
    } else if std::path::Path::new("/.dockerenv").exists() {
        Some("docker".to_string())
    } else {
        let product = read("/sys/class/dmi/id/product_name").to_lowercase();
        let vendor = read("/sys/class/dmi/id/sys_vendor").to_lowercase();
        let hypervisor = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().contains(" hypervisor");
        [
            ("kvm", "kvm"),
            ("qemu", "kvm"),
            ("vmware", "vmware"),
            ("virtualbox", "virtualbox"),
            ("xen", "xen"),
            ("microsoft", "hyperv"),
        ]
        .iter()
        .find(|(needle, _)| product.contains(needle) || vendor.contains(needle))
        .map(|(_, name)| name.to_string())
        .or_else(|| hypervisor.then(|| "virtual".to_string()))
    };
    match found {
        Some(kind) => (kind, true),
        None => ("physical".to_string(), false),
    }
}

/// Each block device that is not a partition: its size and model.
fn disks() -> Value {
    let mut disks = Map::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return Value::Object(disks) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        let base = format!("/sys/block/{name}");
        let sectors = read(&format!("{base}/size")).parse::<u64>().unwrap_or(0);
        let mut disk = json!({"size_bytes": sectors * 512});
        let model = read(&format!("{base}/device/model"));
        if !model.is_empty() {
            disk["model"] = json!(model);
        }
        disks.insert(name, disk);
    }
    Value::Object(disks)
}

/// Each network interface with its addresses (`bindings`, as facter gives them), MAC and MTU.
fn interfaces() -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk and free; every pointer is checked for null.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return out;
        }
        let mut cur = addrs;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
            let entry = out.entry(name.clone()).or_insert_with(|| {
                let mut e = json!({"bindings": [], "bindings6": []});
                let mac = read(&format!("/sys/class/net/{name}/address"));
                if !mac.is_empty() && name != "lo" {
                    e["mac"] = json!(mac);
                }
                if let Ok(mtu) = read(&format!("/sys/class/net/{name}/mtu")).parse::<u64>() {
                    e["mtu"] = json!(mtu);
                }
                e
            });
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET if !ifa.ifa_netmask.is_null() => {
                    let ip = std::net::Ipv4Addr::from(u32::from_be(
                        (*(ifa.ifa_addr as *const libc::sockaddr_in)).sin_addr.s_addr,
                    ));
                    let mask = std::net::Ipv4Addr::from(u32::from_be(
                        (*(ifa.ifa_netmask as *const libc::sockaddr_in)).sin_addr.s_addr,
                    ));
                    let network = std::net::Ipv4Addr::from(u32::from(ip) & u32::from(mask));
                    let binding =
                        json!({"address": ip.to_string(), "netmask": mask.to_string(), "network": network.to_string()});
                    if entry.get("ip").is_none() {
                        entry["ip"] = json!(ip.to_string());
                        entry["netmask"] = json!(mask.to_string());
                        entry["network"] = json!(network.to_string());
                    }
                    if let Some(list) = entry["bindings"].as_array_mut() {
                        list.push(binding);
                    }
                }
                libc::AF_INET6 if !ifa.ifa_netmask.is_null() => {
                    let ip = std::net::Ipv6Addr::from((*(ifa.ifa_addr as *const libc::sockaddr_in6)).sin6_addr.s6_addr);
                    let mask =
                        std::net::Ipv6Addr::from((*(ifa.ifa_netmask as *const libc::sockaddr_in6)).sin6_addr.s6_addr);
                    if entry.get("ip6").is_none() {
                        entry["ip6"] = json!(ip.to_string());
                        entry["netmask6"] = json!(mask.to_string());
                    }
                    if let Some(list) = entry["bindings6"].as_array_mut() {
                        list.push(json!({"address": ip.to_string(), "netmask": mask.to_string()}));
                    }
                }
                _ => {}
            }
        }
        libc::freeifaddrs(addrs);
    }
    out
}
