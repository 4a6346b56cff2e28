//! Tokens and the audit trail.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use shipgate_domain::audit::{AuditEntry, VerifyReport};
use shipgate_domain::input::Fields;
use shipgate_domain::{ApiToken, EnvTier, Role};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Params, QueryPairs, body_bytes, parse_json};
use crate::auth::{Caller, generate_token, hash_token, valid_tenant};
use crate::error::{ApiError, ApiResult, Problem};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(rotate_token))
        .routes(routes!(confirm_token))
        .routes(routes!(create_role_grant, list_role_grants))
        .routes(routes!(revoke_role_grant))
        .routes(routes!(entitlements))
        .routes(routes!(complete_review, list_reviews))
        .routes(routes!(audit_log))
        .routes(routes!(verify))
        .routes(routes!(head))
        .routes(routes!(whoami))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// The identity the token acts as: a person or a pipeline.
    subject: String,
    role: Role,
    /// Tenant of the token; another tenant than the caller's needs the root token.
    tenant: Option<String>,
    /// Lifetime, such as `90d` or `12h`, at most 1830 days; leave it out for a token that
    /// does not expire. An empty value is refused, never read as "none".
    expires_in: Option<String>,
    /// Limit writes to environments of this tier. An empty value is refused.
    env_tier: Option<EnvTier>,
}

/// The longest lifetime `expires_in` may give a token or a role grant: 1830 days (about five
/// years).
pub const MAX_GRANT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(1830 * 86_400);

#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    id: Uuid,
    /// Shown once; only its hash is stored.
    token: String,
    tenant: String,
    subject: String,
    role: Role,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", request_body = CreateTokenRequest,
    description = "Creates an API token (admin). The token is shown once.",
    responses((status = 201, body = CreatedToken), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let g = parse_grant(&state, &caller, &v, false).await?;
    let token = generate_token();
    let t = g.into_row(hash_token(&token), &caller, state.clock.now());
    state.store.create_token(&t, &caller.subject).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: t.id,
            token,
            tenant: t.tenant,
            subject: t.subject,
            role: t.role,
        }),
    ))
}

/// A privilege being granted: to a token, or (role grant) to a signed-in identity or group.
struct GrantBody {
    subject: String,
    role: Role,
    tenant: String,
    expires_at: Option<shipgate_domain::time::Timestamp>,
    env_tier: Option<EnvTier>,
}

impl GrantBody {
    fn into_row(
        self,
        token_hash: String,
        caller: &Caller,
        now: shipgate_domain::time::Timestamp,
    ) -> ApiToken {
        ApiToken {
            id: Uuid::now_v7(),
            tenant: self.tenant,
            subject: self.subject,
            role: self.role,
            root: false,
            token_hash,
            created_at: now,
            expires_at: self.expires_at,
            env_tier: self.env_tier,
            created_by: Some(caller.subject.clone()),
            last_used_at: None,
            // Admin rights granted by the bootstrap root token count as confirmed (it is the
            // one authority a new tenant starts from); every other admin grant, and every
            // emergency privilege, waits for a second admin.
            confirmed_by: (caller.root && self.role == Role::Admin).then(|| caller.subject.clone()),
        }
    }
}

/// Reads a grant: `subject` (or, for role grants, `group`), `role`, `tenant`, `expires_in`,
/// `env_tier`, every fault named at once. Another tenant needs the root token; emergency
/// privileges go only to named members of the policy's emergency group.
async fn parse_grant(
    state: &AppState,
    caller: &Caller,
    v: &serde_json::Value,
    role_grant: bool,
) -> ApiResult<GrantBody> {
    let map = v
        .as_object()
        .ok_or_else(|| ApiError::field("", "invalid_type", "expected a JSON object"))?;
    let mut f = Fields::new(map, "");
    // An empty value is refused, never read as "none": `"env_tier": ""` is not an unscoped
    // token, and `"expires_in": ""` is not one that never expires.
    let (subject, group) = if role_grant {
        (
            f.opt_str_nonempty("subject", 256),
            f.opt_str_nonempty("group", 256),
        )
    } else {
        (f.req_str("subject", 256), None)
    };
    let role = f.enumeration_nonempty("role", Role::parse, Role::expected);
    let role_given = map.get("role").is_some_and(|r| !r.is_null());
    let tenant = f.opt_str_nonempty("tenant", 64);
    let expires_in = f.opt_str_nonempty("expires_in", 32);
    let env_tier = f.enumeration_nonempty("env_tier", EnvTier::parse, EnvTier::expected);
    let mut errors = f.finish();
    let now = state.clock.now();
    let expires_at = match expires_in.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) if !d.is_zero() => {
            // Checked: a lifetime beyond the bound (or beyond what a timestamp can hold) is a
            // field error, never a panic.
            let at = if d <= MAX_GRANT_LIFETIME {
                chrono::TimeDelta::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
            } else {
                None
            };
            if at.is_none() {
                errors.add(
                    "expires_in",
                    "invalid_value",
                    format!(
                        "out of range: at most {} days",
                        MAX_GRANT_LIFETIME.as_secs() / 86_400
                    ),
                );
            }
            at
        }
        Some(_) => {
            errors.add(
                "expires_in",
                "invalid_value",
                "a positive duration such as 90d or 12h",
            );
            None
        }
    };
    if !role_given {
        errors.add("role", "required", "is required");
    }
    if let Some(t) = &tenant
        && !valid_tenant(t)
    {
        errors.add(
            "tenant",
            "invalid_format",
            "1-64 characters of letters, digits, '-' or '_'",
        );
    }
    let subject = match (subject, group) {
        (Some(s), None) if s.starts_with("group:") => {
            errors.add("subject", "invalid_format", "name a group with `group`");
            None
        }
        (Some(s), None) => Some(s),
        (None, Some(g)) => Some(format!("group:{g}")),
        (Some(_), Some(_)) => {
            errors.add("group", "conflict", "give a subject or a group, not both");
            None
        }
        (None, None) => {
            let named = errors
                .0
                .iter()
                .any(|e| e.field == "subject" || e.field == "group");
            if role_grant && !named {
                errors.add("subject", "required", "a subject or a group is required");
            }
            None
        }
    };
    let (Some(subject), Some(role)) = (subject, role) else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let tenant = tenant.unwrap_or_else(|| caller.tenant.clone());
    if tenant != caller.tenant {
        caller.require_root()?;
    }
    if role == Role::EmergencyDeployer {
        if subject.starts_with("group:") {
            return Err(ApiError::field(
                "group",
                "named_people_only",
                "emergency privileges are granted to named people, never to a group",
            ));
        }
        check_emergency_holder(state, &tenant, &subject).await?;
    }
    Ok(GrantBody {
        subject,
        role,
        tenant,
        expires_at,
        env_tier,
    })
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoleGrantRequest {
    /// The signed-in identity (the OIDC subject) that receives the role...
    subject: Option<String>,
    /// ...or the group (from the token's group claim or the directory) whose members do.
    group: Option<String>,
    role: Role,
    /// The tenant the role applies in; another tenant than the caller's needs the root token.
    tenant: Option<String>,
    /// Lifetime, such as `90d`, at most 1830 days; leave it out for a grant that does not
    /// expire. An empty value is refused, never read as "none".
    expires_in: Option<String>,
    /// Limit writes to environments of this tier. An empty value is refused.
    env_tier: Option<EnvTier>,
}

#[utoipa::path(post, path = "/api/v1/role-grants", tag = "admin", request_body = CreateRoleGrantRequest,
    description = "Assigns a role, in a tenant and optionally only for one environment tier, to a person or a group signing in through SSO (admin). Default is deny: an SSO caller with no grant and no mapped group has no access. Emergency privileges go only to named members of the emergency group and work once a second admin confirms them.",
    responses((status = 201, body = ApiToken), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_role_grant(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ApiToken>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let g = parse_grant(&state, &caller, &v, true).await?;
    let id = Uuid::now_v7();
    let mut t = g.into_row(
        format!("{}{id}", ApiToken::GRANT_PREFIX),
        &caller,
        state.clock.now(),
    );
    t.id = id;
    state.store.create_token(&t, &caller.subject).await?;
    state.grants.forget(&t.tenant);
    Ok((StatusCode::CREATED, Json(t)))
}

#[utoipa::path(get, path = "/api/v1/role-grants", tag = "admin",
    description = "The tenant's live role grants to SSO identities and groups.",
    responses((status = 200, body = Vec<ApiToken>)))]
async fn list_role_grants(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ApiToken>>> {
    let mut all = state.store.list_tokens(&caller.tenant).await?;
    all.retain(ApiToken::is_role_grant);
    Ok(Json(all))
}

#[utoipa::path(delete, path = "/api/v1/role-grants/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    description = "Revokes a role grant at once (audited).",
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn revoke_role_grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::field("id", "invalid_format", "not a UUID"))?;
    let is_grant = state
        .store
        .list_tokens(&caller.tenant)
        .await?
        .iter()
        .any(|t| t.id == id && t.is_role_grant());
    if !is_grant {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .revoke_token(&caller.tenant, id, None, &caller.subject, state.clock.now())
        .await?
        .ok_or(ApiError::NotFound)?;
    state.grants.forget(&caller.tenant);
    Ok(StatusCode::NO_CONTENT)
}

#[allow(dead_code)]
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries after this sequence number.
    after: Option<i64>,
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    items: Vec<AuditEntry>,
    /// Pass as `after` for the next page.
    next_after: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery),
    description = "The audit trail of the caller's tenant, in sequence order (admin).",
    responses((status = 200, body = AuditPage)))]
async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<AuditPage>> {
    let mut p = Params::new(q, &["after", "limit"]);
    let after = p.parse("after", |s| {
        s.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or("an integer, 0 or more".to_owned())
    });
    let limit = p.parse("limit", |s| {
        s.parse::<u32>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or("an integer from 1 to 10000".to_owned())
    });
    p.finish()?;
    let limit = limit.unwrap_or(100);
    let items = state
        .store
        .audit_entries(Some(&caller.tenant), after.unwrap_or(0), limit)
        .await?;
    let next_after = (items.len() as u32 == limit)
        .then(|| items.last().map(|e| e.seq))
        .flatten();
    Ok(Json(AuditPage { items, next_after }))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "admin",
    params(("expect_head" = Option<String>, Query, description = "SEQ:HASH, a head saved earlier (GET /audit/head): the chain must still hold it")),
    description = "Recomputes the whole audit chain and checks every deployment, status event and governance row (people, groups, policies, changes, decisions, evidence, delegations, tokens and role grants, access reviews) against it (root admin). Reports the first broken link; with `expect_head`, also a rewritten (`head_mismatch`) or truncated (`chain_truncated`) chain.",
    responses((status = 200, body = VerifyReport), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<VerifyReport>> {
    caller.require_root()?;
    let mut p = Params::new(q, &["expect_head"]);
    let expect = p.parse("expect_head", shipgate_domain::audit::parse_head);
    p.finish()?;
    Ok(Json(state.store.verify_audit_against(expect).await?))
}

#[utoipa::path(get, path = "/api/v1/audit/head", tag = "admin",
    description = "The head of the audit chain (sequence number and hash; root admin). An auditor saves it and later verifies with `expect_head` (or `shipgate audit verify --expect-head SEQ:HASH`): a recomputed or truncated chain no longer holds it. Also published on the event stream at an interval.",
    responses((status = 200, body = shipgate_domain::audit::ChainHead)))]
async fn head(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<shipgate_domain::audit::ChainHead>> {
    // The chain is shared by every tenant: its head tells how much all of them wrote, so it is
    // the root admin's, like verification.
    caller.require_root()?;
    Ok(Json(state.store.audit_head().await?))
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "admin", description = "The caller as shipgate sees it.", responses((status = 200, body = Caller)))]
async fn whoami(caller: Caller) -> Json<Caller> {
    Json(caller)
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin",
    description = "The tenant's live tokens: subject, role, scope and expiry (never the token or its hash).",
    responses((status = 200, body = Vec<ApiToken>)))]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<ApiToken>>> {
    let mut all = state.store.list_tokens(&caller.tenant).await?;
    all.retain(|t| !t.is_role_grant());
    Ok(Json(all))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    description = "Revokes a token at once (audited).",
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::field("id", "invalid_format", "not a UUID"))?;
    let old = state
        .store
        .revoke_token(&caller.tenant, id, None, &caller.subject, state.clock.now())
        .await?
        .ok_or(ApiError::NotFound)?;
    state.tokens.forget(&old.token_hash);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/tokens/{id}/rotate", tag = "admin",
    params(("id" = Uuid, Path)),
    description = "Replaces a token with a new one of the same subject, role and scope, and revokes the old one, in one transaction. The new token is shown once.",
    responses((status = 201, body = CreatedToken), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn rotate_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::field("id", "invalid_format", "not a UUID"))?;
    let now = state.clock.now();
    let current = state
        .store
        .list_tokens(&caller.tenant)
        .await?
        .into_iter()
        .find(|t| t.id == id && !t.is_role_grant())
        .ok_or(ApiError::NotFound)?;
    let token = generate_token();
    let new = ApiToken {
        id: Uuid::now_v7(),
        token_hash: hash_token(&token),
        created_at: now,
        root: false,
        created_by: Some(caller.subject.clone()),
        last_used_at: None,
        confirmed_by: None,
        ..current.clone()
    };
    let old = state
        .store
        .revoke_token(&caller.tenant, id, Some(&new), &caller.subject, now)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.tokens.forget(&old.token_hash);
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: new.id,
            token,
            tenant: new.tenant,
            subject: new.subject,
            role: new.role,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/access-review", tag = "admin",
    description = "Who holds which privileges now: every live token with its role and scope, who granted it and when, when it was last used, and the approver groups its holder sits in (auditor, admin).",
    responses((status = 200, body = Vec<shipgate_domain::access::Entitlement>)))]
async fn entitlements(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<shipgate_domain::access::Entitlement>>> {
    Ok(Json(current_entitlements(&state, &caller.tenant).await?))
}

async fn current_entitlements(
    state: &AppState,
    tenant: &str,
) -> ApiResult<Vec<shipgate_domain::access::Entitlement>> {
    let groups = state.store.list_groups(tenant).await?;
    let now = state.clock.now();
    Ok(state
        .store
        .list_tokens(tenant)
        .await?
        .into_iter()
        .filter(|t| t.expires_at.is_none_or(|e| e > now))
        .map(|t| shipgate_domain::access::Entitlement {
            groups: groups
                .iter()
                .filter(|g| g.members.contains(&t.subject) || g.backups.contains(&t.subject))
                .map(|g| g.name.clone())
                .collect(),
            kind: if t.is_role_grant() {
                "role_grant"
            } else {
                "token"
            }
            .into(),
            token_id: t.id,
            subject: t.subject,
            role: t.role,
            env_tier: t.env_tier,
            granted_by: t.created_by,
            granted_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
        })
        .collect())
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// The review period, such as `2026-Q4`.
    period: String,
    /// One decision per live privilege (except the reviewer's own).
    decisions: Vec<ReviewDecisionBody>,
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecisionBody {
    token_id: Uuid,
    /// attest or revoke.
    decision: String,
    comment: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/access-reviews", tag = "admin", request_body = ReviewRequest,
    description = "Completes an access review: every live privilege is attested or revoked (revocations take effect at once); the review is recorded and audited. A reviewer cannot review their own privileges.",
    responses((status = 201, body = shipgate_domain::access::AccessReview), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn complete_review(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<shipgate_domain::access::AccessReview>)> {
    use shipgate_domain::access::{AccessReview, ReviewDecision, check_review};
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let map = v
        .as_object()
        .ok_or_else(|| ApiError::field("", "invalid_type", "expected a JSON object"))?;
    let mut f = Fields::new(map, "");
    let period = f.req_str("period", 32);
    f.mark("decisions");
    let mut errors = f.finish();
    let mut decisions = Vec::new();
    match map.get("decisions") {
        Some(serde_json::Value::Array(items)) => {
            for (i, it) in items.iter().enumerate() {
                let Some(obj) = it.as_object() else {
                    errors.add(
                        format!("decisions[{i}]"),
                        "invalid_type",
                        "expected an object",
                    );
                    continue;
                };
                let mut g = Fields::new(obj, &format!("decisions[{i}]."));
                let id = g.uuid("token_id");
                let d = g.enumeration("decision", ReviewDecision::parse, ReviewDecision::expected);
                let comment = g.opt_str("comment", 2000);
                let e = g.finish();
                errors.0.extend(e.0);
                match (id, d) {
                    (Some(id), Some(d)) => decisions.push((id, d, comment)),
                    _ => errors.add(
                        format!("decisions[{i}]"),
                        "required",
                        "token_id and decision are required",
                    ),
                }
            }
        }
        _ => errors.add("decisions", "required", "one decision per live privilege"),
    }
    let Some(period) = period else {
        return Err(errors.into());
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let live = current_entitlements(&state, &caller.tenant).await?;
    let items = check_review(&caller.subject, &decisions, &live)?;
    let review = AccessReview {
        id: Uuid::now_v7(),
        period,
        reviewer: caller.subject.clone(),
        items,
        completed_at: state.clock.now(),
    };
    for t in state
        .store
        .record_access_review(&caller.tenant, &review)
        .await?
    {
        state.tokens.forget(&t.token_hash);
    }
    state.grants.forget(&caller.tenant);
    Ok((StatusCode::CREATED, Json(review)))
}

#[utoipa::path(get, path = "/api/v1/access-reviews", tag = "admin",
    description = "Completed access reviews, newest first.",
    responses((status = 200, body = Vec<shipgate_domain::access::AccessReview>)))]
async fn list_reviews(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<shipgate_domain::access::AccessReview>>> {
    Ok(Json(state.store.access_reviews(&caller.tenant).await?))
}

/// Emergency privileges are held only by named members of the policy's emergency group.
pub async fn check_emergency_holder(
    state: &AppState,
    tenant: &str,
    subject: &str,
) -> ApiResult<()> {
    let pv = crate::service::gate::policy(state, tenant).await?;
    let group = pv
        .as_ref()
        .and_then(|p| p.policy.emergency.as_ref())
        .map(|e| e.group.clone());
    let Some(group) = group else {
        return Err(ApiError::field(
            "role",
            "no_emergency_group",
            "the policy names no emergency group, so nobody may hold emergency privileges",
        ));
    };
    let groups = crate::service::gate::groups(state, tenant).await?;
    if !groups
        .get(&group)
        .is_some_and(|g| g.members.iter().any(|m| m == subject))
    {
        return Err(ApiError::field(
            "subject",
            "not_emergency_group",
            format!("emergency privileges are held only by members of '{group}'"),
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/tokens/{id}/confirm", tag = "admin",
    params(("id" = Uuid, Path)),
    description = "The second admin confirms an emergency privilege or admin rights (two-person rule): until then the token or grant is refused. The admin who granted it, its holder, and any identity the grantor created cannot confirm it.",
    responses((status = 200, body = ApiToken), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn confirm_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiToken>> {
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::field("id", "invalid_format", "not a UUID"))?;
    let t = state
        .store
        .list_tokens(&caller.tenant)
        .await?
        .into_iter()
        .find(|t| t.id == id && t.confirmed_by.is_none() && t.needs_second_admin())
        .ok_or(ApiError::NotFound)?;
    let same = |a: &str, b: &str| {
        shipgate_domain::identity::normalize(a) == shipgate_domain::identity::normalize(b)
    };
    let grantor = t.created_by.clone().unwrap_or_default();
    // A subject the grantor created (a token or role grant the grantor made for it) is the
    // grantor's creature, not a second person.
    let created_by_grantor = state
        .store
        .list_tokens(&caller.tenant)
        .await?
        .iter()
        .any(|x| {
            same(&x.subject, &caller.subject)
                && x.created_by.as_deref().is_some_and(|c| same(c, &grantor))
        });
    if same(&grantor, &caller.subject) || same(&t.subject, &caller.subject) || created_by_grantor {
        return Err(ApiError::Conflict {
            code: shipgate_domain::ErrorCode::TwoPersonRule,
            message: "a second admin must confirm: not the grantor, not the holder, and not an identity the grantor created".into(),
        });
    }
    let t = state
        .store
        .confirm_token(&caller.tenant, id, &caller.subject, state.clock.now())
        .await?
        .ok_or(ApiError::NotFound)?;
    state.tokens.forget(&t.token_hash);
    state.grants.forget(&caller.tenant);
    Ok(Json(t))
}
