//! GitLab webhooks: Deployment Hooks create and advance deployment records; pipeline, push,
//! tag push and merge request hooks are acknowledged with a reason. GitLab writes timestamps in
//! three forms (`2021-04-28 21:50:00 +0200`, `2016-08-12 15:23:28 UTC`, RFC 3339); all are
//! normalised to RFC 3339.
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Ignored, Intent, Mapped, derived_id, s};
use crate::FieldErrors;

pub fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    if let Ok(dt) = DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f %z") {
        return Some(dt.with_timezone(&Utc));
    }
    if let Some(naive) = t.strip_suffix(" UTC")
        && let Ok(n) = NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S%.f")
    {
        return Some(n.and_utc());
    }
    None
}

fn status_of(s: &str) -> Option<&'static str> {
    Some(match s {
        "created" => "queued",
        "running" => "started",
        "success" => "succeeded",
        "failed" => "failed",
        "canceled" | "cancelled" => "cancelled",
        _ => return None,
    })
}

fn push(p: &Value) -> Mapped {
    let Some(repository) = s(p, "/project/web_url").map(str::to_owned) else {
        return Err(Ignored("push names no project".into()));
    };
    let commits = super::pushed_commits(p, &repository);
    if commits.is_empty() {
        return Err(Ignored("push carries no commits (a deleted branch)".into()));
    }
    Ok(vec![Intent::Commits(commits)])
}

fn merge_request(p: &Value) -> Mapped {
    let (Some(repository), Some(iid)) = (
        s(p, "/project/web_url").map(str::to_owned),
        p.pointer("/object_attributes/iid").and_then(Value::as_i64),
    ) else {
        return Err(Ignored("merge request names no project or iid".into()));
    };
    let state = s(p, "/object_attributes/state").unwrap_or("opened");
    Ok(vec![Intent::PullRequest(crate::vcs::PullRequestRecord {
        repository,
        number: iid,
        title: s(p, "/object_attributes/title")
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect(),
        state: state.to_owned(),
        merged: state == "merged",
        head_sha: s(p, "/object_attributes/last_commit/id").map(str::to_owned),
        merge_commit_sha: s(p, "/object_attributes/merge_commit_sha").map(str::to_owned),
        url: s(p, "/object_attributes/url").map(str::to_owned),
        author: s(p, "/user/username").map(str::to_owned),
    })])
}

/// Maps one GitLab delivery (`object_kind` in the body names the hook).
pub fn map(p: &Value) -> Result<Mapped, FieldErrors> {
    let mut errors = FieldErrors::default();
    let Some(kind) = s(p, "/object_kind") else {
        errors.add(
            "object_kind",
            "required",
            "a GitLab hook names its object_kind",
        );
        return Err(errors);
    };
    match kind {
        "deployment" => {}
        "push" => return Ok(push(p)),
        "merge_request" => return Ok(merge_request(p)),
        "tag_push" => {
            let (Some(repository), Some(tag)) = (
                s(p, "/project/web_url").map(str::to_owned),
                s(p, "/ref").and_then(|r| r.strip_prefix("refs/tags/")),
            ) else {
                return Ok(Err(Ignored("tag push names no project or tag".into())));
            };
            let after = s(p, "/checkout_sha")
                .or_else(|| s(p, "/after"))
                .unwrap_or_default();
            return Ok(Ok(vec![super::tag_pushed(repository, tag, after)]));
        }
        "pipeline" | "build" | "release" => {
            return Ok(Err(Ignored(format!(
                "{kind} hooks are acknowledged; deployments are recorded from Deployment hooks"
            ))));
        }
        other => {
            return Ok(Err(Ignored(format!(
                "object_kind '{other}' is not handled"
            ))));
        }
    }
    let project = p
        .pointer("/project/id")
        .map(|v| v.to_string())
        .or_else(|| s(p, "/project/path_with_namespace").map(str::to_owned));
    let dep_id = p.get("deployment_id").map(|v| v.to_string());
    let env = s(p, "/environment");
    let status = s(p, "/status");
    for (field, present) in [
        ("project.id", project.is_some()),
        ("deployment_id", dep_id.is_some()),
        ("environment", env.is_some()),
        ("status", status.is_some()),
    ] {
        if !present {
            errors.add(field, "required", "is required");
        }
    }
    let at = match s(p, "/status_changed_at") {
        Some(t) => match parse_time(t) {
            Some(dt) => Some(dt),
            None => {
                errors.add(
                    "status_changed_at",
                    "invalid_format",
                    format!("'{t}' is not a time GitLab writes"),
                );
                None
            }
        },
        None => None,
    };
    let (Some(project), Some(dep_id), Some(env), Some(status)) = (project, dep_id, env, status)
    else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(st) = status_of(status) else {
        return Ok(Err(Ignored(format!(
            "deployment status '{status}' does not change an outcome"
        ))));
    };
    // The hook carries only the short sha; the full one ends the commit URL.
    let sha = s(p, "/commit_url")
        .and_then(|u| u.rsplit('/').next())
        .filter(|x| x.len() == 40 || x.len() == 64)
        .map(str::to_owned);
    let short = s(p, "/short_sha").map(str::to_owned);
    let service = s(p, "/project/name")
        .or_else(|| s(p, "/project/path_with_namespace"))
        .unwrap_or_default();
    let deployment_id = derived_id(&["gitlab", "deployment", &project, &dep_id, env]);
    let mut body = Map::new();
    body.insert("id".into(), json!(deployment_id.to_string()));
    body.insert("service".into(), json!(service));
    body.insert("environment".into(), json!(env));
    body.insert(
        "version".into(),
        json!(
            short
                .clone()
                .or_else(|| sha.clone())
                .unwrap_or_else(|| dep_id.clone())
        ),
    );
    body.insert("status".into(), json!("queued"));
    body.insert("trigger".into(), json!("pipeline"));
    body.insert("deployer_type".into(), json!("pipeline"));
    if let Some(sha) = &sha {
        body.insert("commit_sha".into(), json!(sha));
    }
    if let Some(r) = s(p, "/project/web_url") {
        body.insert("repository".into(), json!(r));
    }
    if let Some(u) = s(p, "/user/username") {
        body.insert("deployer".into(), json!(u));
    }
    if let Some(t) = at {
        body.insert("started_at".into(), json!(t.to_rfc3339()));
    }
    let mut labels = Map::new();
    labels.insert("gitlab.deployment_id".into(), json!(dep_id));
    if let Some(j) = p.get("deployable_id").filter(|v| !v.is_null()) {
        labels.insert("cicd.pipeline.task.run.id".into(), json!(j.to_string()));
    }
    body.insert("labels".into(), Value::Object(labels));
    let mut status_body = Map::new();
    status_body.insert(
        "id".into(),
        json!(derived_id(&["gitlab", "status", &project, &dep_id, env, status]).to_string()),
    );
    status_body.insert("status".into(), json!(st));
    if let Some(t) = at {
        status_body.insert("occurred_at".into(), json!(t.to_rfc3339()));
    }
    Ok(Ok(vec![Intent::Status {
        deployment_id,
        deployment: Value::Object(body),
        status: Value::Object(status_body),
    }]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_time_forms() {
        let want = "2021-04-28T19:50:00+00:00";
        assert_eq!(
            parse_time("2021-04-28 21:50:00 +0200")
                .unwrap()
                .to_rfc3339(),
            want
        );
        assert_eq!(
            parse_time("2021-04-28 19:50:00 UTC").unwrap().to_rfc3339(),
            want
        );
        assert_eq!(
            parse_time("2021-04-28T19:50:00Z").unwrap().to_rfc3339(),
            want
        );
        assert!(parse_time("28/04/2021").is_none());
    }

    #[test]
    fn deployment_hook() {
        let p = json!({"object_kind": "deployment", "status": "success", "status_changed_at": "2021-04-28 21:50:00 +0200",
            "deployment_id": 15, "environment": "staging", "project": {"id": 30, "name": "app"},
            "short_sha": "279484c0", "commit_url": "http://x/-/commit/279484c09fbe69ededfced8c1bb6e6d24616b468"});
        let m = map(&p).unwrap().unwrap();
        let Intent::Status {
            status, deployment, ..
        } = &m[0]
        else {
            panic!()
        };
        assert_eq!(status["status"], "succeeded");
        assert_eq!(
            deployment["commit_sha"],
            "279484c09fbe69ededfced8c1bb6e6d24616b468"
        );
        let mut bad = p.clone();
        bad["status_changed_at"] = json!("yesterday");
        assert_eq!(map(&bad).unwrap_err().0[0].field, "status_changed_at");
    }
}
