//! Declared services and environments.
use super::*;

#[async_trait]
impl crate::InventoryStore for SqlStore {
    async fn declare_service(
        &self,
        tenant: &str,
        name: &str,
        team: Option<&str>,
        paths: &[String],
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Service> {
        let mut tx = self.begin_audited().await?;
        sqlx::query(
            "INSERT INTO services (tenant, name, team, declared, created_at, paths) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, name) DO UPDATE SET team = excluded.team, declared = excluded.declared, paths = excluded.paths",
        )
        .bind(tenant)
        .bind(name)
        .bind(team)
        .bind(true)
        .bind(to_micros(now))
        .bind(json_text(&paths))
        .execute(&mut *tx)
        .await?;
        let payload =
            serde_json::json!({"tenant": tenant, "name": name, "team": team, "paths": paths});
        tx.audit(
            now,
            vec![PendingEntry::new(
                tenant,
                actor,
                "service.declared",
                name,
                &payload,
            )],
        );
        let r = sqlx::query(
            "SELECT name, team, declared, created_at, paths FROM services WHERE tenant = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let s = Service {
            name: r.try_get("name")?,
            team: r.try_get("team")?,
            declared: r.try_get("declared")?,
            created_at: ts(&r, "created_at")?,
            paths: service_paths(&r)?,
        };
        tx.commit().await?;
        Ok(s)
    }

    async fn declare_environment(
        &self,
        tenant: &str,
        env: &ResolvedEnvironment,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Environment> {
        let mut tx = self.begin_audited().await?;
        sqlx::query(
            "INSERT INTO environments (tenant, name, tier, region, declared, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, name) DO UPDATE SET tier = excluded.tier, region = excluded.region, declared = excluded.declared",
        )
        .bind(tenant)
        .bind(&env.name)
        .bind(env.tier.map(|t| t.as_str()))
        .bind(&env.region)
        .bind(true)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        let payload = serde_json::json!({"tenant": tenant, "name": env.name, "tier": env.tier, "region": env.region, "raw": env.raw});
        tx.audit(
            now,
            vec![PendingEntry::new(
                tenant,
                actor,
                "environment.declared",
                &env.name,
                &payload,
            )],
        );
        let r = sqlx::query("SELECT name, tier, region, declared, created_at FROM environments WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(&env.name)
            .fetch_one(&mut *tx)
            .await?;
        let e = Environment {
            name: r.try_get("name")?,
            tier: opt_tier(&r, "tier")?,
            region: r.try_get("region")?,
            declared: r.try_get("declared")?,
            created_at: ts(&r, "created_at")?,
        };
        tx.commit().await?;
        Ok(e)
    }

    async fn list_services(&self, tenant: &str) -> StoreResult<Vec<Service>> {
        let rows = sqlx::query(
            "SELECT name, team, declared, created_at, paths FROM services WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Service {
                    name: r.try_get("name")?,
                    team: r.try_get("team")?,
                    declared: r.try_get("declared")?,
                    created_at: ts(r, "created_at")?,
                    paths: service_paths(r)?,
                })
            })
            .collect()
    }

    async fn list_environments(&self, tenant: &str) -> StoreResult<Vec<Environment>> {
        let rows = sqlx::query("SELECT name, tier, region, declared, created_at FROM environments WHERE tenant = $1 ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Environment {
                    name: r.try_get("name")?,
                    tier: opt_tier(r, "tier")?,
                    region: r.try_get("region")?,
                    declared: r.try_get("declared")?,
                    created_at: ts(r, "created_at")?,
                })
            })
            .collect()
    }
}
