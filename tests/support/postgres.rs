//! A PostgreSQL database of its own for one test, on the server `scripts/test` provides
//! (`AUTHGATE_TEST_PG_URL`): created empty, dropped (connections and all) when the handle is
//! dropped. Shared by the test binaries that need PostgreSQL (`#[path]`-included).

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::{Client, NoTls};

/// The server's URL (`postgres://ROLE@127.0.0.1:PORT/test`, a role that may create
/// databases), or a panic telling how to get it: these tests never skip.
pub fn admin_url() -> String {
    match std::env::var("AUTHGATE_TEST_PG_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "PostgreSQL is missing: $AUTHGATE_TEST_PG_URL is not set. Run the tests with \
             `scripts/test` (e.g. `scripts/test --test store postgres`): it installs or starts \
             PostgreSQL and exports $AUTHGATE_TEST_PG_URL"
        ),
    }
}

/// Connects to `url`; the connection is driven by a task of its own.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to PostgreSQL ({e}); is `scripts/test` running it?")
        });
    tokio::spawn(connection);
    client
}

/// `url` with its host and port replaced by `addr` (user, database and parameters kept).
fn with_server(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"));
    format!("{scheme}://{}{addr}{tail}", user.unwrap_or_default())
}

/// `url` with its database replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").expect("a postgres:// URL");
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A database created for one test and dropped with this handle.
pub struct TestDatabase {
    /// Its name (lowercase letters, digits and `_`).
    pub name: String,
    /// A URL for it, with the same role as `AUTHGATE_TEST_PG_URL`.
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates an empty database with a name no other test (or process) uses.
    pub async fn create() -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_nanos();
        let name = format!(
            "authgate_test_{}_{}_{nonce}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        TestDatabase {
            url: with_database(&admin_url, &name),
            name,
            admin_url,
        }
    }

    /// A connection to this database as the test role (for set-up the gateway does not do).
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// A connection to the server's own database (`AUTHGATE_TEST_PG_URL`), for statements
    /// about this one (terminating its backends).
    pub async fn admin(&self) -> Client {
        connect(&self.admin_url).await
    }

    /// The server's TCP address.
    pub fn server_addr(&self) -> SocketAddr {
        let config: tokio_postgres::Config = self.admin_url.parse().expect("a PostgreSQL URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => panic!("AUTHGATE_TEST_PG_URL must name a TCP host"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        (host.as_str(), port)
            .to_socket_addrs()
            .expect("resolvable host")
            .next()
            .expect("an address")
    }

    /// [`TestDatabase::url`] through another address (a proxy in front of the server).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        with_server(&self.url, addr)
    }

    /// Ends, from the server's side, every connection to this database whose
    /// `application_name` is `name`; returns how many.
    pub async fn terminate(&self, name: &str) -> i64 {
        self.admin()
            .await
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = $1 AND application_name = $2",
                &[&self.name, &name],
            )
            .await
            .expect("pg_terminate_backend")
            .get(0)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await: a thread with a runtime of its own, joined.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let admin = connect(&admin_url).await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}
