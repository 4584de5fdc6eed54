//! The embedded queue's memory (`memory`): the peak resident memory and the time of `wasmjob
//! run` over no-op jobs of growing size, so that memory per value can be read off, and one run
//! with `--output`, which streams its lines to the file while the job runs. It owns those runs,
//! the reading of a child's peak from `/proc`, and their table.

use crate::Options;
use crate::measure::{NOOP, rate, wasmjob_bin};
use crate::report::{Report, Table};
use anyhow::Context;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often a run's peak is read: its high-water mark only rises, so the last reading before
/// the process exits is its peak.
const POLL: Duration = Duration::from_millis(20);

/// The values of the small run whose peak is subtracted from the others': what the binary, the
/// engine and the runtime cost before any value does.
const BASELINE: u64 = 1_000;

/// One run's figures.
struct Run {
    values: u64,
    output: bool,
    peak_kb: u64,
    took: Duration,
}

/// The process's peak resident set (`VmHWM`) in KB, while it is alive.
fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `wasmjob run` of `values` no-op values, with `--output` into `dir` when asked.
fn run(module: &Path, dir: &Path, values: u64, output: bool) -> anyhow::Result<Run> {
    let mut command = Command::new(wasmjob_bin()?);
    command
        .arg("run")
        .arg(module)
        .args(["--range", &format!("1..={values}"), "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let lines = dir.join("out.jsonl");
    if output {
        command.arg("--output").arg(&lines);
    }
    let started = Instant::now();
    let mut child = command.spawn().context("starting wasmjob run")?;
    let mut peak_kb = 0;
    let status = loop {
        if let Some(kb) = peak_rss_kb(child.id()) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(POLL);
    };
    let took = started.elapsed();
    anyhow::ensure!(status.success(), "wasmjob run of {values} values: {status}");
    if output {
        let written = std::fs::read(&lines)?;
        let count = written.iter().filter(|&&b| b == b'\n').count() as u64;
        anyhow::ensure!(count == values, "--output has {count} lines, not {values}");
        std::fs::remove_file(&lines)?;
    }
    Ok(Run {
        values,
        output,
        peak_kb,
        took,
    })
}

fn megabytes(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// Measures `wasmjob run`'s peak memory over 10^6 and 10^7 no-op values (10^4 and 10^5 with
/// `--quick`), and 10^6 with `--output`.
pub fn embedded_memory(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let module = dir.path().join("noop.wat");
    std::fs::write(&module, NOOP)?;
    let (small, large) = match options.quick {
        true => (10_000, 100_000),
        false => (1_000_000, 10_000_000),
    };
    let baseline = run(&module, dir.path(), BASELINE, false)?;
    let mut runs = Vec::new();
    for (values, output) in [(small, false), (small, true), (large, false)] {
        println!(
            "  wasmjob run of {values} no-op values{}…",
            match output {
                true => " with --output",
                false => "",
            }
        );
        runs.push(run(&module, dir.path(), values, output)?);
    }
    let rows = std::iter::once(&baseline)
        .chain(&runs)
        .map(|r| {
            let above = r.peak_kb.saturating_sub(baseline.peak_kb) as f64 * 1024.0;
            vec![
                r.values.to_string(),
                if r.output { "yes" } else { "no" }.into(),
                megabytes(r.peak_kb),
                format!("{:.1}", r.peak_kb as f64 * 1024.0 / r.values as f64),
                format!("{:.2}", above / r.values as f64),
                format!("{:.1}", r.took.as_secs_f64()),
                format!("{:.0}", rate(r.values, r.took)),
            ]
        })
        .collect();
    report.table(Table {
        title: "Embedded queue: memory of `wasmjob run`".into(),
        header: [
            "values",
            "--output",
            "peak resident",
            "bytes per value",
            "bytes per value above the 1,000-value run",
            "seconds",
            "tasks/s",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![
            format!(
                "each row is one `wasmjob run` of the no-op guest over 1..=N with the default \
                 slots ({} here); its peak is the process's VmHWM, read from /proc every {} ms \
                 while it runs; seconds and tasks/s are wall time from start to exit",
                crate::measure::cores(),
                POLL.as_millis()
            ),
            "bytes per value divides the whole peak by the values; the column after it \
             divides only what the run's peak exceeds the 1,000-value run's by: what the \
             values themselves cost"
                .into(),
        ],
        plot: None,
    });
    let largest = runs.last().expect("three runs");
    report.row(
        &format!(
            "peak resident memory of `wasmjob run` of {} no-op values",
            largest.values
        ),
        megabytes(largest.peak_kb),
        format!(
            "{:.1} bytes per value",
            largest.peak_kb as f64 * 1024.0 / largest.values as f64
        ),
        "≤ 100 MB at 10^7 values",
        (!options.quick).then_some(largest.peak_kb <= 100 * 1024),
    );
    Ok(())
}
