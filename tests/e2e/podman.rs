//! POD and CONTAINER_IMAGE with a real podman on a test host: an image built here from a
//! scratch tarball (a static busybox, no registry), tagged, inspected and listed; a kube YAML
//! played from the operator, checked while it runs, stopped by hand and played again, a
//! command run in its container, and the pod stopped and removed.
//!
//! podman is configured for these machines by a containers.conf that the orchestrations set
//! with ENV CONTAINERS_CONF (nothing global changes): runc with cgroupfs (crun refuses
//! hybrid cgroups; the harness mounts the machine's cgroups in each host's namespace),
//! rlimits no higher than this machine's hard limits, and the test image as the pods' infra
//! image (no pause image to fetch).

use super::harness::Fleet;
use super::schema::Event;
use super::{finished, orchestrate_json};
use std::process::Command;

/// The containers.conf of these tests, and the image `localhost/NAME:1` imported with it.
fn podman_setup(fleet: &Fleet, name: &str) -> std::path::PathBuf {
    let limit = |resource, most: u64| {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit fills the struct we own.
        unsafe { libc::getrlimit(resource, &mut l) };
        l.rlim_max.min(most)
    };
    let conf = fleet.file(
        "containers.conf",
        &format!(
            "[containers]\ndefault_ulimits = [\"nofile={n}:{n}\", \"nproc={p}:{p}\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\ninfra_image = \"localhost/{name}:1\"\n",
            n = limit(libc::RLIMIT_NOFILE, 1 << 20),
            p = limit(libc::RLIMIT_NPROC, 1000),
        ),
    );
    let root = fleet.dir.join("image-root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "sleep", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let tar = fleet.dir.join("image.tar");
    let run = |cmd: &mut Command| {
        let out = cmd.env("CONTAINERS_CONF", &conf).output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tar).arg("."));
    run(Command::new("podman")
        .args(["import", "--change", "CMD [\"/bin/sleep\",\"infinity\"]", "--change", "ENV PATH=/bin"])
        .arg(&tar)
        .arg(format!("localhost/{name}:1")));
    conf
}

fn output_of(events: &[Event], job: usize) -> String {
    super::printed(events, None, Some(job))
}

fn podman(conf: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("podman").env("CONTAINERS_CONF", conf).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn pods_and_images_run_through_a_real_podman() {
    let fleet = Fleet::start(1);
    let tag = fleet.dir.file_name().unwrap().to_string_lossy().replace("fleet-", "dt-");
    let conf = podman_setup(&fleet, &tag);
    let image = format!("localhost/{tag}:1");
    let copy = format!("localhost/{tag}:copy");
    let pod = format!("{tag}-pod");
    let env = format!("    - ENV: CONTAINERS_CONF {}\n", fleet.on_hosts(&conf).display());
    let run = |name: &str, jobs: &str| {
        let file = fleet.file(name, &format!("- jobs:\n{env}{jobs}"));
        orchestrate_json(&fleet, &file, &[])
    };
    // The ENV job first is left out.
    let said = |events: &[Event]| super::said(events, "h1").split_off(1);
    let ok = || ("ok".to_string(), String::new());
    let cached = super::cached_hit();

    // Images: tag, checked while the tag is there, tagged again once it is gone.
    let tagging = format!("    - CONTAINER_IMAGE: --tag {image} {copy}\n");
    let (c, events, err) = run("tag.yaml", &tagging);
    assert_eq!(c, 0, "{err}{}", output_of(&events, 1));
    assert_eq!(said(&events), [ok()]);
    let (_, events, _) = run("tag.yaml", &tagging);
    assert_eq!(said(&events), std::slice::from_ref(&cached));
    podman(&conf, &["rmi", &copy]);
    let (_, events, _) = run("tag.yaml", &tagging);
    assert_eq!(said(&events), [("ok".into(), format!("was cached, but the image {copy} is gone: done again"))]);
    let (c, events, err) = run(
        "look.yaml",
        &format!("    - CONTAINER_IMAGE: --inspect {copy}\n      vars: {{stdout_arg: inspection}}\n    - CONTAINER_IMAGE: --list\n    - RUN: echo '{{{{ \"\\\"Digest\\\"\" in inspection }}}}'\n"),
    );
    assert_eq!(c, 0, "{err}{:?}", finished(&events, "h1"));
    assert!(output_of(&events, 2).contains(&format!("localhost/{tag}")), "{}", output_of(&events, 2));
    assert_eq!(output_of(&events, 3), "True\n", "the inspection's JSON was captured");

    // A pod played from the operator's YAML.
    let yaml = fleet.file(
        "pod.yaml",
        &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\nspec:\n  hostNetwork: true\n  containers:\n    - name: web\n      image: {image}\n      command: [\"/bin/sh\", \"-c\", \"echo started > /tmp/started; exec sleep 1000\"]\n"),
    );
    let play = format!("    - POD: --play {}\n", yaml.display());
    let (c, events, err) = run("play.yaml", &play);
    assert_eq!(c, 0, "{err}{}", output_of(&events, 1));
    assert_eq!(said(&events), [ok()]);
    let state = || podman(&conf, &["pod", "inspect", &pod, "--format", "{{.State}}"]);
    assert_eq!(state(), "Running");
    let (_, events, _) = run("play.yaml", &play);
    assert_eq!(said(&events), std::slice::from_ref(&cached));
    // By hand on the node: podman's mounts of the pod are in the node's mount namespace.
    let out = super::output(
        fleet
            .director()
            .args(["exec", "--catalog"])
            .arg(fleet.catalog())
            .arg(format!("CONTAINERS_CONF={} podman pod stop {pod}", fleet.on_hosts(&conf).display())),
    );
    assert_eq!(super::code(&out), 0, "{}", super::stderr(&out));
    let (c, events, err) = run("play.yaml", &play);
    assert_eq!(c, 0, "{err}{:?}{}", finished(&events, "h1"), output_of(&events, 1));
    assert_eq!(said(&events), [("ok".into(), format!("was cached, but the pod {pod} is Exited: done again"))]);
    assert_eq!(state(), "Running");

    // In its container, then stopped and removed; removing it again has nothing to do.
    let (c, events, err) = run(
        "exec.yaml",
        &format!("    - POD: --exec-run {pod}-web --command /bin/echo in the container\n    - POD: --stop {pod}\n    - POD: --rm {pod}\n    - POD: --rm {pod}\n      vars: {{skip_cache: true}}\n"),
    );
    assert_eq!(c, 0, "{err}{:?}{}{}", finished(&events, "h1"), output_of(&events, 1), output_of(&events, 2));
    assert_eq!(output_of(&events, 1), "in the container\n");
    assert_eq!(
        said(&events),
        [ok(), ok(), ok(), ("cached".into(), format!("the pod {pod} is not there: nothing to do"))]
    );
    assert_eq!(podman(&conf, &["pod", "exists", &pod]), "");
    let _ = podman(&conf, &["rmi", "-f", &copy, &image]);
}

/// Conductor's service model on a real systemd with a real podman: POD --play --systemd
/// writes and starts a unit that plays the pod, its hooks run around it with the pod's
/// configuration in their environment, a re-run is checked against the pod and the unit, and
/// a service stopped by hand (its pre-stop hook runs, the pod goes down) is started again.
#[test]
fn a_pod_runs_as_a_systemd_service_with_its_hooks() {
    let mut fleet = Fleet::start(0);
    let i = fleet.add_systemd_host_with(&["podman", "runc", "busybox-static"]);
    let name = fleet.hosts[i].name.clone();
    let root = fleet.hosts[i].dir.join("root");
    let exec = |command: &str| super::systemd::exec_on(&fleet, &name, command);
    // The image, built from the host's own static busybox, and podman's settings there.
    exec("mkdir -p /var/tmp/img/bin && cp /bin/busybox /var/tmp/img/bin/ && for a in sh sleep echo; do ln -s busybox /var/tmp/img/bin/$a; done && tar -C /var/tmp/img -cf /var/tmp/img.tar .");
    std::fs::write(
        root.join("etc/containers/containers.conf"),
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1000:1000\"]\npids_limit = 0\n[engine]\nruntime = \"runc\"\ninfra_image = \"localhost/svc:1\"\n",
    )
    .unwrap();
    exec("podman import --change 'CMD [\"/bin/sleep\",\"infinity\"]' --change 'ENV PATH=/bin' /var/tmp/img.tar localhost/svc:1 >/dev/null");
    let yaml = fleet.file(
        "svc.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: svc\nspec:\n  hostNetwork: true\n  containers:\n    - name: app\n      image: localhost/svc:1\n      command: [\"/bin/sleep\", \"1000\"]\n",
    );
    let file = fleet.file(
        "service.yaml",
        &format!(
            "- jobs:\n    - POD: --play {} --systemd svc-pod --env GREETING=hi\n      vars:\n        hook:\n          - pre-start=echo pre $CONDUCTOR_POD $GREETING >> /var/tmp/hooks\n          - post-start=echo post $CONDUCTOR_SERVICE $CONDUCTOR_PLAY_FILE >> /var/tmp/hooks\n          - pre-stop=echo stop $CONDUCTOR_PODS >> /var/tmp/hooks\n",
            yaml.display()
        ),
    );
    let said = |events: &[Event]| super::said(events, &name);
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}{}{}", output_of(&events, 0), exec("journalctl -u svc-pod --no-pager | tail -20"));
    assert_eq!(said(&events), [("ok".into(), String::new())]);
    let state = || {
        exec("systemctl is-active svc-pod.service; podman pod inspect svc --format '{% raw %}{{.State}}{% endraw %}' 2>&1 | head -1; true")
    };
    assert_eq!(state(), "active\nRunning");
    assert_eq!(exec("cat /var/tmp/hooks"), "pre svc hi\npost svc-pod /var/lib/director/pods/svc.yaml");
    assert_eq!(exec("systemctl is-enabled svc-pod.service"), "enabled");
    let (_, events, _) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(said(&events), [super::cached_hit()]);
    // Stopped by hand: the pre-stop hook runs and the pod goes down; a run starts it again.
    exec("systemctl stop svc-pod.service");
    assert_eq!(exec("tail -1 /var/tmp/hooks"), "stop svc");
    let (c, events, err) = orchestrate_json(&fleet, &file, &[]);
    assert_eq!(c, 0, "{err}");
    let (status, reason) = said(&events).remove(0);
    assert_eq!(status, "ok");
    assert!(reason.starts_with("was cached, but the pod svc is "), "{reason}");
    assert_eq!(state(), "active\nRunning");
}
