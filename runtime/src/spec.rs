//! The job specification: what a submitter asks for.
//!
//! Owns [`JobSpec`] (module, files, task values and policy), its limits and defaults,
//! [`Priority`], and [`JobSpec::validate`], which reports every problem at once. It does not own
//! what happens to a job after submission (ids, state, progress: the storage backends) nor how
//! the limits are enforced (the executor and the worker).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, ManifestPath};
use crate::range::RangeSet;
use crate::units::{format_duration, format_size};

/// The lifetime of one attempt when none is given: 10 minutes.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The longest lifetime a job may ask for: 7 days.
pub const MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// How many times a task that ends in error is retried when not given: 3 (so 4 attempts).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// How many lost attempts quarantine a task unless the job says otherwise.
pub const DEFAULT_MAX_LOST: u32 = 3;
/// The linear-memory limit when none is given: 256 MiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 << 20;
/// The smallest memory limit: one wasm page, 64 KiB.
pub const MIN_MEMORY_LIMIT: u64 = 64 << 10;
/// The largest memory limit: 4 GiB, all a 32-bit memory can address.
pub const MAX_MEMORY_LIMIT: u64 = 4 << 30;
/// The result cap when none is given (from the guest contract): 1 MiB.
pub const DEFAULT_RESULT_CAP: u64 = wasmjob_host_api::DEFAULT_RESULT_CAP;
/// The log cap when none is given (from the guest contract): 64 KiB.
pub const DEFAULT_LOG_CAP: u64 = wasmjob_host_api::DEFAULT_LOG_CAP;
/// The largest result or log cap: 64 MiB. Results and logs are kept in the queue's memory.
pub const MAX_OUTPUT_CAP: u64 = 64 << 20;
/// The longest job name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The table-element limit when none is given: 10,000 (function pointers of a large program).
pub const DEFAULT_TABLE_ELEMENTS: u32 = 10_000;
/// The largest table-element limit: 10,000,000.
pub const MAX_TABLE_ELEMENTS: u32 = 10_000_000;
/// The scratch directory's size limit when none is given: 64 MiB.
pub const DEFAULT_SCRATCH_BYTES: u64 = 64 << 20;
/// The largest scratch size limit: 64 GiB.
pub const MAX_SCRATCH_BYTES: u64 = 64 << 30;
/// How many files and directories the scratch directory may hold when not given: 1,000.
pub const DEFAULT_SCRATCH_FILES: u32 = 1_000;
/// The largest scratch entry limit: 1,000,000.
pub const MAX_SCRATCH_FILES: u32 = 1_000_000;

/// A job: a WebAssembly module with the files it reads, the task values to run it on, and the
/// policy to run them by.
///
/// Its JSON form names the fields as here, with `lifetime` as text like `"10m"`; when reading
/// JSON, every field from `workdir` on may be left out and takes its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// A name for people; may be empty. The guest sees it in
    /// [`env::JOB_NAME`](wasmjob_host_api::env::JOB_NAME).
    pub name: String,
    /// The files the job reads, the module among them.
    pub manifest: Manifest,
    /// The module: a file of the manifest. The guest sees it as `argv[0]`.
    pub script: ManifestPath,
    /// The guest's working directory: a directory of the manifest, the root `.` by default.
    #[serde(default = "ManifestPath::root")]
    pub workdir: ManifestPath,
    /// Free-form key-value pairs, passed to the guest as
    /// [`env::META_PREFIX`](wasmjob_host_api::env::META_PREFIX)`key=value` variables.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The task values: one task per value.
    pub range: RangeSet,
    /// How urgent the job is relative to others; higher runs first.
    #[serde(default)]
    pub priority: Priority,
    /// How long one attempt of a task may run before it is stopped and counts as an error.
    #[serde(default = "default_lifetime", with = "crate::units::serde_duration")]
    pub lifetime: Duration,
    /// How many times a task that ends in error is tried again; a task gets at most
    /// `max_retries + 1` attempts. Fatal outcomes are never retried.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// How many attempts of one task may be lost (their lease expired: the worker died or went
    /// silent) before the task is quarantined rather than tried again. Lost attempts do not use
    /// up retries: a value that keeps killing workers is stopped by this cap instead.
    #[serde(default = "default_max_lost")]
    pub max_lost: u32,
    /// The most tasks of this job running at once across all workers; `None` is unlimited.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// The most linear memory one attempt may use, in bytes.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: u64,
    /// The most bytes of stdout (the result) one attempt may write.
    #[serde(default = "default_result_cap")]
    pub result_cap: u64,
    /// How many bytes of stderr (the log) are kept, from its end.
    #[serde(default = "default_log_cap")]
    pub log_cap: u64,
    /// The most elements the guest's tables may hold (function references, mostly).
    #[serde(default = "default_table_elements")]
    pub table_elements: u32,
    /// The most bytes the attempt may write into its scratch directory.
    #[serde(default = "default_scratch_bytes")]
    pub scratch_bytes: u64,
    /// The most files and directories the attempt may create in its scratch directory.
    #[serde(default = "default_scratch_files")]
    pub scratch_files: u32,
    /// How long the submitter has to upload the job's files: a job still missing some after
    /// this is removed, with what arrived of them (its submitter died or gave up).
    #[serde(
        default = "default_upload_timeout",
        with = "crate::units::serde_duration"
    )]
    pub upload_timeout: Duration,
}

/// How long a submitter has to upload a job's files when it says nothing else: 1 hour.
pub const DEFAULT_UPLOAD_TIMEOUT: Duration = Duration::from_secs(60 * 60);

fn default_upload_timeout() -> Duration {
    DEFAULT_UPLOAD_TIMEOUT
}

fn default_lifetime() -> Duration {
    DEFAULT_LIFETIME
}

fn default_max_lost() -> u32 {
    DEFAULT_MAX_LOST
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

fn default_memory_limit() -> u64 {
    DEFAULT_MEMORY_LIMIT
}

fn default_result_cap() -> u64 {
    DEFAULT_RESULT_CAP
}

fn default_log_cap() -> u64 {
    DEFAULT_LOG_CAP
}

fn default_table_elements() -> u32 {
    DEFAULT_TABLE_ELEMENTS
}

fn default_scratch_bytes() -> u64 {
    DEFAULT_SCRATCH_BYTES
}

fn default_scratch_files() -> u32 {
    DEFAULT_SCRATCH_FILES
}

impl JobSpec {
    /// A spec running `script` of `manifest` on every value of `range`, with every policy field
    /// at its default.
    pub fn new(
        name: impl Into<String>,
        manifest: Manifest,
        script: ManifestPath,
        range: RangeSet,
    ) -> Self {
        Self {
            name: name.into(),
            manifest,
            script,
            workdir: ManifestPath::root(),
            metadata: BTreeMap::new(),
            range,
            priority: Priority::DEFAULT,
            lifetime: DEFAULT_LIFETIME,
            max_retries: DEFAULT_MAX_RETRIES,
            max_lost: DEFAULT_MAX_LOST,
            max_concurrency: None,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            result_cap: DEFAULT_RESULT_CAP,
            log_cap: DEFAULT_LOG_CAP,
            table_elements: DEFAULT_TABLE_ELEMENTS,
            scratch_bytes: DEFAULT_SCRATCH_BYTES,
            scratch_files: DEFAULT_SCRATCH_FILES,
            upload_timeout: DEFAULT_UPLOAD_TIMEOUT,
        }
    }

    /// Checks the spec, reporting every problem found, not just the first.
    pub fn validate(&self) -> Result<(), SpecError> {
        use SpecProblem as P;
        let mut problems = Vec::new();

        let chars = self.name.chars().count();
        if chars > MAX_NAME_CHARS {
            problems.push(P::NameTooLong { chars });
        }
        if self.name.chars().any(char::is_control) {
            problems.push(P::NameHasControlCharacter);
        }
        if self.range.is_empty() {
            problems.push(P::EmptyRange);
        }
        if self.manifest.file(&self.script).is_none() {
            problems.push(P::ScriptNotInManifest {
                script: self.script.clone(),
            });
        }
        if !self.manifest.is_dir(&self.workdir) {
            problems.push(P::WorkdirNotInManifest {
                workdir: self.workdir.clone(),
            });
        }
        for (key, value) in &self.metadata {
            if !is_metadata_key(key) {
                problems.push(P::InvalidMetadataKey { key: key.clone() });
            }
            // Metadata become environment variables, which cannot hold NUL.
            if value.contains('\0') {
                problems.push(P::MetadataValueHasNul { key: key.clone() });
            }
        }
        if self.lifetime.is_zero() || self.lifetime > MAX_LIFETIME {
            problems.push(P::LifetimeOutOfRange {
                lifetime: self.lifetime,
            });
        }
        if self.upload_timeout.is_zero() || self.upload_timeout > MAX_LIFETIME {
            problems.push(P::UploadTimeoutOutOfRange {
                timeout: self.upload_timeout,
            });
        }
        if self.max_concurrency == Some(0) {
            problems.push(P::ZeroMaxConcurrency);
        }
        if self.max_lost == 0 {
            problems.push(P::ZeroMaxLost);
        }
        if !(MIN_MEMORY_LIMIT..=MAX_MEMORY_LIMIT).contains(&self.memory_limit) {
            problems.push(P::MemoryLimitOutOfRange {
                bytes: self.memory_limit,
            });
        }
        if !(1..=MAX_OUTPUT_CAP).contains(&self.result_cap) {
            problems.push(P::ResultCapOutOfRange {
                bytes: self.result_cap,
            });
        }
        if !(1..=MAX_OUTPUT_CAP).contains(&self.log_cap) {
            problems.push(P::LogCapOutOfRange {
                bytes: self.log_cap,
            });
        }
        if !(1..=MAX_TABLE_ELEMENTS).contains(&self.table_elements) {
            problems.push(P::TableElementsOutOfRange {
                elements: self.table_elements,
            });
        }
        if self.scratch_bytes > MAX_SCRATCH_BYTES {
            problems.push(P::ScratchBytesOutOfRange {
                bytes: self.scratch_bytes,
            });
        }
        if self.scratch_files > MAX_SCRATCH_FILES {
            problems.push(P::ScratchFilesOutOfRange {
                files: self.scratch_files,
            });
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(SpecError { problems })
        }
    }
}

/// Whether `key` matches `[A-Za-z_][A-Za-z0-9_]*`, so that it makes a portable environment
/// variable name.
fn is_metadata_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One thing wrong with a [`JobSpec`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecProblem {
    /// The name is longer than [`MAX_NAME_CHARS`].
    #[error("the name is {chars} characters long; at most {MAX_NAME_CHARS} are allowed")]
    NameTooLong {
        /// The name's length in characters.
        chars: usize,
    },
    /// The name contains a control character (a newline, a tab, ...).
    #[error("the name contains a control character")]
    NameHasControlCharacter,
    /// The range has no value, so the job would have no task.
    #[error("the range is empty: give at least one task value, e.g. 0..10")]
    EmptyRange,
    /// The script is not a file of the manifest.
    #[error("the script {script:?} is not a file of the manifest")]
    ScriptNotInManifest {
        /// The script's path.
        script: ManifestPath,
    },
    /// The working directory is not a directory of the manifest.
    #[error("the working directory {workdir:?} is not a directory of the manifest")]
    WorkdirNotInManifest {
        /// The working directory's path.
        workdir: ManifestPath,
    },
    /// A metadata key that is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error(
        "metadata key {key:?} is invalid: use letters, digits and _, not starting with a digit"
    )]
    InvalidMetadataKey {
        /// The key.
        key: String,
    },
    /// A metadata value containing a NUL character.
    #[error("metadata value of {key:?} contains a NUL character")]
    MetadataValueHasNul {
        /// The value's key.
        key: String,
    },
    /// The lifetime is zero or above [`MAX_LIFETIME`].
    #[error("the lifetime {} is out of range: it must be above 0s and at most 7days", format_duration(*lifetime))]
    LifetimeOutOfRange {
        /// The lifetime.
        lifetime: Duration,
    },
    /// The upload timeout is zero or above [`MAX_LIFETIME`].
    #[error("the upload timeout {} is out of range: it must be above 0s and at most 7days", format_duration(*timeout))]
    UploadTimeoutOutOfRange {
        /// The upload timeout.
        timeout: Duration,
    },
    /// The max concurrency is `Some(0)`, which would never run a task.
    #[error("the max concurrency is 0: at least 1 is needed (or none, for unlimited)")]
    ZeroMaxConcurrency,
    /// The max lost is 0, which would quarantine a task before its first attempt could be lost.
    #[error("the max lost is 0: at least 1 is needed")]
    ZeroMaxLost,
    /// The memory limit is outside [`MIN_MEMORY_LIMIT`]..=[`MAX_MEMORY_LIMIT`].
    #[error("the memory limit {} is out of range: it must be from 64 KiB to 4 GiB", format_size(*bytes))]
    MemoryLimitOutOfRange {
        /// The memory limit in bytes.
        bytes: u64,
    },
    /// The result cap is zero or above [`MAX_OUTPUT_CAP`].
    #[error("the result cap {} is out of range: it must be from 1 B to 64 MiB", format_size(*bytes))]
    ResultCapOutOfRange {
        /// The cap in bytes.
        bytes: u64,
    },
    /// The log cap is zero or above [`MAX_OUTPUT_CAP`].
    #[error("the log cap {} is out of range: it must be from 1 B to 64 MiB", format_size(*bytes))]
    LogCapOutOfRange {
        /// The cap in bytes.
        bytes: u64,
    },
    /// The table-element limit is zero or above [`MAX_TABLE_ELEMENTS`].
    #[error("the table-element limit {elements} is out of range: it must be from 1 to 10000000")]
    TableElementsOutOfRange {
        /// The limit.
        elements: u32,
    },
    /// The scratch size limit is above [`MAX_SCRATCH_BYTES`].
    #[error("the scratch size limit {} is out of range: it must be at most 64 GiB", format_size(*bytes))]
    ScratchBytesOutOfRange {
        /// The limit in bytes.
        bytes: u64,
    },
    /// The scratch entry limit is above [`MAX_SCRATCH_FILES`].
    #[error("the scratch file limit {files} is out of range: it must be at most 1000000")]
    ScratchFilesOutOfRange {
        /// The limit.
        files: u32,
    },
}

/// Everything wrong with a [`JobSpec`]; never empty. Displayed one problem per line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpecError {
    /// The problems, in the order of the spec's fields.
    pub problems: Vec<SpecProblem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid job spec:")?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// How urgent a job is: 0 to 255, higher runs first (so `Ord` puts the most urgent last).
///
/// Text form: a number, or one of the names `lowest` (0), `background` (64), `default` (128),
/// `high` (192), `maximum` (255), in any case. Display uses the name when there is one. Serde uses
/// the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub u8);

impl Priority {
    /// 0: runs only when nothing else waits.
    pub const LOWEST: Priority = Priority(0);
    /// 64: below the default.
    pub const BACKGROUND: Priority = Priority(64);
    /// 128: the default.
    pub const DEFAULT: Priority = Priority(128);
    /// 192: above the default.
    pub const HIGH: Priority = Priority(192);
    /// 255: runs before everything else.
    pub const MAXIMUM: Priority = Priority(255);

    const NAMES: [(&'static str, Priority); 5] = [
        ("lowest", Self::LOWEST),
        ("background", Self::BACKGROUND),
        ("default", Self::DEFAULT),
        ("high", Self::HIGH),
        ("maximum", Self::MAXIMUM),
    ];

    /// The priority's name, when it has one.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|&&(_, p)| p == self)
            .map(|&(name, _)| name)
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A priority that did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid priority {input:?}: expected a number from 0 to 255 or one of lowest, background, \
     default, high, maximum"
)]
#[non_exhaustive]
pub struct PriorityError {
    /// The input.
    pub input: String,
}

impl FromStr for Priority {
    type Err = PriorityError;

    fn from_str(input: &str) -> Result<Self, PriorityError> {
        let text = input.trim();
        if let Some(&(_, p)) = Self::NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
        {
            return Ok(p);
        }
        if !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = text.parse()
        {
            return Ok(Priority(n));
        }
        Err(PriorityError {
            input: input.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Digest, FileEntry};

    fn path(p: &str) -> ManifestPath {
        ManifestPath::new(p).unwrap()
    }

    fn spec() -> JobSpec {
        let mut manifest = Manifest::new();
        let entry = FileEntry {
            sha256: Digest::of(b"abc"),
            size: 3,
        };
        manifest.insert_file(path("task.wasm"), entry).unwrap();
        manifest.insert_file(path("data/words.txt"), entry).unwrap();
        JobSpec::new(
            "count words",
            manifest,
            path("task.wasm"),
            "0..10".parse().unwrap(),
        )
    }

    fn problems(spec: &JobSpec) -> Vec<SpecProblem> {
        spec.validate()
            .map(|()| Vec::new())
            .unwrap_or_else(|e| e.problems)
    }

    #[test]
    fn the_default_spec_is_valid() {
        let s = spec();
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.workdir, ManifestPath::root());
        assert_eq!(s.priority, Priority::DEFAULT);
        assert_eq!(s.lifetime, Duration::from_secs(600));
        assert_eq!((s.result_cap, s.log_cap), (1 << 20, 64 << 10));
    }

    #[test]
    fn each_problem_is_reported() {
        type Edit = fn(&mut JobSpec);
        let cases: Vec<(Edit, SpecProblem)> = vec![
            (
                |s| s.name = "x".repeat(201),
                SpecProblem::NameTooLong { chars: 201 },
            ),
            (
                |s| s.name = "two\nlines".into(),
                SpecProblem::NameHasControlCharacter,
            ),
            (|s| s.range = RangeSet::new(), SpecProblem::EmptyRange),
            (
                |s| s.script = path("missing.wasm"),
                SpecProblem::ScriptNotInManifest {
                    script: path("missing.wasm"),
                },
            ),
            (
                |s| s.script = path("data"),
                SpecProblem::ScriptNotInManifest {
                    script: path("data"),
                },
            ),
            (
                |s| s.workdir = path("task.wasm"),
                SpecProblem::WorkdirNotInManifest {
                    workdir: path("task.wasm"),
                },
            ),
            (
                |s| s.workdir = path("nowhere"),
                SpecProblem::WorkdirNotInManifest {
                    workdir: path("nowhere"),
                },
            ),
            (
                |s| {
                    s.metadata.insert("1abc".into(), "v".into());
                },
                SpecProblem::InvalidMetadataKey { key: "1abc".into() },
            ),
            (
                |s| {
                    s.metadata.insert("".into(), "v".into());
                },
                SpecProblem::InvalidMetadataKey { key: "".into() },
            ),
            (
                |s| {
                    s.metadata.insert("a-b".into(), "v".into());
                },
                SpecProblem::InvalidMetadataKey { key: "a-b".into() },
            ),
            (
                |s| {
                    s.metadata.insert("k".into(), "a\0b".into());
                },
                SpecProblem::MetadataValueHasNul { key: "k".into() },
            ),
            (
                |s| s.lifetime = Duration::ZERO,
                SpecProblem::LifetimeOutOfRange {
                    lifetime: Duration::ZERO,
                },
            ),
            (
                |s| s.lifetime = MAX_LIFETIME + Duration::from_secs(1),
                SpecProblem::LifetimeOutOfRange {
                    lifetime: MAX_LIFETIME + Duration::from_secs(1),
                },
            ),
            (
                |s| s.max_concurrency = Some(0),
                SpecProblem::ZeroMaxConcurrency,
            ),
            (
                |s| s.memory_limit = MIN_MEMORY_LIMIT - 1,
                SpecProblem::MemoryLimitOutOfRange {
                    bytes: MIN_MEMORY_LIMIT - 1,
                },
            ),
            (
                |s| s.memory_limit = MAX_MEMORY_LIMIT + 1,
                SpecProblem::MemoryLimitOutOfRange {
                    bytes: MAX_MEMORY_LIMIT + 1,
                },
            ),
            (
                |s| s.result_cap = 0,
                SpecProblem::ResultCapOutOfRange { bytes: 0 },
            ),
            (
                |s| s.result_cap = MAX_OUTPUT_CAP + 1,
                SpecProblem::ResultCapOutOfRange {
                    bytes: MAX_OUTPUT_CAP + 1,
                },
            ),
            (
                |s| s.log_cap = 0,
                SpecProblem::LogCapOutOfRange { bytes: 0 },
            ),
            (
                |s| s.log_cap = MAX_OUTPUT_CAP + 1,
                SpecProblem::LogCapOutOfRange {
                    bytes: MAX_OUTPUT_CAP + 1,
                },
            ),
            (
                |s| s.table_elements = 0,
                SpecProblem::TableElementsOutOfRange { elements: 0 },
            ),
            (
                |s| s.scratch_bytes = MAX_SCRATCH_BYTES + 1,
                SpecProblem::ScratchBytesOutOfRange {
                    bytes: MAX_SCRATCH_BYTES + 1,
                },
            ),
            (
                |s| s.scratch_files = MAX_SCRATCH_FILES + 1,
                SpecProblem::ScratchFilesOutOfRange {
                    files: MAX_SCRATCH_FILES + 1,
                },
            ),
        ];
        for (edit, expected) in cases {
            let mut s = spec();
            edit(&mut s);
            assert_eq!(problems(&s), [expected]);
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let mut s = spec();
        s.name = "é".repeat(MAX_NAME_CHARS);
        s.metadata
            .insert("_Ok_9".into(), "any value, even\nnewlines".into());
        s.workdir = path("data");
        s.lifetime = MAX_LIFETIME;
        s.max_concurrency = Some(1);
        s.memory_limit = MIN_MEMORY_LIMIT;
        s.result_cap = MAX_OUTPUT_CAP;
        s.log_cap = 1;
        s.table_elements = MAX_TABLE_ELEMENTS;
        s.scratch_bytes = 0;
        s.scratch_files = MAX_SCRATCH_FILES;
        assert_eq!(s.validate(), Ok(()));
        s.memory_limit = MAX_MEMORY_LIMIT;
        s.lifetime = Duration::from_nanos(1);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn several_problems_are_reported_together() {
        let mut s = spec();
        s.range = RangeSet::new();
        s.script = path("nope.wasm");
        s.lifetime = Duration::ZERO;
        s.log_cap = 0;
        let err = s.validate().unwrap_err();
        assert_eq!(
            err.problems,
            [
                SpecProblem::EmptyRange,
                SpecProblem::ScriptNotInManifest {
                    script: path("nope.wasm")
                },
                SpecProblem::LifetimeOutOfRange {
                    lifetime: Duration::ZERO
                },
                SpecProblem::LogCapOutOfRange { bytes: 0 },
            ]
        );
        assert_eq!(
            err.to_string(),
            "invalid job spec:\n\
             \x20 - the range is empty: give at least one task value, e.g. 0..10\n\
             \x20 - the script \"nope.wasm\" is not a file of the manifest\n\
             \x20 - the lifetime 0s is out of range: it must be above 0s and at most 7days\n\
             \x20 - the log cap 0 B is out of range: it must be from 1 B to 64 MiB"
        );
    }

    #[test]
    fn priorities_parse_and_display() {
        let cases = [
            ("0", Priority(0)),
            ("255", Priority(255)),
            ("17", Priority(17)),
            (" 17 ", Priority(17)),
            ("lowest", Priority::LOWEST),
            ("Background", Priority::BACKGROUND),
            ("DEFAULT", Priority::DEFAULT),
            ("high", Priority::HIGH),
            ("maximum", Priority::MAXIMUM),
            ("128", Priority::DEFAULT),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse(), Ok(expected), "{input:?}");
        }
        for bad in ["", "256", "-1", "+5", "urgent", "1.5"] {
            assert_eq!(
                bad.parse::<Priority>(),
                Err(PriorityError { input: bad.into() })
            );
        }
        assert_eq!(
            "urgent".parse::<Priority>().unwrap_err().to_string(),
            "invalid priority \"urgent\": expected a number from 0 to 255 or one of lowest, \
             background, default, high, maximum"
        );

        assert_eq!(Priority(192).to_string(), "high");
        assert_eq!(Priority(100).to_string(), "100");
        for n in 0..=255 {
            let p = Priority(n);
            assert_eq!(p.to_string().parse(), Ok(p));
        }
        assert!(Priority::HIGH > Priority::DEFAULT && Priority::DEFAULT > Priority::LOWEST);
        assert_eq!(Priority::default(), Priority::DEFAULT);
        assert_eq!(serde_json::to_string(&Priority::HIGH).unwrap(), "192");
        assert_eq!(
            serde_json::from_str::<Priority>("64").unwrap(),
            Priority::BACKGROUND
        );
    }

    #[test]
    fn json_round_trip() {
        let mut s = spec();
        s.metadata.insert("lang".into(), "en".into());
        s.workdir = path("data");
        s.priority = Priority::HIGH;
        s.lifetime = Duration::from_secs(90);
        s.max_concurrency = Some(8);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["lifetime"], "1m30s");
        assert_eq!(json["range"], "0..=9");
        assert_eq!(json["priority"], 192);
        assert_eq!(json["max_concurrency"], 8);
        assert_eq!(serde_json::from_value::<JobSpec>(json).unwrap(), s);
    }

    #[test]
    fn json_defaults_fill_missing_policy_fields() {
        let json = serde_json::json!({
            "name": "count words",
            "manifest": serde_json::to_value(&spec().manifest).unwrap(),
            "script": "task.wasm",
            "range": "0..10",
        });
        assert_eq!(serde_json::from_value::<JobSpec>(json).unwrap(), spec());
    }
}
