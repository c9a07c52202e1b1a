//! Ansible inventories (INI and YAML) as catalogs, run for real against sshd hosts: the
//! connection vars reach the nodes, groups and children select them, group vars reach the
//! templates, and a var director does not use is warned about once.

use super::harness::{self, Fleet};
use super::{code, finished, output, schema, stderr};

fn user() -> String {
    if harness::is_root() {
        "root".to_string()
    } else {
        std::env::var("USER").unwrap_or_default()
    }
}

#[test]
fn an_ini_inventory_is_a_catalog() {
    let fleet = Fleet::start(3);
    let h = &fleet.hosts;
    let ini = format!(
        "[web]\nh1 ansible_host={} ansible_port={}\nh2 ansible_host={} ansible_port={}\n\n[db]\nh3 ansible_host={} ansible_port={}\n\n[web:vars]\nrole=front\n\n[db:vars]\nrole=store\n\n[prod:children]\nweb\ndb\n\n[all:vars]\nansible_user={}\nansible_ssh_private_key_file={}\nansible_python_interpreter=/usr/bin/python3\n",
        h[0].addr, h[0].port, h[1].addr, h[1].port, h[2].addr, h[2].port, user(), fleet.key.display()
    );
    let inventory = fleet.file("hosts.ini", &ini);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: echo {{ role }} > ~/role\n");
    let run = |restrict: &str| {
        output(fleet.director().arg("orchestrate").arg(&file).arg("-c").arg(&inventory).args([
            "--restrict",
            restrict,
            "--json",
        ]))
    };
    let out = run("web");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "warning: {}: `ansible_python_interpreter` is ignored: director has no use for it\n",
            inventory.display()
        )
    );
    let events = schema::parse(&out.stdout);
    assert!(matches!(&events[0], schema::Event::RunStarted { nodes, .. } if nodes == &["h1", "h2"]));
    assert_eq!(std::fs::read_to_string(h[0].home_path("role")).unwrap(), "front\n");
    assert!(!h[2].home_path("role").exists());
    // A parent group selects its children's hosts.
    let out = run("prod");
    let events = schema::parse(&out.stdout);
    assert_eq!(finished(&events, "h3"), [(0, "ok", Some(0), None)], "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(h[2].home_path("role")).unwrap(), "store\n");
}

#[test]
fn a_yaml_inventory_is_a_catalog() {
    let fleet = Fleet::start(2);
    let h = &fleet.hosts;
    let yaml = format!(
        "all:\n  vars:\n    ansible_user: {}\n    ansible_ssh_private_key_file: {}\n  children:\n    web:\n      hosts:\n        h1: {{ansible_host: {}, ansible_port: {}}}\n        h2: {{ansible_host: {}, ansible_port: {}, role: special}}\n      vars: {{role: front}}\n",
        user(),
        fleet.key.display(),
        h[0].addr,
        h[0].port,
        h[1].addr,
        h[1].port
    );
    let inventory = fleet.file("inventory.yml", &yaml);
    let file = fleet.file("o.yaml", "- jobs:\n    - RUN: echo {{ role }} > ~/role\n");
    let out = output(fleet.director().arg("orchestrate").arg(&file).arg("-c").arg(&inventory).arg("--json"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    // Host vars beat group vars.
    assert_eq!(std::fs::read_to_string(h[0].home_path("role")).unwrap(), "front\n");
    assert_eq!(std::fs::read_to_string(h[1].home_path("role")).unwrap(), "special\n");
}
