//! The options that set the limits of an attempt, one per row of [`wasmjob::limits::LIMITS`]:
//! `--memory`, `--lifetime`, ... on `run` and `submit`, where they are the job's limits, and
//! `--max-memory`, `--max-lifetime`, ... on `worker`, where they are its ceilings.
//!
//! The options are made from the table rather than derived, so that a new limit gets its
//! options on all three commands from its row alone. What the values mean and which are valid
//! is `wasmjob::limits`'s to say; checking a job's is `JobSpec::validate`'s.

use clap::builder::ValueParser;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use wasmjob::limits::{LIMITS, Limit, Limits, Unit};

/// A job's limits (`CEILINGS` false: `--memory`, defaults [`Limits::DEFAULT`]) or a worker's
/// ceilings (`CEILINGS` true: `--max-memory`, defaults [`Limits::MAX`]).
#[derive(Debug, Clone, Copy)]
pub struct LimitArgs<const CEILINGS: bool>(pub Limits);

/// The limits of each attempt of a job.
pub type JobLimits = LimitArgs<false>;

/// The most a worker accepts of each limit.
pub type Ceilings = LimitArgs<true>;

impl<const CEILINGS: bool> LimitArgs<CEILINGS> {
    const BASE: Limits = if CEILINGS {
        Limits::MAX
    } else {
        Limits::DEFAULT
    };

    /// The option's name, which is also its id among the command's arguments.
    fn flag(limit: &Limit) -> &'static str {
        if CEILINGS {
            limit.ceiling_flag
        } else {
            limit.flag
        }
    }

    fn arg(limit: &'static Limit) -> Arg {
        let help = if CEILINGS {
            limit.ceiling_help
        } else {
            limit.help
        };
        let unit = limit.unit;
        let default = limit.show((limit.get)(&Self::BASE));
        Arg::new(Self::flag(limit))
            .long(Self::flag(limit))
            .value_name(match unit {
                Unit::Bytes => "SIZE",
                Unit::Millis => "DURATION",
                Unit::Count => "N",
            })
            .value_parser(ValueParser::new(move |text: &str| unit.parse(text)))
            .help(format!("{help} [default: {default}]"))
    }
}

impl<const CEILINGS: bool> FromArgMatches for LimitArgs<CEILINGS> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = LimitArgs(Self::BASE);
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for limit in &LIMITS {
            if let Some(&value) = matches.get_one::<u64>(Self::flag(limit)) {
                (limit.set)(&mut self.0, value);
            }
        }
        Ok(())
    }
}

impl<const CEILINGS: bool> Args for LimitArgs<CEILINGS> {
    fn augment_args(cmd: Command) -> Command {
        LIMITS
            .iter()
            .fold(cmd, |cmd, limit| cmd.arg(Self::arg(limit)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::time::Duration;

    #[derive(Debug, Parser)]
    struct Submit {
        #[command(flatten)]
        limits: JobLimits,
    }

    #[derive(Debug, Parser)]
    struct Worker {
        #[command(flatten)]
        ceilings: Ceilings,
    }

    #[test]
    fn a_job_and_a_worker_get_every_limit_under_their_own_names() {
        let none = Submit::try_parse_from(["submit"]).unwrap();
        assert_eq!(none.limits.0, Limits::DEFAULT);
        let none = Worker::try_parse_from(["worker"]).unwrap();
        assert_eq!(none.ceilings.0, Limits::MAX);

        let job = Submit::try_parse_from([
            "submit",
            "--memory",
            "64MiB",
            "--lifetime",
            "1m30s",
            "--table-elements",
            "7",
            "--result-cap",
            "2KiB",
            "--log-cap",
            "3KiB",
            "--scratch",
            "1GiB",
            "--scratch-files",
            "9",
        ])
        .unwrap();
        let expected = Limits {
            memory: 64 << 20,
            lifetime: Duration::from_secs(90),
            table_elements: 7,
            result_cap: 2 << 10,
            log_cap: 3 << 10,
            scratch_bytes: 1 << 30,
            scratch_files: 9,
        };
        assert_eq!(job.limits.0, expected);

        let worker =
            Worker::try_parse_from(["worker", "--max-memory", "1GiB", "--max-scratch-files", "5"])
                .unwrap();
        assert_eq!(worker.ceilings.0.memory, 1 << 30);
        assert_eq!(worker.ceilings.0.scratch_files, 5);
        assert_eq!(worker.ceilings.0.lifetime, Limits::MAX.lifetime);
        assert!(Worker::try_parse_from(["worker", "--memory", "1GiB"]).is_err());
    }

    #[test]
    fn a_bad_value_names_the_option() {
        let err = Submit::try_parse_from(["submit", "--scratch-files", "4294967296"]).unwrap_err();
        assert!(err.to_string().contains("--scratch-files"), "{err}");
        let err = Submit::try_parse_from(["submit", "--memory", "lots"]).unwrap_err();
        assert!(err.to_string().contains("--memory"), "{err}");
    }
}
