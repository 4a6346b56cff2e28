//! Every kind of bad input gets a 4xx problem naming the field, writes nothing, and leaves
//! earlier records untouched.
use serde_json::{Value, json};

use crate::helpers::*;

async fn refused(
    app: &TestApp,
    path: &str,
    body: reqwest::Body,
    ctype: &str,
    status: u16,
    code: &str,
    fields: &[&str],
) -> Value {
    let before = app.count().await;
    let r = app
        .req(
            reqwest::Method::POST,
            path,
            Some(&app.token),
            Some(body),
            &[("content-type", ctype)],
        )
        .await;
    assert_eq!(r.status, status, "{path}: {}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.body["code"], code, "{}", r.body);
    let got: Vec<&str> = r.body["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    for f in fields {
        assert!(
            got.contains(f),
            "expected an error naming '{f}', got {got:?}"
        );
    }
    assert_eq!(app.count().await, before, "nothing was written");
    r.body
}

async fn refused_json(app: &TestApp, body: Value, fields: &[&str]) -> Value {
    refused(
        app,
        "/api/v1/deployments",
        body.to_string().into(),
        "application/json",
        422,
        "validation_failed",
        fields,
    )
    .await
}

#[tokio::test]
async fn bad_deployments_are_refused_with_every_field_named() {
    let app = TestApp::spawn_with(|s| {
        s.max_body_bytes = 4096;
        s.requirements.0.insert(
            shipgate_domain::EnvTier::Production,
            vec![
                shipgate_domain::requirements::RequiredField::CommitSha,
                shipgate_domain::requirements::RequiredField::ArtifactDigest,
                shipgate_domain::requirements::RequiredField::Deployer,
                shipgate_domain::requirements::RequiredField::ChangeRef,
            ],
        );
    })
    .await;
    let mut good = prod_body("checkout", "1", 1);
    good["change_ref"] = json!("CHG1");
    let first = app.post("/api/v1/deployments", good.clone()).await;
    assert_eq!(first.status, 201);
    let first_id = first.body["id"].as_str().unwrap().to_owned();

    // Mandatory production metadata: one response lists everything missing.
    refused_json(
        &app,
        json!({"service":"checkout","environment":"production","version":"2"}),
        &["commit_sha", "artifact_digest", "deployer", "change_ref"],
    )
    .await;
    // Malformed JSON and truncated JSON.
    refused(
        &app,
        "/api/v1/deployments",
        "{\"service\": ".into(),
        "application/json",
        400,
        "malformed_json",
        &[],
    )
    .await;
    refused(
        &app,
        "/api/v1/deployments",
        "".into(),
        "application/json",
        400,
        "malformed_json",
        &[],
    )
    .await;
    refused(
        &app,
        "/api/v1/deployments",
        "[1,2]".into(),
        "application/json",
        422,
        "validation_failed",
        &[""],
    )
    .await;
    // Wrong types.
    refused_json(&app, json!({"service": 5, "environment": ["prod"], "version": {"a":1}, "labels": "x", "targets": "eu"}), &["service", "environment", "version", "labels", "targets"]).await;
    // Bad UUIDs, non-hex digests and commits, unknown fields, bad enums.
    let mut b = good.clone();
    b["id"] = json!("1234");
    b["corrects"] = json!("nope");
    b["artifact"] = Value::Null;
    b["artifact_digest"] = json!("sha256:xyz");
    b["commit_sha"] = json!("zz");
    b["colour"] = json!("red");
    b["kind"] = json!("yolo");
    refused_json(
        &app,
        b,
        &[
            "id",
            "corrects",
            "artifact_digest",
            "commit_sha",
            "colour",
            "kind",
        ],
    )
    .await;
    // Timestamps in the future or in bad formats.
    let mut b = good.clone();
    b["started_at"] = json!("2999-01-01T00:00:00Z");
    b["finished_at"] = json!("yesterday");
    b["status"] = json!("succeeded");
    refused_json(&app, b, &["started_at", "finished_at"]).await;
    let mut b = good.clone();
    b["started_at"] = json!("2026-13-45 25:61");
    refused_json(&app, b, &["started_at"]).await;
    // Correcting a record that does not exist.
    let mut b = good.clone();
    b["corrects"] = json!(uuid::Uuid::now_v7().to_string());
    refused_json(&app, b, &["corrects"]).await;
    // Oversized bodies.
    let mut b = good.clone();
    b["labels"] = json!({"blob": "x".repeat(250), "b2": "y".repeat(250)});
    for i in 0..20 {
        b["labels"][format!("k{i}")] = json!("z".repeat(250));
    }
    refused(
        &app,
        "/api/v1/deployments",
        b.to_string().into(),
        "application/json",
        413,
        "payload_too_large",
        &[],
    )
    .await;

    // Status events: bad UUID in the path, unknown status, unknown target, bad JSON.
    refused(
        &app,
        "/api/v1/deployments/not-a-uuid/events",
        json!({"status":"failed"}).to_string().into(),
        "application/json",
        422,
        "validation_failed",
        &["id"],
    )
    .await;
    let ev = format!("/api/v1/deployments/{first_id}/events");
    refused(
        &app,
        &ev,
        json!({"status":"exploded"}).to_string().into(),
        "application/json",
        422,
        "validation_failed",
        &["status"],
    )
    .await;
    refused(
        &app,
        &ev,
        json!({"status":"failed","target":"mars"})
            .to_string()
            .into(),
        "application/json",
        422,
        "validation_failed",
        &["target"],
    )
    .await;
    refused(
        &app,
        &ev,
        "{{".into(),
        "application/json",
        400,
        "malformed_json",
        &[],
    )
    .await;
    refused(
        &app,
        &ev,
        json!({"status":"failed","occurred_at":"2999-01-01T00:00:00Z"})
            .to_string()
            .into(),
        "application/json",
        422,
        "validation_failed",
        &["occurred_at"],
    )
    .await;
    let r = app.get("/api/v1/deployments/not-a-uuid").await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (422, Some("id"))
    );
    let r = app
        .get(&format!("/api/v1/deployments/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(r.status, 404);

    // Query parameters are checked too.
    let r = app
        .get("/api/v1/deployments?status=weird&limit=0&cursor=zzz&since=tomorrow&colour=red")
        .await;
    assert_eq!(r.status, 422);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["status", "limit", "cursor", "since", "colour"] {
        assert!(fields.contains(&f), "{fields:?}");
    }

    // The earlier record is untouched and the chain intact.
    let r = app.get(&format!("/api/v1/deployments/{first_id}")).await;
    assert_eq!(
        (r.body["version"].as_str(), r.body["status"].as_str()),
        (Some("1"), Some("started"))
    );
    assert_eq!(app.count().await, 1);
    app.verify_ok().await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_environment_labels_refused_in_strict_mode() {
    let app = TestApp::spawn_with(|s| s.environments.strict = true).await;
    let mut b = prod_body("x", "1", 1);
    b["environment"] = json!("mystery");
    let body = refused_json(&app, b, &["environment"]).await;
    assert_eq!(body["errors"][0]["code"], "unknown_environment");
    let mut b = prod_body("x", "1", 1);
    b["environment"] = json!("prod env!");
    refused_json(&app, b, &["environment"]).await;
    app.stop().await;
}

async fn put_text(app: &TestApp, path: &str, body: String, ctype: &str) -> Resp {
    app.req(
        reqwest::Method::PUT,
        path,
        Some(&app.token),
        Some(body.into()),
        &[("content-type", ctype)],
    )
    .await
}

/// The fields a problem names.
fn named(r: &Resp) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_problem(r: &Resp, status: u16, fields: &[&str], what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{what}"
    );
    let got = named(r);
    for f in fields {
        assert!(
            got.iter().any(|g| g == f),
            "{what}: expected an error naming '{f}', got {got:?}"
        );
    }
}

const GOOD_POLICY: &str = "[[rule]]\nname = \"std\"\nauto_approve = true\n[rule.match]\nchange_type = [\"standard\"]\n\n[[rule]]\nname = \"normal\"\napprovals = [{ group = \"cab\", quorum = 1 }]\n[rule.match]\nchange_type = [\"normal\"]\n";

/// Every number in a policy has bounds: a quorum of 4294967295 (which made the first gate call
/// allocate 34 GB and abort, at every restart) and out-of-range durations and counts are
/// refused on push, naming the setting. A policy already stored outside the bounds (written
/// before them, behind the API's back) never crashes the server: the gate answers `error`,
/// across a restart too, and a good policy can be pushed over it.
#[tokio::test]
async fn out_of_range_policies_are_refused_and_a_stored_one_fails_closed() {
    let app = TestApp::spawn().await;
    let r = app
        .post("/api/v1/people", json!({"subject": "carol"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = put_text(
        &app,
        "/api/v1/groups/cab",
        json!({"members": ["carol"]}).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let huge_quorum = GOOD_POLICY.replace("quorum = 1", "quorum = 4294967295");
    for (text, field) in [
        (huge_quorum.clone(), "policy.rule[1].approvals[0].quorum"),
        (
            GOOD_POLICY.replace("quorum = 1", "quorum = 51"),
            "policy.rule[1].approvals[0].quorum",
        ),
        (
            GOOD_POLICY.replace("quorum = 1", "quorum = 99999999999"),
            "policy.rule[1].approvals[0].quorum",
        ),
        (
            format!("[defaults]\nvalidity = \"100000000d\"\n{GOOD_POLICY}"),
            "policy.defaults.validity",
        ),
        (
            GOOD_POLICY.replace(
                "auto_approve = true\n",
                "auto_approve = true\nsla = \"1000y\"\n",
            ),
            "policy.rule[0].sla",
        ),
        (
            format!(
                "{GOOD_POLICY}\n[emergency]\ngroup = \"cab\"\nincident_commanders = \"cab\"\nsystem_owners = \"cab\"\nmonthly_threshold = 4294967295\n"
            ),
            "policy.emergency.monthly_threshold",
        ),
    ] {
        let r = put_text(&app, "/api/v1/policy", text.clone(), "application/toml").await;
        assert_problem(&r, 422, &[field], &text);
        assert_eq!(r.body["errors"][0]["code"], "invalid_policy", "{}", r.body);
    }
    assert_eq!(
        app.get("/api/v1/policy").await.status,
        404,
        "nothing pushed"
    );

    let r = put_text(
        &app,
        "/api/v1/policy",
        GOOD_POLICY.into(),
        "application/toml",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post(
            "/api/v1/changes",
            json!({"type": "standard", "title": "t", "services": ["checkout"], "environments": ["staging"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.body["key"].as_str().unwrap().to_owned();
    let gate = format!("/api/v1/gate?change={key}&environment=staging");
    assert_eq!(app.get(&gate).await.body["state"], "allowed");

    // The crashing policy, stored as it could have been before the bounds existed.
    let tenant = app.get("/api/v1/whoami").await.body["tenant"]
        .as_str()
        .unwrap()
        .to_owned();
    shipgate_store::ChangeStore::push_policy(
        &*app.store,
        &tenant,
        &huge_quorum,
        &shipgate_domain::audit::sha256_hex(huge_quorum.as_bytes()),
        "before-the-bounds",
        shipgate_domain::time::truncate(chrono::Utc::now()),
    )
    .await
    .unwrap();
    // A restart loads it: the server comes up and the gate fails closed, saying why.
    let db = app.db_url.clone();
    let dir = app.stop().await;
    let app = TestApp::spawn_on(db, dir, |_| {}).await;
    for _ in 0..2 {
        let r = app.get(&gate).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["state"], "error", "{}", r.body);
        assert!(r.body.to_string().contains("quorum"), "{}", r.body);
    }
    let r = app
        .post(
            "/api/v1/changes",
            json!({"type": "normal", "title": "t", "services": ["checkout"], "environments": ["staging"]}),
        )
        .await;
    assert_eq!(r.status, 409, "no change opens under it: {}", r.body);
    assert_eq!(r.body["code"], "policy_invalid", "{}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("quorum"),
        "{}",
        r.body
    );
    assert!(app.get("/api/v1/policy").await.body["parsed"].is_null());
    // A good policy can be pushed over it, and the gate decides again.
    let r = put_text(
        &app,
        "/api/v1/policy",
        GOOD_POLICY.into(),
        "application/toml",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_ne!(app.get(&gate).await.body["state"], "error");
    app.stop().await;
}

/// No query input panics a worker: durations and times are computed with checked arithmetic,
/// and an out-of-range value is a 422 problem naming the parameter. A viewer token is enough to
/// ask, so each is asked with one.
#[tokio::test]
async fn out_of_range_query_values_are_refused_never_panic() {
    let app = TestApp::spawn().await;
    let viewer = app.token_for("viewer-1", "viewer", None).await;
    for (path, field) in [
        ("/api/v1/deployments?since=100000000d", "since"),
        ("/api/v1/deployments?until=100000000d", "until"),
        ("/api/v1/deployments?since=36601d", "since"),
        ("/api/v1/deployments?since=9223372036854775807m", "since"),
        ("/api/v1/deployments?since=153722867280912930m", "since"),
        (
            "/api/v1/deployments?since=99999999999999999999999h",
            "since",
        ),
        ("/api/v1/deployments?limit=4294967296", "limit"),
        ("/api/v1/recent-changes?since=100000000d", "since"),
        ("/api/v1/recent-changes?hours=4294967295", "hours"),
        ("/api/v1/recent-changes?hours=0", "hours"),
        ("/api/v1/changes?limit=0", "limit"),
        ("/api/v1/changes?limit=4294967295", "limit"),
        (
            "/api/v1/gate?change=CR-1&environment=staging&wait=100000000000d",
            "wait",
        ),
        (
            "/api/v1/gate?change=CR-1&environment=staging&wait=18446744073709551615",
            "wait",
        ),
    ] {
        let r = app
            .req(reqwest::Method::GET, path, Some(&viewer), None, &[])
            .await;
        assert_problem(&r, 422, &[field], path);
    }
    let r = app.get("/api/v1/audit?after=-1").await;
    assert_problem(&r, 422, &["after"], "audit after");
    // The server still answers, and the largest allowed look-back works.
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments?since=36600d",
            Some(&viewer),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

/// An empty value is refused with a field error, never read as "none": `"env_tier": ""` does
/// not make an unscoped token, nor `"expires_in": ""` one that never expires (role grants the
/// same). A group is never emptied by a body without members, and an empty policy body is not
/// a new policy version.
#[tokio::test]
async fn empty_values_are_refused_not_read_as_none() {
    let app = TestApp::spawn().await;
    let before = app
        .get("/api/v1/tokens")
        .await
        .body
        .as_array()
        .unwrap()
        .len();
    for (body, fields) in [
        (
            json!({"subject": "ci", "role": "deployer", "env_tier": "", "expires_in": ""}),
            vec!["env_tier", "expires_in"],
        ),
        (
            json!({"subject": "ci", "role": "deployer", "env_tier": "  ", "expires_in": " "}),
            vec!["env_tier", "expires_in"],
        ),
        (json!({"subject": "ci", "role": ""}), vec!["role"]),
        (
            json!({"subject": "ci", "role": "viewer", "tenant": ""}),
            vec!["tenant"],
        ),
        (json!({"subject": "", "role": "viewer"}), vec!["subject"]),
        // Lifetimes are bounded too (this one used to overflow the clock and panic).
        (
            json!({"subject": "ci", "role": "viewer", "expires_in": "1000000y"}),
            vec!["expires_in"],
        ),
        (
            json!({"subject": "ci", "role": "viewer", "expires_in": "1831d"}),
            vec!["expires_in"],
        ),
    ] {
        let r = app.post("/api/v1/tokens", body.clone()).await;
        assert_problem(&r, 422, &fields, &body.to_string());
    }
    assert_eq!(
        app.get("/api/v1/tokens")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        before,
        "no token was created"
    );
    let r = app
        .post(
            "/api/v1/tokens",
            json!({"subject": "ci", "role": "deployer", "env_tier": "staging", "expires_in": "90d"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    for (body, fields) in [
        (
            json!({"subject": "sso-1", "role": "viewer", "env_tier": "", "expires_in": ""}),
            vec!["env_tier", "expires_in"],
        ),
        (
            json!({"subject": "", "group": "", "role": "viewer"}),
            vec!["subject", "group"],
        ),
        (json!({"group": "", "role": "viewer"}), vec!["group"]),
        (json!({"subject": "sso-1", "role": ""}), vec!["role"]),
    ] {
        let r = app.post("/api/v1/role-grants", body.clone()).await;
        assert_problem(&r, 422, &fields, &body.to_string());
    }
    assert_eq!(
        app.get("/api/v1/role-grants")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        0,
        "no role grant was created"
    );

    // Groups: a body without members, or with none, does not empty a group.
    let r = app
        .post("/api/v1/people", json!({"subject": "carol"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post(
            "/api/v1/people",
            json!({"subject": "dave", "token_role": ""}),
        )
        .await;
    assert_problem(&r, 422, &["token_role"], "empty token_role");
    let r = put_text(
        &app,
        "/api/v1/groups/cab",
        json!({"members": ["carol"]}).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for body in [json!({}), json!({"members": []}), json!({"members": null})] {
        let r = put_text(
            &app,
            "/api/v1/groups/cab",
            body.to_string(),
            "application/json",
        )
        .await;
        assert_problem(&r, 422, &["members"], &body.to_string());
    }
    let groups = app.get("/api/v1/groups").await;
    assert_eq!(
        groups.body[0]["members"],
        json!(["carol"]),
        "{}",
        groups.body
    );

    // Policy: an empty body (or only comments, or only defaults) is not a policy version.
    for text in [
        "",
        "   \n",
        "# nothing here\n",
        "[defaults]\nvalidity = \"1h\"\n",
    ] {
        let r = put_text(&app, "/api/v1/policy", text.into(), "application/toml").await;
        assert_problem(&r, 422, &["policy"], text);
        assert_eq!(r.body["errors"][0]["code"], "empty_policy", "{}", r.body);
    }
    assert_eq!(app.get("/api/v1/policy").await.status, 404, "no version");
    assert_eq!(
        app.get("/api/v1/policy/history")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        0
    );
    app.verify_ok().await;
    app.stop().await;
}

/// The OpenAPI contract's edges: an unsupported method is 405 with `Allow` (never 403), a
/// repeated or empty query parameter is refused (never silently read), an empty enum value
/// names its field, and a change covering no service or environment is refused.
#[tokio::test]
async fn methods_queries_and_empty_values_follow_the_contract() {
    let app = TestApp::spawn().await;
    for (method, path, token) in [
        ("TRACE", "/healthz", None),
        ("DELETE", "/api/v1/whoami", Some(app.token.as_str())),
        ("PUT", "/api/v1/deployments", Some(app.token.as_str())),
        ("OPTIONS", "/api/v1/gate", None),
    ] {
        let r = app
            .req(method.parse().unwrap(), path, token, None, &[])
            .await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        let allow = r.headers["allow"].to_str().unwrap().to_owned();
        assert!(!allow.contains(method) && !allow.is_empty(), "{allow}");
    }
    // HEAD is GET without a body, under GET's permission.
    let r = app
        .req(
            reqwest::Method::HEAD,
            "/api/v1/whoami",
            Some(&app.token),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    for q in ["limit=abc&limit=5", "limit=", "status=&limit=5"] {
        let r = app.get(&format!("/api/v1/changes?{q}")).await;
        assert_eq!(r.status, 422, "{q}: {}", r.body);
        assert!(!r.body["errors"].as_array().unwrap().is_empty());
    }
    let r = app
        .post(
            "/api/v1/changes",
            json!({"title": "x", "type": "", "services": ["a"], "environments": ["staging"]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "type", "{}", r.body);
    let r = app
        .post(
            "/api/v1/changes",
            json!({"title": "covers nothing", "type": "normal", "services": [], "environments": []}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"services") && fields.contains(&"environments"),
        "{fields:?}"
    );
    app.stop().await;
}
