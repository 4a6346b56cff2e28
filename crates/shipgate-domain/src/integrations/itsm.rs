//! Change records from ServiceNow (Table API `change_request`) and Jira (issue webhooks) become
//! shipgate change requests, whose approval then runs under shipgate's policy; when shipgate
//! decides, the decision is written back. Field and state mappings are configuration
//! (`ItsmMapping`), so instance-specific fields (`u_environment`, `customfield_10042`) work.
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::s;
use crate::FieldErrors;

/// How a tool's record maps to a change request.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ItsmMapping {
    /// The field naming the environment (ServiceNow `u_environment`, Jira `environment`); unset
    /// or empty: `default_environment`.
    pub environment_field: Option<String>,
    pub default_environment: String,
    /// The field naming the service (ServiceNow `cmdb_ci`, Jira `components`); unset or empty:
    /// `default_service`.
    pub service_field: Option<String>,
    pub default_service: Option<String>,
    /// Change type when the record does not say (`normal`).
    pub default_type: String,
}

impl Default for ItsmMapping {
    fn default() -> Self {
        ItsmMapping {
            environment_field: None,
            default_environment: "production".into(),
            service_field: None,
            default_service: None,
            default_type: "normal".into(),
        }
    }
}

/// A field's value as text: strings, `{display_value}`/`{value}` references, `{name}` objects and
/// lists of them (Jira components) all read as their first name.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => ["display_value", "name", "value", "key"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .map(str::to_owned),
        Value::Array(a) => a.iter().find_map(|x| text(Some(x))),
        _ => None,
    }
}

/// ServiceNow times are `YYYY-MM-DD HH:MM:SS` in UTC.
fn snow_time(v: &str) -> Option<String> {
    chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().to_rfc3339())
}

fn common(
    body: &mut Map<String, Value>,
    fields: &Value,
    m: &ItsmMapping,
    errors: &mut FieldErrors,
) {
    let env = m
        .environment_field
        .as_deref()
        .and_then(|f| text(fields.get(f)))
        .unwrap_or_else(|| m.default_environment.clone());
    body.insert("environments".into(), json!([env]));
    match m
        .service_field
        .as_deref()
        .and_then(|f| text(fields.get(f)))
        .or_else(|| m.default_service.clone())
    {
        Some(svc) => {
            body.insert("services".into(), json!([svc]));
        }
        None => errors.add(
            m.service_field.as_deref().unwrap_or("service"),
            "required",
            "the record names no service, and no default_service is configured",
        ),
    }
}

/// A ServiceNow `change_request` (bare, or wrapped in `{"result": ...}`) -> a change request
/// body and its requester.
pub fn servicenow(record: &Value, m: &ItsmMapping) -> Result<(Value, String), FieldErrors> {
    let r = record.get("result").unwrap_or(record);
    let mut errors = FieldErrors::default();
    let number = s(r, "/number");
    let title = text(r.get("short_description"));
    if number.is_none() {
        errors.add("number", "required", "is required");
    }
    if title.is_none() {
        errors.add("short_description", "required", "is required");
    }
    let mut body = Map::new();
    let kind = text(r.get("type")).unwrap_or_else(|| m.default_type.clone());
    body.insert("type".into(), json!(kind.to_lowercase()));
    if let Some(t) = &title {
        body.insert(
            "title".into(),
            json!(t.chars().take(200).collect::<String>()),
        );
    }
    if let Some(n) = number {
        body.insert("ticket".into(), json!(n));
    }
    for (from, to) in [
        ("justification", "justification"),
        ("description", "justification"),
        ("backout_plan", "rollback_plan"),
        ("implementation_plan", "impact"),
    ] {
        if !body.contains_key(to)
            && let Some(v) = text(r.get(from))
        {
            body.insert(to.into(), json!(v));
        }
    }
    // ServiceNow risk: 1 very high, 2 high, 3 moderate, 4 low.
    if let Some(risk) = text(r.get("risk")) {
        let level = match risk.as_str() {
            "1" => "critical",
            "2" => "high",
            "3" => "medium",
            "4" => "low",
            other => other,
        };
        body.insert("risk".into(), json!(level.to_lowercase()));
    }
    for (from, to) in [("start_date", "window_start"), ("end_date", "window_end")] {
        if let Some(t) = text(r.get(from)).and_then(|t| snow_time(&t)) {
            body.insert(to.into(), json!(t));
        }
    }
    common(&mut body, r, m, &mut errors);
    let requester = ["requested_by", "opened_by", "sys_created_by"]
        .iter()
        .find_map(|k| text(r.get(*k)))
        .unwrap_or_else(|| "servicenow".into());
    errors.into_result((Value::Object(body), requester))
}

/// A Jira issue webhook -> a change request body and its requester. Only `jira:issue_created`
/// opens a change.
pub fn jira(payload: &Value, m: &ItsmMapping) -> Result<Option<(Value, String)>, FieldErrors> {
    let mut errors = FieldErrors::default();
    let event = s(payload, "/webhookEvent").unwrap_or_default();
    if event != "jira:issue_created" {
        return Ok(None);
    }
    let fields = payload
        .pointer("/issue/fields")
        .cloned()
        .unwrap_or(Value::Null);
    let key = s(payload, "/issue/key");
    let title = text(fields.get("summary"));
    if key.is_none() {
        errors.add("issue.key", "required", "is required");
    }
    if title.is_none() {
        errors.add("issue.fields.summary", "required", "is required");
    }
    let mut body = Map::new();
    let kind = fields
        .get("labels")
        .and_then(Value::as_array)
        .and_then(|l| {
            l.iter().filter_map(Value::as_str).find_map(|x| {
                ["standard", "normal", "emergency"]
                    .into_iter()
                    .find(|k| x.eq_ignore_ascii_case(k))
            })
        })
        .map(str::to_owned)
        .unwrap_or_else(|| m.default_type.clone());
    body.insert("type".into(), json!(kind));
    if let Some(t) = &title {
        body.insert(
            "title".into(),
            json!(t.chars().take(200).collect::<String>()),
        );
    }
    if let Some(k) = key {
        body.insert("ticket".into(), json!(k));
    }
    if let Some(d) = text(fields.get("description")) {
        body.insert("justification".into(), json!(d));
    }
    if let Some(p) = text(fields.get("priority")) {
        let level = match p.to_lowercase().as_str() {
            "highest" | "blocker" => "critical",
            "high" | "critical" => "high",
            "low" | "lowest" | "minor" | "trivial" => "low",
            _ => "medium",
        };
        body.insert("risk".into(), json!(level));
    }
    common(&mut body, &fields, m, &mut errors);
    let requester = text(fields.get("reporter"))
        .or_else(|| s(payload, "/user/name").map(str::to_owned))
        .unwrap_or_else(|| "jira".into());
    errors.into_result(Some((Value::Object(body), requester)))
}

/// Which system a ticket belongs to, by its form: `CHG0000023` (ServiceNow) or `TEST-4` (Jira).
pub fn ticket_system(ticket: &str) -> Option<&'static str> {
    let t = ticket.trim();
    let b = t.as_bytes();
    if b.len() > 3 && b[..3].eq_ignore_ascii_case(b"CHG") && b[3..].iter().all(u8::is_ascii_digit) {
        return Some("servicenow");
    }
    let (proj, num) = t.split_once('-')?;
    (!proj.is_empty()
        && proj.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && proj
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit()))
    .then_some("jira")
}

/// A decision to write back: from a change's `approved`/`rejected` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteBack {
    pub tenant: String,
    pub ticket: String,
    pub change: String,
    pub approved: bool,
    pub comment: String,
}

/// The write-back an outbox event calls for, if any.
pub fn write_back(row: &crate::events::OutboxRow) -> Option<WriteBack> {
    let approved = if row.event_type.ends_with(".approved.0.1.0") {
        true
    } else if row.event_type.ends_with(".rejected.0.1.0") {
        false
    } else {
        return None;
    };
    if !row.event_type.starts_with("dev.cdeventsx.shipgate-change.") {
        return None;
    }
    let v: Value = serde_json::from_str(&row.body).ok()?;
    let c = v.pointer("/customData/change")?;
    // The change request serialises its spec flattened.
    let ticket = c.get("ticket")?.as_str()?.to_owned();
    let key = c["key"].as_str().unwrap_or_default().to_owned();
    let who: Vec<String> = c["decisions"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter(|x| x["kind"] == if approved { "approve" } else { "reject" })
                .filter_map(|x| x["actor"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let comment = format!(
        "shipgate {key}: {}{}",
        if approved { "approved" } else { "rejected" },
        if who.is_empty() {
            " by policy".to_owned()
        } else {
            format!(" by {}", who.join(", "))
        }
    );
    Some(WriteBack {
        tenant: row.tenant.clone(),
        ticket,
        change: key,
        approved,
        comment,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ticket_forms() {
        assert_eq!(ticket_system("CHG0000023"), Some("servicenow"));
        assert_eq!(ticket_system("TEST-4"), Some("jira"));
        assert_eq!(ticket_system("JIRA-7"), Some("jira"));
        assert_eq!(ticket_system("change 7"), None);
        assert_eq!(ticket_system("abé1"), None, "no panic on multi-byte text");
        assert_eq!(ticket_system("é"), None);
    }

    #[test]
    fn servicenow_record() {
        let m = ItsmMapping {
            default_service: Some("legacy".into()),
            ..Default::default()
        };
        let r = json!({"result": {"number": "CHG1", "short_description": "Patch", "type": "Normal", "risk": "2",
            "backout_plan": "restore", "start_date": "2026-01-01 10:00:00", "requested_by": {"display_value": "beth"}}});
        let (b, who) = servicenow(&r, &m).unwrap();
        assert_eq!(b["type"], "normal");
        assert_eq!(b["risk"], "high");
        assert_eq!(b["window_start"], "2026-01-01T10:00:00+00:00");
        assert_eq!(b["services"], json!(["legacy"]));
        assert_eq!(who, "beth");
        let e = servicenow(&json!({}), &ItsmMapping::default()).unwrap_err();
        assert_eq!(e.0.len(), 3, "{e:?}");
    }
}
