//! The release layout's linker script (packaging/hot_code.rs), linked for real: the toolchain's
//! own linker places the functions the list names in `.text.hot`, by exact name and, once
//! the hashes in the list are stale, by the names with their hashes as wildcards.

#[path = "../../packaging/hot_code.rs"]
mod hot_code;

use std::path::Path;
use std::process::Command;

const PROGRAM: &str = r#"
#[inline(never)]
fn listed_function(x: u64) -> u64 { x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) }
#[inline(never)]
fn unlisted_function(x: u64) -> u64 { x ^ (x >> 7) }
fn main() {
    let n = std::env::args().count() as u64;
    println!("{}", listed_function(n) + unlisted_function(n));
}
"#;

/// Builds the program in `dir`, with the script `script` when given; its path.
fn build(dir: &Path, name: &str, script: Option<&Path>) -> std::path::PathBuf {
    let source = dir.join("program.rs");
    std::fs::write(&source, PROGRAM).unwrap();
    let out = dir.join(name);
    let mut rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    rustc.args(["--edition", "2021", "-C", "opt-level=2", "-o"]).arg(&out).arg(&source);
    if let Some(script) = script {
        rustc.arg("-C").arg(format!("link-arg=-Wl,-T,{}", script.display()));
    }
    let built = rustc.output().unwrap();
    assert!(built.status.success(), "rustc: {}", String::from_utf8_lossy(&built.stderr));
    out
}

/// Symbol name → address, of `binary`'s functions.
fn functions(binary: &Path) -> Vec<(String, u64)> {
    crate::elf::functions(binary).unwrap()
}

/// Where `binary`'s `.text.hot` section is: its start and end addresses.
fn hot_section(binary: &Path) -> Option<(u64, u64)> {
    let sections = crate::elf::sections(binary).unwrap();
    sections.into_iter().find(|(name, ..)| name == ".text.hot").map(|(_, addr, size)| (addr, addr + size))
}

#[test]
fn a_listed_function_is_placed_first_by_its_name_and_still_once_its_hash_is_stale() {
    let dir = crate::scratch("layout");
    let plain = build(&dir, "plain", None);
    let symbols = functions(&plain);
    let name_of = |what: &str| symbols.iter().find(|(n, _)| n.contains(what)).map(|(n, _)| n.clone());
    let listed = name_of("listed_function").expect("the listed function's symbol");
    assert_eq!(hot_section(&plain), None, "no script, no .text.hot");
    // Fresh: the exact name. Stale: the same name with another hash in it, as after a
    // dependency or toolchain update.
    let at = listed.find("17h").expect("a legacy symbol name, with its hash") + 3;
    let other = if &listed[at..at + 16] == "0123456789abcdef" { "fedcba9876543210" } else { "0123456789abcdef" };
    let stale = format!("{}{other}{}", &listed[..at], &listed[at + 16..]);
    for (case, list) in [("fresh", &listed), ("stale", &stale)] {
        let script = dir.join(format!("{case}.ld"));
        std::fs::write(&script, hot_code::linker_script(&format!("# {case}\n{list}\n"))).unwrap();
        let binary = build(&dir, case, Some(&script));
        let (start, end) = hot_section(&binary).unwrap_or_else(|| panic!("{case}: no .text.hot"));
        let at = |what: &str| functions(&binary).into_iter().find(|(n, _)| n.contains(what)).unwrap().1;
        assert!((start..end).contains(&at("listed_function")), "{case}: the listed function is not in .text.hot");
        assert!(!(start..end).contains(&at("unlisted_function")), "{case}: an unlisted function is in .text.hot");
        let run = Command::new(&binary).output().unwrap();
        assert!(run.status.success(), "{case}: the program linked with the script does not run");
    }
}

#[test]
fn hashes_become_wildcards() {
    assert_eq!(
        hot_code::wildcard("_ZN8director14main_with_args17hb168ce85b33bd072E"),
        "_ZN8director14main_with_args17h*E"
    );
    assert_eq!(
        hot_code::wildcard("_ZN4core3ptr13drop_in_place17h0123456789abcdefE.llvm.1234567"),
        "_ZN4core3ptr13drop_in_place17h*E"
    );
    assert_eq!(
        hot_code::wildcard("_RINvMNtCsgEmfK2I1SDS_4core3stre12trim_matchesECsjrHSEGnQ3l9_3std"),
        "_RINvMNtCs*_4core3stre12trim_matchesECs*_3std"
    );
    // Not a hash: left alone.
    assert_eq!(hot_code::wildcard("_ZN3foo17hello"), "_ZN3foo17hello");
}

#[test]
fn the_checked_in_list_names_the_operators_code() {
    let list = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hot-code.txt")).unwrap();
    let names: Vec<&str> = list.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(names.len() > 1000, "{} names: the list was not recorded from a whole run", names.len());
    for wanted in ["main_with_args", "run_node", "russh"] {
        assert!(names.iter().any(|n| n.contains(wanted)), "the list names nothing of {wanted}");
    }
    let script = hot_code::linker_script(&list);
    assert!(script.trim_end().ends_with("INSERT BEFORE .text;"));
}
