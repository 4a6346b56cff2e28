//! Environments as a tenant names them: labels resolved through the taxonomy and the
//! environments the tenant declared ahead (cached for a few seconds).
use std::collections::HashMap;
use std::sync::Arc;

use shipgate_domain::ResolvedEnvironment;
use shipgate_domain::environment::{EnvError, EnvironmentAlias};

use super::App;
use crate::error::ApiResult;

type EnvMap = Arc<HashMap<String, EnvironmentAlias>>;

/// Each tenant's declared environments, kept for a few seconds so that ingest does not read
/// them on every request. Declaring an environment forgets the tenant's entry.
pub type DeclaredEnvCache = crate::cache::TtlMap<EnvMap>;

/// Resolves an environment label through the taxonomy and the tenant's declared environments.
pub async fn resolve_environment(
    app: &App,
    tenant: &str,
    label: &str,
) -> ApiResult<Result<ResolvedEnvironment, String>> {
    // A store error is the caller's error (503), never a message about the label.
    let declared = declared_environments(app, tenant).await?;
    Ok(app
        .settings
        .environments
        .resolve(label, |n| declared.get(n).cloned())
        .map_err(|e| match e {
            EnvError::Invalid(m) | EnvError::Unknown(m) => m,
        }))
}

/// The environments declared ahead in a tenant, by name (cached for a few seconds).
pub async fn declared_environments(app: &App, tenant: &str) -> ApiResult<EnvMap> {
    if let Some(hit) = app.declared_envs.get(tenant) {
        return Ok(hit);
    }
    let map: HashMap<String, EnvironmentAlias> = app
        .store
        .list_environments(tenant)
        .await?
        .into_iter()
        .filter(|e| e.declared)
        .map(|e| {
            (
                e.name.clone(),
                EnvironmentAlias {
                    name: e.name,
                    tier: e.tier,
                    region: e.region,
                },
            )
        })
        .collect();
    let map = Arc::new(map);
    app.declared_envs.put(tenant, map.clone());
    Ok(map)
}
