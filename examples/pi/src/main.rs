//! pi: a Monte Carlo estimate of π, one independent estimate per task value.
//!
//! Shows: a CPU-bound task with job metadata (`samples`), a fatal error for bad input, progress
//! reports and checking for cancellation between chunks of work, and a pure core that is
//! unit-tested natively (`cargo test -p pi`).
//!
//! Each task seeds its own generator (splitmix64) with its value, throws `samples` points
//! (metadata `samples`, default 1 000 000) into the unit square and counts those inside the
//! quarter circle; the result is one JSON line:
//!
//! ```text
//! {"value":7,"samples":1000000,"inside":785123,"pi":3.140492}
//! ```
//!
//! Build and run from the workspace root:
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p pi
//! wasmjob run target/wasm32-wasip1/release/pi.wasm --range 1..=1000
//! ```
//!
//! Add `--meta samples=10000000` for longer tasks.

use wasmjob_guest::{Task, TaskError};

/// Samples used when the job sets no `samples` metadata.
const DEFAULT_SAMPLES: u64 = 1_000_000;

/// Samples between two progress reports and cancellation checks.
const CHUNK: u64 = 1 << 20;

fn main() {
    wasmjob_guest::run(|task| {
        let samples = samples(task)?;
        let inside = count_inside(task.value(), samples, |done| {
            wasmjob_guest::progress(format!("{done}/{samples}").as_bytes());
            !wasmjob_guest::cancelled()
        })
        .ok_or_else(|| TaskError::retry("cancelled"))?;
        Ok(format!(
            "{{\"value\":{},\"samples\":{samples},\"inside\":{inside},\"pi\":{:.6}}}\n",
            task.value(),
            estimate(inside, samples)
        ))
    })
}

/// The `samples` metadata, or the default; anything but a whole number from 1 up is fatal.
fn samples(task: &Task) -> Result<u64, TaskError> {
    match task.meta("samples") {
        None => Ok(DEFAULT_SAMPLES),
        Some(text) => match text.trim().replace('_', "").parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(TaskError::fatal(format!(
                "metadata samples={text:?} is not a whole number from 1 up"
            ))),
        },
    }
}

/// Throws `samples` points seeded by `seed` and counts those inside the quarter circle.
///
/// `between_chunks(done)` is called after every [`CHUNK`] samples (not after the last); when it
/// returns `false` the count stops and the result is `None`. The count depends only on `seed`
/// and `samples`.
fn count_inside(
    seed: u64,
    samples: u64,
    mut between_chunks: impl FnMut(u64) -> bool,
) -> Option<u64> {
    let mut rng = SplitMix64(seed);
    let mut inside = 0;
    let mut done = 0;
    while done < samples {
        if done > 0 && !between_chunks(done) {
            return None;
        }
        let n = CHUNK.min(samples - done);
        for _ in 0..n {
            let (x, y) = (rng.unit(), rng.unit());
            if x * x + y * y < 1.0 {
                inside += 1;
            }
        }
        done += n;
    }
    Some(inside)
}

/// π ≈ 4 · inside / samples.
fn estimate(inside: u64, samples: u64) -> f64 {
    4.0 * inside as f64 / samples as f64
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for Monte Carlo; any seed,
/// including 0, is fine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform `f64` in `[0, 1)` from the top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference() {
        // First outputs of the reference C implementation seeded with 1234567.
        let mut rng = SplitMix64(1234567);
        let first: Vec<u64> = (0..3).map(|_| rng.next()).collect();
        assert_eq!(
            first,
            [
                6457827717110365317,
                3203168211198807973,
                9817491932198370423
            ]
        );
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = count_inside(7, 100_000, |_| true);
        assert_eq!(a, count_inside(7, 100_000, |_| true));
        assert_ne!(a, count_inside(8, 100_000, |_| true));
    }

    #[test]
    fn a_million_samples_are_within_a_hundredth() {
        for seed in [0, 1, 7, u64::MAX] {
            let inside = count_inside(seed, 1_000_000, |_| true).unwrap();
            let pi = estimate(inside, 1_000_000);
            assert!(
                (pi - std::f64::consts::PI).abs() < 0.01,
                "seed {seed}: {pi}"
            );
        }
    }

    #[test]
    fn chunks_report_progress_and_can_stop() {
        let mut seen = Vec::new();
        let samples = 2 * CHUNK + 5;
        let full = count_inside(3, samples, |done| {
            seen.push(done);
            true
        });
        assert_eq!(seen, [CHUNK, 2 * CHUNK]);
        assert!(full.is_some());
        assert_eq!(count_inside(3, samples, |_| false), None);
    }
}
