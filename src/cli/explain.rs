//! `authgate explain --config PATH METHOD URL [--token T] [--json]`: what the gateway would do
//! with one request, worked out offline from the configuration — the normalised path, the
//! route that matches (or why none does), the URL and identity headers the upstream would get,
//! each check that applies with its result for the given token, and the answer a client would
//! get. The verdict comes from the same functions the running gateway calls (path
//! normalisation, the router, `policy::authorize`), so it cannot drift from them. Revocations
//! are read from the store when it can be reached (an SQLite file that exists, a PostgreSQL
//! server that answers within a few seconds); otherwise the report says they were not checked.
//! No file is created and no port is bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::Serialize;

use super::exit::{current_thread_runtime, load_config, EXIT_CONFIG, EXIT_RUNTIME};
use crate::auth::authenticator::Authenticator;
use crate::auth::claims::TokenType;
use crate::auth::keys::{load_keys, KeyLoad};
use crate::auth::policy::{self, require_fresh, require_roles};
use crate::auth::revocation::RevocationIndex;
use crate::auth::tokens::{TokenError, TokenService, Verified};
use crate::clock::Clock;
use crate::config::{Config, RouteAuth, StoreUrl};
use crate::error::ApiError;
use crate::path::{normalize, under_prefix};
use crate::proxy::router::Route;
use crate::proxy::table::ProxyTable;
use crate::sessions::rules::expired_by;

/// How long `explain` waits for a PostgreSQL store before reporting it unreachable.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// Exit code for a request line that cannot be parsed (clap's usage code).
const EXIT_USAGE: u8 = 2;

/// The arguments of `authgate explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The request method, e.g. GET (upper-cased).
    pub method: String,
    /// The request URL: `http://host/path?query` or just `/path?query`.
    pub url: String,
    /// An access token to check as `Authorization: Bearer` would carry it.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The whole report (printed as text, or as JSON with `--json`).
#[derive(Debug, Serialize)]
struct Report {
    method: String,
    url: String,
    /// The path after normalisation; `None` when it is refused.
    path: Option<String>,
    /// Who answers: `gateway` (account endpoints), `route`, or `none`.
    handled_by: &'static str,
    route: Option<RouteReport>,
    /// Why no route matches, when none does.
    no_route: Option<String>,
    upstream: Option<UpstreamReport>,
    checks: Vec<Check>,
    /// Whether revocations were read from the store, and how many.
    revocation: String,
    verdict: Verdict,
}

#[derive(Debug, Serialize)]
struct RouteReport {
    index: usize,
    prefix: String,
    upstream: Option<String>,
    auth: String,
    roles: Vec<String>,
    methods: Option<Vec<String>>,
    strip_prefix: bool,
    forward_authorization: bool,
}

#[derive(Debug, Serialize)]
struct UpstreamReport {
    url: String,
    /// The headers the gateway sets or removes (`null`: removed); client headers not listed
    /// pass through unchanged (hop-by-hop ones excepted).
    headers: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Serialize)]
struct Check {
    check: &'static str,
    /// `pass`, `fail`, `skipped` (does not apply), or `unchecked` (could not be done offline).
    result: &'static str,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Verdict {
    /// The status the client would get from the gateway itself, or `null` when forwarded.
    status: Option<u16>,
    /// The error code of that answer.
    error: Option<&'static str>,
    /// True when the request would reach the upstream.
    forwarded: bool,
    summary: String,
}

/// Runs `explain` for the config at `config_path`.
pub(super) fn run(config_path: &Path, args: ExplainArgs) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Ok(method) = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes()) else {
        eprintln!("authgate: {:?} is not an HTTP method", args.method);
        return ExitCode::from(EXIT_USAGE);
    };
    let uri: Uri = match args.url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("authgate: {:?} is not a URL: {e}", args.url);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let table = match ProxyTable::build(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("authgate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let revocations = runtime.block_on(read_revocations(&config));
    let report = explain(&config, &table, &method, &args, &uri, revocations);
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("authgate: cannot print the report: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
    } else {
        print!("{}", render(&report));
    }
    ExitCode::SUCCESS
}

/// The revocations in force, or why they could not be read.
async fn read_revocations(config: &Config) -> Result<(Arc<RevocationIndex>, usize), String> {
    if let StoreUrl::Sqlite(path) = &config.store.url {
        // Never create a database just to explain a request.
        if !path.exists() {
            return Err(format!(
                "the SQLite file {} does not exist yet",
                path.display()
            ));
        }
        crate::store::check(&config.store.url).map_err(|e| e.to_string())?;
    }
    let read = async {
        let store = crate::store::open(&config.store).await?;
        let now = Clock::system().now();
        store
            .live_revocations(expired_by(now, config.tokens.leeway))
            .await
            .map_err(|e| e.to_string())
    };
    let page = tokio::time::timeout(STORE_WAIT, read)
        .await
        .map_err(|_| format!("the store did not answer within {STORE_WAIT:?}"))??;
    let index = Arc::new(RevocationIndex::new());
    index.apply(&page.entries);
    Ok((index, page.entries.len()))
}

fn explain(
    config: &Config,
    table: &ProxyTable,
    method: &Method,
    args: &ExplainArgs,
    uri: &Uri,
    revocations: Result<(Arc<RevocationIndex>, usize), String>,
) -> Report {
    let (index, revocation) = match revocations {
        Ok((index, n)) => (
            index,
            format!(
                "read from the store ({}): {n} revocation(s) in force",
                config.store.url
            ),
        ),
        Err(why) => (
            Arc::new(RevocationIndex::new()),
            format!("not checked: the store cannot be read ({why})"),
        ),
    };
    let revocations_read = !revocation.starts_with("not checked");
    let mut report = Report {
        method: method.to_string(),
        url: args.url.clone(),
        path: None,
        handled_by: "none",
        route: None,
        no_route: None,
        upstream: None,
        checks: Vec::new(),
        revocation,
        verdict: Verdict {
            status: None,
            error: None,
            forwarded: false,
            summary: String::new(),
        },
    };
    let path = match normalize(uri.path()) {
        Ok(p) => p,
        Err(e) => {
            report.verdict = refused(
                &ApiError::InvalidRequest(format!("bad path: {e}").into()),
                format!("the path is refused before any route is looked at: {e}"),
            );
            return report;
        }
    };
    report.path = Some(path.clone());
    if let Some(rest) = under_prefix(&path, &config.auth.prefix) {
        report.handled_by = "gateway";
        report.verdict = Verdict {
            status: None,
            error: None,
            forwarded: false,
            summary: format!(
                "answered by the gateway's own account endpoints ({} + {rest:?}); never \
                 forwarded",
                config.auth.prefix
            ),
        };
        return report;
    }
    let Some(route) = table.router.route_for(&path) else {
        report.no_route = Some(why_no_route(config, &path));
        report.verdict = refused(&ApiError::NotFound, "no route matches".into());
        return report;
    };
    report.handled_by = "route";
    report.route = Some(route_report(route));
    if route.config().upstream.is_none() {
        report.verdict = refused(
            &ApiError::NotFound,
            "the route has no upstream: it only answers forward-auth decisions".into(),
        );
        return report;
    }

    let mut headers = HeaderMap::new();
    if let Some(token) = &args.token {
        match HeaderValue::try_from(format!("Bearer {token}")) {
            Ok(v) => {
                headers.insert(AUTHORIZATION, v);
            }
            Err(_) => {
                report.verdict = refused(
                    &ApiError::InvalidRequest("the Authorization header is malformed".into()),
                    "the token holds characters a header cannot carry".into(),
                );
                return report;
            }
        }
    }
    let clock = Clock::system();
    let tokens = token_service(config);
    report.checks = checks(
        route,
        method,
        args.token.as_deref(),
        &tokens,
        &index,
        &clock,
        revocations_read,
    );
    if let Err(e) = crate::proxy::checks::check_query(route, uri.query()) {
        report.verdict = refused(&e, "the query string is refused".into());
        return report;
    }
    // Without a token nothing is verified, so the keys are not needed to decide.
    let decision = match (&args.token, tokens) {
        (None, _) => policy::decide(route.policy(), method, None, &clock).map(|()| None),
        (Some(_), Ok(Some(tokens))) => {
            let auth =
                Authenticator::new(tokens, index.clone()).with_cookies(config.auth.cookies.enabled);
            policy::authorize(&auth, route.policy(), method, &headers, &clock)
        }
        // A public route never reads the token: the verdict needs no keys.
        (Some(_), _) if !route.policy().reads_credentials() => {
            policy::decide(route.policy(), method, None, &clock).map(|()| None)
        }
        (Some(_), Ok(None)) | (Some(_), Err(_)) => {
            report.verdict = Verdict {
                status: None,
                error: None,
                forwarded: false,
                summary: "undecided: the token cannot be checked offline (see the token check)"
                    .into(),
            };
            return report;
        }
    };
    match decision {
        Ok(identity) => {
            let mut upstream_headers = BTreeMap::new();
            let mut identity_headers = HeaderMap::new();
            match table.decision_identity(&mut identity_headers, identity.as_ref()) {
                Ok(()) => {
                    let anonymous = identity.is_none();
                    for (name, value) in &identity_headers {
                        let value = value.to_str().unwrap_or("").to_owned();
                        // Anonymous: the names are removed from what the client sent. With an
                        // identity an empty value is sent as it is (no roles: `X-Auth-Roles:`).
                        let sent = !(anonymous && value.is_empty());
                        upstream_headers.insert(name.to_string(), sent.then_some(value));
                    }
                }
                Err(e) => {
                    report.verdict = refused(
                        &ApiError::Internal,
                        format!("the identity cannot be sent upstream: {e}"),
                    );
                    return report;
                }
            }
            upstream_headers.insert(
                HOST.to_string(),
                Some(if route.config().preserve_host {
                    "the client's Host (preserve_host)".to_owned()
                } else {
                    route.host().to_str().unwrap_or("").to_owned()
                }),
            );
            upstream_headers.insert(
                AUTHORIZATION.to_string(),
                route
                    .config()
                    .forward_authorization
                    .then(|| "as the client sent it (forward_authorization)".to_owned()),
            );
            upstream_headers.insert(
                "x-forwarded-for".into(),
                Some("the client's list + the peer address".into()),
            );
            upstream_headers.insert(
                "x-forwarded-proto".into(),
                Some("http or https, as the client connected".into()),
            );
            upstream_headers.insert(
                "x-forwarded-prefix".into(),
                route
                    .forwarded_prefix()
                    .map(|p| p.to_str().unwrap_or("").to_owned()),
            );
            upstream_headers.insert(
                "x-forwarded-host".into(),
                Some("the Host the client sent".into()),
            );
            upstream_headers.insert(
                "via".into(),
                Some("the client's list + authgate's entry".into()),
            );
            upstream_headers.insert("x-request-id".into(), Some("the request's id".into()));
            let url = route
                .upstream_uri(&path, uri.query())
                .map_or_else(|e| format!("(cannot be built: {e})"), |u| u.to_string());
            report.upstream = Some(UpstreamReport {
                url: url.clone(),
                headers: upstream_headers,
            });
            let who = identity.as_ref().map_or_else(
                || "anonymously".to_owned(),
                |i| format!("as user {} ({})", i.user_id, i.username),
            );
            let caveat = if revocations_read || identity.is_none() {
                ""
            } else {
                " — unless revoked: revocations were not checked"
            };
            report.verdict = Verdict {
                status: None,
                error: None,
                forwarded: true,
                summary: format!("forwarded {who} to {method} {url}{caveat}"),
            };
        }
        Err(refusal) => {
            let e = ApiError::from(refusal);
            let summary = format!("refused by the gateway: {}", e.message());
            report.verdict = refused(&e, summary);
        }
    }
    report
}

/// The token service of `config` (check-only key load: nothing is created), or why not.
fn token_service(config: &Config) -> Result<Option<Arc<TokenService>>, String> {
    let keys = load_keys(
        &config.tokens,
        &config.source,
        crate::app::env_secret(),
        KeyLoad::CheckOnly,
    )
    .map_err(|e| e.to_string())?;
    if !keys.is_loaded() {
        return Err("the HS256 secret file does not exist yet".into());
    }
    let tokens = TokenService::new(&config.tokens, keys).map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(
        tokens.with_csrf(config.auth.cookies.enabled),
    )))
}

/// Each check of the route's policy, one by one, for the report (the verdict itself comes
/// from `policy::authorize`).
fn checks(
    route: &Route,
    method: &Method,
    token: Option<&str>,
    tokens: &Result<Option<Arc<TokenService>>, String>,
    index: &RevocationIndex,
    clock: &Clock,
    revocations_read: bool,
) -> Vec<Check> {
    let policy = route.policy();
    let auth = route.config().auth;
    let mut out = Vec::new();
    let check = |check, result, detail: String| Check {
        check,
        result,
        detail,
    };
    let verified: Option<Result<Verified, TokenError>> = match (token, tokens) {
        (Some(t), Ok(Some(service))) if policy.reads_credentials() => {
            Some(service.verify_as(t, &[TokenType::Access]))
        }
        _ => None,
    };
    out.push(match (auth, token, &verified) {
        (RouteAuth::Public, _, _) => check(
            "token",
            "skipped",
            "public route: Authorization is never read".into(),
        ),
        (RouteAuth::Optional, None, _) => check(
            "token",
            "skipped",
            "optional route: no token, forwarded anonymously".into(),
        ),
        (_, None, _) => check(
            "token",
            "fail",
            "the route needs an access token: 401 missing_token".into(),
        ),
        (_, Some(_), None) => check(
            "token",
            "unchecked",
            match tokens {
                Err(why) => why.clone(),
                Ok(_) => "not read".into(),
            },
        ),
        (_, Some(_), Some(Ok(v))) => check(
            "token",
            "pass",
            format!(
                "signature, exp/nbf, iss/aud and type valid: user {} ({}), roles [{}], \
                 session {}, expires at {}",
                v.user_id,
                v.claims.username.as_deref().unwrap_or(""),
                v.claims.roles.as_deref().unwrap_or(&[]).join(", "),
                v.claims.sid,
                v.claims.exp
            ),
        ),
        (_, Some(_), Some(Err(e))) => check(
            "token",
            "fail",
            format!(
                "{e}: 401 {}",
                ApiError::from(crate::auth::error::AuthError::from(*e)).code()
            ),
        ),
    });
    let valid = verified.as_ref().and_then(|v| v.as_ref().ok());
    out.push(match valid {
        None => check("revocation", "skipped", "no valid token to look up".into()),
        Some(_) if !revocations_read => {
            check("revocation", "unchecked", "the store cannot be read".into())
        }
        Some(v) if index.is_revoked(&v.claims.jti, &v.claims.sid, v.user_id) => check(
            "revocation",
            "fail",
            "the token, its session or its user is revoked: 401 token_revoked".into(),
        ),
        Some(_) => check(
            "revocation",
            "pass",
            "neither the token, its session nor its user is revoked".into(),
        ),
    });
    let identity = valid.map(|v| {
        crate::auth::identity::Identity::from_verified(
            v.clone(),
            crate::auth::identity::Presentation::BearerHeader,
        )
    });
    let needs_identity = matches!(auth, RouteAuth::Token | RouteAuth::Fresh);
    out.push(if !needs_identity || !policy.needs_fresh(method) {
        check(
            "freshness",
            "skipped",
            "the route does not ask for a fresh token here".into(),
        )
    } else {
        match &identity {
            None => check("freshness", "skipped", "no valid token".into()),
            Some(i) => match require_fresh(i, route.config().fresh_max_age, clock.now_u64()) {
                Ok(()) => check("freshness", "pass", "fresh enough".into()),
                Err(_) => check(
                    "freshness",
                    "fail",
                    "the token is not fresh (or older than fresh_max_age): 401 \
                     fresh_token_required"
                        .into(),
                ),
            },
        }
    });
    let roles = &route.config().roles;
    out.push(if !needs_identity || roles.is_empty() {
        check("roles", "skipped", "the route requires no role".into())
    } else {
        match &identity {
            None => check(
                "roles",
                "skipped",
                format!("needs [{}]; no valid token", roles.join(", ")),
            ),
            Some(i) => match require_roles(i, roles) {
                Ok(()) => check("roles", "pass", format!("holds [{}]", roles.join(", "))),
                Err(_) => check(
                    "roles",
                    "fail",
                    format!(
                        "needs [{}], the token has [{}]: 403 forbidden",
                        roles.join(", "),
                        i.roles.join(", ")
                    ),
                ),
            },
        }
    });
    out.push(if policy.allows(method) {
        check("method", "pass", format!("{method} is allowed"))
    } else {
        check(
            "method",
            "fail",
            format!(
                "{method} is not allowed (Allow: {}): 405 method_not_allowed",
                policy.allow_header().to_str().unwrap_or("")
            ),
        )
    });
    out
}

fn route_report(route: &Route) -> RouteReport {
    let c = route.config();
    RouteReport {
        index: route.index(),
        prefix: c.prefix.clone(),
        upstream: c.upstream.as_ref().map(ToString::to_string),
        auth: format!("{:?}", c.auth).to_ascii_lowercase(),
        roles: c.roles.clone(),
        methods: c
            .methods
            .as_ref()
            .map(|m| m.iter().map(ToString::to_string).collect()),
        strip_prefix: c.strip_prefix,
        forward_authorization: c.forward_authorization,
    }
}

/// Why `path` matches no route: the prefixes there are, and any that match only as text.
fn why_no_route(config: &Config, path: &str) -> String {
    if config.routes.is_empty() {
        return "the configuration has no [[routes]]".into();
    }
    let prefixes: Vec<&str> = config.routes.iter().map(|r| r.prefix.as_str()).collect();
    let near: Vec<&str> = prefixes
        .iter()
        .copied()
        .filter(|p| path.starts_with(p))
        .collect();
    let mut text = format!(
        "no route prefix is {path:?} or a whole-segment start of it (routes: {})",
        prefixes.join(", ")
    );
    if !near.is_empty() {
        text.push_str(&format!(
            "; {} {} only as text, not at a '/' boundary",
            near.join(", "),
            if near.len() == 1 { "matches" } else { "match" }
        ));
    }
    text
}

fn refused(e: &ApiError, summary: String) -> Verdict {
    Verdict {
        status: Some(e.status().as_u16()),
        error: Some(e.code()),
        forwarded: false,
        summary,
    }
}

/// The report as text, for a terminal.
fn render(r: &Report) -> String {
    let mut out = format!("request     {} {}\n", r.method, r.url);
    match &r.path {
        Some(p) => out.push_str(&format!("path        {p} (normalised)\n")),
        None => out.push_str("path        refused\n"),
    }
    match (&r.route, r.handled_by) {
        (Some(route), _) => out.push_str(&format!(
            "route       routes[{}] prefix {:?} -> {} (auth = {}{}{})\n",
            route.index,
            route.prefix,
            route.upstream.as_deref().unwrap_or("no upstream"),
            route.auth,
            if route.roles.is_empty() {
                String::new()
            } else {
                format!(", roles = [{}]", route.roles.join(", "))
            },
            if route.strip_prefix {
                ", strip_prefix"
            } else {
                ""
            },
        )),
        (None, "gateway") => out.push_str("route       none: the gateway's own endpoints\n"),
        (None, _) => out.push_str(&format!(
            "route       none: {}\n",
            r.no_route.as_deref().unwrap_or("")
        )),
    }
    if !r.checks.is_empty() {
        out.push_str("checks\n");
        for c in &r.checks {
            out.push_str(&format!("  {:<11} {:<9} {}\n", c.check, c.result, c.detail));
        }
    }
    out.push_str(&format!("revocation  {}\n", r.revocation));
    if let Some(up) = &r.upstream {
        out.push_str(&format!("upstream    {} {}\n", r.method, up.url));
        for (name, value) in &up.headers {
            match value {
                Some(v) => out.push_str(&format!("  {name}: {v}\n")),
                None => out.push_str(&format!("  {name}: (removed)\n")),
            }
        }
    }
    match (r.verdict.status, r.verdict.error) {
        (Some(status), Some(code)) => out.push_str(&format!(
            "verdict     {status} {code}: {}\n",
            r.verdict.summary
        )),
        _ => out.push_str(&format!("verdict     {}\n", r.verdict.summary)),
    }
    out
}
