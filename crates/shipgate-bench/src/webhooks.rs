//! Webhook ingest figures for `shipgate-bench --suite webhooks`: GitHub `deployment_status`
//! deliveries per second (signature check, delivery dedupe, the deployment recorded and its
//! status appended, the delivery recorded) beside the plain API ingest of the same deployments
//! (`POST /deployments` with the final status), in the same run on the same server kind.
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use shipgate_server::{Application, Settings};

use crate::{TOKEN, ms, pct};

const SECRET: &str = "bench-secret";

fn payload(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "created",
        "deployment_status": {"id": 1_000_000 + i, "state": "success", "created_at": "2026-11-20T10:00:00Z",
            "creator": {"login": "ci[bot]"}, "description": "deployed"},
        "deployment": {"id": i, "sha": format!("{:040x}", i), "ref": "main", "environment": "staging",
            "task": "deploy", "payload": {}, "creator": {"login": "ci[bot]", "type": "Bot"},
            "created_at": "2026-11-20T09:59:00Z"},
        "repository": {"id": 42, "name": format!("svc-{}", i % 20), "full_name": "acme/svc",
            "html_url": "https://github.com/acme/svc"},
        "sender": {"login": "ci[bot]"}
    }))
    .unwrap()
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn drive(
    base: &str,
    n: usize,
    clients: usize,
    webhook: bool,
    offset: usize,
) -> (f64, Vec<Duration>) {
    let http = reqwest::Client::new();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base) = (http.clone(), base.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while i < n {
                let k = offset + i;
                let t = Instant::now();
                let r = if webhook {
                    let body = payload(k);
                    http.post(format!("{base}/api/v1/webhooks/default/github"))
                        .header("x-github-event", "deployment_status")
                        .header("x-github-delivery", format!("bench-{k}"))
                        .header("x-hub-signature-256", sign(&body))
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                } else {
                    http.post(format!("{base}/api/v1/deployments"))
                        .bearer_auth(TOKEN)
                        .json(&json!({"service": format!("svc-{}", k % 20), "environment": "staging",
                            "version": format!("{:012x}", k), "commit_sha": format!("{:040x}", k), "git_ref": "main",
                            "status": "succeeded", "deployer": "ci[bot]", "deployer_type": "pipeline",
                            "started_at": "2026-11-20T09:59:00Z", "finished_at": "2026-11-20T10:00:00Z"}))
                        .send()
                        .await
                        .unwrap()
                };
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                assert!(status.is_success(), "{status}: {text}");
                lat.push(t.elapsed());
                i += clients;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / t0.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

pub async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("webhooks.db").display()),
        admin_token: Some(TOKEN.to_owned().into()),
        ..Settings::default()
    };
    settings.webhooks.insert(
        "default".into(),
        shipgate_server::routes::webhooks::WebhookSecrets {
            github_secret: Some(SECRET.to_owned().into()),
            gitlab_token: Some(SECRET.to_owned().into()),
            ..Default::default()
        },
    );
    let (app, _) = Application::build(
        settings,
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let n = 5000;
    let clients = 16;
    // Warm up both paths.
    drive(&base, 200, clients, true, 10_000_000).await;
    drive(&base, 200, clients, false, 20_000_000).await;
    let (api, api_lat) = drive(&base, n, clients, false, 0).await;
    let (hook, hook_lat) = drive(&base, n, clients, true, 1_000_000).await;
    println!(
        "webhooks[sqlite] GitHub deployment_status, {n} deliveries, {clients} clients (signature, dedupe, deployment + status, delivery record): {hook:.0}/s, p50 {:.1} ms, p99 {:.1} ms | baseline, API ingest of the same deployments: {api:.0}/s, p50 {:.1} ms, p99 {:.1} ms | ratio {:.1}%",
        ms(pct(&hook_lat, 0.5)),
        ms(pct(&hook_lat, 0.99)),
        ms(pct(&api_lat, 0.5)),
        ms(pct(&api_lat, 0.99)),
        100.0 * hook / api
    );
    stop.cancel();
    let _ = server.await;
}
