//! An at-least-once consumer of shipgate's event stream (NATS JetStream).
//!
//!   NATS_URL=nats://127.0.0.1:4222 cargo run --example nats_consumer -- 'shipgate.*.deployment.production'
//!
//! A durable pull consumer with explicit acks: a message is acked only after it is processed,
//! so a crash means redelivery, never loss. Redeliveries (and the rare duplicate publish outside
//! JetStream's dedupe window) are recognised by the CloudEvent id (`Nats-Msg-Id`): a real
//! consumer keeps the ids it has processed in its own store, in the same transaction as its
//! effect; this example keeps the recent ones in memory.
use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let filter = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "shipgate.>".into());
    let js = jetstream::new(async_nats::connect(&url).await?);
    let stream = js.get_stream("SHIPGATE").await?;
    let consumer = stream
        .get_or_create_consumer(
            "example-consumer",
            pull::Config {
                durable_name: Some("example-consumer".into()),
                filter_subject: filter,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut order: VecDeque<String> = VecDeque::new();
    let mut messages = consumer.messages().await?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| anyhow::anyhow!(e))?;
        let id = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        if !seen.contains(&id) {
            let event: serde_json::Value = serde_json::from_slice(&m.payload)?;
            // Process the event (idempotently, keyed by `id`).
            println!(
                "{} {} {}",
                m.subject,
                event["context"]["type"].as_str().unwrap_or("?"),
                event["subject"]["id"].as_str().unwrap_or("?")
            );
            seen.insert(id.clone());
            order.push_back(id);
            if order.len() > 100_000
                && let Some(old) = order.pop_front()
            {
                seen.remove(&old);
            }
        }
        // Ack only after processing: at-least-once.
        m.ack().await.map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}
