//! The policy.
use super::*;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push_policy, current_policy))
        .routes(routes!(policy_history))
}

#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    version: i64,
    hash: String,
    pushed_by: String,
    #[schema(value_type = String, format = DateTime)]
    pushed_at: shipgate_domain::time::Timestamp,
    /// False when the pushed text was the current version already.
    changed: bool,
    text: String,
    parsed: Option<Policy>,
}

pub(super) fn view(r: PolicyRecord, changed: bool) -> PolicyView {
    PolicyView {
        parsed: Policy::parse(&r.text).ok(),
        version: r.version,
        hash: r.hash,
        pushed_by: r.pushed_by,
        pushed_at: r.pushed_at,
        changed,
        text: r.text,
    }
}

#[utoipa::path(put, path = "/api/v1/policy", tag = "approvals",
    request_body(content = String, content_type = "application/toml", description = "The policy file (TOML)"),
    description = "Pushes a new policy version (admin). A malformed file is refused with its line and column, a setting outside its bounds (quorum 1-50, durations 1s-366d, ...) with its path, an empty file and a reference to an unknown group are refused; the policy in force stays.",
    responses((status = 201, body = PolicyView), (status = 200, description = "Unchanged", body = PolicyView), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn push_policy(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<PolicyView>)> {
    let bytes = body_bytes(body, state.settings.max_body_bytes)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        ApiError::field(
            "policy",
            "invalid_encoding",
            "the policy must be UTF-8 text",
        )
    })?;
    let policy = Policy::parse(text).map_err(|e| {
        let field = match (e.line, e.column, e.path.as_deref()) {
            (Some(l), Some(c), _) => format!("policy:{l}:{c}"),
            (_, _, Some(p)) if !p.is_empty() => format!("policy.{p}"),
            _ => "policy".to_owned(),
        };
        ApiError::field(&field, "invalid_policy", e.to_string())
    })?;
    // An empty body (or one of only comments or defaults) is not a new policy version.
    if policy.is_empty() {
        return Err(ApiError::field(
            "policy",
            "empty_policy",
            "the policy has no [[rule]] and no [emergency] section; it would refuse every change",
        ));
    }
    let groups = state.store.list_groups(&caller.tenant).await?;
    let known: BTreeSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    let mut errors = FieldErrors::default();
    for (g, at) in policy.group_references() {
        if !known.contains(g.as_str()) {
            errors.add(
                format!("policy.{at}"),
                "unknown_group",
                format!("group '{g}' does not exist; create it first (`shipgate group put`)"),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let hash = sha256_hex(text.as_bytes());
    let (rec, changed) = state
        .store
        .push_policy(
            &caller.tenant,
            text,
            &hash,
            &caller.subject,
            state.clock.now(),
        )
        .await?;
    state.governance.forget(&caller.tenant);
    state.notifier.notify(Uuid::nil());
    let status = if changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(rec, changed))))
}

#[utoipa::path(get, path = "/api/v1/policy", tag = "approvals", description = "The policy in force.",
    responses((status = 200, body = PolicyView), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn current_policy(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<PolicyView>> {
    let r = state
        .store
        .current_policy(&caller.tenant)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(r, false)))
}

#[utoipa::path(get, path = "/api/v1/policy/history", tag = "approvals", description = "Every policy version, newest first.",
    responses((status = 200, body = Vec<PolicyRecord>)))]
pub(super) async fn policy_history(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<PolicyRecord>>> {
    Ok(Json(state.store.policy_history(&caller.tenant).await?))
}
