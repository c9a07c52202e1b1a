//! Small statistics shared by the benchmarks.

use std::time::Duration;

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
