//! Node selection: the one grammar of `--restrict` and `exec --target`.
//!
//! A selection is a comma list of terms (repeating the flag adds terms to the list). A term
//! is a node name, a group name, a host (address), a glob (`web*`, over node and group names),
//! or a folded range as director prints them (`web[1-38,40]`, `db[01-04]`). A plain term adds
//! its nodes; `&TERM` keeps only the nodes it also matches (intersection); `!TERM` takes its
//! nodes out. `web,db,&prod,!web3` is: web and db nodes, those in prod, but not web3. With
//! only `&` and `!` terms, the list starts from every node.
//!
//! Nothing is silently empty: a term that matches nothing is an error naming it (with a
//! did-you-mean), and so is a selection whose terms, together, leave no node.

use crate::catalog::Catalog;
use crate::error::Error;

/// Which catalog nodes `patterns` (given with `flag`) select.
pub(crate) fn select(catalog: &Catalog, patterns: &[String], flag: &str) -> Result<Vec<bool>, Error> {
    let terms: Vec<&str> = patterns.iter().flat_map(|p| split(p)).map(str::trim).filter(|t| !t.is_empty()).collect();
    if terms.is_empty() {
        return Ok(vec![true; catalog.nodes.len()]);
    }
    let written = patterns.join(",");
    let starts_with_all = terms.iter().all(|t| t.starts_with('&') || t.starts_with('!'));
    let mut mask = vec![starts_with_all; catalog.nodes.len()];
    let mut keep: Vec<Vec<bool>> = Vec::new();
    let mut drop: Vec<Vec<bool>> = Vec::new();
    for term in &terms {
        let (kind, name) = match term.as_bytes()[0] {
            b'&' => ('&', &term[1..]),
            b'!' => ('!', &term[1..]),
            _ => (' ', *term),
        };
        if name.starts_with(['&', '!']) {
            return Err(Error::input(format!("{flag} `{written}`: `{term}` has two of `&` and `!`"))
                .hint("a term is NAME (add), &NAME (keep only those) or !NAME (take out)"));
        }
        let matched = matches(catalog, name.trim()).map_err(|e| {
            Error::input(format!("{flag} `{written}`: `{name}` is not a valid pattern: {e}"))
                .hint("use node names, group names, hosts, globs like `web*` or ranges like `web[1-4]`")
        })?;
        if !matched.iter().any(|m| *m) {
            let groups = catalog.groups();
            let names = catalog.nodes.iter().map(|n| n.name.as_str()).chain(groups.iter().map(String::as_str));
            let what =
                if written == *term { format!("{flag} `{written}`") } else { format!("{flag} `{written}`: `{name}`") };
            let err = Error::input(format!("{what} matches no node or group in the catalog"));
            return Err(match crate::error::suggest(name, names) {
                Some(s) => err.hint(format!("did you mean `{s}`? the catalog has {}", catalog.names_hint())),
                None => err.hint(format!("the catalog has {}", catalog.names_hint())),
            });
        }
        match kind {
            '&' => keep.push(matched),
            '!' => drop.push(matched),
            _ => mask.iter_mut().zip(&matched).for_each(|(m, t)| *m |= *t),
        }
    }
    for set in keep {
        mask.iter_mut().zip(&set).for_each(|(m, t)| *m &= *t);
    }
    for set in drop {
        mask.iter_mut().zip(&set).for_each(|(m, t)| *m &= !*t);
    }
    if !mask.iter().any(|m| *m) {
        return Err(Error::input(format!("{flag} `{written}` leaves no node: each term matches, but not together"))
            .hint("`&TERM` keeps only the nodes TERM also matches and `!TERM` takes them out; `director orchestrate FILE --list-nodes` shows a selection"));
    }
    Ok(mask)
}

/// The terms of one pattern: commas outside brackets separate them.
fn split(pattern: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&pattern[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&pattern[start..]);
    terms
}

/// The nodes one term matches: by name, group, host, folded range or glob.
fn matches(catalog: &Catalog, term: &str) -> Result<Vec<bool>, String> {
    let expanded = expand(term);
    let glob = if term.contains(['*', '?', '[']) && expanded.is_none() {
        Some(glob::Pattern::new(term).map_err(|e| e.msg.to_string())?)
    } else {
        None
    };
    Ok(catalog
        .nodes
        .iter()
        .map(|n| {
            n.name == term
                || n.host == term
                || n.groups.iter().any(|g| g == term)
                || expanded.as_ref().is_some_and(|names| names.contains(&n.name))
                || glob.as_ref().is_some_and(|g| g.matches(&n.name) || n.groups.iter().any(|gr| g.matches(gr)))
        })
        .collect())
}

/// A folded range (`web[1-3,7]`, `db[01-04].example`) as the names it stands for; `None`
/// when the brackets hold something else (a glob's character class). At most 100,000 names.
pub(crate) fn expand(term: &str) -> Option<Vec<String>> {
    let open = term.find('[')?;
    let close = open + term[open..].find(']')?;
    let (prefix, inner, suffix) = (&term[..open], &term[open + 1..close], &term[close + 1..]);
    if suffix.contains('[') || inner.is_empty() {
        return None;
    }
    let mut names = Vec::new();
    for part in inner.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if a.is_empty() || !a.bytes().all(|c| c.is_ascii_digit()) || !b.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let (from, to) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
        if to < from || to - from > 100_000 || names.len() > 100_000 {
            return None;
        }
        // Zero padding as written: `01-10` is 01, 02, … 10.
        let width = if a.len() > 1 && a.starts_with('0') { a.len() } else { 0 };
        names.extend((from..=to).map(|n| format!("{prefix}{n:0width$}{suffix}")));
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::yaml::Document;
    use std::path::Path;

    fn catalog() -> Catalog {
        let text = "groups: {web: {}, db: {}, prod: {}}\nnodes:\n  - {name: web1, host: 10.0.0.1, groups: [web, prod]}\n  - {name: web2, host: 10.0.0.2, groups: [web]}\n  - {name: web3, host: 10.0.0.3, groups: [web, prod]}\n  - {name: db01, host: 10.0.0.4, groups: [db, prod]}\n  - {name: db02, host: 10.0.0.5, groups: [db]}\n";
        Catalog::from_documents(vec![Document::parse(Path::new("c.yaml"), text.into()).unwrap()]).unwrap()
    }

    fn names(patterns: &[&str]) -> Result<Vec<String>, String> {
        let c = catalog();
        let patterns: Vec<String> = patterns.iter().map(std::string::ToString::to_string).collect();
        select(&c, &patterns, "--restrict")
            .map(|mask| c.nodes.iter().zip(mask).filter(|(_, m)| *m).map(|(n, _)| n.name.clone()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_grammar() {
        assert_eq!(names(&[]).unwrap(), ["web1", "web2", "web3", "db01", "db02"]);
        assert_eq!(names(&["web2,db"]).unwrap(), ["web2", "db01", "db02"]);
        assert_eq!(names(&["web2", "db"]).unwrap(), names(&["web2,db"]).unwrap());
        assert_eq!(names(&["web,!web3"]).unwrap(), ["web1", "web2"]);
        assert_eq!(names(&["web,db,&prod,!web3"]).unwrap(), ["web1", "db01"]);
        assert_eq!(names(&["!db"]).unwrap(), ["web1", "web2", "web3"]);
        assert_eq!(names(&["&prod"]).unwrap(), ["web1", "web3", "db01"]);
        assert_eq!(names(&["w*2,10.0.0.5"]).unwrap(), ["web2", "db02"]);
        assert_eq!(names(&["web[1-2],db[01-02]"]).unwrap(), ["web1", "web2", "db01", "db02"]);
        assert_eq!(names(&["web[!2]"]).unwrap(), ["web1", "web3"]);
        assert_eq!(names(&["p*"]).unwrap(), ["web1", "web3", "db01"]);
    }

    #[test]
    fn nothing_is_silently_empty() {
        assert_eq!(
            names(&["web,!wbe3"]).unwrap_err(),
            "error: --restrict `web,!wbe3`: `wbe3` matches no node or group in the catalog\n  hint: did you mean `web3`? the catalog has web1, web2, web3, db01, db02"
        );
        assert_eq!(
            names(&["web2,&db"]).unwrap_err(),
            "error: --restrict `web2,&db` leaves no node: each term matches, but not together\n  hint: `&TERM` keeps only the nodes TERM also matches and `!TERM` takes them out; `director orchestrate FILE --list-nodes` shows a selection"
        );
        assert_eq!(
            names(&["web["]).unwrap_err(),
            "error: --restrict `web[`: `web[` is not a valid pattern: invalid range pattern\n  hint: use node names, group names, hosts, globs like `web*` or ranges like `web[1-4]`"
        );
        assert_eq!(
            names(&["mail*"]).unwrap_err(),
            "error: --restrict `mail*` matches no node or group in the catalog\n  hint: the catalog has web1, web2, web3, db01, db02"
        );
    }

    #[test]
    fn ranges_expand_with_their_padding() {
        assert_eq!(expand("n[08-10]").unwrap(), ["n08", "n09", "n10"]);
        assert_eq!(expand("n[1,3-4].x").unwrap(), ["n1.x", "n3.x", "n4.x"]);
        assert_eq!(expand("n[a-c]"), None);
        assert_eq!(expand("n[5-1]"), None);
        assert_eq!(expand("n[1-99999999]"), None);
    }
}
