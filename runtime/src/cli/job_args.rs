//! The arguments that describe a job, shared by every command that creates one, and how they
//! become a manifest and a [`JobSpec`].

use super::limit_args::JobLimits;
use anyhow::{Context, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::Path;
use wasmjob::manifest::{LocalManifest, ManifestBuilder, ManifestPath, Mount};
use wasmjob::range::RangeSet;
use wasmjob::spec::{self, JobSpec, Priority};

/// What a job is made of, besides its module.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The task values: `1..=1000`, `0..10,20..30`, `7`.
    #[arg(long, short)]
    pub range: RangeSet,

    /// A name for the job (default: the module's file name without its extension).
    #[arg(long)]
    pub name: Option<String>,

    /// A file the tasks read, as `PATH` (named by its file name) or `PATH:AS`. Repeatable.
    #[arg(long = "file", value_name = "PATH[:AS]")]
    pub files: Vec<Mount>,

    /// A directory the tasks read, recursively, as `PATH` (named by its last component) or
    /// `PATH:AS`. Repeatable.
    #[arg(long = "dir", value_name = "PATH[:AS]")]
    pub dirs: Vec<Mount>,

    /// The tasks' working directory: a directory of the manifest.
    #[arg(long, default_value = ".")]
    pub workdir: ManifestPath,

    /// Metadata passed to every task as `WASMJOB_META_KEY`. Repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    pub metadata: Vec<(String, String)>,

    /// Priority: 0-255 or lowest, background, default, high, maximum.
    #[arg(long, default_value_t = Priority::DEFAULT)]
    pub priority: Priority,

    /// How many times a task that ends in error is tried again.
    #[arg(long, default_value_t = spec::DEFAULT_MAX_RETRIES)]
    pub max_retries: u32,

    /// How many attempts of a task may be lost (its worker died or went silent) before the task
    /// is quarantined.
    #[arg(long, default_value_t = spec::DEFAULT_MAX_LOST)]
    pub max_lost: u32,

    /// The most tasks of this job running at once, across all workers.
    #[arg(long)]
    pub max_concurrency: Option<u32>,

    #[command(flatten)]
    pub limits: JobLimits,
}

fn parse_meta(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {arg:?}")),
    }
}

/// Fails, explaining the syntax, when a `--file` or `--dir` argument names no host path and
/// looks like `PATH:/AS`: an `AS` starting with `/` is not split off (see
/// [`wasmjob::manifest::parse_mount`]), so the whole argument was taken for the host path.
fn misplaced_as(flag: &str, mounts: &[Mount]) -> anyhow::Result<()> {
    for mount in mounts {
        let host = mount.host.to_string_lossy();
        let Some((path, at)) = host.rsplit_once(':') else {
            continue;
        };
        if !at.starts_with(['/', '\\']) || std::fs::symlink_metadata(&mount.host).is_ok() {
            continue;
        }
        let name = at.trim_start_matches(['/', '\\']);
        let name = if name.is_empty() { "NAME" } else { name };
        bail!(
            "{flag} {host}: no such file or directory. {flag} takes PATH or PATH:AS, where AS, \
             the name inside the job's manifest, is a relative path: write {flag} {path}:{name} \
             (an AS starting with / is read as part of PATH)"
        );
    }
    Ok(())
}

/// Fails naming the file unless it starts like a WebAssembly module: the binary magic `\0asm`
/// with version 1, or WebAssembly text. This costs reading a few bytes, so a mistyped or
/// corrupt module is refused before anything is uploaded. The module is not validated in full:
/// that takes a pass over all of it with the workers' engine settings, which a submitter does
/// not know; a module that starts well but does not compile fails its tasks as fatal.
fn check_module(module: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    use wasmjob::module_header::HEAD_BYTES;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    std::fs::File::open(module)
        .and_then(|file| file.take(HEAD_BYTES as u64).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", module.display()))?;
    wasmjob::module_header::check(&head)
        .with_context(|| format!("{} is not a WebAssembly module", module.display()))
}

impl JobArgs {
    /// Hashes the module and the files into a manifest and builds the job's spec, checked.
    pub fn build(&self, module: &Path) -> anyhow::Result<(LocalManifest, JobSpec)> {
        let file_name = module
            .file_name()
            .and_then(|name| name.to_str())
            .with_context(|| format!("{} is not a module file", module.display()))?;
        let script = ManifestPath::new(file_name).with_context(|| {
            format!("the module's file name {file_name:?} cannot be a manifest path")
        })?;
        check_module(module)?;
        misplaced_as("--file", &self.files)?;
        misplaced_as("--dir", &self.dirs)?;
        let mut builder = ManifestBuilder::new();
        builder.add_file(module, script.clone());
        for mount in &self.files {
            builder.add_file(&mount.host, mount.at.clone());
        }
        for mount in &self.dirs {
            builder.add_dir(&mount.host, mount.at.clone());
        }
        let local = builder.build().context("cannot build the job's manifest")?;

        let mut metadata = BTreeMap::new();
        for (key, value) in &self.metadata {
            if metadata.insert(key.clone(), value.clone()).is_some() {
                bail!("--meta {key} is given twice");
            }
        }
        let stem = module.file_stem().and_then(|stem| stem.to_str());
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| stem.unwrap_or(file_name).to_owned());
        let mut spec = JobSpec::new(name, local.manifest.clone(), script, self.range.clone());
        spec.workdir = self.workdir.clone();
        spec.metadata = metadata;
        spec.priority = self.priority;
        spec.max_retries = self.max_retries;
        spec.max_lost = self.max_lost;
        spec.max_concurrency = self.max_concurrency;
        spec.limits = self.limits.0;
        spec.validate()?;
        Ok((local, spec))
    }
}
