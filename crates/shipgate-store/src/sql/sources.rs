//! What outside systems told us: incidents, version control history (commits, pull requests, tags), published artifacts, webhook deliveries and GitHub protection-rule requests.
use super::*;

#[async_trait]
impl crate::SourceStore for SqlStore {
    async fn record_incident(
        &self,
        tenant: &str,
        i: &shipgate_domain::incident::Incident,
        env_tier: Option<shipgate_domain::EnvTier>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_audited().await?;
        let prev: Option<String> = sqlx::query(
            "SELECT status FROM incidents WHERE tenant = $1 AND source = $2 AND external_id = $3",
        )
        .bind(tenant)
        .bind(&i.source)
        .bind(&i.external_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("status"))
        .transpose()?;
        if prev.as_deref() == Some(i.status.as_str()) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO incidents (tenant, source, external_id, status, service, started_at, updated_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant, source, external_id) DO UPDATE SET \
             status = excluded.status, updated_at = excluded.updated_at, body = excluded.body",
        )
        .bind(tenant)
        .bind(&i.source)
        .bind(&i.external_id)
        .bind(i.status.as_str())
        .bind(&i.service)
        .bind(to_micros(i.started_at))
        .bind(to_micros(now))
        .bind(json_text(i))
        .execute(&mut *tx)
        .await?;
        tx.audit(
            now,
            vec![
                PendingEntry::new(
                    tenant,
                    actor,
                    &format!("incident.{}", i.status.as_str()),
                    &format!("{}:{}", i.source, i.external_id),
                    &serde_json::json!(i),
                )
                .with_event(shipgate_domain::events::incident_event(
                    tenant, i, env_tier, now,
                )),
            ],
        );
        tx.commit().await?;
        Ok(true)
    }

    async fn list_incidents(
        &self,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<shipgate_domain::incident::Incident>> {
        let rows = sqlx::query(
            "SELECT body FROM incidents WHERE tenant = $1 ORDER BY started_at DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| json_col(r, "body")).collect()
    }

    async fn save_protection_request(
        &self,
        tenant: &str,
        id: &str,
        body: &serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (_writer, db) = self.operational(Operational::ProtectionRequests).await;
        let r = sqlx::query(
            "INSERT INTO protection_requests (id, tenant, body, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(tenant)
        .bind(body.to_string())
        .bind(to_micros(now))
        .execute(db)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn pending_protection_requests(
        &self,
    ) -> StoreResult<Vec<(String, String, serde_json::Value, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT id, tenant, body, created_at FROM protection_requests WHERE answered_at IS NULL ORDER BY created_at LIMIT 10000",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("tenant")?,
                    r.try_get("id")?,
                    json_col(r, "body")?,
                    ts(r, "created_at")?,
                ))
            })
            .collect()
    }

    async fn answer_protection_request(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        let (_writer, db) = self.operational(Operational::ProtectionRequests).await;
        sqlx::query("UPDATE protection_requests SET answered_at = $1 WHERE id = $2")
            .bind(to_micros(now))
            .bind(id)
            .execute(db)
            .await?;
        Ok(())
    }

    async fn record_commits(
        &self,
        tenant: &str,
        commits: &[shipgate_domain::vcs::CommitRecord],
    ) -> StoreResult<()> {
        if commits.is_empty() {
            return Ok(());
        }
        let (_writer, db) = self.operational(Operational::CommitHistory).await;
        let mut tx = db.begin().await?;
        for chunk in commits.chunks(CHUNK) {
            let mut qb: QueryBuilder<Db> =
                QueryBuilder::new("INSERT INTO commits (tenant, repository, sha, body) ");
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(tenant.to_owned())
                    .push_bind(c.repository.clone())
                    .push_bind(c.sha.clone())
                    .push_bind(json_text(c));
            });
            qb.push(" ON CONFLICT (tenant, repository, sha) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_pull_request(
        &self,
        tenant: &str,
        pr: &shipgate_domain::vcs::PullRequestRecord,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_audited().await?;
        sqlx::query(
            "INSERT INTO pull_requests (tenant, repository, number, head_sha, merge_commit_sha, body) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, repository, number) DO UPDATE SET \
             head_sha = excluded.head_sha, merge_commit_sha = excluded.merge_commit_sha, body = excluded.body",
        )
        .bind(tenant)
        .bind(&pr.repository)
        .bind(pr.number)
        .bind(&pr.head_sha)
        .bind(&pr.merge_commit_sha)
        .bind(json_text(pr))
        .execute(&mut *tx)
        .await?;
        tx.audit(
            now,
            vec![PendingEntry::new(
                tenant,
                actor,
                "pull_request.recorded",
                &format!("pr:{}#{}", pr.repository, pr.number),
                &serde_json::json!(pr),
            )],
        );
        tx.commit().await?;
        Ok(())
    }

    async fn commits_between(
        &self,
        tenant: &str,
        from: &str,
        stop: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<shipgate_domain::vcs::CommitRecord>, bool)> {
        let mut out: Vec<shipgate_domain::vcs::CommitRecord> = Vec::new();
        let mut next = Some(from.to_owned());
        while let Some(sha) = next.take() {
            if Some(sha.as_str()) == stop {
                return Ok((out, false));
            }
            if out.len() >= limit || out.iter().any(|c| c.sha == sha) {
                return Ok((out, true));
            }
            let r = sqlx::query("SELECT body FROM commits WHERE tenant = $1 AND sha = $2 LIMIT 1")
                .bind(tenant)
                .bind(&sha)
                .fetch_optional(&self.pool)
                .await?;
            let Some(r) = r else {
                // History unknown from here: complete only when there was nothing to stop at.
                return Ok((out, stop.is_some()));
            };
            let c: shipgate_domain::vcs::CommitRecord = json_col(&r, "body")?;
            next = c.parent.clone();
            out.push(c);
        }
        Ok((out, stop.is_some()))
    }

    async fn record_tag(
        &self,
        tenant: &str,
        t: &shipgate_domain::vcs::TagRecord,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_audited().await?;
        sqlx::query(
            "INSERT INTO tags (tenant, repository, name, sha, release_url) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, repository, name) DO UPDATE SET \
             sha = COALESCE(excluded.sha, tags.sha), release_url = COALESCE(excluded.release_url, tags.release_url)",
        )
        .bind(tenant)
        .bind(&t.repository)
        .bind(&t.name)
        .bind(&t.sha)
        .bind(&t.release_url)
        .execute(&mut *tx)
        .await?;
        let stored = sqlx::query(
            "SELECT sha, release_url FROM tags WHERE tenant = $1 AND repository = $2 AND name = $3",
        )
        .bind(tenant)
        .bind(&t.repository)
        .bind(&t.name)
        .fetch_one(&mut *tx)
        .await?;
        let sha: Option<String> = stored.try_get("sha")?;
        let release_url: Option<String> = stored.try_get("release_url")?;
        tx.audit(
            now,
            vec![PendingEntry::new(
                tenant,
                actor,
                "tag.recorded",
                &format!("tag:{}:{}", t.repository, t.name),
                &serde_json::json!({"repository": t.repository, "name": t.name, "sha": sha, "release_url": release_url}),
            )],
        );
        tx.commit().await?;
        Ok(())
    }

    async fn delete_tag(
        &self,
        tenant: &str,
        repository: &str,
        name: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_audited().await?;
        let n = sqlx::query("DELETE FROM tags WHERE tenant = $1 AND repository = $2 AND name = $3")
            .bind(tenant)
            .bind(repository)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n > 0 {
            tx.audit(
                now,
                vec![PendingEntry::new(
                    tenant,
                    actor,
                    "tag.deleted",
                    &format!("tag:{repository}:{name}"),
                    &serde_json::json!({"repository": repository, "name": name}),
                )],
            );
        }
        tx.commit().await?;
        Ok(())
    }

    async fn tags_for(
        &self,
        tenant: &str,
        shas: &[String],
    ) -> StoreResult<Vec<shipgate_domain::vcs::TagRecord>> {
        let mut out = Vec::new();
        for chunk in shas.chunks(200) {
            let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT repository, name, sha, release_url FROM tags WHERE tenant = ",
            );
            qb.push_bind(tenant.to_owned()).push(" AND sha IN (");
            let mut sep = qb.separated(", ");
            for s in chunk {
                sep.push_bind(s.clone());
            }
            qb.push(") ORDER BY name");
            for r in qb.build().fetch_all(&self.pool).await? {
                out.push(shipgate_domain::vcs::TagRecord {
                    repository: r.try_get("repository")?,
                    name: r.try_get("name")?,
                    sha: r.try_get("sha")?,
                    release_url: r.try_get("release_url")?,
                });
            }
        }
        Ok(out)
    }

    async fn pull_requests_for(
        &self,
        tenant: &str,
        shas: &[String],
    ) -> StoreResult<Vec<shipgate_domain::vcs::PullRequestRecord>> {
        let mut out: Vec<shipgate_domain::vcs::PullRequestRecord> = Vec::new();
        for chunk in shas.chunks(200) {
            let mut qb: QueryBuilder<Db> =
                QueryBuilder::new("SELECT body FROM pull_requests WHERE tenant = ");
            qb.push_bind(tenant.to_owned())
                .push(" AND (merge_commit_sha IN (");
            let mut sep = qb.separated(", ");
            for s in chunk {
                sep.push_bind(s.clone());
            }
            qb.push(") OR head_sha IN (");
            let mut sep = qb.separated(", ");
            for s in chunk {
                sep.push_bind(s.clone());
            }
            qb.push(")) ORDER BY number");
            for r in qb.build().fetch_all(&self.pool).await? {
                let pr: shipgate_domain::vcs::PullRequestRecord = json_col(&r, "body")?;
                if !out
                    .iter()
                    .any(|x| x.repository == pr.repository && x.number == pr.number)
                {
                    out.push(pr);
                }
            }
        }
        Ok(out)
    }

    async fn publish_artifact(
        &self,
        tenant: &str,
        a: &shipgate_domain::provenance::PublishedArtifact,
        actor: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_audited().await?;
        let r = sqlx::query(
            "INSERT INTO artifacts (tenant, digest, name, version, source, published_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, digest, name) DO NOTHING",
        )
        .bind(tenant)
        .bind(&a.digest)
        .bind(&a.name)
        .bind(&a.version)
        .bind(&a.source)
        .bind(to_micros(a.published_at))
        .execute(&mut *tx)
        .await?;
        let created = r.rows_affected() == 1;
        if created {
            tx.audit(
                a.published_at,
                vec![PendingEntry::new(
                    tenant,
                    actor,
                    "artifact.published",
                    &a.digest,
                    &serde_json::json!(a),
                )],
            );
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn find_artifacts(
        &self,
        tenant: &str,
        name: Option<&str>,
        digest: &str,
    ) -> StoreResult<Vec<shipgate_domain::provenance::PublishedArtifact>> {
        let short = name.map(|n| n.rsplit('/').next().unwrap_or(n).to_owned());
        let rows = sqlx::query(
            "SELECT name, version, digest, source, published_at FROM artifacts WHERE tenant = $1 \
             AND (digest = $2 OR name = $3 OR name = $4) ORDER BY published_at DESC LIMIT 200",
        )
        .bind(tenant)
        .bind(digest)
        .bind(name.unwrap_or(""))
        .bind(short.unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(shipgate_domain::provenance::PublishedArtifact {
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    digest: r.try_get("digest")?,
                    source: r.try_get("source")?,
                    published_at: ts(r, "published_at")?,
                })
            })
            .collect()
    }

    async fn record_delivery(
        &self,
        d: &shipgate_domain::integrations::Delivery,
    ) -> StoreResult<bool> {
        let (_writer, db) = self.operational(Operational::DeliveryLog).await;
        let mut conn = db.acquire().await?;
        insert_delivery(&mut conn, d).await
    }

    async fn delivery_created(
        &self,
        source: &str,
        tenant: &str,
        record: &str,
    ) -> StoreResult<bool> {
        let pattern = format!(
            "%{}%",
            serde_json::Value::String(record.to_owned())
                .to_string()
                .replace(['%', '_'], "")
        );
        let r = sqlx::query(
            "SELECT 1 AS one FROM webhook_deliveries WHERE source = $1 AND tenant = $2 \
             AND result = 'accepted' AND records LIKE $3 LIMIT 1",
        )
        .bind(source)
        .bind(tenant)
        .bind(pattern)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.is_some())
    }

    async fn find_delivery(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<shipgate_domain::integrations::Delivery>> {
        let r = sqlx::query(
            "SELECT source, delivery_id, tenant, event, result, reason, records, received_at \
             FROM webhook_deliveries WHERE source = $1 AND delivery_id = $2",
        )
        .bind(source)
        .bind(delivery_id)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(delivery_from_row).transpose()
    }

    async fn list_deliveries(
        &self,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<shipgate_domain::integrations::Delivery>> {
        let rows = sqlx::query(
            "SELECT source, delivery_id, tenant, event, result, reason, records, received_at \
             FROM webhook_deliveries WHERE tenant = $1 ORDER BY received_at DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }
}

/// Records a delivery on the caller's connection (a rejected one may be redelivered, and its
/// record is replaced); `false` when it was already recorded.
pub(super) async fn insert_delivery(
    conn: &mut Conn,
    d: &shipgate_domain::integrations::Delivery,
) -> StoreResult<bool> {
    let r = sqlx::query(
            "INSERT INTO webhook_deliveries (source, delivery_id, tenant, event, result, reason, records, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, delivery_id) DO UPDATE SET \
             event = excluded.event, result = excluded.result, reason = excluded.reason, \
             records = excluded.records, received_at = excluded.received_at \
             WHERE webhook_deliveries.result = 'rejected'",
        )
        .bind(&d.source)
        .bind(&d.delivery_id)
        .bind(&d.tenant)
        .bind(&d.event)
        .bind(&d.result)
        .bind(&d.reason)
        .bind(json_text(&d.records))
        .bind(to_micros(d.received_at))
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() == 1)
}
