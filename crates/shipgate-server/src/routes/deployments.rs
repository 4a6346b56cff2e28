//! Recording deployments: create, status events, import; reading one or a history.
use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use shipgate_domain::audit::{canonical_json, sha256_hex};
use shipgate_domain::import::{parse_csv, parse_jsonl};
use shipgate_domain::*;
use shipgate_store::StoreError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{
    IdempotencyHeader, Params, QueryPairs, body_bytes, parse_json, parse_since, read_tenant,
    resolve_environment,
};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::service::deployments;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_deployment, list_deployments))
        .routes(routes!(get_deployment))
        .routes(routes!(append_event))
        .routes(routes!(import_deployments))
        .routes(routes!(shipped))
}

/// A deployment to record. Only `service`, `environment` and `version` are always required;
/// each environment tier may require more (configuration `requirements`).
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeploymentRequest {
    /// Client-supplied UUID; makes retries idempotent.
    id: Option<Uuid>,
    correlation_id: Option<String>,
    service: String,
    team: Option<String>,
    /// Any label (`prd`, `prod-eu-west-1`); normalised through the taxonomy, raw label kept.
    environment: String,
    version: String,
    /// Full commit id (40 or 64 hex).
    commit_sha: Option<String>,
    git_ref: Option<String>,
    repository: Option<String>,
    /// `NAME@sha256:<hex>`, or use `artifact_name` and `artifact_digest`.
    artifact: Option<String>,
    artifact_name: Option<String>,
    artifact_digest: Option<String>,
    deployer: Option<String>,
    deployer_type: Option<DeployerType>,
    kind: Option<DeploymentKind>,
    trigger: Option<Trigger>,
    change_ref: Option<String>,
    region: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    targets: Option<Vec<String>>,
    corrects: Option<Uuid>,
    status: Option<DeploymentStatus>,
    started_at: Option<String>,
    finished_at: Option<String>,
    backfilled: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}/shipped", tag = "deployments",
    params(("id" = Uuid, Path)),
    description = "What the deployment shipped: the commits between the previous successful deployment of its service to its environment and this one (from push webhooks), and their pull requests. `incomplete` when shipgate's history does not reach back that far.",
    responses((status = 200, body = shipgate_domain::vcs::Shipped), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn shipped(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<shipgate_domain::vcs::Shipped>> {
    let id = parse_id(&id)?;
    let d = state
        .store
        .get_deployment(&caller.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let filter = DeploymentFilter {
        tenant: caller.tenant.clone(),
        service: Some(d.record.service.clone()),
        environment: Some(d.record.environment.name.clone()),
        status: Some(DeploymentStatus::Succeeded),
        until: Some(
            d.record
                .started_at
                .checked_sub_signed(chrono::TimeDelta::microseconds(1))
                .unwrap_or(d.record.started_at),
        ),
        ..Default::default()
    };
    let previous = state
        .store
        .list_deployments(&filter, None, 20)
        .await?
        .items
        .into_iter()
        .find(|p| p.record.id != id && p.record.commit_sha.is_some());
    let previous_commit = previous.as_ref().and_then(|p| p.record.commit_sha.clone());
    let (commits, incomplete) = match &d.record.commit_sha {
        Some(sha) => {
            state
                .store
                .commits_between(&caller.tenant, sha, previous_commit.as_deref(), 1000)
                .await?
        }
        None => (Vec::new(), true),
    };
    // Monorepos: only the commits that touch the service's paths were shipped by it.
    let paths = state
        .store
        .list_services(&caller.tenant)
        .await?
        .into_iter()
        .find(|s| s.name == d.record.service)
        .map(|s| s.paths)
        .unwrap_or_default();
    let commits: Vec<_> = commits
        .into_iter()
        .filter(|c| shipgate_domain::vcs::touches(c, &paths))
        .collect();
    let shas: Vec<String> = commits.iter().map(|c| c.sha.clone()).collect();
    let pull_requests = state.store.pull_requests_for(&caller.tenant, &shas).await?;
    let tags = state.store.tags_for(&caller.tenant, &shas).await?;
    Ok(Json(shipgate_domain::vcs::Shipped {
        previous_deployment: previous.map(|p| p.record.id),
        previous_commit,
        commits,
        pull_requests,
        tags,
        incomplete,
    }))
}

#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments",
    request_body = CreateDeploymentRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    responses(
        (status = 201, description = "Recorded", body = Deployment),
        (status = 200, description = "An idempotent retry: the earlier result", body = Deployment),
        (status = 422, description = "Invalid fields, all listed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflicts with what is recorded", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_deployment(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyHeader(key): IdempotencyHeader,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let value = parse_json(&bytes)?;
    let created = deployments::record(&state, &caller, &value, key.as_deref()).await?;
    let id = created.deployment.record.id;
    if created.created {
        metrics::counter!("shipgate_deployments_created_total").increment(1);
    }
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        [(header::LOCATION, format!("/api/v1/deployments/{id}"))],
        Json(created.deployment),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct DeploymentPage {
    items: Vec<Deployment>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    service: Option<String>,
    /// Any label of the environment; it is normalised as on write.
    environment: Option<String>,
    /// production, staging, test or development.
    tier: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    commit_sha: Option<String>,
    artifact_digest: Option<String>,
    deployer: Option<String>,
    correlation_id: Option<String>,
    /// RFC 3339 time, or a duration back from now (`24h`, `7d`).
    since: Option<String>,
    until: Option<String>,
    /// Tenant to read (root token only).
    tenant: Option<String>,
    cursor: Option<String>,
    /// 1-1000, default 50.
    limit: Option<u32>,
}

pub const FILTER_PARAMS: &[&str] = &[
    "service",
    "environment",
    "tier",
    "status",
    "kind",
    "commit_sha",
    "artifact_digest",
    "deployer",
    "correlation_id",
    "since",
    "until",
    "tenant",
    "cursor",
    "limit",
    "hours",
];

/// Builds a history filter from query parameters, reporting every bad one.
pub async fn filter_from(
    state: &AppState,
    caller: &Caller,
    p: &mut Params,
) -> ApiResult<DeploymentFilter> {
    let now = state.clock.now();
    let tenant = read_tenant(caller, p.get("tenant"))?;
    let mut f = DeploymentFilter {
        tenant: tenant.clone(),
        ..Default::default()
    };
    f.service = p.get("service");
    if let Some(label) = p.get("environment") {
        match resolve_environment(state, &tenant, &label).await? {
            Ok(e) => f.environment = Some(e.name),
            Err(m) => p.errors.add("environment", "invalid_value", m),
        }
    }
    f.env_tier = p.parse("tier", |s| {
        EnvTier::parse(s).ok_or(format!("'{s}' is not one of: {}", EnvTier::expected()))
    });
    f.status = p.parse("status", |s| {
        DeploymentStatus::parse(s).ok_or(format!(
            "'{s}' is not one of: {}",
            DeploymentStatus::expected()
        ))
    });
    f.kind = p.parse("kind", |s| {
        DeploymentKind::parse(s).ok_or(format!(
            "'{s}' is not one of: {}",
            DeploymentKind::expected()
        ))
    });
    f.commit_sha = p.parse("commit_sha", shipgate_domain::input::parse_commit);
    f.artifact_digest = p.parse("artifact_digest", shipgate_domain::input::parse_digest);
    f.deployer = p.get("deployer");
    f.correlation_id = p.get("correlation_id");
    f.since = p.parse("since", |s| parse_since(s, now));
    f.until = p.parse("until", |s| parse_since(s, now));
    Ok(f)
}

#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", params(HistoryQuery),
    responses((status = 200, body = DeploymentPage), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn list_deployments(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<DeploymentPage>> {
    let mut p = Params::new(q, FILTER_PARAMS);
    let filter = filter_from(&state, &caller, &mut p).await?;
    let cursor = p.parse("cursor", |s| {
        Cursor::decode(s).ok_or_else(|| "not a cursor from an earlier page".to_owned())
    });
    let limit = p.limit();
    p.finish()?;
    let page = state
        .store
        .list_deployments(&filter, cursor, limit.unwrap_or(50))
        .await?;
    Ok(Json(DeploymentPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

pub fn parse_id(s: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::field("id", "invalid_format", format!("'{s}' is not a UUID")))
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id (UUID)")),
    responses((status = 200, body = Deployment), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_deployment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Deployment>> {
    let id = parse_id(&id)?;
    let d = state
        .store
        .get_deployment(&caller.tenant, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(d))
}

/// A status change.
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChangeRequest {
    /// Client-supplied event id; makes retries idempotent.
    id: Option<Uuid>,
    status: DeploymentStatus,
    /// The fan-out target this is about; absent for the deployment as a whole.
    target: Option<String>,
    message: Option<String>,
    /// When it happened (default: now). Events older than the latest are kept, flagged late.
    occurred_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EventResponse {
    deployment: Deployment,
    /// The event recorded; null when the status repeated the current one.
    event: Option<StatusEvent>,
}

#[utoipa::path(post, path = "/api/v1/deployments/{id}/events", tag = "deployments",
    params(("id" = String, Path, description = "Deployment id (UUID)"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request return the first result")),
    request_body = StatusChangeRequest,
    responses(
        (status = 201, description = "Event appended", body = EventResponse),
        (status = 200, description = "The status was already current; nothing appended", body = EventResponse),
        (status = 409, description = "Not allowed from the current status", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn append_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    IdempotencyHeader(key): IdempotencyHeader,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let value = parse_json(&bytes)?;
    let r = deployments::append(&state, &caller, id, &value, key.as_deref()).await?;
    let status = if r.event.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(EventResponse {
            deployment: r.deployment,
            event: r.event,
        }),
    )
        .into_response())
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// `jsonl` or `csv`; by default taken from the Content-Type.
    format: Option<String>,
    /// `atomic` (default): any bad line and nothing is written. `partial`: good lines are written.
    mode: Option<String>,
    /// Validate only; write nothing.
    dry_run: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportLineResult {
    /// Line number in the uploaded file (1-based; for CSV the header is line 1).
    line: usize,
    /// `created`, `replayed` (already imported), `valid` (dry run), `failed` or `not_written`.
    result: String,
    id: Option<Uuid>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportReport {
    total: usize,
    created: usize,
    replayed: usize,
    failed: usize,
    dry_run: bool,
    lines: Vec<ImportLineResult>,
}

#[utoipa::path(post, path = "/api/v1/deployments/import", tag = "deployments", params(ImportQuery),
    request_body(content = String, description = "JSONL (one deployment object per line) or CSV with a header row", content_type = "application/x-ndjson"),
    responses(
        (status = 200, description = "Per-line report", body = ImportReport),
        (status = 422, description = "Atomic import with bad lines: nothing written; every bad line listed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn import_deployments(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    QueryPairs(q): QueryPairs,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let mut p = Params::new(q, &["format", "mode", "dry_run"]);
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let format = match p.get("format") {
        Some(f) if f == "csv" || f == "jsonl" => f,
        Some(f) => {
            p.errors.add(
                "format",
                "invalid_value",
                format!("'{f}' is not one of: jsonl, csv"),
            );
            String::new()
        }
        None if ctype.starts_with("text/csv") => "csv".into(),
        None if ctype.contains("ndjson")
            || ctype.contains("jsonl")
            || ctype.starts_with("application/json") =>
        {
            "jsonl".into()
        }
        None => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "send text/csv or application/x-ndjson, or pass ?format=csv|jsonl (got '{ctype}')"
            )));
        }
    };
    let atomic = match p.get("mode").as_deref() {
        None | Some("atomic") => true,
        Some("partial") => false,
        Some(m) => {
            p.errors.add(
                "mode",
                "invalid_value",
                format!("'{m}' is not one of: atomic, partial"),
            );
            true
        }
    };
    let dry_run = p
        .parse("dry_run", |s| {
            s.parse::<bool>().map_err(|_| "true or false".to_owned())
        })
        .unwrap_or(false);
    p.finish()?;
    let bytes = body_bytes(body, state.settings.max_import_bytes)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the file is not UTF-8: {e}")))?;
    let lines = if format == "csv" {
        parse_csv(text).map_err(ApiError::Validation)?
    } else {
        parse_jsonl(text)
    };
    if lines.is_empty() {
        return Err(ApiError::field(
            "body",
            "required",
            "the file holds no records",
        ));
    }

    let mut results: Vec<ImportLineResult> = Vec::with_capacity(lines.len());
    let mut cmds = Vec::new();
    let mut cmd_lines = Vec::new();
    for (line, parsed) in lines {
        let outcome = match parsed {
            Ok(v) => match deployments::validate(&state, &caller, &v, true).await {
                Ok(c)
                    if caller
                        .require_env_tier(
                            c.deployment.environment.tier,
                            &c.deployment.environment.name,
                        )
                        .is_err() =>
                {
                    let mut e = FieldErrors::default();
                    e.add(
                        "environment",
                        "forbidden_tier",
                        format!(
                            "this token writes only {} environments",
                            caller.env_tier.map(|t| t.to_string()).unwrap_or_default()
                        ),
                    );
                    Err(e.0)
                }
                Ok(mut c) => {
                    let hash = sha256_hex(canonical_json(&v).as_bytes());
                    let key = match v.get("id").and_then(Value::as_str) {
                        Some(id) => format!("deployment-id:{}", id.to_ascii_lowercase()),
                        None => format!("import:{hash}"),
                    };
                    c.idempotency = Some(IdempotencyKey {
                        key,
                        request_hash: hash,
                    });
                    Ok(c)
                }
                Err(ApiError::Validation(e)) => Err(e.0),
                Err(other) => return Err(other),
            },
            Err(e) => Err(e.0),
        };
        match outcome {
            Ok(c) => {
                results.push(ImportLineResult {
                    line,
                    result: "valid".into(),
                    id: Some(c.deployment.id),
                    errors: Vec::new(),
                });
                cmd_lines.push(results.len() - 1);
                cmds.push(c);
            }
            Err(errors) => results.push(ImportLineResult {
                line,
                result: "failed".into(),
                id: None,
                errors,
            }),
        }
    }
    let invalid = results.iter().filter(|r| r.result == "failed").count();
    if atomic && invalid > 0 {
        let mut all = FieldErrors::default();
        for r in &results {
            for e in &r.errors {
                let field = if e.field.is_empty() {
                    format!("lines.{}", r.line)
                } else {
                    format!("lines.{}.{}", r.line, e.field)
                };
                all.add(field, &e.code, e.message.clone());
            }
        }
        return Err(ApiError::Validation(all));
    }
    if !dry_run && !cmds.is_empty() {
        let written = state
            .store
            .create_deployments(cmds, state.clock.now(), atomic)
            .await?;
        for (r, idx) in written.into_iter().zip(cmd_lines) {
            let line = &mut results[idx];
            match r {
                Ok(c) => {
                    line.id = Some(c.deployment.record.id);
                    line.result = if c.created { "created" } else { "replayed" }.into();
                }
                Err(StoreError::Invalid(e)) => {
                    line.result = "failed".into();
                    line.errors = e.0;
                }
                Err(StoreError::Conflict { code, message }) => {
                    line.result = if code == shipgate_domain::ErrorCode::NotWritten {
                        "not_written"
                    } else {
                        "failed"
                    }
                    .into();
                    line.errors = vec![FieldError::new("", code.as_str(), message)];
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
    let count = |s: &str| results.iter().filter(|r| r.result == s).count();
    let report = ImportReport {
        total: results.len(),
        created: count("created"),
        replayed: count("replayed"),
        failed: count("failed") + count("not_written"),
        dry_run,
        lines: results,
    };
    metrics::counter!("shipgate_deployments_created_total").increment(report.created as u64);
    let status = if atomic && report.failed > 0 {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)).into_response())
}
