//! Approval rules and the gate decision, free of IO: who may approve what (separation of
//! duties, one person counts once, backups), what a decision does to a change, and what the
//! gate answers for an environment right now.
use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration as Span;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::change::{
    ChangeRequest, ChangeSpec, ChangeStatus, ChangeType, Decision, DecisionKind, spec_field_present,
};
pub use crate::identity::Person;
use crate::identity::Identities;
use crate::policy::{Policy, Requirements};
use crate::time::Timestamp;

/// An approver group: members, backups (who count only when too few members are able to
/// approve), and the boundaries it has authority within.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    pub name: String,
    pub description: Option<String>,
    pub members: Vec<String>,
    pub backups: Vec<String>,
    /// Authority boundaries; empty means unrestricted.
    pub department: Option<String>,
    pub regions: Vec<String>,
    pub compliance: Vec<String>,
}

impl Group {
    /// Whether the group has authority over a change to `region`.
    fn in_scope(&self, spec: &ChangeSpec, region: Option<&str>) -> bool {
        let region_ok =
            self.regions.is_empty() || region.is_some_and(|r| self.regions.iter().any(|x| x == r));
        let dept_ok = match (&self.department, &spec.team) {
            (Some(d), Some(t)) => d == t,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let compliance_ok = self.compliance.is_empty()
            || spec.compliance.is_empty()
            || spec.compliance.iter().any(|c| self.compliance.contains(c));
        region_ok && dept_ok && compliance_ok
    }
}

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

fn reason(code: &str, message: impl Into<String>) -> Reason {
    Reason {
        code: code.into(),
        message: message.into(),
    }
}

/// One required group's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupProgress {
    pub group: String,
    pub quorum: u32,
    /// Approvers counted for this group (each person counts once, in one group).
    pub approved_by: Vec<String>,
    /// Who could still approve for this group.
    pub eligible: Vec<String>,
    /// Backups are eligible because too few members can approve.
    pub using_backups: bool,
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

/// `at` plus `d`, saturating at the end of representable time (never panics).
fn after(at: Timestamp, d: std::time::Duration) -> Timestamp {
    Span::from_std(d)
        .ok()
        .and_then(|s| at.checked_add_signed(s))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// Who is excluded from approving a change, and why: the requester, whoever authored the
/// record the change was opened from (ITSM opener, requester, reporter, assignee), and, when
/// the policy says so, the authors of its commits. Compared as people, not strings.
pub fn exclusion(
    change: &ChangeRequest,
    policy: &Policy,
    ids: &Identities,
    person: &str,
) -> Option<&'static str> {
    if ids.same(&change.requester, person) {
        return Some("self_approval");
    }
    if ids.among(person, &change.spec.record_authors) {
        return Some("record_author");
    }
    if policy.separation.authors_cannot_approve && ids.among(person, &change.spec.authors) {
        return Some("author_approval");
    }
    None
}

/// Who may never give an emergency acknowledgement: the requester, a record author, and any
/// listed commit author (whatever the policy says about approvals).
fn ack_exclusion(change: &ChangeRequest, ids: &Identities, person: &str) -> Option<&'static str> {
    if ids.same(&change.requester, person) {
        return Some("self_approval");
    }
    if ids.among(person, &change.spec.record_authors) {
        return Some("record_author");
    }
    if ids.among(person, &change.spec.authors) {
        return Some("author_approval");
    }
    None
}

/// Counts approvals against the required groups: each natural person fills at most one slot,
/// whether they acted for themselves or for a delegator (a maximum bipartite matching, so that
/// overlapping groups never strand an approval), and only people eligible for a group count
/// for it. Returns the progress per group and the natural persons (actors) filling slots.
fn count(
    change: &ChangeRequest,
    req: &Requirements,
    groups: &BTreeMap<String, Group>,
    policy: &Policy,
    ids: &Identities,
    approvals: &[&Decision],
) -> (Vec<GroupProgress>, BTreeSet<String>) {
    let region = change
        .covers_environment(&req.environment)
        .and_then(|e| e.region.clone());
    // Eligible people per group (canonical names).
    let mut eligible: Vec<(BTreeSet<String>, bool)> = Vec::new();
    for g in &req.approvals {
        let Some(group) = groups.get(&g.group) else {
            eligible.push((BTreeSet::new(), false));
            continue;
        };
        if !group.in_scope(&change.spec, region.as_deref()) {
            eligible.push((BTreeSet::new(), false));
            continue;
        }
        // Under small-team mode the requester's own approval counts (after cooling off).
        let ok = |p: &String| {
            exclusion(change, policy, ids, p)
                .is_none_or(|why| why == "self_approval" && req.small_team.is_some())
        };
        let mut set: BTreeSet<String> = group
            .members
            .iter()
            .filter(|p| ok(p))
            .map(|p| ids.canonical(p))
            .collect();
        let using_backups = (set.len() as u64) < u64::from(g.quorum);
        if using_backups {
            set.extend(
                group
                    .backups
                    .iter()
                    .filter(|p| ok(p))
                    .map(|p| ids.canonical(p)),
            );
        }
        // Escalated: the resolution authority may approve for the group.
        if change.escalated_at.is_some()
            && let Some(esc) = req.escalate_to.as_ref().and_then(|e| groups.get(e))
        {
            set.extend(
                esc.members
                    .iter()
                    .filter(|p| ok(p))
                    .map(|p| ids.canonical(p)),
            );
        }
        eligible.push((set, using_backups));
    }
    // Slots: one per unit of quorum (bounded by the policy's validation; never more slots
    // than there are approvals to fill them).
    let slots: Vec<usize> = req
        .approvals
        .iter()
        .enumerate()
        .flat_map(|(i, g)| std::iter::repeat_n(i, (g.quorum as usize).min(approvals.len() + 1)))
        .collect();
    // A natural person counts once per change: a decision whose actor or principal already
    // appears in an earlier decision (as actor or principal) does not count. A delegate is
    // bound by separation of duties too.
    let approvers: Vec<&Decision> = {
        let mut seen = BTreeSet::new();
        approvals
            .iter()
            .copied()
            .filter(|d| {
                let actor = ids.canonical(&d.actor);
                let person = ids.canonical(d.person());
                if actor.is_empty() || seen.contains(&actor) || seen.contains(&person) {
                    return false;
                }
                if actor != person && exclusion(change, policy, ids, &d.actor).is_some() {
                    return false;
                }
                seen.insert(actor);
                seen.insert(person);
                true
            })
            .collect()
    };
    let can = |a: &Decision, slot: usize| -> bool {
        let gi = slots[slot];
        let gname = &req.approvals[gi].group;
        eligible[gi].0.contains(&ids.canonical(a.person()))
            && a.group.as_ref().is_none_or(|g| g == gname)
    };
    let mut slot_owner: Vec<Option<usize>> = vec![None; slots.len()];
    fn augment(
        a: usize,
        seen: &mut [bool],
        slot_owner: &mut [Option<usize>],
        can: &dyn Fn(usize, usize) -> bool,
    ) -> bool {
        for s in 0..slot_owner.len() {
            if seen[s] || !can(a, s) {
                continue;
            }
            seen[s] = true;
            if slot_owner[s].is_none_or(|o| augment(o, seen, slot_owner, can)) {
                slot_owner[s] = Some(a);
                return true;
            }
        }
        false
    }
    let can_idx = |a: usize, s: usize| can(approvers[a], s);
    for a in 0..approvers.len() {
        let mut seen = vec![false; slots.len()];
        augment(a, &mut seen, &mut slot_owner, &can_idx);
    }
    let actors: BTreeSet<String> = slot_owner
        .iter()
        .flatten()
        .map(|a| ids.canonical(&approvers[*a].actor))
        .collect();
    let counted: BTreeSet<String> = approvals
        .iter()
        .flat_map(|d| [ids.canonical(d.person()), ids.canonical(&d.actor)])
        .collect();
    let progress = req
        .approvals
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let approved_by: Vec<String> = slots
                .iter()
                .enumerate()
                .filter(|(_, s)| **s == gi)
                .filter_map(|(si, _)| slot_owner[si].map(|a| approvers[a].person().to_owned()))
                .collect();
            GroupProgress {
                group: g.group.clone(),
                quorum: g.quorum,
                eligible: eligible[gi]
                    .0
                    .iter()
                    .filter(|p| !counted.contains(p.as_str()))
                    .cloned()
                    .collect(),
                using_backups: eligible[gi].1,
                approved_by,
            }
        })
        .collect();
    (progress, actors)
}

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

fn decide_emergency(
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

/// Why a decision was refused. `code` is stable; refusals are themselves audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    /// Refusals a reviewer should see in the audit (self-approval, bypass attempts).
    pub audited: bool,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
        audited: false,
    }
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

/// Builds a new change request (revision 1), checking the fields the policy makes mandatory
/// and the emergency criteria. Standard changes the policy pre-approves start approved.
#[allow(clippy::too_many_arguments)]
pub fn open_change(
    id: Uuid,
    key: String,
    tenant: &str,
    requester: &str,
    spec: ChangeSpec,
    pv: &PolicyVersion,
    groups: &BTreeMap<String, Group>,
    now: Timestamp,
) -> Result<ChangeRequest, crate::FieldErrors> {
    let mut errors = crate::FieldErrors::default();
    check_against_policy(&spec, requester, pv, groups, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let auto = needs_no_review(&spec, &pv.policy);
    Ok(ChangeRequest {
        id,
        key,
        tenant: tenant.to_owned(),
        spec,
        requester: requester.to_owned(),
        status: if auto {
            ChangeStatus::Approved
        } else {
            ChangeStatus::Pending
        },
        revision: 1,
        rework_count: 0,
        policy_hash: pv.hash.clone(),
        policy_version: pv.version,
        created_at: now,
        updated_at: now,
        decided_at: auto.then_some(now),
        review_due_at: None,
        reviewed_at: None,
        review_escalated_at: None,
        escalated_at: None,
        decisions: vec![],
        evidence: vec![],
    })
}

/// Resubmits a change after a rejection or a request for changes: a new revision whose
/// earlier decisions no longer count.
pub fn resubmit(
    change: &ChangeRequest,
    spec: ChangeSpec,
    actor: &str,
    pv: &PolicyVersion,
    groups: &BTreeMap<String, Group>,
    now: Timestamp,
) -> Result<ChangeRequest, crate::FieldErrors> {
    let mut errors = crate::FieldErrors::default();
    if crate::identity::normalize(actor) != crate::identity::normalize(&change.requester) {
        errors.add(
            "requester",
            "not_requester",
            format!("only {} can resubmit {}", change.requester, change.key),
        );
        return Err(errors);
    }
    check_against_policy(&spec, actor, pv, groups, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let auto = needs_no_review(&spec, &pv.policy);
    let mut next = change.clone();
    // Who authored the originating record stays excluded, whatever the new revision says.
    let record_authors = change.spec.record_authors.clone();
    next.spec = ChangeSpec {
        record_authors,
        ..spec
    };
    next.revision += 1;
    next.status = if auto {
        ChangeStatus::Approved
    } else {
        ChangeStatus::Pending
    };
    next.decided_at = auto.then_some(now);
    next.policy_hash = pv.hash.clone();
    next.policy_version = pv.version;
    next.updated_at = now;
    next.review_due_at = None;
    next.reviewed_at = None;
    next.review_escalated_at = None;
    next.escalated_at = None;
    Ok(next)
}

fn auto_approved(spec: &ChangeSpec, policy: &Policy) -> bool {
    spec.change_type == ChangeType::Standard
        && spec
            .environments
            .iter()
            .all(|e| policy.requirements(spec, e).auto_approve)
}

/// Pre-approved, or covered only by rules that ask for no review (sandboxes).
fn needs_no_review(spec: &ChangeSpec, policy: &Policy) -> bool {
    spec.change_type != ChangeType::Emergency
        && spec.environments.iter().all(|e| {
            let r = policy.requirements(spec, e);
            !r.rules.is_empty() && (r.auto_approve || r.approvals.is_empty())
        })
}

fn check_against_policy(
    spec: &ChangeSpec,
    requester: &str,
    pv: &PolicyVersion,
    groups: &BTreeMap<String, Group>,
    errors: &mut crate::FieldErrors,
) {
    let policy = &pv.policy;
    let mut fields = BTreeSet::new();
    for e in &spec.environments {
        let r = policy.requirements(spec, e);
        fields.extend(r.required_fields);
    }
    for f in fields {
        if spec_field_present(spec, &f) == Some(false) {
            errors.add(
                f.clone(),
                "required",
                "is required by the approval policy for this change",
            );
        }
    }
    if spec.change_type == ChangeType::Standard && !auto_approved(spec, policy) {
        errors.add(
            "type",
            "not_pre_approved",
            "no rule of the policy pre-approves this change; submit it as a normal change",
        );
    }
    if spec.change_type == ChangeType::Emergency {
        match &policy.emergency {
            None => errors.add(
                "type",
                "no_emergency_policy",
                "the policy has no [emergency] section",
            ),
            Some(ep) => {
                if !groups.get(&ep.group).is_some_and(|g| {
                    g.members.iter().any(|m| {
                        crate::identity::normalize(m) == crate::identity::normalize(requester)
                    })
                }) {
                    errors.add(
                        "type",
                        "not_emergency_privileged",
                        format!("only members of '{}' may open emergency changes", ep.group),
                    );
                }
            }
        }
    }
}

/// The escalation due for a pending change whose approval SLA has passed: the group to
/// escalate to, once. `None` when nothing is due.
pub fn escalation_due(
    change: &ChangeRequest,
    pv: &PolicyVersion,
    now: Timestamp,
) -> Option<(String, std::time::Duration)> {
    if change.status != ChangeStatus::Pending || change.escalated_at.is_some() {
        return None;
    }
    change.spec.environments.iter().find_map(|e| {
        let r = pv.policy.requirements(&change.spec, e);
        let to = r.escalate_to?;
        (now >= after(change.updated_at, r.sla)).then_some((to, r.sla))
    })
}

/// Explains, for each environment of a change, what the policy requires and where it stands.
pub fn explain(
    change: &ChangeRequest,
    pv: Option<&PolicyVersion>,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    now: Timestamp,
) -> Vec<(Option<Requirements>, GateDecision)> {
    change
        .spec
        .environments
        .iter()
        .map(|e| {
            let req = pv.map(|p| p.policy.requirements(&change.spec, e));
            (req, standing(change, pv, groups, ids, &e.name, now))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::change::RiskLevel;
    use crate::model::{EnvTier, ResolvedEnvironment};
    use crate::time::from_micros;

    const DG: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn ids() -> Identities {
        Identities::default()
    }

    /// A decision by `actor`, on their own authority, with nothing else said.
    fn request(kind: DecisionKind, actor: &str) -> DecisionRequest {
        DecisionRequest {
            kind,
            actor: actor.into(),
            on_behalf_of: None,
            delegations: vec![],
            group: None,
            comment: None,
            revision: None,
        }
    }

    const POLICY: &str = r#"
[[rule]]
name = "production"
approvals = [{ group = "cab", quorum = 2 }, { group = "owners" }]
validity = "1h"
[rule.match]
env_tier = ["production"]

[[rule]]
name = "sandbox"
[rule.match]
env_tier = ["development"]

[[rule]]
name = "standard"
auto_approve = true
[rule.match]
change_type = ["standard"]
env_tier = ["staging"]

[[small_team]]
env_tier = ["staging"]
cooling_off = "30m"

[[rule]]
name = "staging"
approvals = [{ group = "owners" }]
[rule.match]
env_tier = ["staging"]
change_type = ["normal"]

[emergency]
group = "oncall"
incident_commanders = "ic"
system_owners = "owners"
"#;

    fn pv() -> PolicyVersion {
        PolicyVersion {
            version: 1,
            hash: "h1".into(),
            policy: Policy::parse(POLICY).unwrap(),
        }
    }

    fn group(name: &str, members: &[&str], backups: &[&str]) -> (String, Group) {
        (
            name.into(),
            Group {
                name: name.into(),
                description: None,
                members: members.iter().map(|s| s.to_string()).collect(),
                backups: backups.iter().map(|s| s.to_string()).collect(),
                department: None,
                regions: vec![],
                compliance: vec![],
            },
        )
    }

    fn groups() -> BTreeMap<String, Group> {
        [
            group("cab", &["carol", "dave", "erin"], &[]),
            group("owners", &["olga", "carol"], &["bob"]),
            group("ic", &["ivan"], &[]),
            group("oncall", &["alice"], &[]),
        ]
        .into_iter()
        .collect()
    }

    fn t(s: i64) -> Timestamp {
        from_micros(1_800_000_000_000_000 + s * 1_000_000)
    }

    fn change(ct: ChangeType, tier: EnvTier) -> ChangeRequest {
        let spec = ChangeSpec {
            change_type: ct,
            title: "x".into(),
            justification: None,
            impact: None,
            rollback_plan: None,
            window_start: None,
            window_end: None,
            services: vec!["checkout".into()],
            environments: vec![ResolvedEnvironment {
                name: "env".into(),
                raw: "env".into(),
                tier: Some(tier),
                region: None,
            }],
            artifact_digests: vec![format!("sha256:{}", "a".repeat(64))],
            ticket: None,
            risk: RiskLevel::Medium,
            criticality: None,
            compliance: vec![],
            artifact_flags: vec![],
            authors: vec![],
            record_authors: vec![],
            team: None,
            incident_id: Some("INC-1".into()),
            exploit_ref: None,
        };
        open_change(
            Uuid::now_v7(),
            "CR-1".into(),
            "t",
            "alice",
            spec,
            &pv(),
            &groups(),
            t(0),
        )
        .unwrap()
    }

    fn act(
        c: &ChangeRequest,
        who: &str,
        kind: DecisionKind,
        at: i64,
    ) -> Result<ChangeRequest, Refusal> {
        apply_decision(
            c,
            &pv(),
            &groups(),
            &ids(),
            DecisionRequest {
                kind,
                actor: who.into(),
                on_behalf_of: None,
                delegations: Vec::new(),
                group: None,
                comment: Some("ok".into()),
                revision: None,
            },
            t(at),
        )
        .map(|o| o.change)
    }

    #[test]
    fn two_groups_one_person_counts_once_then_expiry() {
        let c = change(ChangeType::Normal, EnvTier::Production);
        let e = act(&c, "alice", DecisionKind::Approve, 1).unwrap_err();
        assert_eq!(e.code, "self_approval");
        assert!(e.audited);
        // carol sits in cab and owners: she fills one slot only.
        let c = act(&c, "carol", DecisionKind::Approve, 2).unwrap();
        assert_eq!(
            act(&c, "carol", DecisionKind::Approve, 3).unwrap_err().code,
            "already_decided"
        );
        let c = act(&c, "dave", DecisionKind::Approve, 4).unwrap();
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(5),
        );
        assert_eq!(g.state, GateState::Pending, "{g:?}");
        // olga completes owners; matching moves carol to cab.
        let c = act(&c, "olga", DecisionKind::Approve, 6).unwrap();
        assert_eq!(c.status, ChangeStatus::Approved);
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(7),
        );
        assert_eq!(g.state, GateState::Allowed, "{g:?}");
        assert_eq!(g.expires_at, Some(t(6) + Span::hours(1)));
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(6 + 3600),
        );
        assert_eq!(g.state, GateState::Expired);
        let other = format!("sha256:{}", "b".repeat(64));
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(&other),
            None,
            t(7),
        );
        assert_eq!(g.state, GateState::Expired);
        assert_eq!(g.reasons[0].code, "digest_changed");
        // A new policy version voids the approvals.
        let mut p2 = pv();
        p2.hash = "h2".into();
        let g = decide(
            &c,
            Some(&p2),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(7),
        );
        assert_eq!(g.state, GateState::Pending);
    }

    #[test]
    fn rejection_is_final_until_resubmitted() {
        let c = change(ChangeType::Normal, EnvTier::Production);
        let c = act(&c, "dave", DecisionKind::Reject, 1).unwrap();
        assert_eq!(c.rework_count, 1);
        assert_eq!(
            act(&c, "erin", DecisionKind::Approve, 2).unwrap_err().code,
            "change_closed"
        );
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(3),
        );
        assert_eq!(g.state, GateState::Denied);
        let c2 = resubmit(&c, c.spec.clone(), "alice", &pv(), &groups(), t(4)).unwrap();
        assert_eq!(c2.revision, 2);
        assert_eq!(c2.status, ChangeStatus::Pending);
        assert!(act(&c2, "dave", DecisionKind::Approve, 5).is_ok());
    }

    #[test]
    fn backups_count_only_when_members_cannot() {
        // owners = olga, carol (+ backup bob). With carol as the requester... use a change by olga.
        let mut c = change(ChangeType::Normal, EnvTier::Staging);
        c.requester = "olga".into();
        // carol can still approve; bob is not needed.
        let p = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(1),
        );
        assert!(!p.approvals[0].using_backups);
        assert!(
            act(&c, "bob", DecisionKind::Approve, 2).is_ok(),
            "bob is in the group as a backup"
        );
        let c2 = act(&c, "bob", DecisionKind::Approve, 2).unwrap();
        let g = decide(
            &c2,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(3),
        );
        assert_eq!(
            g.state,
            GateState::Pending,
            "a backup does not count while members can approve"
        );
    }

    #[test]
    fn small_team_self_approval_cools_off_and_needs_review() {
        let c = change(ChangeType::Normal, EnvTier::Staging);
        let mut gs = groups();
        gs.get_mut("owners").unwrap().members.push("alice".into());
        let o = apply_decision(
            &c,
            &pv(),
            &gs,
            &ids(),
            DecisionRequest {
                kind: DecisionKind::Approve,
                actor: "alice".into(),
                on_behalf_of: None,
                delegations: Vec::new(),
                group: None,
                comment: None,
                revision: None,
            },
            t(0),
        )
        .unwrap();
        assert!(o.decision.self_approval);
        assert!(o.change.review_due_at.is_some());
        // The self-approval counts under small-team mode, after the cooling-off.
        let g = decide(
            &o.change,
            Some(&pv()),
            &gs,
            &ids(),
            "env",
            Some(DG),
            None,
            t(60),
        );
        assert_eq!(g.state, GateState::Pending, "{g:?}");
        assert!(g.reasons.iter().any(|r| r.code == "not_yet_valid"));
        let g = decide(
            &o.change,
            Some(&pv()),
            &gs,
            &ids(),
            "env",
            Some(DG),
            None,
            t(31 * 60),
        );
        assert_eq!(g.state, GateState::Allowed, "{g:?}");
        // Outside small-team environments the same approval is refused.
        let p = change(ChangeType::Normal, EnvTier::Production);
        let mut gs3 = groups();
        gs3.get_mut("cab").unwrap().members.push("alice".into());
        let e = apply_decision(
            &p,
            &pv(),
            &gs3,
            &ids(),
            DecisionRequest {
                kind: DecisionKind::Approve,
                actor: "alice".into(),
                on_behalf_of: None,
                delegations: Vec::new(),
                group: None,
                comment: None,
                revision: None,
            },
            t(0),
        )
        .unwrap_err();
        assert_eq!(e.code, "self_approval");
    }

    #[test]
    fn standard_and_sandbox_and_uncovered() {
        let c = change(ChangeType::Standard, EnvTier::Staging);
        assert_eq!(c.status, ChangeStatus::Approved);
        assert!(
            decide(
                &c,
                Some(&pv()),
                &groups(),
                &ids(),
                "env",
                Some(DG),
                None,
                t(1)
            )
            .allowed()
        );
        let c = change(ChangeType::Normal, EnvTier::Development);
        assert!(
            decide(
                &c,
                Some(&pv()),
                &groups(),
                &ids(),
                "env",
                Some(DG),
                None,
                t(1)
            )
            .allowed(),
            "sandbox passes without review"
        );
        let c = change(ChangeType::Normal, EnvTier::Test);
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(1),
        );
        assert_eq!(g.state, GateState::Denied);
        assert_eq!(g.reasons[0].code, "no_policy_rule");
        let g = decide(&c, None, &groups(), &ids(), "env", Some(DG), None, t(1));
        assert_eq!(g.reasons[0].code, "no_policy");
    }

    #[test]
    fn emergency_needs_two_distinct_acknowledgements() {
        let c = change(ChangeType::Emergency, EnvTier::Production);
        assert_eq!(
            act(&c, "dave", DecisionKind::Approve, 1).unwrap_err().code,
            "wrong_path"
        );
        assert_eq!(
            act(&c, "dave", DecisionKind::AckIncidentCommander, 1)
                .unwrap_err()
                .code,
            "not_an_approver"
        );
        let c = act(&c, "ivan", DecisionKind::AckIncidentCommander, 1).unwrap();
        assert_eq!(
            decide(
                &c,
                Some(&pv()),
                &groups(),
                &ids(),
                "env",
                Some(DG),
                None,
                t(2)
            )
            .state,
            GateState::Pending
        );
        let c = act(&c, "olga", DecisionKind::AckSystemOwner, 3).unwrap();
        assert_eq!(c.status, ChangeStatus::Bypassed);
        assert!(c.review_due_at.is_some());
        assert!(
            decide(
                &c,
                Some(&pv()),
                &groups(),
                &ids(),
                "env",
                Some(DG),
                None,
                t(4)
            )
            .allowed()
        );
        assert_eq!(
            act(&c, "alice", DecisionKind::Review, 5).unwrap_err().code,
            "self_approval"
        );
        let c = act(&c, "dave", DecisionKind::Review, 5).unwrap();
        assert!(c.reviewed_at.is_some());
        // Only the emergency group may open one.
        let mut spec = c.spec.clone();
        spec.change_type = ChangeType::Emergency;
        let e = open_change(
            Uuid::now_v7(),
            "CR-2".into(),
            "t",
            "dave",
            spec,
            &pv(),
            &groups(),
            t(0),
        )
        .unwrap_err();
        assert_eq!(e.0[0].code, "not_emergency_privileged");
    }

    #[test]
    fn planned_window_and_approving_an_expired_grant() {
        let mut c = change(ChangeType::Normal, EnvTier::Development);
        c.spec.window_start = Some(t(100));
        c.spec.window_end = Some(t(200));
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(50),
        );
        assert_eq!(g.state, GateState::Pending);
        assert_eq!(
            g.not_before,
            Some(t(100)),
            "a waiting gate wakes when the window opens"
        );
        assert!(
            decide(
                &c,
                Some(&pv()),
                &groups(),
                &ids(),
                "env",
                Some(DG),
                None,
                t(150)
            )
            .allowed()
        );
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            None,
            t(200),
        );
        assert_eq!(
            (g.state, g.reasons[0].code.as_str()),
            (GateState::Expired, "outside_window")
        );
        // An expired grant is not topped up by another approval.
        let c = change(ChangeType::Normal, EnvTier::Production);
        let c = act(&c, "carol", DecisionKind::Approve, 1).unwrap();
        let c = act(&c, "dave", DecisionKind::Approve, 2).unwrap();
        let c = act(&c, "olga", DecisionKind::Approve, 3).unwrap();
        assert_eq!(
            act(&c, "erin", DecisionKind::Approve, 10).unwrap_err().code,
            "already_approved"
        );
        assert_eq!(
            act(&c, "erin", DecisionKind::Approve, 3 + 3600)
                .unwrap_err()
                .code,
            "approval_expired"
        );
    }

    fn delegation(from: &str, to: &str, group: Option<&str>) -> Delegation {
        Delegation {
            id: Uuid::now_v7(),
            from: from.into(),
            to: to.into(),
            group: group.map(str::to_owned),
            starts_at: t(0),
            ends_at: t(1000),
            reason: "leave".into(),
            created_by: from.into(),
            created_at: t(0),
            revoked_at: None,
        }
    }

    fn act_as(
        c: &ChangeRequest,
        who: &str,
        on_behalf_of: Option<&str>,
        delegations: Vec<Delegation>,
        at: i64,
    ) -> Result<Outcome, Refusal> {
        apply_decision(
            c,
            &pv(),
            &groups(),
            &ids(),
            DecisionRequest {
                kind: DecisionKind::Approve,
                actor: who.into(),
                on_behalf_of: on_behalf_of.map(str::to_owned),
                delegations,
                group: None,
                comment: None,
                revision: None,
            },
            t(at),
        )
    }

    #[test]
    fn delegation_acts_for_the_delegator_without_cascading() {
        let c = change(ChangeType::Normal, EnvTier::Production);
        let olga_to_zed = delegation("olga", "zed", Some("owners"));
        // zed approves for olga (owners): the approval is olga's, made by zed.
        let o = act_as(&c, "zed", None, vec![olga_to_zed.clone()], 1).unwrap();
        assert_eq!(o.decision.actor, "zed");
        assert_eq!(o.decision.on_behalf_of.as_deref(), Some("olga"));
        let c = o.change;
        // olga counts once: her own approval now is a repeat.
        assert_eq!(
            act(&c, "olga", DecisionKind::Approve, 2).unwrap_err().code,
            "already_decided"
        );
        let c = act(&c, "carol", DecisionKind::Approve, 3).unwrap();
        let c = act(&c, "dave", DecisionKind::Approve, 4).unwrap();
        assert_eq!(c.status, ChangeStatus::Approved);
        // Not followed further: zed delegating onwards gives yuri nothing.
        let c2 = change(ChangeType::Normal, EnvTier::Production);
        let zed_to_yuri = delegation("zed", "yuri", None);
        let e = act_as(&c2, "yuri", None, vec![olga_to_zed.clone(), zed_to_yuri], 1).unwrap_err();
        assert_eq!(e.code, "not_an_approver");
        // Outside the period, or naming someone who never delegated: refused.
        assert_eq!(
            act_as(&c2, "zed", Some("olga"), vec![olga_to_zed.clone()], 2000)
                .unwrap_err()
                .code,
            "no_delegation"
        );
        assert_eq!(
            act_as(&c2, "zed", Some("carol"), vec![olga_to_zed], 1)
                .unwrap_err()
                .code,
            "no_delegation"
        );
        // A delegate can never be the requester.
        let e = act_as(
            &c2,
            "alice",
            None,
            vec![delegation("carol", "alice", None)],
            1,
        )
        .unwrap_err();
        assert_eq!(e.code, "self_approval");
        assert!(e.audited);
    }

    #[test]
    fn delegations_to_oneself_and_loops_are_refused() {
        let ab = delegation("a", "b", None);
        assert!(check_delegation(&ab, &[], t(1)).is_ok());
        let e = check_delegation(&delegation("a", "a", None), &[], t(1)).unwrap_err();
        assert_eq!(e.0[0].code, "self_delegation");
        let e = check_delegation(&delegation("b", "a", None), std::slice::from_ref(&ab), t(1))
            .unwrap_err();
        assert_eq!(e.0[0].code, "delegation_loop");
        let revoked = Delegation {
            revoked_at: Some(t(0)),
            ..ab
        };
        assert!(check_delegation(&delegation("b", "a", None), &[revoked], t(1)).is_ok());
    }

    /// Integrity issue, items 1, 2, 3, 5, 6 and 8, as the attacker tried them.
    #[test]
    fn one_person_never_fills_two_slots_through_a_delegation() {
        let c = change(ChangeType::Normal, EnvTier::Production);
        // carol -> dave (both cab): dave approves for himself, then on behalf of carol.
        let c = act(&c, "dave", DecisionKind::Approve, 1).unwrap();
        let e = act_as(
            &c,
            "dave",
            Some("carol"),
            vec![delegation("carol", "dave", None)],
            2,
        )
        .unwrap_err();
        assert_eq!(e.code, "already_decided");
        // The reverse order too, and with another spelling of dave.
        let c2 = change(ChangeType::Normal, EnvTier::Production);
        let c2 = act_as(
            &c2,
            "dave",
            Some("carol"),
            vec![delegation("carol", "dave", None)],
            1,
        )
        .unwrap()
        .change;
        assert_eq!(
            act(&c2, " DAVE ", DecisionKind::Approve, 2)
                .unwrap_err()
                .code,
            "already_decided"
        );
    }

    #[test]
    fn a_delegation_limited_to_a_group_carries_no_authority_elsewhere() {
        let c = change(ChangeType::Normal, EnvTier::Production);
        // carol sits in cab and owners; her delegation to zed covers cab only.
        let d = delegation("carol", "zed", Some("cab"));
        let req = |group: Option<&str>| {
            apply_decision(
                &c,
                &pv(),
                &groups(),
                &ids(),
                DecisionRequest {
                    kind: DecisionKind::Approve,
                    actor: "zed".into(),
                    on_behalf_of: Some("carol".into()),
                    delegations: vec![d.clone()],
                    group: group.map(str::to_owned),
                    comment: None,
                    revision: Some(c.revision),
                },
                t(1),
            )
        };
        let e = req(Some("owners")).unwrap_err();
        assert_eq!(e.code, "delegation_scope");
        assert!(e.audited);
        let o = req(None).unwrap();
        assert_eq!(
            o.decision.group.as_deref(),
            Some("cab"),
            "pinned to the delegation's group"
        );
    }

    #[test]
    fn the_emergency_requester_and_authors_never_acknowledge() {
        let mut gs = groups();
        gs.get_mut("ic").unwrap().members.push("alice".into());
        gs.get_mut("owners").unwrap().members.push("dev-a".into());
        let mut c = change(ChangeType::Emergency, EnvTier::Production);
        c.spec.authors = vec!["Dev-A".into()];
        let ack = |c: &ChangeRequest, who: &str, kind| {
            apply_decision(c, &pv(), &gs, &ids(), request(kind, who), t(1))
        };
        // alice requested it and is an incident commander: refused.
        let e = ack(&c, "alice", DecisionKind::AckIncidentCommander).unwrap_err();
        assert_eq!(e.code, "self_approval");
        // A listed commit author, spelled differently, as system owner: refused.
        let e = ack(&c, "dev-a", DecisionKind::AckSystemOwner).unwrap_err();
        assert_eq!(e.code, "author_approval");
        let c = ack(&c, "ivan", DecisionKind::AckIncidentCommander)
            .unwrap()
            .change;
        let c = ack(&c, "olga", DecisionKind::AckSystemOwner)
            .unwrap()
            .change;
        assert_eq!(c.status, ChangeStatus::Bypassed);
        assert!(decide(&c, Some(&pv()), &gs, &ids(), "env", Some(DG), None, t(2)).allowed());
        // A bypass whose acknowledgements were forged in the store does not hold.
        let mut forged = c.clone();
        for d in forged.decisions.iter_mut() {
            d.actor = "alice".into();
        }
        let g = decide(
            &forged,
            Some(&pv()),
            &gs,
            &ids(),
            "env",
            Some(DG),
            None,
            t(2),
        );
        assert_eq!(g.state, GateState::Denied);
        assert_eq!(g.reasons[0].code, "invalid_acknowledgement");
    }

    #[test]
    fn record_authors_and_padded_requesters_never_approve() {
        let mut c = change(ChangeType::Normal, EnvTier::Production);
        c.requester = " Alice ".into();
        c.spec.record_authors = vec!["CAROL@acme.com".into()];
        let people = [Person {
            subject: "carol".into(),
            name: None,
            email: Some("carol@acme.com".into()),
            created_at: t(0),
        }];
        let ids = Identities::from_people(&people);
        let try_as = |who: &str| {
            apply_decision(
                &c,
                &pv(),
                &groups(),
                &ids,
                request(DecisionKind::Approve, who),
                t(1),
            )
        };
        assert_eq!(try_as("alice").unwrap_err().code, "self_approval");
        assert_eq!(try_as("carol").unwrap_err().code, "record_author");
        assert!(try_as("dave").is_ok());
    }

    #[test]
    fn a_decision_on_a_stale_revision_is_refused() {
        let c = change(ChangeType::Normal, EnvTier::Production);
        let e = apply_decision(
            &c,
            &pv(),
            &groups(),
            &ids(),
            DecisionRequest {
                kind: DecisionKind::Approve,
                actor: "carol".into(),
                on_behalf_of: None,
                delegations: vec![],
                group: None,
                comment: None,
                revision: Some(c.revision + 1),
            },
            t(1),
        )
        .unwrap_err();
        assert_eq!(e.code, "stale_revision");
    }

    #[test]
    fn a_gate_call_without_the_digest_is_denied() {
        let mut c = change(ChangeType::Normal, EnvTier::Staging);
        c.requester = "zed".into();
        let c = act(&c, "olga", DecisionKind::Approve, 1).unwrap();
        assert!(
            decide(
                &c,
                Some(&pv()),
                &groups(),
                &ids(),
                "env",
                Some(DG),
                None,
                t(2)
            )
            .allowed()
        );
        let g = decide(&c, Some(&pv()), &groups(), &ids(), "env", None, None, t(2));
        assert_eq!(g.state, GateState::Denied);
        assert_eq!(g.reasons[0].code, "digest_required");
    }

    #[test]
    fn deployer_is_never_the_only_approval() {
        let mut c = change(ChangeType::Normal, EnvTier::Staging);
        c.requester = "zed".into();
        let c = act(&c, "olga", DecisionKind::Approve, 1).unwrap();
        assert!(
            decide(
                &c,
                Some(&pv()),
                &groups(),
                &ids(),
                "env",
                Some(DG),
                Some("carol"),
                t(2)
            )
            .allowed()
        );
        let g = decide(
            &c,
            Some(&pv()),
            &groups(),
            &ids(),
            "env",
            Some(DG),
            Some("olga"),
            t(2),
        );
        assert_eq!(g.state, GateState::Pending);
        assert!(g.reasons.iter().any(|r| r.code == "deployer_only_approval"));
    }
}

/// A delegation of approval authority: `to` may decide for `from` (in `group`, or in every
/// group of `from`) between `starts_at` and `ends_at`. Delegations are never followed further
/// (A to B to C does not give C A's authority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delegation {
    pub id: Uuid,
    pub from: String,
    pub to: String,
    pub group: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Timestamp,
    pub reason: String,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

impl Delegation {
    pub fn active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.starts_at <= now && now < self.ends_at
    }

    fn overlaps(&self, other: &Delegation) -> bool {
        self.revoked_at.is_none()
            && other.revoked_at.is_none()
            && self.starts_at < other.ends_at
            && other.starts_at < self.ends_at
    }
}

/// Checks a new delegation against the ones recorded: never to oneself, never in a loop
/// (B to A while A to B overlaps), a sane period.
pub fn check_delegation(
    new: &Delegation,
    existing: &[Delegation],
    now: Timestamp,
) -> Result<(), crate::FieldErrors> {
    let mut e = crate::FieldErrors::default();
    if new.from == new.to {
        e.add(
            "to",
            "self_delegation",
            "a delegation to yourself is refused",
        );
    }
    if new.ends_at <= new.starts_at {
        e.add("ends_at", "invalid_value", "must be after starts_at");
    }
    if new.ends_at <= now {
        e.add("ends_at", "in_past", "the period has already ended");
    }
    if new.reason.trim().is_empty() {
        e.add("reason", "required", "say why (absence, handover, ...)");
    }
    if existing
        .iter()
        .any(|d| d.from == new.to && d.to == new.from && d.overlaps(new))
    {
        e.add(
            "to",
            "delegation_loop",
            format!(
                "{} already delegates to {} in this period",
                new.to, new.from
            ),
        );
    }
    e.into_result(())
}

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
