//! A decision on a change as requested, and its two answers: an outcome or a refusal.
use super::delegation::Delegation;
use crate::change::{ChangeRequest, ChangeStatus, Decision, DecisionKind};

/// Why a decision was refused. `code` is stable; refusals are themselves audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    /// Refusals a reviewer should see in the audit (self-approval, bypass attempts).
    pub audited: bool,
}

pub(super) fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
        audited: false,
    }
}

/// A refusal a reviewer should see in the audit.
pub(super) fn refuse_audited(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
        audited: true,
    }
}

/// A rejected, sent-back or withdrawn change takes no decision until it is resubmitted.
pub(super) fn is_closed(status: ChangeStatus) -> bool {
    matches!(
        status,
        ChangeStatus::Rejected | ChangeStatus::ChangesRequested | ChangeStatus::Withdrawn
    )
}

/// A request to decide on a change.
#[derive(Debug, Clone)]
pub struct DecisionRequest {
    pub kind: DecisionKind,
    pub actor: String,
    /// Act for this person under a delegation (`None`: the actor's own authority, or the one
    /// active delegation that gives it).
    pub on_behalf_of: Option<String>,
    /// The active delegations to the actor.
    pub delegations: Vec<Delegation>,
    pub group: Option<String>,
    pub comment: Option<String>,
    /// The revision the decider saw. A decision on another revision is refused
    /// (`stale_revision`): an approval never carries over to a resubmission it did not see.
    pub revision: Option<i32>,
}

/// What a decision does: the new state of the change and what to audit.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub change: ChangeRequest,
    pub decision: Decision,
    /// Audit actions besides the decision itself (`change.approved`, `change.bypassed`).
    pub transitions: Vec<&'static str>,
}
