//! `rpc-bench`: see `rpc-bench --help` and the `bench` crate docs.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    match bench::cli::execute(bench::cli::Cli::parse(), &command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rpc-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
