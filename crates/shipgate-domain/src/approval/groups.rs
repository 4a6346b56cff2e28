//! Approver groups, and the matching that counts a change's approvals against the groups it
//! needs.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::separation::exclusion;
use crate::change::{ChangeRequest, ChangeSpec, Decision};
use crate::identity::Identities;
use crate::policy::{Policy, Requirements};

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

/// Counts approvals against the required groups: each natural person fills at most one slot,
/// whether they acted for themselves or for a delegator (a maximum bipartite matching, so that
/// overlapping groups never strand an approval), and only people eligible for a group count
/// for it. Returns the progress per group and the natural persons (actors) filling slots.
pub(super) fn count(
    change: &ChangeRequest,
    req: &Requirements,
    groups: &BTreeMap<String, Group>,
    policy: &Policy,
    ids: &Identities,
    approvals: &[&Decision],
) -> (Vec<GroupProgress>, BTreeSet<String>) {
    let eligible = eligible(change, req, groups, policy, ids);
    // Slots: one per unit of quorum (bounded by the policy's validation; never more slots
    // than there are approvals to fill them).
    let slots: Vec<usize> = req
        .approvals
        .iter()
        .enumerate()
        .flat_map(|(i, g)| std::iter::repeat_n(i, (g.quorum as usize).min(approvals.len() + 1)))
        .collect();
    let approvers = distinct_approvers(change, policy, ids, approvals);
    let can = |a: &Decision, slot: usize| -> bool {
        let gi = slots[slot];
        let gname = &req.approvals[gi].group;
        eligible[gi].0.contains(&ids.canonical(a.person()))
            && a.group.as_ref().is_none_or(|g| g == gname)
    };
    let slot_owner = match_slots(slots.len(), approvers.len(), &|a, s| can(approvers[a], s));
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

/// Who may approve for each required group (canonical names), and whether its backups are
/// in because too few members can approve.
fn eligible(
    change: &ChangeRequest,
    req: &Requirements,
    groups: &BTreeMap<String, Group>,
    policy: &Policy,
    ids: &Identities,
) -> Vec<(BTreeSet<String>, bool)> {
    let region = change
        .covers_environment(&req.environment)
        .and_then(|e| e.region.clone());
    // Under small-team mode the requester's own approval counts (after cooling off).
    let ok = |p: &String| {
        exclusion(change, policy, ids, p)
            .is_none_or(|why| why == "self_approval" && req.small_team.is_some())
    };
    let people = |list: &[String]| -> Vec<String> {
        list.iter()
            .filter(|p| ok(p))
            .map(|p| ids.canonical(p))
            .collect()
    };
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
        let mut set: BTreeSet<String> = people(&group.members).into_iter().collect();
        let using_backups = (set.len() as u64) < u64::from(g.quorum);
        if using_backups {
            set.extend(people(&group.backups));
        }
        // Escalated: the resolution authority may approve for the group.
        if change.escalated_at.is_some()
            && let Some(esc) = req.escalate_to.as_ref().and_then(|e| groups.get(e))
        {
            set.extend(people(&esc.members));
        }
        eligible.push((set, using_backups));
    }
    eligible
}

/// The approvals in which a natural person appears first: a decision whose actor or
/// principal already appears in an earlier decision (as actor or principal) does not count.
/// A delegate is bound by separation of duties too.
fn distinct_approvers<'d>(
    change: &ChangeRequest,
    policy: &Policy,
    ids: &Identities,
    approvals: &[&'d Decision],
) -> Vec<&'d Decision> {
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
}

/// A maximum bipartite matching of approvers to slots (augmenting paths, in approval order):
/// the owner of each slot, if any. `can(a, s)`: approver `a` may fill slot `s`.
fn match_slots(
    slots: usize,
    approvers: usize,
    can: &dyn Fn(usize, usize) -> bool,
) -> Vec<Option<usize>> {
    let mut slot_owner: Vec<Option<usize>> = vec![None; slots];
    for a in 0..approvers {
        let mut seen = vec![false; slots];
        augment(a, &mut seen, &mut slot_owner, can);
    }
    slot_owner
}

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

/// Whether every group has its quorum.
pub(super) fn quorums_met(progress: &[GroupProgress]) -> bool {
    progress
        .iter()
        .all(|g| g.approved_by.len() as u64 >= u64::from(g.quorum))
}
