//! The command line: `serve` (the default), `check-config`, `demo` and the operator's `user`
//! commands, with the exit codes of HTTP-API.md §6 (0 clean, 1 runtime failure, 2 usage,
//! 64 bad config — always before any port is bound).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{App, StartError};
use crate::config::{self, Config};

/// Exit code for a bad configuration (EX_CONFIG of sysexits.h).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for a runtime failure or a drain that ran out of time.
pub const EXIT_RUNTIME: u8 = 1;

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
}

/// `authgate user ...`: operator commands on the store.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from a prompt, or from standard input when it is
    /// not a terminal (one trailing newline removed) — never from an argument.
    Add {
        /// Username (1-64 characters of A-Z a-z 0-9 . _ - @).
        name: String,
        /// Role to grant; repeat for several.
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// List users with their roles.
    List,
    /// Delete a user and revoke every token of theirs.
    Delete {
        /// Username.
        name: String,
    },
    /// Grant a role (it applies from the user's next token).
    Grant {
        /// Username.
        name: String,
        /// Role name.
        role: String,
    },
    /// Revoke a role (it applies from the user's next token).
    Revoke {
        /// Username.
        name: String,
        /// Role name.
        role: String,
    },
    /// Revoke every session of a user: all their tokens stop working within a second.
    LogoutAll {
        /// Username.
        name: String,
    },
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve(&cli.config),
        Some(Command::CheckConfig) => check_config(&cli.config),
        Some(Command::Demo {
            listen,
            admin_listen,
            data_dir,
        }) => crate::demo::run(listen, admin_listen, &data_dir),
        Some(Command::User(cmd)) => crate::operator::run(&cli.config, cmd),
    }
}

/// Loads the configuration, or prints why not.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("authgate: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn check_config(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match App::check(&config) {
        Ok(()) => {
            println!("{}: configuration is valid", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => report_start_error(&e),
    }
}

/// The multi-threaded tokio runtime the gateway runs on, or the exit code for failing to make it.
pub fn multi_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("authgate: cannot start the runtime: {e}");
            ExitCode::from(EXIT_RUNTIME)
        })
}

fn serve(path: &Path) -> ExitCode {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _log = crate::telemetry::init(&config.log);
    let runtime = match multi_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let path = path.to_path_buf();
    runtime.block_on(async move {
        let app = match App::build(config).await {
            Ok(app) => app,
            Err(e) => return report_start_error(&e),
        };
        crate::signals::install(app.shutdown_handle(), app.reload_handle(), path);
        match app.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "gateway stopped with an error");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

/// Prints a start failure and maps it to its exit code.
pub fn report_start_error(e: &StartError) -> ExitCode {
    eprintln!("authgate: {e}");
    match e {
        StartError::Config(_) => ExitCode::from(EXIT_CONFIG),
        StartError::Runtime(_) => ExitCode::from(EXIT_RUNTIME),
    }
}
