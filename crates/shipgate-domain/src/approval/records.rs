//! Stored records of the approval side: pushed policy versions, gate calls, root-cause reviews.
//! (A [`Person`](crate::identity::Person) lives with the identities that resolve them.)
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::verdict::{GateState, Reason};
use crate::time::Timestamp;

/// A pushed policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyRecord {
    pub version: i64,
    /// SHA-256 of the text: what every decision records.
    pub hash: String,
    pub text: String,
    pub pushed_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub pushed_at: Timestamp,
}

/// One call to the gate and what it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GateCall {
    pub id: Uuid,
    pub tenant: String,
    pub change_id: Option<Uuid>,
    pub change: String,
    pub environment: String,
    pub digest: Option<String>,
    pub deployer: Option<String>,
    /// Who asked (token subject).
    pub caller: String,
    pub state: GateState,
    pub reasons: Vec<Reason>,
    pub policy_hash: Option<String>,
    /// How long the call waited for a decision (long-poll).
    pub waited_ms: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The environment's tier (for the published event's subject; not stored with the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_tier: Option<crate::model::EnvTier>,
}

/// A root-cause review opened because a team exceeded its monthly emergency threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RootCauseReview {
    pub id: Uuid,
    pub team: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The emergency changes that triggered it.
    pub changes: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub opened_at: Timestamp,
}
