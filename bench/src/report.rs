//! The benchmark's table: one row per figure, with what it is compared against and its target,
//! printed as it is measured and written as Markdown with the machine it ran on; and the tables
//! of their own columns (with their plots) that some measurements add after it.

use crate::Options;
use std::fmt::Write as _;
use std::path::Path;

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub what: String,
    /// wasmjob's figure.
    pub wasmjob: String,
    /// The figure it is compared with, if any.
    pub against: String,
    /// The target, in words.
    pub target: String,
    /// Whether the target is met; `None` where there is no target.
    pub met: Option<bool>,
}

/// A table with columns of its own, in its own section after the results.
#[derive(Debug, Clone)]
pub struct Table {
    /// Its section's title.
    pub title: String,
    /// Its columns' names.
    pub header: Vec<String>,
    /// Its rows, a cell per column.
    pub rows: Vec<Vec<String>>,
    /// Lines under it, on how it was measured and how to read it.
    pub notes: Vec<String>,
    /// A chart of it, drawn under it.
    pub plot: Option<Plot>,
}

/// An SVG chart, written as `plots/NAME.svg` beside the report.
#[derive(Debug, Clone)]
pub struct Plot {
    /// Its file's name, without `.svg`.
    pub name: String,
    /// The SVG document.
    pub svg: String,
}

/// Every row so far, and how the run was made.
#[derive(Debug)]
pub struct Report {
    rows: Vec<Row>,
    tables: Vec<Table>,
    notes: Vec<String>,
    quick: bool,
}

impl Report {
    pub fn new(options: &Options) -> Self {
        Report {
            rows: Vec::new(),
            tables: Vec::new(),
            notes: Vec::new(),
            quick: options.quick,
        }
    }

    /// Adds a row and prints it at once.
    pub fn row(
        &mut self,
        what: &str,
        wasmjob: String,
        against: String,
        target: &str,
        met: Option<bool>,
    ) {
        let mark = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!("{what:<58} {wasmjob:>22}  {against:<40} {target} {mark}");
        self.rows.push(Row {
            what: what.to_owned(),
            wasmjob,
            against,
            target: target.to_owned(),
            met,
        });
    }

    /// Adds a note printed under the table.
    pub fn note(&mut self, note: String) {
        println!("  note: {note}");
        self.notes.push(note);
    }

    /// Adds a table and prints it at once, its columns aligned.
    pub fn table(&mut self, table: Table) {
        let widths: Vec<usize> = (0..table.header.len())
            .map(|column| {
                std::iter::once(&table.header)
                    .chain(&table.rows)
                    .filter_map(|row| row.get(column))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        println!("\n{}", table.title);
        println!("{}", line(&table.header));
        for row in &table.rows {
            println!("{}", line(row));
        }
        for note in &table.notes {
            println!("  note: {note}");
        }
        self.tables.push(table);
    }

    /// Writes the Markdown report, and its plots into `plots/` beside it.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut out = String::new();
        writeln!(out, "# Benchmarks\n")?;
        writeln!(
            out,
            "Written by `scripts/bench`{} (the program is [bench/src](bench/src)). Figures are \
             from one run on the machine below; ratios carry across machines, absolute figures \
             do not.\n",
            if self.quick {
                " --quick (small counts: a check, not figures to quote)"
            } else {
                ""
            }
        )?;
        writeln!(out, "## Machine\n")?;
        for line in machine() {
            writeln!(out, "- {line}")?;
        }
        writeln!(out, "\n## Results\n")?;
        writeln!(out, "| measure | wasmjob | compared with | target | |")?;
        writeln!(out, "| --- | --- | --- | --- | --- |")?;
        for row in &self.rows {
            let mark = match row.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                row.what, row.wasmjob, row.against, row.target, mark
            )?;
        }
        let plots = path.parent().unwrap_or(Path::new("")).join("plots");
        for table in &self.tables {
            writeln!(out, "\n## {}\n", table.title)?;
            writeln!(out, "| {} |", table.header.join(" | "))?;
            writeln!(out, "|{}", " --- |".repeat(table.header.len()))?;
            for row in &table.rows {
                writeln!(out, "| {} |", row.join(" | "))?;
            }
            if let Some(plot) = &table.plot {
                std::fs::create_dir_all(&plots)?;
                std::fs::write(plots.join(format!("{}.svg", plot.name)), &plot.svg)?;
                writeln!(out, "\n![{0}](plots/{0}.svg)", plot.name)?;
            }
            if !table.notes.is_empty() {
                writeln!(out)?;
                for note in &table.notes {
                    writeln!(out, "- {note}")?;
                }
            }
        }
        if !self.notes.is_empty() {
            writeln!(out, "\n## Notes\n")?;
            for note in &self.notes {
                writeln!(out, "- {note}")?;
            }
        }
        std::fs::write(path, out)?;
        Ok(())
    }
}

/// The commit measured, `-dirty` when the working tree has changes, or `unknown` outside git.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(wasmjob_test_support::workspace_root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match (
        git(&["rev-parse", "--short", "HEAD"]),
        git(&["status", "--porcelain"]),
    ) {
        (Some(head), Some(changes)) if !changes.is_empty() => format!("{head}-dirty"),
        (Some(head), _) => head,
        (None, _) => "unknown".into(),
    }
}

/// What the machine is: processor, cores, memory, kernel, toolchain, Redis, commit, date.
fn machine() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb as f64 / (1 << 20) as f64)
        });
    let command = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    vec![
        format!("processor: {model}"),
        format!(
            "cores: {}",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        format!("memory: {memory}"),
        format!("kernel: {}", command("uname", &["-sr"])),
        format!("rustc: {}", command("rustc", &["--version"])),
        format!("redis: {}", command("redis-server", &["--version"])),
        format!("commit: {}", commit()),
        format!("date: {}", command("date", &["-u", "+%Y-%m-%d %H:%M UTC"])),
    ]
}
