//! CDEvents (spec 0.5.1) received from other tools: `service.deployed`, `service.upgraded` and
//! `service.rolledback` record deployments; the other types are acknowledged with a reason.
//! Validation against the spec's schemas happens before this (the server holds them).
use serde_json::{Map, Value, json};

use super::{Ignored, Intent, Mapped, derived_id, s};

/// `pkg:oci/name@sha256%3Aabc` -> (name, Some("sha256:abc")); other purls -> (name, version).
pub fn parse_purl(purl: &str) -> Option<(String, Option<String>, Option<String>)> {
    let rest = purl.strip_prefix("pkg:")?;
    let rest = rest.split(['?', '#']).next()?;
    let (ty, path) = rest.split_once('/')?;
    let (name_path, version) = match path.rsplit_once('@') {
        Some((n, v)) => (n, Some(v.replace("%3A", ":").replace("%3a", ":"))),
        None => (path, None),
    };
    let name = name_path.rsplit('/').next()?.to_owned();
    let digest = version
        .as_ref()
        .filter(|v| ty == "oci" || v.starts_with("sha256:"))
        .filter(|v| v.starts_with("sha256:") || v.starts_with("sha512:"))
        .cloned();
    Some((name, version, digest))
}

fn predicate(ty: &str) -> Option<(&str, &str)> {
    // dev.cdevents.<subject>.<predicate>.<version>
    let rest = ty.strip_prefix("dev.cdevents.")?;
    let mut parts = rest.splitn(3, '.');
    Some((parts.next()?, parts.next()?))
}

/// Maps one (schema-valid) CDEvent.
pub fn map(ev: &Value) -> Mapped {
    let ty = s(ev, "/context/type").unwrap_or_default();
    if ty.starts_with("dev.cdeventsx.") {
        return Err(Ignored(format!("custom event '{ty}' is not acted on")));
    }
    let Some((subject, pred)) = predicate(ty) else {
        return Err(Ignored(format!("'{ty}' is not a CDEvents type")));
    };
    match (subject, pred) {
        ("service", "deployed" | "upgraded" | "rolledback") => {
            let source = s(ev, "/context/source").unwrap_or_default();
            let id = s(ev, "/context/id").unwrap_or_default();
            let service_id = s(ev, "/subject/id").unwrap_or_default();
            let service = service_id.rsplit('/').next().unwrap_or(service_id);
            let env = s(ev, "/subject/content/environment/id").unwrap_or_default();
            let env = env.rsplit('/').next().unwrap_or(env);
            let at = s(ev, "/context/timestamp");
            let purl = s(ev, "/subject/content/artifactId").unwrap_or_default();
            let (name, version, digest) = parse_purl(purl).unwrap_or_default();
            let mut body = Map::new();
            body.insert(
                "id".into(),
                json!(derived_id(&["cdevents", source, ty, id]).to_string()),
            );
            body.insert("service".into(), json!(service));
            body.insert("environment".into(), json!(env));
            body.insert(
                "version".into(),
                json!(version.clone().unwrap_or_else(|| "unknown".into())),
            );
            if let Some(d) = digest {
                body.insert("artifact_name".into(), json!(name));
                body.insert("artifact_digest".into(), json!(d));
            }
            body.insert("status".into(), json!("succeeded"));
            if let Some(t) = at {
                body.insert("started_at".into(), json!(t));
                body.insert("finished_at".into(), json!(t));
            }
            if pred == "rolledback" {
                body.insert("kind".into(), json!("rollback"));
            }
            body.insert("trigger".into(), json!("pipeline"));
            body.insert("deployer_type".into(), json!("pipeline"));
            body.insert(
                "correlation_id".into(),
                json!(s(ev, "/context/chainId").unwrap_or(id)),
            );
            body.insert(
                "labels".into(),
                json!({"cdevents.type": ty, "cdevents.source": source, "cdevents.id": id}),
            );
            Ok(vec![Intent::Deployment {
                body: Value::Object(body),
            }])
        }
        ("artifact", "published") => {
            let purl = s(ev, "/subject/id").unwrap_or_default();
            match parse_purl(purl) {
                Some((name, version, Some(digest))) => Ok(vec![Intent::Artifact {
                    name,
                    version: version.filter(|v| *v != digest),
                    digest,
                }]),
                _ => Err(Ignored(format!(
                    "artifact.published names no digest in '{purl}'; nothing to check deployments against"
                ))),
            }
        }
        ("incident", pred @ ("detected" | "reported" | "resolved")) => {
            let at = s(ev, "/context/timestamp")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            let Some(at) = at else {
                return Err(Ignored(
                    "incident event without a readable timestamp".into(),
                ));
            };
            let last = |p: &str| s(ev, p).map(|x| x.rsplit('/').next().unwrap_or(x).to_owned());
            Ok(vec![Intent::Incident(crate::incident::Incident {
                source: "cdevents".into(),
                external_id: format!(
                    "{}{}",
                    s(ev, "/subject/source")
                        .or_else(|| s(ev, "/context/source"))
                        .unwrap_or(""),
                    s(ev, "/subject/id")
                        .map(|i| format!("/{i}"))
                        .unwrap_or_default()
                ),
                title: s(ev, "/subject/content/description")
                    .unwrap_or("incident")
                    .to_owned(),
                status: if pred == "resolved" {
                    crate::incident::IncidentStatus::Resolved
                } else {
                    crate::incident::IncidentStatus::Open
                },
                severity: None,
                service: last("/subject/content/service/id"),
                environment: last("/subject/content/environment/id"),
                started_at: at,
                resolved_at: (pred == "resolved").then_some(at),
                url: None,
            })])
        }
        ("service", p) => Err(Ignored(format!("service.{p} does not record a deployment"))),
        (subj, p) => Err(Ignored(format!(
            "{subj}.{p} is valid and acknowledged; shipgate does not act on it yet"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn purls() {
        let (n, v, d) = parse_purl("pkg:oci/myapp@sha256%3A0b31?repository_url=x").unwrap();
        assert_eq!(
            (n.as_str(), v.as_deref(), d.as_deref()),
            ("myapp", Some("sha256:0b31"), Some("sha256:0b31"))
        );
        let (n, v, d) = parse_purl("pkg:golang/sample-app@v1.2.3").unwrap();
        assert_eq!(
            (n.as_str(), v.as_deref(), d),
            ("sample-app", Some("v1.2.3"), None)
        );
        assert!(parse_purl("not-a-purl").is_none());
    }

    #[test]
    fn deployed_maps_to_a_succeeded_deployment() {
        let ev = json!({"context": {"id": "e1", "source": "/tekton", "type": "dev.cdevents.service.deployed.0.3.0", "timestamp": "2024-01-01T00:00:00Z"},
            "subject": {"id": "service/payments", "content": {"environment": {"id": "production"}, "artifactId": "pkg:oci/payments@sha256%3Aab"}}});
        let m = map(&ev).unwrap();
        let Intent::Deployment { body } = &m[0] else {
            panic!()
        };
        assert_eq!(body["service"], "payments");
        assert_eq!(body["artifact_digest"], "sha256:ab");
        assert_eq!(body["status"], "succeeded");
        assert_eq!(map(&ev).unwrap(), m, "the same event maps to the same id");
        assert!(
            map(&json!({"context": {"type": "dev.cdevents.pipelinerun.started.0.3.0"}})).is_err()
        );
    }
}
