//! The emergency path: an emergency change skips approvals and is released by two
//! acknowledgements, the incident commander's and the system owner's, from two people who are
//! neither its requester nor its authors. The bypass holds for the policy's emergency validity.
use super::separation::ack_exclusion;
use super::verdict::{GateDecision, GateState, reason};
use crate::change::{ChangeRequest, ChangeStatus, Decision, DecisionKind};
use crate::identity::Identities;
use crate::policy::Policy;
use crate::time::{Timestamp, after};

pub(super) fn decide_emergency(
    mut d: GateDecision,
    change: &ChangeRequest,
    policy: &Policy,
    ids: &Identities,
    now: Timestamp,
) -> GateDecision {
    let Some(ep) = &policy.emergency else {
        d.state = GateState::Denied;
        d.reasons.push(reason(
            "no_policy_rule",
            "the policy has no [emergency] section: emergency changes cannot pass",
        ));
        return d;
    };
    d.rules = vec!["emergency".into()];
    // The bypass holds only while its two acknowledgements do: two distinct people, neither
    // the requester nor an author (checked again here, whatever the stored status says).
    if change.status == ChangeStatus::Bypassed {
        let (ic, so) = emergency_acks(change);
        let valid = match (ic, so) {
            (Some(i), Some(o)) => {
                !ids.same(&i.actor, &o.actor)
                    && ack_exclusion(change, ids, &i.actor).is_none()
                    && ack_exclusion(change, ids, &o.actor).is_none()
            }
            _ => false,
        };
        if !valid {
            d.state = GateState::Denied;
            d.reasons.push(reason(
                "invalid_acknowledgement",
                "the emergency bypass lacks two acknowledgements from two distinct people who are neither the requester nor an author",
            ));
            return d;
        }
    }
    if change.status == ChangeStatus::Bypassed {
        let at = change.decided_at.unwrap_or(change.updated_at);
        let expires = after(at, ep.validity);
        d.expires_at = Some(expires);
        if now >= expires {
            d.state = GateState::Expired;
            d.reasons.push(reason(
                "approval_expired",
                format!(
                    "the emergency bypass expired at {}",
                    crate::time::format(expires)
                ),
            ));
        } else {
            d.state = GateState::Allowed;
        }
        return d;
    }
    let acks = emergency_acks(change);
    let mut missing = Vec::new();
    if acks.0.is_none() {
        missing.push(format!("incident commander ({})", ep.incident_commanders));
    }
    if acks.1.is_none() {
        missing.push(format!("system owner ({})", ep.system_owners));
    }
    d.reasons.push(reason(
        "awaiting_acknowledgement",
        format!(
            "the emergency bypass needs acknowledgements from: {}",
            missing.join(", ")
        ),
    ));
    d.state = GateState::Pending;
    d
}

/// The incident commander's and the system owner's acknowledgements of this revision.
pub(super) fn emergency_acks(change: &ChangeRequest) -> (Option<&Decision>, Option<&Decision>) {
    let ic = change
        .current_decisions()
        .find(|x| x.kind == DecisionKind::AckIncidentCommander);
    let so = change
        .current_decisions()
        .find(|x| x.kind == DecisionKind::AckSystemOwner);
    (ic, so)
}
