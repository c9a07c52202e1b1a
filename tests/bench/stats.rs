//! Small statistics shared by the benchmarks.

/// The middle value of `v` (the upper one of an even count); `v` must not be empty.
pub(crate) fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}
