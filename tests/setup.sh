#!/bin/sh
# Installs what director's build and test suite need, then exits 0.
#   - OpenSSH server and client, iproute2, procps: the end-to-end suite starts real sshd
#     hosts (apt-get, when running as root; otherwise it says what to install).
#   - curl and netbase (/etc/services): Directord's functional-test orchestrations use them
#     (WAIT --url, ADD /etc/services).
#   - tmux: the TUI's end-to-end tests drive the binary in a real terminal (send-keys,
#     capture-pane).
#   - sudo and opendoas: the become tests log in as normal users and become root through
#     sudo, su and doas on the test hosts.
#   - qemu-user-static and binfmt-support: the arm64 test host runs the aarch64 executor
#     through qemu-aarch64, registered with binfmt_misc so it runs like a native binary.
#   - systemd-container and debootstrap: the systemd test hosts are a Debian root (built once
#     per target directory from deb.debian.org, or DIRECTOR_DEBIAN_MIRROR) booted with
#     `systemd-nspawn -b`, so systemd is their PID 1.
#   - apt-utils (apt-ftparchive) and dpkg-dev's dpkg-deb: the package tests build small .deb
#     packages and a local apt repository for the systemd test hosts.
#   - rpm (rpmbuild) and createrepo-c: the DNF test builds an RPM and a repository for a
#     systemd test host that has Debian's dnf.
#   - podman, runc and busybox-static: POD and CONTAINER_IMAGE run a real pod from an image
#     built in the test from a static busybox (runc: crun refuses hybrid cgroups).
#   - postgresql and openssl: the shared-history tests start their own PostgreSQL server
#     (initdb and pg_ctl from Debian's package, a data directory and port of their own, stopped
#     after), one of them with TLS certificates made by openssl.
#   - rustfmt and clippy: .ci/run checks formatting and lints first.
#   - man-db: the man pages are read with man(1), as a user reads them.
#   - the x86_64-unknown-linux-musl Rust target: the smallest static executor. Without it the
#     build falls back to a static glibc executor and says so.
#   - rust-src: the executor is built with its own standard library (a third smaller, what
#     first contact sends); without it the build says so and a unit test fails.
set -eu
need=""
[ -x /usr/sbin/sshd ] || need="$need openssh-server"
command -v ssh-keygen >/dev/null 2>&1 || need="$need openssh-client"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v pgrep >/dev/null 2>&1 || need="$need procps"
command -v unshare >/dev/null 2>&1 || need="$need util-linux"
command -v curl >/dev/null 2>&1 || need="$need curl"
[ -f /etc/services ] || need="$need netbase"
command -v python3 >/dev/null 2>&1 || need="$need python3"
command -v tmux >/dev/null 2>&1 || need="$need tmux"
command -v man >/dev/null 2>&1 || need="$need man-db"
command -v sudo >/dev/null 2>&1 || need="$need sudo"
command -v doas >/dev/null 2>&1 || need="$need opendoas"
command -v qemu-aarch64-static >/dev/null 2>&1 || need="$need qemu-user-static"
command -v update-binfmts >/dev/null 2>&1 || need="$need binfmt-support"
command -v systemd-nspawn >/dev/null 2>&1 || need="$need systemd-container"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
command -v apt-ftparchive >/dev/null 2>&1 || need="$need apt-utils"
command -v dpkg-deb >/dev/null 2>&1 || need="$need dpkg"
command -v rpmbuild >/dev/null 2>&1 || need="$need rpm"
command -v createrepo_c >/dev/null 2>&1 || need="$need createrepo-c"
command -v podman >/dev/null 2>&1 || need="$need podman"
command -v runc >/dev/null 2>&1 || need="$need runc"
[ -x /bin/busybox ] || need="$need busybox-static"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
if [ -n "$need" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup: installing$need" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
    else
        echo "setup: missing$need; run: sudo apt-get install$need" >&2
        exit 1
    fi
fi
if [ "$(id -u)" = 0 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] ||
        echo "setup: aarch64 binaries cannot run here (binfmt_misc); the arm64 e2e test will fail" >&2
fi
if command -v rustup >/dev/null 2>&1; then
    # CI checks formatting and lints before the tests.
    rustup component add rustfmt clippy >/dev/null 2>&1 ||
        echo "setup: rustfmt or clippy is unavailable; .ci/run needs both" >&2
    rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 ||
        echo "setup: the musl target is unavailable; the executor will be static glibc (larger)" >&2
    rustup component add rust-src >/dev/null 2>&1 ||
        echo "setup: rust-src is unavailable; the executor will be about 250 KB larger" >&2
    rustup target add aarch64-unknown-linux-musl >/dev/null 2>&1 ||
        echo "setup: the aarch64 musl target is unavailable; arm64 nodes will not be served" >&2
fi
exit 0
