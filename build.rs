//! Builds the executor crate as a static binary and embeds it in the operator.
//!
//! The executor is built with its own target directory inside OUT_DIR so the nested cargo
//! never waits on the outer build's lock. musl is preferred (smallest, fully static); when
//! that target is not installed, glibc with `+crt-static` is used and a warning says so.
//! It is built for every architecture director serves (x86_64, and aarch64 when its target
//! is installed); `OUT_DIR/executors.rs` lists them, each with its binary, the stage that
//! installs it on a node (crates/director-stage) and what the stage reads (the binary
//! LZ4-compressed, after its length and checksum), and its sha3-256. With the
//! toolchain's rust-src, the standard library is built with the executor, without its
//! backtrace symbolization, and without unwind tables (x86_64: 490 KB instead of 816 KB).

#[path = "packaging/hot_code.rs"]
mod hot_code;

use sha3::{Digest, Sha3_256};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for p in [
        "crates/director-exec/src",
        "crates/director-exec/Cargo.toml",
        "crates/director-proto/src",
        "crates/director-proto/Cargo.toml",
        "crates/director-stage/src",
        "crates/director-stage/Cargo.toml",
        "crates/director-stage/Cargo.lock",
        "Cargo.lock",
        // The executor's profile (`[profile.exec]`) is there.
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    println!("cargo:rerun-if-env-changed=DIRECTOR_EXEC_TARGET");
    let target_dir = out.join("exec-target");
    let forced = std::env::var("DIRECTOR_EXEC_TARGET").ok();
    // Per architecture (as `uname -m` says it), the targets to try in order. aarch64 links
    // with rust-lld, which ships with the toolchain: no cross compiler is needed.
    let x86: Vec<(&str, &str)> = match forced.as_deref() {
        Some("gnu") => vec![("x86_64-unknown-linux-gnu", "-C target-feature=+crt-static")],
        _ => vec![("x86_64-unknown-linux-musl", ""), ("x86_64-unknown-linux-gnu", "-C target-feature=+crt-static")],
    };
    let arches: Vec<(&str, Vec<(&str, &str)>)> =
        vec![("x86_64", x86), ("aarch64", vec![("aarch64-unknown-linux-musl", "-C linker=rust-lld")])];
    let mut table = String::from("pub static EXECUTORS: &[Executor] = &[\n");
    let mut summary = Vec::new();
    for (arch, candidates) in &arches {
        let mut built = None;
        let mut failures = Vec::new();
        for (target, flags) in candidates {
            // First with the standard library built for the executor, without what it has
            // only for backtraces (symbolization: gimli, addr2line, a demangler, an inflater):
            // a third smaller, so a third less to send, decompress and hash at first contact.
            // That takes the toolchain's rust-src and cargo's `-Z build-std`, allowed on this
            // stable toolchain by RUSTC_BOOTSTRAP for this one nested build; without rust-src
            // the plain build below is used and a warning says so.
            if target.ends_with("-musl") {
                match build_std(&root, &target_dir, target, flags) {
                    Ok(path) => {
                        built = Some((path, *target, *flags));
                        break;
                    }
                    Err(e) => println!(
                        "cargo:warning=executor for {arch} built with the prebuilt standard library (about 250 KB larger): {e}"
                    ),
                }
            }
            match build(&root, &target_dir, target, flags, false) {
                Ok(path) => {
                    if !failures.is_empty() {
                        println!("cargo:warning=executor for {arch} built for {target} (static glibc): musl target unavailable; run `rustup target add {arch}-unknown-linux-musl` for a smaller executor");
                    }
                    built = Some((path, *target, *flags));
                    break;
                }
                Err(e) => failures.push(format!("{target}: {e}")),
            }
        }
        let Some((path, target, flags)) = built else {
            if *arch == "x86_64" {
                panic!("could not build the executor:\n{}", failures.join("\n"));
            }
            println!(
                "cargo:warning=no executor for {arch} nodes ({}); run `rustup target add {arch}-unknown-linux-musl`",
                failures.join("; ")
            );
            continue;
        };
        let bytes = std::fs::read(&path).unwrap();
        let hex: String = Sha3_256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        // The stage that installs it on a node (crates/director-stage), for the same target.
        let stage = build_stage(&root, &target_dir, target, flags)
            .unwrap_or_else(|e| panic!("could not build the stage for {target}: {e}"));
        // What follows the stage on the wire: the binary's lengths and XXH3-64, then the
        // binary LZ4-compressed (the stage's format, see its main.rs).
        let packed = out.join(format!("director-exec-{arch}.lz4"));
        let mode = lz4::block::CompressionMode::HIGHCOMPRESSION(12);
        let block = lz4::block::compress(&bytes, Some(mode), false).unwrap();
        let mut upload = Vec::with_capacity(16 + block.len());
        upload.extend_from_slice(&(block.len() as u32).to_le_bytes());
        upload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        upload.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&bytes).to_le_bytes());
        upload.extend_from_slice(&block);
        std::fs::write(&packed, &upload).unwrap();
        table.push_str(&format!(
            "    Executor {{ arch: {arch:?}, target: {target:?}, binary: include_bytes!({:?}), stage: include_bytes!({:?}), packed: include_bytes!({:?}), sha3: {hex:?} }},\n",
            path.display().to_string(),
            stage.display().to_string(),
            packed.display().to_string()
        ));
        let wire = std::fs::metadata(&stage).unwrap().len() as usize + upload.len();
        summary.push(format!("{arch} {} bytes ({wire} on the wire) sha3 {}", bytes.len(), &hex[..16]));
    }
    table.push_str("];\n");
    std::fs::write(out.join("executors.rs"), table).unwrap();
    // The man pages' date: the last commit's, else the epoch (a tarball with no history).
    let date = Command::new("git")
        .args(["log", "-1", "--format=%cs"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|d| d.len() == 10)
        .unwrap_or_else(|| "1970-01-01".to_string());
    println!("cargo:rustc-env=DIRECTOR_DATE={date}");
    lay_out_hot_code(&root, &out);
    println!(
        "cargo:rustc-env=DIRECTOR_LONG_VERSION={} (executors: {})",
        std::env::var("CARGO_PKG_VERSION").unwrap(),
        summary.join(", ")
    );
}

/// A release build for x86_64 Linux (glibc), which links with the toolchain's lld, places the
/// functions a run executes first (packaging/hot_code.rs says why); `DIRECTOR_HOT_CODE=0`
/// leaves the linker's own layout.
fn lay_out_hot_code(root: &Path, out: &Path) {
    let list = root.join("packaging/hot-code.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    println!("cargo:rerun-if-changed={}", root.join("packaging/hot_code.rs").display());
    println!("cargo:rerun-if-env-changed=DIRECTOR_HOT_CODE");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let wanted = var("PROFILE") == "release"
        && var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && var("DIRECTOR_HOT_CODE") != "0";
    if !wanted {
        return;
    }
    let Ok(names) = std::fs::read_to_string(&list) else { return };
    let script = out.join("hot-code.ld");
    std::fs::write(&script, hot_code::linker_script(&names)).unwrap();
    println!("cargo:rustc-link-arg-bin=director=-Wl,-T,{}", script.display());
}

/// The stage (crates/director-stage, a workspace of its own: `no_std`, so built only with
/// its own profile) for `target`. Static glibc needs its unwinder's library linked too.
fn build_stage(root: &Path, target_dir: &Path, target: &str, flags: &str) -> Result<PathBuf, String> {
    let target_dir = target_dir.join("stage");
    let glibc = if target.ends_with("-gnu") { " -C link-arg=-lgcc_eh" } else { "" };
    let mut cmd = nested_cargo(&root.join("crates/director-stage"), target, &target_dir, &format!("{flags}{glibc}"));
    cmd.arg("--locked");
    run(cmd)?;
    Ok(target_dir.join(target).join("exec").join("director-stage"))
}

/// [`build`] with the standard library built for the executor (see where it is called).
fn build_std(root: &Path, target_dir: &Path, target: &str, flags: &str) -> Result<PathBuf, String> {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| e.to_string())?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib/src/rust/library/std").is_dir() {
        return Err(format!("no rust-src in {}; run `rustup component add rust-src`", sysroot.display()));
    }
    build(root, &target_dir.join("std"), target, flags, true)
}

fn build(root: &Path, target_dir: &Path, target: &str, flags: &str, std: bool) -> Result<PathBuf, String> {
    let mut cmd = nested_cargo(root, target, target_dir, flags);
    cmd.args(["-p", "director-exec"]);
    if std {
        cmd.args(["-Z", "build-std=std,panic_abort", "-Z", "build-std-features="]).env("RUSTC_BOOTSTRAP", "1");
    }
    run(cmd)?;
    Ok(target_dir.join(target).join("exec").join("director-exec"))
}

/// `cargo build --profile exec` in `dir` for `target`, into `target_dir`, with `flags` and
/// none of the outer build's flags, target or target directory.
fn nested_cargo(dir: &Path, target: &str, target_dir: &Path, flags: &str) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--quiet", "--profile", "exec", "--target", target, "--target-dir"])
        .arg(target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    // No unwind tables: with `panic = "abort"` and no backtraces nothing reads them, and they
    // were an eighth of the binary (x86_64: 564 KB with them, 490 KB without) that every first
    // contact sends, decompresses, hashes and maps.
    cmd.env("RUSTFLAGS", format!("-C force-unwind-tables=no {flags}").trim_end());
    cmd
}

/// Runs a nested build: its first lines of errors when it fails.
fn run(mut cmd: Command) -> Result<(), String> {
    let output = cmd.output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).lines().take(5).collect::<Vec<_>>().join(" | "));
    }
    Ok(())
}
