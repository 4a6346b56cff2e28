//! Gate figures for `shipgate-bench --suite gate`:
//! 1. Approval-to-unblock latency: a real `shipgate gate wait` process waits on a change; the
//!    approval is sent; the figure is from sending the approval to the process exiting 0 (an
//!    upper bound of commit-to-return). One instance, and (PostgreSQL) the waiter on instance A
//!    with the approval landing on instance B. Baseline: the approval request's own round trip.
//! 2. Gate read throughput: concurrent clients asking the gate (no wait) for an approved
//!    change, every call logged, beside `/healthz` on the same server.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipgate_server::{Application, Settings};

use crate::{TOKEN, fresh_url, ms, pct};

const POLICY: &str = r#"
[[rule]]
name = "staging"
approvals = [{ group = "owners" }]
validity = "1h"
[rule.match]
env_tier = ["staging"]
change_type = ["normal"]

[[rule]]
name = "standard"
auto_approve = true
[rule.match]
change_type = ["standard"]
"#;

struct Server {
    base: String,
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(url: &str) -> Server {
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: url.to_owned(),
        admin_token: Some(TOKEN.to_owned().into()),
        ..Settings::default()
    };
    let (app, _) = Application::build(
        settings,
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.shutdown_token();
    let handle = tokio::spawn(app.run());
    Server { base, stop, handle }
}

impl Server {
    async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Value {
    let mut r = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {v}");
    v
}

/// People, groups and the policy; returns (alice's token, olga's token).
async fn setup(http: &reqwest::Client, base: &str) -> (String, String) {
    let mut tokens = Vec::new();
    for (who, role) in [("alice", "deployer"), ("olga", "approver")] {
        let v = call(
            http,
            reqwest::Method::POST,
            format!("{base}/api/v1/people"),
            TOKEN,
            Some(json!({"subject": who, "token_role": role})),
        )
        .await;
        tokens.push(v["token"].as_str().unwrap().to_owned());
    }
    call(
        http,
        reqwest::Method::PUT,
        format!("{base}/api/v1/groups/owners"),
        TOKEN,
        Some(json!({"members": ["olga"]})),
    )
    .await;
    let r = http
        .put(format!("{base}/api/v1/policy"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/toml")
        .body(POLICY)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    (tokens[0].clone(), tokens[1].clone())
}

async fn open_change(http: &reqwest::Client, base: &str, alice: &str, kind: &str) -> String {
    let v = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/changes"),
        alice,
        Some(json!({"type": kind, "title": "bench", "services": ["svc"], "environments": ["staging"]})),
    )
    .await;
    v["key"].as_str().unwrap().to_owned()
}

fn shipgate_exe() -> std::path::PathBuf {
    let me = std::env::current_exe().unwrap();
    me.with_file_name(format!("shipgate{}", std::env::consts::EXE_SUFFIX))
}

/// Approval-to-unblock, `n` times: waiter on `wait_base`, approval sent to `approve_base`.
async fn unblock(
    http: &reqwest::Client,
    wait_base: &str,
    approve_base: &str,
    alice: &str,
    olga: &str,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let exe = shipgate_exe();
    assert!(
        exe.exists(),
        "{} is missing: build both binaries first: cargo build --release -p shipgate -p shipgate-bench",
        exe.display()
    );
    let mut lat = Vec::new();
    let mut approve_rt = Vec::new();
    for _ in 0..n {
        let cr = open_change(http, wait_base, alice, "normal").await;
        let mut child = tokio::process::Command::new(&exe)
            .args([
                "gate",
                "wait",
                "--change",
                &cr,
                "--env",
                "staging",
                "--timeout",
                "60s",
            ])
            .env("SHIPGATE_URL", wait_base)
            .env("SHIPGATE_TOKEN", alice)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let the waiter reach the server and park (its first answer is pending).
        tokio::time::sleep(Duration::from_millis(150)).await;
        let t = Instant::now();
        call(
            http,
            reqwest::Method::POST,
            format!("{approve_base}/api/v1/changes/{cr}/decisions"),
            olga,
            Some(json!({"decision": "approve", "revision": 1})),
        )
        .await;
        approve_rt.push(t.elapsed());
        let status = child.wait().await.unwrap();
        lat.push(t.elapsed());
        assert!(status.success(), "gate wait must exit 0 after the approval");
    }
    lat.sort();
    approve_rt.sort();
    (lat, approve_rt)
}

async fn hammer(
    http: &reqwest::Client,
    url: String,
    token: String,
    clients: usize,
    secs: u64,
) -> (f64, Vec<Duration>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for _ in 0..clients {
        let (http, url, token, stop) = (http.clone(), url.clone(), token.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
                assert!(r.status().is_success());
                let _ = r.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let rate = all.len() as f64 / t0.elapsed().as_secs_f64();
    all.sort();
    (rate, all)
}

pub async fn run(backend: &str, iterations: usize, clients: usize) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(backend, &dir, "gate").await;
    let a = start(&url).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let (alice, olga) = setup(&http, &a.base).await;

    let (lat, rt) = unblock(&http, &a.base, &a.base, &alice, &olga, iterations).await;
    println!(
        "gate[{backend}] approval-to-unblock, one instance, {iterations} runs of `shipgate gate wait`: p50 {:.1} ms, p99 {:.1} ms (approval request alone: p50 {:.1} ms, p99 {:.1} ms)",
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(pct(&rt, 0.5)),
        ms(pct(&rt, 0.99))
    );
    if backend == "postgres" {
        let b = start(&url).await;
        let (lat, rt) = unblock(&http, &a.base, &b.base, &alice, &olga, iterations).await;
        println!(
            "gate[{backend}] approval-to-unblock across two instances (wait on A, approve on B, LISTEN/NOTIFY): p50 {:.1} ms, p99 {:.1} ms (approval request alone: p99 {:.1} ms)",
            ms(pct(&lat, 0.5)),
            ms(pct(&lat, 0.99)),
            ms(pct(&rt, 0.99))
        );
        b.shutdown().await;
    }

    // Authorisation overhead: one client, sequential, the public /healthz against /whoami (token
    // lookup through the cache plus the authorisation layer) on the same server.
    let seq = |url: String, token: Option<String>| {
        let http = http.clone();
        async move {
            let mut lat = Vec::with_capacity(5000);
            for i in 0..5500 {
                let t = Instant::now();
                let mut r = http.get(&url);
                if let Some(tk) = &token {
                    r = r.bearer_auth(tk);
                }
                let resp = r.send().await.unwrap();
                assert!(resp.status().is_success());
                let _ = resp.bytes().await.unwrap();
                if i >= 500 {
                    lat.push(t.elapsed());
                }
            }
            lat.sort();
            lat
        }
    };
    let open = seq(format!("{}/healthz", a.base), None).await;
    let authed = seq(format!("{}/api/v1/whoami", a.base), Some(alice.clone())).await;
    let d = |p: f64| (pct(&authed, p).as_secs_f64() - pct(&open, p).as_secs_f64()) * 1e6;
    println!(
        "authz[{backend}] /whoami (token + authorisation layer) vs /healthz, 5000 sequential calls: p50 {:.0} us vs {:.0} us (+{:.0} us), p99 {:.0} us vs {:.0} us (+{:.0} us)",
        pct(&authed, 0.5).as_secs_f64() * 1e6,
        pct(&open, 0.5).as_secs_f64() * 1e6,
        d(0.5),
        pct(&authed, 0.99).as_secs_f64() * 1e6,
        pct(&open, 0.99).as_secs_f64() * 1e6,
        d(0.99)
    );

    let cr = open_change(&http, &a.base, &alice, "standard").await;
    let gate_url = format!("{}/api/v1/gate?change={cr}&environment=staging", a.base);
    let v = call(&http, reqwest::Method::GET, gate_url.clone(), &alice, None).await;
    assert_eq!(v["state"], "allowed");
    // Decisions per second at p99 under 5 ms: the best rate over client counts whose p99 stays
    // under 5 ms, beside /healthz at the same client count.
    let mut best: Option<(usize, f64, Duration, f64)> = None;
    for c in [2usize, 4, 8, clients] {
        let (hz, _) = hammer(&http, format!("{}/healthz", a.base), alice.clone(), c, 3).await;
        let (gz, gz_lat) = hammer(&http, gate_url.clone(), alice.clone(), c, 3).await;
        let p99 = pct(&gz_lat, 0.99);
        println!(
            "gate[{backend}] gate reads, {c} clients (each decision logged before it is answered): {gz:.0}/s, p50 {:.2} ms, p99 {:.2} ms | /healthz, same clients: {hz:.0}/s | ratio {:.1}%",
            ms(pct(&gz_lat, 0.5)),
            ms(p99),
            100.0 * gz / hz
        );
        if p99 < Duration::from_millis(5) && best.is_none_or(|b| gz > b.1) {
            best = Some((c, gz, p99, hz));
        }
    }
    match best {
        Some((c, gz, p99, hz)) => println!(
            "gate[{backend}] => {gz:.0} decisions/s at p99 {:.2} ms ({c} clients); /healthz {hz:.0}/s; ratio {:.1}%",
            ms(p99),
            100.0 * gz / hz
        ),
        None => println!("gate[{backend}] => no client count kept the gate's p99 under 5 ms"),
    }
    a.shutdown().await;
}
