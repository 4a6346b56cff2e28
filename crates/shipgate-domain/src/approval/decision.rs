//! What a decision does to a change: the state machine of approvals, rejections, requests for
//! changes, emergency acknowledgements and post-deployment reviews, with separation of duties
//! enforced at every step.
use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::emergency::emergency_acks;
use super::gate::standing;
use super::groups::Group;
use super::request::{DecisionRequest, Outcome, Refusal, refuse};
use super::separation::{ack_exclusion, exclusion};
use super::verdict::{GateState, PolicyVersion};
use crate::change::{ChangeRequest, ChangeStatus, ChangeType, Decision, DecisionKind};
use crate::identity::Identities;
use crate::policy::Requirements;
use crate::time::{Timestamp, after};

/// Applies a decision to a change, enforcing separation of duties. Pure: the store runs it
/// inside the write transaction, so racing decisions see each other.
pub fn apply_decision(
    change: &ChangeRequest,
    pv: &PolicyVersion,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    req: DecisionRequest,
    now: Timestamp,
) -> Result<Outcome, Refusal> {
    let policy = &pv.policy;
    if let Some(r) = req.revision
        && r != change.revision
    {
        return Err(refuse(
            "stale_revision",
            format!(
                "this decision was given on revision {r} of {}, which is now at revision {}; review it again",
                change.key, change.revision
            ),
        ));
    }
    if ids.canonical(&req.actor).is_empty() {
        return Err(refuse("not_an_approver", "the actor names nobody"));
    }
    let is_final = matches!(
        change.status,
        ChangeStatus::Rejected | ChangeStatus::ChangesRequested | ChangeStatus::Withdrawn
    );
    let mut decision = Decision {
        id: Uuid::now_v7(),
        revision: change.revision,
        kind: req.kind,
        actor: req.actor.clone(),
        on_behalf_of: None,
        group: req.group.clone(),
        comment: req.comment.clone(),
        self_approval: false,
        policy_hash: pv.hash.clone(),
        at: now,
    };
    let mut next = change.clone();
    next.updated_at = now;
    let mut transitions = Vec::new();
    match req.kind {
        DecisionKind::Approve | DecisionKind::Reject | DecisionKind::RequestChanges => {
            if change.spec.change_type == ChangeType::Emergency && req.kind == DecisionKind::Approve
            {
                return Err(refuse(
                    "wrong_path",
                    "an emergency change is released by the incident commander's and the system owner's acknowledgements, not by approvals",
                ));
            }
            if is_final {
                return Err(refuse(
                    "change_closed",
                    format!(
                        "{} is {}; resubmit it before deciding again",
                        change.key, change.status
                    ),
                ));
            }
            if req.kind == DecisionKind::Approve && change.status == ChangeStatus::Approved {
                // The grant exists; once it has expired, only a resubmission revalidates it.
                let expired = change.spec.environments.iter().any(|e| {
                    standing(change, Some(pv), groups, ids, &e.name, now).state
                        == GateState::Expired
                });
                return Err(if expired {
                    refuse(
                        "approval_expired",
                        format!(
                            "the approval of {} has expired; resubmit the change to revalidate it",
                            change.key
                        ),
                    )
                } else {
                    refuse(
                        "already_approved",
                        format!("{} is already approved", change.key),
                    )
                });
            }
            // Whose authority the decision carries: the actor's own, or a delegator's.
            let reqs: Vec<Requirements> = change
                .spec
                .environments
                .iter()
                .map(|e| policy.requirements(&change.spec, e))
                .collect();
            let member_of = |who: &str, g: &str| {
                groups
                    .get(g)
                    .is_some_and(|grp| ids.among(who, &grp.members) || ids.among(who, &grp.backups))
            };
            let escalation: Vec<&str> = if change.escalated_at.is_some() {
                reqs.iter()
                    .filter_map(|r| r.escalate_to.as_deref())
                    .collect()
            } else {
                Vec::new()
            };
            let authority = |who: &str| -> BTreeSet<String> {
                reqs.iter()
                    .flat_map(|r| r.approvals.iter().map(|g| g.group.clone()))
                    .filter(|g| member_of(who, g) || escalation.iter().any(|e| member_of(who, e)))
                    .collect()
            };
            // Direct delegations only (never followed further), active now, to the actor.
            let delegation_from = |from: &str| {
                req.delegations
                    .iter()
                    .filter(|d| {
                        ids.same(&d.to, &req.actor) && ids.same(&d.from, from) && d.active(now)
                    })
                    .find(|d| {
                        let a = authority(from);
                        !a.is_empty() && d.group.as_ref().is_none_or(|g| a.contains(g))
                    })
            };
            let (person, via) = match &req.on_behalf_of {
                Some(a) if !ids.same(a, &req.actor) => match delegation_from(a) {
                    Some(d) => (a.clone(), Some(d)),
                    None => {
                        return Err(Refusal {
                            code: "no_delegation",
                            message: format!(
                                "{} holds no active delegation from {a} that covers {}",
                                req.actor, change.key
                            ),
                            audited: true,
                        });
                    }
                },
                _ if !authority(&req.actor).is_empty() || req.on_behalf_of.is_some() => {
                    (req.actor.clone(), None)
                }
                _ => match req
                    .delegations
                    .iter()
                    .find_map(|d| delegation_from(&d.from))
                {
                    Some(d) => (d.from.clone(), Some(d)),
                    None => (req.actor.clone(), None),
                },
            };
            // A delegation limited to one group carries authority in that group only.
            if let Some(limit) = via.and_then(|d| d.group.as_ref()) {
                if let Some(g) = &req.group
                    && g != limit
                {
                    return Err(Refusal {
                        code: "delegation_scope",
                        message: format!(
                            "the delegation from {person} to {} covers '{limit}' only, not '{g}'",
                            req.actor
                        ),
                        audited: true,
                    });
                }
                decision.group = Some(limit.clone());
            }
            let acting_for_other = !ids.same(&person, &req.actor);
            // A delegate is bound by separation of duties too: never the requester or an
            // author, and never acting for them.
            if acting_for_other && let Some(why) = exclusion(change, policy, ids, &req.actor) {
                return Err(Refusal {
                    code: why,
                    message: format!(
                        "{} cannot decide on {} even on behalf of {person}: separation of duties",
                        req.actor, change.key
                    ),
                    audited: true,
                });
            }
            // A natural person counts once per change, whether acting for themselves or for
            // others: neither the actor nor the principal may appear in an earlier decision of
            // this kind, as actor or principal.
            let mine = [ids.canonical(&req.actor), ids.canonical(&person)];
            let already = change.current_decisions().any(|x| {
                x.kind == req.kind
                    && (mine.contains(&ids.canonical(&x.actor))
                        || mine.contains(&ids.canonical(x.person())))
            });
            if already {
                return Err(refuse(
                    "already_decided",
                    format!(
                        "{} already counts on {} revision {} (a person counts once, for themselves or for others)",
                        if acting_for_other {
                            format!("{} or {person}", req.actor)
                        } else {
                            person.clone()
                        },
                        change.key,
                        change.revision
                    ),
                ));
            }
            if let Some(why) = exclusion(change, policy, ids, &person) {
                let small_team = reqs.iter().any(|r| r.small_team.is_some());
                if why == "self_approval"
                    && small_team
                    && req.kind == DecisionKind::Approve
                    && !acting_for_other
                {
                    decision.self_approval = true;
                    let st = reqs.iter().filter_map(|r| r.small_team.as_ref()).next();
                    if let Some(st) = st {
                        next.review_due_at =
                            Some(after(after(now, st.cooling_off), st.review_within));
                    }
                } else {
                    let msg = if why == "self_approval" {
                        format!(
                            "{person} requested {} and cannot approve it: separation of duties",
                            change.key
                        )
                    } else if why == "record_author" {
                        format!(
                            "{person} authored the record {} was opened from and cannot approve it: separation of duties",
                            change.key
                        )
                    } else {
                        format!(
                            "{person} authored commits in {} and cannot approve it (policy: authors_cannot_approve)",
                            change.key
                        )
                    };
                    return Err(Refusal {
                        code: why,
                        message: msg,
                        audited: true,
                    });
                }
            }
            let relevant = authority(&person);
            if let Some(g) = &req.group
                && !relevant.contains(g)
            {
                return Err(refuse(
                    "not_an_approver",
                    format!(
                        "{person} is not a member of '{g}', or '{g}' is not required for {}",
                        change.key
                    ),
                ));
            }
            if relevant.is_empty() {
                return Err(refuse(
                    "not_an_approver",
                    format!(
                        "{} is in none of the approver groups {} needs",
                        req.actor, change.key
                    ),
                ));
            }
            if let Some(g) = &decision.group
                && !relevant.contains(g)
            {
                return Err(refuse(
                    "not_an_approver",
                    format!("{person} has no authority in '{g}' for {}", change.key),
                ));
            }
            if acting_for_other {
                decision.on_behalf_of = Some(person.clone());
            }
            match req.kind {
                DecisionKind::Reject => {
                    next.status = ChangeStatus::Rejected;
                    next.rework_count += 1;
                    transitions.push("change.rejected");
                }
                DecisionKind::RequestChanges => {
                    next.status = ChangeStatus::ChangesRequested;
                    next.rework_count += 1;
                    transitions.push("change.changes_requested");
                }
                _ => {}
            }
        }
        DecisionKind::AckIncidentCommander | DecisionKind::AckSystemOwner => {
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
            if is_final || change.status == ChangeStatus::Bypassed {
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
            if let Some(why) = ack_exclusion(change, ids, &req.actor) {
                return Err(Refusal {
                    code: why,
                    message: format!(
                        "{} requested or authored {} and cannot acknowledge it: the two acknowledgements come from two other people",
                        req.actor, change.key
                    ),
                    audited: true,
                });
            }
            if !groups
                .get(group)
                .is_some_and(|g| ids.among(&req.actor, &g.members))
            {
                return Err(Refusal {
                    code: "not_an_approver",
                    message: format!(
                        "{} is not in '{group}' and cannot give this acknowledgement",
                        req.actor
                    ),
                    audited: true,
                });
            }
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
                return Err(Refusal {
                    code: "dual_acknowledgement",
                    message: "the two acknowledgements must come from two different people".into(),
                    audited: true,
                });
            }
            decision.group = Some(group.clone());
            if other.is_some() {
                next.status = ChangeStatus::Bypassed;
                next.decided_at = Some(now);
                next.review_due_at = Some(after(now, ep.review_within));
                transitions.push("change.bypassed");
            }
        }
        DecisionKind::Review => {
            if change.review_due_at.is_none() {
                return Err(refuse(
                    "no_review_due",
                    format!("{} has no post-deployment review due", change.key),
                ));
            }
            if change.reviewed_at.is_some() {
                return Err(refuse(
                    "already_decided",
                    format!("{} was already reviewed", change.key),
                ));
            }
            if ids.same(&change.requester, &req.actor)
                || ids.among(&req.actor, &change.spec.record_authors)
            {
                return Err(Refusal {
                    code: "self_approval",
                    message: "the requester cannot review their own change".into(),
                    audited: true,
                });
            }
            if req.comment.is_none() {
                return Err(refuse("comment_required", "a review needs a comment"));
            }
            next.reviewed_at = Some(now);
            transitions.push("change.reviewed");
        }
    }
    next.decisions.push(decision.clone());
    // Did this approval complete the change for every environment?
    if req.kind == DecisionKind::Approve && next.status == ChangeStatus::Pending {
        let all = next.spec.environments.iter().all(|e| {
            let g = standing(&next, Some(pv), groups, ids, &e.name, now);
            g.approvals
                .iter()
                .all(|p| p.approved_by.len() as u64 >= u64::from(p.quorum))
                && !g.rules.is_empty()
        });
        if all {
            next.status = ChangeStatus::Approved;
            next.decided_at = Some(now);
            transitions.push("change.approved");
        }
    }
    Ok(Outcome {
        change: next,
        decision,
        transitions,
    })
}
