//! What runs where, what changed, and the services, environments and releases seen.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use shipgate_domain::input::Fields;
use shipgate_domain::*;
use shipgate_store::FeedEntry;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::deployments::{FILTER_PARAMS, filter_from};
use super::{Params, QueryPairs, body_bytes, parse_json, read_tenant, resolve_environment};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

#[allow(deprecated)] // the old name of the feed stays routed
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(running))
        .routes(routes!(feed))
        .routes(routes!(recent_changes))
        .routes(routes!(list_services, declare_service))
        .routes(routes!(list_environments, declare_environment))
        .routes(routes!(resolve))
        .routes(routes!(releases))
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunningQuery {
    service: Option<String>,
    environment: Option<String>,
    tenant: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/running", tag = "inventory", params(RunningQuery),
    description = "What is running where: the version of each service in each environment (its latest succeeded deployment).",
    responses((status = 200, body = Vec<RunningVersion>)))]
async fn running(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<Vec<RunningVersion>>> {
    let mut p = Params::new(q, &["service", "environment", "tenant"]);
    let tenant = read_tenant(&caller, p.get("tenant"))?;
    let mut env = None;
    if let Some(label) = p.get("environment") {
        match resolve_environment(&state, &tenant, &label).await? {
            Ok(e) => env = Some(e.name),
            Err(m) => p.errors.add("environment", "invalid_value", m),
        }
    }
    let service = p.get("service");
    p.finish()?;
    Ok(Json(
        state
            .store
            .running(&tenant, service.as_deref(), env.as_deref())
            .await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct FeedResponse {
    #[schema(value_type = String, format = DateTime)]
    since: shipgate_domain::time::Timestamp,
    items: Vec<FeedEntry>,
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Look back this many hours (default 24); or give `since`.
    hours: Option<u32>,
    since: Option<String>,
    service: Option<String>,
    environment: Option<String>,
    tier: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/deployments/feed", tag = "inventory", params(FeedQuery),
    description = "The deployments feed: deployments of the last N hours, newest first, each with the version it replaced.",
    responses((status = 200, body = FeedResponse), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<FeedResponse>> {
    feed_of(state, caller, q).await
}

/// The deployments feed under the name it shipped with (0.1); "change" now means a change
/// request only.
#[utoipa::path(get, path = "/api/v1/recent-changes", tag = "inventory", params(FeedQuery),
    description = "Deprecated alias of `GET /api/v1/deployments/feed` (the same answer).",
    responses((status = 200, body = FeedResponse), (status = 422, body = Problem, content_type = "application/problem+json")))]
#[deprecated(note = "GET /api/v1/deployments/feed")]
async fn recent_changes(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<FeedResponse>> {
    feed_of(state, caller, q).await
}

async fn feed_of(
    state: AppState,
    caller: Caller,
    q: Vec<(String, String)>,
) -> ApiResult<Json<FeedResponse>> {
    let mut p = Params::new(q, FILTER_PARAMS);
    let mut filter = filter_from(&state, &caller, &mut p).await?;
    let hours = p.parse("hours", |s| {
        s.parse::<u32>()
            .ok()
            .filter(|h| (1..=24 * 366).contains(h))
            .ok_or("an integer number of hours, 1 to 8784".to_owned())
    });
    let limit = p.limit();
    p.finish()?;
    let since = match filter.since {
        Some(s) => s,
        None => chrono::TimeDelta::try_hours(i64::from(hours.unwrap_or(24)))
            .and_then(|d| state.clock.now().checked_sub_signed(d))
            .ok_or_else(|| {
                ApiError::field("hours", "invalid_value", "out of range: 1 to 8784 hours")
            })?,
    };
    filter.since = Some(since);
    let items = state.store.feed(&filter, limit.unwrap_or(200)).await?;
    Ok(Json(FeedResponse { since, items }))
}

#[utoipa::path(get, path = "/api/v1/services", tag = "inventory", responses((status = 200, body = Vec<Service>)))]
async fn list_services(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Service>>> {
    Ok(Json(state.store.list_services(&caller.tenant).await?))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareServiceRequest {
    name: String,
    team: Option<String>,
    /// Path globs the service owns in a monorepo (`services/checkout/**`).
    paths: Option<Vec<String>>,
}

fn object(v: &Value) -> ApiResult<&serde_json::Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| ApiError::field("", "invalid_type", "expected a JSON object"))
}

#[utoipa::path(post, path = "/api/v1/services", tag = "inventory", request_body = DeclareServiceRequest,
    description = "Declares a service ahead of its first deployment (admin).",
    responses((status = 201, body = Service), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn declare_service(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Service>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let name = f.name("name", true);
    let team = f.name("team", false);
    let paths = f.text_list("paths");
    let mut errors = f.finish();
    for (i, p) in paths.iter().enumerate() {
        if p.is_empty() || p.len() > 256 || p.starts_with('/') {
            errors.add(
                format!("paths[{i}]"),
                "invalid_format",
                "a relative path glob of 1-256 characters, such as services/checkout/**",
            );
        }
    }
    if paths.len() > 50 {
        errors.add("paths", "too_many", "at most 50 globs");
    }
    let Some(name) = name.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let s = state
        .store
        .declare_service(
            &caller.tenant,
            &name,
            team.as_deref(),
            &paths,
            &caller.subject,
            state.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(s)))
}

#[utoipa::path(get, path = "/api/v1/environments", tag = "inventory", responses((status = 200, body = Vec<Environment>)))]
async fn list_environments(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Environment>>> {
    Ok(Json(state.store.list_environments(&caller.tenant).await?))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareEnvironmentRequest {
    /// A label; it is normalised through the taxonomy unless `tier` is given.
    name: String,
    tier: Option<EnvTier>,
    region: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/environments", tag = "inventory", request_body = DeclareEnvironmentRequest,
    description = "Declares an environment ahead (admin). In a strict taxonomy, only declared or recognisable labels are accepted.",
    responses((status = 201, body = Environment), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn declare_environment(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Environment>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let name = f.req_str("name", 128);
    let tier = f.enumeration_nonempty("tier", EnvTier::parse, EnvTier::expected);
    let region = f.opt_str("region", 64);
    let mut errors = f.finish();
    let mut resolved = None;
    if let Some(n) = &name {
        // Declaring is what makes an unknown label known: resolve it leniently.
        let lenient = shipgate_domain::environment::Taxonomy {
            strict: false,
            ..state.settings.environments.clone()
        };
        match lenient.resolve(n, |_| None) {
            Ok(mut e) => {
                if tier.is_some() {
                    e.tier = tier;
                    e.name = n.trim().to_ascii_lowercase();
                }
                if region.is_some() {
                    e.region = region;
                }
                resolved = Some(e);
            }
            Err(
                shipgate_domain::environment::EnvError::Invalid(m)
                | shipgate_domain::environment::EnvError::Unknown(m),
            ) => errors.add("name", "invalid_format", m),
        }
    }
    let Some(env) = resolved.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let e = state
        .store
        .declare_environment(&caller.tenant, &env, &caller.subject, state.clock.now())
        .await?;
    state.declared_envs.forget(&caller.tenant);
    Ok((StatusCode::CREATED, Json(e)))
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResolveQuery {
    label: String,
}

#[utoipa::path(get, path = "/api/v1/environments/resolve", tag = "inventory", params(ResolveQuery),
    description = "Shows how the taxonomy normalises a label (canonical name, tier, region).",
    responses((status = 200, body = ResolvedEnvironment), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<ResolvedEnvironment>> {
    let p = Params::new(q, &["label"]);
    let label = p.get("label");
    p.finish()?;
    let label = label.ok_or_else(|| ApiError::field("label", "required", "is required"))?;
    resolve_environment(&state, &caller.tenant, &label)
        .await?
        .map(Json)
        .map_err(|m| ApiError::field("label", "unknown_environment", m))
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReleasesQuery {
    service: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/releases", tag = "inventory", params(ReleasesQuery),
    description = "Releases (service versions) in the order they were first seen.",
    responses((status = 200, body = Vec<Release>)))]
async fn releases(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<Vec<Release>>> {
    let mut p = Params::new(q, &["service", "limit"]);
    let service = p.get("service");
    let limit = p.limit();
    p.finish()?;
    Ok(Json(
        state
            .store
            .list_releases(&caller.tenant, service.as_deref(), limit.unwrap_or(100))
            .await?,
    ))
}
