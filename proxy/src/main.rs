//! The `goproxy` binary: everything lives in the library (`proxy::cli`).

/// mimalloc instead of glibc's malloc: hyper's read buffer for a ~90 KB
/// request body is a 128 KB allocation, which glibc serves with a fresh
/// `mmap` (33 page faults) and returns with `munmap` or a trim on every
/// request; mimalloc keeps and reuses it, and its small allocations (one
/// handful per request and per SSE event) are cheaper too.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    proxy::cli::main()
}
