//! The conformance suite against SQLite files in temp dirs, opened the way the gateway and the
//! CLI open them (`store::open` on a `sqlite://` URL), and what only SQLite has.

use std::sync::Arc;

use authgate::config::StoreUrl;
use authgate::store::Store;
use tempfile::TempDir;

use crate::conformance::Backend;

/// A database file in a temp dir of its own (under a folder the store creates).
pub struct Sqlite {
    _dir: TempDir,
    url: StoreUrl,
}

impl Backend for Sqlite {
    async fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(dir.path().join("data").join("authgate.db"));
        Sqlite { _dir: dir, url }
    }

    async fn open(&self) -> Arc<dyn Store> {
        authgate::store::open(&self.url).await.unwrap()
    }
}

conformance_suite!(Sqlite);
