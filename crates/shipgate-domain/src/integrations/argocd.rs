//! Argo CD: the notification template shipgate ships (`integrations/argocd/`) posts a small JSON
//! document rendered from the Application on sync start, success and failure; each advances the
//! deployment of that sync (Application UID + history id or revision).
use serde_json::{Map, Value, json};

use super::{Ignored, Intent, Mapped, derived_id, s};
use crate::FieldErrors;

pub fn map(p: &Value) -> Result<Mapped, FieldErrors> {
    let mut errors = FieldErrors::default();
    let app = s(p, "/app");
    let uid = s(p, "/uid").or(app);
    let phase = s(p, "/phase");
    let revision = s(p, "/revision");
    let destination = s(p, "/destination").or_else(|| s(p, "/environment"));
    for (f, ok) in [
        ("app", app.is_some()),
        ("phase", phase.is_some()),
        ("revision", revision.is_some()),
        ("destination", destination.is_some()),
    ] {
        if !ok {
            errors.add(f, "required", "is required");
        }
    }
    let (Some(app), Some(uid), Some(phase), Some(revision), Some(dest)) =
        (app, uid, phase, revision, destination)
    else {
        return Err(errors);
    };
    let health = s(p, "/health").unwrap_or("");
    let status = match (phase, health) {
        ("Running", _) => "started",
        ("Succeeded", "Degraded") => "failed",
        ("Succeeded", _) => "succeeded",
        ("Failed" | "Error", _) => "failed",
        ("Terminating", _) => "cancelled",
        (ph, _) => {
            return Ok(Err(Ignored(format!(
                "sync phase '{ph}' does not change an outcome"
            ))));
        }
    };
    let env = s(p, "/environment").unwrap_or(dest);
    let sync = s(p, "/history_id").unwrap_or(revision);
    let deployment_id = derived_id(&["argocd", uid, sync, env]);
    let mut body = Map::new();
    body.insert("id".into(), json!(deployment_id.to_string()));
    body.insert("service".into(), json!(s(p, "/service").unwrap_or(app)));
    body.insert("environment".into(), json!(env));
    body.insert(
        "version".into(),
        json!(
            s(p, "/version")
                .map(str::to_owned)
                .unwrap_or_else(|| revision.chars().take(12).collect())
        ),
    );
    body.insert("status".into(), json!("queued"));
    body.insert("trigger".into(), json!("gitops"));
    body.insert("deployer_type".into(), json!("pipeline"));
    if revision.len() == 40 || revision.len() == 64 {
        body.insert("commit_sha".into(), json!(revision));
    }
    if let Some(r) = s(p, "/repo_url") {
        body.insert("repository".into(), json!(r));
    }
    if let Some(r) = s(p, "/target_revision") {
        body.insert("git_ref".into(), json!(r));
    }
    if let Some(u) = s(p, "/initiated_by") {
        body.insert("deployer".into(), json!(u));
    }
    if let Some(t) = s(p, "/started_at") {
        body.insert("started_at".into(), json!(t));
    }
    body.insert(
        "labels".into(),
        json!({"argocd.app": app, "argocd.destination": dest, "argocd.sync": sync}),
    );
    let mut st = Map::new();
    st.insert(
        "id".into(),
        json!(derived_id(&["argocd", "status", uid, sync, env, phase, health]).to_string()),
    );
    st.insert("status".into(), json!(status));
    if let Some(t) = s(p, "/finished_at").filter(|_| status != "started") {
        st.insert("occurred_at".into(), json!(t));
    }
    if let Some(m) = s(p, "/message") {
        st.insert(
            "message".into(),
            json!(m.chars().take(1000).collect::<String>()),
        );
    }
    Ok(Ok(vec![Intent::Status {
        deployment_id,
        deployment: Value::Object(body),
        status: Value::Object(st),
    }]))
}
