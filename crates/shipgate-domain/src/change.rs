//! Change requests: what is about to change, why, how risky it is, and the decisions taken on it.
//! A change request is the unit people approve; gates answer for one of its environments.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::FieldErrors;
use crate::input::{Fields, parse_digest};
use crate::model::ResolvedEnvironment;
use crate::time::Timestamp;

str_enum!(
    /// Risk classification of a change (ITIL): pre-approved, reviewed, or emergency.
    ChangeType {
        Standard => "standard",
        Normal => "normal",
        Emergency => "emergency",
    }
);

str_enum!(
    RiskLevel {
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
);

str_enum!(
    /// Where a change request stands: `pending` (waiting for approvals or, for an emergency,
    /// acknowledgements), `approved`, `bypassed` (emergency, after the dual acknowledgement),
    /// `rejected` (final until resubmitted), `changes_requested`, `withdrawn`. Whether an
    /// approval still holds (expiry, digests, policy version) is decided per gate call.
    ChangeStatus {
        Pending => "pending",
        Approved => "approved",
        Bypassed => "bypassed",
        Rejected => "rejected",
        ChangesRequested => "changes_requested",
        Withdrawn => "withdrawn",
    }
);

str_enum!(
    /// Facts about the artifact that policy rules can match on.
    ArtifactFlag {
        SchemaChange => "schema_change",
        SecurityPatch => "security_patch",
        CustomerFacing => "customer_facing",
    }
);

str_enum!(
    /// What a person did to a change. The two `ack_*` kinds are the emergency bypass's dual
    /// acknowledgement; `review` is the post-deployment review of an emergency change or the
    /// later peer review of a small-team self-approval.
    DecisionKind {
        Approve => "approve",
        Reject => "reject",
        RequestChanges => "request_changes",
        AckIncidentCommander => "ack_incident_commander",
        AckSystemOwner => "ack_system_owner",
        Review => "review",
    }
);

/// Evidence attached to a change: a report, a scan, a coverage summary. Stored by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Evidence {
    pub id: Uuid,
    /// `performance_test`, `security_scan`, `coverage`, ...: what policies ask for.
    pub kind: String,
    pub name: Option<String>,
    /// `sha256:<hex>` of the evidence document.
    pub digest: String,
    pub uri: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub added_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub added_at: Timestamp,
}

/// The facts a submitter gives. Immutable per revision; resubmitting replaces them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangeSpec {
    #[serde(rename = "type")]
    pub change_type: ChangeType,
    pub title: String,
    pub justification: Option<String>,
    pub impact: Option<String>,
    pub rollback_plan: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub window_start: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub window_end: Option<Timestamp>,
    pub services: Vec<String>,
    pub environments: Vec<ResolvedEnvironment>,
    /// `sha256:<hex>` digests of the artifacts this change deploys.
    pub artifact_digests: Vec<String>,
    pub ticket: Option<String>,
    pub risk: RiskLevel,
    /// Service criticality tier (`tier-1` is the most critical).
    pub criticality: Option<String>,
    /// Compliance tags: SOX, PCI, HIPAA, GDPR, ...
    pub compliance: Vec<String>,
    pub artifact_flags: Vec<ArtifactFlag>,
    /// Authors of the commits in the change (for the authors-cannot-approve rule).
    pub authors: Vec<String>,
    /// Everyone who authored the record the change was opened from (an ITSM ticket's opener,
    /// requester, reporter, assignee). Set by shipgate from the record, never by the caller;
    /// none of them may approve or acknowledge the change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_authors: Vec<String>,
    pub team: Option<String>,
    /// Emergency criteria: an active incident or an exploited vulnerability.
    pub incident_id: Option<String>,
    pub exploit_ref: Option<String>,
}

/// A decision someone took on a change. Append-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Decision {
    pub id: Uuid,
    pub revision: i32,
    pub kind: DecisionKind,
    /// Who acted.
    pub actor: String,
    /// Whom they acted for (delegation; Identity issue).
    pub on_behalf_of: Option<String>,
    /// The approver group the approval counts for, when the approver chose one.
    pub group: Option<String>,
    pub comment: Option<String>,
    /// The requester approved their own change under small-team mode.
    pub self_approval: bool,
    /// SHA-256 of the policy version in force.
    pub policy_hash: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

/// A change request with its current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChangeRequest {
    pub id: Uuid,
    /// `CR-<n>`, per tenant.
    pub key: String,
    pub tenant: String,
    #[serde(flatten)]
    pub spec: ChangeSpec,
    pub requester: String,
    pub status: ChangeStatus,
    /// Starts at 1; resubmitting after a rejection or a request for changes adds one.
    pub revision: i32,
    /// How many times the change was sent back (rejected or changes requested).
    pub rework_count: i32,
    /// The policy version the current revision was submitted under.
    pub policy_hash: String,
    pub policy_version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    /// When the change became approved or bypassed (the validity window starts here).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<Timestamp>,
    /// Post-deployment review deadline (emergency, small-team self-approval).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub review_due_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub reviewed_at: Option<Timestamp>,
    /// When an overdue review was escalated.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub review_escalated_at: Option<Timestamp>,
    /// When the approval SLA passed and the change was escalated to the policy's resolution
    /// authority (`escalate_to`).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub escalated_at: Option<Timestamp>,
    pub decisions: Vec<Decision>,
    pub evidence: Vec<Evidence>,
}

impl Decision {
    /// Whose authority the decision carries: the delegator when acting on someone's behalf.
    pub fn person(&self) -> &str {
        self.on_behalf_of.as_deref().unwrap_or(&self.actor)
    }
}

impl ChangeRequest {
    pub fn current_decisions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions
            .iter()
            .filter(|d| d.revision == self.revision)
    }

    pub fn covers_environment(&self, name: &str) -> Option<&ResolvedEnvironment> {
        self.spec
            .environments
            .iter()
            .find(|e| e.name == name || e.raw == name)
    }

    pub fn review_overdue(&self, now: Timestamp) -> bool {
        self.reviewed_at.is_none() && self.review_due_at.is_some_and(|d| d < now)
    }
}

/// Parses and validates a change submission. Environments are resolved by the caller's
/// taxonomy (`resolve`), which returns the field error message for a label it refuses.
pub fn parse_change_spec(
    value: &Value,
    resolve: &dyn Fn(&str) -> Result<ResolvedEnvironment, String>,
) -> Result<ChangeSpec, FieldErrors> {
    let Some(map) = value.as_object() else {
        let mut e = FieldErrors::default();
        e.add("", "invalid_type", "expected a JSON object");
        return Err(e);
    };
    let mut f = Fields::new(map, "");
    let change_type = f.enumeration_nonempty("type", ChangeType::parse, ChangeType::expected);
    let type_given = map.get("type").is_some_and(|v| !v.is_null());
    let title = f.req_str("title", 200);
    let justification = f.opt_str("justification", 10_000);
    let impact = f.opt_str("impact", 10_000);
    let rollback_plan = f.opt_str("rollback_plan", 10_000);
    let window_start = f.timestamp_any_nonempty("window_start");
    let window_end = f.timestamp_any_nonempty("window_end");
    let services = f.string_list("services");
    let env_labels = f.string_list("environments");
    let digests_raw = raw_list(map, "artifact_digests");
    f.mark("artifact_digests");
    let ticket = f.opt_str("ticket", 256);
    let risk = f.enumeration_nonempty("risk", RiskLevel::parse, RiskLevel::expected);
    let criticality = f.opt_str("criticality", 64);
    let compliance = f.string_list("compliance");
    let flags = f.string_list("artifact_flags");
    let authors = f.string_list("authors");
    let team = f.opt_str("team", 128);
    let incident_id = f.opt_str("incident_id", 256);
    let exploit_ref = f.opt_str("exploit_ref", 256);
    let mut errors = f.finish();

    if !type_given {
        errors.add(
            "type",
            "required",
            "is required (standard, normal or emergency)",
        );
    }
    // An empty list covers nothing: refused like a missing one (unless the list itself was
    // already reported as malformed).
    let reported = |e: &FieldErrors, k: &str| e.0.iter().any(|x| x.field.starts_with(k));
    if services.is_empty() && !reported(&errors, "services") {
        errors.add("services", "required", "name at least one service");
    }
    if env_labels.is_empty() && !reported(&errors, "environments") {
        errors.add("environments", "required", "name at least one environment");
    }
    let mut environments: Vec<ResolvedEnvironment> = Vec::new();
    for (i, label) in env_labels.iter().enumerate() {
        match resolve(label) {
            Ok(e) if environments.iter().any(|x| x.name == e.name) => errors.add(
                format!("environments[{i}]"),
                "duplicate",
                format!("'{label}' names the same environment as an earlier entry"),
            ),
            Ok(e) => environments.push(e),
            Err(m) => errors.add(format!("environments[{i}]"), "unknown_environment", m),
        }
    }
    let mut artifact_digests = Vec::new();
    match digests_raw {
        Ok(items) => {
            for (i, d) in items.iter().enumerate() {
                match parse_digest(d) {
                    Ok(d) if artifact_digests.contains(&d) => errors.add(
                        format!("artifact_digests[{i}]"),
                        "duplicate",
                        "listed twice",
                    ),
                    Ok(d) => artifact_digests.push(d),
                    Err(m) => errors.add(format!("artifact_digests[{i}]"), "invalid_format", m),
                }
            }
        }
        Err(m) => errors.add("artifact_digests", "invalid_type", m),
    }
    let mut artifact_flags = Vec::new();
    for (i, s) in flags.iter().enumerate() {
        match ArtifactFlag::parse(s) {
            Some(fl) => artifact_flags.push(fl),
            None => errors.add(
                format!("artifact_flags[{i}]"),
                "invalid_value",
                format!("'{s}' is not one of: {}", ArtifactFlag::expected()),
            ),
        }
    }
    if let (Some(s), Some(e)) = (window_start, window_end)
        && e <= s
    {
        errors.add("window_end", "invalid_value", "must be after window_start");
    }
    if change_type == Some(ChangeType::Emergency) && incident_id.is_none() && exploit_ref.is_none()
    {
        errors.add(
            "incident_id",
            "required",
            "an emergency change needs an active incident id (or an exploit_ref)",
        );
    }
    let (Some(change_type), Some(title)) = (change_type, title) else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ChangeSpec {
        change_type,
        title,
        justification,
        impact,
        rollback_plan,
        window_start,
        window_end,
        services,
        environments,
        artifact_digests,
        ticket,
        risk: risk.unwrap_or(RiskLevel::Medium),
        criticality,
        compliance: compliance.iter().map(|c| c.to_ascii_uppercase()).collect(),
        artifact_flags,
        authors,
        record_authors: Vec::new(),
        team,
        incident_id,
        exploit_ref,
    })
}

fn raw_list(map: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| "expected an array of strings".to_owned())
            })
            .collect(),
        Some(_) => Err("expected an array of strings".into()),
    }
}

/// The value of a policy-required field, for the "missing fields" check.
pub fn spec_field_present(spec: &ChangeSpec, field: &str) -> Option<bool> {
    Some(match field {
        "justification" => spec.justification.is_some(),
        "impact" => spec.impact.is_some(),
        "rollback_plan" => spec.rollback_plan.is_some(),
        "window" | "window_start" => spec.window_start.is_some(),
        "window_end" => spec.window_end.is_some(),
        "ticket" => spec.ticket.is_some(),
        "artifact_digests" => !spec.artifact_digests.is_empty(),
        "criticality" => spec.criticality.is_some(),
        "authors" => !spec.authors.is_empty(),
        "team" => spec.team.is_some(),
        "incident_id" => spec.incident_id.is_some(),
        _ => return None,
    })
}

pub const SPEC_FIELDS: &[&str] = &[
    "justification",
    "impact",
    "rollback_plan",
    "window_start",
    "window_end",
    "ticket",
    "artifact_digests",
    "criticality",
    "authors",
    "team",
    "incident_id",
];
