//! `harness`: see `harness --help`.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = harness::cli::Cli::parse();
    // Ctrl-C ends the run; the stack guards' Drop tears the containers down
    // as the future is dropped.
    let code = tokio::select! {
        code = harness::cli::run(cli) => code,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("harness: interrupted; removing the containers it started");
            130
        }
    };
    std::process::exit(code);
}
