//! What a linked binary holds, read with binutils: its functions' addresses (`nm`) and its
//! sections (`readelf`). Shared by the e2e suite (the code layout's test) and the scale bench
//! (the hot-code list's order, the report's sizes).

use std::path::Path;
use std::process::Command;

/// The functions `binary` defines (its local and global text symbols): name and address.
pub(crate) fn functions(binary: &Path) -> Result<Vec<(String, u64)>, String> {
    let nm = Command::new("nm").arg("--defined-only").arg(binary).output().map_err(|e| format!("nm: {e}"))?;
    Ok(String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            let addr = u64::from_str_radix(addr, 16).ok()?;
            matches!(kind, "t" | "T").then(|| (name.to_string(), addr))
        })
        .collect())
}

/// `binary`'s sections: name, address and size.
pub(crate) fn sections(binary: &Path) -> Result<Vec<(String, u64, u64)>, String> {
    let readelf = Command::new("readelf").arg("-SW").arg(binary).output().map_err(|e| format!("readelf: {e}"))?;
    Ok(String::from_utf8_lossy(&readelf.stdout)
        .lines()
        .filter_map(|l| {
            // `[15] .text.hot PROGBITS <address> <offset> <size> ...`
            let f: Vec<&str> = l.split(']').nth(1)?.split_whitespace().collect();
            let (name, addr, size) = (f.first()?, f.get(2)?, f.get(4)?);
            Some((name.to_string(), u64::from_str_radix(addr, 16).ok()?, u64::from_str_radix(size, 16).ok()?))
        })
        .collect())
}
