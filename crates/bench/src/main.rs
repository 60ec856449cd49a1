//! The `salesmetrics-bench` binary: parses the command line and runs the bench.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = salesmetrics_bench::BenchArgs::parse();
    match salesmetrics_bench::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
