//! The job-shape measurement (`fragmentation`): how a job's throughput and Redis's CPU per task
//! change when its interval sets fragment. Its guest fails the first attempt of a scattered,
//! fixed share of the values, so that while the job runs its pending and succeeded sets are
//! full of holes; every report of the job reads and writes those sets whole. It owns that
//! guest, its check, the runs under their time budget, their table and their plot.

use crate::Options;
use crate::measure::{Queue, cores, job, rate, redis_work, status_when_done, submit};
use crate::plot::{Axis, Chart, Series};
use crate::report::{Plot, Report, Table};
use anyhow::{Context, bail};
use std::time::{Duration, Instant};
use wasmjob::spec::JobSpec;
use wasmjob::storage::SubmitterStore;
use wasmjob_test_support::wat;

/// The shares of values, in percent, whose first attempt fails.
const FAILING: [u64; 4] = [0, 1, 10, 50];

/// Fibonacci hashing's multiplier: neighbouring values land far apart, so the failing ones are
/// scattered over the job rather than bunched.
const SCATTER: u64 = 0x9E37_79B9_7F4A_7C15;

/// How often a run reads its job's status: often enough for the wall time, seldom enough that
/// the reads (which decode the same sets) add little to Redis's CPU.
const POLL: Duration = Duration::from_millis(100);

/// Whether the first attempt of `value` fails when `percent`% of values fail once: the guest's
/// rule, for checking it and counting attempts.
fn chosen(value: u64, percent: u64) -> bool {
    (value.wrapping_mul(SCATTER) >> 32) % 100 < percent
}

/// The guest: reads `WASMJOB_TASK_VALUE` and `WASMJOB_ATTEMPT` from its environment and, on the
/// first attempt of a chosen value, exits with code 1 (an error, retried); otherwise succeeds.
/// Without either variable it traps, so that a guest that cannot read its inputs fails for good
/// rather than passing for one that succeeded.
fn guest(percent: u64) -> Vec<u8> {
    wat(&format!(
        r#"(module
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  ;; 0: the variables' count and size; 128, 160: the names looked for; 1024: the pointers to
  ;; the variables; 8192 to the end of the page: the variables.
  (data (i32.const 128) "WASMJOB_TASK_VALUE=")
  (data (i32.const 160) "WASMJOB_ATTEMPT=")

  ;; The number after `name` in the variable at `entry`, or -1 when it is another variable.
  (func $number_after (param $entry i32) (param $name i32) (param $length i32) (result i64)
    (local $i i32) (local $digit i32) (local $number i64)
    (loop $compare
      (if (i32.lt_u (local.get $i) (local.get $length))
        (then
          ;; A shorter variable differs at its terminating zero, before it is read past.
          (if (i32.ne (i32.load8_u (i32.add (local.get $entry) (local.get $i)))
                      (i32.load8_u (i32.add (local.get $name) (local.get $i))))
            (then (return (i64.const -1))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $compare))))
    (loop $digits
      (local.set $digit
        (i32.sub (i32.load8_u (i32.add (local.get $entry) (local.get $i))) (i32.const 48)))
      (if (i32.lt_u (local.get $digit) (i32.const 10))
        (then
          (local.set $number
            (i64.add (i64.mul (local.get $number) (i64.const 10))
                     (i64.extend_i32_u (local.get $digit))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $digits))))
    (local.get $number))

  (func (export "_start")
    (local $k i32) (local $entry i32) (local $found i64) (local $value i64) (local $attempt i64)
    (local.set $value (i64.const -1))
    (local.set $attempt (i64.const -1))
    (if (call $environ_sizes (i32.const 0) (i32.const 4)) (then (unreachable)))
    (if (i32.or (i32.gt_u (i32.load (i32.const 0)) (i32.const 1792))
                (i32.gt_u (i32.load (i32.const 4)) (i32.const 57344)))
      (then (unreachable)))
    (if (call $environ (i32.const 1024) (i32.const 8192)) (then (unreachable)))
    (loop $variables
      (if (i32.lt_u (local.get $k) (i32.load (i32.const 0)))
        (then
          (local.set $entry
            (i32.load (i32.add (i32.const 1024) (i32.shl (local.get $k) (i32.const 2)))))
          (local.set $found (call $number_after (local.get $entry) (i32.const 128) (i32.const 19)))
          (if (i64.ge_s (local.get $found) (i64.const 0)) (then (local.set $value (local.get $found))))
          (local.set $found (call $number_after (local.get $entry) (i32.const 160) (i32.const 16)))
          (if (i64.ge_s (local.get $found) (i64.const 0)) (then (local.set $attempt (local.get $found))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br $variables))))
    (if (i32.or (i64.lt_s (local.get $value) (i64.const 0))
                (i64.lt_s (local.get $attempt) (i64.const 0)))
      (then (unreachable)))
    (if (i32.and
          (i64.eq (local.get $attempt) (i64.const 1))
          (i64.lt_u
            (i64.rem_u
              (i64.shr_u (i64.mul (local.get $value) (i64.const {SCATTER:#x})) (i64.const 32))
              (i64.const 100))
            (i64.const {percent})))
      (then (call $exit (i32.const 1)))))
)"#
    ))
}

/// A job of the guest over `1..=values` in which each value may fail once and no more.
fn spec(module: &[u8], values: u64) -> JobSpec {
    let mut spec = job(module, &format!("1..={values}"));
    spec.max_retries = 1;
    spec
}

/// Runs a small job at 50% and checks, value by value, that the chosen ones took two attempts
/// and the others one, and that every one succeeded: the figures mean nothing otherwise.
async fn check_guest() -> anyhow::Result<()> {
    let (values, percent) = (200, 50);
    let queue = Queue::start().await?;
    let module = guest(percent);
    let id = submit(&queue.store, &spec(&module, values), &module).await?;
    let status = status_when_done(
        &queue.store,
        id,
        Duration::from_millis(10),
        Duration::from_secs(30),
        |_| {},
    )
    .await?;
    if !status.is_done() || status.succeeded.len() != values {
        bail!(
            "the fragmentation guest is broken: a job of 1..={values} at {percent}% should end \
             with every value succeeded, but its status is {status:?}"
        );
    }
    for value in 1..=values {
        let info = queue.store.info(id, value).await?;
        let expected = 1 + chosen(value, percent) as u32;
        if info.attempts != expected {
            bail!(
                "the fragmentation guest is broken: value {value} (chosen: {}) took {} \
                 attempts, not {expected}: {info:?}",
                chosen(value, percent),
                info.attempts
            );
        }
    }
    queue.worker.stop();
    Ok(())
}

/// What one job did within its budget.
#[derive(Debug, Clone, Copy)]
struct Run {
    values: u64,
    percent: u64,
    /// Values succeeded by the end.
    done: u64,
    /// The attempts those values took.
    attempts: u64,
    /// The most intervals the job's sets held together at any status read: what each report
    /// decoded and encoded again.
    intervals: usize,
    /// From submit to done, or to the budget's end.
    took: Duration,
    /// Redis's CPU seconds over the same time.
    redis_cpu: f64,
    finished: bool,
}

impl Run {
    fn tasks_per_s(&self) -> f64 {
        rate(self.done, self.took)
    }

    fn cpu_us_per_value(&self) -> f64 {
        self.redis_cpu * 1e6 / self.done as f64
    }

    fn cpu_us_per_attempt(&self) -> f64 {
        self.redis_cpu * 1e6 / self.attempts as f64
    }
}

/// One job of `values` values of which `percent`% fail once, on a fresh queue; stopped, with
/// its worker killed and its server with it, when `budget` runs out first.
async fn run(values: u64, percent: u64, budget: Duration) -> anyhow::Result<Run> {
    let queue = Queue::start().await?;
    let module = guest(percent);
    let (_, cpu_before) = redis_work(&queue.server);
    let started = Instant::now();
    let id = submit(&queue.store, &spec(&module, values), &module).await?;
    let mut intervals = 0;
    let status = status_when_done(&queue.store, id, POLL, budget, |status| {
        let sets = [
            &status.pending,
            &status.succeeded,
            &status.failed,
            &status.quarantined,
        ];
        intervals = intervals.max(sets.iter().map(|set| set.interval_count()).sum());
    })
    .await?;
    let took = started.elapsed();
    let (_, cpu_after) = redis_work(&queue.server);
    if !status.failed.is_empty() || !status.quarantined.is_empty() {
        bail!(
            "the fragmentation job of {values} values at {percent}% lost values: {} failed, {} \
             quarantined",
            status.failed.len(),
            status.quarantined.len()
        );
    }
    let finished = status.is_done();
    if finished {
        queue.worker.stop();
    }
    Ok(Run {
        values,
        percent,
        done: status.succeeded.len(),
        attempts: status
            .succeeded
            .values()
            .map(|value| 1 + chosen(value, percent) as u64)
            .sum(),
        intervals,
        took,
        redis_cpu: cpu_after - cpu_before,
        finished,
    })
}

/// `10^k` for a power of ten, else the number.
fn size(values: u64) -> String {
    match values.checked_ilog10() {
        Some(k) if 10u64.pow(k) == values && k > 1 => format!("10^{k}"),
        _ => values.to_string(),
    }
}

fn micros_or_dash(us: f64) -> String {
    match us.is_finite() {
        true => format!("{us:.2} µs"),
        false => "–".into(),
    }
}

/// Jobs of 10^5 and 10^6 values (`--quick`: 10^4 and 10^5) with 0, 1, 10 and 50% of their
/// values failing once, each within 30 s (`--quick`: 10 s): their own table and plot, and the
/// issue's goal as a row of the results.
pub async fn fragmentation(options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let (sizes, budget) = match options.quick {
        true => ([10_000, 100_000], Duration::from_secs(10)),
        false => ([100_000, 1_000_000], Duration::from_secs(30)),
    };
    check_guest()
        .await
        .context("checking the fragmentation guest")?;
    let mut runs = Vec::new();
    for values in sizes {
        for percent in FAILING {
            println!(
                "  fragmentation: {} values, {percent}% failing once...",
                size(values)
            );
            runs.push(run(values, percent, budget).await?);
        }
    }
    let find = |values, percent| {
        runs.iter()
            .find(|run| run.values == values && run.percent == percent)
            .expect("every size and share was run")
    };
    let rows = runs
        .iter()
        .map(|run| {
            let none_failing = find(run.values, 0);
            vec![
                size(run.values),
                format!("{}%", run.percent),
                format!("{:.0}", run.tasks_per_s()),
                format!("{:.2}×", run.tasks_per_s() / none_failing.tasks_per_s()),
                micros_or_dash(run.cpu_us_per_value()),
                micros_or_dash(run.cpu_us_per_attempt()),
                run.intervals.to_string(),
                match run.finished {
                    true => format!("yes, in {:.1} s", run.took.as_secs_f64()),
                    false => format!(
                        "did not finish in {} s ({} of {} values done)",
                        budget.as_secs(),
                        run.done,
                        run.values
                    ),
                },
            ]
        })
        .collect();
    let chart = Chart {
        title: "tasks/s against % of values failing once, one line per job size".into(),
        x: Axis {
            label: "% of values whose first attempt fails".into(),
        },
        y: Axis {
            label: "tasks/s (values finished per second)".into(),
        },
        series: sizes
            .iter()
            .map(|&values| Series {
                name: format!("{} values", size(values)),
                points: FAILING
                    .iter()
                    .map(|&percent| (percent as f64, find(values, percent).tasks_per_s()))
                    .collect(),
            })
            .collect(),
    };
    report.table(Table {
        title: "Job shape: fragmentation".into(),
        header: [
            "values",
            "failing once",
            "tasks/s",
            "vs 0% failing",
            "Redis CPU per value",
            "Redis CPU per attempt",
            "intervals (most seen)",
            "finished",
        ]
        .map(String::from)
        .to_vec(),
        rows,
        notes: vec![
            format!(
                "each job runs on a fresh redis-server with one worker of {} slots; a failing \
                 value's first attempt exits with code 1 and its retry succeeds; which values \
                 fail is fixed by a hash of the value, so they are scattered over the job",
                cores()
            ),
            format!(
                "tasks/s counts values finished, over the time from submit to done or to the \
                 end of the {} s budget; a job that did not finish is stopped there, and its \
                 figures are over the values done by then (its CPU per attempt reads high: the \
                 failed first attempts of values still waiting are not counted)",
                budget.as_secs()
            ),
            format!(
                "intervals (most seen): the most intervals the job's pending, succeeded, failed \
                 and quarantined sets held together at any of the status reads ({} ms apart): \
                 how much each report had to decode and encode again",
                POLL.as_millis()
            ),
        ],
        plot: Some(Plot {
            name: "fragmentation".into(),
            svg: chart.svg(),
        }),
    });

    let (smallest, largest) = (sizes[0], sizes[1]);
    let (failing, none) = (find(largest, 50), find(largest, 0));
    let ratio = failing.tasks_per_s() / none.tasks_per_s();
    let growth: Vec<(u64, f64)> = FAILING
        .iter()
        .map(|&percent| {
            let per_value = |values| find(values, percent).cpu_us_per_value();
            (percent, per_value(largest) / per_value(smallest))
        })
        .collect();
    let flat = growth
        .iter()
        .all(|(_, growth)| (0.8..=1.2).contains(growth));
    let growth_text: Vec<String> = growth
        .iter()
        .map(|(percent, growth)| format!("{percent}%: {growth:.2}×"))
        .collect();
    report.row(
        &format!(
            "fragmentation: 50% of values failing once vs none, {} values",
            size(largest)
        ),
        match failing.finished {
            true => format!("{:.0} tasks/s", failing.tasks_per_s()),
            false => format!(
                "{:.0} tasks/s, did not finish in {} s",
                failing.tasks_per_s(),
                budget.as_secs()
            ),
        },
        format!(
            "none failing: {:.0}/s, {:.0}% of it; Redis CPU per task at {} vs {} values: {}",
            none.tasks_per_s(),
            ratio * 100.0,
            size(largest),
            size(smallest),
            growth_text.join(", ")
        ),
        "within 80% of the 0% job's throughput; Redis CPU per task flat within ±20% across sizes",
        Some(failing.finished && none.finished && ratio >= 0.8 && flat),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_the_share_asked_for_fails_once() {
        for percent in FAILING {
            let failing = (1..=100_000).filter(|&v| chosen(v, percent)).count();
            let share = failing as f64 / 1_000.0;
            assert!(
                (share - percent as f64).abs() <= 0.5,
                "{share}% chosen for {percent}%"
            );
        }
    }

    #[test]
    fn the_failing_values_are_scattered() {
        // At 50%, a run of ten failing or ten passing values in a row would bunch them.
        let chosen: Vec<bool> = (1..=10_000).map(|v| chosen(v, 50)).collect();
        assert!(
            chosen
                .windows(10)
                .all(|w| w.contains(&true) && w.contains(&false))
        );
    }

    #[test]
    fn the_guest_is_valid_webassembly_at_every_share() {
        for percent in FAILING {
            assert!(!guest(percent).is_empty());
        }
    }

    #[test]
    fn sizes_read_as_powers_of_ten() {
        assert_eq!(size(100_000), "10^5");
        assert_eq!(size(1_000_000), "10^6");
        assert_eq!(size(200), "200");
    }
}
