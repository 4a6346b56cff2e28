//! Change requests.
use super::*;
use crate::service::changes as service_changes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_change, list_changes))
        .routes(routes!(get_change))
        .routes(routes!(resubmit_change))
        .routes(routes!(add_evidence))
        .routes(routes!(decide_change))
        .routes(routes!(explain_change))
        .routes(routes!(timeline))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSubmission {
    /// standard, normal or emergency.
    #[schema(rename = "type")]
    change_type: String,
    title: String,
    justification: Option<String>,
    impact: Option<String>,
    rollback_plan: Option<String>,
    window_start: Option<String>,
    window_end: Option<String>,
    services: Vec<String>,
    environments: Vec<String>,
    artifact_digests: Option<Vec<String>>,
    ticket: Option<String>,
    /// low, medium (default), high, critical.
    risk: Option<String>,
    criticality: Option<String>,
    compliance: Option<Vec<String>>,
    /// schema_change, security_patch, customer_facing.
    artifact_flags: Option<Vec<String>>,
    authors: Option<Vec<String>>,
    team: Option<String>,
    incident_id: Option<String>,
    exploit_ref: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/changes", tag = "approvals", request_body = ChangeSubmission,
    description = "Opens a change request. The policy decides which fields are mandatory; every missing one is listed in one problem. Standard changes the policy pre-approves start approved.",
    responses((status = 201, body = ChangeRequest), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn create_change(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ChangeRequest>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    Ok((
        StatusCode::CREATED,
        Json(service_changes::open(&state, &caller, &v, Vec::new(), None).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/changes", tag = "approvals",
    params(("status" = Option<String>, Query, description = "pending, approved, bypassed, rejected, changes_requested, withdrawn"), ("limit" = Option<u32>, Query)),
    description = "Change requests, newest first.",
    responses((status = 200, body = Vec<ChangeRequest>)))]
pub(super) async fn list_changes(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<Vec<ChangeRequest>>> {
    let mut p = Params::new(q, &["status", "limit"]);
    let status = p.parse("status", |s| {
        ChangeStatus::parse(s)
            .ok_or_else(|| format!("'{s}' is not one of: {}", ChangeStatus::expected()))
    });
    let limit = p.limit();
    p.finish()?;
    Ok(Json(
        state
            .store
            .list_changes(&caller.tenant, status, limit.unwrap_or(100))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/changes/{key}", tag = "approvals",
    params(("key" = String, Path, description = "CR-<n> or the change id")),
    responses((status = 200, body = ChangeRequest), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn get_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<ChangeRequest>> {
    Ok(Json(
        state
            .store
            .get_change(&caller.tenant, &key)
            .await?
            .ok_or(ApiError::NotFound)?,
    ))
}

#[utoipa::path(post, path = "/api/v1/changes/{key}/resubmit", tag = "approvals", request_body = ChangeSubmission,
    params(("key" = String, Path)),
    description = "Resubmits a change (its requester): a new revision, whose earlier decisions no longer count. Needed after a rejection, a request for changes, an expiry or a new artifact digest.",
    responses((status = 200, body = ChangeRequest), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn resubmit_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ChangeRequest>> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let spec = service_changes::parse_spec(&state, &caller.tenant, &v).await?;
    let pv = service_changes::require_policy(&state, &caller.tenant).await?;
    let groups = governance::groups(&state, &caller.tenant).await?;
    let now = state.clock.now();
    let actor = caller.subject.clone();
    let c = governance::update_change(&state, &caller.tenant, &key, &caller.subject, move |c| {
        let next = approval::resubmit(c, spec, &actor, &pv, &groups, now).map_err(StoreError::Invalid)?;
        let mut audit = vec![(
            "change.resubmitted".to_owned(),
            json!({"key": next.key, "revision": next.revision, "spec": next.spec, "policy_hash": next.policy_hash}),
        )];
        if next.status == ChangeStatus::Approved {
            audit.push(("change.approved".into(), json!({"key": next.key, "revision": next.revision, "by": "policy"})));
        }
        Ok(ChangeMutation {
            change: Some(next),
            audit,
            ..Default::default()
        })
    })
    .await?;
    Ok(Json(c))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    /// performance_test, security_scan, coverage, ...
    kind: String,
    /// sha256:<hex> of the document.
    digest: String,
    name: Option<String>,
    uri: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

#[utoipa::path(post, path = "/api/v1/changes/{key}/evidence", tag = "approvals", request_body = EvidenceRequest,
    params(("key" = String, Path)),
    description = "Attaches evidence (stored by digest, with its metadata).",
    responses((status = 201, body = ChangeRequest), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn add_evidence(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ChangeRequest>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let kind = f.name("kind", true);
    let digest = f.req_str("digest", 80);
    let name = f.opt_str("name", 256);
    let uri = f.opt_str("uri", 2048);
    let metadata = f.string_map("metadata");
    let mut errors = f.finish();
    let digest = match digest.map(|d| parse_digest(&d)) {
        Some(Ok(d)) => Some(d),
        Some(Err(m)) => {
            errors.add("digest", "invalid_format", m);
            None
        }
        None => None,
    };
    let (Some(kind), Some(digest)) = (kind, digest) else {
        return Err(errors.into());
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let e = Evidence {
        id: Uuid::now_v7(),
        kind,
        name,
        digest,
        uri,
        metadata,
        added_by: caller.subject.clone(),
        added_at: state.clock.now(),
    };
    let c = governance::update_change(&state, &caller.tenant, &key, &caller.subject, move |c| {
        if c.evidence
            .iter()
            .any(|x| x.kind == e.kind && x.digest == e.digest)
        {
            return Err(StoreError::Conflict {
                code: shipgate_domain::ErrorCode::AlreadyRecorded,
                message: format!("{} evidence {} is already attached", e.kind, e.digest),
            });
        }
        Ok(ChangeMutation {
            audit: vec![(
                "change.evidence_added".into(),
                json!({"key": c.key, "evidence": e}),
            )],
            evidence: Some(e),
            ..Default::default()
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// approve, reject, request_changes, ack_incident_commander, ack_system_owner, review.
    decision: String,
    comment: Option<String>,
    /// The approver group this approval counts for, when the approver sits in several.
    group: Option<String>,
    /// Act for this person under their delegation to you.
    on_behalf_of: Option<String>,
    /// The change revision you reviewed; a decision on a revision that is no longer current
    /// is refused with `stale_revision`.
    revision: i32,
}

#[utoipa::path(post, path = "/api/v1/changes/{key}/decisions", tag = "approvals", request_body = DecisionBody,
    params(("key" = String, Path)),
    description = "Approves, rejects or requests changes; acknowledges an emergency bypass; records a post-deployment review. Separation of duties is enforced here; a refused self-approval is audited.",
    responses((status = 200, body = ChangeRequest), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn decide_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ChangeRequest>> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let kind = f.enumeration_nonempty("decision", DecisionKind::parse, DecisionKind::expected);
    let kind_given = v.get("decision").is_some_and(|d| !d.is_null());
    let comment = f.opt_str("comment", 10_000);
    let group = f.opt_str_nonempty("group", 128);
    let on_behalf_of = f.opt_str("on_behalf_of", 256);
    f.mark("revision");
    let mut errors = f.finish();
    let revision = match v.get("revision").filter(|r| !r.is_null()) {
        Some(r) => match r.as_i64().and_then(|r| i32::try_from(r).ok()) {
            Some(r) if r >= 1 => Some(r),
            _ => {
                errors.add(
                    "revision",
                    "invalid_value",
                    "a revision number (an integer, 1 or more)",
                );
                None
            }
        },
        None => {
            errors.add(
                "revision",
                "required",
                "name the revision you decided on (GET /changes/{key} gives it); a decision never carries over to a revision you did not see",
            );
            None
        }
    };
    if !kind_given {
        errors.add(
            "decision",
            "required",
            format!("one of: {}", DecisionKind::expected()),
        );
    }
    let Some(kind) = kind else {
        return Err(errors.into());
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let pv = service_changes::require_policy(&state, &caller.tenant).await?;
    let groups = governance::groups(&state, &caller.tenant).await?;
    let ids = governance::identities(&state, &caller.tenant).await?;
    let now = state.clock.now();
    let actor = caller.subject.clone();
    let delegations: Vec<Delegation> = state
        .store
        .list_delegations(&caller.tenant)
        .await?
        .into_iter()
        .filter(|d| ids.same(&d.to, &caller.subject) && d.active(now))
        .collect();
    let c = governance::update_change(&state, &caller.tenant, &key, &caller.subject, move |c| {
        let req = DecisionRequest {
            kind,
            actor: actor.clone(),
            on_behalf_of,
            delegations,
            group,
            comment,
            revision,
        };
        governance::decision_mutation(c, &pv, &groups, &ids, req, now)
    })
    .await?;
    metrics::counter!("shipgate_change_decisions_total", "decision" => kind.as_str()).increment(1);
    Ok(Json(c))
}

#[derive(Serialize, ToSchema)]
pub struct ExplainedEnvironment {
    requirements: Option<Requirements>,
    decision: GateDecision,
}

#[derive(Serialize, ToSchema)]
pub struct Explanation {
    change: String,
    status: ChangeStatus,
    policy_version: Option<i64>,
    policy_hash: Option<String>,
    environments: Vec<ExplainedEnvironment>,
}

#[utoipa::path(get, path = "/api/v1/changes/{key}/explain", tag = "approvals",
    params(("key" = String, Path)),
    description = "What would gate this change right now, and why: per environment, the matched rules, the groups and quorums, the approvals so far, the evidence still missing and the expiry.",
    responses((status = 200, body = Explanation), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn explain_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<Explanation>> {
    let c = state
        .store
        .get_change(&caller.tenant, &key)
        .await?
        .ok_or(ApiError::NotFound)?;
    let pv = governance::policy(&state, &caller.tenant).await?;
    let groups = governance::groups(&state, &caller.tenant).await?;
    let ids = governance::identities(&state, &caller.tenant).await?;
    let envs = approval::explain(&c, pv.as_deref(), &groups, &ids, state.clock.now());
    Ok(Json(Explanation {
        change: c.key,
        status: c.status,
        policy_version: pv.as_ref().map(|p| p.version),
        policy_hash: pv.as_ref().map(|p| p.hash.clone()),
        environments: envs
            .into_iter()
            .map(|(requirements, decision)| ExplainedEnvironment {
                requirements,
                decision,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TimelineItem {
    #[schema(value_type = String, format = DateTime)]
    at: shipgate_domain::time::Timestamp,
    /// `audit`, `gate_call`, `deployment` or `deployment_event`.
    source: String,
    /// What happened: the audit action, the gate state, the deployment status.
    what: String,
    actor: Option<String>,
    detail: Value,
}

#[utoipa::path(get, path = "/api/v1/changes/{key}/timeline", tag = "approvals",
    params(("key" = String, Path)),
    description = "The decision timeline of a change: submissions, decisions, refusals, gate calls, and the deployments recorded against it with their status events, in time order.",
    responses((status = 200, body = Vec<TimelineItem>), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub(super) async fn timeline(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<Vec<TimelineItem>>> {
    let c = state
        .store
        .get_change(&caller.tenant, &key)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut items = Vec::new();
    let entries: Vec<AuditEntry> = state
        .store
        .audit_for_subject(&caller.tenant, &c.id.to_string())
        .await?;
    for e in entries {
        items.push(TimelineItem {
            at: e.at,
            source: "audit".into(),
            what: e.action,
            actor: Some(e.actor),
            detail: serde_json::from_str(&e.payload).unwrap_or(Value::Null),
        });
    }
    let calls: Vec<GateCall> = state.store.gate_calls(&caller.tenant, &c.key).await?;
    for g in calls {
        items.push(TimelineItem {
            at: g.at,
            source: "gate_call".into(),
            what: g.state.as_str().to_owned(),
            actor: Some(g.caller.clone()),
            detail: json!(g),
        });
    }
    let filter = DeploymentFilter {
        tenant: caller.tenant.clone(),
        change_ref: Some(c.key.clone()),
        ..Default::default()
    };
    let page = state.store.list_deployments(&filter, None, 500).await?;
    for d in page.items {
        let full = state
            .store
            .get_deployment(&caller.tenant, d.record.id)
            .await?
            .unwrap_or(d);
        items.push(TimelineItem {
            at: full.record.ingested_at,
            source: "deployment".into(),
            what: "recorded".into(),
            actor: full.record.deployer.clone(),
            detail: json!({"id": full.record.id, "service": full.record.service, "environment": full.record.environment.name, "version": full.record.version, "artifact_digest": full.record.artifact_digest, "approval": full.record.approval}),
        });
        for ev in &full.events {
            items.push(TimelineItem {
                at: ev.occurred_at,
                source: "deployment_event".into(),
                what: ev.status.as_str().to_owned(),
                actor: Some(ev.recorded_by.clone()),
                detail: json!({"deployment_id": ev.deployment_id, "target": ev.target, "message": ev.message}),
            });
        }
    }
    items.sort_by_key(|i| i.at);
    Ok(Json(items))
}
