//! `authgate healthcheck [--url URL]`: asks the admin listener's `/healthz` and exits 0 when it
//! answers 200, 1 otherwise. For container `HEALTHCHECK`s in images without curl (distroless).
//! Without `--url` it derives the address from `[admin] listen` of the configuration, with an
//! unspecified address (`0.0.0.0`, `::`) asked on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::exit::{current_thread_runtime, load_config, EXIT_CONFIG, EXIT_RUNTIME};

/// How long the probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The arguments of `authgate healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The URL to ask (default: `/healthz` on the configured admin listener).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// Runs the probe; exit 0 healthy, 1 not, 64 when the config names no admin listener.
pub(super) fn run(config_path: &Path, args: HealthcheckArgs) -> ExitCode {
    let url = match args.url {
        Some(url) => url,
        None => {
            let config = match load_config(config_path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let Some(admin) = config.admin.listen else {
                eprintln!("authgate: [admin] listen is off: no /healthz to ask (pass --url)");
                return ExitCode::from(EXIT_CONFIG);
            };
            format!("http://{}/healthz", probe_address(admin))
        }
    };
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("authgate: {url:?} is not a URL: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let answer = runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
        tokio::time::timeout(PROBE_TIMEOUT, client.get(uri)).await
    });
    match answer {
        Ok(Ok(res)) if res.status() == http::StatusCode::OK => ExitCode::SUCCESS,
        Ok(Ok(res)) => {
            eprintln!("authgate: {url} answered {}", res.status());
            ExitCode::from(EXIT_RUNTIME)
        }
        Ok(Err(e)) => {
            eprintln!("authgate: {url}: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
        Err(_) => {
            eprintln!("authgate: {url}: no answer within {PROBE_TIMEOUT:?}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Where to reach a listener bound to `listen`: an unspecified address on loopback.
fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        for (listen, probe) in [
            ("0.0.0.0:9090", "127.0.0.1:9090"),
            ("[::]:9090", "[::1]:9090"),
            ("10.0.0.5:9191", "10.0.0.5:9191"),
        ] {
            assert_eq!(
                probe_address(listen.parse().unwrap()),
                probe.parse::<SocketAddr>().unwrap()
            );
        }
    }
}
