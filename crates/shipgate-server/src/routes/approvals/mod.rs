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
use shipgate_domain::change::{ChangeRequest, ChangeStatus, DecisionKind, Evidence};
use shipgate_domain::input::{Fields, parse_digest};
use shipgate_domain::policy::{Policy, Requirements};
use shipgate_domain::{DeploymentFilter, FieldErrors, Role};
use shipgate_store::{ChangeMutation, StoreError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod changes;
mod delegations;
mod gate;
mod people;
mod policy;
mod queue;

use crate::auth::{Caller, generate_token, hash_token};
use crate::error::{ApiError, ApiResult, Problem};
use crate::routes::{Params, QueryPairs, body_bytes, parse_json, resolve_environment};
use crate::service::gate::{self as governance, GateQuery};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(people::router())
        .merge(policy::router())
        .merge(changes::router())
        .merge(gate::router())
        .merge(queue::router())
        .merge(delegations::router())
}

fn object(v: &Value) -> ApiResult<&serde_json::Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| ApiError::field("", "invalid_type", "expected a JSON object"))
}
