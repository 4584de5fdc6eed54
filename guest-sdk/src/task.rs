//! [`Task`]: who this task is, read once from the environment the host sets up.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;

use wasmjob_host_api::env;

/// The task being run: its value, its identity and the job's metadata, as the host passed them
/// in the `WASMJOB_*` environment variables (see [`contract::env`](crate::contract::env)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    value: u64,
    job_id: String,
    job_name: String,
    task_id: String,
    attempt: u32,
    metadata: BTreeMap<String, String>,
}

impl Task {
    /// Reads the task from the process environment.
    ///
    /// # Panics
    ///
    /// When a `WASMJOB_*` variable the contract promises is missing or malformed, which means the
    /// program is not running under a wasmjob host. The message names the variable.
    pub fn from_env() -> Task {
        Task::from_vars(std::env::vars_os()).unwrap_or_else(|err| {
            panic!("wasmjob_guest::Task::from_env: {err} (is this running under a wasmjob host?)")
        })
    }

    /// Reads the task from `(name, value)` pairs shaped like the environment; variables not named
    /// by the contract are ignored. This is [`Task::from_env`] without the process environment,
    /// for tests: `Task::from_vars([("WASMJOB_TASK_VALUE", "7"), ...])`.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Task, EnvError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut ours = BTreeMap::new();
        for (name, value) in vars {
            // A name that is not UTF-8 cannot be one of ours.
            if let Some(name) = name.as_ref().to_str().filter(|n| n.starts_with("WASMJOB_")) {
                ours.insert(name.to_owned(), value.as_ref().to_owned());
            }
        }
        let text = |name: &str| -> Result<String, EnvError> {
            let value = ours.get(name).ok_or_else(|| EnvError::Missing {
                name: name.to_owned(),
            })?;
            value
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| EnvError::Invalid {
                    name: name.to_owned(),
                    value: value.to_string_lossy().into_owned(),
                    expected: "UTF-8 text",
                })
        };
        let number = |name: &str, expected: &'static str, min: u64| -> Result<u64, EnvError> {
            let value = text(name)?;
            match value.parse::<u64>() {
                Ok(n) if n >= min => Ok(n),
                _ => Err(EnvError::Invalid {
                    name: name.to_owned(),
                    value,
                    expected,
                }),
            }
        };

        let value = number(env::TASK_VALUE, "a whole number from 0 up", 0)?;
        let attempt = number(env::ATTEMPT, "a whole number from 1 up", 1)?;
        let attempt = u32::try_from(attempt).map_err(|_| EnvError::Invalid {
            name: env::ATTEMPT.to_owned(),
            value: attempt.to_string(),
            expected: "a whole number from 1 to 4294967295",
        })?;
        let mut metadata = BTreeMap::new();
        for name in ours.keys() {
            if let Some(key) = name
                .strip_prefix(env::META_PREFIX)
                .filter(|k| !k.is_empty())
            {
                metadata.insert(key.to_owned(), text(name)?);
            }
        }
        Ok(Task {
            value,
            job_id: text(env::JOB_ID)?,
            job_name: text(env::JOB_NAME)?,
            task_id: text(env::TASK_ID)?,
            attempt,
            metadata,
        })
    }

    /// The task value: one integer of the job's range (also `argv[1]`).
    pub fn value(&self) -> u64 {
        self.value
    }

    /// The job's id (a ULID).
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job's name as given at submit; may be empty.
    pub fn job_name(&self) -> &str {
        &self.job_name
    }

    /// The id of this attempt (a ULID, fresh per attempt).
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The attempt number, starting at 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The job metadata entry `key` (environment variable `WASMJOB_META_<key>`), if set.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// All of the job's metadata, keys without the `WASMJOB_META_` prefix.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
}

/// An environment that does not follow the contract, from [`Task::from_vars`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvError {
    /// A variable the contract promises is not set.
    Missing {
        /// The variable's name.
        name: String,
    },
    /// A variable is set to something the contract does not allow.
    Invalid {
        /// The variable's name.
        name: String,
        /// Its value (lossily decoded if it was not UTF-8).
        value: String,
        /// What it should have been.
        expected: &'static str,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Missing { name } => write!(f, "environment variable {name} is not set"),
            EnvError::Invalid {
                name,
                value,
                expected,
            } => {
                write!(
                    f,
                    "environment variable {name}={value:?} is invalid: expected {expected}"
                )
            }
        }
    }
}

impl std::error::Error for EnvError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn contract_vars() -> Vec<(&'static str, &'static str)> {
        vec![
            ("WASMJOB_JOB_ID", "01JD3Q4G7TZ9N8V2K5X6Y1R0AB"),
            ("WASMJOB_JOB_NAME", "nightly"),
            ("WASMJOB_TASK_ID", "01JD3Q4G7TZ9N8V2K5X6Y1R0CD"),
            ("WASMJOB_TASK_VALUE", "42"),
            ("WASMJOB_ATTEMPT", "3"),
            ("WASMJOB_JOB_DIR", "/job"),
            ("WASMJOB_SCRATCH_DIR", "/scratch"),
            ("WASMJOB_META_samples", "1000"),
            ("WASMJOB_META_do_7", "echo;exit:3"),
            ("HOME", "/ignored"),
        ]
    }

    fn with(name: &'static str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut vars = contract_vars();
        vars.retain(|(n, _)| *n != name);
        vars.push((name, value));
        vars
    }

    fn without(name: &str) -> Vec<(&'static str, &'static str)> {
        let mut vars = contract_vars();
        vars.retain(|(n, _)| *n != name);
        vars
    }

    #[test]
    fn reads_every_contract_variable() {
        let task = Task::from_vars(contract_vars()).unwrap();
        assert_eq!(task.value(), 42);
        assert_eq!(task.job_id(), "01JD3Q4G7TZ9N8V2K5X6Y1R0AB");
        assert_eq!(task.job_name(), "nightly");
        assert_eq!(task.task_id(), "01JD3Q4G7TZ9N8V2K5X6Y1R0CD");
        assert_eq!(task.attempt(), 3);
        assert_eq!(task.meta("samples"), Some("1000"));
        assert_eq!(task.meta("do_7"), Some("echo;exit:3"));
        assert_eq!(task.meta("SAMPLES"), None, "keys keep their case");
        assert_eq!(task.meta("missing"), None);
        let keys: Vec<_> = task.metadata().keys().map(String::as_str).collect();
        assert_eq!(keys, ["do_7", "samples"]);
    }

    #[test]
    fn empty_job_name_and_metadata_are_fine() {
        let mut vars = with("WASMJOB_JOB_NAME", "");
        vars.retain(|(n, _)| !n.starts_with("WASMJOB_META_"));
        let task = Task::from_vars(vars).unwrap();
        assert_eq!(task.job_name(), "");
        assert!(task.metadata().is_empty());
    }

    #[test]
    fn full_u64_range_of_values() {
        let task = Task::from_vars(with("WASMJOB_TASK_VALUE", "18446744073709551615")).unwrap();
        assert_eq!(task.value(), u64::MAX);
        let task = Task::from_vars(with("WASMJOB_TASK_VALUE", "0")).unwrap();
        assert_eq!(task.value(), 0);
    }

    #[test]
    fn missing_variables_are_named() {
        for name in [
            "WASMJOB_JOB_ID",
            "WASMJOB_JOB_NAME",
            "WASMJOB_TASK_ID",
            "WASMJOB_TASK_VALUE",
            "WASMJOB_ATTEMPT",
        ] {
            let err = Task::from_vars(without(name)).unwrap_err();
            assert_eq!(err, EnvError::Missing { name: name.into() });
            assert_eq!(
                err.to_string(),
                format!("environment variable {name} is not set")
            );
        }
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        for (name, value) in [
            ("WASMJOB_TASK_VALUE", "-1"),
            ("WASMJOB_TASK_VALUE", "seven"),
            ("WASMJOB_TASK_VALUE", "18446744073709551616"),
            ("WASMJOB_TASK_VALUE", ""),
            ("WASMJOB_ATTEMPT", "0"),
            ("WASMJOB_ATTEMPT", "4294967296"),
            ("WASMJOB_ATTEMPT", "1.5"),
        ] {
            let err = Task::from_vars(with(name, value)).unwrap_err();
            assert!(
                matches!(&err, EnvError::Invalid { name: n, value: v, .. } if n == name && v == value),
                "{name}={value}: {err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_values_are_rejected_and_foreign_names_ignored() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'a', 0xff]);
        let mut vars: Vec<(OsString, OsString)> = contract_vars()
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        vars.push((bad.clone(), "x".into()));
        assert!(
            Task::from_vars(vars.clone()).is_ok(),
            "a non-UTF-8 name is not ours"
        );
        vars.push(("WASMJOB_META_blob".into(), bad));
        let err = Task::from_vars(vars).unwrap_err();
        assert!(matches!(&err, EnvError::Invalid { name, .. } if name == "WASMJOB_META_blob"));
    }

    /// Set by [`from_env_reads_the_process_environment`] in the child it spawns.
    const CHILD_MARKER: &str = "WASMJOB_GUEST_SDK_TEST_CHILD";

    /// Does nothing unless spawned by the tests below, with a prepared environment. Setting
    /// variables in this process would need `unsafe` (`std::env::set_var`) and would race the
    /// other tests; a child process gets its own environment instead.
    #[test]
    fn from_env_child() {
        if std::env::var_os(CHILD_MARKER).is_some() {
            println!("TASK={:?}", Task::from_env());
        }
    }

    fn spawn_child(vars: &[(&str, &str)]) -> std::process::Output {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "task::tests::from_env_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_clear()
            .env(CHILD_MARKER, "1")
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    }

    #[test]
    fn from_env_reads_the_process_environment() {
        let out = spawn_child(&contract_vars());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        let expected = format!("TASK={:?}", Task::from_vars(contract_vars()).unwrap());
        assert!(stdout.contains(&expected), "{stdout}");
    }

    #[test]
    fn from_env_panics_with_a_clear_message() {
        let out = spawn_child(&without("WASMJOB_ATTEMPT"));
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "wasmjob_guest::Task::from_env: environment variable WASMJOB_ATTEMPT is not set"
            ),
            "{stderr}"
        );
    }
}
