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
mod tests;
