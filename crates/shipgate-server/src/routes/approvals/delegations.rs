//! Delegations.
use super::*;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_delegation, list_delegations))
        .routes(routes!(revoke_delegation))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationRequest {
    /// Who may decide for the delegator.
    to: String,
    /// The delegator; only an admin may record a delegation for someone else.
    from: Option<String>,
    /// Limit the delegation to one approver group.
    group: Option<String>,
    /// RFC 3339; defaults to now.
    starts_at: Option<String>,
    /// RFC 3339.
    ends_at: String,
    reason: String,
}

#[utoipa::path(post, path = "/api/v1/delegations", tag = "approvals", request_body = DelegationRequest,
    description = "Records a delegation: `to` may decide for the delegator (in `group`, or in all their groups) during the period. Never to yourself, never in a loop; not followed further (A to B to C gives C nothing). Decisions show who acted on whose behalf.",
    responses((status = 201, body = Delegation), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_delegation(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Delegation>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let to = f.name("to", true);
    let from = f.name("from", false);
    let group = f.opt_str_nonempty("group", 128);
    let now = state.clock.now();
    let starts_at = f.timestamp_any_nonempty("starts_at");
    let ends_at = f.timestamp_any_nonempty("ends_at");
    let ends_given = v.get("ends_at").is_some_and(|x| !x.is_null());
    let reason = f.req_str("reason", 1000);
    let mut errors = f.finish();
    if !ends_given {
        errors.add("ends_at", "required", "when the delegation ends (RFC 3339)");
    }
    let from = from.unwrap_or_else(|| caller.subject.clone());
    if from != caller.subject && !caller.role.is_admin() {
        return Err(ApiError::Forbidden(
            "only an admin may record a delegation for someone else".into(),
        ));
    }
    let (Some(to), Some(ends_at), Some(reason)) = (to, ends_at, reason) else {
        return Err(errors.into());
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let d = Delegation {
        id: Uuid::now_v7(),
        from,
        to,
        group,
        starts_at: starts_at.unwrap_or(now),
        ends_at,
        reason,
        created_by: caller.subject.clone(),
        created_at: now,
        revoked_at: None,
    };
    let candidate = d.clone();
    state
        .store
        .put_delegation(
            &caller.tenant,
            &d,
            Box::new(move |existing| {
                approval::check_delegation(&candidate, existing, now).map_err(StoreError::Invalid)
            }),
        )
        .await?;
    state.notifier.notify(Uuid::nil());
    Ok((StatusCode::CREATED, Json(d)))
}

#[utoipa::path(get, path = "/api/v1/delegations", tag = "approvals", description = "Delegations of the tenant, newest first.",
    responses((status = 200, body = Vec<Delegation>)))]
pub(super) async fn list_delegations(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Delegation>>> {
    Ok(Json(state.store.list_delegations(&caller.tenant).await?))
}

#[utoipa::path(delete, path = "/api/v1/delegations/{id}", tag = "approvals", params(("id" = Uuid, Path)),
    description = "Ends a delegation now: pending approvals route back to the delegator.",
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn revoke_delegation(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id =
        Uuid::parse_str(&id).map_err(|_| ApiError::field("id", "invalid_format", "not a UUID"))?;
    let d = state
        .store
        .list_delegations(&caller.tenant)
        .await?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or(ApiError::NotFound)?;
    if d.from != caller.subject && d.created_by != caller.subject && !caller.role.is_admin() {
        return Err(ApiError::Forbidden(
            "only the delegator or an admin may end a delegation".into(),
        ));
    }
    if !state
        .store
        .revoke_delegation(&caller.tenant, id, &caller.subject, state.clock.now())
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.notifier.notify(Uuid::nil());
    Ok(StatusCode::NO_CONTENT)
}
