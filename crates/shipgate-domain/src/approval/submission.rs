//! Opening a change and resubmitting it: checked against the fields the policy makes mandatory
//! and the emergency criteria; pre-approved changes start approved.
use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::groups::Group;
use super::verdict::PolicyVersion;
use crate::change::{ChangeRequest, ChangeSpec, ChangeStatus, ChangeType, spec_field_present};
use crate::policy::Policy;
use crate::time::Timestamp;

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
