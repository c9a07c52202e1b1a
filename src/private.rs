//! Files on the operator's machine that hold outputs, keys or secrets: the run history, its
//! locks, GET'd files, exported jobs, known_hosts, the log file. They are created private to the user
//! (files 0600, directories 0700), whatever the umask; an existing history that others can
//! read is reported, never silently changed.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents, each new one 0700 (existing ones are left as
/// they are: `~/.local` may be shared on purpose).
pub(crate) fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `bytes` to a temp file beside `path`, mode 0600, synced, and hands its path to
/// `place` (which puts it at `path`); the temp file is removed if it is still there after.
fn via_temp<T>(path: &Path, bytes: &[u8], place: impl FnOnce(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    let temp = path.with_file_name(format!(
        ".{}.director-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<T> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        place(&temp)
    };
    let placed = write();
    let _ = std::fs::remove_file(&temp);
    placed
}

/// Writes `bytes` to `path` atomically (a temp file beside it, then a rename), mode 0600.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    via_temp(path, bytes, |temp| std::fs::rename(temp, path))
}

/// Creates `path` with `bytes`, mode 0600, unless it exists: the bytes are written to a temp
/// file first and linked into place, so a reader never sees it half written and of two
/// processes creating it at once, one wins. Returns whether this call created it.
pub(crate) fn create_once(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    via_temp(path, bytes, |temp| match std::fs::hard_link(temp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    })
}

/// Opens `path` to append to, creating it with mode 0600 (and its directory 0700) if needed.
pub(crate) fn append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path)
}

/// Creates `path` empty with mode 0600 if it does not exist yet.
pub(crate) fn touch(path: &Path) -> std::io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A warning when `path` (a file holding outputs) can be read by other users.
pub(crate) fn exposure(path: &Path, what: &str) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "warning: {what} {} can be read by other users (mode {:04o}); it holds job outputs: chmod 600 it",
            path.display(),
            mode & 0o7777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_whatever_the_umask() {
        let dir = std::env::temp_dir().join(format!("director-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nested = dir.join("a/b");
        create_dir_all(&nested).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&dir), mode(&dir.join("a")), mode(&nested)), (0o700, 0o700, 0o700));
        write_file(&nested.join("f"), b"x").unwrap();
        touch(&nested.join("g")).unwrap();
        assert_eq!((mode(&nested.join("f")), mode(&nested.join("g"))), (0o600, 0o600));
        assert_eq!(exposure(&nested.join("f"), "the file"), None);
        std::fs::set_permissions(nested.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(exposure(&nested.join("f"), "the file").unwrap().contains("(mode 0644)"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
