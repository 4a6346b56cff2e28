//! The gate's answer (state, reasons, each group's progress) and the policy version it is given
//! under.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::groups::GroupProgress;
use crate::policy::Policy;
use crate::time::Timestamp;

str_enum!(
    /// The gate's answer. `error` is distinct: an unknown state never reads as pending.
    GateState {
        Allowed => "allowed",
        Pending => "pending",
        Denied => "denied",
        Expired => "expired",
        Error => "error",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    /// Stable code: `missing_approvals`, `rejected`, `changes_requested`, `withdrawn`,
    /// `approval_expired`, `digest_changed`, `not_yet_valid`, `missing_evidence`,
    /// `missing_fields`, `no_policy_rule`, `no_policy`, `environment_not_in_change`,
    /// `awaiting_acknowledgement`, `policy_changed`, `deployer_only_approval`, `unavailable`,
    /// `internal`.
    pub code: String,
    pub message: String,
}

pub(super) fn reason(code: &str, message: impl Into<String>) -> Reason {
    Reason {
        code: code.into(),
        message: message.into(),
    }
}

/// What the gate answers, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GateDecision {
    pub state: GateState,
    pub reasons: Vec<Reason>,
    pub change: String,
    pub change_id: Option<Uuid>,
    pub environment: String,
    pub revision: i32,
    pub policy_hash: Option<String>,
    pub rules: Vec<String>,
    pub approvals: Vec<GroupProgress>,
    pub missing_evidence: Vec<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub not_before: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

impl GateDecision {
    /// The gate's answer when it cannot decide: fail closed, with the reason.
    pub fn error(change: &str, environment: &str, code: &str, message: String) -> Self {
        GateDecision {
            state: GateState::Error,
            reasons: vec![reason(code, message)],
            change: change.into(),
            change_id: None,
            environment: environment.into(),
            revision: 0,
            policy_hash: None,
            rules: vec![],
            approvals: vec![],
            missing_evidence: vec![],
            not_before: None,
            expires_at: None,
        }
    }

    pub fn allowed(&self) -> bool {
        self.state == GateState::Allowed
    }
}

/// The policy in force, with its identity.
#[derive(Debug, Clone)]
pub struct PolicyVersion {
    pub version: i64,
    pub hash: String,
    pub policy: Policy,
}
