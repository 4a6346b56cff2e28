//! Authorisation figures for `shipgate-bench --suite authz`:
//! 1. The authorisation layer in-process (`authz::decide`: credential -> caller -> permission),
//!    20,000 calls per credential, p50/p99 in microseconds: an API token, an SSO access token
//!    from a real OpenID provider (`scripts/oidc-provider`, JWKS cached), and an SSO token whose
//!    role comes from a role grant. Baseline in the same run: a public route (rule lookup only).
//! 2. Gate reads through the whole router in-process (no socket), 16 concurrent tasks: with the
//!    caller already known (no authentication: the baseline), with an API token, and with an
//!    SSO token; throughput and the ratio to the baseline.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use shipgate_domain::Role;
use shipgate_server::auth::Caller;
use shipgate_server::{Application, Settings};
use tower::ServiceExt;

use crate::{TOKEN, pct};

struct Provider {
    issuer: String,
    _child: tokio::process::Child,
}

async fn provider() -> Option<Provider> {
    let m = std::env::var("SHIPGATE_OIDC_NODE_MODULES").unwrap_or_else(|_| {
        format!(
            "{}/.cache/shipgate-oidc/node_modules",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    if !std::path::Path::new(&format!("{m}/oidc-provider")).exists() {
        println!("authz: oidc-provider not installed in {m}: SSO figures skipped");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/oidc-provider/server.mjs"
    );
    let child = tokio::process::Command::new("node")
        .arg(script)
        .env("PORT", port.to_string())
        .env("OIDC_NODE_MODULES", &m)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let issuer = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Some(Provider {
                issuer,
                _child: child,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("authz: the OIDC provider did not start: SSO figures skipped");
    None
}

async fn sso_token(p: &Provider, client: &str) -> String {
    let secret = format!("{}-secret", client.trim_start_matches("shipgate-"));
    let r: Value = reqwest::Client::new()
        .post(format!("{}/token", p.issuer))
        .basic_auth(client, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", "urn:shipgate"),
            ("scope", "shipgate"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_owned()
}

async fn send(router: &axum::Router, req: Request<Body>) -> (u16, Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn request(method: &str, uri: &str, token: Option<&str>, body: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(body.map_or_else(Body::empty, |s| Body::from(s.to_owned())))
        .unwrap()
}

/// p50/p99 of `authz::decide` for one credential, in microseconds.
async fn micro(
    state: &shipgate_server::state::AppState,
    route: &str,
    token: Option<&str>,
) -> (f64, f64) {
    let mut lat = Vec::with_capacity(20_000);
    for i in 0..22_000 {
        let (mut parts, _) = request("GET", "/x", token, None).into_parts();
        let t = Instant::now();
        let r = shipgate_server::authz::decide(state, route, &mut parts).await;
        let e = t.elapsed();
        assert!(r.is_ok(), "the credential is accepted");
        if i >= 2_000 {
            lat.push(e);
        }
    }
    lat.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(pct(&lat, 0.5)), us(pct(&lat, 0.99)))
}

/// Gate reads per second through the router, `tasks` at a time, for `secs`.
async fn gate_rate(
    router: &axum::Router,
    uri: &str,
    token: Option<String>,
    caller: Option<Caller>,
    secs: u64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (router, uri, token, caller, stop) = (
            router.clone(),
            uri.to_owned(),
            token.clone(),
            caller.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut req = request("GET", &uri, token.as_deref(), None);
                if let Some(c) = &caller {
                    req.extensions_mut().insert(c.clone());
                }
                let resp = router.clone().oneshot(req).await.unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = axum::body::to_bytes(resp.into_body(), 1 << 20).await;
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / t0.elapsed().as_secs_f64()
}

pub async fn run() {
    let provider = provider().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("authz.db").display()),
        admin_token: Some(TOKEN.to_owned().into()),
        ..Settings::default()
    };
    if let Some(p) = &provider {
        settings.oidc.issuer = Some(p.issuer.clone());
        settings.oidc.audience = Some("urn:shipgate".into());
        settings
            .oidc
            .role_map
            .insert("shipgate-deployers".into(), Role::Deployer);
    }
    let (app, _) = Application::build(
        settings,
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await
    .unwrap();
    let (router, state) = (app.router(), app.state());

    // A standard change (auto-approved) to read the gate of, and a deployer token.
    let (s, v) = send(
        &router,
        request(
            "POST",
            "/api/v1/people",
            Some(TOKEN),
            Some(r#"{"subject": "alice", "token_role": "deployer"}"#),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let alice = v["token"].as_str().unwrap().to_owned();
    let policy = "[[rule]]\nname = \"standard\"\nauto_approve = true\n[rule.match]\nchange_type = [\"standard\"]\n";
    let mut req = request("PUT", "/api/v1/policy", Some(TOKEN), None);
    *req.body_mut() = Body::from(policy);
    req.headers_mut()
        .insert("content-type", "application/toml".parse().unwrap());
    let (s, v) = send(&router, req).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = send(
        &router,
        request(
            "POST",
            "/api/v1/changes",
            Some(&alice),
            Some(&json!({"type": "standard", "title": "bench", "services": ["svc"], "environments": ["staging"]}).to_string()),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let gate = format!(
        "/api/v1/gate?change={}&environment=staging",
        v["key"].as_str().unwrap()
    );

    let (b50, b99) = micro(&state, "/healthz", None).await;
    println!(
        "authz micro: public route (rule lookup only, the baseline): p50 {b50:.2} us, p99 {b99:.2} us"
    );
    let (t50, t99) = micro(&state, "/api/v1/gate", Some(&alice)).await;
    println!(
        "authz micro: API token (hash, cache, role check): p50 {t50:.2} us, p99 {t99:.2} us (+{:.2} us at p99 over the baseline; budget 50 us)",
        t99 - b99
    );
    let mut sso = None;
    if let Some(p) = &provider {
        let ci = sso_token(p, "shipgate-ci").await;
        let (s50, s99) = micro(&state, "/api/v1/gate", Some(&ci)).await;
        println!(
            "authz micro: SSO access token (RS256, JWKS cached, group -> role): p50 {s50:.2} us, p99 {s99:.2} us (+{:.2} us at p99; budget 50 us)",
            s99 - b99
        );
        // A caller whose role comes from a role grant (no mapped group).
        let (s, v) = send(
            &router,
            request(
                "POST",
                "/api/v1/role-grants",
                Some(TOKEN),
                Some(r#"{"subject": "shipgate-nobody", "role": "deployer"}"#),
            ),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        let nobody = sso_token(p, "shipgate-nobody").await;
        let (g50, g99) = micro(&state, "/api/v1/gate", Some(&nobody)).await;
        println!(
            "authz micro: SSO token, role from a role grant: p50 {g50:.2} us, p99 {g99:.2} us (+{:.2} us at p99; budget 50 us)",
            g99 - b99
        );
        sso = Some(ci);
    }

    let caller = Caller {
        tenant: "default".into(),
        subject: "alice".into(),
        role: Role::Deployer,
        root: false,
        env_tier: None,
    };
    // Warm up, then measure each mode.
    gate_rate(&router, &gate, None, Some(caller.clone()), 1).await;
    // The baseline before and after the others, averaged, to even out drift.
    let base1 = gate_rate(&router, &gate, None, Some(caller.clone()), 4).await;
    let tok = gate_rate(&router, &gate, Some(alice.clone()), None, 4).await;
    let sso_rate = match &sso {
        Some(ci) => Some(gate_rate(&router, &gate, Some(ci.clone()), None, 4).await),
        None => None,
    };
    let base2 = gate_rate(&router, &gate, None, Some(caller), 4).await;
    let base = (base1 + base2) / 2.0;
    println!(
        "authz gate reads in-process, 16 tasks, every call logged: no authentication (baseline) {base:.0}/s ({base1:.0} before, {base2:.0} after) | API token {tok:.0}/s ({:.1}%)",
        100.0 * tok / base
    );
    if let Some(s) = sso_rate {
        println!(
            "authz gate reads in-process: SSO token {s:.0}/s ({:.1}% of the baseline; target >= 90%)",
            100.0 * s / base
        );
    }
    app.shutdown_token().cancel();
}
