//! The gate decision: what the gate answers for one environment of a change, now.
use std::collections::{BTreeMap, BTreeSet};

use super::emergency::decide_emergency;
use super::groups::{Group, count, quorums_met};
use super::verdict::{GateDecision, GateState, PolicyVersion, Reason, reason};
use crate::change::{
    ChangeRequest, ChangeStatus, ChangeType, Decision, DecisionKind, spec_field_present,
};
use crate::identity::Identities;
use crate::policy::Requirements;
use crate::time::{Timestamp, after};

/// What the gate answers for deployments of `change` to `env` at `now`, asked by `deployer`
/// (the authenticated identity that will deploy, never a name the caller chose) for the
/// artifact `digest`. A change scoped to digests is never allowed for an unnamed artifact.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    change: &ChangeRequest,
    policy: Option<&PolicyVersion>,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    env: &str,
    digest: Option<&str>,
    deployer: Option<&str>,
    now: Timestamp,
) -> GateDecision {
    assess(
        change,
        policy,
        groups,
        ids,
        env,
        Some(digest),
        deployer,
        now,
    )
}

/// Where a change stands for `env`, without a gate question: no digest is asked about (the
/// approval's own state, as the approvals queue and `apply_decision` see it).
pub fn standing(
    change: &ChangeRequest,
    policy: Option<&PolicyVersion>,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    env: &str,
    now: Timestamp,
) -> GateDecision {
    assess(change, policy, groups, ids, env, None, None, now)
}

/// The decision itself. `digest`: `None` when no gate question is asked, `Some(None)` when
/// the gate was asked without naming an artifact. The checks run in a fixed order; the first
/// that settles the answer ends it, the others add their reasons.
#[allow(clippy::too_many_arguments)]
fn assess(
    change: &ChangeRequest,
    policy: Option<&PolicyVersion>,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    env: &str,
    digest: Option<Option<&str>>,
    deployer: Option<&str>,
    now: Timestamp,
) -> GateDecision {
    let mut d = blank(change, policy, env);
    let Some(resolved) = change.covers_environment(env) else {
        return settle(d, GateState::Denied, not_in_change(change, env));
    };
    d.environment = resolved.name.clone();
    if let Some((state, r)) = check_digest(change, digest).or_else(|| check_closed(change)) {
        return settle(d, state, r);
    }
    let Some(pv) = policy else {
        return settle(
            d,
            GateState::Denied,
            reason(
                "no_policy",
                "no approval policy has been pushed for this tenant",
            ),
        );
    };
    if change.spec.change_type == ChangeType::Emergency {
        return decide_emergency(d, change, &pv.policy, ids, now);
    }
    if let Some(r) = window_ended(change, now) {
        return settle(d, GateState::Expired, r);
    }
    let req = pv.policy.requirements(&change.spec, resolved);
    d.rules = req.rules.clone();
    if req.rules.is_empty() {
        return settle(d, GateState::Denied, no_rule(pv, &resolved.name));
    }
    note_missing_fields(&mut d, change, &req);
    note_missing_evidence(&mut d, change, &req);
    let counted = counted_approvals(&mut d, change, pv);
    let satisfied_at = if req.auto_approve || req.approvals.is_empty() {
        Some(change.decided_at.unwrap_or(change.created_at))
    } else {
        let (at, actors) = approvals_satisfied(&mut d, change, &req, groups, pv, ids, &counted);
        if let Some(dep) = deployer {
            note_deployer_only(&mut d, ids, &actors, dep);
        }
        at
    };
    if let Some(at) = satisfied_at
        && check_validity(&mut d, &req, &counted, at, now)
    {
        return d;
    }
    note_window_start(&mut d, change, now);
    d.state = if satisfied_at.is_some() && d.reasons.iter().all(|r| r.code == "policy_changed") {
        GateState::Allowed
    } else {
        GateState::Pending
    };
    d
}

/// The answer before any check: pending, with nothing found yet.
fn blank(change: &ChangeRequest, policy: Option<&PolicyVersion>, env: &str) -> GateDecision {
    GateDecision {
        state: GateState::Pending,
        reasons: vec![],
        change: change.key.clone(),
        change_id: Some(change.id),
        environment: env.to_owned(),
        revision: change.revision,
        policy_hash: policy.map(|p| p.hash.clone()),
        rules: vec![],
        approvals: vec![],
        missing_evidence: vec![],
        not_before: None,
        expires_at: None,
    }
}

/// Settles the answer: `state`, for reason `r`.
fn settle(mut d: GateDecision, state: GateState, r: Reason) -> GateDecision {
    d.state = state;
    d.reasons.push(r);
    d
}

fn not_in_change(change: &ChangeRequest, env: &str) -> Reason {
    let names: Vec<&str> = change
        .spec
        .environments
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    reason(
        "environment_not_in_change",
        format!("{} covers {}, not '{env}'", change.key, names.join(", ")),
    )
}

/// A change scoped to artifact digests: the gate must name one of them.
fn check_digest(
    change: &ChangeRequest,
    digest: Option<Option<&str>>,
) -> Option<(GateState, Reason)> {
    if digest == Some(None) && !change.spec.artifact_digests.is_empty() {
        return Some((
            GateState::Denied,
            reason(
                "digest_required",
                format!(
                    "{} is scoped to artifact digests; name the digest being deployed",
                    change.key
                ),
            ),
        ));
    }
    if let Some(Some(dg)) = digest
        && !change.spec.artifact_digests.iter().any(|x| x == dg)
    {
        return Some((
            GateState::Expired,
            reason(
                "digest_changed",
                format!(
                    "{dg} is not an artifact {} was approved for; resubmit the change to revalidate",
                    change.key
                ),
            ),
        ));
    }
    None
}

/// A rejected, sent-back or withdrawn change stays closed until resubmitted.
fn check_closed(change: &ChangeRequest) -> Option<(GateState, Reason)> {
    let r = match change.status {
        ChangeStatus::Rejected => reason(
            "rejected",
            format!(
                "{} was rejected; it stays rejected until resubmitted",
                change.key
            ),
        ),
        ChangeStatus::ChangesRequested => reason(
            "changes_requested",
            format!(
                "an approver asked for changes to {}; resubmit it",
                change.key
            ),
        ),
        ChangeStatus::Withdrawn => reason("withdrawn", format!("{} was withdrawn", change.key)),
        _ => return None,
    };
    Some((GateState::Denied, r))
}

/// The planned window: after its end the change must be resubmitted with a new one.
fn window_ended(change: &ChangeRequest, now: Timestamp) -> Option<Reason> {
    let end = change.spec.window_end.filter(|end| now >= *end)?;
    Some(reason(
        "outside_window",
        format!(
            "the planned window of {} ended at {}; resubmit it with a new window",
            change.key,
            crate::time::format(end)
        ),
    ))
}

fn no_rule(pv: &PolicyVersion, env: &str) -> Reason {
    reason(
        "no_policy_rule",
        format!(
            "no rule of policy version {} covers this change to {env}; the gate stays closed",
            pv.version
        ),
    )
}

fn note_missing_fields(d: &mut GateDecision, change: &ChangeRequest, req: &Requirements) {
    let missing_fields: Vec<&String> = req
        .required_fields
        .iter()
        .filter(|f| spec_field_present(&change.spec, f) == Some(false))
        .collect();
    if !missing_fields.is_empty() {
        d.reasons.push(reason(
            "missing_fields",
            format!(
                "the policy requires: {}",
                missing_fields
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
}

fn note_missing_evidence(d: &mut GateDecision, change: &ChangeRequest, req: &Requirements) {
    d.missing_evidence = req
        .evidence
        .iter()
        .filter(|k| !change.evidence.iter().any(|e| &e.kind == *k))
        .cloned()
        .collect();
    if !d.missing_evidence.is_empty() {
        d.reasons.push(reason(
            "missing_evidence",
            format!("evidence still missing: {}", d.missing_evidence.join(", ")),
        ));
    }
}

/// The approvals that count: this revision, under this policy version. Those given under an
/// earlier version are a reason.
fn counted_approvals<'c>(
    d: &mut GateDecision,
    change: &'c ChangeRequest,
    pv: &PolicyVersion,
) -> Vec<&'c Decision> {
    let current: Vec<&Decision> = change
        .current_decisions()
        .filter(|x| x.kind == DecisionKind::Approve)
        .collect();
    let counted: Vec<&Decision> = current
        .iter()
        .copied()
        .filter(|x| x.policy_hash == pv.hash)
        .collect();
    if counted.len() < current.len() {
        d.reasons.push(reason(
            "policy_changed",
            format!(
                "{} approval(s) were given under an earlier policy version and no longer count",
                current.len() - counted.len()
            ),
        ));
    }
    counted
}

/// Counts the approvals against the required groups. When every quorum is met, the grant
/// starts when the last needed approval arrived (the approvals are walked in order);
/// otherwise the groups still short are a reason. Also returns the natural persons filling
/// the slots.
fn approvals_satisfied(
    d: &mut GateDecision,
    change: &ChangeRequest,
    req: &Requirements,
    groups: &BTreeMap<String, Group>,
    pv: &PolicyVersion,
    ids: &Identities,
    counted: &[&Decision],
) -> (Option<Timestamp>, BTreeSet<String>) {
    let (progress, actors) = count(change, req, groups, &pv.policy, ids, counted);
    let full = quorums_met(&progress);
    d.approvals = progress;
    let at = if full {
        (1..=counted.len()).find_map(|n| {
            let prefix = &counted[..n];
            let (p, _) = count(change, req, groups, &pv.policy, ids, prefix);
            quorums_met(&p).then(|| prefix[n - 1].at)
        })
    } else {
        note_missing_approvals(d);
        None
    };
    (at, actors)
}

fn note_missing_approvals(d: &mut GateDecision) {
    let missing: Vec<String> = d
        .approvals
        .iter()
        .filter(|g| (g.approved_by.len() as u64) < u64::from(g.quorum))
        .map(|g| format!("{} ({} of {})", g.group, g.approved_by.len(), g.quorum))
        .collect();
    if !missing.is_empty() {
        d.reasons.push(reason(
            "missing_approvals",
            format!("waiting for approvals from: {}", missing.join(", ")),
        ));
    }
}

/// The deployer is never the only approval: the natural persons filling the slots must
/// include someone other than the deployer.
fn note_deployer_only(
    d: &mut GateDecision,
    ids: &Identities,
    actors: &BTreeSet<String>,
    dep: &str,
) {
    let dep_c = ids.canonical(dep);
    if !actors.is_empty() && actors.iter().all(|a| *a == dep_c) {
        d.reasons.push(reason(
            "deployer_only_approval",
            format!(
                "{dep} deploys this change and is its only approver; another person must approve"
            ),
        ));
    }
}

/// How long the grant given at `at` holds, and (small-team self-approval) from when. Returns
/// whether it has expired, which settles the answer.
fn check_validity(
    d: &mut GateDecision,
    req: &Requirements,
    counted: &[&Decision],
    at: Timestamp,
    now: Timestamp,
) -> bool {
    let expires = after(at, req.validity);
    d.expires_at = Some(expires);
    // Small-team self-approval: valid only after the cooling-off delay.
    if let Some(st) = &req.small_team
        && let Some(selfie) = counted.iter().find(|x| x.self_approval)
    {
        let nb = after(selfie.at, st.cooling_off);
        d.not_before = Some(nb);
        if now < nb {
            d.reasons.push(reason(
                "not_yet_valid",
                format!(
                    "self-approval under small-team mode: cooling off until {}",
                    crate::time::format(nb)
                ),
            ));
        }
    }
    if now < expires {
        return false;
    }
    d.state = GateState::Expired;
    d.reasons.insert(
        0,
        reason(
            "approval_expired",
            format!(
                "the approval expired at {}; revalidate the change",
                crate::time::format(expires)
            ),
        ),
    );
    true
}

/// Before the planned window opens the gate waits for it.
fn note_window_start(d: &mut GateDecision, change: &ChangeRequest, now: Timestamp) {
    if let Some(ws) = change.spec.window_start
        && now < ws
    {
        d.not_before = Some(d.not_before.map_or(ws, |nb| nb.max(ws)));
        d.reasons.push(reason(
            "before_window",
            format!("the planned window opens at {}", crate::time::format(ws)),
        ));
    }
}
