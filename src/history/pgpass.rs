//! Where a PostgreSQL history's password comes from when its URL has none, as libpq finds it:
//! `PGPASSWORD`, else the password file (`PGPASSFILE`, default `~/.pgpass`), whose lines are
//! `host:port:database:user:password` (`*` matches anything, `\:` and `\\` escape, `#`
//! starts a comment), the first matching line winning. A file that others can read is not
//! used, and that is said, as libpq says it. A password so found never appears in a message.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// The password for `host:port/database` as `user`, if the environment or the file has one;
/// a password file not used is said through `warn`.
pub(crate) fn lookup(
    host: &str,
    port: u16,
    database: &str,
    user: &str,
    warn: &mut dyn FnMut(String),
) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD") {
        return Some(password);
    }
    let path =
        std::env::var_os("PGPASSFILE").map(PathBuf::from).unwrap_or_else(|| crate::paths::expand_home("~/.pgpass"));
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warn(format!(
            "warning: password file {} has group or world access; permissions should be u=rw (0600) or less: it is not used",
            path.display()
        ));
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let port = port.to_string();
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).find_map(|line| {
        let fields = split(line);
        let [h, p, d, u, password] = fields.as_slice() else { return None };
        let matches = |field: &str, value: &str| field == "*" || field == value;
        (matches(h, host) && matches(p, &port) && matches(d, database) && matches(u, user)).then(|| password.clone())
    })
}

/// A line's fields: split at `:` that are not escaped, with `\:` and `\\` unescaped.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().unwrap_or(&mut String::new()).push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => fields.last_mut().unwrap_or(&mut String::new()).push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_lines_split_as_libpq_splits_them() {
        assert_eq!(split("db:5432:director:ops:s3cret"), ["db", "5432", "director", "ops", "s3cret"]);
        assert_eq!(split(r"db\:1:*:x:a\:b\\c:d"), ["db:1", "*", "x", "a:b\\c", "d"]);
        assert_eq!(split(r"h:*:*:u:pass:with:colons"), ["h", "*", "*", "u", "pass:with:colons"]);
        assert_eq!(split(r"h:*:*:u:p\\:q"), ["h", "*", "*", "u", r"p\:q"]);
    }
}
