//! Jenkins Notification plugin (JSON format): each job phase advances a deployment. The plugin
//! knows nothing of environments, so the endpoint's query (`?service=&environment=`) or the
//! build's parameters (`SHIPGATE_ENVIRONMENT`, `ENVIRONMENT`, `SHIPGATE_SERVICE`, `VERSION`) name
//! them.
use serde_json::{Map, Value, json};

use super::{Ignored, Intent, Mapped, derived_id, s};
use crate::FieldErrors;

fn param<'a>(p: &'a Value, names: &[&str]) -> Option<&'a str> {
    let params = p.pointer("/build/parameters")?;
    names
        .iter()
        .find_map(|n| params.get(*n).and_then(Value::as_str))
}

/// Maps one notification; `service` and `environment` come from the endpoint's query when set.
pub fn map(
    p: &Value,
    service: Option<&str>,
    environment: Option<&str>,
) -> Result<Mapped, FieldErrors> {
    let mut errors = FieldErrors::default();
    let job = s(p, "/name");
    let number = p.pointer("/build/number").map(|v| v.to_string());
    let phase = s(p, "/build/phase");
    let service = service
        .or_else(|| param(p, &["SHIPGATE_SERVICE", "SERVICE"]))
        .or(job);
    let environment =
        environment.or_else(|| param(p, &["SHIPGATE_ENVIRONMENT", "ENVIRONMENT", "DEPLOY_ENV"]));
    for (f, ok) in [
        ("name", job.is_some()),
        ("build.number", number.is_some()),
        ("build.phase", phase.is_some()),
        ("environment", environment.is_some()),
    ] {
        if !ok {
            let msg = if f == "environment" {
                "name the environment: ?environment= on the notification URL, or a SHIPGATE_ENVIRONMENT build parameter"
            } else {
                "is required"
            };
            errors.add(f, "required", msg);
        }
    }
    let (Some(job), Some(number), Some(phase), Some(service), Some(env)) =
        (job, number, phase, service, environment)
    else {
        return Err(errors);
    };
    let result = s(p, "/build/status");
    let status = match (phase, result) {
        ("QUEUED", _) => "queued",
        ("STARTED", _) => "started",
        ("COMPLETED" | "FINALIZED" | "FINISHED", Some("SUCCESS")) => "succeeded",
        ("COMPLETED" | "FINALIZED" | "FINISHED", Some("FAILURE" | "UNSTABLE")) => "failed",
        ("COMPLETED" | "FINALIZED" | "FINISHED", Some("ABORTED" | "NOT_BUILT")) => "cancelled",
        (ph, r) => {
            return Ok(Err(Ignored(format!(
                "phase {ph} with status {} does not change an outcome",
                r.unwrap_or("(none)")
            ))));
        }
    };
    let deployment_id = derived_id(&["jenkins", job, &number, env]);
    let mut body = Map::new();
    body.insert("id".into(), json!(deployment_id.to_string()));
    body.insert("service".into(), json!(service));
    body.insert("environment".into(), json!(env));
    body.insert(
        "version".into(),
        json!(
            param(p, &["VERSION", "SHIPGATE_VERSION"])
                .map(str::to_owned)
                .unwrap_or_else(|| format!("build-{number}"))
        ),
    );
    body.insert("status".into(), json!("queued"));
    body.insert("trigger".into(), json!("pipeline"));
    body.insert("deployer_type".into(), json!("pipeline"));
    body.insert(
        "correlation_id".into(),
        json!(format!("jenkins:{job}#{number}")),
    );
    if let Some(c) = s(p, "/build/scm/commit") {
        body.insert("commit_sha".into(), json!(c));
    }
    if let Some(b) = s(p, "/build/scm/branch") {
        body.insert("git_ref".into(), json!(b));
    }
    if let Some(u) = s(p, "/build/scm/url") {
        body.insert("repository".into(), json!(u));
    }
    let mut labels = Map::new();
    labels.insert("cicd.pipeline.name".into(), json!(job));
    labels.insert("cicd.pipeline.run.id".into(), json!(number));
    if let Some(u) = s(p, "/build/full_url") {
        labels.insert("cicd.pipeline.run.url.full".into(), json!(u));
    }
    body.insert("labels".into(), Value::Object(labels));
    let status_body = json!({
        "id": derived_id(&["jenkins", "status", job, &number, env, phase, result.unwrap_or("")]).to_string(),
        "status": status,
    });
    Ok(Ok(vec![Intent::Status {
        deployment_id,
        deployment: Value::Object(body),
        status: status_body,
    }]))
}
