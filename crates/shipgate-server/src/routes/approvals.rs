//! Approvals and gates: people, approver groups, the policy, change requests, decisions,
//! evidence, the gate (long-poll), explain, timeline and the approval queue. Handlers parse,
//! authorise and hand over to the domain (through `crate::governance`).
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use shipgate_domain::approval::{
    self, DecisionRequest, Delegation, GateCall, GateDecision, Group, Person, PolicyRecord,
    RootCauseReview,
};
use shipgate_domain::audit::{AuditEntry, sha256_hex};
use shipgate_domain::change::{
    ChangeRequest, ChangeStatus, DecisionKind, Evidence, parse_change_spec,
};
use shipgate_domain::input::{Fields, parse_digest};
use shipgate_domain::policy::{Policy, Requirements};
use shipgate_domain::{DeploymentFilter, FieldErrors, Role};
use shipgate_store::{ChangeMutation, StoreError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{Params, QueryPairs, body_bytes, parse_json, resolve_environment};
use crate::auth::{Caller, generate_token, hash_token};
use crate::error::{ApiError, ApiResult, Problem};
use crate::service::gate::{self as governance, GateQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_person, list_people))
        .routes(routes!(put_group))
        .routes(routes!(list_groups))
        .routes(routes!(push_policy, current_policy))
        .routes(routes!(policy_history))
        .routes(routes!(create_change, list_changes))
        .routes(routes!(get_change))
        .routes(routes!(resubmit_change))
        .routes(routes!(add_evidence))
        .routes(routes!(decide_change))
        .routes(routes!(explain_change))
        .routes(routes!(timeline))
        .routes(routes!(gate))
        .routes(routes!(approval_queue))
        .routes(routes!(reviews))
        .routes(routes!(create_delegation, list_delegations))
        .routes(routes!(revoke_delegation))
}

fn object(v: &Value) -> ApiResult<&serde_json::Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| ApiError::field("", "invalid_type", "expected a JSON object"))
}

// ---------------------------------------------------------------------------------------------
// People and groups

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePersonRequest {
    subject: String,
    name: Option<String>,
    email: Option<String>,
    /// Also create a personal API token with this role (shown once).
    token_role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedPerson {
    person: Person,
    /// The personal token, when one was asked for. Shown once.
    token: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/people", tag = "approvals", request_body = CreatePersonRequest,
    description = "Records a person who can be an approver (admin), optionally with a personal token.",
    responses((status = 201, body = CreatedPerson), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn create_person(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedPerson>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let subject = f.name("subject", true);
    let name = f.opt_str("name", 256);
    let email = f.opt_str("email", 256);
    let role = f.enumeration_nonempty("token_role", Role::parse, Role::expected);
    let errors = f.finish();
    let Some(subject) = subject else {
        return Err(errors.into());
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    if role == Some(Role::EmergencyDeployer) {
        super::admin::check_emergency_holder(&state, &caller.tenant, &subject).await?;
    }
    let now = state.clock.now();
    let person = Person {
        subject: subject.clone(),
        name,
        email,
        created_at: now,
    };
    state
        .store
        .put_person(&caller.tenant, &person, &caller.subject)
        .await?;
    let token = match role {
        None => None,
        Some(role) => {
            let token = generate_token();
            let t = shipgate_domain::ApiToken {
                id: Uuid::now_v7(),
                tenant: caller.tenant.clone(),
                subject,
                role,
                root: false,
                token_hash: hash_token(&token),
                created_at: now,
                expires_at: None,
                env_tier: None,
                created_by: Some(caller.subject.clone()),
                last_used_at: None,
                confirmed_by: None,
            };
            state.store.create_token(&t, &caller.subject).await?;
            Some(token)
        }
    };
    Ok((StatusCode::CREATED, Json(CreatedPerson { person, token })))
}

#[utoipa::path(get, path = "/api/v1/people", tag = "approvals", description = "People of the tenant.",
    responses((status = 200, body = Vec<Person>)))]
async fn list_people(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Person>>> {
    Ok(Json(state.store.list_people(&caller.tenant).await?))
}

#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupRequest {
    description: Option<String>,
    /// At least one: a group without members is refused.
    members: Vec<String>,
    /// Count only when too few members are able to approve.
    backups: Option<Vec<String>>,
    department: Option<String>,
    regions: Option<Vec<String>>,
    compliance: Option<Vec<String>>,
}

#[utoipa::path(put, path = "/api/v1/groups/{name}", tag = "approvals", request_body = GroupRequest,
    params(("name" = String, Path, description = "Group name")),
    description = "Creates or replaces an approver group (admin). A group has at least one member; members and backups must be known people.",
    responses((status = 200, body = Group), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn put_group(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Group>> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let mut f = Fields::new(object(&v)?, "");
    let description = f.opt_str("description", 1000);
    let members = f.string_list("members");
    let backups = f.string_list("backups");
    let department = f.opt_str("department", 128);
    let regions = f.string_list("regions");
    let compliance = f.string_list("compliance");
    let mut errors = f.finish();
    // A group needs at least one member: a body without members (`{}`) does not empty it.
    match v.get("members") {
        None | Some(Value::Null) => {
            errors.add("members", "required", "a group needs at least one member")
        }
        Some(Value::Array(a)) if a.is_empty() => {
            errors.add("members", "empty", "a group needs at least one member")
        }
        _ => {}
    }
    if !shipgate_domain::input::NAME.is_match(&name) {
        errors.add(
            "name",
            "invalid_format",
            "1-128 characters of letters, digits, '.', '_', '/' or '-'",
        );
    }
    let people: BTreeSet<String> = state
        .store
        .list_people(&caller.tenant)
        .await?
        .into_iter()
        .map(|p| p.subject)
        .collect();
    for (field, list) in [("members", &members), ("backups", &backups)] {
        for (i, m) in list.iter().enumerate() {
            if !people.contains(m) {
                errors.add(
                    format!("{field}[{i}]"),
                    "unknown_person",
                    format!("'{m}' is not a known person; create it with `shipgate person create`"),
                );
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let g = Group {
        name,
        description,
        members,
        backups,
        department,
        regions,
        compliance: compliance.iter().map(|c| c.to_ascii_uppercase()).collect(),
    };
    state
        .store
        .put_group(&caller.tenant, &g, &caller.subject, state.clock.now())
        .await?;
    state.governance.forget(&caller.tenant);
    state.notifier.notify(Uuid::nil());
    Ok(Json(g))
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "approvals", description = "Approver groups of the tenant.",
    responses((status = 200, body = Vec<Group>)))]
async fn list_groups(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Group>>> {
    Ok(Json(state.store.list_groups(&caller.tenant).await?))
}

// ---------------------------------------------------------------------------------------------
// The policy

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

fn view(r: PolicyRecord, changed: bool) -> PolicyView {
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
async fn push_policy(
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
async fn current_policy(
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
async fn policy_history(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<PolicyRecord>>> {
    Ok(Json(state.store.policy_history(&caller.tenant).await?))
}

// ---------------------------------------------------------------------------------------------
// Change requests

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

async fn parse_spec(
    state: &AppState,
    tenant: &str,
    v: &Value,
) -> ApiResult<shipgate_domain::change::ChangeSpec> {
    // Resolve every label first (async), then validate synchronously.
    let mut resolved = BTreeMap::new();
    if let Some(Value::Array(items)) = v.get("environments") {
        for it in items {
            if let Some(s) = it.as_str() {
                let s = s.trim().to_owned();
                let r = resolve_environment(state, tenant, &s).await?;
                resolved.insert(s, r);
            }
        }
    }
    Ok(parse_change_spec(v, &|label| {
        resolved
            .get(label)
            .cloned()
            .unwrap_or_else(|| Err(format!("'{label}' is not a known environment")))
    })?)
}

async fn require_policy(
    state: &AppState,
    tenant: &str,
) -> ApiResult<std::sync::Arc<approval::PolicyVersion>> {
    governance::policy(state, tenant)
        .await?
        .ok_or_else(|| ApiError::Conflict {
            code: shipgate_domain::ErrorCode::NoPolicy,
            message:
                "no approval policy has been pushed for this tenant (`shipgate policy push FILE`)"
                    .into(),
        })
}

#[utoipa::path(post, path = "/api/v1/changes", tag = "approvals", request_body = ChangeSubmission,
    description = "Opens a change request. The policy decides which fields are mandatory; every missing one is listed in one problem. Standard changes the policy pre-approves start approved.",
    responses((status = 201, body = ChangeRequest), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn create_change(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<ChangeRequest>)> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    Ok((
        StatusCode::CREATED,
        Json(open(&state, &caller, &v, Vec::new()).await?),
    ))
}

/// Opens a change request from a request body, as `caller` (the requester).
pub(crate) async fn open(
    state: &AppState,
    caller: &Caller,
    v: &serde_json::Value,
    record_authors: Vec<String>,
) -> ApiResult<ChangeRequest> {
    let state = state.clone();
    let mut spec = parse_spec(&state, &caller.tenant, v).await?;
    spec.record_authors = record_authors;
    let pv = require_policy(&state, &caller.tenant).await?;
    let groups = governance::groups(&state, &caller.tenant).await?;
    let now = state.clock.now();
    let (tenant, requester) = (caller.tenant.clone(), caller.subject.clone());
    let c = state
        .store
        .create_change(
            &caller.tenant,
            &caller.subject,
            Box::new(move |n| {
                approval::open_change(
                    Uuid::now_v7(),
                    format!("CR-{n}"),
                    &tenant,
                    &requester,
                    spec,
                    &pv,
                    &groups,
                    now,
                )
                .map_err(StoreError::Invalid)
            }),
            now,
        )
        .await?;
    state.notifier.notify(c.id);
    governance::check_emergency_threshold(&state, &c).await?;
    metrics::counter!("shipgate_changes_opened_total", "type" => c.spec.change_type.as_str())
        .increment(1);
    Ok(c)
}

#[utoipa::path(get, path = "/api/v1/changes", tag = "approvals",
    params(("status" = Option<String>, Query, description = "pending, approved, bypassed, rejected, changes_requested, withdrawn"), ("limit" = Option<u32>, Query)),
    description = "Change requests, newest first.",
    responses((status = 200, body = Vec<ChangeRequest>)))]
async fn list_changes(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<Vec<ChangeRequest>>> {
    let mut p = Params::new(q, &["status", "limit"]);
    let status = p.parse("status", |s| {
        ChangeStatus::parse(s)
            .ok_or_else(|| format!("'{s}' is not one of: {}", ChangeStatus::expected()))
    });
    let limit = p.parse("limit", |s| {
        s.parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or("an integer from 1 to 1000".to_owned())
    });
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
async fn get_change(
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
async fn resubmit_change(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ChangeRequest>> {
    let v = parse_json(&body_bytes(body, state.settings.max_body_bytes)?)?;
    let spec = parse_spec(&state, &caller.tenant, &v).await?;
    let pv = require_policy(&state, &caller.tenant).await?;
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
async fn add_evidence(
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
async fn decide_change(
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
    let pv = require_policy(&state, &caller.tenant).await?;
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
async fn explain_change(
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
async fn timeline(
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

// ---------------------------------------------------------------------------------------------
// The gate

fn parse_wait(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(s)
        .map_err(|_| format!("'{s}': use seconds or a duration like 60s, 5m"))
}

/// How long past its `wait` a gate call may take before it answers `error`.
const GATE_GRACE: Duration = Duration::from_millis(900);

#[utoipa::path(get, path = "/api/v1/gate", tag = "approvals",
    params(
        ("change" = String, Query, description = "CR-<n> or the change id"),
        ("environment" = String, Query, description = "The environment about to be deployed"),
        ("digest" = Option<String>, Query, description = "sha256:<hex> of the artifact about to be deployed"),
        ("wait" = Option<String>, Query, description = "Long-poll: hold a pending answer up to this long (60s, 5m)"),
    ),
    description = "Whether a deployment may go ahead now. Fails closed: `error` when shipgate cannot decide. With `wait`, a pending answer is held until it settles (an approval wakes it within milliseconds, on any instance). Every call is logged for the change's timeline.",
    responses((status = 200, body = GateDecision), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn gate(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<(StatusCode, HeaderMap, Json<GateDecision>)> {
    let mut p = Params::new(q, &["change", "environment", "digest", "deployer", "wait"]);
    let change = p.get("change");
    let environment = p.get("environment");
    let digest = p.parse("digest", parse_digest);
    // The deployer is who is authenticated, never a name the caller chooses.
    let deployer = p.get("deployer");
    if let Some(d) = &deployer
        && shipgate_domain::identity::normalize(d)
            != shipgate_domain::identity::normalize(&caller.subject)
    {
        p.errors.add(
            "deployer",
            "not_the_caller",
            format!(
                "the deployer is the authenticated caller ({}); leave deployer out or name the caller",
                caller.subject
            ),
        );
    }
    let wait = p.parse("wait", parse_wait);
    if change.is_none() {
        p.errors.add(
            "change",
            "required",
            "the change request to gate on (CR-<n>)",
        );
    }
    if environment.is_none() {
        p.errors.add(
            "environment",
            "required",
            "the environment about to be deployed",
        );
    }
    let max = Duration::from_secs(state.settings.max_gate_wait_secs);
    if let Some(w) = wait
        && w > max
    {
        p.errors
            .add("wait", "too_long", format!("at most {}s", max.as_secs()));
    }
    p.finish()?;
    let (Some(change), Some(label)) = (change, environment) else {
        return Err(ApiError::BadRequest(
            "change and environment are required".into(),
        ));
    };
    // The answer comes within the wait plus a second, whatever the store does: past that, the
    // gate says `error` (fail closed) and why.
    let wait = wait.unwrap_or_default();
    let budget = wait.saturating_add(GATE_GRACE);
    let (change_key, env_label) = (change.clone(), label.clone());
    let d = match tokio::time::timeout(budget, async {
        // Accept any label the taxonomy knows (`prd` for `production`).
        let environment = match resolve_environment(&state, &caller.tenant, &label).await {
            Ok(Ok(e)) => e.name,
            _ => label,
        };
        let q = GateQuery {
            tenant: caller.tenant.clone(),
            caller: caller.subject.clone(),
            change,
            environment,
            digest,
            deployer: Some(caller.subject.clone()),
        };
        governance::gate(&state, q, wait).await
    })
    .await
    {
        Ok(d) => d,
        Err(_) => {
            metrics::counter!("shipgate_gate_decisions_total", "state" => "error").increment(1);
            GateDecision::error(
                &change_key,
                &env_label,
                "timeout",
                format!(
                    "shipgate could not decide within {}s (the store did not answer in time); the gate stays closed",
                    budget.as_secs_f32()
                ),
            )
        }
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = d.state.as_str().parse() {
        headers.insert("x-shipgate-gate", v);
    }
    Ok((StatusCode::OK, headers, Json(d)))
}

// ---------------------------------------------------------------------------------------------
// The queue and reviews

#[derive(Serialize, ToSchema)]
pub struct QueueItem {
    change: String,
    title: String,
    #[serde(rename = "type")]
    change_type: String,
    requester: String,
    #[schema(value_type = String, format = DateTime)]
    waiting_since: shipgate_domain::time::Timestamp,
    waiting_secs: i64,
    sla_secs: Option<u64>,
    sla_breached: bool,
    /// Per environment, the groups still short of their quorum and who could act.
    blocking: Vec<Blocking>,
    /// The caller could approve it now.
    you_can_approve: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Blocking {
    environment: String,
    group: String,
    quorum: u32,
    approved_by: Vec<String>,
    eligible: Vec<String>,
    reasons: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/approvals", tag = "approvals",
    params(("all" = Option<bool>, Query, description = "Every pending change (change managers), not only those the caller can approve")),
    description = "The approval queue: pending changes with who is blocking them and for how long.",
    responses((status = 200, body = Vec<QueueItem>)))]
async fn approval_queue(
    State(state): State<AppState>,
    caller: Caller,
    QueryPairs(q): QueryPairs,
) -> ApiResult<Json<Vec<QueueItem>>> {
    let mut p = Params::new(q, &["all"]);
    let all = p.parse("all", |s| {
        s.parse::<bool>().map_err(|_| "true or false".to_owned())
    });
    p.finish()?;
    let all = all.unwrap_or(false);
    let pending = state
        .store
        .list_changes(&caller.tenant, Some(ChangeStatus::Pending), 1000)
        .await?;
    let pv = governance::policy(&state, &caller.tenant).await?;
    let groups = governance::groups(&state, &caller.tenant).await?;
    let ids = governance::identities(&state, &caller.tenant).await?;
    let now = state.clock.now();
    // Pending approvals re-route to a delegate while the delegation runs, and back after.
    let mut me: Vec<String> = vec![caller.subject.clone()];
    me.extend(
        state
            .store
            .list_delegations(&caller.tenant)
            .await?
            .into_iter()
            .filter(|d| d.to == caller.subject && d.active(now))
            .map(|d| d.from),
    );
    let mut out = Vec::new();
    for c in pending {
        let explained = approval::explain(&c, pv.as_deref(), &groups, &ids, now);
        let mut blocking = Vec::new();
        let mut you = false;
        let mut sla: Option<u64> = None;
        let decided = |who: &String| c.current_decisions().any(|d| d.person() == who);
        for (req, d) in &explained {
            if let Some(r) = req {
                sla = Some(sla.map_or(r.sla.as_secs(), |s| s.min(r.sla.as_secs())));
            }
            for g in &d.approvals {
                if (g.approved_by.len() as u32) < g.quorum {
                    if me
                        .iter()
                        .any(|who| g.eligible.contains(who) && !decided(who) && who != &c.requester)
                    {
                        you = true;
                    }
                    blocking.push(Blocking {
                        environment: d.environment.clone(),
                        group: g.group.clone(),
                        quorum: g.quorum,
                        approved_by: g.approved_by.clone(),
                        eligible: g.eligible.clone(),
                        reasons: d.reasons.iter().map(|r| r.code.clone()).collect(),
                    });
                }
            }
        }
        if !all && !you {
            continue;
        }
        let waiting = (now - c.updated_at).num_seconds().max(0);
        out.push(QueueItem {
            change: c.key.clone(),
            title: c.spec.title.clone(),
            change_type: c.spec.change_type.as_str().to_owned(),
            requester: c.requester.clone(),
            waiting_since: c.updated_at,
            waiting_secs: waiting,
            sla_secs: sla,
            sla_breached: sla.is_some_and(|s| waiting as u64 > s),
            blocking,
            you_can_approve: you,
        });
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.waiting_secs));
    Ok(Json(out))
}

#[derive(Serialize, ToSchema)]
pub struct Reviews {
    /// Post-deployment reviews not yet recorded (emergency bypasses, small-team self-approvals).
    pending_reviews: Vec<PendingReview>,
    root_cause_reviews: Vec<RootCauseReview>,
}

#[derive(Serialize, ToSchema)]
pub struct PendingReview {
    change: String,
    #[schema(value_type = String, format = DateTime)]
    due_at: shipgate_domain::time::Timestamp,
    overdue: bool,
    escalated: bool,
    incident_id: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/reviews", tag = "approvals",
    description = "Post-deployment reviews due or overdue, and root-cause reviews opened by the emergency threshold.",
    responses((status = 200, body = Reviews)))]
async fn reviews(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Reviews>> {
    let now = state.clock.now();
    let mut pending = Vec::new();
    for c in state.store.list_changes(&caller.tenant, None, 1000).await? {
        if let (Some(due), None) = (c.review_due_at, c.reviewed_at) {
            pending.push(PendingReview {
                change: c.key.clone(),
                due_at: due,
                overdue: c.review_overdue(now),
                escalated: c.review_escalated_at.is_some(),
                incident_id: c.spec.incident_id.clone(),
            });
        }
    }
    Ok(Json(Reviews {
        pending_reviews: pending,
        root_cause_reviews: state.store.root_cause_reviews(&caller.tenant).await?,
    }))
}

// ---------------------------------------------------------------------------------------------
// Delegations

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
async fn create_delegation(
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
async fn list_delegations(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Vec<Delegation>>> {
    Ok(Json(state.store.list_delegations(&caller.tenant).await?))
}

#[utoipa::path(delete, path = "/api/v1/delegations/{id}", tag = "approvals", params(("id" = Uuid, Path)),
    description = "Ends a delegation now: pending approvals route back to the delegator.",
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn revoke_delegation(
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::parse_wait;
    use std::time::Duration;

    #[test]
    fn waits() {
        assert_eq!(parse_wait("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_wait("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_wait("soon").is_err());
    }
}
