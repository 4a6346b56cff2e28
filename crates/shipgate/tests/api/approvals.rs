//! Approvals and gates end to end, on SQLite and on the real PostgreSQL: policy push, groups,
//! a normal change that needs two groups, separation of duties, evidence, the gate opening for
//! a waiting pipeline, expiry, rejection and resubmission, the emergency path, and the gate
//! released across two server processes.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const POLICY: &str = r#"
[defaults]
validity = "24h"
sla = "4h"

[[rule]]
name = "production-peer-review"
approvals = [{ group = "cab", quorum = 2 }, { group = "owners" }]
evidence = ["security_scan"]
required_fields = ["rollback_plan", "impact"]
validity = "4s"
[rule.match]
env_tier = ["production"]
change_type = ["normal"]

[[rule]]
name = "sandbox"
[rule.match]
env_tier = ["development"]

[[rule]]
name = "standard-staging"
auto_approve = true
[rule.match]
env_tier = ["staging"]
change_type = ["standard"]

[emergency]
group = "oncall"
incident_commanders = "ic"
system_owners = "owners"
review_within = "2s"
monthly_threshold = 1
"#;

pub struct People {
    pub alice: String,
    /// Alice also holds an approver token: separation of duties must still stop her.
    pub alice_approver: String,
    pub carol: String,
    pub dave: String,
    pub erin: String,
    pub olga: String,
    pub ivan: String,
}

async fn person(app: &TestApp, subject: &str, role: &str) -> String {
    let r = app
        .post(
            "/api/v1/people",
            json!({"subject": subject, "name": subject, "token_role": role}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

async fn put(app: &TestApp, path: &str, body: Value) -> Resp {
    app.req(
        reqwest::Method::PUT,
        path,
        Some(&app.token),
        Some(body.to_string().into()),
        &[("content-type", "application/json")],
    )
    .await
}

pub async fn push_policy(app: &TestApp, text: &str) -> Resp {
    app.req(
        reqwest::Method::PUT,
        "/api/v1/policy",
        Some(&app.token),
        Some(text.to_owned().into()),
        &[("content-type", "application/toml")],
    )
    .await
}

pub async fn setup(app: &TestApp) -> People {
    let p = People {
        alice: person(app, "alice", "deployer").await,
        alice_approver: app.token_for("alice", "approver", None).await,
        carol: person(app, "carol", "approver").await,
        dave: person(app, "dave", "approver").await,
        erin: person(app, "erin", "approver").await,
        olga: person(app, "olga", "approver").await,
        ivan: person(app, "ivan", "incident_commander").await,
    };
    for (name, members) in [
        ("cab", vec!["carol", "dave", "erin"]),
        ("owners", vec!["olga"]),
        ("ic", vec!["ivan"]),
        ("oncall", vec!["alice"]),
    ] {
        let r = put(
            app,
            &format!("/api/v1/groups/{name}"),
            json!({"members": members}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = push_policy(app, POLICY).await;
    assert_eq!(r.status, 201, "{}", r.body);
    p
}

fn change_body(env: &str) -> Value {
    json!({
        "type": "normal", "title": "checkout 1.4.2", "services": ["checkout"], "environments": [env],
        "artifact_digests": [digest(42)], "justification": "new payment flow",
        "impact": "checkout only", "rollback_plan": "redeploy 1.4.1", "ticket": "JIRA-7",
        "risk": "high", "compliance": ["pci"], "team": "payments"
    })
}

/// A new token for `subject` and its id. Its first use is recorded (`last_used_at` in the
/// access review), which tells a test that a process it started has reached the server.
async fn fresh_token(app: &TestApp, subject: &str, role: &str) -> (String, String) {
    let r = app
        .post("/api/v1/tokens", json!({"subject": subject, "role": role}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["token"].as_str().unwrap().to_owned(),
    )
}

/// Waits until the token `id` has been used against the server.
async fn until_used(app: &TestApp, id: &str) {
    wait_until(
        "the token's first use is on record",
        Duration::from_secs(20),
        async || {
            let r = app.get("/api/v1/access-review").await;
            assert_eq!(r.status, 200, "{}", r.body);
            let used = r
                .body
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["token_id"] == id && e["last_used_at"].is_string());
            if used {
                Ok(())
            } else {
                Err(r.body.to_string())
            }
        },
    )
    .await;
}

/// Asks the gate as `token`; names the change's first artifact digest unless `extra` names one
/// (a digest-scoped change is never allowed for an unnamed artifact).
async fn gate(app: &TestApp, token: &str, change: &str, env: &str, extra: &str) -> Value {
    let mut extra = extra.to_owned();
    if !extra.contains("digest=") {
        let c = app.get(&format!("/api/v1/changes/{change}")).await;
        if let Some(d) = c.body["artifact_digests"][0].as_str() {
            extra.push_str(&format!("&digest={d}"));
        }
    }
    let r = app
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/gate?change={change}&environment={env}{extra}"),
            Some(token),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn decide(app: &TestApp, token: &str, change: &str, decision: &str) -> Resp {
    app.decide_as(
        change,
        json!({"decision": decision, "comment": format!("{decision} from test")}),
        token,
    )
    .await
}

fn codes(d: &Value) -> Vec<String> {
    d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The normal-change scenario of the issue, on any store.
async fn normal_change_scenario(app: TestApp) {
    let p = setup(&app).await;

    // A malformed policy is refused with its line and column; the old one stays in force.
    let r = push_policy(&app, "[[rule]]\nname = \"x\"\napprovals = [{ group = }]\n").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body["errors"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("policy:3:"),
        "{}",
        r.body
    );
    let r = push_policy(
        &app,
        "[[rule]]\nname = \"x\"\napprovals = [{ group = \"nobody\" }]\n",
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["code"], "unknown_group");
    let cur = app.get("/api/v1/policy").await;
    assert_eq!(cur.body["version"], 1);

    // Mandatory fields come from the policy: all missing ones in one problem.
    let mut body = change_body("prod-eu-west-1");
    body.as_object_mut().unwrap().remove("rollback_plan");
    body.as_object_mut().unwrap().remove("impact");
    let r = app.post_as("/api/v1/changes", body, &p.alice, &[]).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["impact", "rollback_plan"]);

    let r = app
        .post_as(
            "/api/v1/changes",
            change_body("prod-eu-west-1"),
            &p.alice,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cr = r.body["key"].as_str().unwrap().to_owned();
    let env = "production-eu-west-1";

    // The requester cannot approve; the refusal is audited.
    let r = decide(&app, &p.alice_approver, &cr, "approve").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["code"], "self_approval");
    // Not an approver at all.
    let r = decide(&app, &p.ivan, &cr, "approve").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["code"], "not_an_approver");
    // Unknown change.
    assert_eq!(
        decide(&app, &p.carol, "CR-999", "approve").await.status,
        404
    );

    let d = gate(&app, &p.alice, &cr, "prod-eu-west-1", "").await;
    assert_eq!(d["state"], "pending");
    assert!(codes(&d).contains(&"missing_approvals".to_owned()));
    assert!(codes(&d).contains(&"missing_evidence".to_owned()));

    // A pipeline waits on the gate through the CLI, with a token of its own: once that token's
    // first use is on record, the CLI's long-poll is in the server, and the approvals below are
    // what release it.
    let (cli_token_id, cli_token) = fresh_token(&app, "alice", "deployer").await;
    let wait = {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
        c.args([
            "gate",
            "wait",
            "--change",
            &cr,
            "--env",
            "prod-eu-west-1",
            "--digest",
            &digest(42),
            "--timeout",
            "60s",
        ])
        .env("SHIPGATE_URL", &app.url)
        .env("SHIPGATE_TOKEN", &cli_token);
        c.spawn().unwrap()
    };
    until_used(&app, &cli_token_id).await;

    assert_eq!(decide(&app, &p.carol, &cr, "approve").await.status, 200);
    assert_eq!(
        decide(&app, &p.carol, &cr, "approve").await.body["code"],
        "already_decided"
    );
    // A racing double approval by one person: exactly one lands.
    let (a, b) = tokio::join!(
        decide(&app, &p.dave, &cr, "approve"),
        decide(&app, &p.dave, &cr, "approve")
    );
    let mut st = [a.status, b.status];
    st.sort();
    assert_eq!(st, [200, 409], "{} {}", a.body, b.body);
    let r = app
        .post_as(
            &format!("/api/v1/changes/{cr}/evidence"),
            json!({"kind": "security_scan", "digest": digest(7), "name": "trivy.json", "metadata": {"critical": "0"}}),
            &p.alice,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let d = gate(&app, &p.alice, &cr, "prod-eu-west-1", "").await;
    assert_eq!(d["state"], "pending", "owners still missing: {d}");
    let approved_at = Instant::now();
    let r = decide(&app, &p.olga, &cr, "approve").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "approved");
    let out = tokio::time::timeout(Duration::from_secs(20), wait.wait_with_output())
        .await
        .expect("gate wait returns")
        .unwrap();
    let unblocked = approved_at.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        unblocked < Duration::from_secs(3),
        "unblocked after {unblocked:?}"
    );

    let d = gate(
        &app,
        &p.alice,
        &cr,
        "prod-eu-west-1",
        &format!("&digest={}", digest(42)),
    )
    .await;
    assert_eq!(d["state"], "allowed", "{d}");
    assert_eq!(d["environment"], env);
    assert_eq!(
        d["approvals"][0]["approved_by"].as_array().unwrap().len(),
        2
    );
    // Another digest is not what was approved.
    let d = gate(
        &app,
        &p.alice,
        &cr,
        "prod-eu-west-1",
        &format!("&digest={}", digest(43)),
    )
    .await;
    assert_eq!(d["state"], "expired");
    assert_eq!(codes(&d), vec!["digest_changed"]);
    // The deployer is who asks, never a name the caller chooses: naming someone else is refused.
    let r = app
        .req(
            reqwest::Method::GET,
            &format!(
                "/api/v1/gate?change={cr}&environment=prod-eu-west-1&digest={}&deployer=olga",
                digest(42)
            ),
            Some(&p.alice),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "deployer");
    // olga deploying is fine (carol and dave approved too), and a gate call without the
    // digest of a digest-scoped change is denied.
    let d = gate(&app, &p.olga, &cr, "prod-eu-west-1", "").await;
    assert_eq!(d["state"], "allowed", "{d}");
    let d = app
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/gate?change={cr}&environment=prod-eu-west-1"),
            Some(&p.alice),
            None,
            &[],
        )
        .await
        .body;
    assert_eq!(d["state"], "denied", "{d}");
    assert_eq!(codes(&d), vec!["digest_required"]);

    // A deployment recorded against the approved change is not flagged.
    let dep = app
        .post_as(
            "/api/v1/deployments",
            json!({"service": "checkout", "environment": "prod-eu-west-1", "version": "1.4.2", "commit_sha": sha(1),
                   "artifact": format!("registry/checkout@{}", digest(42)), "deployer": "alice", "change_ref": cr}),
            &p.alice,
            &[],
        )
        .await;
    assert_eq!(dep.status, 201, "{}", dep.body);
    assert_eq!(dep.body["approval"]["flagged"], false, "{}", dep.body);

    // The approval expires (validity 4s) and the gate closes: the server's clock moves on.
    app.clock.advance(Duration::from_secs(5));
    let d = gate(&app, &p.alice, &cr, "prod-eu-west-1", "").await;
    assert_eq!(d["state"], "expired", "{d}");
    assert_eq!(codes(&d)[0], "approval_expired");
    let out = app
        .cli(
            &[
                "gate",
                "check",
                "--change",
                &cr,
                "--env",
                "prod-eu-west-1",
                "--digest",
                &digest(42),
            ],
            &[("SHIPGATE_TOKEN", &p.alice)],
        )
        .await;
    assert_eq!(out.status.code(), Some(9), "expired gate exits 9");
    // Approving after expiry does not revive the grant.
    let r = decide(&app, &p.erin, &cr, "approve").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("approval_expired"))
    );

    // Rejection is final until resubmitted, and rework is counted.
    let r = app
        .post_as(
            "/api/v1/changes",
            change_body("prod-eu-west-1"),
            &p.alice,
            &[],
        )
        .await;
    let cr2 = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(decide(&app, &p.dave, &cr2, "reject").await.status, 200);
    assert_eq!(
        decide(&app, &p.carol, &cr2, "approve").await.body["code"],
        "change_closed"
    );
    let d = gate(&app, &p.alice, &cr2, "prod-eu-west-1", "").await;
    assert_eq!(d["state"], "denied");
    assert_eq!(codes(&d), vec!["rejected"]);
    // A deployment recorded against the rejected change is flagged (and still recorded).
    let dep = app
        .post_as(
            "/api/v1/deployments",
            json!({"service": "checkout", "environment": "prod-eu-west-1", "version": "1.4.3", "commit_sha": sha(2),
                   "artifact": format!("registry/checkout@{}", digest(42)), "deployer": "alice", "change_ref": cr2}),
            &p.alice,
            &[],
        )
        .await;
    assert_eq!(dep.status, 201);
    assert_eq!(dep.body["approval"]["flagged"], true);
    assert_eq!(dep.body["approval"]["state"], "denied");
    let r = app
        .post_as(
            &format!("/api/v1/changes/{cr2}/resubmit"),
            change_body("prod-eu-west-1"),
            &p.alice,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["revision"], 2);
    assert_eq!(r.body["rework_count"], 1);
    assert_eq!(r.body["status"], "pending");
    // An approval given on the revision the approver read (1) lands after the resubmission:
    // refused, never counted for what they did not see. A decision must name its revision.
    for (body, status, code) in [
        (
            json!({"decision": "approve", "revision": 1}),
            409,
            "stale_revision",
        ),
        (json!({"decision": "approve"}), 422, "validation_failed"),
    ] {
        let r = app
            .post_as(
                &format!("/api/v1/changes/{cr2}/decisions"),
                body,
                &p.carol,
                &[],
            )
            .await;
        assert_eq!(
            (r.status, r.body["code"].as_str()),
            (status, Some(code)),
            "{}",
            r.body
        );
    }
    assert_eq!(decide(&app, &p.carol, &cr2, "approve").await.status, 200);

    // Explain and the queue.
    let e = app.get(&format!("/api/v1/changes/{cr2}/explain")).await;
    assert_eq!(e.status, 200);
    assert_eq!(
        e.body["environments"][0]["decision"]["rules"][0],
        "production-peer-review"
    );
    let q = app
        .req(
            reqwest::Method::GET,
            "/api/v1/approvals",
            Some(&p.erin),
            None,
            &[],
        )
        .await;
    assert_eq!(
        q.body.as_array().unwrap().len(),
        1,
        "erin can still approve {cr2}: {}",
        q.body
    );
    let q = app
        .req(
            reqwest::Method::GET,
            "/api/v1/approvals",
            Some(&p.carol),
            None,
            &[],
        )
        .await;
    assert!(
        q.body.as_array().unwrap().is_empty(),
        "carol already approved"
    );

    // The timeline rebuilds the decisions, the refusal and the gate calls.
    let t = app.get(&format!("/api/v1/changes/{cr}/timeline")).await;
    let whats: Vec<String> = t
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{}:{}",
                i["source"].as_str().unwrap(),
                i["what"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "audit:change.submitted",
        "audit:change.decision_refused",
        "audit:change.approve",
        "audit:change.approved",
        "gate_call:pending",
        "gate_call:allowed",
        "gate_call:expired",
        "deployment:recorded",
    ] {
        assert!(
            whats.contains(&want.to_owned()),
            "missing {want} in {whats:?}"
        );
    }

    // Policy history, and a new version voids the approvals given under the old one.
    let r = push_policy(
        &app,
        &POLICY.replace("validity = \"4s\"", "validity = \"1h\""),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["version"], 2);
    let h = app.get("/api/v1/policy/history").await;
    assert_eq!(h.body.as_array().unwrap().len(), 2);
    app.verify_ok().await;
    app.stop().await;
}

#[tokio::test]
async fn normal_change_on_sqlite() {
    normal_change_scenario(TestApp::spawn().await).await;
}

#[tokio::test]
async fn normal_change_on_postgres() {
    let Some(url) = fresh_pg().await else { return };
    normal_change_scenario(TestApp::spawn_on(url, tempfile::tempdir().unwrap(), |_| {}).await)
        .await;
}

async fn emergency_scenario(app: TestApp) {
    let p = setup(&app).await;
    let mut body = change_body("production");
    body["type"] = json!("emergency");
    // Objective criteria: an incident id or exploit reference.
    let r = app
        .post_as("/api/v1/changes", body.clone(), &p.alice, &[])
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "incident_id");
    body["incident_id"] = json!("INC-4711");
    // Only the emergency group may use the path.
    let dave_deployer = app.token_for("dave", "deployer", None).await;
    let r = app
        .post_as("/api/v1/changes", body.clone(), &dave_deployer, &[])
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["code"], "not_emergency_privileged");

    let r = app
        .post_as("/api/v1/changes", body.clone(), &p.alice, &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cr = r.body["key"].as_str().unwrap().to_owned();
    let d = gate(&app, &p.alice, &cr, "production", "").await;
    assert_eq!(d["state"], "pending");
    assert_eq!(codes(&d), vec!["awaiting_acknowledgement"]);
    // The requester never acknowledges their own emergency, even as an incident commander.
    let r = put(
        &app,
        "/api/v1/groups/ic",
        json!({"members": ["ivan", "alice"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = decide(&app, &p.alice_approver, &cr, "ack_incident_commander").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["code"], "self_approval");
    // Approvals are not the emergency path; one acknowledgement is not enough.
    assert_eq!(
        decide(&app, &p.carol, &cr, "approve").await.body["code"],
        "wrong_path"
    );
    assert_eq!(
        decide(&app, &p.ivan, &cr, "ack_incident_commander")
            .await
            .status,
        200
    );
    assert_eq!(
        decide(&app, &p.ivan, &cr, "ack_system_owner").await.body["code"],
        "not_an_approver"
    );
    assert_eq!(
        gate(&app, &p.alice, &cr, "production", "").await["state"],
        "pending"
    );
    let r = decide(&app, &p.olga, &cr, "ack_system_owner").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "bypassed");
    assert!(r.body["review_due_at"].is_string());
    assert_eq!(
        gate(&app, &p.alice, &cr, "production", "").await["state"],
        "allowed"
    );
    // The bypass and its audit entry are one: the audit trail has it.
    let t = app.get(&format!("/api/v1/changes/{cr}/timeline")).await;
    let bypass = t
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["what"] == "change.bypassed")
        .expect("bypass audited")
        .clone();
    assert_eq!(bypass["source"], "audit");
    let c = app.get(&format!("/api/v1/changes/{cr}")).await;
    assert_eq!(c.body["incident_id"], "INC-4711");

    // A second emergency this month exceeds the threshold (1): a root-cause review opens.
    let r = app
        .post_as("/api/v1/changes", body.clone(), &p.alice, &[])
        .await;
    assert_eq!(r.status, 201);
    let rv = app.get("/api/v1/reviews").await;
    let rc = rv.body["root_cause_reviews"].as_array().unwrap();
    assert_eq!(rc.len(), 1, "{}", rv.body);
    assert_eq!(rc[0]["team"], "payments");
    assert_eq!(rc[0]["changes"].as_array().unwrap().len(), 2);

    // The post-deployment review is overdue after 2s and gets escalated by the sweeper (which
    // looks every second, at the server's time).
    app.clock.advance(Duration::from_secs(3));
    let mine = wait_until(
        "the overdue review is escalated",
        Duration::from_secs(10),
        async || {
            let rv = app.get("/api/v1/reviews").await;
            let mine = rv.body["pending_reviews"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["change"] == cr.as_str())
                .cloned()
                .unwrap();
            if mine["escalated"] == true {
                Ok(mine)
            } else {
                Err(mine.to_string())
            }
        },
    )
    .await;
    assert_eq!(mine["overdue"], true);
    // The requester cannot review their own emergency; someone else can.
    assert_eq!(
        decide(&app, &p.alice_approver, &cr, "review").await.body["code"],
        "self_approval"
    );
    let r = decide(&app, &p.dave, &cr, "review").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["reviewed_at"].is_string());
    let t = app.get(&format!("/api/v1/changes/{cr}/timeline")).await;
    assert!(
        t.body
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["what"] == "change.review_overdue")
    );
    app.verify_ok().await;
    app.stop().await;
}

#[tokio::test]
async fn emergency_path_on_sqlite() {
    emergency_scenario(TestApp::spawn_with(|s| s.review_sweep_secs = 1).await).await;
}

#[tokio::test]
async fn emergency_path_on_postgres() {
    let Some(url) = fresh_pg().await else { return };
    emergency_scenario(
        TestApp::spawn_on(url, tempfile::tempdir().unwrap(), |s| {
            s.review_sweep_secs = 1
        })
        .await,
    )
    .await;
}

#[tokio::test]
async fn standard_changes_are_pre_approved_and_sandboxes_pass() {
    let app = TestApp::spawn().await;
    let p = setup(&app).await;
    let mut body = change_body("staging");
    body["type"] = json!("standard");
    let r = app.post_as("/api/v1/changes", body, &p.alice, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "approved");
    let cr = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        gate(&app, &p.alice, &cr, "staging", "").await["state"],
        "allowed"
    );
    let t = app.get(&format!("/api/v1/changes/{cr}/timeline")).await;
    assert!(
        t.body
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["what"] == "change.approved" && i["actor"] == "policy"),
        "pre-approval recorded"
    );
    // A standard change the policy does not pre-approve is refused.
    let mut body = change_body("production");
    body["type"] = json!("standard");
    let r = app.post_as("/api/v1/changes", body, &p.alice, &[]).await;
    assert_eq!(r.body["errors"][0]["code"], "not_pre_approved");
    // Sandbox: no review.
    let r = app
        .post_as("/api/v1/changes", change_body("dev"), &p.alice, &[])
        .await;
    let cr = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        gate(&app, &p.alice, &cr, "dev", "").await["state"],
        "allowed"
    );
    // An environment no rule covers: the gate stays closed.
    let r = app
        .post_as("/api/v1/changes", change_body("test"), &p.alice, &[])
        .await;
    let cr = r.body["key"].as_str().unwrap().to_owned();
    let d = gate(&app, &p.alice, &cr, "test", "").await;
    assert_eq!(d["state"], "denied");
    assert_eq!(codes(&d), vec!["no_policy_rule"]);
    // Unknown change: denied, never pending; bad parameters are named.
    let d = gate(&app, &p.alice, "CR-404", "test", "").await;
    assert_eq!(d["state"], "denied");
    let r = app.get("/api/v1/gate?environment=prod&wait=forever").await;
    assert_eq!(r.status, 422);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"change") && fields.contains(&"wait"),
        "{fields:?}"
    );
    app.stop().await;
}

/// A gate fails closed when the store is gone: `error`, never `allowed` or `pending`.
#[tokio::test]
async fn gate_fails_closed_when_the_store_is_unreachable() {
    let Some(url) = fresh_pg().await else { return };
    let app = TestApp::spawn_on(url.clone(), tempfile::tempdir().unwrap(), |_| {}).await;
    let p = setup(&app).await;
    let mut body = change_body("staging");
    body["type"] = json!("standard");
    let r = app.post_as("/api/v1/changes", body, &p.alice, &[]).await;
    let cr = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        gate(&app, &p.alice, &cr, "staging", "").await["state"],
        "allowed"
    );
    // Take the database away under the running server.
    let db = url.rsplit_once('/').unwrap().1.to_owned();
    let admin = sqlx::PgPool::connect(&pg_url()).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    app.clock.advance(Duration::from_secs(3)); // past the policy cache
    let d = gate(&app, &p.alice, &cr, "staging", "").await;
    assert_eq!(d["state"], "error", "{d}");
    let out = app
        .cli(
            &[
                "gate",
                "check",
                "--change",
                &cr,
                "--env",
                "staging",
                "--digest",
                &digest(42),
            ],
            &[("SHIPGATE_TOKEN", &p.alice)],
        )
        .await;
    assert_ne!(out.status.code(), Some(0));
}

/// A TCP relay to PostgreSQL that can be turned into a black hole: connections stay open and
/// nothing comes back, as when the database host stops answering.
struct BlackHole {
    port: u16,
    dark: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BlackHole {
    async fn start(upstream: std::net::SocketAddr) -> BlackHole {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dark = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = dark.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let d = d.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let d2 = d.clone();
                    let up = tokio::spawn(async move {
                        let mut buf = vec![0u8; 16384];
                        while let Ok(n) = ri.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                            if !d2.load(Ordering::SeqCst) {
                                let _ = wo.write_all(&buf[..n]).await;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = ro.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if !d.load(Ordering::SeqCst) {
                            let _ = wi.write_all(&buf[..n]).await;
                        }
                    }
                    let _ = up.await;
                });
            }
        });
        BlackHole { port, dark }
    }

    fn go_dark(&self) {
        self.dark.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A gate call answers within its wait plus a second whatever the store does: with the
/// database silent (not refusing, just never answering), the answer is `error`, on time.
#[tokio::test]
async fn gate_answers_on_time_when_the_store_stops_answering() {
    let Some(url) = fresh_pg().await else { return };
    let upstream: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let hole = BlackHole::start(upstream).await;
    let via = url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", hole.port));
    assert_ne!(via, url, "the test database URL names 127.0.0.1:5432");
    let app = TestApp::spawn_on(via, tempfile::tempdir().unwrap(), |_| {}).await;
    let p = setup(&app).await;
    let mut body = change_body("staging");
    body["type"] = json!("standard");
    let r = app.post_as("/api/v1/changes", body, &p.alice, &[]).await;
    let cr = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        gate(&app, &p.alice, &cr, "staging", "").await["state"],
        "allowed"
    );
    hole.go_dark();
    app.clock.advance(Duration::from_secs(3)); // past the policy cache
    for (wait, extra) in [(0u64, String::new()), (2, "&wait=2s".to_owned())] {
        let t = Instant::now();
        let r = app
            .req(
                reqwest::Method::GET,
                &format!(
                    "/api/v1/gate?change={cr}&environment=staging&digest={}{extra}",
                    digest(42)
                ),
                Some(&p.alice),
                None,
                &[],
            )
            .await;
        let took = t.elapsed();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["state"], "error", "{}", r.body);
        assert!(
            took < Duration::from_secs(wait) + Duration::from_millis(1000),
            "wait {wait}s answered after {took:?}"
        );
    }
}

/// With PostgreSQL, a pipeline waiting on instance A is released when the approval lands on
/// instance B: two server processes.
#[tokio::test]
async fn approval_on_one_instance_releases_a_gate_on_another() {
    let Some(url) = fresh_pg().await else { return };
    let a = ServerProcess::start(&url).await;
    let b = ServerProcess::start(&url).await;
    let app_a = a.client().await;
    let p = setup(&app_a).await;
    let mut body = change_body("staging");
    body["type"] = json!("normal");
    // Staging normal changes: no rule yet, so add one needing the owners.
    let r = push_policy(&app_a, &format!("{POLICY}\n[[rule]]\nname = \"staging\"\napprovals = [{{ group = \"owners\" }}]\n[rule.match]\nenv_tier = [\"staging\"]\nchange_type = [\"normal\"]\n")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app_a.post_as("/api/v1/changes", body, &p.alice, &[]).await;
    let cr = r.body["key"].as_str().unwrap().to_owned();
    // The CLI's own token: its first use on record means the long-poll is on instance A.
    let (cli_token_id, cli_token) = fresh_token(&app_a, "alice", "deployer").await;
    let mut wait = tokio::process::Command::new(env!("CARGO_BIN_EXE_shipgate"));
    wait.args([
        "gate",
        "wait",
        "--change",
        &cr,
        "--env",
        "staging",
        "--digest",
        &digest(42),
        "--timeout",
        "30s",
    ])
    .env("SHIPGATE_URL", &a.url)
    .env("SHIPGATE_TOKEN", &cli_token);
    let child = wait.spawn().unwrap();
    until_used(&app_a, &cli_token_id).await;
    let app_b = b.client().await;
    let t = Instant::now();
    let r = decide(&app_b, &p.olga, &cr, "approve").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("released")
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "released after {:?}",
        t.elapsed()
    );
}

/// A stalled approval escalates to the policy's resolution authority once its SLA passes.
#[tokio::test]
async fn stalled_approvals_escalate_after_the_sla() {
    let app = TestApp::spawn_with(|s| s.review_sweep_secs = 1).await;
    let p = setup(&app).await;
    let policy = format!(
        "{POLICY}\n[[rule]]\nname = \"staging\"\napprovals = [{{ group = \"owners\" }}]\nsla = \"1s\"\nescalate_to = \"cab\"\n[rule.match]\nenv_tier = [\"staging\"]\nchange_type = [\"normal\"]\n"
    );
    assert_eq!(push_policy(&app, &policy).await.status, 201);
    let r = app
        .post_as("/api/v1/changes", change_body("staging"), &p.alice, &[])
        .await;
    let cr = r.body["key"].as_str().unwrap().to_owned();
    // Before the SLA passes, the CAB is not an approver of this change.
    assert_eq!(
        decide(&app, &p.carol, &cr, "approve").await.body["code"],
        "not_an_approver"
    );
    // The SLA (1s) passes at the server's time; the sweeper (every second) escalates.
    app.clock.advance(Duration::from_secs(2));
    wait_until(
        "the stalled change is escalated",
        Duration::from_secs(10),
        async || {
            let c = app.get(&format!("/api/v1/changes/{cr}")).await;
            if c.body["escalated_at"].is_string() {
                Ok(())
            } else {
                Err(c.body.to_string())
            }
        },
    )
    .await;
    let r = decide(&app, &p.carol, &cr, "approve").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "approved");
    assert_eq!(
        gate(&app, &p.alice, &cr, "staging", "").await["state"],
        "allowed"
    );
    let t = app.get(&format!("/api/v1/changes/{cr}/timeline")).await;
    assert!(
        t.body
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["what"] == "change.escalated")
    );
    app.stop().await;
}

/// Bad input on the approval endpoints: one problem naming every field, never a 500, nothing
/// written.
#[tokio::test]
async fn bad_input_on_changes_and_decisions() {
    let app = TestApp::spawn().await;
    let p = setup(&app).await;
    let head = app.store.audit_head().await.unwrap();
    let r = app
        .post_as(
            "/api/v1/changes",
            json!({"type": "risky", "title": 7, "services": "checkout", "environments": ["prod", "prod"],
                   "artifact_digests": ["sha256:nothex"], "window_start": "tomorrow", "risk": "extreme",
                   "artifact_flags": ["spicy"], "colour": "blue"}),
            &p.alice,
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let mut fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    for f in [
        "type",
        "title",
        "services",
        "environments[1]",
        "artifact_digests[0]",
        "window_start",
        "risk",
        "artifact_flags[0]",
        "colour",
    ] {
        assert!(fields.contains(&f), "{f} not named in {fields:?}");
    }
    let r = app
        .req(
            reqwest::Method::POST,
            "/api/v1/changes",
            Some(&p.alice),
            Some("{not json".into()),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (400, Some("malformed_json"))
    );
    let r = app
        .req(
            reqwest::Method::POST,
            "/api/v1/changes",
            Some(&p.alice),
            Some(vec![b'x'; 2 * 1024 * 1024].into()),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 413);
    let r = app
        .post_as(
            "/api/v1/changes/CR-1/decisions",
            json!({"decision": "maybe", "extra": 1, "revision": 1}),
            &p.carol,
            &[],
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2);
    let r = app
        .get("/api/v1/gate?change=CR-1&environment=prod&digest=md5:abc&bogus=1")
        .await;
    assert_eq!(r.status, 422);
    let r = app
        .req(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(ADMIN),
            Some(vec![0xff, 0xfe, 0x00].into()),
            &[("content-type", "application/toml")],
        )
        .await;
    assert_eq!(r.status, 422);
    let r = put(
        &app,
        "/api/v1/groups/cab",
        json!({"members": ["carol", "nobody"]}),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "members[1]");
    // Nothing was written by any of it.
    assert_eq!(app.store.audit_head().await.unwrap(), head);
    assert_eq!(
        app.get("/api/v1/groups").await.body[0]["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(app.get("/api/v1/policy").await.body["version"], 1);
    app.stop().await;
}

/// An approver who is away delegates: the delegate's queue shows the delegator's pending
/// approvals, the delegate's approval counts as the delegator's ("by B on behalf of A"), it is
/// not followed further, loops and self-delegation are refused, and the queue routes back when
/// the delegation ends.
#[tokio::test]
async fn delegation_routes_approvals_and_keeps_separation_of_duties() {
    let app = TestApp::spawn().await;
    let p = setup(&app).await;
    let zed = person(&app, "zed", "approver").await;
    let yuri = person(&app, "yuri", "approver").await;
    let body = |k: &str| {
        let mut b = change_body("prod-eu-west-1");
        b["title"] = json!(k);
        b
    };
    let cr = app
        .post_as("/api/v1/changes", body("one"), &p.alice, &[])
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let until = shipgate_domain::time::format(chrono::Utc::now() + chrono::Duration::hours(1));
    let delegate = |token: String, to: &'static str| {
        let app = &app;
        let until = until.clone();
        async move {
            app.post_as(
                "/api/v1/delegations",
                json!({"to": to, "ends_at": until, "reason": "on leave"}),
                &token,
                &[],
            )
            .await
        }
    };
    // Self-delegation and loops are refused.
    assert_eq!(
        delegate(p.olga.clone(), "olga").await.body["errors"][0]["code"],
        "self_delegation"
    );
    let r = delegate(p.olga.clone(), "zed").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let olga_to_zed = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        delegate(zed.clone(), "olga").await.body["errors"][0]["code"],
        "delegation_loop"
    );
    // zed now sees olga's pending approval.
    let q = app
        .req(
            reqwest::Method::GET,
            "/api/v1/approvals",
            Some(&zed),
            None,
            &[],
        )
        .await;
    assert!(
        q.body
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["change"] == cr.as_str()),
        "{}",
        q.body
    );
    // Not followed further: zed delegating on gives yuri nothing.
    assert_eq!(delegate(zed.clone(), "yuri").await.status, 201);
    assert_eq!(
        decide(&app, &yuri, &cr, "approve").await.body["code"],
        "not_an_approver"
    );
    // zed approves for olga; olga's own approval is then a repeat.
    let r = decide(&app, &zed, &cr, "approve").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = r.body["decisions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (d["actor"].as_str(), d["on_behalf_of"].as_str()),
        (Some("zed"), Some("olga"))
    );
    assert_eq!(
        decide(&app, &p.olga, &cr, "approve").await.body["code"],
        "already_decided"
    );
    // A delegation to the requester never lets them approve their own change.
    assert_eq!(delegate(p.carol.clone(), "alice").await.status, 201);
    assert_eq!(
        decide(&app, &p.alice_approver, &cr, "approve").await.body["code"],
        "self_approval"
    );
    // Ended: a new change routes back to olga, and zed can no longer act for her.
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/delegations/{olga_to_zed}"),
            Some(&p.olga),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204);
    let cr2 = app
        .post_as("/api/v1/changes", body("two"), &p.alice, &[])
        .await
        .body["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = app
        .req(
            reqwest::Method::GET,
            "/api/v1/approvals",
            Some(&zed),
            None,
            &[],
        )
        .await;
    assert!(
        !q.body
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["change"] == cr2.as_str())
    );
    assert_eq!(
        decide(&app, &zed, &cr2, "approve").await.body["code"],
        "not_an_approver"
    );
    let t = app.get(&format!("/api/v1/changes/{cr}/timeline")).await;
    assert!(t.body.as_array().unwrap().iter().any(
        |i| i["what"] == "change.approve" && i["detail"]["decision"]["on_behalf_of"] == "olga"
    ));
    app.verify_ok().await;
    app.stop().await;
}

/// Emergency privileges: only members of the policy's emergency group may hold them, and a
/// second admin must confirm each grant before it works.
#[tokio::test]
async fn emergency_privileges_need_two_admins() {
    let app = TestApp::spawn().await;
    let _p = setup(&app).await;
    // dave is not in the emergency group (oncall).
    let r = app
        .post(
            "/api/v1/tokens",
            json!({"subject": "dave", "role": "emergency_deployer"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (422, Some("not_emergency_group"))
    );
    let r = app
        .post(
            "/api/v1/tokens",
            json!({"subject": "alice", "role": "emergency_deployer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (tok, id) = (
        r.body["token"].as_str().unwrap().to_owned(),
        r.body["id"].as_str().unwrap().to_owned(),
    );
    let who = |t: String| {
        let app = &app;
        async move {
            app.req(reqwest::Method::GET, "/api/v1/whoami", Some(&t), None, &[])
                .await
        }
    };
    let r = who(tok.clone()).await;
    assert_eq!(r.status, 401, "unconfirmed: {}", r.body);
    // The granting admin cannot confirm it; a second admin can.
    let r = app
        .post(&format!("/api/v1/tokens/{id}/confirm"), json!({}))
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("two_person_rule"))
    );
    // An admin the grantor created is the grantor's creature, not a second person.
    let first = app.token_for("first-admin", "admin", None).await;
    let confirm = |tok: String, id: String| {
        let app = &app;
        async move {
            app.post_as(
                &format!("/api/v1/tokens/{id}/confirm"),
                json!({}),
                &tok,
                &[],
            )
            .await
        }
    };
    let r = confirm(first.clone(), id.clone()).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("two_person_rule")),
        "{}",
        r.body
    );
    // Admin rights from a non-root admin wait for a second admin too: first-admin mints
    // second-admin, who cannot act, and neither of them can confirm it.
    let r = app
        .post_as(
            "/api/v1/tokens",
            json!({"subject": "second-admin", "role": "admin"}),
            &first,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (second, second_id) = (
        r.body["token"].as_str().unwrap().to_owned(),
        r.body["id"].as_str().unwrap().to_owned(),
    );
    assert_eq!(who(second.clone()).await.status, 401, "unconfirmed admin");
    for t in [&first, &second] {
        let r = confirm(t.clone(), second_id.clone()).await;
        assert!(r.status == 403 || r.status == 401, "{}", r.body);
    }
    // The root admin (not the grantor of second-admin) confirms it.
    let r = app
        .post(&format!("/api/v1/tokens/{second_id}/confirm"), json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(who(second.clone()).await.status, 200);
    // second-admin was not created by the root admin: it may confirm the root's grant.
    let r = confirm(second.clone(), id.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["confirmed_by"], "second-admin");
    let r = who(tok).await;
    assert_eq!(
        (r.status, r.body["role"].as_str()),
        (200, Some("emergency_deployer"))
    );
    let log = app.get("/api/v1/audit?limit=1000").await;
    assert!(
        log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "token.confirmed" && e["actor"] == "second-admin")
    );
    app.stop().await;
}

/// Integrity issue, item 4: the deployer is the authenticated identity, never a free field.
/// The sole approver asks the gate with another name (refused), asks as themselves (pending,
/// deployer_only_approval), and records a deployment naming someone else (flagged).
#[tokio::test]
async fn the_deployer_is_who_is_authenticated() {
    let app = TestApp::spawn().await;
    let p = setup(&app).await;
    let r = push_policy(&app, &format!("{POLICY}\n[[rule]]\nname = \"staging\"\napprovals = [{{ group = \"owners\" }}]\n[rule.match]\nenv_tier = [\"staging\"]\nchange_type = [\"normal\"]\n")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post_as("/api/v1/changes", change_body("staging"), &p.alice, &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cr = r.body["key"].as_str().unwrap().to_owned();
    let r = decide(&app, &p.olga, &cr, "approve").await;
    assert_eq!(r.body["status"], "approved", "{}", r.body);
    let olga_deploys = app.token_for("olga", "deployer", None).await;
    let r = app
        .req(
            reqwest::Method::GET,
            &format!(
                "/api/v1/gate?change={cr}&environment=staging&digest={}&deployer=carol",
                digest(42)
            ),
            Some(&olga_deploys),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let d = gate(&app, &olga_deploys, &cr, "staging", "").await;
    assert_eq!(d["state"], "pending", "{d}");
    assert!(
        codes(&d).contains(&"deployer_only_approval".to_owned()),
        "{d}"
    );
    // Recorded by olga's token under another name: flagged all the same.
    let dep = |token: String, deployer: &'static str| {
        let app = &app;
        let cr = cr.clone();
        async move {
            app.post_as(
                "/api/v1/deployments",
                json!({"service": "checkout", "environment": "staging", "version": "1.4.2",
                       "artifact": format!("registry/checkout@{}", digest(42)), "deployer": deployer, "change_ref": cr}),
                &token,
                &[],
            )
            .await
        }
    };
    let r = dep(olga_deploys.clone(), "carol").await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["approval"]["flagged"], true, "{}", r.body);
    assert!(
        r.body["approval"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "deployer_only_approval"),
        "{}",
        r.body
    );
    // The pipeline's own identity deploying the approved change: not flagged.
    let r = dep(p.alice.clone(), "alice").await;
    assert_eq!(r.body["approval"]["flagged"], false, "{}", r.body);
    app.verify_ok().await;
    app.stop().await;
}
