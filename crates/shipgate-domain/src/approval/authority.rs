//! Whose authority a decision carries: the actor's own, as a member (or backup) of a group
//! the change needs, or a delegator's, through a direct delegation active now.
use std::collections::{BTreeMap, BTreeSet};

use super::delegation::Delegation;
use super::groups::Group;
use super::request::{DecisionRequest, Refusal, refuse_audited};
use crate::change::ChangeRequest;
use crate::identity::Identities;
use crate::policy::{Policy, Requirements};
use crate::time::Timestamp;

/// The groups a change needs, and who has authority in them.
pub(super) struct Authority<'a> {
    /// What the policy requires of the change, per environment.
    pub(super) reqs: Vec<Requirements>,
    /// The resolution authorities, once the change was escalated.
    escalation: Vec<String>,
    groups: &'a BTreeMap<String, Group>,
    ids: &'a Identities,
}

impl<'a> Authority<'a> {
    pub(super) fn new(
        change: &ChangeRequest,
        policy: &Policy,
        groups: &'a BTreeMap<String, Group>,
        ids: &'a Identities,
    ) -> Self {
        let reqs: Vec<Requirements> = change
            .spec
            .environments
            .iter()
            .map(|e| policy.requirements(&change.spec, e))
            .collect();
        let escalation = if change.escalated_at.is_some() {
            reqs.iter().filter_map(|r| r.escalate_to.clone()).collect()
        } else {
            Vec::new()
        };
        Authority {
            reqs,
            escalation,
            groups,
            ids,
        }
    }

    fn member_of(&self, who: &str, group: &str) -> bool {
        self.groups.get(group).is_some_and(|grp| {
            self.ids.among(who, &grp.members) || self.ids.among(who, &grp.backups)
        })
    }

    /// The required groups `who` may decide in: as a member or backup, or as a member of a
    /// resolution authority once the change was escalated.
    pub(super) fn groups_of(&self, who: &str) -> BTreeSet<String> {
        self.reqs
            .iter()
            .flat_map(|r| r.approvals.iter().map(|g| g.group.clone()))
            .filter(|g| {
                self.member_of(who, g) || self.escalation.iter().any(|e| self.member_of(who, e))
            })
            .collect()
    }

    /// A direct delegation from `from` to the actor (never followed further), active now,
    /// that carries authority `from` has.
    fn delegation_from<'r>(
        &self,
        req: &'r DecisionRequest,
        from: &str,
        now: Timestamp,
    ) -> Option<&'r Delegation> {
        req.delegations
            .iter()
            .filter(|d| {
                self.ids.same(&d.to, &req.actor) && self.ids.same(&d.from, from) && d.active(now)
            })
            .find(|d| {
                let a = self.groups_of(from);
                !a.is_empty() && d.group.as_ref().is_none_or(|g| a.contains(g))
            })
    }

    /// Whose authority the decision carries, and through which delegation: the named
    /// principal's (a delegation from them is required), else the actor's own when they have
    /// some, else the first delegator whose delegation carries authority.
    pub(super) fn principal<'r>(
        &self,
        change: &ChangeRequest,
        req: &'r DecisionRequest,
        now: Timestamp,
    ) -> Result<(String, Option<&'r Delegation>), Refusal> {
        match &req.on_behalf_of {
            Some(a) if !self.ids.same(a, &req.actor) => match self.delegation_from(req, a, now) {
                Some(d) => Ok((a.clone(), Some(d))),
                None => Err(refuse_audited(
                    "no_delegation",
                    format!(
                        "{} holds no active delegation from {a} that covers {}",
                        req.actor, change.key
                    ),
                )),
            },
            _ if !self.groups_of(&req.actor).is_empty() || req.on_behalf_of.is_some() => {
                Ok((req.actor.clone(), None))
            }
            _ => Ok(
                match req
                    .delegations
                    .iter()
                    .find_map(|d| self.delegation_from(req, &d.from, now))
                {
                    Some(d) => (d.from.clone(), Some(d)),
                    None => (req.actor.clone(), None),
                },
            ),
        }
    }
}

/// A delegation limited to one group carries authority in that group only: the group the
/// decision is pinned to, if any (refused when the decider named another).
pub(super) fn delegation_limit(
    via: Option<&Delegation>,
    req: &DecisionRequest,
    person: &str,
) -> Result<Option<String>, Refusal> {
    let Some(limit) = via.and_then(|d| d.group.as_ref()) else {
        return Ok(None);
    };
    if let Some(g) = &req.group
        && g != limit
    {
        return Err(refuse_audited(
            "delegation_scope",
            format!(
                "the delegation from {person} to {} covers '{limit}' only, not '{g}'",
                req.actor
            ),
        ));
    }
    Ok(Some(limit.clone()))
}
