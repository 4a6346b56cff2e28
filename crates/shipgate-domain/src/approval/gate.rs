//! The gate decision: what the gate answers for one environment of a change, now.
use std::collections::BTreeMap;

use super::emergency::decide_emergency;
use super::groups::{Group, count};
use super::verdict::{GateDecision, GateState, PolicyVersion, Reason, reason};
use crate::change::{
    ChangeRequest, ChangeStatus, ChangeType, Decision, DecisionKind, spec_field_present,
};
use crate::identity::Identities;
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
/// the gate was asked without naming an artifact.
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
    let mut d = GateDecision {
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
    };
    let deny = |mut d: GateDecision, state: GateState, r: Reason| {
        d.state = state;
        d.reasons.push(r);
        d
    };
    let Some(resolved) = change.covers_environment(env) else {
        let names: Vec<&str> = change
            .spec
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        return deny(
            d,
            GateState::Denied,
            reason(
                "environment_not_in_change",
                format!("{} covers {}, not '{env}'", change.key, names.join(", ")),
            ),
        );
    };
    d.environment = resolved.name.clone();
    if digest == Some(None) && !change.spec.artifact_digests.is_empty() {
        return deny(
            d,
            GateState::Denied,
            reason(
                "digest_required",
                format!(
                    "{} is scoped to artifact digests; name the digest being deployed",
                    change.key
                ),
            ),
        );
    }
    if let Some(Some(dg)) = digest
        && !change.spec.artifact_digests.iter().any(|x| x == dg)
    {
        return deny(
            d,
            GateState::Expired,
            reason(
                "digest_changed",
                format!(
                    "{dg} is not an artifact {} was approved for; resubmit the change to revalidate",
                    change.key
                ),
            ),
        );
    }
    match change.status {
        ChangeStatus::Rejected => {
            return deny(
                d,
                GateState::Denied,
                reason(
                    "rejected",
                    format!(
                        "{} was rejected; it stays rejected until resubmitted",
                        change.key
                    ),
                ),
            );
        }
        ChangeStatus::ChangesRequested => {
            return deny(
                d,
                GateState::Denied,
                reason(
                    "changes_requested",
                    format!(
                        "an approver asked for changes to {}; resubmit it",
                        change.key
                    ),
                ),
            );
        }
        ChangeStatus::Withdrawn => {
            return deny(
                d,
                GateState::Denied,
                reason("withdrawn", format!("{} was withdrawn", change.key)),
            );
        }
        _ => {}
    }
    let Some(pv) = policy else {
        return deny(
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
    // The planned window: after its end the change must be resubmitted with a new one.
    if let Some(end) = change.spec.window_end
        && now >= end
    {
        return deny(
            d,
            GateState::Expired,
            reason(
                "outside_window",
                format!(
                    "the planned window of {} ended at {}; resubmit it with a new window",
                    change.key,
                    crate::time::format(end)
                ),
            ),
        );
    }
    let req = pv.policy.requirements(&change.spec, resolved);
    d.rules = req.rules.clone();
    if req.rules.is_empty() {
        return deny(
            d,
            GateState::Denied,
            reason(
                "no_policy_rule",
                format!(
                    "no rule of policy version {} covers this change to {}; the gate stays closed",
                    pv.version, resolved.name
                ),
            ),
        );
    }
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

    // Approvals that count: this revision, under this policy version.
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

    let satisfied_at: Option<Timestamp>;
    if req.auto_approve || req.approvals.is_empty() {
        satisfied_at = Some(change.decided_at.unwrap_or(change.created_at));
    } else {
        // Walk the approvals in order: the grant starts when the last needed one arrived.
        let (progress, actors) = count(change, &req, groups, &pv.policy, ids, &counted);
        let full = progress
            .iter()
            .all(|g| g.approved_by.len() as u64 >= u64::from(g.quorum));
        d.approvals = progress;
        if full {
            let mut at = None;
            for n in 1..=counted.len() {
                let prefix = &counted[..n];
                let (p, _) = count(change, &req, groups, &pv.policy, ids, prefix);
                if p.iter()
                    .all(|g| g.approved_by.len() as u64 >= u64::from(g.quorum))
                {
                    at = Some(prefix[n - 1].at);
                    break;
                }
            }
            satisfied_at = at;
        } else {
            satisfied_at = None;
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
        // The deployer is never the only approval: the natural persons filling the slots must
        // include someone other than the deployer.
        if let Some(dep) = deployer {
            let dep_c = ids.canonical(dep);
            if !actors.is_empty() && actors.iter().all(|a| *a == dep_c) {
                d.reasons.push(reason(
                    "deployer_only_approval",
                    format!("{dep} deploys this change and is its only approver; another person must approve"),
                ));
            }
        }
    }

    if let Some(at) = satisfied_at {
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
        if now >= expires {
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
            return d;
        }
    }
    if let Some(ws) = change.spec.window_start
        && now < ws
    {
        d.not_before = Some(d.not_before.map_or(ws, |nb| nb.max(ws)));
        d.reasons.push(reason(
            "before_window",
            format!("the planned window opens at {}", crate::time::format(ws)),
        ));
    }
    d.state = if satisfied_at.is_some() && d.reasons.iter().all(|r| r.code == "policy_changed") {
        GateState::Allowed
    } else {
        GateState::Pending
    };
    d
}
