//! The `authgate` binary: everything but argument parsing lives in the library.

fn main() -> std::process::ExitCode {
    authgate::cli::main()
}
