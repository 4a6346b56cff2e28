//! The embedded SQLite store (WAL, synchronous=FULL: an acknowledged write survives a crash).
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::StoreResult;

type Db = sqlx::Sqlite;
const BACKEND: &str = "sqlite";
/// SQLite has one writer; the store's write lock already serialises writers.
const LOCK_HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

// The same SQL module is compiled once per backend on purpose: see sql.rs.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
pub use sql::SqlStore as SqliteStore;

/// One process: waiters are woken in-process, there is nothing to notify across processes.
const NOTIFY_CHANGE: Option<&str> = None;

async fn listen(
    _pool: &sqlx::Pool<Db>,
) -> StoreResult<Option<futures::stream::BoxStream<'static, uuid::Uuid>>> {
    Ok(None)
}

impl SqliteStore {
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_with(url, true).await
    }

    /// Opens a database that must already exist and already be shipgate's (an auditor's
    /// offline copy): nothing is created and no migration runs.
    pub async fn open_existing(url: &str) -> StoreResult<Self> {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, create: bool) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // 64 MiB of page cache per connection: index pages of random keys (commits,
            // digests) stay in memory instead of being re-read on every insert.
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            // Checkpoint the WAL every ~40 MiB rather than every 4 MiB: small group commits
            // then share checkpoints (each rewrites and fsyncs the database file).
            .pragma("wal_autocheckpoint", "10000");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await?;
        if create {
            MIGRATOR.run(&writer).await?;
        } else {
            sqlx::query("SELECT seq FROM audit_head LIMIT 1")
                .execute(&writer)
                .await
                .map_err(crate::not_shipgate)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            // Readers map the file instead of copying pages through read(2).
            .connect_with(opts.pragma("mmap_size", "1073741824"))
            .await?;
        Ok(Self::new(pool, writer))
    }
}
