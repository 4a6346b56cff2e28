//! Recording deployments and their status events: validated against the taxonomy, the
//! tenant's declared environments and the tier's requirements; checked against the change it
//! names and the artifact's provenance; written through the group-commit writer.
use serde_json::Value;
use shipgate_domain::audit::{canonical_json, sha256_hex};
use shipgate_domain::input::{Context, parse_create, parse_status_change};
use shipgate_domain::{CreateDeployment, IdempotencyKey};
use uuid::Uuid;

use super::{App, Caller};
use crate::error::{ApiError, ApiResult};

/// A client's idempotency key as accepted: trimmed, 1-255 characters.
pub fn valid_key(raw: &str) -> Option<&str> {
    Some(raw.trim()).filter(|k| !k.is_empty() && k.len() <= 255)
}

/// What makes a retried request return the first result: the client's idempotency key, or
/// else the record's own id (`client_id_prefix:id`), with the hash of the request.
pub fn idempotency(
    key: Option<&str>,
    body: &Value,
    client_id_prefix: &str,
) -> Option<IdempotencyKey> {
    let request_hash = sha256_hex(canonical_json(body).as_bytes());
    match key {
        Some(k) => Some(IdempotencyKey {
            key: k.to_owned(),
            request_hash,
        }),
        None => body
            .get("id")
            .and_then(Value::as_str)
            .map(|id| IdempotencyKey {
                key: format!("{client_id_prefix}:{}", id.to_ascii_lowercase()),
                request_hash,
            }),
    }
}

/// Validates and records one deployment (the API, imports aside, and integrations).
pub async fn record(
    app: &App,
    caller: &Caller,
    value: &Value,
    idempotency_key: Option<&str>,
) -> ApiResult<shipgate_store::Created> {
    record_from(app, caller, value, idempotency_key, None).await
}

/// [`record`], for a webhook delivery whose record commits with the deployment.
pub async fn record_from(
    app: &App,
    caller: &Caller,
    value: &Value,
    idempotency_key: Option<&str>,
    delivery: Option<shipgate_domain::integrations::Delivery>,
) -> ApiResult<shipgate_store::Created> {
    let mut cmd = validate(app, caller, value, false).await?;
    cmd.idempotency = idempotency(idempotency_key, value, "deployment-id");
    cmd.delivery = delivery;
    caller.require_env_tier(
        cmd.deployment.environment.tier,
        &cmd.deployment.environment.name,
    )?;
    cmd.deployment.approval = super::gate::check_deployment(app, &cmd.deployment).await;
    cmd.deployment.provenance = super::gate::check_provenance(
        app,
        &caller.tenant,
        cmd.deployment.artifact_name.as_deref(),
        &cmd.deployment.version,
        cmd.deployment.artifact_digest.as_deref(),
    )
    .await?;
    app.ingest.submit(cmd).await
}

/// Validates a creation request into a command.
pub async fn validate(
    app: &App,
    caller: &Caller,
    value: &Value,
    backfill: bool,
) -> Result<CreateDeployment, ApiError> {
    let declared = super::environments::declared_environments(app, &caller.tenant).await?;
    let ctx = Context {
        tenant: &caller.tenant,
        recorded_by: &caller.subject,
        now: app.clock.now(),
        taxonomy: &app.settings.environments,
        requirements: &app.settings.requirements,
        declared_environment: &|n| declared.get(n).cloned(),
        backfill,
    };
    Ok(parse_create(value, &ctx)?)
}

/// Validates and appends one status event.
pub async fn append(
    app: &App,
    caller: &Caller,
    id: Uuid,
    value: &Value,
    idempotency_key: Option<&str>,
) -> ApiResult<shipgate_store::Appended> {
    let change = parse_status_change(value, app.clock.now())?;
    if caller.env_tier.is_some() {
        // A tier-scoped token advances only deployments of its tier.
        let d = app
            .store
            .get_deployment(&caller.tenant, id)
            .await?
            .ok_or(ApiError::NotFound)?;
        caller.require_env_tier(d.record.environment.tier, &d.record.environment.name)?;
    }
    // Only a client's key makes an event idempotent (an event id alone is checked for reuse
    // by the store).
    let key = idempotency_key.and_then(|k| idempotency(Some(k), value, "event-id"));
    Ok(app
        .store
        .append_event(
            &caller.tenant,
            id,
            change,
            &caller.subject,
            app.clock.now(),
            key,
        )
        .await?)
}
