//! Separation of duties as a property: over generated people, groups, backups, delegations
//! with group limits, requesters, commit and record (ITSM) authors, deployers and sequences
//! of decision attempts (written with every spelling of each identity), the gate allows only
//! when an independent check finds every required slot filled by a distinct natural person
//! who is not the requester, not an author, and not the sole approver who also deploys; and
//! an emergency bypass only with two acknowledgements from two distinct people, neither the
//! requester nor an author.
#![allow(clippy::unwrap_used, clippy::type_complexity)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use shipgate_domain::approval::{
    DecisionRequest, Delegation, Group, Person, PolicyVersion, apply_decision, decide, open_change,
};
use shipgate_domain::change::{ChangeSpec, ChangeType, DecisionKind, RiskLevel};
use shipgate_domain::identity::Identities;
use shipgate_domain::model::{EnvTier, ResolvedEnvironment};
use shipgate_domain::policy::Policy;
use shipgate_domain::time::{Timestamp, from_micros};
use uuid::Uuid;

const PEOPLE: usize = 4;
const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn t(s: i64) -> Timestamp {
    from_micros(1_800_000_000_000_000 + s * 1_000_000)
}

/// One of the spellings of person `i`: subject, upper case, padded, email, email in capitals.
fn spell(i: usize, v: u8) -> String {
    match v % 5 {
        0 => format!("p{i}"),
        1 => format!("P{i}"),
        2 => format!("  p{i} "),
        3 => format!("p{i}@acme.test"),
        _ => format!("P{i}@ACME.TEST"),
    }
}

fn canon(s: &str, ids: &Identities) -> String {
    ids.canonical(s)
}

#[derive(Debug, Clone)]
struct Attempt {
    /// Act as the delegate of this delegation (naming the delegator or not), when it exists.
    via: Option<(usize, bool)>,
    actor: (usize, u8),
    on_behalf_of: Option<(usize, u8)>,
    group: Option<u8>,
    kind: u8,
}

#[derive(Debug, Clone)]
struct Scenario {
    emergency: bool,
    authors_cannot_approve: bool,
    cab_quorum: u32,
    owners_quorum: u32,
    cab: Vec<(usize, u8)>,
    cab_backups: Vec<(usize, u8)>,
    owners: Vec<(usize, u8)>,
    ic: Vec<(usize, u8)>,
    so: Vec<(usize, u8)>,
    requester: (usize, u8),
    authors: Vec<(usize, u8)>,
    record_authors: Vec<(usize, u8)>,
    deployer: (usize, u8),
    delegations: Vec<((usize, u8), (usize, u8), Option<u8>)>,
    attempts: Vec<Attempt>,
}

fn who() -> impl Strategy<Value = (usize, u8)> {
    (0..PEOPLE, 0u8..5)
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let attempt = (
        prop::option::weighted(0.4, (0usize..4, any::<bool>())),
        who(),
        prop::option::weighted(0.2, who()),
        prop::option::weighted(0.4, 0u8..2),
        0u8..6,
    )
        .prop_map(|(via, actor, on_behalf_of, group, kind)| Attempt {
            via,
            actor,
            on_behalf_of,
            group,
            kind,
        });
    (
        (
            prop::bool::weighted(0.3),
            any::<bool>(),
            1u32..=2,
            0u32..=1,
            prop::collection::vec(who(), 1..4),
            prop::collection::vec(who(), 0..2),
            prop::collection::vec(who(), 1..3),
            prop::collection::vec(who(), 1..3),
        ),
        (
            prop::collection::vec(who(), 1..3),
            who(),
            prop::collection::vec(who(), 0..3),
            prop::collection::vec(who(), 0..2),
            who(),
            prop::collection::vec((who(), who(), prop::option::of(0u8..2)), 0..4),
            prop::collection::vec(attempt, 1..10),
        ),
    )
        .prop_map(
            |(
                (emergency, aca, cq, oq, cab, cab_backups, owners, ic),
                (so, requester, authors, record_authors, deployer, delegations, attempts),
            )| Scenario {
                emergency,
                authors_cannot_approve: aca,
                cab_quorum: cq,
                owners_quorum: oq,
                cab,
                cab_backups,
                owners,
                ic,
                so,
                requester,
                authors,
                record_authors,
                deployer,
                delegations,
                attempts,
            },
        )
}

const GROUPS: [&str; 2] = ["cab", "owners"];

fn names(v: &[(usize, u8)]) -> Vec<String> {
    v.iter().map(|(i, s)| spell(*i, *s)).collect()
}

fn group(name: &str, members: Vec<String>, backups: Vec<String>) -> (String, Group) {
    (
        name.into(),
        Group {
            name: name.into(),
            description: None,
            members,
            backups,
            department: None,
            regions: vec![],
            compliance: vec![],
        },
    )
}

fn policy(s: &Scenario) -> PolicyVersion {
    let owners = if s.owners_quorum > 0 {
        format!(", {{ group = \"owners\", quorum = {} }}", s.owners_quorum)
    } else {
        String::new()
    };
    let text = format!(
        r#"
[separation]
authors_cannot_approve = {}

[[rule]]
name = "production"
approvals = [{{ group = "cab", quorum = {} }}{owners}]
validity = "1h"
[rule.match]
env_tier = ["production"]

[emergency]
group = "oncall"
incident_commanders = "ic"
system_owners = "so"
"#,
        s.authors_cannot_approve, s.cab_quorum
    );
    PolicyVersion {
        version: 1,
        hash: "h".into(),
        policy: Policy::parse(&text).unwrap(),
    }
}

/// The independent check for a normal change: is there an assignment of the required slots to
/// approvals that satisfies every rule, with someone other than the deployer among them?
#[allow(clippy::too_many_arguments)]
fn justified(
    slots: &[&str],
    approvals: &[(String, String, Option<String>)],
    groups: &BTreeMap<String, Group>,
    delegations: &[Delegation],
    excluded: &dyn Fn(&str) -> bool,
    deployer: &str,
    ids: &Identities,
    chosen: &mut Vec<usize>,
) -> bool {
    if chosen.len() == slots.len() {
        let actors: BTreeSet<&String> = chosen.iter().map(|i| &approvals[*i].0).collect();
        return !(actors.len() == 1 && actors.contains(&deployer.to_owned()));
    }
    let g = slots[chosen.len()];
    let grp = &groups[g];
    for (i, (actor, person, dgroup)) in approvals.iter().enumerate() {
        if chosen.contains(&i) {
            continue;
        }
        // Natural persons are pairwise distinct across the chosen approvals.
        let clash = chosen.iter().any(|j| {
            let (a, p, _) = &approvals[*j];
            [a, p].contains(&actor) || [a, p].contains(&person)
        });
        if clash || excluded(actor) || excluded(person) {
            continue;
        }
        if dgroup.as_deref().is_some_and(|x| x != g) {
            continue;
        }
        let eligible = grp
            .members
            .iter()
            .chain(grp.backups.iter())
            .any(|m| canon(m, ids) == *person);
        if !eligible {
            continue;
        }
        if actor != person {
            let delegated = delegations.iter().any(|d| {
                canon(&d.from, ids) == *person
                    && canon(&d.to, ids) == *actor
                    && d.group.as_deref().is_none_or(|x| x == g)
            });
            if !delegated {
                continue;
            }
        }
        chosen.push(i);
        if justified(
            slots,
            approvals,
            groups,
            delegations,
            excluded,
            deployer,
            ids,
            chosen,
        ) {
            return true;
        }
        chosen.pop();
    }
    false
}

/// Runs a scenario; `Ok(true)` when the gate allowed (and the independent check agreed).
fn run(s: &Scenario) -> Result<bool, TestCaseError> {
    let people: Vec<Person> = (0..PEOPLE)
        .map(|i| Person {
            subject: format!("p{i}"),
            name: None,
            email: Some(format!("p{i}@acme.test")),
            created_at: t(0),
        })
        .collect();
    let ids = Identities::from_people(&people);
    let groups: BTreeMap<String, Group> = [
        group("cab", names(&s.cab), names(&s.cab_backups)),
        group("owners", names(&s.owners), vec![]),
        group("ic", names(&s.ic), vec![]),
        group("so", names(&s.so), vec![]),
        group(
            "oncall",
            (0..PEOPLE).map(|i| format!("p{i}")).collect(),
            vec![],
        ),
    ]
    .into_iter()
    .collect();
    let pv = policy(s);
    let spec = ChangeSpec {
        change_type: if s.emergency {
            ChangeType::Emergency
        } else {
            ChangeType::Normal
        },
        title: "x".into(),
        justification: Some("j".into()),
        impact: None,
        rollback_plan: None,
        window_start: None,
        window_end: None,
        services: vec!["checkout".into()],
        environments: vec![ResolvedEnvironment {
            name: "production".into(),
            raw: "production".into(),
            tier: Some(EnvTier::Production),
            region: None,
        }],
        artifact_digests: vec![DIGEST.into()],
        ticket: None,
        risk: RiskLevel::Medium,
        criticality: None,
        compliance: vec![],
        artifact_flags: vec![],
        authors: names(&s.authors),
        record_authors: names(&s.record_authors),
        team: None,
        incident_id: Some("INC-1".into()),
        exploit_ref: None,
    };
    // Opening an emergency change checks the requester's membership of the on-call group by
    // name (no directory at hand); the other spellings are exercised on normal changes.
    let requester = if s.emergency {
        spell(s.requester.0, s.requester.1 % 3)
    } else {
        spell(s.requester.0, s.requester.1)
    };
    let mut change = open_change(
        Uuid::now_v7(),
        "CR-1".into(),
        "t",
        &requester,
        spec,
        &pv,
        &groups,
        t(0),
    )
    .map_err(|e| TestCaseError::fail(format!("open: {e:?}")))?;
    let delegations: Vec<Delegation> = s
        .delegations
        .iter()
        .filter(|(f, to, _)| f.0 != to.0)
        .map(|(f, to, g)| Delegation {
            id: Uuid::now_v7(),
            from: spell(f.0, f.1),
            to: spell(to.0, to.1),
            group: g.map(|g| GROUPS[g as usize].to_owned()),
            starts_at: t(0),
            ends_at: t(10_000),
            reason: "leave".into(),
            created_by: "admin".into(),
            created_at: t(0),
            revoked_at: None,
        })
        .collect();
    for (n, a) in s.attempts.iter().enumerate() {
        let (actor, on_behalf_of) = match a
            .via
            .and_then(|(i, name)| s.delegations.get(i).map(|d| (d, name)))
        {
            Some(((from, to, _), name)) => (
                spell(to.0, a.actor.1),
                name.then(|| spell(from.0, a.actor.1.wrapping_add(1))),
            ),
            None => (
                spell(a.actor.0, a.actor.1),
                a.on_behalf_of.map(|(i, v)| spell(i, v)),
            ),
        };
        let kind = match (s.emergency, a.kind) {
            (false, 0..=2) | (true, 2) => DecisionKind::Approve,
            (_, 0 | 3) => DecisionKind::AckIncidentCommander,
            (_, 1 | 4) => DecisionKind::AckSystemOwner,
            _ => DecisionKind::Reject,
        };
        if kind == DecisionKind::Reject && n + 1 < s.attempts.len() {
            continue;
        }
        let req = DecisionRequest {
            kind,
            actor: actor.clone(),
            on_behalf_of,
            delegations: delegations
                .iter()
                .filter(|d| ids.same(&d.to, &actor))
                .cloned()
                .collect(),
            group: a.group.map(|g| GROUPS[g as usize].to_owned()),
            comment: None,
            revision: Some(change.revision),
        };
        if let Ok(o) = apply_decision(&change, &pv, &groups, &ids, req, t(1 + n as i64)) {
            change = o.change;
        }
    }
    let deployer = spell(s.deployer.0, s.deployer.1);
    let now = t(100);
    let gate = decide(
        &change,
        Some(&pv),
        &groups,
        &ids,
        "production",
        Some(DIGEST),
        Some(&deployer),
        now,
    );
    // Without a digest the gate never allows a digest-scoped change.
    let blind = decide(
        &change,
        Some(&pv),
        &groups,
        &ids,
        "production",
        None,
        Some(&deployer),
        now,
    );
    prop_assert!(!blind.allowed(), "allowed without a digest: {blind:?}");
    if !gate.allowed() {
        return Ok(false);
    }
    let requester_c = canon(&requester, &ids);
    let authors: BTreeSet<String> = s
        .authors
        .iter()
        .map(|(i, v)| canon(&spell(*i, *v), &ids))
        .collect();
    let record: BTreeSet<String> = s
        .record_authors
        .iter()
        .map(|(i, v)| canon(&spell(*i, *v), &ids))
        .collect();
    if s.emergency {
        let acks = |k: DecisionKind| -> Vec<String> {
            change
                .current_decisions()
                .filter(|d| d.kind == k)
                .map(|d| canon(&d.actor, &ids))
                .collect()
        };
        let ic = acks(DecisionKind::AckIncidentCommander);
        let so = acks(DecisionKind::AckSystemOwner);
        let bad = |p: &String| *p == requester_c || authors.contains(p) || record.contains(p);
        let ok = ic.iter().any(|i| {
            !bad(i)
                && groups["ic"].members.iter().any(|m| canon(m, &ids) == *i)
                && so.iter().any(|o| {
                    o != i && !bad(o) && groups["so"].members.iter().any(|m| canon(m, &ids) == *o)
                })
        });
        prop_assert!(
            ok,
            "emergency allowed without two valid acknowledgements: {change:#?}"
        );
        return Ok(true);
    }
    let approvals: Vec<(String, String, Option<String>)> = change
        .current_decisions()
        .filter(|d| d.kind == DecisionKind::Approve)
        .map(|d| {
            (
                canon(&d.actor, &ids),
                canon(d.person(), &ids),
                d.group.clone(),
            )
        })
        .collect();
    let excluded = |p: &str| {
        p == requester_c || record.contains(p) || (s.authors_cannot_approve && authors.contains(p))
    };
    let mut slots: Vec<&str> = vec!["cab"; s.cab_quorum as usize];
    slots.extend(std::iter::repeat_n("owners", s.owners_quorum as usize));
    let ok = justified(
        &slots,
        &approvals,
        &groups,
        &delegations,
        &excluded,
        &canon(&deployer, &ids),
        &ids,
        &mut Vec::new(),
    );
    prop_assert!(
        ok,
        "allowed without a valid assignment of distinct people: {approvals:?} for {slots:?}, deployer {deployer}, requester {requester}"
    );
    Ok(true)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_gate_allows_only_what_distinct_eligible_people_approved(s in scenario()) {
        run(&s)?;
    }
}

/// The generator must reach open gates often, or the property would hold vacuously.
#[test]
fn the_generated_scenarios_reach_open_gates() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut normal, mut emergency) = (0, 0);
    for _ in 0..3000 {
        let s = scenario().new_tree(&mut runner).unwrap().current();
        if run(&s).unwrap() {
            if s.emergency {
                emergency += 1;
            } else {
                normal += 1;
            }
        }
    }
    assert!(
        normal >= 100 && emergency >= 30,
        "allowed: {normal} normal, {emergency} emergency"
    );
}

/// The property must be able to fail: the oracle rejects one person filling two slots.
#[test]
fn the_oracle_rejects_one_person_in_two_slots() {
    let ids = Identities::default();
    let groups: BTreeMap<String, Group> = [group("cab", vec!["b".into(), "a".into()], vec![])]
        .into_iter()
        .collect();
    let delegations = vec![Delegation {
        id: Uuid::now_v7(),
        from: "a".into(),
        to: "b".into(),
        group: None,
        starts_at: t(0),
        ends_at: t(10),
        reason: "r".into(),
        created_by: "x".into(),
        created_at: t(0),
        revoked_at: None,
    }];
    let approvals = vec![
        ("b".to_owned(), "b".to_owned(), None),
        ("b".to_owned(), "a".to_owned(), None),
    ];
    assert!(!justified(
        &["cab", "cab"],
        &approvals,
        &groups,
        &delegations,
        &|_| false,
        "z",
        &ids,
        &mut Vec::new()
    ));
    assert!(justified(
        &["cab"],
        &approvals,
        &groups,
        &delegations,
        &|_| false,
        "z",
        &ids,
        &mut Vec::new()
    ));
}
