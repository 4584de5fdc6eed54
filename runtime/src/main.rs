//! The `wasmjob` command line: one binary, one subcommand per action. See `wasmjob --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
