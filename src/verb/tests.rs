use super::options::{split_options, COMMON};
use super::*;
use director_proto::Attrs;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use wait::WaitOn;

fn roots() -> SourceRoots {
    SourceRoots { cwd: PathBuf::from(env!("CARGO_MANIFEST_DIR")), file_dir: None }
}

fn p(verb: &str, args: &str) -> Result<Parsed, VerbError> {
    parse(verb, args, &Map::new(), &roots())
}

/// A parse error as "message / hint".
fn e(verb: &str, args: &str) -> String {
    let e = p(verb, args).unwrap_err();
    format!("{}{}", e.message, e.hint.map(|h| format!(" / {h}")).unwrap_or_default())
}

#[test]
fn options_are_taken_out_anywhere_and_spacing_kept() {
    let known: Vec<(&str, Arity)> = COMMON.iter().chain(spec("RUN").unwrap().options.iter()).copied().collect();
    let (opts, rest) = split_options("ls -l --retry 3 /tmp", &known, true).unwrap();
    assert_eq!(opts, [("--retry".to_string(), vec!["3".to_string()])]);
    assert_eq!(rest, "ls -l /tmp");
    let (opts, rest) = split_options("--timeout=5 echo 'a   b'\necho c --color", &known, true).unwrap();
    assert_eq!(opts, [("--timeout".to_string(), vec!["5".to_string()])]);
    assert_eq!(rest, "echo 'a   b'\necho c --color");
    assert_eq!(split_options("echo --retry", &known, true).unwrap_err().message, "option `--retry` needs a value");
}

#[test]
fn every_verb_parses() {
    let run = p("RUN", "--stdout-arg x --no-block echo hi").unwrap();
    assert_eq!(run.work, Work::Run(run::Run { command: "echo hi".into(), retry: 1, no_block: true }));
    assert_eq!(run.stdout_arg.as_deref(), Some("x"));
    assert_eq!(
        p("ARG", "k ['a', 1]").unwrap().work,
        Work::Arg(arg::Arg { env: false, key: "k".into(), value: json!(["a", 1]), extend: false, secret: false })
    );
    assert_eq!(
        p("ENV", "k 12345").unwrap().work,
        Work::Arg(arg::Arg { env: true, key: "k".into(), value: json!(12345), extend: false, secret: false })
    );
    assert_eq!(
        p("WORKDIR", "--chown=0:0 --chmod=0777 /tmp/x").unwrap().work,
        Work::Workdir(workdir::Workdir {
            path: "/tmp/x".into(),
            attrs: Attrs { owner: Some("0".into()), group: Some("0".into()), mode: Some(0o777) }
        })
    );
    let copy = p("COPY", "--chown=0 --chmod=0644 Cargo.toml /tmp/y").unwrap().work;
    let Work::Copy(copy::Copy { sources, dest, attrs, blueprint }) = copy else { panic!() };
    assert_eq!(
        (dest.as_str(), attrs.owner.as_deref(), attrs.group, attrs.mode, blueprint),
        ("/tmp/y", Some("0"), None, Some(0o644), false)
    );
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].sha3.len(), 56);
    assert_eq!(p("CACHEEVICT", "all").unwrap().work, Work::CacheEvict(cacheevict::CacheEvict { tag: "all".into() }));
    assert_eq!(p("QUERY", "foo").unwrap().work, Work::Query(query::Query { key: "foo".into() }));
    assert_eq!(
        p("QUERY_WAIT", "k --identity a b --query-timeout 5").unwrap().work,
        Work::QueryWait(query_wait::QueryWait {
            item: "k".into(),
            timeout: Duration::from_secs(5),
            identities: vec!["a".into(), "b".into()]
        })
    );
    assert_eq!(
        p("WAIT", "--cmd test -e /tmp/x --retry 3").unwrap().work,
        Work::Wait(wait::Wait {
            on: WaitOn::Cmd("test -e /tmp/x".into()),
            retry: 3,
            retry_wait: Duration::from_secs(1),
            insecure: false
        })
    );
    assert_eq!(
        p("WAIT", "--seconds 2").unwrap().work,
        Work::Wait(wait::Wait {
            on: WaitOn::Seconds(2),
            retry: 30,
            retry_wait: Duration::from_secs(1),
            insecure: false
        })
    );
    assert_eq!(p("ECHO", "hello   world").unwrap().work, Work::Echo(echo::Echo { text: "hello world".into() }));
    assert_eq!(p("QUEUESENTINEL", "x").unwrap().work, Work::QueueSentinel(queuesentinel::QueueSentinel));
    let help = p("RUN", "--exec-help").unwrap_err();
    assert!(help.help && help.message.starts_with("usage: RUN [--no-block] [--retry N] COMMAND...\n"));
    assert!(p("WORKDIR", "/x --exec-help").unwrap_err().help);
}

#[test]
fn vars_override_and_are_checked() {
    let mut vars = Map::new();
    vars.insert("stdout_arg".into(), json!("out"));
    vars.insert("skip_cache".into(), json!(true));
    vars.insert("timeout".into(), json!(30));
    let job = parse("RUN", "--stdout-arg x echo hi", &vars, &roots()).unwrap();
    assert_eq!((job.stdout_arg.as_deref(), job.skip_cache, job.timeout), (Some("out"), true, Duration::from_secs(30)));
    let mut vars = Map::new();
    vars.insert("stdout_ag".into(), json!("out"));
    let e = parse("RUN", "echo", &vars, &roots()).unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.hint.as_deref(), e.var.as_deref()),
        ("unknown var `stdout_ag` for RUN", Some("did you mean `stdout_arg`?"), Some("stdout_ag"))
    );
}

#[test]
fn error_texts() {
    assert_eq!(e("WORKDIR", "--chmode 0644 /x"), "unknown option `--chmode` / did you mean `--chmod`?");
    assert_eq!(
        e("RUN", "--timeout 18446744073709552 true"),
        "option `--timeout` is at most 31536000 (a year in seconds), not `18446744073709552`"
    );
    assert_eq!(
        e("RUN", "--timeout 0 true"),
        "`--timeout 0` would stop the job before it starts / give the seconds the job may take, at least 1"
    );
    assert_eq!(
        e("WAIT", "--seconds 99999999999"),
        "option `--seconds` is at most 31536000 (a year in seconds), not `99999999999`"
    );
    assert_eq!(e("WORKDIR", "--chmod 999 /x"), "`--chmod 999` is not an octal mode / e.g. --chmod 0644");
    assert_eq!(e("CACHEEVICT", "everything"), "CACHEEVICT does not know the tag `everything` / use jobs, parents, args, envs, query, all, or a job fingerprint (56 hex digits)");
    assert_eq!(e("WAIT", "--seconds 1 --cmd true"), "WAIT needs exactly one of --seconds N, --url URL, --cmd COMMAND / usage: WAIT (--seconds N | --url URL | --cmd COMMAND...) [--retry N] [--retry-wait SECS] [--insecure]");
    assert_eq!(
        e("COPY", "Cargo.*  /tmp/x"),
        "2 files match but the destination `/tmp/x` does not end with / / copy them into a directory: `/tmp/x/`"
    );
    assert_eq!(
        e("JOB_WAIT", "abc"),
        "JOB_WAIT needs `--identity NODE...` / usage: JOB_WAIT FINGERPRINT --identity NODE..."
    );
    let missing = e("ADD", "no/such/file /tmp/");
    assert_eq!(
        missing,
        format!(
            "source `no/such/file` matches no file / relative sources are looked up in {}",
            env!("CARGO_MANIFEST_DIR")
        )
    );
}

/// DNF's command lines, word for word as Directord ran them (there is no dnf on the test
/// hosts: apt is tested for real on the systemd host), and every manager's.
#[test]
fn package_commands_word_for_word() {
    use package::{Manager, Package};
    let pkg = |verb: &str, args: &str| -> Package {
        match p(verb, args).unwrap().work {
            Work::Package(p) => p,
            other => panic!("{other:?}"),
        }
    };
    let cmds = |verb: &str, args: &str, m: Manager| pkg(verb, args).commands(m, "'vim' 'curl'", 600).join(" && ");
    assert_eq!(cmds("DNF", "vim curl", Manager::Dnf), "dnf -q -y install 'vim' 'curl'");
    assert_eq!(
        cmds("DNF", "--clear-metadata --exclude kernel,glibc --latest vim curl", Manager::Dnf),
        "dnf clean all && dnf makecache && dnf -q -y --best --exclude='kernel' --exclude='glibc' install 'vim' 'curl'"
    );
    assert_eq!(cmds("DNF", "--absent vim curl", Manager::Dnf), "dnf -q -y remove 'vim' 'curl'");
    assert_eq!(cmds("PKG", "vim curl", Manager::Yum), "yum -q -y install 'vim' 'curl'");
    let apt = "apt-get -q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";
    assert_eq!(
        cmds("APT", "--clear-metadata vim curl", Manager::Apt),
        format!("{apt} update && {apt} install 'vim' 'curl'")
    );
    assert_eq!(cmds("APT", "--absent vim curl", Manager::Apt), format!("{apt} remove 'vim' 'curl'"));
    assert_eq!(
        cmds("PKG", "--latest --clear-metadata vim curl", Manager::Zypper),
        "zypper --non-interactive refresh --force && zypper --non-interactive update 'vim' 'curl'"
    );
    assert_eq!(cmds("PKG", "--absent vim curl", Manager::Apk), "apk del --wait 600 'vim' 'curl'");
    assert_eq!(pkg("PKG", "vim").manager, None);
    assert_eq!(e("DNF", "--latest --absent vim"), "DNF takes --latest or --absent, not both / usage: DNF [--latest|--absent] [--clear-metadata] [--exclude PKG,...] [--retry N] PACKAGE...");
    assert_eq!(e("APT", "--exclude x vim"), "APT has no --exclude: apt-get cannot leave packages out of a transaction / hold a package back with `RUN: apt-mark hold PACKAGE`");
    assert_eq!(
        e("APT", "--clear-metadata"),
        "APT needs at least one package / usage: APT [--latest|--absent] [--clear-metadata] [--retry N] PACKAGE..."
    );
    assert_eq!(e("SERVICE", "--restarted --stopped nginx"), "SERVICE takes one of --restarted, --reloaded, --stopped, not both --restarted and --stopped / usage: SERVICE [--restarted|--reloaded|--stopped] [--enable|--disable|--mask|--unmask] [--daemon-reload] [--retry N] UNIT...");
    assert_eq!(
        e("SERVICE", "--mask nginx"),
        "SERVICE --mask cannot start a unit: a masked unit does not start / mask a unit with --stopped --mask"
    );
}

#[test]
fn secontext_and_container_config_data_parse_and_say_what_they_run() {
    let Work::SeContext(se) = p("SECONTEXT", "--setype httpd_sys_content_t --ftype d /srv/web(/.*)?").unwrap().work
    else {
        panic!()
    };
    assert_eq!(
        se.script(),
        "command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled || { echo 'SECONTEXT needs SELinux on the node: it is not enabled there (selinuxenabled says no, or is missing)' >&2; exit 1; }; if command -v semanage >/dev/null 2>&1; then if semanage fcontext -l -C | grep -q \"^/srv/web(/.*)? \"; then semanage fcontext -m -t 'httpd_sys_content_t' -f d '/srv/web(/.*)?'; else semanage fcontext -a -t 'httpd_sys_content_t' -f d '/srv/web(/.*)?'; fi && restorecon -R '/srv/web(/.*)?'; elif command -v chcon >/dev/null 2>&1; then chcon -t 'httpd_sys_content_t' '/srv/web(/.*)?'; else echo 'SECONTEXT needs semanage (policycoreutils-python-utils) or chcon on the node: neither is there' >&2; exit 1; fi"
    );
    assert_eq!(e("SECONTEXT", "/srv"), "SECONTEXT needs --setype TYPE / usage: SECONTEXT --setype TYPE [--ftype a|b|c|d|f|l|p|s] [--seuser USER] [--selevel LEVEL] [--reload true|false] TARGET");
    assert_eq!(e("SECONTEXT", "--setype t --ftype x /srv"), "`--ftype x` is not a file type / a (all), b (block), c (character), d (directory), f (file), l (link), p (pipe) or s (socket)");
    assert_eq!(e("CONTAINER_CONFIG_DATA", "--config-pattern *.json"), "CONTAINER_CONFIG_DATA needs --config-path DIR / usage: CONTAINER_CONFIG_DATA --config-path DIR [--config-pattern GLOB] [--config-overrides JSON] [--debug]");
    let mut vars = Map::new();
    vars.insert("config_overrides".into(), json!({"a.json": {"k": 1}}));
    let parsed = parse("CONTAINER_CONFIG_DATA", "--config-path /etc/c", &vars, &roots()).unwrap();
    let Work::ContainerConfigData(c) = parsed.work else { panic!() };
    assert_eq!((c.pattern.as_str(), Value::Object(c.overrides)), ("*.json", json!({"a.json": {"k": 1}})));
}

#[test]
fn container_image_and_pod_command_lines_word_for_word() {
    let image = |args: &str| match p("CONTAINER_IMAGE", args).unwrap().work {
        Work::ContainerImage(c) => c.script(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        image("--socket-path /tmp/podman.sock --no-tlsverify --pull alpine:3.13 alpine:3.12"),
        "podman --url 'unix:///tmp/podman.sock' pull -q --tls-verify=false 'alpine:3.13' && podman --url 'unix:///tmp/podman.sock' pull -q --tls-verify=false 'alpine:3.12'"
    );
    assert_eq!(image("--push 127.0.0.1:5000/myimage:spec"), "podman push -q '127.0.0.1:5000/myimage:spec'");
    assert_eq!(image("--tag alpine:3.12 quay.io/test/alpine"), "podman tag 'alpine:3.12' 'quay.io/test/alpine'");
    assert_eq!(image("--list"), "podman images --format json");
    assert!(e("CONTAINER_IMAGE", "--tag a")
        .starts_with("CONTAINER_IMAGE --tag takes two images: the source and the new name / usage: "));
    assert!(e("CONTAINER_IMAGE", "--list a").starts_with("CONTAINER_IMAGE --list takes no image / "));
    assert_eq!(
        e("CONTAINER_IMAGE", "--no-tlsverify --inspect a"),
        "CONTAINER_IMAGE --no-tlsverify goes with --pull or --push: only they reach a registry"
    );
    assert!(e("WAIT", "--seconds 2 --retry 3").starts_with("WAIT --retry goes with --url or --cmd / usage: WAIT "));
    assert!(e("WAIT", "--cmd true --insecure").starts_with("WAIT --insecure goes with --url / usage: WAIT "));
    let pod = |args: &str| match p("POD", args).unwrap().work {
        Work::Pod(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(pod("--kill web").script(), "podman pod kill --signal 'SIGKILL' 'web'");
    assert_eq!(pod("--rm web --force").script(), "podman pod rm --force 'web'");
    assert_eq!(
        pod("--exec-run web-app --privileged --env A=1,B=two --command ls -l /").script(),
        "podman exec --privileged --env 'A=1' --env 'B=two' 'web-app' 'ls' '-l' '/'"
    );
    let dir = std::env::temp_dir().join(format!("director-pod-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = dir.join("web.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n---\nkind: ConfigMap\nmetadata:\n  name: c\n",
    )
    .unwrap();
    let service = pod(&format!(
        "--play {} --systemd web-svc --env A=1 --hook pre-start=echo before --hook post-start=echo after",
        yaml.display()
    ));
    assert_eq!(
        service.unit("web-svc"),
        "[Unit]\nDescription=director pod service web-svc (/var/lib/director/pods/web.yaml)\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nEnvironmentFile=/var/lib/director/pods/web-svc.env\nTimeoutStartSec=600\nExecStartPre=/var/lib/director/pods/web-svc.pre-start\nExecStart=/usr/bin/env podman kube play --replace /var/lib/director/pods/web.yaml\nExecStartPost=/var/lib/director/pods/web-svc.post-start\nExecStop=/usr/bin/env podman kube down /var/lib/director/pods/web.yaml\n\n[Install]\nWantedBy=multi-user.target\n"
    );
    assert_eq!(
        service.hooks,
        [(pod::Hook::PreStart, "echo before".to_string()), (pod::Hook::PostStart, "echo after".to_string())]
    );
    assert!(matches!(&service.action, pod::Action::Play(_, pods) if pods == &["web".to_string()]));
    assert!(e("POD", "--start web --hook pre-start=x").starts_with("POD --hook runs around a service"));
    assert_eq!(
        e("POD", "--start web --systemd x"),
        "POD --systemd NAME runs a played file as a service: it goes with --play FILE"
    );
    assert!(e("POD", "--exec-run web").starts_with("POD --exec-run CONTAINER goes with --command CMD..."));
    assert_eq!(e("POD", "--start web --force"), "POD --force goes with --rm NAME");
    assert_eq!(e("POD", "--stop web --privileged"), "POD --privileged goes with --exec-run CONTAINER");
    assert_eq!(e("POD", "--rm web --no-tlsverify"), "POD --no-tlsverify goes with --play FILE");
    assert_eq!(
        e("POD", "--start web --env A=1"),
        "POD --env goes with --exec-run CONTAINER or --play FILE --systemd NAME"
    );
    let socket =
        pod(&format!("--play {} --systemd s --socket-path /run/p.sock --no-tlsverify", yaml.display())).unit("s");
    assert!(socket.contains("\nExecStart=/usr/bin/env podman --url 'unix:///run/p.sock' kube play --replace --tls-verify=false /var/lib/director/pods/web.yaml\n"), "{socket}");
    std::fs::remove_dir_all(&dir).unwrap();
}
