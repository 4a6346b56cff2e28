//! API tokens, role grants and access reviews.
use super::*;

#[async_trait]
impl crate::IdentityStore for SqlStore {
    async fn create_token(&self, token: &ApiToken, actor: &str) -> StoreResult<()> {
        let mut tx = self.begin_audited().await?;
        insert_token(&mut tx, token).await?;
        let payload = serde_json::json!({"id": token.id, "tenant": token.tenant, "subject": token.subject, "role": token.role, "root": token.root, "expires_at": token.expires_at, "env_tier": token.env_tier});
        tx.audit(
            token.created_at,
            vec![
                PendingEntry::new(
                    &token.tenant,
                    actor,
                    "token.created",
                    &token.id.to_string(),
                    &payload,
                )
                .touching("api_tokens", &token.tenant, token.id),
            ],
        );
        tx.commit().await?;
        Ok(())
    }

    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        let r = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<ApiToken>> {
        let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant = $1 AND revoked_at IS NULL ORDER BY created_at, id"))
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(
        &self,
        tenant: &str,
        id: Uuid,
        replacement: Option<&ApiToken>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ApiToken>> {
        let mut tx = self.begin_audited().await?;
        let Some(old) = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL"))
            .bind(id.to_string())
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let old = token_from_row(&old)?;
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
            .bind(to_micros(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let mut entries = vec![PendingEntry::new(
            tenant,
            actor,
            "token.revoked",
            &id.to_string(),
            &serde_json::json!({"id": id, "subject": old.subject, "role": old.role, "replaced_by": replacement.map(|r| r.id)}),
        )
        .touching("api_tokens", tenant, id)];
        if let Some(new) = replacement {
            insert_token(&mut tx, new).await?;
            entries.push(PendingEntry::new(
                tenant,
                actor,
                "token.created",
                &new.id.to_string(),
                &serde_json::json!({"id": new.id, "tenant": new.tenant, "subject": new.subject, "role": new.role, "root": new.root, "expires_at": new.expires_at, "env_tier": new.env_tier, "rotates": id}),
            )
            .touching("api_tokens", &new.tenant, new.id));
        }
        tx.audit(now, entries);
        tx.commit().await?;
        Ok(Some(old))
    }

    async fn confirm_token(
        &self,
        tenant: &str,
        id: Uuid,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ApiToken>> {
        let mut tx = self.begin_audited().await?;
        let n = sqlx::query("UPDATE api_tokens SET confirmed_by = $1 WHERE id = $2 AND tenant = $3 AND revoked_at IS NULL AND confirmed_by IS NULL")
            .bind(actor)
            .bind(id.to_string())
            .bind(tenant)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let t = token_from_row(
            &sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?,
        )?;
        tx.audit(now, vec![PendingEntry::new(
                tenant,
                actor,
                "token.confirmed",
                &id.to_string(),
                &serde_json::json!({"id": id, "subject": t.subject, "role": t.role, "granted_by": t.created_by, "confirmed_by": actor}),
            )
            .touching("api_tokens", tenant, id)]);
        tx.commit().await?;
        Ok(Some(t))
    }

    async fn touch_token(&self, id: Uuid, at: Timestamp) -> StoreResult<()> {
        let (_writer, db) = self.operational(Operational::TokenLastUsed).await;
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(to_micros(at))
            .bind(id.to_string())
            .execute(db)
            .await?;
        Ok(())
    }

    async fn record_access_review(
        &self,
        tenant: &str,
        review: &shipgate_domain::access::AccessReview,
    ) -> StoreResult<Vec<ApiToken>> {
        use shipgate_domain::access::ReviewDecision;
        let mut tx = self.begin_audited().await?;
        let mut revoked = Vec::new();
        let mut entries = Vec::new();
        for item in review
            .items
            .iter()
            .filter(|i| i.decision == ReviewDecision::Revoke)
        {
            let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL"))
                .bind(item.token_id.to_string())
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { continue };
            revoked.push(token_from_row(&row)?);
            sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
                .bind(to_micros(review.completed_at))
                .bind(item.token_id.to_string())
                .execute(&mut *tx)
                .await?;
            entries.push(PendingEntry::new(
                tenant,
                &review.reviewer,
                "token.revoked",
                &item.token_id.to_string(),
                &serde_json::json!({"id": item.token_id, "subject": item.subject, "role": item.role, "access_review": review.id}),
            )
            .touching("api_tokens", tenant, item.token_id));
        }
        sqlx::query("INSERT INTO access_reviews (id, tenant, period, reviewer, items, completed_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(review.id.to_string())
            .bind(tenant)
            .bind(&review.period)
            .bind(&review.reviewer)
            .bind(json_text(&review.items))
            .bind(to_micros(review.completed_at))
            .execute(&mut *tx)
            .await?;
        entries.push(
            PendingEntry::new(
                tenant,
                &review.reviewer,
                "access_review.completed",
                &review.id.to_string(),
                &serde_json::json!(review),
            )
            .touching("access_reviews", tenant, review.id),
        );
        tx.audit(review.completed_at, entries);
        tx.commit().await?;
        Ok(revoked)
    }

    async fn access_reviews(
        &self,
        tenant: &str,
    ) -> StoreResult<Vec<shipgate_domain::access::AccessReview>> {
        let rows = sqlx::query("SELECT id, period, reviewer, items, completed_at FROM access_reviews WHERE tenant = $1 ORDER BY completed_at DESC")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(shipgate_domain::access::AccessReview {
                    id: uuid_col(r, "id")?,
                    period: r.try_get("period")?,
                    reviewer: r.try_get("reviewer")?,
                    items: json_col(r, "items")?,
                    completed_at: ts(r, "completed_at")?,
                })
            })
            .collect()
    }

    async fn count_tokens(&self) -> StoreResult<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }
}
