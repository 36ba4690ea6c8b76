//! `authgate demo`: a newcomer's first run. Starts the echo upstream and a gateway on an
//! embedded SQLite database in front of it — a public, a token and a fresh route — and prints
//! a curl walkthrough that works exactly as printed (a test runs it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::echo_upstream;
use super::exit::{
    log_settings, multi_thread_runtime, report_start_error, EXIT_CONFIG, EXIT_RUNTIME,
};
use super::signals;
use crate::app::App;
use crate::config;

/// Marks the start of the walkthrough in the demo's output.
pub const WALKTHROUGH_START: &str = "----- walkthrough (copy into a shell) -----";
/// Marks its end.
pub const WALKTHROUGH_END: &str = "----- end of walkthrough -----";

/// Runs the demo until Ctrl-C.
pub fn run(listen: SocketAddr, admin: SocketAddr, data_dir: &Path) -> ExitCode {
    let runtime = match multi_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(serve(listen, admin, data_dir))
}

async fn serve(listen: SocketAddr, admin: SocketAddr, data_dir: &Path) -> ExitCode {
    let stop_echo = CancellationToken::new();
    let echo = match echo_upstream::spawn(([127, 0, 0, 1], 0).into(), stop_echo.clone()).await {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("authgate: cannot start the echo upstream: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let text = demo_config(listen, admin, data_dir, echo);
    let config = match config::parse(Path::new("<demo>"), &text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authgate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let log = match log_settings(&config) {
        Ok(log) => log,
        Err(code) => return code,
    };
    let _log = crate::telemetry::init(&log);
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => return report_start_error(&e),
    };
    let base = format!("http://{}", app.public_addr());
    let admin_url = app
        .admin_addr()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    announce(&format!(
        "authgate demo: gateway on {base}, admin on {admin_url}, echo upstream on http://{echo}\n\
         data (SQLite database and signing secret) in {}\n\
         Routes: /public (no token), /api (access token), /admin (fresh token, at most 5 minutes old)\n\n\
         {WALKTHROUGH_START}\n{}{WALKTHROUGH_END}\n\n\
         Ctrl-C stops the demo.\n",
        data_dir.display(),
        walkthrough(&base, &admin_url)
    ));
    signals::install(
        app.shutdown_handle(),
        app.reload_handle(),
        Path::new("<demo>").to_path_buf(),
    );
    let result = app.run().await;
    stop_echo.cancel();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Prints `text`, ignoring a closed standard output: `println!` would panic on it, and a
/// reader that stops early (`authgate demo | head`) must not bring the gateway down.
fn announce(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The demo's configuration: defaults everywhere but the listeners, the data folder and the
/// three routes in front of the echo upstream.
fn demo_config(listen: SocketAddr, admin: SocketAddr, data_dir: &Path, echo: SocketAddr) -> String {
    let data = data_dir.display().to_string();
    // sqlite://REL/PATH is relative, sqlite:///ABS/PATH absolute: the display of an absolute
    // path already starts with the third slash.
    let store = format!("sqlite://{data}/authgate.db");
    format!(
        r#"[server]
listen = "{listen}"

[admin]
listen = "{admin}"

[store]
url = "{store}"

[tokens]
secret_file = "{data}/jwt-secret"

[log]
level = "info"

[[routes]]
prefix = "/public"
upstream = "http://{echo}"
auth = "public"

[[routes]]
prefix = "/api"
upstream = "http://{echo}"
auth = "token"

[[routes]]
prefix = "/admin"
upstream = "http://{echo}"
auth = "fresh"
fresh_max_age = "5m"
"#
    )
}

/// The curl walkthrough, against the gateway at `base`. Every URL is quoted, so the lines
/// paste into zsh too (which would glob the `?` of a bare URL).
fn walkthrough(base: &str, admin: &str) -> String {
    let user = r#"{"username":"alice","password":"correct horse battery"}"#;
    format!(
        r#"# Is it up? (admin port)
curl -s '{admin}/readyz'; echo
# A public route: the echo upstream shows what it received
curl -s '{base}/public/hello?x=1'; echo
# A token route without a token: 401 missing_token
curl -s -i '{base}/api/orders' | head -n 1
# Register (a second run answers 409 username_taken) and log in
curl -s -X POST '{base}/auth/register' -H 'Content-Type: application/json' -d '{user}'; echo
TOKENS=$(curl -s -X POST '{base}/auth/login' -H 'Content-Type: application/json' -d '{user}')
ACCESS=$(printf '%s' "$TOKENS" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
REFRESH=$(printf '%s' "$TOKENS" | sed -E 's/.*"refresh_token":"([^"]+)".*/\1/')
# Who am I?
curl -s '{base}/auth/me' -H "Authorization: Bearer $ACCESS"; echo
# The token route now forwards, with X-Auth-* identity headers added by the gateway
curl -s '{base}/api/orders' -H "Authorization: Bearer $ACCESS"; echo
# Refresh: a new access token that is NOT fresh (and a rotated refresh token)
REFRESHED=$(curl -s -X POST '{base}/auth/refresh' -H "Authorization: Bearer $REFRESH")
ACCESS2=$(printf '%s' "$REFRESHED" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
# The fresh route refuses it: 401 fresh_token_required
curl -s '{base}/admin/settings' -H "Authorization: Bearer $ACCESS2"; echo
# Step up with the password: a fresh token in the same session, accepted by /admin
FRESH=$(curl -s -X POST '{base}/auth/fresh' -H "Authorization: Bearer $ACCESS2" -H 'Content-Type: application/json' -d '{{"password":"correct horse battery"}}' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -s '{base}/admin/settings' -H "Authorization: Bearer $FRESH"; echo
# Log out: the whole session is revoked, every token of it refused
curl -s -X POST '{base}/auth/logout' -H "Authorization: Bearer $ACCESS"; echo
curl -s '{base}/api/orders' -H "Authorization: Bearer $ACCESS"; echo
"#
    )
}

#[cfg(test)]
mod tests {
    use super::walkthrough;

    #[test]
    fn every_url_of_the_walkthrough_is_quoted_for_zsh() {
        let text = walkthrough("http://127.0.0.1:8080", "http://127.0.0.1:9090");
        let urls = text.matches("http://").count();
        assert_eq!(urls, text.matches("'http://").count(), "{text}");
        assert!(urls >= 10, "{text}");
    }
}
