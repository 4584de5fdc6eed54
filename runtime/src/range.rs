//! Task values and sets of them.
//!
//! Owns [`RangeSet`], the set of task values a job covers, and its text form (`1..=1000`,
//! `0..10,20..30`, `7`), which is also its serde form. Values are capped at [`MAX_VALUE`] so the
//! queue's Lua scripts, whose numbers are doubles, stay exact.
//!
//! A set is stored as sorted, disjoint, non-adjacent inclusive intervals, never one entry per
//! value: a job of 10^7 values is one interval. The intervals are a B-tree keyed by start, so
//! that a set stays fast when it is fragmented (a job whose values fail at random): inserting or
//! removing a value or a run of values and testing membership cost a logarithmic search in the
//! number of intervals, counting costs nothing, and taking the first n values costs one step
//! per interval taken. A sorted vector, the simpler choice, shifts on average half the set on
//! every insert or removal in its middle, and counting walks it whole. This module does not know where sets live (the storage backends keep pending,
//! succeeded and failed sets of each job) nor what a value means to a task.
//!
//! One type and its operations, kept whole above 400 lines: every method keeps the invariant
//! above and the canonical text form relies on it; split apart, it would be kept in several files.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest task value: 2^53 - 1, the largest integer a double holds exactly.
pub const MAX_VALUE: u64 = (1 << 53) - 1;

/// A set of task values, kept as inclusive intervals.
///
/// No operation costs time in the number of values; see the module docs for what each costs
/// in the number of intervals. Values above
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
    /// Each interval's start mapped to its end. For consecutive intervals `(a, b)` and
    /// `(c, d)`, `b + 1 < c`. Keeping them non-adjacent makes the representation unique, so
    /// derived equality and hashing are equality and hashing of the sets.
    intervals: BTreeMap<u64, u64>,
    /// The number of values, kept up to date so that counting costs nothing.
    len: u64,
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
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
        for (start, end) in sorted {
            assert_value(end);
            match merged.last_mut() {
                Some(last) if start <= last.1 + 1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Self::from_canonical(merged)
    }

    /// A set of intervals already ascending, disjoint and non-adjacent; built in linear time.
    fn from_canonical(intervals: Vec<(u64, u64)>) -> Self {
        let len = intervals.iter().map(|&(s, e)| e - s + 1).sum();
        Self {
            intervals: intervals.into_iter().collect(),
            len,
        }
    }

    /// Whether the set has no values.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// The number of values in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The number of intervals the set is stored as.
    pub fn interval_count(&self) -> usize {
        self.intervals.len()
    }

    /// The set's intervals `(start, end)`, inclusive, ascending, disjoint and non-adjacent.
    pub fn intervals(
        &self,
    ) -> impl DoubleEndedIterator<Item = (u64, u64)> + ExactSizeIterator + Clone + '_ {
        self.intervals.iter().map(|(&s, &e)| (s, e))
    }

    /// Every value of the set, ascending, produced lazily.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = u64> + '_ {
        self.intervals().flat_map(|(s, e)| s..=e)
    }

    /// The lowest value.
    pub fn first(&self) -> Option<u64> {
        self.intervals.first_key_value().map(|(&s, _)| s)
    }

    /// The highest value.
    pub fn last(&self) -> Option<u64> {
        self.intervals.last_key_value().map(|(_, &e)| e)
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: u64) -> bool {
        self.intervals
            .range(..=value)
            .next_back()
            .is_some_and(|(_, &end)| end >= value)
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
        let (mut start, mut end) = (start, end);
        // An interval that starts before and reaches `start - 1` merges; the `+ 1`s cannot
        // overflow, stored ends and `end` being at most MAX_VALUE.
        if let Some((&s, &e)) = self.intervals.range(..start).next_back() {
            if e >= end {
                return;
            }
            if e + 1 >= start {
                start = s;
            }
        }
        // So does every interval that starts within `start..=end + 1`. Each one is removed
        // here, so the work is paid for by the insert that made it.
        while let Some((&s, &e)) = self.intervals.range(start..=end + 1).next() {
            self.intervals.remove(&s);
            self.len -= e - s + 1;
            end = end.max(e);
        }
        self.intervals.insert(start, end);
        self.len += end - start + 1;
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
        // The interval that starts before `start` and reaches into it keeps its head, and its
        // tail when it reaches past `end`.
        if let Some((&s, &e)) = self.intervals.range(..start).next_back()
            && e >= start
        {
            self.intervals.insert(s, start - 1);
            self.len -= e.min(end) - start + 1;
            if e > end {
                self.intervals.insert(end + 1, e);
                return;
            }
        }
        // Every interval that starts within `start..=end` goes, keeping what reaches past `end`.
        while let Some((&s, &e)) = self.intervals.range(start..=end).next() {
            self.intervals.remove(&s);
            self.len -= e - s + 1;
            if e > end {
                self.intervals.insert(end + 1, e);
                self.len += e - end;
            }
        }
    }

    /// The intervals that share a value with the non-empty `start..=end`, ascending.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let from = match self.intervals.range(..start).next_back() {
            Some((&s, &e)) if e >= start => s,
            _ => start,
        };
        self.intervals.range(from..=end).map(|(&s, &e)| (s, e))
    }

    /// The values in `self` or `other`.
    ///
    /// Costs a copy of the larger set and a logarithmic insert per interval of the smaller.
    pub fn union(&self, other: &RangeSet) -> RangeSet {
        let (large, small) = match self.interval_count() >= other.interval_count() {
            true => (self, other),
            false => (other, self),
        };
        let mut out = large.clone();
        for (start, end) in small.intervals() {
            out.insert_interval(start, end);
        }
        out
    }

    /// The values in both `self` and `other`.
    ///
    /// Costs a logarithmic search per interval of the smaller set, plus the result.
    pub fn intersection(&self, other: &RangeSet) -> RangeSet {
        let (large, small) = match self.interval_count() >= other.interval_count() {
            true => (self, other),
            false => (other, self),
        };
        // Pieces are non-adjacent: pieces of one interval of `small` are split by gaps of
        // `large`, and pieces of different ones by gaps of `small`.
        let mut out = Vec::new();
        for (start, end) in small.intervals() {
            for (s, e) in large.overlapping(start, end) {
                out.push((s.max(start), e.min(end)));
            }
        }
        Self::from_canonical(out)
    }

    /// The values in `self` but not in `other`.
    ///
    /// Costs a copy of `self` and a logarithmic removal per interval of `other` that meets it.
    pub fn difference(&self, other: &RangeSet) -> RangeSet {
        let mut out = self.clone();
        if let (Some(first), Some(last)) = (self.first(), self.last()) {
            for (start, end) in other.overlapping(first, last) {
                out.remove_interval(start, end);
            }
        }
        out
    }

    /// Up to `limit` of the set's intervals that end at or after `from`, ascending: one page of
    /// a long set. The first may start before `from`; it is returned whole.
    pub fn page(&self, from: u64, limit: usize) -> RangeSet {
        let before = self
            .intervals
            .range(..from)
            .next_back()
            .filter(|&(_, &end)| end >= from);
        let page = before
            .into_iter()
            .chain(self.intervals.range(from..))
            .take(limit)
            .map(|(&s, &e)| (s, e));
        Self::from_canonical(page.collect())
    }

    /// Removes the `n` lowest values (all of them when the set has fewer) and returns them.
    ///
    /// This is how a worker claims a batch of tasks.
    pub fn take_first(&mut self, n: u64) -> RangeSet {
        let mut taken = Vec::new();
        let mut left = n;
        while left > 0 {
            let Some((start, end)) = self.intervals.pop_first() else {
                break;
            };
            let size = end - start + 1;
            if size <= left {
                taken.push((start, end));
                left -= size;
            } else {
                taken.push((start, start + left - 1));
                self.intervals.insert(start + left, end);
                left = 0;
            }
        }
        self.len -= n - left;
        Self::from_canonical(taken)
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
        for (i, (start, end)) in self.intervals().enumerate() {
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
