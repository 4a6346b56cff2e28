//! Tenant isolation, route by route, on SQLite and PostgreSQL: a tenant's admin asks every
//! read route of the API about another tenant's records; each answers 404 or an empty list,
//! and no response carries the other tenant's identifiers.
use serde_json::json;

use crate::approvals::{push_policy, setup};
use crate::helpers::*;

async fn isolation(app: TestApp) {
    // Tenant "default": people, groups, a policy, a change, a deployment, a delegation.
    let p = setup(&app).await;
    let r = app
        .post_as(
            "/api/v1/changes",
            json!({"type": "normal", "title": "secret-change-title", "services": ["secret-svc"], "environments": ["staging"]}),
            &p.alice,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cr = r.body["key"].as_str().unwrap().to_owned();
    let change_id = r.body["id"].as_str().unwrap().to_owned();
    let r = app
        .post_as("/api/v1/deployments", json!({"service": "secret-svc", "environment": "staging", "version": "9.9.9", "change_ref": cr}), &p.alice, &[])
        .await;
    assert_eq!(r.status, 201);
    let dep = r.body["id"].as_str().unwrap().to_owned();
    let until = shipgate_domain::time::format(chrono::Utc::now() + chrono::Duration::hours(1));
    let r = app
        .post_as(
            "/api/v1/delegations",
            json!({"to": "erin", "ends_at": until, "reason": "secret-reason"}),
            &p.olga,
            &[],
        )
        .await;
    assert_eq!(r.status, 201);
    let delegation = r.body["id"].as_str().unwrap().to_owned();
    let hash = app.get("/api/v1/policy").await.body["hash"]
        .as_str()
        .unwrap()
        .to_owned();

    // Tenant "acme": its own admin, its own (empty) world.
    let acme = app.token_for("acme-admin", "admin", Some("acme")).await;
    let markers = [
        dep.as_str(),
        change_id.as_str(),
        "secret-svc",
        "secret-change-title",
        "secret-reason",
        "olga",
        hash.as_str(),
        delegation.as_str(),
    ];
    let doc = serde_json::to_value(shipgate_server::routes::openapi()).unwrap();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        if ops.get("get").is_none() || !path.starts_with("/api/v1/") {
            continue;
        }
        let url = path
            .replace("{id}", &dep)
            .replace("{key}", &cr)
            .replace("{name}", "cab");
        let url = match path.as_str() {
            "/api/v1/gate" => format!("{url}?change={cr}&environment=staging"),
            "/api/v1/environments/resolve" => format!("{url}?label=staging"),
            "/api/v1/audit" => format!("{url}?limit=1000"),
            _ => url,
        };
        let r = app
            .req(reqwest::Method::GET, &url, Some(&acme), None, &[])
            .await;
        if path == "/api/v1/audit/verify" || path == "/api/v1/audit/head" {
            // Root only: the whole chain, every tenant.
            assert_eq!(r.status, 403, "GET {url} as a tenant admin: {}", r.body);
            continue;
        }
        assert!(
            r.status == 200 || r.status == 404,
            "GET {url} as another tenant: {} {}",
            r.status,
            r.body
        );
        let text = r.body.to_string();
        for m in markers {
            assert!(
                !text.contains(m),
                "GET {url} leaks {m} to another tenant: {text}"
            );
        }
        if path.contains('{') {
            assert_eq!(
                r.status, 404,
                "GET {url}: another tenant's record reads as 404"
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "{checked} read routes");
    // The gate does not open, and writes cannot reach the other tenant's change.
    let r = app
        .req(
            reqwest::Method::GET,
            &format!("/api/v1/gate?change={cr}&environment=staging"),
            Some(&acme),
            None,
            &[],
        )
        .await;
    assert_eq!(r.body["state"], "denied");
    let r = app
        .post_as(
            &format!("/api/v1/changes/{cr}/decisions"),
            json!({"decision": "reject", "revision": 1}),
            &acme,
            &[],
        )
        .await;
    assert!(r.status == 404 || r.status == 409, "{}", r.body);
    assert_eq!(
        app.get(&format!("/api/v1/changes/{cr}")).await.body["status"],
        "pending"
    );
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/api/v1/delegations/{delegation}"),
            Some(&acme),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    // The other tenant's policy is its own.
    let r = push_policy(
        &app,
        "[[rule]]\nname = \"x\"\n[rule.match]\nenv_tier = [\"test\"]\n",
    )
    .await;
    assert_eq!(r.status, 201);
    app.stop().await;
}

#[tokio::test]
async fn tenants_are_isolated_on_sqlite() {
    isolation(TestApp::spawn().await).await;
}

#[tokio::test]
async fn tenants_are_isolated_on_postgres() {
    let Some(url) = fresh_pg().await else { return };
    isolation(TestApp::spawn_on(url, tempfile::tempdir().unwrap(), |_| {}).await).await;
}
