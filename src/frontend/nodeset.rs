//! Node names folded into ranges, as ClusterShell's nodeset and `dshbak -c` write them:
//! `web1 web2 web3 web5 db01 db02` is `db[01-02],web[1-3,5]`.
//!
//! A name folds on its last run of digits: names with the same text before and after it
//! share brackets. Zero padding is kept: `01`-`09` and `10` follow each other (same width),
//! but `1` and `01` are different numbers. Names without digits stand as they are. Groups are
//! sorted by their text, numbers by value, so the same set always folds the same way.

use std::collections::BTreeMap;

/// `names` folded (duplicates count once).
pub(crate) fn fold<S: AsRef<str>>(names: &[S]) -> String {
    // (prefix, suffix) → numbers as written; names without digits on their own.
    let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    let mut plain: Vec<&str> = Vec::new();
    for name in names {
        let name = name.as_ref();
        match last_number(name) {
            Some((start, end)) => groups.entry((&name[..start], &name[end..])).or_default().push(&name[start..end]),
            None => plain.push(name),
        }
    }
    let mut parts: Vec<(String, String)> = Vec::new();
    for ((prefix, suffix), mut numbers) in groups {
        numbers.sort_by(|a, b| key(a).cmp(&key(b)));
        numbers.dedup();
        let ranges = ranges(&numbers);
        let text = if numbers.len() == 1 {
            format!("{prefix}{}{suffix}", numbers[0])
        } else {
            format!("{prefix}[{}]{suffix}", ranges.join(","))
        };
        parts.push((format!("{prefix}\u{0}{suffix}"), text));
    }
    plain.sort_unstable();
    plain.dedup();
    parts.extend(plain.into_iter().map(|p| (p.to_string(), p.to_string())));
    parts.sort();
    parts.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(",")
}

/// A key that sorts node names as people do: `web2` before `web10`.
pub(crate) fn natural(name: &str) -> String {
    let mut key = String::with_capacity(name.len() + 16);
    let mut digits = String::new();
    for c in name.chars().chain(std::iter::once('\u{0}')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            key.push_str(&format!("{digits:0>40}"));
            digits.clear();
        }
        if c != '\u{0}' {
            key.push(c);
        }
    }
    key
}

/// Where the last run of ASCII digits is in `name`.
fn last_number(name: &str) -> Option<(usize, usize)> {
    let bytes = name.as_bytes();
    let end = bytes.iter().rposition(u8::is_ascii_digit)? + 1;
    let start = bytes[..end].iter().rposition(|b| !b.is_ascii_digit()).map_or(0, |p| p + 1);
    Some((start, end))
}

/// The sort key: the value, then the padded width (`1` before `01`), then the text.
fn key(number: &str) -> (u128, usize, &str) {
    (number.parse::<u128>().unwrap_or(u128::MAX), width(number), number)
}

/// A zero-padded number's width; 0 for a number written without padding.
fn width(number: &str) -> usize {
    if number.len() > 1 && number.starts_with('0') {
        number.len()
    } else {
        0
    }
}

/// Whether `next` continues a run whose last number is `last`.
fn follows(last: &str, next: &str) -> bool {
    let (Ok(a), Ok(b)) = (last.parse::<u128>(), next.parse::<u128>()) else { return false };
    let same_width = match (width(last), width(next)) {
        (0, 0) => true,
        (w, 0) => next.len() == w,
        (w, v) => w == v,
    };
    b == a + 1 && same_width
}

/// Sorted numbers as ranges: `1-3`, `5`.
fn ranges(numbers: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && follows(numbers[j], numbers[j + 1]) {
            j += 1;
        }
        out.push(if i == j { numbers[i].to_string() } else { format!("{}-{}", numbers[i], numbers[j]) });
        i = j + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn folds_like_nodeset() {
        assert_eq!(fold(&["web1", "web2", "web3", "web5", "db01", "db02"]), "db[01-02],web[1-3,5]");
        assert_eq!(fold(&["web3"]), "web3");
        assert_eq!(fold::<&str>(&[]), "");
        assert_eq!(fold(&["a", "b", "web1", "web1"]), "a,b,web1");
        // Padding kept: 08-10 run on in width 2; 1 and 01 are not the same number.
        assert_eq!(fold(&["n08", "n09", "n10", "n1", "n01"]), "n[1,01,08-10]");
        assert_eq!(fold(&["n9", "n10", "n11"]), "n[9-11]");
        // The last number folds; text after it stays outside the brackets.
        assert_eq!(fold(&["rack1-node1", "rack1-node2", "rack2-node1"]), "rack1-node[1-2],rack2-node1");
        assert_eq!(fold(&["web1.example.com", "web2.example.com"]), "web[1-2].example.com");
        assert_eq!(fold(&["10.0.0.1", "10.0.0.2", "10.0.0.7"]), "10.0.0.[1-2,7]");
        assert_eq!(fold(&["h1", "H2"]), "H2,h1");
        // Numbers too long for any integer still fold as text.
        let huge = "9".repeat(50);
        assert_eq!(fold(&[format!("x{huge}"), "x1".to_string()]), format!("x[1,{huge}]"));
    }

    #[test]
    fn natural_order() {
        let mut names = vec!["web10", "h6", "web2", "h1", "db1"];
        names.sort_by_key(|n| super::natural(n));
        assert_eq!(names, ["db1", "h1", "h6", "web2", "web10"]);
    }

    #[test]
    fn ten_thousand_nodes() {
        let mut names: Vec<String> = (1..=10_000).map(|i| format!("node{i:05}")).collect();
        names.retain(|n| n != "node05000");
        names.reverse();
        assert_eq!(fold(&names), "node[00001-04999,05001-10000]");
    }
}
