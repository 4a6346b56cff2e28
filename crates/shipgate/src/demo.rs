//! Demo data: a few teams, their services and environments, and 60 days of realistic
//! deployments, so that a newcomer sees real records at once.
use chrono::Duration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shipgate_domain::environment::Taxonomy;
use shipgate_domain::input::{Context, parse_create};
use shipgate_domain::requirements::Requirements;
use shipgate_domain::time::{Clock, SystemClock, format};
use shipgate_domain::{ApiToken, CreateDeployment, DeploymentFilter, Role};
use shipgate_store::Store;
use uuid::Uuid;

const TEAMS: &[(&str, &[&str])] = &[
    ("payments", &["checkout", "payments-api", "ledger"]),
    ("storefront", &["web", "catalog", "search"]),
    ("platform", &["auth", "gateway"]),
    ("data", &["events-pipeline"]),
];
const ENVS: &[&str] = &["dev", "staging", "prod-eu-west-1", "prod-us-east-1"];
const PEOPLE: &[&str] = &["alice", "bob", "chen", "dana", "emeka", "farah"];

fn hex(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| format!("{:x}", rng.random_range(0..16u8)))
        .collect()
}

/// Seeds an empty store; returns what it did.
pub async fn seed(store: &dyn Store) -> anyhow::Result<String> {
    let existing = store
        .list_deployments(
            &DeploymentFilter {
                tenant: "default".into(),
                ..Default::default()
            },
            None,
            1,
        )
        .await?;
    if !existing.items.is_empty() {
        return Ok("store already has deployments; nothing added".into());
    }
    let mut rng = StdRng::seed_from_u64(42);
    let now = SystemClock.now();
    let tax = Taxonomy::default();
    let req = Requirements::default();
    let mut cmds: Vec<CreateDeployment> = Vec::new();
    for (team, services) in TEAMS {
        store
            .declare_service("default", services[0], Some(team), &[], "demo", now)
            .await?;
        for (si, svc) in services.iter().enumerate() {
            let mut minor = 0u32;
            let mut day = 60 - (si as i64 * 3 % 7);
            let mut last_good = String::from("1.0.0");
            while day > 0 {
                minor += 1;
                let version = format!("1.{minor}.{}", rng.random_range(0..3));
                let commit = hex(&mut rng, 40);
                let digest = format!("sha256:{}", hex(&mut rng, 64));
                let kind = match rng.random_range(0..20) {
                    0 => "hotfix",
                    1 => "config",
                    2 => "schema_migration",
                    _ => "release",
                };
                let mut t = now - Duration::days(day)
                    + Duration::minutes(rng.random_range(8 * 60..17 * 60));
                let run = rng.random_range(10_000..99_999);
                let mut promoted = true;
                for env in ENVS {
                    if !promoted || t > now - Duration::hours(1) {
                        break;
                    }
                    let failed = rng.random_range(0..100) < 7;
                    let prod = env.starts_with("prod");
                    let human = !prod && rng.random_range(0..6) == 0;
                    let deployer = if human {
                        PEOPLE[rng.random_range(0..PEOPLE.len())].to_owned()
                    } else {
                        format!("ci-{team}")
                    };
                    let dur = rng.random_range(2..25);
                    let mut body = json!({
                        "service": svc, "team": team, "environment": env, "version": version,
                        "commit_sha": commit, "artifact": format!("registry.example.com/{team}/{svc}@{digest}"),
                        "repository": format!("https://git.example.com/{team}/{svc}"), "git_ref": format!("v{version}"),
                        "deployer": deployer, "deployer_type": if human { "human" } else { "pipeline" },
                        "trigger": if human { "manual" } else { "pipeline" }, "kind": kind,
                        "correlation_id": format!("pipeline-{run}"),
                        "started_at": format(t), "finished_at": format(t + Duration::minutes(dur)),
                        "status": if failed { "failed" } else { "succeeded" },
                        "labels": {"pipeline": format!("https://ci.example.com/{team}/{svc}/runs/{run}")},
                    });
                    if prod {
                        body["change_ref"] =
                            json!(format!("CHG{:07}", rng.random_range(1000..99999)));
                        body["targets"] = json!(["canary", "main"]);
                    }
                    let ctx = Context {
                        tenant: "default",
                        recorded_by: "demo",
                        now,
                        taxonomy: &tax,
                        requirements: &req,
                        declared_environment: &|_| None,
                        backfill: true,
                    };
                    let c = parse_create(&body, &ctx)
                        .map_err(|e| anyhow::anyhow!("demo record invalid: {e}"))?;
                    let id = c.deployment.id;
                    cmds.push(c);
                    if failed {
                        promoted = false;
                        if prod {
                            // Roll back to the last good version.
                            let mut rb = body.clone();
                            rb["version"] = json!(last_good);
                            rb["kind"] = json!("rollback");
                            rb["status"] = json!("succeeded");
                            rb["corrects"] = serde_json::Value::Null;
                            rb["started_at"] = json!(format(t + Duration::minutes(dur + 5)));
                            rb["finished_at"] = json!(format(t + Duration::minutes(dur + 9)));
                            rb["labels"]["rolls_back"] = json!(id.to_string());
                            let ctx = Context {
                                tenant: "default",
                                recorded_by: "demo",
                                now,
                                taxonomy: &tax,
                                requirements: &req,
                                declared_environment: &|_| None,
                                backfill: true,
                            };
                            cmds.push(
                                parse_create(&rb, &ctx)
                                    .map_err(|e| anyhow::anyhow!("demo record invalid: {e}"))?,
                            );
                        }
                    }
                    t += Duration::hours(rng.random_range(1..30));
                }
                if promoted {
                    last_good = version;
                }
                day -= rng.random_range(1..5);
            }
        }
    }
    // A deployment in flight right now, and one in another tenant.
    for (tenant, svc, env) in [
        ("default", "checkout", "prod-eu-west-1"),
        ("acme-labs", "lab-api", "staging"),
    ] {
        let body = json!({"service": svc, "environment": env, "version": "2.0.0-rc.1",
            "commit_sha": hex(&mut rng, 40), "artifact_digest": hex(&mut rng, 64), "deployer": "ci-payments",
            "change_ref": "CHG0100001", "targets": ["canary", "main"],
            "started_at": format(now - Duration::minutes(4))});
        let ctx = Context {
            tenant,
            recorded_by: "demo",
            now,
            taxonomy: &tax,
            requirements: &req,
            declared_environment: &|_| None,
            backfill: false,
        };
        cmds.push(
            parse_create(&body, &ctx).map_err(|e| anyhow::anyhow!("demo record invalid: {e}"))?,
        );
    }
    let n = cmds.len();
    let results = store.create_deployments(cmds, now, true).await?;
    if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
        anyhow::bail!("demo data refused: {e}");
    }
    let services: usize = TEAMS.iter().map(|(_, s)| s.len()).sum();
    Ok(format!(
        "{n} deployments of {services} services by {} teams in {} environments over 60 days",
        TEAMS.len(),
        ENVS.len()
    ))
}

/// A new admin token for a demo store that already had one.
pub async fn demo_token(store: &dyn Store) -> anyhow::Result<String> {
    let token = shipgate_server::auth::generate_token();
    let t = ApiToken {
        id: Uuid::now_v7(),
        tenant: "default".into(),
        subject: "demo-admin".into(),
        role: Role::Admin,
        root: true,
        token_hash: shipgate_server::auth::hash_token(&token),
        created_at: SystemClock.now(),
        expires_at: None,
        env_tier: None,
        created_by: Some("shipgate-demo".into()),
        last_used_at: None,
        confirmed_by: None,
    };
    store.create_token(&t, "shipgate-demo").await?;
    Ok(token)
}

/// The example policy shipped in the repository; the demo runs on it.
pub const EXAMPLE_POLICY: &str = include_str!("../../../examples/policy.toml");

/// People, approver groups, the example policy and change requests in every state: approved,
/// waiting on the CAB, rejected, an emergency bypass with its review due, a pre-approved standard
/// change.
pub async fn seed_approvals(store: &dyn Store) -> anyhow::Result<String> {
    use std::collections::BTreeMap;

    use shipgate_domain::approval::{self, DecisionRequest, Group, Person, PolicyVersion};
    use shipgate_domain::change::{DecisionKind, parse_change_spec};
    use shipgate_domain::policy::Policy;

    const T: &str = "default";
    if !store.list_changes(T, None, 1).await?.is_empty() {
        return Ok("change requests already present".into());
    }
    let now = SystemClock.now();
    let people = [
        ("alice", "Alice Martin"),
        ("bob", "Bob Okafor"),
        ("carol", "Carol Chen"),
        ("dave", "Dave Rossi"),
        ("erin", "Erin Walsh"),
        ("olga", "Olga Petrova"),
        ("ivan", "Ivan Novak"),
        ("ines", "Ines Duarte"),
    ];
    for (subject, name) in people {
        let p = Person {
            subject: subject.into(),
            name: Some(name.into()),
            email: Some(format!("{subject}@example.com")),
            created_at: now,
        };
        store.put_person(T, &p, "demo").await?;
    }
    let groups = [
        ("cab", vec!["carol", "dave", "erin"], vec![], vec![]),
        ("service-owners", vec!["olga", "bob"], vec!["erin"], vec![]),
        (
            "cio-eu",
            vec!["ines"],
            vec![],
            vec!["eu-west-1", "eu-central-1"],
        ),
        ("incident-commanders", vec!["ivan"], vec!["dave"], vec![]),
        ("oncall", vec!["alice", "bob"], vec![], vec![]),
    ];
    let mut gmap = BTreeMap::new();
    for (name, members, backups, regions) in groups {
        let g = Group {
            name: name.into(),
            description: None,
            members: members.iter().map(|s| s.to_string()).collect(),
            backups: backups.iter().map(|s: &&str| s.to_string()).collect(),
            department: None,
            regions: regions.iter().map(|s: &&str| s.to_string()).collect(),
            compliance: vec![],
        };
        store.put_group(T, &g, "demo", now).await?;
        gmap.insert(g.name.clone(), g);
    }
    let hash = shipgate_domain::audit::sha256_hex(EXAMPLE_POLICY.as_bytes());
    let (rec, _) = store
        .push_policy(T, EXAMPLE_POLICY, &hash, "demo", now)
        .await?;
    let pv = PolicyVersion {
        version: rec.version,
        hash: rec.hash,
        policy: Policy::parse(EXAMPLE_POLICY)
            .map_err(|e| anyhow::anyhow!("example policy: {e}"))?,
    };
    let tax = Taxonomy::default();
    let resolve = |l: &str| {
        tax.resolve(l, |_| None)
            .map_err(|_| format!("'{l}' unknown"))
    };
    let digest = |n: u32| format!("sha256:{:064x}", 0xd0d0_0000u64 + u64::from(n));
    let changes = [
        (
            json!({"type": "normal", "title": "checkout 2.4.0: one-click payments", "services": ["checkout"], "environments": ["prod-us-east-1"],
                "artifact_digests": [digest(1)], "justification": "Q4 conversion goal", "impact": "checkout flow only",
                "rollback_plan": "redeploy 2.3.9 (digest pinned)", "ticket": "CHG-1042", "risk": "medium", "team": "payments"}),
            "alice",
            vec![
                ("carol", DecisionKind::Approve),
                ("dave", DecisionKind::Approve),
                ("olga", DecisionKind::Approve),
            ],
        ),
        (
            json!({"type": "normal", "title": "ledger 5.0.0: schema migration", "services": ["ledger"], "environments": ["prod-us-east-1"],
                "artifact_digests": [digest(2)], "justification": "double-entry audit columns", "impact": "ledger writes pause ~30s",
                "rollback_plan": "down-migration tested in staging", "ticket": "CHG-1043", "risk": "high", "team": "payments",
                "artifact_flags": ["schema_change"]}),
            "bob",
            vec![("carol", DecisionKind::Approve)],
        ),
        (
            json!({"type": "normal", "title": "search 3.1.0 with new ranking", "services": ["search"], "environments": ["prod-us-east-1"],
                "artifact_digests": [digest(3)], "justification": "relevance", "impact": "all search traffic",
                "rollback_plan": "feature flag off", "ticket": "CHG-1044", "risk": "medium", "team": "discovery"}),
            "alice",
            vec![("dave", DecisionKind::Reject)],
        ),
        (
            json!({"type": "emergency", "title": "hotfix: auth token bypass", "services": ["auth"], "environments": ["prod-us-east-1"],
                "artifact_digests": [digest(4)], "incident_id": "INC-2041", "exploit_ref": "CVE-2026-1234",
                "rollback_plan": "revert to 4.2.1", "risk": "critical", "team": "identity"}),
            "alice",
            vec![
                ("ivan", DecisionKind::AckIncidentCommander),
                ("olga", DecisionKind::AckSystemOwner),
            ],
        ),
        (
            json!({"type": "standard", "title": "rotate TLS certificates (standard change)", "services": ["edge"], "environments": ["staging"],
                "artifact_digests": [digest(5)], "risk": "low", "team": "platform"}),
            "bob",
            vec![],
        ),
    ];
    let n = changes.len();
    for (body, requester, decisions) in changes {
        let spec = parse_change_spec(&body, &resolve)
            .map_err(|e| anyhow::anyhow!("demo change invalid: {e}"))?;
        let (pvc, gm) = (pv.clone(), gmap.clone());
        let c = store
            .create_change(
                T,
                requester,
                Box::new(move |n| {
                    approval::open_change(
                        Uuid::now_v7(),
                        format!("CR-{n}"),
                        T,
                        requester,
                        spec,
                        &pvc,
                        &gm,
                        now,
                    )
                    .map_err(shipgate_store::StoreError::Invalid)
                }),
                now,
            )
            .await?;
        for (who, kind) in decisions {
            let (pvc, gm) = (pv.clone(), gmap.clone());
            store
                .update_change(
                    T,
                    &c.key,
                    who,
                    Box::new(move |c| {
                        let req = DecisionRequest {
                            kind,
                            actor: who.into(),
                            on_behalf_of: None,
                            delegations: Vec::new(),
                            group: None,
                            comment: Some("demo".into()),
                            revision: Some(c.revision),
                        };
                        shipgate_server::service::gate::decision_mutation(
                            c,
                            &pvc,
                            &gm,
                            &Default::default(),
                            req,
                            now,
                        )
                    }),
                    now,
                )
                .await?;
        }
    }
    Ok(format!(
        "{} people, {} approver groups, policy version {}, {n} change requests",
        people.len(),
        gmap.len(),
        rec.version
    ))
}
