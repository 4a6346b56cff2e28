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
