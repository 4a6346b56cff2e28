//! The one authorisation layer, route by route: every operation in the OpenAPI document has an
//! access rule; without a token it is refused (401) unless public; every role that lacks its
//! permission is refused (403); a role that has it gets past the layer.
use std::collections::BTreeMap;

use serde_json::Value;
use shipgate_domain::Role;
use shipgate_domain::access::{Permission, permits};

use crate::helpers::*;

#[tokio::test]
async fn every_route_is_authorised_by_one_layer() {
    let app = TestApp::spawn().await;
    // Emergency privileges need the policy's emergency group and a second admin.
    let holder = "who-emergency_deployer";
    assert_eq!(
        app.post("/api/v1/people", serde_json::json!({"subject": holder}))
            .await
            .status,
        201
    );
    let put = |path: &str, body: reqwest::Body, ct: &'static str| {
        let app = &app;
        let path = path.to_owned();
        async move {
            app.req(
                reqwest::Method::PUT,
                &path,
                Some(ADMIN),
                Some(body),
                &[("content-type", ct)],
            )
            .await
        }
    };
    let g = serde_json::json!({"members": [holder]}).to_string();
    assert_eq!(
        put("/api/v1/groups/oncall", g.into(), "application/json")
            .await
            .status,
        200
    );
    let policy = "[emergency]\ngroup = \"oncall\"\nincident_commanders = \"oncall\"\nsystem_owners = \"oncall\"\n";
    assert_eq!(
        put("/api/v1/policy", policy.into(), "application/toml")
            .await
            .status,
        201
    );
    let mut tokens = BTreeMap::new();
    for role in Role::ALL {
        let r = app
            .post(
                "/api/v1/tokens",
                serde_json::json!({"subject": format!("who-{role}"), "role": role.as_str()}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        if *role == Role::EmergencyDeployer {
            let second = app.independent_admin("second-admin").await;
            let c = app
                .post_as(
                    &format!("/api/v1/tokens/{}/confirm", r.body["id"].as_str().unwrap()),
                    serde_json::json!({}),
                    &second,
                    &[],
                )
                .await;
            assert_eq!(c.status, 200, "{}", c.body);
        }
        tokens.insert(*role, r.body["token"].as_str().unwrap().to_owned());
    }
    let doc = serde_json::to_value(shipgate_server::routes::openapi()).unwrap();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let m: reqwest::Method = method.to_uppercase().parse().unwrap();
            let perm = shipgate_server::authz::permission_for(&m, path)
                .unwrap_or_else(|| panic!("{method} {path} has no access rule"));
            let url = path
                .replace("{id}", "0190a5f6-0000-7000-8000-000000000000")
                .replace("{key}", "CR-1")
                .replace("{name}", "x")
                .replace("{tenant}", "default");
            let body = || Some(reqwest::Body::from("{}"));
            let json = [("content-type", "application/json")];
            let r = app.req(m.clone(), &url, None, body(), &json).await;
            if perm == Permission::Public {
                assert_ne!(r.status, 401, "{method} {path} is public");
            } else {
                assert_eq!(r.status, 401, "{method} {path} without a token: {}", r.body);
                assert_eq!(
                    r.headers["content-type"], "application/problem+json",
                    "{method} {path}"
                );
            }
            for (role, token) in &tokens {
                let r = app.req(m.clone(), &url, Some(token), body(), &json).await;
                let detail = r.body["detail"].as_str().unwrap_or("").to_owned();
                assert!(
                    r.status < 500,
                    "{method} {path} as {role}: {} {}",
                    r.status,
                    r.body
                );
                if permits(*role, perm) {
                    assert_ne!(r.status, 401, "{method} {path} as {role}");
                    assert!(
                        !(r.status == 403 && detail.contains("does not grant")),
                        "{method} {path} refused to {role}: {detail}"
                    );
                } else {
                    assert_eq!(r.status, 403, "{method} {path} as {role}: {}", r.body);
                    assert!(detail.contains("does not grant"), "{detail}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "{checked} route/role pairs checked");
    // Every rule names a real route (the OpenAPI document itself is served outside it).
    for (m, route, _) in shipgate_server::authz::ROUTES {
        if *route == "/api/v1/openapi.json" {
            continue;
        }
        assert!(
            doc["paths"][route][m.to_lowercase()].is_object(),
            "{m} {route} is not a route"
        );
    }
    let _ = Value::Null;
    app.stop().await;
}
