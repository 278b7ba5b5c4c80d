//! `rpc-bench`: see `rpc-bench --help` and the `bench` crate docs.

use std::process::ExitCode;

use bench::alloc_counter::CountingAlloc;
use tracing_subscriber::EnvFilter;

/// Counts heap allocations for the records' `allocs_per_op` (see `bench::alloc_counter`).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let cli = match bench::config_file::parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(bench::config_file::ConfigError::Cli(e)) => e.exit(),
        Err(error) => {
            eprintln!("rpc-bench: {error}");
            return ExitCode::from(2);
        }
    };
    match bench::cli::execute(cli, &command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rpc-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
