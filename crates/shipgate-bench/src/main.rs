//! `shipgate-bench`: throughput and latency figures, each beside a baseline measured in the
//! same run on the same machine. Not a test: it prints figures for the issue notes.
//!
//!   cargo build --release -p shipgate -p shipgate-bench
//!   target/release/shipgate-bench [--suite all|ingest|queries|gate|authz|stream|webhooks]
//!                  [--backend sqlite|postgres|both] [--requests N] [--concurrency C] [--rows N]
//!
//! The gate suite runs `shipgate gate wait` from the `shipgate` binary beside this one, so
//! build both.
//!
//! 1. Durable ingest over HTTP on loopback: concurrent clients create deployments, each
//!    answered only after its group-commit transaction committed. Ceiling: raw multi-row
//!    inserts of the same rows into the same store, 1,000 rows per transaction, same
//!    durability (SQLite WAL + synchronous=FULL; PostgreSQL defaults with fsync).
//! 2. History and "what is running where" over N deployments (default 1,000,000), p99,
//!    beside the p99 of a primary-key lookup in the same store.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// mimalloc: the system allocator's free lists were a measurable share of request time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Duration as Span;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shipgate_domain::environment::Taxonomy;
use shipgate_domain::input::{Context, parse_create};
use shipgate_domain::requirements::Requirements;
use shipgate_domain::time::{Clock, SystemClock, format};
use shipgate_domain::*;
use shipgate_server::{Application, Settings};
use shipgate_store::Store;

/// A named history query, built for the i-th iteration.
type FilterCase<'a> = (&'static str, Box<dyn Fn(usize) -> DeploymentFilter + 'a>);

pub(crate) const TOKEN: &str = "sg_bench_token_0123456789abcdef";

mod authz;
mod gate;
mod stream;
mod webhooks;

const USAGE: &str = "\
usage: shipgate-bench [--suite all|ingest|queries|gate|authz|stream|webhooks]
                      [--backend sqlite|postgres|both] [--requests N] [--concurrency C] [--rows N]

Build both binaries first: the gate suite runs the `shipgate` binary beside this one.
  cargo build --release -p shipgate -p shipgate-bench
  target/release/shipgate-bench --suite gate";

struct Args {
    suite: String,
    backend: String,
    requests: usize,
    concurrency: usize,
    rows: usize,
}

fn args() -> Args {
    let mut a = Args {
        suite: "all".into(),
        backend: "both".into(),
        requests: 40_000,
        concurrency: 64,
        rows: 1_000_000,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--suite" => a.suite = val,
            "--backend" => a.backend = val,
            "--requests" => a.requests = val.parse().expect("--requests N"),
            "--concurrency" => a.concurrency = val.parse().expect("--concurrency N"),
            "--rows" => a.rows = val.parse().expect("--rows N"),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

pub(crate) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn body(i: usize) -> Value {
    json!({"service": format!("svc-{}", i % 40), "environment": (["prod-eu-west-1", "staging", "dev"][i % 3]),
           "version": format!("1.{}.{}", i / 1000, i % 1000), "commit_sha": format!("{:040x}", i),
           "artifact": format!("registry.example.com/team/svc@sha256:{:064x}", i), "deployer": "ci-bot",
           "correlation_id": format!("run-{i}"), "labels": {"pipeline": "bench"}})
}

pub(crate) async fn fresh_url(backend: &str, dir: &tempfile::TempDir, name: &str) -> String {
    if backend == "sqlite" {
        return format!(
            "sqlite://{}",
            dir.path().join(format!("{name}.db")).display()
        );
    }
    let base = std::env::var("SHIPGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = sqlx::PgPool::connect(&base)
        .await
        .expect("PostgreSQL reachable");
    let db = format!("sg_bench_{name}_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    format!("{}/{db}", base.rsplit_once('/').unwrap().0)
}

async fn ingest(backend: &str, a: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(backend, &dir, "ingest").await;
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: url,
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
    let base = format!("http://127.0.0.1:{}/api/v1/deployments", app.port());
    let stop = app.shutdown_token();
    let server = tokio::spawn(app.run());
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..a.requests + 1000)
            .map(|i| body(i).to_string())
            .collect(),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .build()
        .unwrap();

    let run = |from: usize, n: usize| {
        let next = Arc::new(AtomicUsize::new(from));
        let mut tasks = Vec::new();
        for _ in 0..a.concurrency {
            let (next, bodies, client, base) =
                (next.clone(), bodies.clone(), client.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= from + n {
                        break;
                    }
                    let t = Instant::now();
                    let r = client
                        .post(&base)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body(bodies[i].clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        r.status().as_u16(),
                        201,
                        "{}",
                        r.text().await.unwrap_or_default()
                    );
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        async move {
            let t = Instant::now();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            (t.elapsed(), all)
        }
    };
    run(0, 1000).await; // warm-up
    let (elapsed, mut lat) = run(1000, a.requests).await;
    lat.sort();
    let rps = a.requests as f64 / elapsed.as_secs_f64();
    stop.cancel();
    server.await.unwrap().unwrap();

    // Ceiling: the same rows straight into a fresh store of the same kind.
    let url = fresh_url(backend, &dir, "ceiling").await;
    let tax = Taxonomy::default();
    let req = Requirements::default();
    let now = SystemClock.now();
    let rows: Vec<(NewDeployment, DeploymentStatus, Option<time::Timestamp>)> = (1000..1000
        + a.requests)
        .map(|i| {
            let ctx = Context {
                tenant: "default",
                recorded_by: "bench",
                now,
                taxonomy: &tax,
                requirements: &req,
                declared_environment: &|_| None,
                backfill: false,
            };
            (
                parse_create(&body(i), &ctx).unwrap().deployment,
                DeploymentStatus::Started,
                None,
            )
        })
        .collect();
    let t = Instant::now();
    raw_insert(&url, &rows, 1000).await;
    let ceiling = a.requests as f64 / t.elapsed().as_secs_f64();
    // The store alone: the same rows through the audited group-commit path, 64 per transaction.
    let url = fresh_url(backend, &dir, "direct").await;
    let store = shipgate_store::open(&url).await.unwrap();
    let cmds: Vec<CreateDeployment> = rows
        .iter()
        .map(|(d, _, _)| CreateDeployment {
            deployment: NewDeployment {
                id: uuid::Uuid::now_v7(),
                ..d.clone()
            },
            idempotency: None,
            delivery: None,
        })
        .collect();
    let t = Instant::now();
    for chunk in cmds.chunks(a.concurrency) {
        store
            .create_deployments(chunk.to_vec(), now, false)
            .await
            .unwrap();
    }
    let direct = a.requests as f64 / t.elapsed().as_secs_f64();
    println!(
        "ingest[{backend}] store alone (audited group commit, {} per transaction): {:.0}/s | ratio to ceiling {:.1}%",
        a.concurrency,
        direct,
        100.0 * direct / ceiling
    );
    println!(
        "ingest[{backend}] {} creates over HTTP, {} clients: {:.0}/s acknowledged after commit, p50 {:.2} ms, p99 {:.2} ms | ceiling (raw multi-row inserts, 1000 rows/tx): {:.0}/s | ratio {:.1}%",
        a.requests,
        a.concurrency,
        rps,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ceiling,
        100.0 * rps / ceiling
    );
}

async fn raw_insert(
    url: &str,
    rows: &[(NewDeployment, DeploymentStatus, Option<time::Timestamp>)],
    per_tx: usize,
) {
    if url.starts_with("sqlite:") {
        shipgate_store::sqlite::SqliteStore::open(url)
            .await
            .unwrap()
            .raw_insert_deployments(rows, per_tx)
            .await
            .unwrap();
    } else {
        shipgate_store::postgres::PgStore::open(url)
            .await
            .unwrap()
            .raw_insert_deployments(rows, per_tx)
            .await
            .unwrap();
    }
}

async fn queries(backend: &str, a: &Args) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(backend, &dir, "history").await;
    let t = Instant::now();
    load_history(&url, a.rows).await;
    let store = open_analyzed(&url).await;
    println!(
        "history[{backend}] loaded {} deployments in {:.1}s",
        a.rows,
        t.elapsed().as_secs_f64()
    );
    let iterations = 300;
    let mut results = history_latencies(store.as_ref(), iterations).await;
    results.extend(running_latencies(store.as_ref(), iterations).await);
    report_latencies(backend, results);
}

/// Latencies of one kind of query, by name.
type Latencies = Vec<(&'static str, Vec<Duration>)>;

/// `total` deployments over 50 services and 8 environments, two years back, inserted raw.
async fn load_history(url: &str, total: usize) {
    let services = 50usize;
    let envs = [
        "dev",
        "qa",
        "staging",
        "prod-eu-west-1",
        "prod-us-east-1",
        "prod-ap-southeast-2",
        "sandbox",
        "uat",
    ];
    let tax = Taxonomy::default();
    let req = Requirements::default();
    let now = SystemClock.now();
    let mut rng = StdRng::seed_from_u64(7);
    let chunk = 100_000;
    let mut loaded = 0;
    while loaded < total {
        let n = chunk.min(total - loaded);
        let rows: Vec<_> = (loaded..loaded + n)
            .map(|i| {
                let started = now
                    - Span::minutes(((total - i) as i64) % (2 * 365 * 24 * 60))
                    - Span::minutes(10);
                let mut b = body(i);
                b["service"] = json!(format!("svc-{}", i % services));
                b["environment"] = json!(envs[(i / services) % envs.len()]);
                b["started_at"] = json!(format(started));
                b["deployer"] = json!(format!("user-{}", rng.random_range(0..200)));
                let ctx = Context {
                    tenant: "default",
                    recorded_by: "bench",
                    now,
                    taxonomy: &tax,
                    requirements: &req,
                    declared_environment: &|_| None,
                    backfill: true,
                };
                let d = parse_create(&b, &ctx).unwrap().deployment;
                let status = if rng.random_range(0..20) == 0 {
                    DeploymentStatus::Failed
                } else {
                    DeploymentStatus::Succeeded
                };
                let fin = d.started_at + Span::minutes(5);
                (d, status, Some(fin))
            })
            .collect();
        raw_insert(url, &rows, 10_000).await;
        loaded += n;
    }
}

/// Opens the store with its "running" table rebuilt and its statistics fresh.
async fn open_analyzed(url: &str) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = shipgate_store::open(url).await.unwrap();
    if url.starts_with("sqlite:") {
        let s = shipgate_store::sqlite::SqliteStore::open(url)
            .await
            .unwrap();
        s.rebuild_running().await.unwrap();
        sqlx::query("ANALYZE").execute(s.pool()).await.unwrap();
    } else {
        let s = shipgate_store::postgres::PgStore::open(url).await.unwrap();
        s.rebuild_running().await.unwrap();
        sqlx::query("ANALYZE").execute(s.pool()).await.unwrap();
    }
    store
}

/// The primary-key baseline (first), then history queries.
async fn history_latencies(store: &dyn Store, iterations: usize) -> Latencies {
    let ids: Vec<uuid::Uuid> = store
        .list_deployments(
            &DeploymentFilter {
                tenant: "default".into(),
                ..Default::default()
            },
            None,
            500,
        )
        .await
        .unwrap()
        .items
        .iter()
        .map(|d| d.record.id)
        .collect();
    let measure = |name: &'static str| (name, Vec::<Duration>::with_capacity(iterations));
    let mut results = Vec::new();

    let (name, mut lat) = measure("baseline: get one deployment by id (primary key + its events)");
    for i in 0..iterations {
        let t = Instant::now();
        store
            .get_deployment("default", ids[i % ids.len()])
            .await
            .unwrap()
            .unwrap();
        lat.push(t.elapsed());
    }
    results.push((name, lat));

    let base = DeploymentFilter {
        tenant: "default".into(),
        ..Default::default()
    };
    let cases: Vec<FilterCase<'_>> = vec![
        (
            "history: newest 50 of a service",
            Box::new(|i| DeploymentFilter {
                service: Some(format!("svc-{}", i % 50)),
                ..base.clone()
            }),
        ),
        (
            "history: newest 50 in an environment",
            Box::new(|i| DeploymentFilter {
                environment: Some(["development", "staging", "production-eu-west-1"][i % 3].into()),
                ..base.clone()
            }),
        ),
        (
            "history: service + environment + failed",
            Box::new(|i| DeploymentFilter {
                service: Some(format!("svc-{}", i % 50)),
                environment: Some("staging".into()),
                status: Some(DeploymentStatus::Failed),
                ..base.clone()
            }),
        ),
        (
            "history: service, last 7 days",
            Box::new(|i| DeploymentFilter {
                service: Some(format!("svc-{}", i % 50)),
                since: Some(SystemClock.now() - Span::days(7)),
                ..base.clone()
            }),
        ),
        (
            "history: by commit",
            Box::new(|i| DeploymentFilter {
                commit_sha: Some(format!("{:040x}", (i * 7919) % 1_000_000)),
                ..base.clone()
            }),
        ),
    ];
    for (name, f) in &cases {
        let mut lat = Vec::new();
        for i in 0..iterations {
            let filter = f(i);
            let t = Instant::now();
            store.list_deployments(&filter, None, 50).await.unwrap();
            lat.push(t.elapsed());
        }
        results.push((*name, lat));
    }
    results
}

/// "What is running where", and the deployments feed.
async fn running_latencies(store: &dyn Store, iterations: usize) -> Latencies {
    let mut results: Latencies = Vec::new();
    let base = DeploymentFilter {
        tenant: "default".into(),
        ..Default::default()
    };
    let mut lat = Vec::new();
    for _ in 0..iterations {
        let t = Instant::now();
        let r = store.running("default", None, None).await.unwrap();
        assert!(r.len() >= 50);
        lat.push(t.elapsed());
    }
    results.push(("running: every service in every environment", lat));
    let mut lat = Vec::new();
    for i in 0..iterations {
        let t = Instant::now();
        store
            .running("default", Some(&format!("svc-{}", i % 50)), None)
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    results.push(("running: one service", lat));
    let mut lat = Vec::new();
    for i in 0..iterations {
        let f = DeploymentFilter {
            service: Some(format!("svc-{}", i % 50)),
            since: Some(SystemClock.now() - Span::hours(24)),
            ..base.clone()
        };
        let t = Instant::now();
        store.feed(&f, 200).await.unwrap();
        lat.push(t.elapsed());
    }
    results.push(("feed: one service, last 24h, with previous version", lat));

    results
}

/// p50 and p99 of each query, beside the baseline's p99 (the first entry).
fn report_latencies(backend: &str, results: Latencies) {
    let mut baseline_p99 = Duration::ZERO;
    for (i, (name, mut lat)) in results.into_iter().enumerate() {
        lat.sort();
        let p99 = pct(&lat, 0.99);
        if i == 0 {
            baseline_p99 = p99;
        }
        println!(
            "history[{backend}] {name}: p50 {:.2} ms, p99 {:.2} ms ({:.1}x the primary-key lookup p99)",
            ms(pct(&lat, 0.5)),
            ms(p99),
            p99.as_secs_f64() / baseline_p99.as_secs_f64().max(1e-9)
        );
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let backends: Vec<&str> = match a.backend.as_str() {
        "both" => vec!["sqlite", "postgres"],
        b => vec![b],
    };
    let all = a.suite == "all";
    if all || a.suite == "authz" {
        authz::run().await;
    }
    if all || a.suite == "stream" {
        stream::run().await;
    }
    if all || a.suite == "webhooks" {
        webhooks::run().await;
    }
    if all || a.suite == "gate" {
        for b in &backends {
            gate::run(b, 100, 16).await;
        }
    }
    if all || a.suite == "ingest" {
        for b in &backends {
            ingest(b, &a).await;
        }
    }
    if (all || a.suite == "queries") && a.rows > 0 {
        for b in &backends {
            queries(b, &a).await;
        }
    }
}
