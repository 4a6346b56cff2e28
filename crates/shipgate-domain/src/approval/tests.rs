//! The approval rules end to end: gate answers and decisions on one policy and one set of
//! groups.
use std::collections::BTreeMap;

use chrono::Duration as Span;
use uuid::Uuid;

use super::*;
use crate::change::{ChangeRequest, ChangeSpec, ChangeStatus, ChangeType, DecisionKind, RiskLevel};
use crate::identity::Identities;
use crate::model::{EnvTier, ResolvedEnvironment};
use crate::policy::Policy;
use crate::time::{Timestamp, from_micros};

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
    let e =
        check_delegation(&delegation("b", "a", None), std::slice::from_ref(&ab), t(1)).unwrap_err();
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
