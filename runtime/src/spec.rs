//! The job specification: what a submitter asks for.
//!
//! Owns [`JobSpec`] (module, files, task values and policy) and its defaults, [`Priority`], and
//! [`JobSpec::validate`], which reports every problem at once. It does not own what the limits
//! of an attempt are ([`crate::limits`]), what happens to a job after submission (ids, state,
//! progress: the storage backends) nor how the limits are enforced (the executor and the
//! worker).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{LimitOutOfRange, Limits};
use crate::manifest::{Manifest, ManifestPath};
use crate::range::RangeSet;
use crate::units::format_duration;

/// How many times a task that ends in error is retried when not given: 3 (so 4 attempts).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// How many lost attempts quarantine a task unless the job says otherwise.
pub const DEFAULT_MAX_LOST: u32 = 3;
/// The longest job name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

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
    /// The limits of each attempt: memory, lifetime, tables, output caps, scratch space. Its
    /// fields sit in the spec's JSON beside the others, as they always have.
    #[serde(flatten)]
    pub limits: Limits,
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

fn default_max_lost() -> u32 {
    DEFAULT_MAX_LOST
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
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
            max_retries: DEFAULT_MAX_RETRIES,
            max_lost: DEFAULT_MAX_LOST,
            max_concurrency: None,
            limits: Limits::DEFAULT,
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
        if self.upload_timeout.is_zero() || self.upload_timeout > Limits::MAX.lifetime {
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
        problems.extend(self.limits.out_of_range().into_iter().map(P::Limit));

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
    /// The upload timeout is zero or above the longest lifetime, 7 days.
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
    /// A limit of each attempt is outside its range.
    #[error(transparent)]
    Limit(LimitOutOfRange),
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
    use crate::limits::LIMITS;
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
        assert_eq!(s.limits.lifetime, Duration::from_secs(600));
        assert_eq!((s.limits.result_cap, s.limits.log_cap), (1 << 20, 64 << 10));
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
                |s| s.max_concurrency = Some(0),
                SpecProblem::ZeroMaxConcurrency,
            ),
        ];
        for (edit, expected) in cases {
            let mut s = spec();
            edit(&mut s);
            assert_eq!(problems(&s), [expected]);
        }
    }

    #[test]
    fn every_limit_out_of_range_is_named_with_its_range() {
        let cases = [
            (
                "memory",
                (64 << 10) - 1,
                "the memory limit 63.99 KiB is out of range: it must be from 64 KiB to 4 GiB",
            ),
            (
                "memory",
                (4 << 30) + 1,
                "the memory limit 4 GiB is out of range: it must be from 64 KiB to 4 GiB",
            ),
            (
                "lifetime",
                0,
                "the lifetime 0s is out of range: it must be above 0s and at most 7days",
            ),
            (
                "lifetime",
                7 * 24 * 3600 * 1000 + 1,
                "the lifetime 7days1ms is out of range: it must be above 0s and at most 7days",
            ),
            (
                "table elements",
                0,
                "the table-element limit 0 is out of range: it must be from 1 to 10000000",
            ),
            (
                "result cap",
                0,
                "the result cap 0 B is out of range: it must be from 1 B to 64 MiB",
            ),
            (
                "log cap",
                (64 << 20) + 1,
                "the log cap 64 MiB is out of range: it must be from 1 B to 64 MiB",
            ),
            (
                "scratch size",
                (64 << 30) + 1,
                "the scratch size limit 64 GiB is out of range: it must be at most 64 GiB",
            ),
            (
                "scratch files",
                1_000_001,
                "the scratch file limit 1000001 is out of range: it must be at most 1000000",
            ),
        ];
        for (name, value, message) in cases {
            let limit = LIMITS.iter().find(|l| l.name == name).unwrap();
            let mut s = spec();
            (limit.set)(&mut s.limits, value);
            assert_eq!(
                problems(&s),
                [SpecProblem::Limit(LimitOutOfRange { limit, value })]
            );
            assert_eq!(problems(&s)[0].to_string(), message);
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let mut s = spec();
        s.name = "é".repeat(MAX_NAME_CHARS);
        s.metadata
            .insert("_Ok_9".into(), "any value, even\nnewlines".into());
        s.workdir = path("data");
        s.max_concurrency = Some(1);
        s.limits = Limits::MAX;
        assert_eq!(s.validate(), Ok(()));
        for limit in &LIMITS {
            (limit.set)(&mut s.limits, limit.min);
        }
        assert_eq!(s.validate(), Ok(()));
        s.limits.lifetime = Duration::from_nanos(1);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn several_problems_are_reported_together() {
        let mut s = spec();
        s.range = RangeSet::new();
        s.script = path("nope.wasm");
        s.limits.lifetime = Duration::ZERO;
        s.limits.log_cap = 0;
        let err = s.validate().unwrap_err();
        assert_eq!(
            err.problems,
            [
                SpecProblem::EmptyRange,
                SpecProblem::ScriptNotInManifest {
                    script: path("nope.wasm")
                },
                SpecProblem::Limit(LimitOutOfRange {
                    limit: &LIMITS[1],
                    value: 0
                }),
                SpecProblem::Limit(LimitOutOfRange {
                    limit: &LIMITS[4],
                    value: 0
                }),
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
        s.limits.lifetime = Duration::from_secs(90);
        s.max_concurrency = Some(8);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["lifetime"], "1m30s");
        assert_eq!(json["memory_limit"], 256 << 20);
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
