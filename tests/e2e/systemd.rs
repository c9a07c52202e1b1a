//! The harness's systemd hosts: systemd is PID 1, the distribution's sshd answers, jobs run
//! over SSH as on any host, and a reboot comes back with the same filesystem and host key
//! and a new PID 1 (what SERVICE and REBOOT will be tested on). A container shares the
//! kernel's boot id, so the boot is told by PID 1's start time (field 22 of /proc/1/stat).

use super::harness::Fleet;
use super::{code, output, stderr, stdout};
use std::time::Duration;

#[test]
fn a_systemd_host_boots_systemd_as_pid_1_runs_jobs_and_comes_back_from_a_reboot() {
    let mut fleet = Fleet::start(1);
    let i = fleet.add_systemd_host();
    let name = fleet.hosts[i].name.clone();
    let exec = |command: &str| {
        output(
            fleet
                .director()
                .args(["exec", "--progress", "plain", "--output", "all", "--catalog"])
                .arg(fleet.catalog())
                .args(["--target", &name, command]),
        )
    };
    let out = exec(
        "ps -p 1 -o comm=; systemctl is-system-running --wait; cut -d' ' -f22 /proc/1/stat > /var/tmp/boot-before",
    );
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let said = stdout(&out);
    assert!(said.contains(&format!("  {name} (1)  ok\n    │ systemd\n    │ running\n")), "{said}");
    // Reboot a second after the job ends; the connection drops with it, the host comes back
    // with its files kept. A reboot takes some seconds (logind, the session's end).
    let out = exec("systemd-run --on-active=1 systemctl reboot");
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let before = std::fs::read_to_string(fleet.hosts[i].dir.join("root/var/tmp/boot-before")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let out = loop {
        std::thread::sleep(Duration::from_secs(1));
        let out = exec("cat /var/tmp/boot-before; cut -d' ' -f22 /proc/1/stat; ps -p 1 -o comm=");
        let said = stdout(&out);
        let lines: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("    │ ")).collect();
        if code(&out) == 0 && lines.len() == 3 && lines[0] != lines[1] {
            break out;
        }
        assert!(std::time::Instant::now() < deadline, "the host did not come back from its reboot: {}", stdout(&out));
    };
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let said = stdout(&out);
    let lines: Vec<&str> = said.lines().filter_map(|l| l.strip_prefix("    │ ")).collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert_eq!(lines[0], before.trim(), "the file written before the reboot is still there");
    assert_ne!(lines[0], lines[1], "PID 1 started again:\n{said}");
    assert_eq!(lines[2], "systemd");
}
