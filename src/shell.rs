//! Quoting for `/bin/sh`, the one shell director may assume on a node.

/// Quotes text for `/bin/sh` as one word.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
