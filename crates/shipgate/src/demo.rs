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
            .declare_service("default", services[0], Some(team), "demo", now)
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
    };
    store.create_token(&t, "shipgate-demo").await?;
    Ok(token)
}
