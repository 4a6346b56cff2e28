//! shipgate's own events: one per state change, written to the outbox in the same transaction
//! as the change, then published to NATS JetStream (and Kafka). Each is a CDEvent (spec 0.5.1)
//! carried as a CloudEvent: vocabulary types where one fits (`service.deployed`,
//! `service.rolledback`), and custom `dev.cdeventsx.shipgate-*` types (the spec's form for
//! tool-specific events) for the rest. The full shipgate record travels in `customData`.
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::canonical::{ChainHead, canonical_json};
use crate::change::ChangeRequest;
use crate::model::{DeploymentStatus, EnvTier, NewDeployment, StatusEvent};
use crate::time::Timestamp;

pub const CDEVENTS_SPEC: &str = "0.5.1";

str_enum!(
    /// What an event is about: the third part of its subject
    /// `shipgate.<tenant>.<kind>.<env-tier>`.
    EventKind {
        Deployment => "deployment",
        Status => "status",
        Change => "change",
        Approval => "approval",
        Gate => "gate",
        Incident => "incident",
        Audit => "audit",
    }
);

/// An event as written to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    pub kind: EventKind,
    pub env_tier: Option<EnvTier>,
    /// The CDEvent `context.type`.
    pub event_type: String,
    /// The record the event is about (deployment id, change key): the partition key.
    pub subject_id: String,
    /// The whole CDEvent, canonical JSON. Its `context.id` is the dedupe id.
    pub body: String,
}

/// A published-or-not outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// The audit sequence number of the change: one total order for every event.
    pub seq: i64,
    pub at: Timestamp,
    pub tenant: String,
    pub kind: EventKind,
    pub env_tier: Option<EnvTier>,
    pub event_type: String,
    pub subject_id: String,
    pub body: String,
}

impl OutboxRow {
    /// `shipgate.<tenant>.<kind>.<env-tier>` (`none` when the event has no tier).
    pub fn subject(&self, prefix: &str) -> String {
        format!(
            "{prefix}.{}.{}.{}",
            self.tenant,
            self.kind,
            self.env_tier.map_or("none", |t| t.as_str())
        )
    }

    /// The CDEvent's `context.id`: the dedupe id (`Nats-Msg-Id`, CloudEvents `id`).
    pub fn event_id(&self) -> String {
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| v["context"]["id"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("shipgate-{}", self.seq))
    }
}

fn source(tenant: &str) -> String {
    format!("/shipgate/{tenant}")
}

fn envelope(
    tenant: &str,
    event_type: &str,
    at: Timestamp,
    subject: Value,
    custom: Value,
) -> String {
    canonical_json(&json!({
        "context": {
            "specversion": CDEVENTS_SPEC,
            "id": Uuid::now_v7().to_string(),
            "source": source(tenant),
            "type": event_type,
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        },
        "subject": subject,
        "customData": custom,
        "customDataContentType": "application/json",
    }))
}

/// The artifact as a package URL: the OCI digest when known, else the service and version.
fn artifact_purl(d: &NewDeployment) -> String {
    match (&d.artifact_digest, &d.artifact_name) {
        (Some(digest), name) => {
            let name = name
                .as_deref()
                .and_then(|n| n.rsplit('/').next())
                .map(|n| n.split(['@', ':']).next().unwrap_or(n))
                .unwrap_or(&d.service);
            format!("pkg:oci/{name}@{}", digest.replace(':', "%3A"))
        }
        (None, _) => format!("pkg:generic/{}@{}", d.service, d.version),
    }
}

fn deployment_type(status: DeploymentStatus) -> String {
    match status {
        DeploymentStatus::Succeeded => "dev.cdevents.service.deployed.0.3.0".into(),
        DeploymentStatus::RolledBack => "dev.cdevents.service.rolledback.0.3.0".into(),
        s => format!("dev.cdeventsx.shipgate-deployment.{}.0.1.0", s.as_str()),
    }
}

fn deployment_subject(d: &NewDeployment, vocabulary: bool) -> Value {
    if vocabulary {
        json!({
            "id": d.service,
            "source": source(&d.tenant),
            "content": {
                "environment": {"id": d.environment.name, "source": source(&d.tenant)},
                "artifactId": artifact_purl(d),
            }
        })
    } else {
        json!({
            "id": d.id.to_string(),
            "source": source(&d.tenant),
            "content": {
                "service": d.service,
                "environment": d.environment.name,
                "version": d.version,
                "artifactId": artifact_purl(d),
            }
        })
    }
}

/// A deployment was recorded (in its initial status).
pub fn deployment_recorded(d: &NewDeployment) -> OutboxEvent {
    let t = deployment_type(d.initial_status);
    let vocabulary = t.starts_with("dev.cdevents.");
    OutboxEvent {
        kind: EventKind::Deployment,
        env_tier: d.environment.tier,
        subject_id: d.id.to_string(),
        body: envelope(
            &d.tenant,
            &t,
            d.ingested_at,
            deployment_subject(d, vocabulary),
            json!({"deployment": d, "status": d.initial_status}),
        ),
        event_type: t,
    }
}

/// A deployment's status changed (`aggregate` is the deployment's status after the event).
pub fn deployment_status(
    d: &NewDeployment,
    e: &StatusEvent,
    aggregate: DeploymentStatus,
) -> OutboxEvent {
    let t = deployment_type(e.status);
    let vocabulary = t.starts_with("dev.cdevents.");
    OutboxEvent {
        kind: EventKind::Status,
        env_tier: d.environment.tier,
        subject_id: d.id.to_string(),
        body: envelope(
            &d.tenant,
            &t,
            e.ingested_at,
            deployment_subject(d, vocabulary),
            json!({
                "deployment_id": d.id,
                "service": d.service,
                "environment": d.environment.name,
                "version": d.version,
                "commit_sha": d.commit_sha,
                "artifact_digest": d.artifact_digest,
                "event": e,
                "deployment_status": aggregate,
            }),
        ),
        event_type: t,
    }
}

/// The highest tier a change request touches (production first).
fn change_tier(c: &ChangeRequest) -> Option<EnvTier> {
    let rank = |t: &EnvTier| match t {
        EnvTier::Production => 0,
        EnvTier::Staging => 1,
        EnvTier::Test => 2,
        EnvTier::Development => 3,
    };
    c.spec
        .environments
        .iter()
        .filter_map(|e| e.tier)
        .min_by_key(rank)
}

/// A change request was opened or changed (`action` such as `created`, `approved`,
/// `rejected`, `updated`); approval decisions are `approval` events.
pub fn change_event(
    c: &ChangeRequest,
    action: &str,
    kind: EventKind,
    at: Timestamp,
) -> OutboxEvent {
    let t = format!("dev.cdeventsx.shipgate-change.{action}.0.1.0");
    OutboxEvent {
        kind,
        env_tier: change_tier(c),
        subject_id: c.key.clone(),
        body: envelope(
            &c.tenant,
            &t,
            at,
            json!({
                "id": c.key,
                "source": source(&c.tenant),
                "content": {
                    "status": c.status,
                    "changeType": c.spec.change_type,
                    "revision": c.revision,
                }
            }),
            json!({"change": c}),
        ),
        event_type: t,
    }
}

/// The head of the audit chain, published at an interval: an auditor who keeps these can
/// later prove that the chain was not recomputed or cut (`audit verify --expect-head`).
pub fn audit_checkpoint_event(head: &ChainHead, at: Timestamp) -> OutboxEvent {
    let t = "dev.cdeventsx.shipgate-audit.checkpointed.0.1.0".to_owned();
    OutboxEvent {
        kind: EventKind::Audit,
        env_tier: None,
        subject_id: "audit-head".into(),
        body: envelope(
            "shipgate",
            &t,
            at,
            json!({
                "id": format!("audit-head-{}", head.seq),
                "source": source("shipgate"),
                "content": {"seq": head.seq, "hash": head.hash},
            }),
            json!({"head": head, "verify": format!("shipgate audit verify --expect-head {}:{}", head.seq, head.hash)}),
        ),
        event_type: t,
    }
}

/// The gate answered a pipeline.
pub fn gate_event(
    tenant: &str,
    change: &str,
    environment: &str,
    env_tier: Option<EnvTier>,
    decision: &Value,
    at: Timestamp,
) -> OutboxEvent {
    let state = decision["state"].as_str().unwrap_or("error");
    let t = format!("dev.cdeventsx.shipgate-gate.{state}.0.1.0");
    OutboxEvent {
        kind: EventKind::Gate,
        env_tier,
        subject_id: change.to_owned(),
        body: envelope(
            tenant,
            &t,
            at,
            json!({
                "id": change,
                "source": source(tenant),
                "content": {"environment": environment, "state": state}
            }),
            json!({"decision": decision}),
        ),
        event_type: t,
    }
}

/// An incident opened or changed: CDEvents `incident.detected` / `incident.resolved` (0.3.0);
/// an acknowledgement is a custom `shipgate-incident.acknowledged`.
pub fn incident_event(
    tenant: &str,
    i: &crate::incident::Incident,
    tier: Option<EnvTier>,
    at: Timestamp,
) -> OutboxEvent {
    use crate::incident::IncidentStatus;
    let t = match i.status {
        IncidentStatus::Open => "dev.cdevents.incident.detected.0.3.0".to_owned(),
        IncidentStatus::Resolved => "dev.cdevents.incident.resolved.0.3.0".to_owned(),
        IncidentStatus::Acknowledged => {
            "dev.cdeventsx.shipgate-incident.acknowledged.0.1.0".to_owned()
        }
    };
    let mut content = serde_json::Map::new();
    content.insert("description".into(), json!(i.title));
    content.insert(
        "environment".into(),
        json!({"id": i.environment.clone().unwrap_or_else(|| "unknown".into()), "source": source(tenant)}),
    );
    if let Some(s) = &i.service {
        content.insert("service".into(), json!({"id": s, "source": source(tenant)}));
    }
    let subject_id = format!("{}:{}", i.source, i.external_id);
    OutboxEvent {
        kind: EventKind::Incident,
        env_tier: tier,
        subject_id: subject_id.clone(),
        body: envelope(
            tenant,
            &t,
            at,
            json!({"id": subject_id, "source": source(tenant), "content": content}),
            json!({"incident": i}),
        ),
        event_type: t,
    }
}
