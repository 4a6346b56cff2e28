//! Event streaming: relays the transactional outbox to NATS JetStream (and Kafka) in commit
//! order. Each sink keeps its own cursor in the store. A row is acknowledged only after the broker
//! has acknowledged it, so a broker outage loses nothing: the relay retries from its cursor with
//! backoff, and delivers in order once the broker is back. Every message carries the event's
//! CloudEvents id as its dedupe id (`Nats-Msg-Id`; Kafka header `ce_id`), so a retry after a
//! partial batch is dropped by JetStream and recognisable by Kafka consumers.
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream::Config as StreamConfig};
use shipgate_domain::events::OutboxRow;
use tokio::task::JoinHandle;

pub use crate::settings::{KafkaSettings, NatsSettings, OutboxSettings};
use crate::state::AppState;

pub use crate::sink::Sink;

pub struct NatsSink {
    settings: NatsSettings,
    js: Option<jetstream::Context>,
}

impl NatsSink {
    pub fn new(settings: &NatsSettings) -> Option<NatsSink> {
        settings.url.as_ref()?;
        Some(NatsSink {
            settings: settings.clone(),
            js: None,
        })
    }
}

#[async_trait::async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &'static str {
        "nats"
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        if self.js.is_some() {
            return Ok(());
        }
        let url = self.settings.url.clone().unwrap_or_default();
        let client = async_nats::ConnectOptions::new()
            .name("shipgate-outbox")
            .connection_timeout(Duration::from_secs(5))
            // The relay retries on its own, from the outbox: fail fast, reconnect from the loop.
            .max_reconnects(Some(1))
            .connect(&url)
            .await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .build(client);
        let s = &self.settings;
        js.create_or_update_stream(StreamConfig {
            name: s.stream.clone(),
            subjects: vec![format!("{}.>", s.subject_prefix)],
            max_age: Duration::from_secs(s.max_age_days.max(1).saturating_mul(86_400)),
            duplicate_window: Duration::from_secs(s.duplicate_window_secs.max(1)),
            ..Default::default()
        })
        .await?;
        self.js = Some(js);
        Ok(())
    }

    async fn publish(&mut self, rows: &[OutboxRow]) -> (usize, Option<anyhow::Error>) {
        let Some(js) = &self.js else {
            return (0, Some(anyhow::anyhow!("not connected")));
        };
        // Send the whole batch (one connection keeps the order), then await the acks in order.
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for r in rows {
            let mut h = HeaderMap::new();
            let id = r.event_id();
            h.insert("Nats-Msg-Id", id.as_str());
            h.insert(
                "Content-Type",
                "application/cloudevents+json; charset=utf-8",
            );
            h.insert("ce-specversion", "1.0");
            h.insert("ce-id", id.as_str());
            h.insert("ce-type", r.event_type.as_str());
            h.insert("ce-source", format!("/shipgate/{}", r.tenant).as_str());
            h.insert("ce-subject", r.subject_id.as_str());
            match js
                .publish_with_headers(
                    r.subject(&self.settings.subject_prefix),
                    h,
                    bytes::Bytes::from(r.body.clone()),
                )
                .await
            {
                Ok(ack) => pending.push(ack),
                Err(e) => {
                    failure = Some(anyhow::anyhow!(e));
                    break;
                }
            }
        }
        let mut done = 0;
        for ack in pending {
            match ack.await {
                Ok(_) => done += 1,
                Err(e) => {
                    failure = Some(anyhow::anyhow!(e));
                    break;
                }
            }
        }
        (done, failure)
    }

    fn reset(&mut self) {
        self.js = None;
    }
}

pub struct KafkaSink {
    settings: KafkaSettings,
    partition: Option<rskafka::client::partition::PartitionClient>,
}

impl KafkaSink {
    pub fn new(settings: &KafkaSettings) -> Option<KafkaSink> {
        if settings.brokers.is_empty() {
            return None;
        }
        Some(KafkaSink {
            settings: settings.clone(),
            partition: None,
        })
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        use rskafka::client::error::{Error as KafkaError, ProtocolError};
        if self.partition.is_some() {
            return Ok(());
        }
        let s = &self.settings;
        let client = tokio::time::timeout(
            Duration::from_secs(5),
            rskafka::client::ClientBuilder::new(s.brokers.clone())
                .client_id("shipgate")
                .build(),
        )
        .await??;
        match client
            .controller_client()?
            .create_topic(
                &s.topic,
                s.partitions.max(1),
                s.replication_factor.max(1),
                5_000,
            )
            .await
        {
            Ok(())
            | Err(KafkaError::ServerError {
                protocol_error: ProtocolError::TopicAlreadyExists,
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
        let p = client
            .partition_client(
                s.topic.clone(),
                0,
                rskafka::client::partition::UnknownTopicHandling::Retry,
            )
            .await?;
        self.partition = Some(p);
        Ok(())
    }

    async fn publish(&mut self, rows: &[OutboxRow]) -> (usize, Option<anyhow::Error>) {
        let Some(p) = &self.partition else {
            return (0, Some(anyhow::anyhow!("not connected")));
        };
        let records = rows
            .iter()
            .map(|r| {
                let id = r.event_id();
                rskafka::record::Record {
                    key: Some(r.subject_id.clone().into_bytes()),
                    value: Some(r.body.clone().into_bytes()),
                    headers: [
                        ("ce_specversion", "1.0".to_owned()),
                        ("ce_id", id),
                        ("ce_type", r.event_type.clone()),
                        ("ce_source", format!("/shipgate/{}", r.tenant)),
                        ("ce_subject", r.subject_id.clone()),
                        ("content-type", "application/json".to_owned()),
                        ("shipgate_subject", r.subject("shipgate")),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.into_bytes()))
                    .collect(),
                    timestamp: r.at,
                }
            })
            .collect();
        // One batch, appended in order; awaited before the next so a retry cannot reorder.
        match tokio::time::timeout(
            Duration::from_secs(10),
            p.produce(
                records,
                rskafka::client::partition::Compression::NoCompression,
            ),
        )
        .await
        {
            Ok(Ok(_)) => (rows.len(), None),
            Ok(Err(e)) => (0, Some(e.into())),
            Err(_) => (
                0,
                Some(anyhow::anyhow!("the broker did not answer within 10s")),
            ),
        }
    }

    fn reset(&mut self) {
        self.partition = None;
    }
}

/// Relays the outbox to one sink until shutdown.
pub fn spawn_relay(state: AppState, mut sink: Box<dyn Sink>) -> JoinHandle<()> {
    let poll = Duration::from_millis(state.settings.outbox.poll_ms.max(1));
    let batch = state.settings.outbox.batch.clamp(1, 10_000);
    tokio::spawn(async move {
        let name = sink.name();
        let mut backoff = Duration::from_millis(100);
        loop {
            if state.shutdown.is_cancelled() {
                return;
            }
            let wait = match relay_once(&state, sink.as_mut(), batch).await {
                Ok(0) => poll,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    Duration::ZERO
                }
                Err(e) => {
                    sink.reset();
                    metrics::counter!("shipgate_outbox_errors_total", "sink" => name).increment(1);
                    tracing::warn!(sink = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "event relay: broker unavailable; events stay in the outbox");
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    w
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = state.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    })
}

/// One round: returns how many events were delivered.
async fn relay_once(state: &AppState, sink: &mut dyn Sink, batch: u32) -> anyhow::Result<usize> {
    let name = sink.name();
    let (_, rows) = state.store.outbox_pending(name, batch).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    sink.ready().await?;
    let started = Instant::now();
    let (done, failure) = sink.publish(&rows).await;
    if done > 0 {
        let last = &rows[done - 1];
        state
            .store
            .outbox_ack(name, last.seq, state.clock.now())
            .await?;
        metrics::counter!("shipgate_outbox_published_total", "sink" => name).increment(done as u64);
        let lag = (state.clock.now() - last.at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::gauge!("shipgate_outbox_lag_seconds", "sink" => name).set(lag);
        tracing::debug!(
            sink = name,
            events = done,
            ms = started.elapsed().as_millis() as u64,
            "events relayed"
        );
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// Deletes delivered events past the retention, hourly.
pub fn spawn_pruner(state: AppState, sinks: Vec<&'static str>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
            let days = state.settings.outbox.retention_days;
            let Some(before) = i64::try_from(days)
                .ok()
                .and_then(chrono::TimeDelta::try_days)
                .and_then(|d| state.clock.now().checked_sub_signed(d))
            else {
                tracing::warn!(
                    days,
                    "outbox.retention_days is out of range; nothing pruned"
                );
                continue;
            };
            match state.store.outbox_prune(&sinks, before).await {
                Ok(n) if n > 0 => tracing::info!(events = n, "outbox pruned"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox prune failed"),
            }
        }
    })
}

/// The sinks the settings configure.
pub fn sinks(state: &AppState) -> Vec<Box<dyn Sink>> {
    let mut out: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(n) = NatsSink::new(&state.settings.nats) {
        out.push(Box::new(n));
    }
    if let Some(k) = KafkaSink::new(&state.settings.kafka) {
        out.push(Box::new(k));
    }
    for system in ["servicenow", "jira"] {
        if let Some(w) =
            crate::writeback::WriteBackSink::new(system, &state.settings.itsm, state.store.clone())
        {
            out.push(Box::new(w));
        }
    }
    out
}

pub fn spawn_all(state: &AppState) -> Vec<JoinHandle<()>> {
    let sinks = sinks(state);
    let names: Vec<&'static str> = sinks.iter().map(|s| s.name()).collect();
    let mut tasks: Vec<JoinHandle<()>> = sinks
        .into_iter()
        .map(|s| spawn_relay(state.clone(), s))
        .collect();
    tasks.push(spawn_pruner(state.clone(), names));
    tasks
}
