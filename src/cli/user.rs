//! `authgate user ...`: the operator's commands on the store. They open the configured store
//! directly — beside a running gateway if need be — and write revocations to its log, which
//! a running gateway reads within a second.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;

use super::exit::{current_thread_runtime, load_config, EXIT_RUNTIME};
use crate::auth::accounts_rules::{check_password, check_role, check_username};
use crate::auth::limiter;
use crate::auth::password::PasswordHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::sessions::{operations, rules};
use crate::store::{RevocationKind, Store, StoreError, User};

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
    /// List users with their roles (and whether disabled).
    List {
        /// Print one JSON array of {id, username, roles, created_at, disabled}.
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password, read from a prompt, or from standard input when it is not a
    /// terminal (one trailing newline removed). Every session of the user is revoked.
    Passwd {
        /// Username.
        name: String,
    },
    /// Disable a user: every session is revoked and logins answer 401 invalid_credentials,
    /// exactly like a wrong password, until `user enable`.
    Disable {
        /// Username.
        name: String,
    },
    /// Enable a disabled user again (they log in anew; nothing old is restored).
    Enable {
        /// Username.
        name: String,
    },
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
    /// Import users exported from another app: CSV with a header row
    /// (`username,password_hash,roles` or `username,password,roles`, roles separated by `;`)
    /// or JSON lines (`username`, `password_hash` or `password`, `roles` as an array). Hashes:
    /// argon2, bcrypt, werkzeug pbkdf2 and scrypt; they become argon2id at each user's next
    /// login. Exit 0 when every line was imported or skipped as a duplicate, 65 otherwise.
    Import {
        /// The file (`.jsonl`, `.ndjson` or `.json`, or starting with `{`: JSON lines).
        file: std::path::PathBuf,
        /// Import the good lines even when some are malformed (still exit 65).
        #[arg(long)]
        skip_bad: bool,
    },
    /// Clear a username's failed-login counts (per username, and per username and address),
    /// so its owner can log in again before the window passes. Address counts stay.
    Unlock {
        /// Username (need not exist: unknown names are counted too).
        name: String,
    },
}

/// Runs one `user` command against the store of the config at `config_path`.
pub(super) fn run(config_path: &Path, cmd: UserCommand) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let runtime = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if let UserCommand::Import { file, skip_bad } = &cmd {
        return runtime.block_on(super::import::run(&config, file, *skip_bad));
    }
    match runtime.block_on(execute(&config, cmd)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("authgate: {message}");
    ExitCode::from(EXIT_RUNTIME)
}

async fn execute(config: &Config, cmd: UserCommand) -> Result<String, String> {
    let store = crate::store::open(&config.store).await?;
    let now = Clock::system().now();
    match cmd {
        UserCommand::Add { name, roles } => add(config, &store, &name, roles, now).await,
        UserCommand::List { json } => {
            let users = store.list_users().await.map_err(text)?;
            if json {
                list_json(&users)
            } else {
                Ok(list(&users))
            }
        }
        UserCommand::Passwd { name } => passwd(config, &store, &name, now).await,
        UserCommand::Disable { name } => {
            let user = find(&store, &name).await?;
            // Tokens the old Flask app minted for them end too, before the disable itself.
            operations::cut_off_legacy_tokens(store.as_ref(), &user.username, now)
                .await
                .map_err(text)?;
            let sweep = rules::sweep(None, now, config.tokens.leeway);
            let revoked = store
                .set_disabled(user.id, true, sweep)
                .await
                .map_err(text)?;
            Ok(format!(
                "{}: disabled; {} session(s) revoked, logins refused until `user enable`",
                user.username,
                revoked.len()
            ))
        }
        UserCommand::Enable { name } => {
            let user = find(&store, &name).await?;
            let sweep = rules::sweep(None, now, config.tokens.leeway);
            store
                .set_disabled(user.id, false, sweep)
                .await
                .map_err(text)?;
            Ok(format!("{}: enabled; they can log in again", user.username))
        }
        UserCommand::Delete { name } => {
            let user = find(&store, &name).await?;
            operations::delete_user(store.as_ref(), user.id, now, config.tokens.refresh_ttl)
                .await
                .map_err(text)?;
            Ok(format!(
                "deleted user {} (id {}); every token of theirs is revoked",
                user.username, user.id
            ))
        }
        UserCommand::Grant { name, role } => {
            check_role(&role)?;
            let changed = store
                .grant_role(&name, &role)
                .await
                .map_err(|e| no_such(&name, e))?;
            Ok(format!(
                "{name}: role {role} {}; it applies from their next token",
                if changed {
                    "granted"
                } else {
                    "was already held"
                }
            ))
        }
        UserCommand::Revoke { name, role } => {
            let changed = store
                .revoke_role(&name, &role)
                .await
                .map_err(|e| no_such(&name, e))?;
            Ok(format!(
                "{name}: role {role} {}; it applies from their next token",
                if changed { "revoked" } else { "was not held" }
            ))
        }
        UserCommand::LogoutAll { name } => {
            let user = find(&store, &name).await?;
            let revoked =
                operations::revoke_all_sessions(store.as_ref(), &user, now, config.tokens.leeway)
                    .await
                    .map_err(text)?;
            let sessions = revoked
                .iter()
                .filter(|e| matches!(e.kind, RevocationKind::Session(_)))
                .count();
            Ok(format!(
                "{}: {sessions} session(s) revoked, and any legacy tokens",
                user.username,
            ))
        }
        UserCommand::Import { .. } => Err("the import runs on its own".into()),
        UserCommand::Unlock { name } => {
            let cleared = limiter::unlock(store.as_ref(), &name).await.map_err(text)?;
            Ok(format!(
                "{name}: failed-login counts cleared ({cleared} counter(s) had failures)"
            ))
        }
    }
}

async fn add(
    config: &Config,
    store: &Arc<dyn Store>,
    name: &str,
    roles: Vec<String>,
    now: i64,
) -> Result<String, String> {
    check_username(name).map_err(str::to_owned)?;
    for role in &roles {
        check_role(role)?;
    }
    let password = read_password()?;
    check_password(&password, config.auth.min_password_length).map_err(str::to_owned)?;
    let hash = hash_password(config, &password).await?;
    let user = store
        .create_user(name, &hash, roles, now)
        .await
        .map_err(|e| match e {
            StoreError::UsernameTaken => format!("username {name:?} is taken"),
            other => other.to_string(),
        })?;
    Ok(format!(
        "created user {} (id {}) with roles [{}]",
        user.username,
        user.id,
        user.roles.join(", ")
    ))
}

async fn passwd(
    config: &Config,
    store: &Arc<dyn Store>,
    name: &str,
    now: i64,
) -> Result<String, String> {
    let user = find(store, name).await?;
    let password = read_password()?;
    check_password(&password, config.auth.min_password_length).map_err(str::to_owned)?;
    let hash = hash_password(config, &password).await?;
    // Like a password change through the API: legacy tokens end with the old password.
    operations::cut_off_legacy_tokens(store.as_ref(), &user.username, now)
        .await
        .map_err(text)?;
    let sweep = rules::sweep(None, now, config.tokens.leeway);
    let revoked = store
        .set_password(user.id, &hash, sweep)
        .await
        .map_err(text)?;
    Ok(format!(
        "{}: password changed; {} session(s) revoked",
        user.username,
        revoked.len()
    ))
}

/// The argon2id hash of `password` under `[auth] argon2`, on a one-slot pool.
async fn hash_password(config: &Config, password: &str) -> Result<String, String> {
    let hasher = PasswordHasher::new(config.auth.argon2, 1, Duration::from_secs(60))?;
    hasher
        .hash(password)
        .await
        .map_err(|e| format!("hashing failed: {e}"))
}

/// From a prompt on a terminal (asked twice), otherwise all of standard input with one
/// trailing newline removed.
fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Repeat password: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the passwords differ".into());
        }
        return Ok(first);
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    if let Some(stripped) = input.strip_suffix('\n') {
        let stripped = stripped.strip_suffix('\r').unwrap_or(stripped);
        input.truncate(stripped.len());
    }
    Ok(input)
}

/// `user list --json`: created_at as RFC 3339, roles as an array.
fn list_json(users: &[User]) -> Result<String, String> {
    let rows: Vec<serde_json::Value> = users
        .iter()
        .map(|u| {
            serde_json::json!({
                "id": u.id,
                "username": u.username,
                "roles": u.roles,
                "created_at": rfc3339(u.created_at),
                "disabled": u.disabled,
            })
        })
        .collect();
    serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())
}

fn rfc3339(epoch_secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(epoch_secs).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

fn list(users: &[User]) -> String {
    let mut out = format!(
        "{:>6}  {:<32}  {:<20}  roles",
        "id", "username", "created_at"
    );
    for u in users {
        out.push_str(&format!(
            "\n{:>6}  {:<32}  {:<20}  {}{}",
            u.id,
            u.username,
            rfc3339(u.created_at),
            u.roles.join(","),
            if u.disabled { "  (disabled)" } else { "" }
        ));
    }
    out
}

async fn find(store: &Arc<dyn Store>, name: &str) -> Result<User, String> {
    match store.user_by_name(name).await.map_err(text)? {
        Some(u) => Ok(u.user),
        None => Err(format!("no user named {name:?}")),
    }
}

fn no_such(name: &str, e: StoreError) -> String {
    match e {
        StoreError::NotFound => format!("no user named {name:?}"),
        other => other.to_string(),
    }
}

fn text(e: StoreError) -> String {
    e.to_string()
}
