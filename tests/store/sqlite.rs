//! The conformance suite against SQLite files in temp dirs, opened the way the gateway and the
//! CLI open them (`store::open` on a `sqlite://` URL), and what only SQLite has.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use authgate::config::{StoreConfig, StoreUrl};
use authgate::store::Store;
use tempfile::TempDir;

use crate::conformance::Backend;

/// A database file in a temp dir of its own (under a folder the store creates).
pub struct Sqlite {
    _dir: TempDir,
    path: PathBuf,
}

impl Backend for Sqlite {
    async fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("authgate.db");
        Sqlite { _dir: dir, path }
    }

    async fn open(&self) -> Arc<dyn Store> {
        let config = StoreConfig::with_url(StoreUrl::Sqlite(self.path.clone()));
        authgate::store::open(&config).await.unwrap()
    }
}

conformance_suite!(Sqlite);

/// The mode bits of `path` (which must exist).
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_store_creates_the_database_wal_and_shm_readable_by_the_owner_only() {
    let db = Sqlite::create().await;
    let path = &db.path;
    let store = db.open().await;
    // A write, so the write-ahead log has content; both files live while a store is open.
    store.create_user("u", "$h", vec![], 1_000).await.unwrap();
    let mut files = vec![path.clone()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.clone().into_os_string();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    drop(store);

    // Opening an existing database leaves its mode alone.
    std::fs::set_permissions(&files[0], std::fs::Permissions::from_mode(0o640)).unwrap();
    let _store = db.open().await;
    assert_eq!(mode(&files[0]), 0o640);
}
