//! The limits of one attempt: what a job asks for, and the ceilings a worker host accepts.
//!
//! Both are one type, [`Limits`]: a job's spec carries its own (flattened into its JSON), and a
//! worker host's operator sets ceilings of the same type with `wasmjob worker --max-memory` and
//! its siblings. Every limit is described once, in [`LIMITS`]: its name in messages, its
//! command-line options, its unit and its lowest value, so that validation, the ceilings check,
//! the options of `run`, `submit` and `worker` and the values the Redis claim script compares
//! all follow one table. Adding a limit is a field here, its row, and its enforcement.
//!
//! Workers announce their ceilings to the queue; a submit that no live worker could run is
//! refused with the limits named ([`OverCeilings`]), and a worker never claims a job above its
//! own ceilings. A job is never run with limits quietly lowered.
//!
//! This module only says what the limits are and whether they fit; enforcing them while a task
//! runs is the executor's work, and announcing ceilings is the storage backends'.

use crate::units::{format_duration, format_size, parse_duration, parse_size};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The limits of one attempt of a task. As a job's, [`Limits::DEFAULT`] unless it says
/// otherwise; as a worker's ceilings, [`Limits::MAX`] unless its operator says otherwise.
///
/// Its JSON form is the one a job spec has always had: `memory_limit`, `lifetime` (as text like
/// `"10m"`), `table_elements`, `result_cap`, `log_cap`, `scratch_bytes`, `scratch_files`; a
/// field left out takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// The most linear memory the guest may have, in bytes.
    #[serde(rename = "memory_limit")]
    pub memory: u64,
    /// How long the attempt may run, start-up included, before it is stopped as an error.
    #[serde(with = "crate::units::serde_duration")]
    pub lifetime: Duration,
    /// The most elements the guest's tables may hold (function references, mostly).
    pub table_elements: u32,
    /// The most bytes the guest may write to stdout (its result).
    pub result_cap: u64,
    /// How many bytes of the end of stderr (the log) are kept.
    pub log_cap: u64,
    /// The most bytes the guest may write into its scratch directory.
    pub scratch_bytes: u64,
    /// The most files and directories the guest may create in its scratch directory.
    pub scratch_files: u32,
}

impl Limits {
    /// A job's limits when it says nothing: 256 MiB of memory, a 10-minute lifetime, 10,000
    /// table elements, the guest contract's result and log caps (1 MiB, 64 KiB), 64 MiB and
    /// 1,000 entries of scratch space.
    pub const DEFAULT: Limits = Limits {
        memory: 256 << 20,
        lifetime: Duration::from_secs(10 * 60),
        table_elements: 10_000,
        result_cap: wasmjob_host_api::DEFAULT_RESULT_CAP,
        log_cap: wasmjob_host_api::DEFAULT_LOG_CAP,
        scratch_bytes: 64 << 20,
        scratch_files: 1_000,
    };

    /// The most a job may ask for, and the ceilings of a worker whose operator set none: 4 GiB
    /// of memory (all a 32-bit memory can address), 7 days, 10,000,000 table elements, 64 MiB
    /// result and log caps (they are kept in the queue's memory), 64 GiB and 1,000,000 entries
    /// of scratch space.
    pub const MAX: Limits = Limits {
        memory: 4 << 30,
        lifetime: Duration::from_secs(7 * 24 * 60 * 60),
        table_elements: 10_000_000,
        result_cap: 64 << 20,
        log_cap: 64 << 20,
        scratch_bytes: 64 << 30,
        scratch_files: 1_000_000,
    };

    /// The limits out of their range, each with its value; empty when all are valid.
    pub fn out_of_range(&self) -> Vec<LimitOutOfRange> {
        LIMITS
            .iter()
            .filter_map(|limit| {
                let value = (limit.get)(self);
                let allowed = limit.min..=(limit.get)(&Limits::MAX);
                (!allowed.contains(&value)).then_some(LimitOutOfRange { limit, value })
            })
            .collect()
    }

    /// Whether an attempt with these limits may run under `ceilings`; if not, every limit that
    /// asks too much.
    pub fn within(&self, ceilings: &Limits) -> Result<(), OverCeilings> {
        let excesses: Vec<Excess> = LIMITS
            .iter()
            .filter_map(|limit| {
                let (asked, ceiling) = ((limit.get)(self), (limit.get)(ceilings));
                (asked > ceiling).then(|| Excess {
                    limit: limit.name,
                    flag: limit.ceiling_flag,
                    asked: limit.show(asked),
                    ceiling: limit.show(ceiling),
                })
            })
            .collect();
        if excesses.is_empty() {
            Ok(())
        } else {
            Err(OverCeilings { excesses })
        }
    }

    /// The values in [`LIMITS`]' order, separated by spaces (sizes in bytes, the lifetime in
    /// milliseconds): how the Redis backend stores a job's limits and passes a worker's
    /// ceilings, so that its claim script compares them without reading the spec.
    pub fn to_counts(&self) -> String {
        let values: Vec<String> = LIMITS
            .iter()
            .map(|limit| (limit.get)(self).to_string())
            .collect();
        values.join(" ")
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// How a limit's values are written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A size in bytes, written like `64 MiB`.
    Bytes,
    /// A duration in milliseconds (rounded up), written like `10m`.
    Millis,
    /// A plain count.
    Count,
}

/// One limit, described once: the row of [`LIMITS`] that every use of the limit reads.
pub struct Limit {
    /// The limit in the words of the ceiling messages: `memory`, `lifetime`, ...
    pub name: &'static str,
    /// The limit in the words of the spec's validation: `memory limit`, `lifetime`, ...
    pub noun: &'static str,
    /// The option of `run` and `submit` that sets it: `--memory`.
    pub flag: &'static str,
    /// The option of `wasmjob worker` that sets its ceiling: `--max-memory`.
    pub ceiling_flag: &'static str,
    /// What the option of `run` and `submit` does, for `--help`.
    pub help: &'static str,
    /// What the ceiling option of `wasmjob worker` does, for `--help`.
    pub ceiling_help: &'static str,
    /// How its values are written.
    pub unit: Unit,
    /// Its lowest valid value; the highest is its value in [`Limits::MAX`].
    pub min: u64,
    /// Its value in a [`Limits`], in its unit.
    pub get: fn(&Limits) -> u64,
    /// Sets its value in a [`Limits`], from its unit.
    pub set: fn(&mut Limits, u64),
}

impl Limit {
    /// A value of this limit as people read it: `64 MiB`, `10m`, `1000`.
    pub fn show(&self, value: u64) -> String {
        match self.unit {
            Unit::Bytes => format_size(value),
            Unit::Millis => format_duration(Duration::from_millis(value)),
            Unit::Count => value.to_string(),
        }
    }

    /// The valid values, in words: `from 64 KiB to 4 GiB`, `at most 64 GiB`.
    fn range(&self) -> String {
        let max = self.show((self.get)(&Limits::MAX));
        match (self.unit, self.min) {
            (_, 0) => format!("at most {max}"),
            (Unit::Millis, _) => format!("above 0s and at most {max}"),
            (_, min) => format!("from {} to {max}", self.show(min)),
        }
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for Limit {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Limit {}

impl Unit {
    /// Reads a value as a person writes it: `64MiB`, `5m`, `1000`.
    pub fn parse(self, text: &str) -> Result<u64, String> {
        match self {
            Unit::Bytes => parse_size(text).map_err(|e| e.to_string()),
            Unit::Millis => parse_duration(text).map(millis).map_err(|e| e.to_string()),
            Unit::Count => text
                .trim()
                .parse::<u32>()
                .map(u64::from)
                .map_err(|_| format!("{text:?} is not a count from 0 to {}", u32::MAX)),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    // Rounded up, so that a lifetime of a fraction of a millisecond is not taken for zero.
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

fn count(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Every limit, in the order the Redis backend stores them (so a new one goes last).
pub static LIMITS: [Limit; 7] = [
    Limit {
        name: "memory",
        noun: "memory limit",
        flag: "memory",
        ceiling_flag: "max-memory",
        help: "The most linear memory one attempt may use: `64MiB`, `1GiB`",
        ceiling_help: "The most linear memory a job may give one attempt",
        unit: Unit::Bytes,
        min: 64 << 10,
        get: |l| l.memory,
        set: |l, v| l.memory = v,
    },
    Limit {
        name: "lifetime",
        noun: "lifetime",
        flag: "lifetime",
        ceiling_flag: "max-lifetime",
        help: "How long one attempt may run: `30s`, `5m`",
        ceiling_help: "The longest lifetime a job may give one attempt",
        unit: Unit::Millis,
        min: 1,
        get: |l| millis(l.lifetime),
        set: |l, v| l.lifetime = Duration::from_millis(v),
    },
    Limit {
        name: "table elements",
        noun: "table-element limit",
        flag: "table-elements",
        ceiling_flag: "max-table-elements",
        help: "The most elements the guest's tables may hold",
        ceiling_help: "The most table elements a job may allow",
        unit: Unit::Count,
        min: 1,
        get: |l| l.table_elements.into(),
        set: |l, v| l.table_elements = count(v),
    },
    Limit {
        name: "result cap",
        noun: "result cap",
        flag: "result-cap",
        ceiling_flag: "max-result-cap",
        help: "The most bytes one attempt may write to stdout (its result)",
        ceiling_help: "The largest result cap a job may set",
        unit: Unit::Bytes,
        min: 1,
        get: |l| l.result_cap,
        set: |l, v| l.result_cap = v,
    },
    Limit {
        name: "log cap",
        noun: "log cap",
        flag: "log-cap",
        ceiling_flag: "max-log-cap",
        help: "How much of the end of stderr (the log) is kept",
        ceiling_help: "The largest log cap a job may set",
        unit: Unit::Bytes,
        min: 1,
        get: |l| l.log_cap,
        set: |l, v| l.log_cap = v,
    },
    Limit {
        name: "scratch size",
        noun: "scratch size limit",
        flag: "scratch",
        ceiling_flag: "max-scratch",
        help: "The most bytes one attempt may write into its scratch directory",
        ceiling_help: "The most scratch space a job may give one attempt",
        unit: Unit::Bytes,
        min: 0,
        get: |l| l.scratch_bytes,
        set: |l, v| l.scratch_bytes = v,
    },
    Limit {
        name: "scratch files",
        noun: "scratch file limit",
        flag: "scratch-files",
        ceiling_flag: "max-scratch-files",
        help: "The most files and directories one attempt may create in its scratch directory",
        ceiling_help: "The most scratch files a job may give one attempt",
        unit: Unit::Count,
        min: 0,
        get: |l| l.scratch_files.into(),
        set: |l, v| l.scratch_files = count(v),
    },
];

/// A limit whose value is outside its valid range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct LimitOutOfRange {
    /// The limit.
    pub limit: &'static Limit,
    /// Its value, in its unit.
    pub value: u64,
}

impl fmt::Display for LimitOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = self.limit;
        write!(
            f,
            "the {} {} is out of range: it must be {}",
            limit.noun,
            limit.show(self.value),
            limit.range()
        )
    }
}

/// One limit a job asks more of than a worker allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excess {
    /// The limit, in words (`memory`, `lifetime`, ...).
    pub limit: &'static str,
    /// The `wasmjob worker` option that raises the ceiling, without its dashes.
    pub flag: &'static str,
    /// What the job asks for, formatted.
    pub asked: String,
    /// The ceiling, formatted.
    pub ceiling: String,
}

/// The limits a job asks more of than a worker's ceilings allow; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct OverCeilings {
    /// Each limit over its ceiling.
    pub excesses: Vec<Excess>,
}

impl fmt::Display for OverCeilings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, excess) in self.excesses.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{} {} is above the workers' ceiling of {} (lower it, or start workers with \
                 `wasmjob worker --{} ...`)",
                excess.limit, excess.asked, excess.ceiling, excess.flag
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
