//! OpenSSH's patterns (`match.c`), shared by ssh_config and known_hosts: `*` and `?` globs,
//! and comma lists where a `!` pattern that matches rules the whole list out.

/// `*` and `?` globbing, as OpenSSH's `match_pattern` (case-sensitive).
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    fn go(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&pattern[1..], text) || (!text.is_empty() && go(pattern, &text[1..])),
            (Some(b'?'), Some(_)) => go(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => go(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// A comma list of patterns, as OpenSSH's `match_pattern_list` without regard to case: true
/// when a pattern matches, false when none does or a negated (`!`) one does.
pub(crate) fn list(patterns: &str, text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    let mut matched = false;
    for pattern in patterns.split(',') {
        let (negated, p) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if glob(&p.to_ascii_lowercase(), &text) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_lists() {
        assert!(glob("web-*", "web-1") && glob("w?b", "web") && !glob("web", "WEB"));
        assert!(list("10.0.0.*,!10.0.0.7", "10.0.0.8") && !list("10.0.0.*,!10.0.0.7", "10.0.0.7"));
        assert!(list("WEB1", "web1") && !list("db*", "web1"));
    }
}
