//! `authgate user import FILE`: users exported from the app authgate replaces (docs/http-api.md
//! §7.5), with their password hashes as that app wrote them (argon2, bcrypt, werkzeug
//! `pbkdf2:`/`scrypt:`) or plaintext passwords (hashed with argon2id here).
//!
//! Every line is read and checked before anything is written, so a malformed line stops the
//! import with nothing changed (unless `--skip-bad`). A username that exists (in the store or
//! earlier in the file) is skipped and reported. Imported hashes are kept as they are and
//! replaced by argon2id at their owner's next login. A running gateway learns of the new
//! users from the revocation log within a second (its username map for legacy tokens).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;

use super::exit::EXIT_RUNTIME;
use crate::auth::accounts_rules::{check_role, check_username, MAX_PASSWORD_BYTES};
use crate::auth::hash_formats::StoredHash;
use crate::auth::password::PasswordHasher;
use crate::auth::revocation::fold_username;
use crate::clock::Clock;
use crate::config::Config;
use crate::store::{RevocationKind, StoreError};

/// Exit code when a line was bad (sysexits `EX_DATAERR`).
const EXIT_DATAERR: u8 = 65;

/// How long a "users were added" log entry stays for readers to see (then it is pruned;
/// a reader that starts later reads the users table itself).
const DIRECTORY_ENTRY_LIFE: i64 = 24 * 60 * 60;

/// One user to create. No `Debug`: it may hold a password.
struct Record {
    line: usize,
    username: String,
    secret: Secret,
    roles: Vec<String>,
}

enum Secret {
    /// A stored hash, kept as written.
    Hash(String),
    /// A plaintext password, hashed with argon2id at import.
    Plain(String),
}

/// A JSON line. Unknown fields are ignored, as in request bodies.
#[derive(Deserialize)]
struct JsonRecord {
    username: Option<String>,
    password_hash: Option<String>,
    password: Option<String>,
    roles: Option<Vec<String>>,
}

/// Runs the import of `file` into the store of `config`; the exit code of docs/http-api.md §7.5
/// (0, or 65 when a line was bad; 1 when the store or the file failed).
pub(super) async fn run(config: &Config, file: &Path, skip_bad: bool) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {}: {e}", file.display())),
    };
    let (records, bad) = parse(&text, is_json_lines(file, &text));
    for (line, reason) in &bad {
        eprintln!("authgate: line {line}: {reason}");
    }
    if !bad.is_empty() && !skip_bad {
        eprintln!(
            "authgate: {} bad line(s): nothing imported (use --skip-bad to import the others)",
            bad.len()
        );
        return ExitCode::from(EXIT_DATAERR);
    }
    match import(config, records).await {
        Ok((imported, duplicates)) => {
            println!(
                "imported {imported} user(s); skipped {duplicates} duplicate(s) and {} bad line(s)",
                bad.len()
            );
            if bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_DATAERR)
            }
        }
        Err(e) => fail(e),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("authgate: {message}");
    ExitCode::from(EXIT_RUNTIME)
}

/// Creates the users; returns how many were created and how many skipped as duplicates.
async fn import(config: &Config, records: Vec<Record>) -> Result<(usize, usize), String> {
    let store = crate::store::open(&config.store).await?;
    let hasher = PasswordHasher::new(config.auth.argon2, 1, Duration::from_secs(60))?;
    let (mut imported, mut duplicates) = (0, 0);
    let mut seen = std::collections::HashSet::new();
    for record in records {
        if !seen.insert(fold_username(&record.username)) {
            eprintln!(
                "authgate: line {}: username {:?} appears earlier in the file; skipped",
                record.line, record.username
            );
            duplicates += 1;
            continue;
        }
        let hash = match record.secret {
            Secret::Hash(hash) => hash,
            Secret::Plain(password) => hasher
                .hash(&password)
                .await
                .map_err(|e| format!("hashing failed: {e}"))?,
        };
        let now = Clock::system().now();
        match store
            .create_user(&record.username, &hash, record.roles, now)
            .await
        {
            Ok(_) => imported += 1,
            Err(StoreError::UsernameTaken) => {
                eprintln!(
                    "authgate: line {}: username {:?} exists; skipped",
                    record.line, record.username
                );
                duplicates += 1;
            }
            Err(e) => {
                return Err(format!(
                    "line {}: {e} ({imported} user(s) imported before it)",
                    record.line
                ))
            }
        }
    }
    if imported > 0 {
        let now = Clock::system().now();
        store
            .append_revocation(RevocationKind::Directory, now + DIRECTORY_ENTRY_LIFE)
            .await
            .map_err(|e| format!("users imported, but running gateways were not told: {e}"))?;
    }
    Ok((imported, duplicates))
}

/// JSON lines when the file is named so, or starts with `{`; CSV otherwise.
fn is_json_lines(file: &Path, text: &str) -> bool {
    let by_name = file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "jsonl" | "ndjson" | "json"));
    by_name || text.trim_start().starts_with('{')
}

/// The records of `text`, and the bad lines with their reasons.
fn parse(text: &str, json_lines: bool) -> (Vec<Record>, Vec<(usize, String)>) {
    let rows = if json_lines {
        json_rows(text)
    } else {
        csv_rows(text)
    };
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for (line, row) in rows {
        match row.and_then(|r| check(line, r)) {
            Ok(record) => records.push(record),
            Err(reason) => bad.push((line, reason)),
        }
    }
    (records, bad)
}

fn json_rows(text: &str) -> Vec<(usize, Result<JsonRecord, String>)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let parsed = serde_json::from_str::<JsonRecord>(l)
                .map_err(|e| format!("not a JSON record: {e}"));
            (i + 1, parsed)
        })
        .collect()
}

fn csv_rows(text: &str) -> Vec<(usize, Result<JsonRecord, String>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        // a line may leave out its trailing roles field
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return vec![(1, Err(format!("unreadable header row: {e}")))],
    };
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (user, hash, plain, roles) = (
        column("username"),
        column("password_hash"),
        column("password"),
        column("roles"),
    );
    let Some(user) = user.filter(|_| hash.is_some() != plain.is_some()) else {
        return vec![(
            1,
            Err("the header row must be username,password_hash,roles or \
                 username,password,roles"
                .into()),
        )];
    };
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // Line numbers count the header row; a quoted field may span lines, which the
        // record's own position tells.
        let line = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i + 2, |p| usize::try_from(p.line()).unwrap_or(i + 2));
        let row = record
            .map_err(|e| format!("not a CSV record: {e}"))
            .map(|r| {
                let field = |at: Option<usize>| at.and_then(|a| r.get(a)).map(str::to_owned);
                JsonRecord {
                    username: field(Some(user)),
                    password_hash: field(hash),
                    password: field(plain),
                    roles: field(roles).map(|text| {
                        text.split(';')
                            .map(str::trim)
                            .filter(|r| !r.is_empty())
                            .map(str::to_owned)
                            .collect()
                    }),
                }
            });
        rows.push((line, row));
    }
    rows
}

/// The rules a line must pass: a valid username, exactly one of a known hash and a
/// plaintext password, valid role names.
fn check(line: usize, row: JsonRecord) -> Result<Record, String> {
    let username = row.username.unwrap_or_default();
    check_username(&username).map_err(|m| format!("username: {m}"))?;
    let secret = match (row.password_hash, row.password) {
        (Some(hash), None) if !hash.is_empty() => {
            let parsed = StoredHash::parse(&hash).map_err(|m| format!("password_hash: {m}"))?;
            if !parsed.is_supported() {
                return Err("password_hash: a PHC string of an algorithm other than argon2".into());
            }
            Secret::Hash(hash)
        }
        (None, Some(password)) if !password.is_empty() => {
            if password.len() > MAX_PASSWORD_BYTES {
                return Err("password: longer than 1024 bytes".into());
            }
            Secret::Plain(password)
        }
        _ => return Err("give exactly one of password_hash and password".into()),
    };
    let roles = row.roles.unwrap_or_default();
    for role in &roles {
        check_role(role)?;
    }
    Ok(Record {
        line,
        username,
        secret,
        roles,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const BCRYPT: &str = "$2b$04$abcdefghijklmnopqrstuu5Yw0bPbC2S3WqTOFeSTiKLZB3v7yGxC";

    #[test]
    fn csv_with_hashes_or_plaintext_and_roles_parses() {
        let text = format!(
            "username,password_hash,roles\nalice@example.com,{BCRYPT},admin;ops\nbob,pbkdf2:sha256:1000$s$\
             {}\n",
            "00".repeat(32)
        );
        let (records, bad) = parse(&text, false);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].roles, ["admin", "ops"]);
        assert_eq!(records[1].line, 3);
        let plain = "username,password,roles\n\"carol\",\"a, \"\"quoted\"\" pw\",\n";
        let (records, bad) = parse(plain, false);
        assert!(bad.is_empty(), "{bad:?}");
        assert!(matches!(&records[0].secret, Secret::Plain(p) if p == "a, \"quoted\" pw"));
        assert!(records[0].roles.is_empty());
    }

    #[test]
    fn json_lines_parse_and_bad_lines_are_reported_by_number() {
        let text = format!(
            "{{\"username\":\"alice\",\"password_hash\":\"{BCRYPT}\",\"roles\":[\"ops\"]}}\n\n\
             {{\"username\":\"bad name!\",\"password\":\"x\"}}\n\
             {{\"username\":\"dave\",\"password\":\"pw\",\"password_hash\":\"{BCRYPT}\"}}\n\
             {{\"username\":\"erin\",\"password_hash\":\"$pbkdf2-sha256$i=1$c2FsdA$aGFzaA\"}}\nnot json\n"
        );
        let (records, bad) = parse(&text, true);
        assert_eq!(records.len(), 1);
        let lines: Vec<usize> = bad.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
    }

    #[test]
    fn a_csv_without_the_expected_header_is_refused() {
        let (records, bad) = parse("name,hash\nalice,x\n", false);
        assert!(records.is_empty());
        assert_eq!(bad.len(), 1);
    }
}
