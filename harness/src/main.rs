//! `harness`: see `harness --help`.

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = harness::cli::Cli::parse();
    // A signal ends the run the same way for SIGINT, SIGTERM and SIGHUP:
    // the run's future is dropped, and the stack guards' Drop tears the
    // containers, network and run directory down.
    let code = tokio::select! {
        code = harness::cli::run(cli) => code,
        code = harness::signals::interrupted() => {
            // A deploy never removes the operator's containers: it says
            // where its state is and how to roll back.
            match harness::prod::state::in_progress() {
                Some((dir, step)) => {
                    eprintln!("{}", harness::prod::state::interrupted_message(&dir, step))
                }
                None => eprintln!("harness: interrupted; removing the containers it started"),
            }
            code
        }
    };
    std::process::exit(code);
}
