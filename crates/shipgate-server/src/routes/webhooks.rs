//! Inbound webhooks. Each source authenticates with its own secret (GitHub: the
//! `X-Hub-Signature-256` HMAC of the raw body), per tenant, from `[webhooks.<tenant>]`. Every
//! delivery is recorded with what shipgate made of it (accepted, ignored or rejected, and why),
//! and a redelivery of an accepted or ignored one is answered from that record without acting
//! twice. Mapping is pure (`shipgate_domain::integrations`); recording goes through the same
//! validation, idempotency and audit as the API.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use shipgate_domain::Role;
use shipgate_domain::integrations::{Delivery, Ignored, Intent};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Params, QueryPairs, body_bytes, parse_json};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::service::deliveries::{self, DeliveryAnswer, delivery, remember};
pub use crate::settings::WebhookSecrets;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(github))
        .routes(routes!(cdevents))
        .routes(routes!(gitlab))
        .routes(routes!(jenkins))
        .routes(routes!(argocd))
        .routes(routes!(servicenow))
        .routes(routes!(publish_artifact))
        .routes(routes!(alertmanager))
        .routes(routes!(pagerduty))
        .routes(routes!(list_incidents))
        .routes(routes!(jira))
        .routes(routes!(list_deliveries))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Constant-time check of `sha256=<hex>` against the HMAC of the raw body.
pub fn github_signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    header
        .and_then(|h| h.strip_prefix("sha256="))
        .is_some_and(|sig| hmac_matches(secret.as_bytes(), body, sig))
}

/// Whether `hex_sig` is the HMAC-SHA256 of `body` under `key` (compared in constant time).
fn hmac_matches(key: &[u8], body: &[u8], hex_sig: &str) -> bool {
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    Hmac::<Sha256>::new_from_slice(key).is_ok_and(|mut m| {
        m.update(body);
        m.verify_slice(&expected).is_ok()
    })
}

/// Acts on a mapped delivery as its source and answers with the outcome.
async fn settle(
    state: &AppState,
    source: &str,
    id: &str,
    tenant: &str,
    event: &str,
    mapped: Result<Result<Vec<Intent>, Ignored>, shipgate_domain::FieldErrors>,
) -> ApiResult<Response> {
    deliveries::settle(state, source, id, tenant, event, mapped)
        .await
        .map(|a| Json(a).into_response())
}

/// Acts on a mapped delivery as `caller` and answers with the outcome.
async fn settle_as(
    state: &AppState,
    caller: &Caller,
    source: &str,
    id: &str,
    event: &str,
    mapped: Result<Result<Vec<Intent>, Ignored>, shipgate_domain::FieldErrors>,
) -> ApiResult<Response> {
    deliveries::settle_as(state, caller, source, id, event, mapped)
        .await
        .map(|a| Json(a).into_response())
}

#[utoipa::path(post, path = "/api/v1/webhooks/{tenant}/github", tag = "integrations", security(()),
    params(("tenant" = String, Path), ("X-GitHub-Event" = String, Header), ("X-GitHub-Delivery" = String, Header), ("X-Hub-Signature-256" = String, Header)),
    request_body(content = String, description = "A GitHub webhook payload", content_type = "application/json"),
    description = "GitHub repository or organisation webhook. `deployment` and `deployment_status` create and advance deployment records; other events are acknowledged. Authenticated by the tenant's webhook secret, not a token.",
    responses((status = 200, body = DeliveryAnswer), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json", description = "No such tenant, or this source is not configured for it")))]
async fn github(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let secret = state
        .settings
        .webhooks
        .get(&tenant)
        .and_then(|w| w.github_secret.as_ref())
        .ok_or(ApiError::NotFound)?;
    let event = header(&headers, "x-github-event")
        .ok_or_else(|| ApiError::field("X-GitHub-Event", "required", "is required"))?
        .to_owned();
    let id = header(&headers, "x-github-delivery")
        .ok_or_else(|| ApiError::field("X-GitHub-Delivery", "required", "is required"))?
        .to_owned();
    if id.len() > 128 || event.len() > 64 {
        return Err(ApiError::BadRequest(
            "X-GitHub-Delivery or X-GitHub-Event is too long".into(),
        ));
    }
    // Nothing is recorded before the signature is verified: an unauthenticated caller cannot
    // write to the delivery log or claim a delivery id.
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    if !github_signature_ok(
        secret.expose_secret(),
        &bytes,
        header(&headers, "x-hub-signature-256"),
    ) {
        metrics::counter!("shipgate_webhook_deliveries_total", "source" => "github", "result" => "bad_signature").increment(1);
        tracing::warn!(tenant = %tenant, delivery = %id, "GitHub delivery with a bad signature refused");
        return Err(ApiError::Unauthenticated(
            "X-Hub-Signature-256 does not match the body and the webhook secret".into(),
        ));
    }
    // Delivery ids are scoped to the tenant.
    let id = format!("{tenant}:{id}");
    if let Some(r) = replayed(&state, "github", &id).await? {
        return Ok(r);
    }
    let value = match parse_json(&bytes) {
        Ok(v) => v,
        Err(e) => {
            remember(
                &state,
                delivery(
                    &state,
                    "github",
                    &id,
                    &tenant,
                    &event,
                    "rejected",
                    Some(e.summary()),
                    vec![],
                ),
            )
            .await;
            return Err(e);
        }
    };
    if event == "deployment_protection_rule" {
        return protection_rule(&state, &tenant, &id, &value).await;
    }
    let mapped = shipgate_domain::integrations::github::map(&event, &value);
    settle(&state, "github", &id, &tenant, &event, mapped).await
}

/// The CDEvent in a CloudEvents HTTP request: structured mode (`application/cloudevents+json`,
/// the CDEvent in `data`), binary mode (`ce-*` headers, the CDEvent as the body), or a bare
/// CDEvent. Returns the event and its delivery id.
fn cdevent_of(headers: &HeaderMap, v: serde_json::Value) -> ApiResult<(serde_json::Value, String)> {
    let ctype = header(headers, "content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let (event, ce_id, ce_type) = if ctype.starts_with("application/cloudevents+json") {
        if v["specversion"] != "1.0" {
            return Err(ApiError::field(
                "specversion",
                "invalid_value",
                "a CloudEvent 1.0 is expected",
            ));
        }
        let data = v
            .get("data")
            .cloned()
            .filter(|d| d.is_object())
            .ok_or_else(|| {
                ApiError::field(
                    "data",
                    "required",
                    "the CloudEvent carries the CDEvent in data",
                )
            })?;
        (
            data,
            v["id"].as_str().map(str::to_owned),
            v["type"].as_str().map(str::to_owned),
        )
    } else if let Some(sv) = header(headers, "ce-specversion") {
        if sv != "1.0" {
            return Err(ApiError::field(
                "ce-specversion",
                "invalid_value",
                "a CloudEvent 1.0 is expected",
            ));
        }
        (
            v,
            header(headers, "ce-id").map(str::to_owned),
            header(headers, "ce-type").map(str::to_owned),
        )
    } else {
        (v, None, None)
    };
    let context_type = event.pointer("/context/type").and_then(|t| t.as_str());
    if let (Some(ce), Some(ctx)) = (&ce_type, context_type)
        && ce != ctx
    {
        return Err(ApiError::field(
            "ce-type",
            "mismatch",
            format!("the CloudEvent type '{ce}' is not the CDEvent's context.type '{ctx}'"),
        ));
    }
    let id = ce_id
        .or_else(|| {
            event
                .pointer("/context/id")
                .and_then(|i| i.as_str())
                .map(str::to_owned)
        })
        .ok_or_else(|| ApiError::field("context.id", "required", "is required"))?;
    if id.is_empty() || id.len() > 256 {
        return Err(ApiError::field(
            "context.id",
            "invalid_format",
            "1-256 characters",
        ));
    }
    Ok((event, id))
}

#[utoipa::path(post, path = "/api/v1/cdevents", tag = "integrations",
    request_body(content = String, description = "A CDEvent (spec 0.5.1) as a CloudEvent: structured (application/cloudevents+json), binary (ce-* headers) or bare", content_type = "application/json"),
    description = "Receives CDEvents from other tools. Each is validated against the CDEvents 0.5.1 schema of its type (unknown fields are refused); service.deployed, service.upgraded and service.rolledback record deployments; other types are acknowledged with a reason. The CloudEvent id deduplicates redeliveries.",
    responses((status = 200, body = DeliveryAnswer), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn cdevents(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let value = parse_json(&bytes)?;
    let (event, id) = cdevent_of(&headers, value)?;
    let ty = field_text(&event, "/context/type", 128);
    let source = "cdevents";
    // CloudEvents: source + id identify an event; the type is added so that one producer's
    // reuse of an id for another kind of event is not taken for a redelivery.
    let ce_source = event
        .pointer("/context/source")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let scoped = format!("{}:{ce_source}:{ty}:{id}", caller.tenant);
    if let Some(r) = replayed(&state, source, &scoped).await? {
        return Ok(r);
    }
    let mapped = crate::cdevents_schema::validate(&event)
        .map(|_| shipgate_domain::integrations::cdevents::map(&event));
    settle_as(&state, &caller, source, &scoped, &ty, mapped).await
}

/// GitHub waits on shipgate: the gate decides (waiting for approvals up to the configured
/// time) and shipgate answers the callback with `approved` or `rejected` and the reasons. Any
/// failure to decide answers `rejected` with the reason; a run is never left waiting silently.
async fn protection_rule(
    state: &AppState,
    tenant: &str,
    id: &str,
    value: &serde_json::Value,
) -> ApiResult<Response> {
    // The installation token goes only to GitHub's own callback path on the configured API:
    // anything else is refused now, and never stored or answered.
    let checked = shipgate_domain::integrations::github::protection_request(value)
        .map_err(ApiError::Validation)
        .and_then(|req| {
            shipgate_domain::integrations::github::check_callback_url(
                &crate::service::protection::github_api(state, tenant),
                &req.callback_url,
            )
            .map_err(|why| ApiError::field("deployment_callback_url", "invalid_value", why))
        });
    if let Err(e) = checked {
        remember(
            state,
            delivery(
                state,
                "github",
                id,
                tenant,
                "deployment_protection_rule",
                "rejected",
                Some(e.summary()),
                vec![],
            ),
        )
        .await;
        return Err(e);
    }
    let now = state.clock.now();
    // Kept until answered: a restart resumes the wait (see `resume_protection_requests`).
    let fresh = state
        .store
        .save_protection_request(tenant, id, value, now)
        .await?;
    remember(
        state,
        delivery(
            state,
            "github",
            id,
            tenant,
            "deployment_protection_rule",
            "accepted",
            Some("the gate decides; the answer goes to deployment_callback_url".into()),
            vec![],
        ),
    )
    .await;
    if fresh {
        crate::service::protection::spawn_answer(
            state.app.clone(),
            tenant.to_owned(),
            id.to_owned(),
            value.clone(),
            now,
        );
    }
    Ok(Json(DeliveryAnswer {
        result: "accepted".into(),
        reason: Some("the gate decides; the answer goes to deployment_callback_url".into()),
        records: vec![],
    })
    .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct IncidentAnswer {
    /// `accepted` (recorded or changed) or `unchanged`.
    result: String,
    incidents: Vec<shipgate_domain::incident::Incident>,
    /// Deployments to the affected services (or environments) in the last 24 hours, newest
    /// first: the first suspects during triage.
    suggested_changes: Vec<shipgate_store::FeedEntry>,
}

/// Records incidents and answers with the recent changes to what they affect.
async fn take_incidents(
    state: &AppState,
    tenant: &str,
    actor: &str,
    incidents: Vec<shipgate_domain::incident::Incident>,
) -> ApiResult<Response> {
    let now = state.clock.now();
    let mut changed = false;
    let mut suggested: Vec<shipgate_store::FeedEntry> = Vec::new();
    for i in &incidents {
        let (recorded, env) = deliveries::record_incident(state, tenant, actor, i).await?;
        changed |= recorded;
        if i.service.is_none() && env.is_none() {
            continue;
        }
        let filter = shipgate_domain::DeploymentFilter {
            tenant: tenant.to_owned(),
            service: i.service.clone(),
            environment: env.map(|e| e.name),
            since: now.checked_sub_signed(chrono::TimeDelta::hours(24)),
            ..Default::default()
        };
        for c in state.store.feed(&filter, 10).await? {
            if !suggested.contains(&c) {
                suggested.push(c);
            }
        }
    }
    Ok(Json(IncidentAnswer {
        result: if changed { "accepted" } else { "unchanged" }.into(),
        incidents,
        suggested_changes: suggested,
    })
    .into_response())
}

#[utoipa::path(post, path = "/api/v1/integrations/alertmanager", tag = "integrations",
    request_body(content = String, description = "An Alertmanager webhook (version 4)", content_type = "application/json"),
    description = "Alertmanager webhook receiver (bearer token in http_config): each alert is recorded as an incident (by fingerprint), streamed as a CDEvents incident event, and answered with the recent changes to its service or environment.",
    responses((status = 200, body = IncidentAnswer), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn alertmanager(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let value = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let incidents = shipgate_domain::incident::alertmanager(&value, state.clock.now())
        .map_err(ApiError::Validation)?;
    take_incidents(&state, &caller.tenant, &caller.subject, incidents).await
}

/// `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>]` (several during secret rotation).
fn pagerduty_signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    header.is_some_and(|h| {
        h.split(',').map(str::trim).any(|sig| {
            sig.strip_prefix("v1=")
                .is_some_and(|hex_sig| hmac_matches(secret.as_bytes(), body, hex_sig))
        })
    })
}

#[utoipa::path(post, path = "/api/v1/webhooks/{tenant}/pagerduty", tag = "integrations", security(()),
    params(("tenant" = String, Path), ("X-PagerDuty-Signature" = String, Header)),
    request_body(content = String, description = "A PagerDuty V3 webhook", content_type = "application/json"),
    description = "PagerDuty V3 webhook: incident events are recorded (triggered, acknowledged, resolved), streamed, and answered with the recent changes to the incident's service.",
    responses((status = 200, body = IncidentAnswer), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json", description = "No such tenant, or this source is not configured for it")))]
async fn pagerduty(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let secret = state
        .settings
        .webhooks
        .get(&tenant)
        .and_then(|w| w.pagerduty_secret.clone())
        .ok_or(ApiError::NotFound)?;
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    if !pagerduty_signature_ok(
        secret.expose_secret(),
        &bytes,
        header(&headers, "x-pagerduty-signature"),
    ) {
        return Err(ApiError::Unauthenticated(
            "X-PagerDuty-Signature does not match the body and the webhook secret".into(),
        ));
    }
    let value = parse_json(&bytes)?;
    match shipgate_domain::incident::pagerduty(&value, state.clock.now()) {
        Err(e) => Err(ApiError::Validation(e)),
        Ok(None) => Ok(Json(DeliveryAnswer {
            result: "ignored".into(),
            reason: Some("only incident events are recorded".into()),
            records: vec![],
        })
        .into_response()),
        Ok(Some(i)) => take_incidents(&state, &tenant, "pagerduty", vec![i]).await,
    }
}

#[utoipa::path(get, path = "/api/v1/incidents", tag = "integrations",
    description = "The tenant's incidents, newest first.",
    responses((status = 200, body = Vec<shipgate_domain::incident::Incident>)))]
async fn list_incidents(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<shipgate_domain::incident::Incident>>> {
    Ok(Json(state.store.list_incidents(&caller.tenant, 200).await?))
}

/// A text field of a payload for the delivery log, bounded (`unknown` when absent).
fn field_text(v: &serde_json::Value, ptr: &str, max: usize) -> String {
    v.pointer(ptr)
        .and_then(|x| x.as_str())
        .unwrap_or("unknown")
        .chars()
        .take(max)
        .collect()
}

/// A token-authenticated delivery from a sender that gives no delivery id (Jenkins, Argo CD):
/// keyed by the tenant and the body's hash, answered from its record when it comes again.
async fn hashed_delivery(
    state: &AppState,
    caller: &Caller,
    source: &str,
    bytes: &Bytes,
    event: &str,
    mapped: Result<Result<Vec<Intent>, Ignored>, shipgate_domain::FieldErrors>,
) -> ApiResult<Response> {
    let id = format!(
        "{}:{}",
        caller.tenant,
        shipgate_domain::audit::sha256_hex(bytes)
    );
    if let Some(r) = replayed(state, source, &id).await? {
        return Ok(r);
    }
    settle_as(state, caller, source, &id, event, mapped).await
}

/// A redelivery of an accepted or ignored delivery, answered from its record.
async fn replayed(state: &AppState, source: &str, id: &str) -> ApiResult<Option<Response>> {
    Ok(match state.store.find_delivery(source, id).await? {
        Some(prev) if prev.result != "rejected" => Some(
            Json(DeliveryAnswer {
                result: "duplicate".into(),
                reason: Some(format!("delivery {id} was already {}", prev.result)),
                records: prev.records,
            })
            .into_response(),
        ),
        _ => None,
    })
}

/// Compares two secrets in constant time (their HMACs under a fixed key, so lengths do not leak).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mac = |x: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(b"shipgate-token-compare").expect("any key");
        m.update(x);
        m
    };
    mac(a).verify_slice(&mac(b).finalize().into_bytes()).is_ok()
}

#[utoipa::path(post, path = "/api/v1/webhooks/{tenant}/gitlab", tag = "integrations", security(()),
    params(("tenant" = String, Path), ("X-Gitlab-Token" = String, Header), ("X-Gitlab-Event" = String, Header)),
    request_body(content = String, description = "A GitLab webhook payload", content_type = "application/json"),
    description = "GitLab project or group webhook. Deployment events create and advance deployment records; pipeline, push, tag and merge request events are acknowledged. Authenticated by the tenant's secret token.",
    responses((status = 200, body = DeliveryAnswer), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json", description = "No such tenant, or this source is not configured for it")))]
async fn gitlab(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let token = state
        .settings
        .webhooks
        .get(&tenant)
        .and_then(|w| w.gitlab_token.as_ref())
        .ok_or(ApiError::NotFound)?;
    let presented = header(&headers, "x-gitlab-token").unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
        metrics::counter!("shipgate_webhook_deliveries_total", "source" => "gitlab", "result" => "bad_token").increment(1);
        return Err(ApiError::Unauthenticated(
            "X-Gitlab-Token is not this tenant's webhook token".into(),
        ));
    }
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let event = header(&headers, "x-gitlab-event")
        .unwrap_or("unknown")
        .chars()
        .take(64)
        .collect::<String>();
    // GitLab's per-delivery retry id is Idempotency-Key; the event UUID is shared by every hook
    // an event fires. Scoped to the tenant.
    let id = header(&headers, "idempotency-key")
        .or_else(|| header(&headers, "x-gitlab-event-uuid"))
        .map(|s| s.chars().take(128).collect::<String>())
        .unwrap_or_else(|| shipgate_domain::audit::sha256_hex(&bytes));
    let id = format!("{tenant}:{id}");
    if let Some(r) = replayed(&state, "gitlab", &id).await? {
        return Ok(r);
    }
    let value = match parse_json(&bytes) {
        Ok(v) => v,
        Err(e) => {
            remember(
                &state,
                delivery(
                    &state,
                    "gitlab",
                    &id,
                    &tenant,
                    &event,
                    "rejected",
                    Some(e.summary()),
                    vec![],
                ),
            )
            .await;
            return Err(e);
        }
    };
    let mapped = shipgate_domain::integrations::gitlab::map(&value);
    settle(&state, "gitlab", &id, &tenant, &event, mapped).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JenkinsQuery {
    /// The service the job deploys (default: the job name or a SHIPGATE_SERVICE parameter).
    service: Option<String>,
    /// The environment it deploys to (or a SHIPGATE_ENVIRONMENT build parameter).
    environment: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/integrations/jenkins", tag = "integrations", params(JenkinsQuery),
    request_body(content = String, description = "A Jenkins Notification plugin message (JSON format)", content_type = "application/json"),
    description = "Jenkins Notification plugin endpoint: each phase (queued, started, completed, finalized) advances the deployment of that build. Authenticated with a shipgate token.",
    responses((status = 200, body = DeliveryAnswer), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn jenkins(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<JenkinsQuery>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let value = parse_json(&bytes)?;
    let mapped = shipgate_domain::integrations::jenkins::map(
        &value,
        q.service.as_deref(),
        q.environment.as_deref(),
    );
    let phase = field_text(&value, "/build/phase", 32);
    hashed_delivery(&state, &caller, "jenkins", &bytes, &phase, mapped).await
}

#[utoipa::path(post, path = "/api/v1/integrations/argocd", tag = "integrations",
    request_body(content = String, description = "The document rendered by shipgate's Argo CD notification template", content_type = "application/json"),
    description = "Argo CD notifications endpoint (see ci-templates/argocd): sync running, succeeded and failed advance the deployment of that sync. Authenticated with a shipgate token.",
    responses((status = 200, body = DeliveryAnswer), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn argocd(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let value = parse_json(&bytes)?;
    let mapped = shipgate_domain::integrations::argocd::map(&value);
    let phase = field_text(&value, "/phase", 32);
    hashed_delivery(&state, &caller, "argocd", &bytes, &phase, mapped).await
}

/// Opens a change request for an ITSM record unless one already tracks its ticket.
async fn itsm_change(
    state: &AppState,
    system: &str,
    tenant: &str,
    headers: &HeaderMap,
    bytes: &Bytes,
    mapped: Result<
        Option<shipgate_domain::integrations::itsm::ItsmRecord>,
        shipgate_domain::FieldErrors,
    >,
    event: &str,
) -> ApiResult<Response> {
    let id = header(headers, "x-shipgate-delivery")
        .map(|s| s.chars().take(128).collect::<String>())
        .unwrap_or_else(|| shipgate_domain::audit::sha256_hex(bytes));
    let id = format!("{tenant}:{id}");
    if let Some(r) = replayed(state, system, &id).await? {
        return Ok(r);
    }
    let d = |result: &str, reason: Option<String>, records: Vec<String>| {
        delivery(state, system, &id, tenant, event, result, reason, records)
    };
    let answer = |result: &str, reason: Option<String>, records: Vec<String>| {
        Json(DeliveryAnswer {
            result: result.into(),
            reason,
            records,
        })
        .into_response()
    };
    let shipgate_domain::integrations::itsm::ItsmRecord {
        body,
        requester,
        authors,
    } = match mapped {
        Err(errors) => {
            let e = ApiError::Validation(errors);
            remember(state, d("rejected", Some(e.summary()), vec![])).await;
            return Err(e);
        }
        Ok(None) => {
            let reason = format!("{event} does not open a change request");
            remember(state, d("ignored", Some(reason.clone()), vec![])).await;
            return Ok(answer("ignored", Some(reason), vec![]));
        }
        Ok(Some(x)) => x,
    };
    let ticket = body["ticket"].as_str().unwrap_or_default().to_owned();
    let existing = state
        .store
        .list_changes(tenant, None, 10_000)
        .await?
        .into_iter()
        .find(|c| c.spec.ticket.as_deref() == Some(ticket.as_str()));
    if let Some(c) = existing {
        let reason = format!("{ticket} is already tracked as {}", c.key);
        remember(
            state,
            d("ignored", Some(reason.clone()), vec![c.key.clone()]),
        )
        .await;
        return Ok(answer("ignored", Some(reason), vec![c.key]));
    }
    let caller = Caller {
        tenant: tenant.to_owned(),
        subject: requester,
        role: Role::Requester,
        root: false,
        env_tier: None,
    };
    let accepted = d("accepted", None, vec![]);
    match crate::service::changes::open(state, &caller, &body, authors, Some(accepted)).await {
        Ok(c) => {
            // The delivery's record committed with the change.
            Ok(answer("accepted", None, vec![c.key]))
        }
        Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_) | ApiError::Overloaded)) => {
            Err(e)
        }
        Err(e) => {
            remember(state, d("rejected", Some(e.summary()), vec![])).await;
            Err(e)
        }
    }
}

fn inbound_token_ok(headers: &HeaderMap, want: Option<&SecretString>) -> ApiResult<()> {
    let want = want.ok_or(ApiError::NotFound)?;
    let got = header(headers, "x-shipgate-token").unwrap_or("");
    if constant_time_eq(got.as_bytes(), want.expose_secret().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthenticated(
            "X-Shipgate-Token is not this tenant's inbound token".into(),
        ))
    }
}

#[utoipa::path(post, path = "/api/v1/webhooks/{tenant}/servicenow", tag = "integrations", security(()),
    params(("tenant" = String, Path), ("X-Shipgate-Token" = String, Header)),
    request_body(content = String, description = "A change_request record (Table API JSON, bare or in `result`)", content_type = "application/json"),
    description = "ServiceNow outbound REST message: a change_request opens a shipgate change request (fields mapped by configuration), whose approval runs under shipgate's policy; the decision is written back to the record.",
    responses((status = 200, body = DeliveryAnswer), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json", description = "No such tenant, or this source is not configured for it")))]
async fn servicenow(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let cfg = state
        .settings
        .itsm
        .get(&tenant)
        .and_then(|t| t.servicenow.clone());
    // No credential, no answer about the tenant's configuration.
    if header(&headers, "x-shipgate-token").is_none() {
        return Err(ApiError::field(
            "X-Shipgate-Token",
            "required",
            "the tenant's inbound token is required",
        ));
    }
    let cfg = cfg.ok_or(ApiError::NotFound)?;
    inbound_token_ok(&headers, cfg.inbound_token.as_ref())?;
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let value = parse_json(&bytes)?;
    let mapped = shipgate_domain::integrations::itsm::servicenow(&value, &cfg.mapping).map(Some);
    itsm_change(
        &state,
        "servicenow",
        &tenant,
        &headers,
        &bytes,
        mapped,
        "change_request",
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/webhooks/{tenant}/jira", tag = "integrations", security(()),
    params(("tenant" = String, Path), ("X-Shipgate-Token" = String, Header)),
    request_body(content = String, description = "A Jira issue webhook", content_type = "application/json"),
    description = "Jira webhook: jira:issue_created opens a shipgate change request (fields mapped by configuration); the decision is written back as a transition and a comment. Other events are acknowledged.",
    responses((status = 200, body = DeliveryAnswer), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json", description = "No such tenant, or this source is not configured for it")))]
async fn jira(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let cfg = state
        .settings
        .itsm
        .get(&tenant)
        .and_then(|t| t.jira.clone());
    // No credential, no answer about the tenant's configuration.
    if header(&headers, "x-shipgate-token").is_none() {
        return Err(ApiError::field(
            "X-Shipgate-Token",
            "required",
            "the tenant's inbound token is required",
        ));
    }
    let cfg = cfg.ok_or(ApiError::NotFound)?;
    inbound_token_ok(&headers, cfg.inbound_token.as_ref())?;
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let value = parse_json(&bytes)?;
    let event = field_text(&value, "/webhookEvent", 64);
    let mapped = shipgate_domain::integrations::itsm::jira(&value, &cfg.mapping);
    itsm_change(&state, "jira", &tenant, &headers, &bytes, mapped, &event).await
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishArtifactRequest {
    /// `registry/name` or `NAME@sha256:<hex>` (then `digest` may be left out).
    name: String,
    /// The tag or version published.
    version: Option<String>,
    /// `sha256:<hex>`.
    digest: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/artifacts", tag = "integrations", request_body = PublishArtifactRequest,
    description = "Records the digest a build published (artifact immutability): deployments of another digest under the same name and version, or of a digest never published, are flagged, and the gate denies them in tiers that require provenance.",
    responses((status = 201, body = shipgate_domain::provenance::PublishedArtifact), (status = 200, body = shipgate_domain::provenance::PublishedArtifact), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn publish_artifact(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    if let Some(t) = caller.env_tier {
        // A published digest satisfies provenance in every tier.
        return Err(ApiError::Forbidden(format!(
            "this token is limited to {t} environments; publishing artifacts needs an unscoped token"
        )));
    }
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let map = v
        .as_object()
        .ok_or_else(|| ApiError::field("", "invalid_type", "expected a JSON object"))?;
    let mut f = shipgate_domain::input::Fields::new(map, "");
    let name = f.req_str("name", 512);
    let version = f.opt_str("version", 128);
    let digest = f.opt_str("digest", 80);
    let mut errors = f.finish();
    let (name, digest) = match (name, digest) {
        (Some(n), Some(d)) => (Some(n), Some(d)),
        (Some(n), None) => match n.split_once('@') {
            Some((n, d)) => (Some(n.to_owned()), Some(d.to_owned())),
            None => {
                errors.add(
                    "digest",
                    "required",
                    "give digest, or name as NAME@sha256:<hex>",
                );
                (Some(n), None)
            }
        },
        (n, d) => (n, d),
    };
    let digest = digest.and_then(|d| {
        let ok = d.strip_prefix("sha256:").is_some_and(|h| {
            h.len() == 64
                && h.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        });
        if !ok {
            errors.add(
                "digest",
                "invalid_format",
                "sha256: and 64 lowercase hex digits",
            );
        }
        ok.then_some(d)
    });
    let (Some(name), Some(digest)) = (name, digest) else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let a = shipgate_domain::provenance::PublishedArtifact {
        name,
        version,
        digest,
        source: caller.subject.clone(),
        published_at: state.clock.now(),
    };
    let created = state
        .store
        .publish_artifact(&caller.tenant, &a, &caller.subject)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(a)).into_response())
}

#[utoipa::path(get, path = "/api/v1/webhook-deliveries", tag = "integrations",
    params(("limit" = Option<u32>, Query)),
    description = "The tenant's newest webhook deliveries and what shipgate made of each (accepted, ignored, rejected and why).",
    responses((status = 200, body = Vec<Delivery>)))]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<Vec<Delivery>>> {
    let mut p = Params::new(q, &["limit"]);
    let limit = p.limit();
    p.finish()?;
    Ok(Json(
        state
            .store
            .list_deliveries(&caller.tenant, limit.unwrap_or(100))
            .await?,
    ))
}
