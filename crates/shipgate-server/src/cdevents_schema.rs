//! Inbound CDEvents: validation against the CDEvents 0.5.1 JSON schemas (embedded, compiled
//! once, never fetched; the spec is strict: unknown fields are refused).
use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::{Draft, Registry, Resource, Validator};
use serde_json::Value;
use shipgate_domain::FieldErrors;

macro_rules! schemas {
    ($($f:literal),* $(,)?) => {
        &[$(($f, include_str!(concat!("../schemas/cdevents/v0.5.1/", $f)))),*]
    };
}

const SCHEMAS: &[(&str, &str)] = schemas!(
    "artifactpublished.json",
    "changemerged.json",
    "environmentcreated.json",
    "environmentdeleted.json",
    "environmentmodified.json",
    "incidentdetected.json",
    "incidentreported.json",
    "incidentresolved.json",
    "pipelinerunfinished.json",
    "pipelinerunqueued.json",
    "pipelinerunstarted.json",
    "servicedeployed.json",
    "servicepublished.json",
    "serviceremoved.json",
    "servicerolledback.json",
    "serviceupgraded.json",
    "links/embeddedlinkend.json",
    "links/embeddedlinkpath.json",
    "links/embeddedlinkrelation.json",
    "links/embeddedlinksarray.json",
    "links/linkend.json",
    "links/linkpath.json",
    "links/linkrelation.json",
    "links/linkstart.json",
);

type Validators = HashMap<String, Validator>;

fn compile() -> Result<Validators, String> {
    let docs: Vec<(String, Value)> = SCHEMAS
        .iter()
        .map(|(name, text)| {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("{name}: {e}"))?;
            let id = v["$id"]
                .as_str()
                .ok_or_else(|| format!("{name} has no $id"))?
                .to_owned();
            Ok((id, v))
        })
        .collect::<Result<_, String>>()?;
    let registry = Registry::new()
        .draft(Draft::Draft202012)
        .extend(
            docs.iter()
                .map(|(id, v)| (id.as_str(), Resource::from_contents(v.clone()))),
        )
        .map_err(|e| e.to_string())?
        .prepare()
        .map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (_, schema) in &docs {
        let Some(ty) = schema
            .pointer("/properties/context/properties/type/enum/0")
            .and_then(Value::as_str)
        else {
            continue;
        };
        let v = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&registry)
            .offline()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| format!("{ty}: {e}"))?;
        out.insert(ty.to_owned(), v);
    }
    Ok(out)
}

fn validators() -> &'static Result<Validators, String> {
    static V: OnceLock<Result<Validators, String>> = OnceLock::new();
    V.get_or_init(compile)
}

/// The event types shipgate validates (the 0.5.1 vocabulary it carries schemas for).
pub fn known_types() -> Vec<String> {
    match validators() {
        Ok(v) => {
            let mut t: Vec<String> = v.keys().cloned().collect();
            t.sort();
            t
        }
        Err(_) => Vec::new(),
    }
}

/// Checks a CDEvent against its type's schema; every violation is named by its JSON path.
/// `Ok(false)`: a custom (`dev.cdeventsx.`) event, which has no schema here.
pub fn validate(event: &Value) -> Result<bool, FieldErrors> {
    let mut errors = FieldErrors::default();
    let Some(ty) = event.pointer("/context/type").and_then(Value::as_str) else {
        errors.add(
            "context.type",
            "required",
            "a CDEvent names its type in context.type",
        );
        return Err(errors);
    };
    if ty.starts_with("dev.cdeventsx.") {
        return Ok(false);
    }
    let all = match validators() {
        Ok(v) => v,
        Err(e) => {
            errors.add(
                "",
                "schema_unavailable",
                format!("CDEvents schemas did not compile: {e}"),
            );
            return Err(errors);
        }
    };
    let Some(v) = all.get(ty) else {
        errors.add(
            "context.type",
            "unknown_type",
            format!("'{ty}' is not a CDEvents 0.5.1 event type shipgate knows"),
        );
        return Err(errors);
    };
    for e in v.iter_errors(event) {
        let path = e
            .instance_path()
            .to_string()
            .trim_start_matches('/')
            .replace('/', ".");
        errors.add(path, "schema", e.to_string());
    }
    errors.into_result(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_vocabulary_schema_compiles() {
        assert_eq!(known_types().len(), 16, "{:?}", validators().as_ref().err());
    }

    #[test]
    fn strict_schemas_refuse_unknown_fields() {
        let ev = serde_json::json!({
            "context": {"specversion": "0.5.1", "id": "1", "source": "/x", "type": "dev.cdevents.service.deployed.0.3.0", "timestamp": "2024-01-01T00:00:00Z"},
            "subject": {"id": "svc", "content": {"environment": {"id": "prod"}, "artifactId": "pkg:oci/x@sha256%3Aab"}}
        });
        assert!(validate(&ev).is_ok());
        let mut bad = ev.clone();
        bad["subject"]["content"]["extra"] = serde_json::json!(1);
        let e = validate(&bad).unwrap_err();
        assert_eq!(e.0[0].field, "subject.content");
        let mut bad = ev;
        bad["context"].as_object_mut().unwrap().remove("timestamp");
        assert!(validate(&bad).is_err());
    }

    /// What shipgate emits for its vocabulary types validates against the spec's schemas.
    #[test]
    fn emitted_events_are_schema_valid() {
        use shipgate_domain::incident::{Incident, IncidentStatus};
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        for status in [IncidentStatus::Open, IncidentStatus::Resolved] {
            let i = Incident {
                source: "alertmanager".into(),
                external_id: "abc".into(),
                title: "CPU".into(),
                status,
                severity: None,
                service: Some("checkout".into()),
                environment: None,
                started_at: now,
                resolved_at: None,
                url: None,
            };
            let e = shipgate_domain::events::incident_event("acme", &i, None, now);
            let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            assert_eq!(validate(&v), Ok(true), "{v}");
        }
    }
}
