//! The emergency path: an emergency change skips approvals and is released by two
//! acknowledgements, the incident commander's and the system owner's, from two people who are
//! neither its requester nor its authors. The bypass holds for the policy's emergency validity.
use std::collections::BTreeMap;

use super::groups::Group;
use super::request::{DecisionRequest, Outcome, Refusal, is_closed, refuse, refuse_audited};
use super::separation::ack_exclusion;
use super::verdict::{GateDecision, GateState, reason};
use crate::change::{ChangeRequest, ChangeStatus, ChangeType, Decision, DecisionKind};
use crate::identity::Identities;
use crate::policy::Policy;
use crate::time::{Timestamp, after};

/// The gate's answer for an emergency change.
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
fn emergency_acks(change: &ChangeRequest) -> (Option<&Decision>, Option<&Decision>) {
    let ic = change
        .current_decisions()
        .find(|x| x.kind == DecisionKind::AckIncidentCommander);
    let so = change
        .current_decisions()
        .find(|x| x.kind == DecisionKind::AckSystemOwner);
    (ic, so)
}

/// An emergency acknowledgement (incident commander or system owner): from a member of the
/// policy's group for it, neither the requester nor an author, and not the person who gave
/// the other one. The second acknowledgement bypasses the approvals.
pub(super) fn acknowledge(
    change: &ChangeRequest,
    policy: &Policy,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    req: &DecisionRequest,
    now: Timestamp,
    out: &mut Outcome,
) -> Result<(), Refusal> {
    if change.spec.change_type != ChangeType::Emergency {
        return Err(refuse(
            "wrong_path",
            format!("{} is not an emergency change", change.key),
        ));
    }
    let Some(ep) = &policy.emergency else {
        return Err(refuse(
            "no_emergency_policy",
            "the policy has no [emergency] section",
        ));
    };
    if is_closed(change.status) || change.status == ChangeStatus::Bypassed {
        return Err(refuse(
            "change_closed",
            format!("{} is already {}", change.key, change.status),
        ));
    }
    let group = if req.kind == DecisionKind::AckIncidentCommander {
        &ep.incident_commanders
    } else {
        &ep.system_owners
    };
    check_acknowledger(change, groups, ids, req, group)?;
    let other_given = check_pair(change, ids, req)?;
    out.decision.group = Some(group.clone());
    if other_given {
        out.change.status = ChangeStatus::Bypassed;
        out.change.decided_at = Some(now);
        out.change.review_due_at = Some(after(now, ep.review_within));
        out.transitions.push("change.bypassed");
    }
    Ok(())
}

/// The acknowledger is neither the requester nor an author, and is in `group`.
fn check_acknowledger(
    change: &ChangeRequest,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    req: &DecisionRequest,
    group: &str,
) -> Result<(), Refusal> {
    if let Some(why) = ack_exclusion(change, ids, &req.actor) {
        return Err(refuse_audited(
            why,
            format!(
                "{} requested or authored {} and cannot acknowledge it: the two acknowledgements come from two other people",
                req.actor, change.key
            ),
        ));
    }
    if !groups
        .get(group)
        .is_some_and(|g| ids.among(&req.actor, &g.members))
    {
        return Err(refuse_audited(
            "not_an_approver",
            format!(
                "{} is not in '{group}' and cannot give this acknowledgement",
                req.actor
            ),
        ));
    }
    Ok(())
}

/// This acknowledgement is not recorded yet, and the other one, if given, came from someone
/// else. Returns whether the other one was given.
fn check_pair(
    change: &ChangeRequest,
    ids: &Identities,
    req: &DecisionRequest,
) -> Result<bool, Refusal> {
    let (ic, so) = emergency_acks(change);
    let other = if req.kind == DecisionKind::AckIncidentCommander {
        so
    } else {
        ic
    };
    if (req.kind == DecisionKind::AckIncidentCommander && ic.is_some())
        || (req.kind == DecisionKind::AckSystemOwner && so.is_some())
    {
        return Err(refuse(
            "already_decided",
            "this acknowledgement is already recorded",
        ));
    }
    if other.is_some_and(|o| ids.same(&o.actor, &req.actor)) {
        return Err(refuse_audited(
            "dual_acknowledgement",
            "the two acknowledgements must come from two different people",
        ));
    }
    Ok(other.is_some())
}
