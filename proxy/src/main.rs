//! The `goproxy` binary: everything lives in the library (`proxy::cli`).

fn main() -> std::process::ExitCode {
    proxy::cli::main()
}
