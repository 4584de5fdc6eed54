//! wordcount: counts the lines, words and bytes of one data file per task.
//!
//! Shows: reading the job's manifest files through a relative path (the working directory is the
//! manifest root, mounted read-only), choosing the input by the task value, and telling a
//! permanent failure (a missing input: [`TaskError::Fatal`], never retried) from a transient
//! one (any other I/O error: retried).
//!
//! Task `V` reads `data/part-V.txt` and prints one JSON line:
//!
//! ```text
//! {"value":1,"file":"data/part-1.txt","lines":3,"words":36,"bytes":183}
//! ```
//!
//! Build and run from the workspace root; `--dir` adds the folder to the manifest as `data/`:
//!
//! ```text
//! cargo build --release --target wasm32-wasip1 -p wordcount
//! wasmjob run target/wasm32-wasip1/release/wordcount.wasm --dir examples/wordcount/data --range 0..=2
//! ```
//!
//! With `--range 0..=3` task 3 ends fatal: there is no `data/part-3.txt`.

use std::io::ErrorKind;

use wasmjob_guest::TaskError;

fn main() {
    wasmjob_guest::run(|task| {
        let path = format!("data/part-{}.txt", task.value());
        let text = std::fs::read(&path).map_err(|err| match err.kind() {
            ErrorKind::NotFound => TaskError::fatal(format!("missing input {path}: {err}")),
            _ => TaskError::retry(format!("reading {path}: {err}")),
        })?;
        let counts = Counts::of(&text);
        Ok(format!(
            "{{\"value\":{},\"file\":\"{path}\",\"lines\":{},\"words\":{},\"bytes\":{}}}\n",
            task.value(),
            counts.lines,
            counts.words,
            counts.bytes
        ))
    })
}

/// What `wc` would say, near enough.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    /// Lines, counting a last line without a newline too (unlike `wc -l`).
    lines: u64,
    /// Runs of bytes between ASCII whitespace.
    words: u64,
    /// Bytes.
    bytes: u64,
}

impl Counts {
    fn of(text: &[u8]) -> Counts {
        let newlines = text.iter().filter(|&&b| b == b'\n').count();
        let unterminated = !text.is_empty() && !text.ends_with(b"\n");
        let words = text
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
            .count();
        Counts {
            lines: (newlines + usize::from(unterminated)) as u64,
            words: words as u64,
            bytes: text.len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(text: &str) -> (u64, u64, u64) {
        let c = Counts::of(text.as_bytes());
        (c.lines, c.words, c.bytes)
    }

    #[test]
    fn counts_lines_words_and_bytes() {
        assert_eq!(counts(""), (0, 0, 0));
        assert_eq!(counts("\n"), (1, 0, 1));
        assert_eq!(counts("one"), (1, 1, 3));
        assert_eq!(counts("one two\nthree\n"), (2, 3, 14));
        assert_eq!(counts("  spaced\t\tout  \n\nlast"), (3, 3, 21));
        assert_eq!(counts("naïve café\n"), (1, 2, 13));
    }

    #[test]
    fn shipped_data_files() {
        for (i, expected) in [(0, 4), (1, 3), (2, 5)] {
            let path = format!("{}/data/part-{i}.txt", env!("CARGO_MANIFEST_DIR"));
            let c = Counts::of(&std::fs::read(&path).unwrap());
            assert_eq!(c.lines, expected, "{path}");
            assert!(c.words > 10, "{path}");
        }
    }
}
