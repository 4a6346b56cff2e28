//! The transactional outbox and each sink's cursor.
use super::*;

#[async_trait]
impl crate::OutboxStore for SqlStore {
    async fn outbox_pending(
        &self,
        sink: &str,
        limit: u32,
    ) -> StoreResult<(i64, Vec<shipgate_domain::events::OutboxRow>)> {
        use shipgate_domain::events::{EventKind, OutboxRow};
        let cursor = outbox_cursor(&self.pool, sink).await?;
        let rows = sqlx::query(
            "SELECT seq, at, tenant, kind, env_tier, event_type, subject_id, body FROM outbox \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(OutboxRow {
                    seq: r.try_get("seq")?,
                    at: ts(r, "at")?,
                    tenant: r.try_get("tenant")?,
                    kind: enum_col(r, "kind", EventKind::parse)?,
                    env_tier: opt_tier(r, "env_tier")?,
                    event_type: r.try_get("event_type")?,
                    subject_id: r.try_get("subject_id")?,
                    body: r.try_get("body")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((cursor, rows))
    }

    async fn outbox_ack(&self, sink: &str, seq: i64, now: Timestamp) -> StoreResult<()> {
        let (_writer, db) = self.operational(Operational::OutboxProgress).await;
        sqlx::query(
            "INSERT INTO outbox_cursors (sink, seq, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at \
             WHERE outbox_cursors.seq < excluded.seq",
        )
        .bind(sink)
        .bind(seq)
        .bind(to_micros(now))
        .execute(db)
        .await?;
        Ok(())
    }

    async fn outbox_head(&self) -> StoreResult<i64> {
        let r = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get("seq")?)
    }

    async fn outbox_prune(&self, sinks: &[&str], before: Timestamp) -> StoreResult<u64> {
        let (_writer, db) = self.operational(Operational::OutboxProgress).await;
        let mut delivered = i64::MAX;
        for sink in sinks {
            delivered = delivered.min(outbox_cursor(db, sink).await?);
        }
        let r = sqlx::query("DELETE FROM outbox WHERE seq <= $1 AND at < $2")
            .bind(delivered)
            .bind(to_micros(before))
            .execute(db)
            .await?;
        Ok(r.rows_affected())
    }
}
