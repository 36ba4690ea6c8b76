//! The `authgate` binary: everything but argument parsing lives in the library.

/// jemalloc rather than glibc's allocator. A proxied request allocates about twenty times,
/// four of them buffers of 6 to 8 KiB (hyper's header arrays and read buffers) that glibc
/// serves from its bins rather than its per-thread cache; jemalloc's thread cache holds them.
/// 5 % fewer instructions per proxied request under callgrind, and the memory targets still
/// met (docs/benchmarks.md). mimalloc saved less and missed them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    authgate::cli::main()
}
