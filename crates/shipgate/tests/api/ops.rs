use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn health_ready_metrics_and_problem_fallback() {
    let app = TestApp::spawn().await;
    let h = app
        .req(reqwest::Method::GET, "/healthz", None, None, &[])
        .await;
    assert_eq!((h.status, h.body["status"].as_str()), (200, Some("ok")));
    let r = app
        .req(reqwest::Method::GET, "/readyz", None, None, &[])
        .await;
    assert_eq!((r.status, r.body["store"].as_str()), (200, Some("sqlite")));
    app.post("/api/v1/deployments", prod_body("web", "1", 1))
        .await;
    let m = app
        .req(reqwest::Method::GET, "/metrics", None, None, &[])
        .await;
    let text = m.body.as_str().unwrap().to_owned();
    assert!(
        text.contains("shipgate_http_request_duration_seconds"),
        "{text}"
    );
    assert!(
        text.contains("path=\"/api/v1/deployments\""),
        "metrics are labelled by matched route"
    );
    let nf = app.get("/api/v1/nope").await;
    assert_eq!(nf.status, 404);
    assert_eq!(nf.headers["content-type"], "application/problem+json");
    assert_eq!(nf.body["code"], "not_found");
    assert!(nf.body["request_id"].is_string());
    app.stop().await;
}

/// Every path in the OpenAPI document is a real route, and every documented operation refuses
/// an unauthenticated call (except the open ops endpoints).
#[tokio::test]
async fn openapi_matches_the_routes() {
    let app = TestApp::spawn().await;
    let doc = app
        .req(
            reqwest::Method::GET,
            "/api/v1/openapi.json",
            None,
            None,
            &[],
        )
        .await
        .body;
    assert_eq!(
        doc["openapi"].as_str().map(|v| v.starts_with("3.")),
        Some(true)
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 14, "{:?}", paths.keys().collect::<Vec<_>>());
    for (path, ops) in paths {
        for (method, _) in ops.as_object().unwrap() {
            let concrete = path.replace("{id}", "01950000-0000-7000-8000-000000000000");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = app
                .req(
                    m,
                    &concrete,
                    None,
                    Some(reqwest::Body::from("{}")),
                    &[("content-type", "application/json")],
                )
                .await;
            assert_ne!(
                r.status, 405,
                "{method} {path} is documented but not routed"
            );
            if ["/healthz", "/readyz", "/metrics"].contains(&path.as_str()) {
                assert_eq!(r.status, 200, "{path}");
            } else if path.starts_with("/api/v1/webhooks/") {
                // Authenticated by the tenant's webhook secret: no secret, no webhook (or,
                // without the header the source authenticates with, a 422 naming it).
                assert!(
                    r.status == 404 || r.status == 422,
                    "{method} {path}: {}",
                    r.status
                );
            } else {
                assert_eq!(r.status, 401, "{method} {path} must require a token");
                assert_eq!(r.body["code"], Value::from("unauthenticated"));
            }
        }
    }
    app.stop().await;
}

/// The problem document's shape is a contract.
#[tokio::test]
async fn problem_shape_is_stable() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/api/v1/deployments",
            serde_json::json!({"environment": "dev"}),
        )
        .await;
    assert_eq!(r.status, 422);
    let mut keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "code",
            "detail",
            "errors",
            "request_id",
            "status",
            "title",
            "type"
        ]
    );
    assert_eq!(r.body["type"], "urn:shipgate:problem:validation_failed");
    assert_eq!(r.body["status"], 422);
    let e = &r.body["errors"][0];
    let mut ek: Vec<&String> = e.as_object().unwrap().keys().collect();
    ek.sort();
    assert_eq!(ek, ["code", "field", "message"]);
    app.stop().await;
}

/// The served OpenAPI document is pinned whole: any change to the API's contract (a path, a
/// parameter, a schema, a description) shows up as a snapshot diff and fails until accepted.
/// To accept a deliberate change: `cargo insta review` (or
/// `INSTA_UPDATE=always cargo test -p shipgate --test api ops::openapi_document_is_pinned`),
/// then commit the updated `snapshots/api__ops__openapi.snap`.
#[tokio::test]
async fn openapi_document_is_pinned() {
    let app = TestApp::spawn().await;
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/openapi.json",
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 200);
    // Parsed into a `Value` (sorted maps), and sorted again when written: key order never
    // depends on how the server happened to serialise the document.
    let doc: Value = r.body;
    assert!(doc.is_object(), "{doc}");
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!("openapi", doc);
    });
    app.stop().await;
}
