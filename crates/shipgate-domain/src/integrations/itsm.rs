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
    /// Whether the record's assignee counts as one of its authors (then they cannot approve
    /// the change either). The opener, requester and reporter always do.
    pub assignee_is_author: bool,
}

impl Default for ItsmMapping {
    fn default() -> Self {
        ItsmMapping {
            environment_field: None,
            default_environment: "production".into(),
            service_field: None,
            default_service: None,
            default_type: "normal".into(),
            assignee_is_author: true,
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

/// Every identity a person reference carries (a login, a display value, a sys_id, an email, an
/// account id), so that the person is recognised whichever of them shipgate knows them by.
fn identities(v: Option<&Value>, out: &mut Vec<String>) {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
        Some(Value::Object(o)) => {
            for k in [
                "display_value",
                "value",
                "name",
                "key",
                "emailAddress",
                "email",
                "accountId",
                "user_name",
            ] {
                if let Some(s) = o.get(k).and_then(Value::as_str)
                    && !s.trim().is_empty()
                {
                    out.push(s.trim().to_owned());
                }
            }
        }
        Some(Value::Array(a)) => a.iter().for_each(|x| identities(Some(x), out)),
        _ => {}
    }
}

/// A record mapped to a change request: the body, the requester shipgate records, and every
/// identity that authored the record (none of whom may approve it).
#[derive(Debug, Clone, PartialEq)]
pub struct ItsmRecord {
    pub body: Value,
    pub requester: String,
    pub authors: Vec<String>,
}

fn authors_of(r: &Value, fields: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in fields {
        identities(r.get(*f), &mut out);
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|x| seen.insert(crate::identity::normalize(x)));
    out
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
/// body, its requester and the record's authors (`opened_by`, `requested_by`,
/// `sys_created_by`, and `assigned_to` when configured).
pub fn servicenow(record: &Value, m: &ItsmMapping) -> Result<ItsmRecord, FieldErrors> {
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
        .find_map(|k| text(r.get(*k)).map(|t| t.trim().to_owned()))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "servicenow".into());
    let mut fields = vec!["opened_by", "requested_by", "sys_created_by"];
    if m.assignee_is_author {
        fields.push("assigned_to");
    }
    let authors = authors_of(r, &fields);
    errors.into_result(ItsmRecord {
        body: Value::Object(body),
        requester,
        authors,
    })
}

/// A Jira issue webhook -> a change request body, its requester and the authors
/// (`reporter`, `creator`, the webhook's `user`, and `assignee` when configured). Only
/// `jira:issue_created` opens a change.
pub fn jira(payload: &Value, m: &ItsmMapping) -> Result<Option<ItsmRecord>, FieldErrors> {
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
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "jira".into());
    let mut keys = vec!["reporter", "creator"];
    if m.assignee_is_author {
        keys.push("assignee");
    }
    let mut authors = authors_of(&fields, &keys);
    identities(payload.get("user"), &mut authors);
    let mut seen = std::collections::BTreeSet::new();
    authors.retain(|x| seen.insert(crate::identity::normalize(x)));
    errors.into_result(Some(ItsmRecord {
        body: Value::Object(body),
        requester,
        authors,
    }))
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
        let ItsmRecord {
            body: b,
            requester: who,
            authors,
        } = servicenow(&r, &m).unwrap();
        assert_eq!(authors, vec!["beth".to_owned()]);
        assert_eq!(b["type"], "normal");
        assert_eq!(b["risk"], "high");
        assert_eq!(b["window_start"], "2026-01-01T10:00:00+00:00");
        assert_eq!(b["services"], json!(["legacy"]));
        assert_eq!(who, "beth");
        let e = servicenow(&json!({}), &ItsmMapping::default()).unwrap_err();
        assert_eq!(e.0.len(), 3, "{e:?}");
    }

    #[test]
    fn every_author_of_a_record_is_kept() {
        let m = ItsmMapping {
            default_service: Some("legacy".into()),
            ..Default::default()
        };
        let r = json!({"number": "CHG2", "short_description": "Patch",
            "requested_by": {"display_value": "A", "value": "6816f79cc0a8016401c5a33be04be441"},
            "opened_by": " b ", "assigned_to": {"display_value": "c"}});
        let rec = servicenow(&r, &m).unwrap();
        assert_eq!(rec.requester, "A");
        for who in ["A", "b", "c", "6816f79cc0a8016401c5a33be04be441"] {
            assert!(
                rec.authors.iter().any(|x| x == who),
                "{who}: {:?}",
                rec.authors
            );
        }
        let no_assignee = ItsmMapping {
            assignee_is_author: false,
            ..m.clone()
        };
        assert!(
            !servicenow(&r, &no_assignee)
                .unwrap()
                .authors
                .contains(&"c".to_owned())
        );
        let j = json!({"webhookEvent": "jira:issue_created", "user": {"name": "u1"},
            "issue": {"key": "OPS-1", "fields": {"summary": "x", "reporter": {"name": "r1", "emailAddress": "R1@acme.com"},
            "creator": {"name": "c1"}, "assignee": {"accountId": "a1"}, "components": [{"name": "svc"}]}}});
        let rec = jira(&j, &m).unwrap().unwrap();
        assert_eq!(rec.requester, "r1");
        for who in ["r1", "R1@acme.com", "c1", "a1", "u1"] {
            assert!(
                rec.authors.iter().any(|x| x == who),
                "{who}: {:?}",
                rec.authors
            );
        }
    }
}
