//! The PostgreSQL store, for several shipgate instances behind a load balancer. The audit
//! chain head row is locked for the length of each write transaction, so instances append to
//! one chain in order.
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::StoreResult;

type Db = sqlx::Postgres;
const BACKEND: &str = "postgres";
const LOCK_HEAD: &str = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

// The same SQL module is compiled once per backend on purpose: see sql.rs.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;
pub use sql::SqlStore as PgStore;

/// Delivered on commit to every instance listening: a gate waiting on instance A is released
/// when the approval lands on instance B.
const NOTIFY_CHANGE: Option<&str> = Some("SELECT pg_notify('shipgate_change', $1)");

async fn listen(
    pool: &sqlx::Pool<Db>,
) -> StoreResult<Option<futures::stream::BoxStream<'static, uuid::Uuid>>> {
    use futures::StreamExt;
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen("shipgate_change").await?;
    Ok(Some(
        listener
            .into_stream()
            .filter_map(
                |n| async move { n.ok().and_then(|n| uuid::Uuid::parse_str(n.payload()).ok()) },
            )
            .boxed(),
    ))
}

impl PgStore {
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_with(url, true).await
    }

    /// Opens a database that must already be shipgate's: no migration runs.
    pub async fn open_existing(url: &str) -> StoreResult<Self> {
        Self::open_with(url, false).await
    }

    async fn open_with(url: &str, migrate: bool) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        if migrate {
            MIGRATOR.run(&pool).await?;
        } else {
            sqlx::query("SELECT seq FROM audit_head LIMIT 1")
                .execute(&pool)
                .await
                .map_err(crate::not_shipgate)?;
        }
        Ok(Self::new(pool.clone(), pool))
    }
}
