//! Incidents from monitoring and paging tools (Alertmanager, PagerDuty): recorded, streamed as
//! CDEvents `incident.detected` / `incident.resolved`, and answered with the recent changes to
//! the affected service, for triage.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::FieldErrors;
use crate::canonical::{canonical_json, sha256_hex};
use crate::time::Timestamp;

str_enum!(
    IncidentStatus {
        Open => "open",
        Acknowledged => "acknowledged",
        Resolved => "resolved",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    /// `alertmanager`, `pagerduty`.
    pub source: String,
    /// The tool's own id (alert fingerprint, PagerDuty incident id).
    pub external_id: String,
    pub title: String,
    pub status: IncidentStatus,
    pub severity: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<Timestamp>,
    pub url: Option<String>,
}

fn time(v: Option<&Value>) -> Option<Timestamp> {
    let s = v?.as_str()?;
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .ok()?
        .with_timezone(&chrono::Utc);
    // Alertmanager writes the zero time for "not ended".
    (t.timestamp() > 0).then_some(t)
}

fn label<'a>(alert: &'a Value, common: &'a Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| {
            alert
                .pointer(&format!("/labels/{k}"))
                .or_else(|| common.get(*k))
                .and_then(Value::as_str)
        })
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// An Alertmanager webhook (version 4): one incident per alert, identified by its fingerprint
/// (or, when the sender omits it, by its label set).
pub fn alertmanager(p: &Value, now: Timestamp) -> Result<Vec<Incident>, FieldErrors> {
    let mut errors = FieldErrors::default();
    let Some(alerts) = p.get("alerts").and_then(Value::as_array) else {
        errors.add(
            "alerts",
            "required",
            "an Alertmanager webhook carries alerts",
        );
        return Err(errors);
    };
    let common = p.get("commonLabels").cloned().unwrap_or(Value::Null);
    let group_status = p.get("status").and_then(Value::as_str).unwrap_or("firing");
    let mut out = Vec::new();
    for a in alerts {
        let labels = a.get("labels").cloned().unwrap_or(Value::Null);
        let id = a
            .get("fingerprint")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| sha256_hex(canonical_json(&labels).as_bytes())[..16].to_owned());
        let status = a
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or(group_status);
        let started = time(a.get("startsAt")).unwrap_or(now);
        let ended = time(a.get("endsAt"));
        out.push(Incident {
            source: "alertmanager".into(),
            external_id: id,
            title: label(a, &common, &["alertname"]).unwrap_or_else(|| "alert".into())
                + &a.pointer("/annotations/summary")
                    .and_then(Value::as_str)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default(),
            status: if status == "resolved" {
                IncidentStatus::Resolved
            } else {
                IncidentStatus::Open
            },
            severity: label(a, &common, &["severity", "priority"]),
            service: label(a, &common, &["service", "app", "application", "job"]),
            environment: label(a, &common, &["environment", "env", "namespace"]),
            started_at: started,
            resolved_at: if status == "resolved" {
                ended.or(Some(now))
            } else {
                None
            },
            url: a
                .get("generatorURL")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok(out)
}

/// A PagerDuty V3 webhook event about an incident.
pub fn pagerduty(p: &Value, now: Timestamp) -> Result<Option<Incident>, FieldErrors> {
    let mut errors = FieldErrors::default();
    let Some(e) = p.get("event").filter(|e| e.is_object()) else {
        errors.add(
            "event",
            "required",
            "a PagerDuty V3 webhook carries an event (a webhook_subscription object is not one)",
        );
        return Err(errors);
    };
    let ty = e.get("event_type").and_then(Value::as_str).unwrap_or("");
    if e.get("resource_type").and_then(Value::as_str) != Some("incident") {
        return Ok(None);
    }
    let data = e.get("data").cloned().unwrap_or(Value::Null);
    let Some(id) = data.get("id").and_then(Value::as_str) else {
        errors.add("event.data.id", "required", "is required");
        return Err(errors);
    };
    let status = match (ty, data.get("status").and_then(Value::as_str)) {
        (_, Some("resolved")) | ("incident.resolved", _) => IncidentStatus::Resolved,
        (_, Some("acknowledged")) | ("incident.acknowledged", _) => IncidentStatus::Acknowledged,
        _ => IncidentStatus::Open,
    };
    let at = time(e.get("occurred_at")).unwrap_or(now);
    Ok(Some(Incident {
        source: "pagerduty".into(),
        external_id: id.to_owned(),
        title: data
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("incident")
            .chars()
            .take(500)
            .collect(),
        status,
        severity: data
            .get("urgency")
            .and_then(Value::as_str)
            .map(str::to_owned),
        service: data
            .pointer("/service/summary")
            .and_then(Value::as_str)
            .map(str::to_owned),
        environment: None,
        started_at: time(data.get("created_at")).unwrap_or(at),
        resolved_at: (status == IncidentStatus::Resolved).then_some(at),
        url: data
            .get("html_url")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }))
}
