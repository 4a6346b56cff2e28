//! The audit chain: its head, entries, checkpoints and verification.
use super::*;

#[async_trait]
impl crate::AuditStore for SqlStore {
    async fn record_audit(&self, entries: Vec<PendingEntry>, now: Timestamp) -> StoreResult<()> {
        let mut tx = self.begin_audited().await?;
        tx.audit(now, entries);
        tx.commit().await?;
        Ok(())
    }

    async fn audit_head(&self) -> StoreResult<ChainHead> {
        let r = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(ChainHead {
            seq: r.try_get("seq")?,
            hash: r.try_get("hash")?,
        })
    }

    async fn audit_entries(
        &self,
        tenant: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > "
        ));
        qb.push_bind(after_seq);
        if let Some(t) = tenant {
            qb.push(" AND tenant = ").push_bind(t.to_owned());
        }
        qb.push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 10_000)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn checkpoint_audit(&self, now: Timestamp) -> StoreResult<Option<ChainHead>> {
        let mut tx = self.begin_audited().await?;
        let head = tx.head().clone();
        let last = sqlx::query("SELECT action FROM audit_log WHERE seq = $1")
            .bind(head.seq)
            .fetch_optional(&mut *tx)
            .await?;
        let last: Option<String> = last.map(|r| r.try_get("action")).transpose()?;
        if head.seq == 0 || last.as_deref() == Some("audit.checkpoint") {
            tx.rollback().await?;
            return Ok(None);
        }
        let entry = PendingEntry::new(
            "shipgate",
            "shipgate",
            "audit.checkpoint",
            &format!("audit-head:{}", head.seq),
            &serde_json::json!({"head": head}),
        )
        .with_event(shipgate_domain::events::audit_checkpoint_event(&head, now));
        tx.audit(now, vec![entry]);
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn baseline_audit(&self, now: Timestamp) -> StoreResult<u64> {
        let mut tx = self.begin_audited().await?;
        let head = tx.head().clone();
        if head.seq == 0 {
            tx.rollback().await?;
            return Ok(0);
        }
        let fingerprinted = sqlx::query(
            "SELECT seq FROM audit_log WHERE payload LIKE '%\"row_fingerprints\"%' ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        if fingerprinted.is_some() {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut entries = Vec::new();
        let mut n = 0u64;
        for spec in crate::rows::GOVERNANCE_TABLES {
            let rows = sqlx::query(&spec.select_all()).fetch_all(&mut *tx).await?;
            let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for r in &rows {
                let (tenant, key, _) = image_from_row(spec, r)?;
                by_tenant.entry(tenant).or_default().push(key);
            }
            for (tenant, keys) in by_tenant {
                for chunk in keys.chunks(CHUNK) {
                    n += chunk.len() as u64;
                    let e = PendingEntry::new(
                        &tenant,
                        "shipgate",
                        "audit.baselined",
                        spec.table,
                        &serde_json::json!({"table": spec.table, "rows": chunk.len()}),
                    );
                    entries.push(
                        chunk
                            .iter()
                            .fold(e, |e, k| e.touching(spec.table, &tenant, k)),
                    );
                }
            }
        }
        if entries.is_empty() {
            entries.push(PendingEntry::new(
                "",
                "shipgate",
                "audit.baselined",
                "governance",
                &serde_json::json!({"row_fingerprints": []}),
            ));
        }
        tx.audit(now, entries);
        tx.commit().await?;
        Ok(n)
    }

    async fn verify_audit_against(&self, expect: Option<ChainHead>) -> StoreResult<VerifyReport> {
        const PAGE: i64 = 5000;
        // One read transaction: a consistent snapshot while writers go on.
        let mut tx = self.pool.begin().await?;
        if BACKEND == "postgres" {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let hr = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let stored_head = ChainHead {
            seq: hr.try_get("seq")?,
            hash: hr.try_get("hash")?,
        };
        let mut v = audit::Verifier::new().expecting(expect);
        let mut after = i64::MIN;
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            ))
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                let e = audit_from_row(r)?;
                after = e.seq;
                v.entry(&e);
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        let mut after = (String::new(), String::new());
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE tenant > $1 OR (tenant = $1 AND id > $2) ORDER BY tenant, id LIMIT $3"
            ))
            .bind(after.0.clone())
            .bind(after.1.clone())
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
            let page: Vec<Deployment> = rows
                .iter()
                .map(deployment_from_row)
                .collect::<StoreResult<_>>()?;
            // This page's events, in the order they were applied: where the chain recorded them.
            let mut events: HashMap<(String, Uuid), Vec<StatusEvent>> = HashMap::new();
            let mut by_tenant: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for d in &page {
                by_tenant
                    .entry(d.record.tenant.as_str())
                    .or_default()
                    .push(d.record.id.to_string());
            }
            for (tenant, ids) in by_tenant {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(format!(
                    "SELECT {EVENT_COLUMNS} FROM deployment_events WHERE tenant = "
                ));
                qb.push_bind(tenant.to_owned());
                qb.push(" AND deployment_id IN (");
                let mut sep = qb.separated(", ");
                for id in ids {
                    sep.push_bind(id);
                }
                sep.push_unseparated(")");
                for r in qb.build().fetch_all(&mut *tx).await? {
                    let e = event_from_row(&r)?;
                    events
                        .entry((e.tenant.clone(), e.deployment_id))
                        .or_default()
                        .push(e);
                }
            }
            for evs in events.values_mut() {
                evs.sort_by_key(|e| {
                    (
                        v.position(&audit::event_key(&e.tenant, e.id))
                            .unwrap_or((i64::MAX, 0)),
                        e.id,
                    )
                });
            }
            for d in &page {
                after = (d.record.tenant.clone(), d.record.id.to_string());
                v.record(
                    &audit::deployment_key(&d.record.tenant, d.record.id),
                    &audit::deployment_payload(&d.record),
                );
                let evs = events
                    .remove(&(d.record.tenant.clone(), d.record.id))
                    .unwrap_or_default();
                match lifecycle::replay(&d.record, &evs) {
                    Ok(st) if st.status == d.status && st.finished_at == d.finished_at && st.targets == d.target_status => {}
                    Ok(st) => v.projection_mismatch(
                        d.record.id.to_string(),
                        format!(
                            "deployment {} is stored as '{}' but its recorded events make it '{}': its status was modified",
                            d.record.id, d.status, st.status
                        ),
                    ),
                    Err(m) => v.projection_mismatch(d.record.id.to_string(), format!("deployment {} {m}", d.record.id)),
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        // What runs where must be what the deployments say.
        let stored = sqlx::query("SELECT tenant, service, environment, deployment_id FROM running")
            .fetch_all(&mut *tx)
            .await?;
        let expected = sqlx::query(RUNNING_FROM_DEPLOYMENTS)
            .fetch_all(&mut *tx)
            .await?;
        let key = |r: &DbRow| -> StoreResult<(String, String, String, String)> {
            Ok((
                r.try_get("tenant")?,
                r.try_get("service")?,
                r.try_get("environment")?,
                r.try_get("deployment_id")?,
            ))
        };
        let stored: BTreeSet<_> = stored.iter().map(key).collect::<StoreResult<_>>()?;
        let expected: BTreeSet<_> = expected.iter().map(key).collect::<StoreResult<_>>()?;
        for (t, s, e, id) in stored.symmetric_difference(&expected) {
            v.projection_mismatch(
                format!("running:{t}/{s}/{e}"),
                format!("what runs for {s} in {e} (tenant {t}) disagrees with the deployments (deployment {id})"),
            );
        }
        let mut after = (String::new(), String::new());
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS} FROM deployment_events WHERE tenant > $1 OR (tenant = $1 AND id > $2) ORDER BY tenant, id LIMIT $3"
            ))
            .bind(after.0.clone())
            .bind(after.1.clone())
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                let e = event_from_row(r)?;
                after = (e.tenant.clone(), e.id.to_string());
                v.record(
                    &audit::event_key(&e.tenant, e.id),
                    &audit::event_payload(&e),
                );
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        // Every governance row against the latest entry that wrote it.
        for spec in crate::rows::GOVERNANCE_TABLES {
            let rows = sqlx::query(&spec.select_all()).fetch_all(&mut *tx).await?;
            for r in &rows {
                let (tenant, key, image) = image_from_row(spec, r)?;
                v.record(
                    &audit::RowRef {
                        table: spec.table.into(),
                        tenant,
                        key,
                    },
                    &image,
                );
            }
        }
        tx.rollback().await?;
        Ok(v.finish(Some(stored_head)))
    }
}
