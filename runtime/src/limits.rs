//! The ceilings a worker host's operator puts on the limits jobs may ask for.
//!
//! A job's spec carries its own limits (memory, lifetime, tables, output caps, scratch space);
//! [`Ceilings`] are the most a worker host accepts for each, set with `wasmjob worker
//! --max-memory` and its siblings. Workers announce their ceilings to the queue, a submit that no
//! live worker could run is refused with the limits named ([`OverCeilings`]), and a worker never
//! claims a job above its own ceilings. A job is never run with limits quietly lowered.
//!
//! This module only decides whether a spec fits; enforcing the limits while a task runs is the
//! executor's work, and announcing ceilings is the storage backends'.

use crate::spec::{self, JobSpec};
use crate::units::{format_duration, format_size};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The most a worker host accepts for each limit of a job. The default accepts every valid spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ceilings {
    /// The most linear memory per attempt.
    pub memory: u64,
    /// The longest lifetime per attempt.
    #[serde(with = "crate::units::serde_duration")]
    pub lifetime: Duration,
    /// The most table elements per attempt.
    pub table_elements: u32,
    /// The largest result cap.
    pub result_cap: u64,
    /// The largest log cap.
    pub log_cap: u64,
    /// The most scratch bytes per attempt.
    pub scratch_bytes: u64,
    /// The most scratch files and directories per attempt.
    pub scratch_files: u32,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings {
            memory: spec::MAX_MEMORY_LIMIT,
            lifetime: spec::MAX_LIFETIME,
            table_elements: spec::MAX_TABLE_ELEMENTS,
            result_cap: spec::MAX_OUTPUT_CAP,
            log_cap: spec::MAX_OUTPUT_CAP,
            scratch_bytes: spec::MAX_SCRATCH_BYTES,
            scratch_files: spec::MAX_SCRATCH_FILES,
        }
    }
}

/// One capped limit: its name, the `wasmjob worker` option that raises its ceiling, and how a
/// value of it is shown.
type CappedLimit = (&'static str, &'static str, fn(u64) -> String);

/// The limits a worker's ceilings cap, in one fixed order.
const CAPPED: [CappedLimit; 7] = [
    ("memory", "--max-memory", format_size),
    ("lifetime", "--max-lifetime", show_millis),
    ("table elements", "--max-table-elements", show_count),
    ("result cap", "--max-result-cap", format_size),
    ("log cap", "--max-log-cap", format_size),
    ("scratch size", "--max-scratch", format_size),
    ("scratch files", "--max-scratch-files", show_count),
];

fn show_millis(ms: u64) -> String {
    format_duration(Duration::from_millis(ms))
}

fn show_count(n: u64) -> String {
    n.to_string()
}

/// The values of the capped limits (memory and sizes in bytes, lifetime in milliseconds), in
/// one fixed order: what a job asks for, or what a worker allows. The Redis backend stores a
/// job's and passes a worker's, so that its claim script compares them without the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CappedLimits(pub [u64; 7]);

impl From<&JobSpec> for CappedLimits {
    fn from(spec: &JobSpec) -> Self {
        CappedLimits([
            spec.memory_limit,
            spec.lifetime.as_millis() as u64,
            spec.table_elements.into(),
            spec.result_cap,
            spec.log_cap,
            spec.scratch_bytes,
            spec.scratch_files.into(),
        ])
    }
}

impl From<&Ceilings> for CappedLimits {
    fn from(ceilings: &Ceilings) -> Self {
        CappedLimits([
            ceilings.memory,
            ceilings.lifetime.as_millis() as u64,
            ceilings.table_elements.into(),
            ceilings.result_cap,
            ceilings.log_cap,
            ceilings.scratch_bytes,
            ceilings.scratch_files.into(),
        ])
    }
}

impl fmt::Display for CappedLimits {
    /// The values separated by spaces, as the Redis scripts read them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, value) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{value}")?;
        }
        Ok(())
    }
}

impl Ceilings {
    /// Whether a job with this spec may run under these ceilings; if not, every limit it asks
    /// too much of.
    pub fn check(&self, spec: &JobSpec) -> Result<(), OverCeilings> {
        let (asked, allowed) = (CappedLimits::from(spec), CappedLimits::from(self));
        let excesses: Vec<Excess> = CAPPED
            .iter()
            .zip(asked.0.into_iter().zip(allowed.0))
            .filter(|(_, (asked, ceiling))| asked > ceiling)
            .map(|(&(limit, flag, show), (asked, ceiling))| Excess {
                limit,
                flag,
                asked: show(asked),
                ceiling: show(ceiling),
            })
            .collect();
        if excesses.is_empty() {
            Ok(())
        } else {
            Err(OverCeilings { excesses })
        }
    }
}

/// One limit a job asks more of than a worker allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excess {
    /// The limit, in words (`memory`, `lifetime`, ...).
    pub limit: &'static str,
    /// The `wasmjob worker` option that raises the ceiling.
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
                 `wasmjob worker {} ...`)",
                excess.limit, excess.asked, excess.ceiling, excess.flag
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Digest, FileEntry, Manifest, ManifestPath};
    use crate::range::RangeSet;

    fn spec() -> JobSpec {
        let mut manifest = Manifest::new();
        let script = ManifestPath::new("task.wasm").unwrap();
        manifest
            .insert_file(
                script.clone(),
                FileEntry {
                    sha256: Digest::of(b"\0asm"),
                    size: 4,
                },
            )
            .unwrap();
        JobSpec::new("t", manifest, script, "1..=3".parse::<RangeSet>().unwrap())
    }

    #[test]
    fn the_default_ceilings_admit_every_valid_spec_at_its_maximum() {
        let mut s = spec();
        s.memory_limit = spec::MAX_MEMORY_LIMIT;
        s.lifetime = spec::MAX_LIFETIME;
        s.table_elements = spec::MAX_TABLE_ELEMENTS;
        s.scratch_bytes = spec::MAX_SCRATCH_BYTES;
        s.scratch_files = spec::MAX_SCRATCH_FILES;
        s.result_cap = spec::MAX_OUTPUT_CAP;
        s.log_cap = spec::MAX_OUTPUT_CAP;
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(Ceilings::default().check(&s), Ok(()));
    }

    #[test]
    fn every_limit_over_its_ceiling_is_named_with_the_option_that_raises_it() {
        let ceilings = Ceilings {
            memory: 64 << 20,
            lifetime: Duration::from_secs(60),
            ..Ceilings::default()
        };
        let mut s = spec();
        s.memory_limit = 64 << 20;
        s.lifetime = Duration::from_secs(60);
        assert_eq!(ceilings.check(&s), Ok(()), "limits equal to a ceiling fit");

        s.memory_limit = 128 << 20;
        s.lifetime = Duration::from_secs(120);
        let over = ceilings.check(&s).unwrap_err();
        let limits: Vec<_> = over.excesses.iter().map(|e| e.limit).collect();
        assert_eq!(limits, ["memory", "lifetime"]);
        let text = over.to_string();
        assert!(
            text.contains("memory 128 MiB is above the workers' ceiling of 64 MiB"),
            "{text}"
        );
        assert!(text.contains("--max-memory"), "{text}");
        assert!(text.contains("lifetime 2m is above"), "{text}");
    }
}
