//! Change requests: opened from a submission (the API, or an ITSM record), with every
//! environment label resolved and the tenant's current policy.
use std::collections::BTreeMap;

use serde_json::Value;
use shipgate_domain::approval;
use shipgate_domain::change::{ChangeRequest, ChangeSpec, parse_change_spec};
use shipgate_store::StoreError;
use uuid::Uuid;

use super::environments::resolve_environment;
use super::{App, Caller, gate};
use crate::error::{ApiError, ApiResult};

/// Parses a submission into a change spec, every environment label resolved first.
pub async fn parse_spec(state: &App, tenant: &str, v: &Value) -> ApiResult<ChangeSpec> {
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

/// The tenant's current policy, or `no_policy`.
pub async fn require_policy(
    state: &App,
    tenant: &str,
) -> ApiResult<std::sync::Arc<approval::PolicyVersion>> {
    gate::policy(state, tenant)
        .await?
        .ok_or_else(|| ApiError::Conflict {
            code: shipgate_domain::ErrorCode::NoPolicy,
            message:
                "no approval policy has been pushed for this tenant (`shipgate policy push FILE`)"
                    .into(),
        })
}

/// Opens a change request from a request body, as `caller` (the requester); from an ITSM
/// record, with the delivery's record in the same transaction.
pub async fn open(
    state: &App,
    caller: &Caller,
    v: &serde_json::Value,
    record_authors: Vec<String>,
    delivery: Option<shipgate_domain::integrations::Delivery>,
) -> ApiResult<ChangeRequest> {
    let mut spec = parse_spec(state, &caller.tenant, v).await?;
    spec.record_authors = record_authors;
    let pv = require_policy(state, &caller.tenant).await?;
    let groups = gate::groups(state, &caller.tenant).await?;
    let now = state.clock.now();
    let (tenant, requester) = (caller.tenant.clone(), caller.subject.clone());
    let c = state
        .store
        .create_change_from(
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
            delivery,
        )
        .await?;
    state.notifier.notify(c.id);
    gate::check_emergency_threshold(state, &c).await?;
    metrics::counter!("shipgate_changes_opened_total", "type" => c.spec.change_type.as_str())
        .increment(1);
    Ok(c)
}
