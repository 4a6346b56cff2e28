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
    let mut tokens = BTreeMap::new();
    for role in Role::ALL {
        tokens.insert(
            *role,
            app.token_for(&format!("who-{role}"), role.as_str(), None)
                .await,
        );
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
                .replace("{name}", "x");
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
