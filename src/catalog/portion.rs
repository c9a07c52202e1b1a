//! A count of nodes or a percentage of a run's nodes: how `serial:` in an orchestration and
//! `--serial`/`--max-fail` on the command line are written (`10`, `25%`).

/// A count of nodes, or a percentage of the run's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Portion {
    Count(usize),
    Percent(u8),
}

impl Portion {
    /// `10` or `25%`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Portion, String> {
        let t = text.trim();
        let bad = || "not a number of nodes or a percentage; use e.g. 10 or 25%".to_string();
        match t.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p @ 1..=100) => Ok(Portion::Percent(p)),
                Ok(_) => Err("a percentage is from 1% to 100%".to_string()),
                Err(_) => Err(bad()),
            },
            None => match t.parse::<usize>() {
                Ok(0) => Err("at least 1 node".to_string()),
                Ok(n) => Ok(Portion::Count(n)),
                Err(_) => Err(bad()),
            },
        }
    }

    /// How many of `total` nodes it is: at least 1, at most `total` (when there are any).
    pub fn of(self, total: usize) -> usize {
        let n = match self {
            Portion::Count(n) => n,
            Portion::Percent(p) => (total * usize::from(p)).div_ceil(100),
        };
        n.clamp(1, total.max(1))
    }
}

impl std::fmt::Display for Portion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Portion::Count(n) => write!(f, "{n}"),
            Portion::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portions_parse_and_round_up() {
        assert_eq!(Portion::parse("10"), Ok(Portion::Count(10)));
        assert_eq!(Portion::parse("25%"), Ok(Portion::Percent(25)));
        assert_eq!(Portion::parse("0").unwrap_err(), "at least 1 node");
        assert_eq!(Portion::parse("0%").unwrap_err(), "a percentage is from 1% to 100%");
        assert_eq!(Portion::parse("150%").unwrap_err(), "a percentage is from 1% to 100%");
        assert_eq!(Portion::parse("ten").unwrap_err(), "not a number of nodes or a percentage; use e.g. 10 or 25%");
        assert_eq!(Portion::Percent(10).of(42), 5);
        assert_eq!(Portion::Percent(1).of(3), 1);
        assert_eq!(Portion::Percent(100).of(7), 7);
        assert_eq!(Portion::Count(50).of(7), 7);
    }
}
