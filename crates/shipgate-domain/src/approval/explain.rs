//! What the policy requires of a change, and where it stands, per environment.
use std::collections::BTreeMap;

use super::gate::standing;
use super::groups::Group;
use super::verdict::{GateDecision, PolicyVersion};
use crate::change::ChangeRequest;
use crate::identity::Identities;
use crate::policy::Requirements;
use crate::time::Timestamp;

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
