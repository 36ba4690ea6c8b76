//! The command line of the `authgate` binary: `serve` (the default), `check-config`, `demo`
//! and the operator's `user` commands, with the exit codes of docs/http-api.md §6 (0 clean,
//! 1 runtime failure, 2 usage, 64 bad config — always before any port is bound).
//!
//! `main.rs` only calls [`main`]. Each command has its file; `exit` holds what they share
//! (exit codes, config loading, the runtime), `open_files` raises the open-files limit at
//! start, `signals` turns process signals into calls on the gateway's handles, and `echo_upstream` is the demo's upstream (private: not part of the
//! library's API; the tests and the example compile the same file on their own).

pub mod demo;
mod echo_upstream;
mod exit;
mod explain;
mod healthcheck;
mod import;
mod open_files;
mod serve;
mod signals;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub use exit::{EXIT_CONFIG, EXIT_RUNTIME};
pub use explain::ExplainArgs;
pub use healthcheck::HealthcheckArgs;
pub use user::UserCommand;

/// authgate: an authentication gateway in front of HTTP services.
///
/// It serves the account endpoints itself (register, login, refresh, fresh, logout, me,
/// password) and forwards every other request to the upstream its route table names, after
/// checking the bearer token the route asks for.
#[derive(Debug, Parser)]
#[command(name = "authgate", version, about, long_about = None)]
pub struct Cli {
    /// The TOML configuration file (config/authgate.toml documents every key).
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        default_value = "config/authgate.toml"
    )]
    pub config: PathBuf,

    /// What to do; without a command, `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway until SIGTERM or Ctrl-C (the default command).
    Serve,
    /// Check the configuration as a start would, without binding ports or creating files;
    /// exits 0 when valid and 64 with a message naming the key when not.
    CheckConfig,
    /// Start the gateway on an embedded SQLite database with the echo upstream in front of it,
    /// and print a curl walkthrough.
    Demo {
        /// Public listener of the demo gateway.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Admin listener of the demo gateway.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: std::net::SocketAddr,
        /// Folder for the demo's database and secret.
        #[arg(long, default_value = "demo-data")]
        data_dir: PathBuf,
    },
    /// Manage users in the configured store; works beside a running gateway, which picks up
    /// revocations within a second.
    #[command(subcommand)]
    User(UserCommand),
    /// Explain offline what the gateway would do with one request: the normalised path, the
    /// matching route (or why none), what the upstream would receive, and each check with its
    /// result for the given token. Revocations are read from the store when reachable.
    Explain(ExplainArgs),
    /// Print a shell completion script: `authgate completions bash > /etc/bash_completion.d/authgate`.
    Completions {
        /// The shell (bash, zsh, fish, elvish, powershell).
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `authgate man > authgate.1`.
    Man,
    /// Ask the admin listener's /healthz; exit 0 when it answers 200 (for container
    /// HEALTHCHECKs in images without curl).
    Healthcheck(HealthcheckArgs),
}

/// The manual page of `authgate` in roff (options, and each subcommand with its summary),
/// generated from the same definitions as `--help`.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve::serve(&cli.config),
        Some(Command::CheckConfig) => serve::check_config(&cli.config),
        Some(Command::Demo {
            listen,
            admin_listen,
            data_dir,
        }) => demo::run(listen, admin_listen, &data_dir),
        Some(Command::User(cmd)) => user::run(&cli.config, cmd),
        Some(Command::Explain(args)) => explain::run(&cli.config, args),
        Some(Command::Completions { shell }) => {
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "authgate", &mut script);
            print_bytes(&script)
        }
        Some(Command::Healthcheck(args)) => healthcheck::run(&cli.config, args),
        Some(Command::Man) => match man_page() {
            Ok(page) => print_bytes(&page),
            Err(e) => {
                eprintln!("authgate: cannot render the manual page: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
    }
}

/// Writes `bytes` to standard output; a closed pipe is an error, not a panic.
fn print_bytes(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate: cannot write to standard output: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
