//! Recording the functions a run of director executes, for `packaging/hot-code.txt` (the
//! layout a release build links with, see packaging/hot_code.rs), and reporting how much of a
//! binary's code that layout gathered.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// The names of the functions of `binary` that callgrind's profiles in `dir` saw execute.
pub(crate) fn executed(dir: &Path, binary: &Path) -> Result<BTreeSet<String>, String> {
    let binary = binary.to_string_lossy().into_owned();
    let mut names = BTreeSet::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
        // Callgrind names an object or function in full once, then by its number: `ob=(3)
        // /path` then `ob=(3)`. A `fn=` line belongs to the last `ob=`.
        let (mut objects, mut functions) = (HashMap::new(), HashMap::new());
        let mut in_binary = false;
        for line in text.lines() {
            let Some((kind, rest)) = line.split_once("=(") else { continue };
            let Some((id, name)) = rest.split_once(')') else { continue };
            let name = name.trim();
            match kind {
                "ob" | "cob" => {
                    if !name.is_empty() {
                        objects.insert(id.to_string(), name.to_string());
                    }
                    if kind == "ob" {
                        in_binary = objects.get(id).is_some_and(|o| *o == binary);
                    }
                }
                "fn" | "cfn" => {
                    if !name.is_empty() {
                        functions.insert(id.to_string(), name.to_string());
                    }
                    if kind == "fn" && in_binary {
                        if let Some(f) = functions.get(id).filter(|f| !f.starts_with("0x") && !f.starts_with('(')) {
                            names.insert(f.clone());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(names)
}

/// `names` in the order `binary` has them in memory (names it lacks last): laid out in that
/// order, the hot code keeps the linker's own locality (a function near its callers), only
/// without the cold code between.
pub(crate) fn in_binary_order(binary: &Path, names: BTreeSet<String>) -> Result<Vec<String>, String> {
    let mut at = HashMap::new();
    for (name, addr) in crate::elf::functions(binary)? {
        at.entry(name).or_insert(addr);
    }
    let mut names: Vec<String> = names.into_iter().collect();
    names.sort_by_key(|n| at.get(n).copied().unwrap_or(u64::MAX));
    Ok(names)
}

/// Writes the list `packaging/hot-code.txt` holds.
pub(crate) fn write_list(path: &Path, names: &[String], recorded: &str) -> Result<(), String> {
    let mut text = format!(
        "# The functions a run of director executes ({recorded}), as callgrind saw them:\n\
         # a release build places them first, in this order (packaging/hot_code.rs). Regenerate with\n\
         # `DIRECTOR_HOT_CODE=0 BENCH_HOSTS=20 BENCH_ROUNDS=1 BENCH_ONLY=first BENCH_HOT_CODE=first,w1,w2,w3,w4local cargo bench --bench scale`.\n"
    );
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The size of `binary`'s `.text.hot` section and of all its code, in bytes.
pub(crate) fn layout(binary: &Path) -> Option<(u64, u64)> {
    let (mut hot, mut all) = (0, 0);
    for (name, _, size) in crate::elf::sections(binary).ok()? {
        match name.as_str() {
            ".text.hot" => (hot, all) = (size, all + size),
            ".text" => all += size,
            _ => {}
        }
    }
    Some((hot, all))
}
