use serde_json::json;

use crate::helpers::*;

async fn deployment_story(app: &TestApp) {
    // Create, with its Location.
    let r = app
        .post("/api/v1/deployments", prod_body("checkout", "1.4.2", 1))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/api/v1/deployments/{id}"));
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(r.body["environment"]["tier"], "production");
    assert_eq!(r.body["environment"]["region"], "eu-west-1");
    assert_eq!(r.body["environment"]["raw"], "prod-eu-west-1");
    assert_eq!(r.body["artifact_name"], "registry/checkout");
    assert_eq!(r.body["schema_version"], 1);
    assert_eq!(r.body["status"], "started");

    // Finish it; it is what runs.
    let r = app
        .post(
            &format!("/api/v1/deployments/{id}/events"),
            json!({"status": "succeeded"}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["deployment"]["status"], "succeeded");
    let running = app
        .get("/api/v1/running?environment=production-eu-west-1")
        .await
        .body;
    assert_eq!(running[0]["version"], "1.4.2");
    // The same question asked with a messy label.
    let running = app
        .get("/api/v1/running?environment=prod-eu-west-1&service=checkout")
        .await
        .body;
    assert_eq!(running.as_array().unwrap().len(), 1);
    // A repeat is a no-op; a contradiction is refused with a stable code.
    let r = app
        .post(
            &format!("/api/v1/deployments/{id}/events"),
            json!({"status": "succeeded"}),
        )
        .await;
    assert_eq!((r.status, r.body["event"].is_null()), (200, true));
    let r = app
        .post(
            &format!("/api/v1/deployments/{id}/events"),
            json!({"status": "failed"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (409, Some("invalid_transition"))
    );

    // Idempotency-Key: the retry gets the first result, a different body is refused.
    let body = prod_body("checkout", "1.4.3", 2);
    let a = app
        .post_as(
            "/api/v1/deployments",
            body.clone(),
            &app.token,
            &[("idempotency-key", "run-1-deploy")],
        )
        .await;
    let b = app
        .post_as(
            "/api/v1/deployments",
            body.clone(),
            &app.token,
            &[("idempotency-key", "run-1-deploy")],
        )
        .await;
    assert_eq!((a.status, b.status), (201, 200));
    assert_eq!(a.body["id"], b.body["id"]);
    let c = app
        .post_as(
            "/api/v1/deployments",
            prod_body("checkout", "9", 3),
            &app.token,
            &[("idempotency-key", "run-1-deploy")],
        )
        .await;
    assert_eq!(
        (c.status, c.body["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    // A client-supplied id works the same way.
    let cid = uuid::Uuid::now_v7().to_string();
    let mut with_id = prod_body("ledger", "3", 4);
    with_id["id"] = json!(cid);
    assert_eq!(
        app.post("/api/v1/deployments", with_id.clone())
            .await
            .status,
        201
    );
    let again = app.post("/api/v1/deployments", with_id.clone()).await;
    assert_eq!(
        (again.status, again.body["id"].as_str()),
        (200, Some(cid.as_str()))
    );
    with_id["version"] = json!("4");
    assert_eq!(app.post("/api/v1/deployments", with_id).await.status, 409);

    // Fan-out to targets with one aggregate outcome.
    let mut fan = prod_body("edge", "2", 5);
    fan["targets"] = json!(["canary", "eu-main"]);
    let f = app.post("/api/v1/deployments", fan).await;
    let fid = f.body["id"].as_str().unwrap();
    app.post(
        &format!("/api/v1/deployments/{fid}/events"),
        json!({"status":"succeeded","target":"canary"}),
    )
    .await;
    let r = app.get(&format!("/api/v1/deployments/{fid}")).await;
    assert_eq!(r.body["status"], "started");
    assert_eq!(r.body["target_status"]["canary"], "succeeded");
    let r = app
        .post(
            &format!("/api/v1/deployments/{fid}/events"),
            json!({"status":"succeeded","target":"eu-main"}),
        )
        .await;
    assert_eq!(r.body["deployment"]["status"], "succeeded");

    // A late event is kept and flagged; a correction references the record it corrects.
    let late_at = shipgate_domain::time::format(chrono::Utc::now() - chrono::Duration::hours(3));
    let r = app
        .post(
            &format!("/api/v1/deployments/{id}/events"),
            json!({"status":"started","occurred_at": late_at}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["event"]["late"].as_bool()),
        (201, Some(true))
    );
    let mut fix = prod_body("checkout", "1.4.2", 1);
    fix["corrects"] = json!(id);
    fix["labels"] = json!({"reason": "wrong digest recorded"});
    let fx = app.post("/api/v1/deployments", fix).await;
    assert_eq!(fx.status, 201);
    let old = app.get(&format!("/api/v1/deployments/{id}")).await.body;
    assert_eq!(old["corrected_by"][0], fx.body["id"]);
    assert_eq!(old["events"].as_array().unwrap().len(), 3);

    // Kinds and triggers share the same path.
    for (kind, trigger) in [
        ("rollback", "manual"),
        ("hotfix", "pipeline"),
        ("config", "gitops"),
        ("schema_migration", "scheduled"),
    ] {
        let mut b = prod_body("checkout", "1.4.1", 6);
        b["kind"] = json!(kind);
        b["trigger"] = json!(trigger);
        let r = app.post("/api/v1/deployments", b).await;
        assert_eq!((r.status, r.body["kind"].as_str()), (201, Some(kind)));
    }

    // History: filters and cursor pagination.
    let all = app.get("/api/v1/deployments?limit=1000").await.body["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(all, 9);
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let p = app
            .get(&format!("/api/v1/deployments?limit=3{q}"))
            .await
            .body;
        for d in p["items"].as_array().unwrap() {
            assert!(
                seen.insert(d["id"].as_str().unwrap().to_owned()),
                "pages overlap"
            );
        }
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9);
    let n = |q: &str| {
        let q = q.to_owned();
        async move {
            app.get(&format!("/api/v1/deployments?{q}")).await.body["items"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(999)
        }
    };
    assert_eq!(n("kind=rollback").await, 1);
    assert_eq!(n("service=checkout&status=succeeded").await, 1);
    assert_eq!(n(&format!("commit_sha={}", sha(6))).await, 4);
    assert_eq!(
        n(&format!(
            "artifact_digest={}",
            digest(2).replace(':', "%3A")
        ))
        .await,
        1
    );
    assert_eq!(n("deployer=alice&since=1h").await, 9);
    assert_eq!(n("deployer=bob").await, 0);
    assert_eq!(n("tier=production").await, 9);
    assert_eq!(n("until=2000-01-01T00:00:00Z").await, 0);

    // What changed in the last hours, with the version each replaced.
    let ch = app
        .get("/api/v1/recent-changes?hours=2&service=checkout")
        .await
        .body;
    assert!(ch["items"].as_array().unwrap().len() >= 6);
    app.verify_ok().await;
}

#[tokio::test]
async fn deployment_lifecycle_on_sqlite() {
    let app = TestApp::spawn().await;
    deployment_story(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn deployment_lifecycle_on_postgres() {
    let Some(url) = fresh_pg().await else { return };
    let app = TestApp::spawn_on(url, tempfile::tempdir().unwrap(), |_| {}).await;
    let r = app
        .req(reqwest::Method::GET, "/readyz", None, None, &[])
        .await;
    assert_eq!(r.body["store"], "postgres");
    deployment_story(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn services_environments_releases_and_taxonomy() {
    let app = TestApp::spawn_with(|s| s.environments.strict = true).await;
    let r = app
        .post(
            "/api/v1/services",
            json!({"name": "ledger", "team": "finance"}),
        )
        .await;
    assert_eq!((r.status, r.body["declared"].as_bool()), (201, Some(true)));
    // Strict taxonomy: an unknown label is refused until declared.
    let mut b = prod_body("ledger", "1", 1);
    b["environment"] = json!("blue-green-7");
    let r = app.post("/api/v1/deployments", b.clone()).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (422, Some("environment"))
    );
    assert_eq!(r.body["errors"][0]["code"], "unknown_environment");
    let r = app
        .post(
            "/api/v1/environments",
            json!({"name": "blue-green-7", "tier": "staging"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = app.post("/api/v1/deployments", b).await;
    assert_eq!(
        (r.status, r.body["environment"]["tier"].as_str()),
        (201, Some("staging"))
    );
    let r = app.get("/api/v1/environments/resolve?label=PRD").await;
    assert_eq!(
        (r.body["name"].as_str(), r.body["tier"].as_str()),
        (Some("production"), Some("production"))
    );
    let r = app.get("/api/v1/releases?service=ledger").await;
    assert_eq!(r.body[0]["version"], "1");
    let envs = app.get("/api/v1/environments").await.body;
    assert_eq!(envs.as_array().unwrap().len(), 1);
    app.verify_ok().await;
    app.stop().await;
}

/// Graceful shutdown: every create that was acknowledged is in the store afterwards.
#[tokio::test]
async fn shutdown_keeps_every_acknowledged_write() {
    let app = TestApp::spawn().await;
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let http = app.http.clone();
        let url = format!("{}/api/v1/deployments", app.url);
        let token = app.token.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"service":"s","environment":"dev","version": i.to_string()}))
                .send()
                .await;
            matches!(r, Ok(r) if r.status() == 201)
        }));
    }
    let acked = futures::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    let store = app.store.clone();
    app.stop().await;
    let page = store
        .list_deployments(
            &shipgate_domain::DeploymentFilter {
                tenant: "default".into(),
                ..Default::default()
            },
            None,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(acked, 200);
    assert_eq!(page.items.len(), acked);
    assert!(store.verify_audit().await.unwrap().ok);
}

/// Integrity issue, item 9: a client id that names a status event (or another tenant's
/// record) never breaks `audit verify`, never answers 500, and reveals nothing about another
/// tenant.
#[tokio::test]
async fn client_ids_are_scoped_to_tenant_and_record_kind() {
    let app = TestApp::spawn().await;
    let acme = app.token_for("ci", "deployer", None).await;
    let other = app.token_for("ci", "deployer", Some("other")).await;
    let body =
        |v: &str, id: &str| json!({"service": "web", "environment": "dev", "version": v, "id": id});
    let x = uuid::Uuid::now_v7().to_string();
    let r = app
        .post_as("/api/v1/deployments", body("1", &x), &acme, &[])
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let event = r.body["events"][0]["id"].as_str().unwrap().to_owned();
    // A deployment named like a status event: refused with the reason.
    let r = app
        .post_as("/api/v1/deployments", body("2", &event), &acme, &[])
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["code"], "id_in_use");
    // A status event named like the deployment: refused.
    let r = app
        .post_as(
            &format!("/api/v1/deployments/{x}/events"),
            json!({"status": "succeeded", "id": x}),
            &acme,
            &[],
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // Another tenant reusing both ids gets what a fresh id gets.
    let fresh = app
        .post_as(
            "/api/v1/deployments",
            body("1", &uuid::Uuid::now_v7().to_string()),
            &other,
            &[],
        )
        .await;
    assert_eq!(fresh.status, 201);
    for id in [&x, &event] {
        let r = app
            .post_as("/api/v1/deployments", body("1", id), &other, &[])
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = app
        .post_as(
            &format!("/api/v1/deployments/{x}/events"),
            json!({"status": "succeeded", "id": uuid::Uuid::now_v7()}),
            &other,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    app.verify_ok().await;
    app.stop().await;
}
