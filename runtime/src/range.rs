//! Task values and sets of them.
//!
//! Owns [`RangeSet`], the set of task values a job covers, and its text form (`1..=1000`,
//! `0..10,20..30`, `7`), which is also its serde form. Values are capped at [`MAX_VALUE`] so the
//! queue's Lua scripts, whose numbers are doubles, stay exact.
//!
//! A set is stored as sorted, disjoint, non-adjacent inclusive intervals, never one entry per
//! value: a job of 10^7 values is one interval, and every operation here costs time in the number
//! of intervals. This module does not know where sets live (the storage backends keep pending,
//! succeeded and failed sets of each job) nor what a value means to a task.
//!
//! One type and its operations, kept whole above 400 lines: every method keeps the invariant
//! above and the canonical text form relies on it; split apart, it would be kept in several files.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest task value: 2^53 - 1, the largest integer a double holds exactly.
pub const MAX_VALUE: u64 = (1 << 53) - 1;

/// A set of task values, kept as inclusive intervals.
///
/// Every operation costs time in the number of intervals, not values. Values above
/// [`MAX_VALUE`] cannot be inserted: the methods that add values panic on them, as slice
/// indexing does on an index out of bounds; values from outside the program come in through
/// [`FromStr`] or serde, which check them.
///
/// An interval whose start is after its end is empty, as `5..=4` is in Rust.
///
/// Text form ([`Display`](fmt::Display) and [`FromStr`]): comma-separated items, each a value
/// `7`, an inclusive span `1..=100` or an exclusive span `0..10`. Display is canonical (`a` for a
/// single value, `a..=b` otherwise, ascending) and prints the empty set as `(none)`, which does
/// not parse back: parsing requires at least one value, because an empty range given on the
/// command line is a mistake. The serde form is the same text, except that the empty set is the
/// empty string, so sets of every size round-trip through JSON.
#[derive(Clone, Debug, PartialEq, Eq, Default, Hash)]
pub struct RangeSet {
    /// Sorted by start; for consecutive intervals `(a, b)` and `(c, d)`, `b + 1 < c`. Keeping
    /// them non-adjacent makes the representation unique, so derived equality and hashing are
    /// equality and hashing of the sets.
    intervals: Vec<(u64, u64)>,
}

impl RangeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The values `start..=end`; empty when `start > end`.
    ///
    /// # Panics
    ///
    /// When the interval is not empty and `end` is above [`MAX_VALUE`].
    pub fn from_interval(start: u64, end: u64) -> Self {
        let mut set = Self::new();
        set.insert_interval(start, end);
        set
    }

    /// The union of the given inclusive intervals, in any order, overlapping or not; those whose
    /// start is after their end are empty. Used to rebuild a set from a stored interval list.
    ///
    /// # Panics
    ///
    /// When a non-empty interval ends above [`MAX_VALUE`].
    pub fn from_intervals(intervals: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut sorted: Vec<(u64, u64)> = intervals.into_iter().filter(|&(s, e)| s <= e).collect();
        sorted.sort_unstable();
        let mut out = Vec::with_capacity(sorted.len());
        for (start, end) in sorted {
            assert_value(end);
            push_merged(&mut out, (start, end));
        }
        Self { intervals: out }
    }

    /// Whether the set has no values.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// The number of values in the set.
    pub fn len(&self) -> u64 {
        // Cannot overflow: all values are at most MAX_VALUE < u64::MAX.
        self.intervals.iter().map(|&(s, e)| e - s + 1).sum()
    }

    /// The number of intervals the set is stored as.
    pub fn interval_count(&self) -> usize {
        self.intervals.len()
    }

    /// The set's intervals `(start, end)`, inclusive, ascending, disjoint and non-adjacent.
    pub fn intervals(&self) -> &[(u64, u64)] {
        &self.intervals
    }

    /// Every value of the set, ascending, produced lazily.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.intervals.iter().flat_map(|&(s, e)| s..=e)
    }

    /// The lowest value.
    pub fn first(&self) -> Option<u64> {
        self.intervals.first().map(|&(s, _)| s)
    }

    /// The highest value.
    pub fn last(&self) -> Option<u64> {
        self.intervals.last().map(|&(_, e)| e)
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: u64) -> bool {
        let i = self.intervals.partition_point(|&(_, e)| e < value);
        self.intervals.get(i).is_some_and(|&(s, _)| s <= value)
    }

    /// Adds `value`; returns whether it was absent.
    ///
    /// # Panics
    ///
    /// When `value` is above [`MAX_VALUE`].
    pub fn insert(&mut self, value: u64) -> bool {
        assert_value(value);
        if self.contains(value) {
            return false;
        }
        self.insert_interval(value, value);
        true
    }

    /// Adds the values `start..=end` (none when `start > end`).
    ///
    /// # Panics
    ///
    /// When the interval is not empty and `end` is above [`MAX_VALUE`].
    pub fn insert_interval(&mut self, start: u64, end: u64) {
        if start > end {
            return;
        }
        assert_value(end);
        // Intervals in lo..hi overlap or touch [start, end] and merge with it. The `+ 1`s cannot
        // overflow: stored ends and `end` are at most MAX_VALUE.
        let lo = self.intervals.partition_point(|&(_, e)| e + 1 < start);
        let hi = self.intervals.partition_point(|&(s, _)| s <= end + 1);
        if lo == hi {
            self.intervals.insert(lo, (start, end));
        } else {
            let merged = (
                start.min(self.intervals[lo].0),
                end.max(self.intervals[hi - 1].1),
            );
            self.intervals[lo] = merged;
            self.intervals.drain(lo + 1..hi);
        }
    }

    /// Removes `value`; returns whether it was present.
    pub fn remove(&mut self, value: u64) -> bool {
        if !self.contains(value) {
            return false;
        }
        self.remove_interval(value, value);
        true
    }

    /// Removes the values `start..=end` (none when `start > end`); values not in the set are
    /// ignored.
    pub fn remove_interval(&mut self, start: u64, end: u64) {
        if start > end {
            return;
        }
        let lo = self.intervals.partition_point(|&(_, e)| e < start);
        let hi = self.intervals.partition_point(|&(s, _)| s <= end);
        if lo >= hi {
            return;
        }
        let (first_start, _) = self.intervals[lo];
        let (_, last_end) = self.intervals[hi - 1];
        // What survives of the first and last overlapping intervals; `start - 1` and `end + 1`
        // are only computed when they are in range.
        let head = (first_start < start).then(|| (first_start, start - 1));
        let tail = (last_end > end).then(|| (end + 1, last_end));
        self.intervals.splice(lo..hi, head.into_iter().chain(tail));
    }

    /// The values in `self` or `other`.
    pub fn union(&self, other: &RangeSet) -> RangeSet {
        let (a, b) = (&self.intervals, &other.intervals);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let next = if j == b.len() || (i < a.len() && a[i].0 <= b[j].0) {
                i += 1;
                a[i - 1]
            } else {
                j += 1;
                b[j - 1]
            };
            push_merged(&mut out, next);
        }
        RangeSet { intervals: out }
    }

    /// The values in both `self` and `other`.
    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        let (a, b) = (&self.intervals, &other.intervals);
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let start = a[i].0.max(b[j].0);
            let end = a[i].1.min(b[j].1);
            if start <= end {
                out.push((start, end));
            }
            // The interval that ends first cannot meet anything further in the other list.
            if a[i].1 < b[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        RangeSet { intervals: out }
    }

    /// The values in `self` but not in `other`.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        let b = &other.intervals;
        let mut out = Vec::with_capacity(self.intervals.len());
        let mut j = 0;
        for &(start, end) in &self.intervals {
            while j < b.len() && b[j].1 < start {
                j += 1;
            }
            // `j` stays put: the last interval of `other` seen here may reach into the next one.
            let mut cursor = start;
            for &(cut_start, cut_end) in b[j..].iter().take_while(|&&(s, _)| s <= end) {
                if cut_start > cursor {
                    out.push((cursor, cut_start - 1));
                }
                cursor = cut_end + 1;
            }
            if cursor <= end {
                out.push((cursor, end));
            }
        }
        RangeSet { intervals: out }
    }

    /// Removes the `n` lowest values (all of them when the set has fewer) and returns them.
    ///
    /// This is how a worker claims a batch of tasks.
    pub fn take_first(&mut self, n: u64) -> RangeSet {
        let mut taken = Vec::new();
        let mut left = n;
        let mut whole = 0;
        while left > 0 && whole < self.intervals.len() {
            let (start, end) = self.intervals[whole];
            let size = end - start + 1;
            if size <= left {
                taken.push((start, end));
                left -= size;
                whole += 1;
            } else {
                taken.push((start, start + left - 1));
                self.intervals[whole].0 = start + left;
                left = 0;
            }
        }
        self.intervals.drain(..whole);
        RangeSet { intervals: taken }
    }
}

/// Appends an interval that starts at or after the last one's start, merging when they overlap
/// or touch.
fn push_merged(out: &mut Vec<(u64, u64)>, (start, end): (u64, u64)) {
    match out.last_mut() {
        Some(last) if start <= last.1 + 1 => last.1 = last.1.max(end),
        _ => out.push((start, end)),
    }
}

fn assert_value(value: u64) {
    assert!(
        value <= MAX_VALUE,
        "task value {value} is above MAX_VALUE ({MAX_VALUE})"
    );
}

impl FromIterator<u64> for RangeSet {
    /// # Panics
    ///
    /// When a value is above [`MAX_VALUE`].
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut set = RangeSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<u64> for RangeSet {
    /// # Panics
    ///
    /// When a value is above [`MAX_VALUE`].
    fn extend<I: IntoIterator<Item = u64>>(&mut self, iter: I) {
        for value in iter {
            self.insert(value);
        }
    }
}

/// Why a range did not parse. Each variant quotes what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// The input was empty or only whitespace.
    #[error("empty range: expected values like 1..=100, 0..10 or 1..=3,7")]
    Empty,
    /// Two commas in a row, or a comma at either end.
    #[error("empty item in range {input:?}: remove the extra comma")]
    EmptyItem {
        /// The whole input.
        input: String,
    },
    /// An item that is neither a value nor a span, or has a bound that is not a number.
    #[error("invalid range item {item:?}: expected a value like 7, a span like 1..=100 or 0..10")]
    Invalid {
        /// The offending item.
        item: String,
    },
    /// A span whose start is after its end, like `10..5`.
    #[error("reversed range item {item:?}: the start is after the end")]
    Reversed {
        /// The offending item.
        item: String,
    },
    /// An exclusive span with equal bounds, like `5..5`, which holds no value.
    #[error("empty range item {item:?}: a..b holds no value when a = b (a..=b includes b)")]
    EmptySpan {
        /// The offending item.
        item: String,
    },
    /// A value above [`MAX_VALUE`].
    #[error("range item {item:?} goes above the largest task value, {MAX_VALUE}")]
    TooLarge {
        /// The offending item.
        item: String,
    },
}

impl FromStr for RangeSet {
    type Err = RangeError;

    fn from_str(input: &str) -> Result<Self, RangeError> {
        if input.trim().is_empty() {
            return Err(RangeError::Empty);
        }
        let mut set = RangeSet::new();
        for item in input.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(RangeError::EmptyItem {
                    input: input.to_owned(),
                });
            }
            let (start, end) = parse_item(item)?;
            set.insert_interval(start, end);
        }
        Ok(set)
    }
}

/// Parses one item into an inclusive, non-empty interval within the value cap.
fn parse_item(item: &str) -> Result<(u64, u64), RangeError> {
    let owned = || item.to_owned();
    let bound =
        |text: &str| parse_bound(text.trim()).ok_or_else(|| RangeError::Invalid { item: owned() });

    let (start, end) = if let Some((a, b)) = item.split_once("..=") {
        let (start, end) = (bound(a)?, bound(b)?);
        if start > end {
            return Err(RangeError::Reversed { item: owned() });
        }
        (start, end)
    } else if let Some((a, b)) = item.split_once("..") {
        let (start, end_exclusive) = (bound(a)?, bound(b)?);
        if start > end_exclusive {
            return Err(RangeError::Reversed { item: owned() });
        }
        if start == end_exclusive {
            return Err(RangeError::EmptySpan { item: owned() });
        }
        // `0..2^53` is fine: its last value is MAX_VALUE.
        (start, end_exclusive - 1)
    } else {
        let value = bound(item)?;
        (value, value)
    };
    if end > MAX_VALUE {
        return Err(RangeError::TooLarge { item: owned() });
    }
    Ok((start, end))
}

/// A bound: decimal digits only (no sign). Numbers too big for u64 come back as `u64::MAX`, so
/// the caller reports them as too large rather than as not a number.
fn parse_bound(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(none)");
        }
        for (i, &(start, end)) in self.intervals.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}..={end}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for RangeSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_empty() {
            serializer.serialize_str("")
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for RangeSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() {
            return Ok(RangeSet::new());
        }
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
