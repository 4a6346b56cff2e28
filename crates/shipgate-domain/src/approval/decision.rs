//! What a decision does to a change: the state machine of approvals, rejections, requests for
//! changes, emergency acknowledgements and post-deployment reviews, with separation of duties
//! enforced at every step.
use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::authority::{Authority, delegation_limit};
use super::emergency::acknowledge;
use super::gate::standing;
use super::groups::{Group, quorums_met};
use super::request::{DecisionRequest, Outcome, Refusal, is_closed, refuse, refuse_audited};
use super::separation::exclusion;
use super::verdict::{GateState, PolicyVersion};
use crate::change::{ChangeRequest, ChangeStatus, ChangeType, Decision, DecisionKind};
use crate::identity::Identities;
use crate::policy::{Policy, Requirements};
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
    let mut out = draft(change, pv, &req, now);
    match req.kind {
        DecisionKind::Approve | DecisionKind::Reject | DecisionKind::RequestChanges => {
            approve_or_send_back(change, pv, groups, ids, &req, now, &mut out)?;
        }
        DecisionKind::AckIncidentCommander | DecisionKind::AckSystemOwner => {
            acknowledge(change, &pv.policy, groups, ids, &req, now, &mut out)?;
        }
        DecisionKind::Review => post_review(change, ids, &req, now, &mut out)?,
    }
    out.change.decisions.push(out.decision.clone());
    if req.kind == DecisionKind::Approve && out.change.status == ChangeStatus::Pending {
        complete_if_approved(&mut out, pv, groups, ids, now);
    }
    Ok(out)
}

/// The outcome before any rule ran: the decision as asked, the change touched at `now`.
fn draft(
    change: &ChangeRequest,
    pv: &PolicyVersion,
    req: &DecisionRequest,
    now: Timestamp,
) -> Outcome {
    let mut next = change.clone();
    next.updated_at = now;
    Outcome {
        change: next,
        decision: Decision {
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
        },
        transitions: Vec::new(),
    }
}

/// An approval, a rejection or a request for changes: carried by someone with authority in
/// a group the change needs (their own or a delegator's), who counts once, and who is
/// neither its requester nor an author (save a small-team self-approval).
fn approve_or_send_back(
    change: &ChangeRequest,
    pv: &PolicyVersion,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    req: &DecisionRequest,
    now: Timestamp,
    out: &mut Outcome,
) -> Result<(), Refusal> {
    let policy = &pv.policy;
    check_open(change, pv, groups, ids, req, now)?;
    let authority = Authority::new(change, policy, groups, ids);
    let (person, via) = authority.principal(change, req, now)?;
    if let Some(limit) = delegation_limit(via, req, &person)? {
        out.decision.group = Some(limit);
    }
    let acting_for_other = !ids.same(&person, &req.actor);
    check_delegate(change, policy, ids, req, &person, acting_for_other)?;
    check_counts_once(change, ids, req, &person, acting_for_other)?;
    let reqs = &authority.reqs;
    if check_separation(change, policy, ids, reqs, req, &person, acting_for_other)? {
        out.decision.self_approval = true;
        if let Some(st) = reqs.iter().filter_map(|r| r.small_team.as_ref()).next() {
            out.change.review_due_at = Some(after(after(now, st.cooling_off), st.review_within));
        }
    }
    check_authority(
        change,
        &authority.groups_of(&person),
        req,
        &out.decision,
        &person,
    )?;
    if acting_for_other {
        out.decision.on_behalf_of = Some(person);
    }
    match req.kind {
        DecisionKind::Reject => {
            out.change.status = ChangeStatus::Rejected;
            out.change.rework_count += 1;
            out.transitions.push("change.rejected");
        }
        DecisionKind::RequestChanges => {
            out.change.status = ChangeStatus::ChangesRequested;
            out.change.rework_count += 1;
            out.transitions.push("change.changes_requested");
        }
        _ => {}
    }
    Ok(())
}

/// The change takes this decision: not an approval of an emergency change, not closed, and
/// not approved already (once that grant has expired, only a resubmission revalidates it).
fn check_open(
    change: &ChangeRequest,
    pv: &PolicyVersion,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    req: &DecisionRequest,
    now: Timestamp,
) -> Result<(), Refusal> {
    if change.spec.change_type == ChangeType::Emergency && req.kind == DecisionKind::Approve {
        return Err(refuse(
            "wrong_path",
            "an emergency change is released by the incident commander's and the system owner's acknowledgements, not by approvals",
        ));
    }
    if is_closed(change.status) {
        return Err(refuse(
            "change_closed",
            format!(
                "{} is {}; resubmit it before deciding again",
                change.key, change.status
            ),
        ));
    }
    if req.kind == DecisionKind::Approve && change.status == ChangeStatus::Approved {
        let expired = change.spec.environments.iter().any(|e| {
            standing(change, Some(pv), groups, ids, &e.name, now).state == GateState::Expired
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
    Ok(())
}

/// A delegate is bound by separation of duties too: never the requester or an author.
fn check_delegate(
    change: &ChangeRequest,
    policy: &Policy,
    ids: &Identities,
    req: &DecisionRequest,
    person: &str,
    acting_for_other: bool,
) -> Result<(), Refusal> {
    if acting_for_other && let Some(why) = exclusion(change, policy, ids, &req.actor) {
        return Err(refuse_audited(
            why,
            format!(
                "{} cannot decide on {} even on behalf of {person}: separation of duties",
                req.actor, change.key
            ),
        ));
    }
    Ok(())
}

/// A natural person counts once per change, whether acting for themselves or for others:
/// neither the actor nor the principal may appear in an earlier decision of this kind, as
/// actor or principal.
fn check_counts_once(
    change: &ChangeRequest,
    ids: &Identities,
    req: &DecisionRequest,
    person: &str,
    acting_for_other: bool,
) -> Result<(), Refusal> {
    let mine = [ids.canonical(&req.actor), ids.canonical(person)];
    let already = change.current_decisions().any(|x| {
        x.kind == req.kind
            && (mine.contains(&ids.canonical(&x.actor))
                || mine.contains(&ids.canonical(x.person())))
    });
    if !already {
        return Ok(());
    }
    Err(refuse(
        "already_decided",
        format!(
            "{} already counts on {} revision {} (a person counts once, for themselves or for others)",
            if acting_for_other {
                format!("{} or {person}", req.actor)
            } else {
                person.to_owned()
            },
            change.key,
            change.revision
        ),
    ))
}

/// Separation of duties for the principal: never the requester, a record author or (when
/// the policy says so) a commit author. Returns whether the decision is the requester's own
/// approval, which small-team mode allows.
fn check_separation(
    change: &ChangeRequest,
    policy: &Policy,
    ids: &Identities,
    reqs: &[Requirements],
    req: &DecisionRequest,
    person: &str,
    acting_for_other: bool,
) -> Result<bool, Refusal> {
    let Some(why) = exclusion(change, policy, ids, person) else {
        return Ok(false);
    };
    let small_team = reqs.iter().any(|r| r.small_team.is_some());
    if why == "self_approval"
        && small_team
        && req.kind == DecisionKind::Approve
        && !acting_for_other
    {
        return Ok(true);
    }
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
    Err(refuse_audited(why, msg))
}

/// The principal has authority in the group the decision names (or is pinned to), and in
/// at least one group the change needs.
fn check_authority(
    change: &ChangeRequest,
    relevant: &BTreeSet<String>,
    req: &DecisionRequest,
    decision: &Decision,
    person: &str,
) -> Result<(), Refusal> {
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
    Ok(())
}

/// The post-deployment review of a bypassed emergency change or a small-team
/// self-approval: once, with a comment, by someone other than the requester.
fn post_review(
    change: &ChangeRequest,
    ids: &Identities,
    req: &DecisionRequest,
    now: Timestamp,
    out: &mut Outcome,
) -> Result<(), Refusal> {
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
    if ids.same(&change.requester, &req.actor) || ids.among(&req.actor, &change.spec.record_authors)
    {
        return Err(refuse_audited(
            "self_approval",
            "the requester cannot review their own change",
        ));
    }
    if req.comment.is_none() {
        return Err(refuse("comment_required", "a review needs a comment"));
    }
    out.change.reviewed_at = Some(now);
    out.transitions.push("change.reviewed");
    Ok(())
}

/// Whether this approval completed the change for every environment: then it is approved.
fn complete_if_approved(
    out: &mut Outcome,
    pv: &PolicyVersion,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    now: Timestamp,
) {
    let next = &out.change;
    let all = next.spec.environments.iter().all(|e| {
        let g = standing(next, Some(pv), groups, ids, &e.name, now);
        quorums_met(&g.approvals) && !g.rules.is_empty()
    });
    if all {
        out.change.status = ChangeStatus::Approved;
        out.change.decided_at = Some(now);
        out.transitions.push("change.approved");
    }
}
