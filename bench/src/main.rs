//! wasmjob's benchmark: what one task costs, how many tasks per second pass through Redis and
//! through the embedded queue, how much memory the embedded queue takes for jobs of 10^6 and
//! 10^7 values, how a job of ten million values submits, how fast a fresh worker
//! starts, what CPU-bound work loses to WebAssembly, how a job slows as its interval sets
//! fragment (with its own table and plot), and, with `--peers`, the same no-op
//! throughput for the queues people use today, each against its own fresh `redis-server`.
//!
//! Run it with `scripts/bench`, which builds what it needs in release mode. It prints a table
//! and writes it, with the machine it ran on, to `BENCHMARKS.md` (or `--out FILE`).
//!
//! ```text
//! wasmjob-bench [--quick] [--peers] [--tasks N] [--out FILE] [--only NAME]
//! ```

mod measure;
mod memory;
mod plot;
mod report;
mod shape;

use anyhow::Context;
use report::Report;
use std::path::PathBuf;

/// What to run, from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// Smaller counts everywhere: a check that the benchmark works, not figures to quote.
    pub quick: bool,
    /// Also measure the peer queues (installed from their registries by bench/peers/run.py).
    pub peers: bool,
    /// No-op tasks in the throughput runs.
    pub tasks: u64,
    /// Where the report goes.
    pub out: PathBuf,
    /// Run only this measurement (`cpu`, `overhead`, `embedded`, `memory`, `redis`, `latency`,
    /// `scale`, `cold`, `fragmentation`, `peers`), for profiling one of them.
    pub only: Option<String>,
}

impl Options {
    fn runs(&self, measurement: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == measurement)
    }
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        quick: false,
        peers: false,
        tasks: 100_000,
        out: PathBuf::from("BENCHMARKS.md"),
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--peers" => options.peers = true,
            "--tasks" => {
                options.tasks = args
                    .next()
                    .and_then(|n| n.replace('_', "").parse().ok())
                    .context("--tasks takes a number")?;
            }
            "--out" => options.out = args.next().context("--out takes a file")?.into(),
            "--only" => options.only = Some(args.next().context("--only takes a measurement")?),
            "-h" | "--help" => {
                println!(
                    "wasmjob-bench [--quick] [--peers] [--tasks N] [--out FILE] [--only NAME]"
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}; see --help"),
        }
    }
    if options.quick {
        options.tasks = options.tasks.min(5_000);
    }
    Ok(options)
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let mut report = Report::new(&options);
    // The CPU-bound comparison runs first, on a quiet machine, and outside the async runtime.
    if options.runs("cpu") {
        measure::cpu_bound(&options, &mut report)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        if options.runs("overhead") {
            measure::host_overhead(&options, &mut report).await?;
        }
        if options.runs("embedded") {
            measure::embedded_throughput(&options, &mut report)?;
        }
        if options.runs("memory") {
            memory::embedded_memory(&options, &mut report)?;
        }
        let needs_redis = options.runs("redis") || options.peers && options.runs("peers");
        let through_redis = match needs_redis {
            true => Some(measure::redis_throughput(&options, &mut report).await?),
            false => None,
        };
        if options.runs("latency") {
            measure::latency(&options, &mut report).await?;
        }
        if options.runs("scale") {
            measure::scale(&mut report).await?;
        }
        if options.runs("cold") {
            measure::cold_start(&options, &mut report).await?;
        }
        if options.runs("fragmentation") {
            shape::fragmentation(&options, &mut report).await?;
        }
        if let (true, Some(through_redis)) = (options.peers && options.runs("peers"), through_redis)
        {
            measure::peers(&options, &mut report, through_redis)?;
        }
        anyhow::Ok(())
    })?;
    if !options.peers {
        report.note(
            "the peer queues (BullMQ, apalis, Celery, RQ) were not measured in this run: \
             `scripts/bench --peers` installs and runs them (bench/peers/README.md)"
                .into(),
        );
    }
    report.write(&options.out)?;
    println!("\nwritten to {}", options.out.display());
    Ok(())
}
