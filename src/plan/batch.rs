//! Rolling batches (`--serial`, an entry's `serial:`) and the failure threshold
//! (`--max-fail`) that stops starting new ones.
//!
//! A run in batches takes its nodes in catalog order, `size` at a time; each batch finishes
//! every job of its nodes before the next batch starts. Once the nodes that failed or were
//! unreachable reach the threshold, no new batch starts and the nodes left are reported
//! skipped. Without `--max-fail`, a batch in which every node failed stops the run, as
//! Ansible's `serial` does. Sizes and thresholds are a count or a percentage of the run's
//! nodes, rounded up and at least 1 ([`Portion`]).

pub(crate) use crate::catalog::portion::Portion;

/// How a run takes its nodes in batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Batching {
    pub size: Portion,
    /// `--max-fail`: nodes failed or unreachable at which no new batch starts.
    pub max_fail: Option<Portion>,
}

impl Batching {
    /// The batches of `total` nodes, as index ranges in order.
    pub fn batches(&self, total: usize) -> Vec<std::ops::Range<usize>> {
        let size = self.size.of(total);
        (0..total).step_by(size).map(|start| start..(start + size).min(total)).collect()
    }

    /// Why no further batch starts, if none should: `failed` nodes so far of `total`, the
    /// last batch having had `batch_failed` of its `batch_len` nodes fail.
    pub fn stop(&self, failed: usize, total: usize, batch_failed: usize, batch_len: usize) -> Option<String> {
        match self.max_fail {
            Some(max) if failed >= max.of(total) => Some(format!(
                "not started: {failed} node(s) failed or were unreachable, which reached --max-fail {max}"
            )),
            Some(_) => None,
            None if batch_len > 0 && batch_failed == batch_len => Some(
                "not started: every node of the batch before failed or was unreachable (give --max-fail to choose when to stop)"
                    .to_string(),
            ),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_node_once_in_order() {
        let b = Batching { size: Portion::Count(2), max_fail: None };
        assert_eq!(b.batches(5), vec![0..2, 2..4, 4..5]);
        let b = Batching { size: Portion::Percent(30), max_fail: None };
        assert_eq!(b.batches(10), vec![0..3, 3..6, 6..9, 9..10]);
        assert!(b.batches(0).is_empty());
    }

    #[test]
    fn the_threshold_stops_new_batches() {
        let b = Batching { size: Portion::Count(2), max_fail: Some(Portion::Count(1)) };
        assert_eq!(b.stop(0, 6, 0, 2), None);
        assert_eq!(
            b.stop(1, 6, 1, 2).unwrap(),
            "not started: 1 node(s) failed or were unreachable, which reached --max-fail 1"
        );
        let b = Batching { size: Portion::Count(2), max_fail: None };
        assert_eq!(b.stop(1, 6, 1, 2), None);
        assert!(b.stop(2, 6, 2, 2).unwrap().starts_with("not started: every node of the batch before failed"));
    }
}
