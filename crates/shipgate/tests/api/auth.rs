use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn tokens_roles_and_tenant_isolation() {
    let app = TestApp::spawn().await;
    // No token, a malformed header, an unknown token.
    let r = app
        .req(reqwest::Method::GET, "/api/v1/deployments", None, None, &[])
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments",
            None,
            None,
            &[("authorization", "Basic abc")],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments",
            Some("sg_forged"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 401);

    let viewer = app.token_for("viewer-1", "viewer", None).await;
    let deployer_a = app.token_for("ci-a", "deployer", None).await;
    let deployer_b = app.token_for("ci-b", "deployer", Some("tenant-b")).await;

    // A viewer reads but cannot write or mint tokens.
    let r = app
        .post_as(
            "/api/v1/deployments",
            prod_body("web", "1", 1),
            &viewer,
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    let r = app
        .post_as(
            "/api/v1/tokens",
            json!({"subject":"x","role":"admin"}),
            &viewer,
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    // A deployer cannot escalate by minting an admin token.
    let r = app
        .post_as(
            "/api/v1/tokens",
            json!({"subject":"x","role":"admin"}),
            &deployer_a,
            &[],
        )
        .await;
    assert_eq!(r.status, 403);

    let a = app
        .post_as(
            "/api/v1/deployments",
            prod_body("web", "1", 1),
            &deployer_a,
            &[],
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["tenant"], "default");
    assert_eq!(a.body["recorded_by"], "ci-a");
    let id = a.body["id"].as_str().unwrap().to_owned();

    // Another tenant's record reads as not found, and never shows in its lists.
    let r = app
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/deployments/{id}"),
            Some(&deployer_b),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments",
            Some(&deployer_b),
            None,
            &[],
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/running",
            Some(&deployer_b),
            None,
            &[],
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 0);
    let r = app
        .post_as(
            &format!("/api/v1/deployments/{id}/events"),
            json!({"status":"failed"}),
            &deployer_b,
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    // A tenant token may not switch tenant, nor read another with ?tenant=.
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments",
            Some(&deployer_b),
            None,
            &[("x-shipgate-tenant", "default")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments?tenant=default",
            Some(&deployer_b),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    // The root token may.
    let r = app.get("/api/v1/deployments?tenant=tenant-b").await;
    assert_eq!(r.status, 200);
    let b = app
        .post_as(
            "/api/v1/deployments",
            prod_body("web", "9", 9),
            &deployer_b,
            &[],
        )
        .await;
    assert_eq!(b.body["tenant"], "tenant-b");
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments",
            Some(&app.token),
            None,
            &[("x-shipgate-tenant", "tenant-b")],
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    // Audit entries are tenant scoped too; verifying the global chain is for the root token.
    let tb_admin = app.token_for("admin-b", "admin", Some("tenant-b")).await;
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/audit?limit=1000",
            Some(&tb_admin),
            None,
            &[],
        )
        .await;
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant"] == "tenant-b")
    );
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/audit/verify",
            Some(&tb_admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/whoami",
            Some(&deployer_b),
            None,
            &[],
        )
        .await;
    assert_eq!(
        (r.body["tenant"].as_str(), r.body["role"].as_str()),
        (Some("tenant-b"), Some("deployer"))
    );
    app.stop().await;
}

#[tokio::test]
async fn production_mode_refuses_a_new_store_without_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let s = shipgate_server::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("p.db").display()),
        admin_token: None,
        production: true,
        ..Default::default()
    };
    let err = shipgate_server::Application::build(
        s,
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("production mode"), "{err}");
    // An admin token alone is not enough: people must sign in through SSO.
    let s = shipgate_server::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("p.db").display()),
        admin_token: Some("sg_production-bootstrap".to_owned().into()),
        production: true,
        ..Default::default()
    };
    let err = shipgate_server::Application::build(
        s.clone(),
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("single sign-on"), "{err}");
    assert!(
        !dir.path().join("p.db").exists(),
        "refused before the store is created"
    );
    // With SSO configured it starts.
    let mut s = s;
    s.oidc.issuer = Some("https://login.example.com".into());
    s.oidc.audience = Some("urn:shipgate".into());
    s.oidc
        .role_map
        .insert("deployers".into(), shipgate_domain::Role::Deployer);
    let (app, _) = shipgate_server::Application::build(
        s,
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await
    .expect("starts with SSO configured");
    drop(app);
}

/// Tokens can be listed, scoped to an environment tier, made to expire, rotated and revoked;
/// a revoked, rotated-out or expired token is refused at once.
#[tokio::test]
async fn token_lifecycle_and_scope() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/api/v1/tokens",
            json!({"subject": "staging-ci", "role": "deployer", "env_tier": "staging", "expires_in": "90d"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let staging = r.body["token"].as_str().unwrap().to_owned();
    let staging_id = r.body["id"].as_str().unwrap().to_owned();
    let body = |env: &str| json!({"service": "web", "environment": env, "version": "1.0.0"});
    assert_eq!(
        app.post_as("/api/v1/deployments", body("staging"), &staging, &[])
            .await
            .status,
        201
    );
    let r = app
        .post_as("/api/v1/deployments", body("dev"), &staging, &[])
        .await;
    assert_eq!(
        r.status, 403,
        "a staging token cannot write dev: {}",
        r.body
    );
    // Nor advance a dev deployment, nor import dev records.
    let dev = app.post("/api/v1/deployments", body("dev")).await;
    let dev_id = dev.body["id"].as_str().unwrap();
    let r = app
        .post_as(
            &format!("/api/v1/deployments/{dev_id}/events"),
            json!({"status": "succeeded"}),
            &staging,
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let lines = format!("{}\n{}\n", body("staging"), body("dev"));
    let r = app
        .req(
            reqwest::Method::POST,
            "/api/v1/deployments/import?mode=partial",
            Some(&staging),
            Some(lines.into()),
            &[("content-type", "application/x-ndjson")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["created"], 1, "{}", r.body);
    assert_eq!(r.body["lines"][1]["errors"][0]["code"], "forbidden_tier");
    let listed = app.get("/api/v1/tokens").await;
    let mine = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == staging_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["env_tier"], "staging");
    assert!(mine["expires_at"].is_string());
    assert!(
        mine.get("token_hash").is_none(),
        "hashes are never returned"
    );

    // Rotation: the old token stops working at once, the new one works with the same scope.
    let r = app
        .post(&format!("/api/v1/tokens/{staging_id}/rotate"), json!({}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rotated = r.body["token"].as_str().unwrap().to_owned();
    let rotated_id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post_as("/api/v1/deployments", body("staging"), &staging, &[])
            .await
            .status,
        401
    );
    assert_eq!(
        app.post_as("/api/v1/deployments", body("staging"), &rotated, &[])
            .await
            .status,
        201
    );
    assert_eq!(
        app.post_as("/api/v1/deployments", body("dev"), &rotated, &[])
            .await
            .status,
        403
    );

    // Revocation.
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{rotated_id}"),
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        app.post_as("/api/v1/deployments", body("staging"), &rotated, &[])
            .await
            .status,
        401
    );
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{rotated_id}"),
            Some(ADMIN),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "already revoked");

    // Expiry.
    let r = app
        .post(
            "/api/v1/tokens",
            json!({"subject": "short", "role": "viewer", "expires_in": "1s"}),
        )
        .await;
    let short = r.body["token"].as_str().unwrap().to_owned();
    let who = |t: String| {
        let app = &app;
        async move {
            app.req(reqwest::Method::GET, "/api/v1/whoami", Some(&t), None, &[])
                .await
                .status
        }
    };
    assert_eq!(who(short.clone()).await, 200);
    app.clock.advance(std::time::Duration::from_secs(2));
    assert_eq!(who(short).await, 401);
    let r = app
        .post(
            "/api/v1/tokens",
            json!({"subject": "bad", "role": "viewer", "expires_in": "soon", "env_tier": "moon"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2);
    // The audit trail has the revocations.
    let log = app.get("/api/v1/audit?limit=1000").await;
    let revoked = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token.revoked")
        .count();
    assert_eq!(revoked, 2);
    app.verify_ok().await;
    app.stop().await;
}

/// A viewer's refused write, sent by `client`.
async fn refuse(app: &TestApp, client: &reqwest::Client, token: &str) {
    let r = client
        .post(format!("{}/api/v1/deployments", app.url))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(json!({"service": "web", "environment": "dev", "version": "1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Waits until a refusal of `marker` is on the chain; returns every entry after `after`.
async fn until_marker_on_chain(
    app: &TestApp,
    after: i64,
) -> Vec<shipgate_domain::audit::AuditEntry> {
    wait_until(
        "the marker's refusal is on the chain",
        std::time::Duration::from_secs(10),
        async || {
            let new = app.store.audit_entries(None, after, 100_000).await.unwrap();
            if new
                .iter()
                .any(|e| e.action == "access.denied" && e.actor == "marker")
            {
                Ok(new)
            } else {
                Err(format!("{new:?}"))
            }
        },
    )
    .await
}

/// Refusals of known identities leave `access.denied` entries on the audit chain, aggregated
/// per identity; unknown credentials are counted, never chained, and rate limited per address.
#[tokio::test]
async fn refusals_are_audited() {
    // A slow refill: once over the burst, the address stays blocked for the rest of the test.
    let app = TestApp::spawn_with(|s| s.auth.failures_per_minute = 1).await;
    let viewer = app.token_for("vic", "viewer", None).await;
    // Refusals reach the chain through a worker that aggregates them over a real-time window
    // and writes them in the order they came. A refusal of `marker` is a checkpoint: once its
    // entry is on the chain, so is every refusal queued before it.
    let marker = app.token_for("marker", "viewer", None).await;
    let start = app.store.audit_head().await.unwrap().seq;
    // A role that lacks the permission, a forged token, an injected tenant header.
    let r = app
        .post_as(
            "/api/v1/deployments",
            json!({"service": "web", "environment": "dev", "version": "1"}),
            &viewer,
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments",
            Some("sg_forged"),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 401);
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments",
            Some(&viewer),
            None,
            &[("x-shipgate-tenant", "other")],
        )
        .await;
    assert_eq!(r.status, 403);
    // No token at all is refused but not audited (scanners would flood the chain).
    assert_eq!(
        app.req(reqwest::Method::GET, "/api/v1/deployments", None, None, &[])
            .await
            .status,
        401
    );
    refuse(&app, &app.http, &marker).await;
    let seen: Vec<_> = until_marker_on_chain(&app, start)
        .await
        .into_iter()
        .filter(|e| e.action == "access.denied" && e.actor != "marker")
        .collect();
    let total: u64 = seen
        .iter()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.payload).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        total, 2,
        "the two refusals of vic, not the forged token: {seen:?}"
    );
    assert!(seen.iter().all(|e| e.actor == "vic"), "{seen:?}");
    assert!(seen.iter().any(|e| e.payload.contains("deployments")));

    // A flood of unknown credentials writes nothing to the chain and is throttled.
    let before = app.store.audit_head().await.unwrap().seq;
    let mut throttled = 0;
    for i in 0..80 {
        let r = app
            .req(
                reqwest::Method::GET,
                "/api/v1/deployments",
                Some(&format!("sg_bogus{i}")),
                None,
                &[],
            )
            .await;
        assert!(r.status == 401 || r.status == 429, "{}", r.status);
        if r.status == 429 {
            throttled += 1;
        }
    }
    assert!(throttled > 0, "failed authentication is rate limited");
    // While throttled, even a valid token from that address waits.
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/deployments",
            Some(&viewer),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 429);
    // 127.0.0.1 is blocked now, so the checkpoint comes from another loopback address (on
    // Linux all of 127.0.0.0/8 is the loopback interface).
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    refuse(&app, &elsewhere, &marker).await;
    let after = until_marker_on_chain(&app, before).await;
    assert!(
        after.len() == 1 && after[0].actor == "marker",
        "unknown credentials never reach the chain: {after:?}"
    );
    // This address is still blocked: verify through the store.
    let r = app.store.verify_audit().await.unwrap();
    assert!(r.ok, "{r:?}");
    app.stop().await;
}

/// A quarterly access review: who holds what, granted by whom, last used when; every privilege
/// attested or revoked; revocations take effect at once; the review is recorded.
#[tokio::test]
async fn access_review_attests_and_revokes() {
    let app = TestApp::spawn().await;
    let ci = app.token_for("ci", "deployer", None).await;
    let carol = app.token_for("carol", "approver", None).await;
    let ann = app.token_for("ann", "auditor", None).await;
    let r = app
        .post_as(
            "/api/v1/deployments",
            json!({"service": "web", "environment": "dev", "version": "1"}),
            &ci,
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    let ent = |tok: String| {
        let app = &app;
        async move {
            app.req(
                reqwest::Method::GET,
                "/api/v1/access-review",
                Some(&tok),
                None,
                &[],
            )
            .await
        }
    };
    let list = wait_until(
        "ci's last use is on record",
        std::time::Duration::from_secs(10),
        async || {
            let list = ent(ann.clone()).await.body;
            if list
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["subject"] == "ci" && e["last_used_at"].is_string())
            {
                Ok(list)
            } else {
                Err(list.to_string())
            }
        },
    )
    .await;
    let items = list.as_array().unwrap().clone();
    let find = |s: &str| items.iter().find(|e| e["subject"] == s).unwrap().clone();
    assert!(find("ci")["last_used_at"].is_string(), "{list}");
    assert!(find("carol")["last_used_at"].is_null(), "never used");
    assert_eq!(find("carol")["granted_by"], "admin");
    assert_eq!(
        ent(ci.clone()).await.status,
        403,
        "deployers do not review access"
    );

    let id = |s: &str| find(s)["token_id"].as_str().unwrap().to_owned();
    let mut decisions: Vec<serde_json::Value> = items
        .iter()
        .filter(|e| e["subject"] != "ann" && e["subject"] != "carol")
        .map(|e| json!({"token_id": e["token_id"], "decision": "attest"}))
        .collect();
    // Incomplete: carol is neither attested nor revoked.
    let r = app
        .post_as(
            "/api/v1/access-reviews",
            json!({"period": "2026-Q4", "decisions": decisions}),
            &ann,
            &[],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["code"], "incomplete");
    // Reviewing oneself is refused.
    let mut with_self = decisions.clone();
    with_self.push(json!({"token_id": id("ann"), "decision": "attest"}));
    with_self.push(json!({"token_id": id("carol"), "decision": "revoke"}));
    let r = app
        .post_as(
            "/api/v1/access-reviews",
            json!({"period": "2026-Q4", "decisions": with_self}),
            &ann,
            &[],
        )
        .await;
    assert_eq!(r.body["errors"][0]["code"], "self_review", "{}", r.body);
    decisions
        .push(json!({"token_id": id("carol"), "decision": "revoke", "comment": "left the CAB"}));
    let r = app
        .post_as(
            "/api/v1/access-reviews",
            json!({"period": "2026-Q4", "decisions": decisions}),
            &ann,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        app.req(
            reqwest::Method::GET,
            "/api/v1/whoami",
            Some(&carol),
            None,
            &[]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        app.req(reqwest::Method::GET, "/api/v1/whoami", Some(&ci), None, &[])
            .await
            .status,
        200
    );
    let reviews = app
        .req(
            reqwest::Method::GET,
            "/api/v1/access-reviews",
            Some(&ann),
            None,
            &[],
        )
        .await;
    assert_eq!(reviews.body.as_array().unwrap().len(), 1);
    assert_eq!(reviews.body[0]["reviewer"], "ann");
    let log = app.get("/api/v1/audit?limit=1000").await;
    assert!(
        log.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "access_review.completed")
    );
    app.verify_ok().await;
    app.stop().await;
}
