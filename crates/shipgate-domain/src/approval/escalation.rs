//! Escalation: a pending change whose approval SLA has passed goes to the policy's resolution
//! authority.
use super::verdict::PolicyVersion;
use crate::change::{ChangeRequest, ChangeStatus};
use crate::time::{Timestamp, after};

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
