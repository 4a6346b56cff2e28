//! GitHub webhooks: `deployment` and `deployment_status` create and advance deployment records
//! (GitHub Enterprise Server versions that omit `action` included); other events are
//! acknowledged and ignored with a reason.
use serde_json::{Map, Value, json};

use super::{Ignored, Intent, Mapped, derived_id, s};
use crate::FieldErrors;

/// GitHub deployment states -> shipgate statuses.
fn status_of(state: &str) -> Option<&'static str> {
    Some(match state {
        "queued" | "pending" | "waiting" => "queued",
        "in_progress" => "started",
        "success" => "succeeded",
        "failure" | "error" => "failed",
        _ => return None,
    })
}

fn deployment_key(p: &Value) -> Option<(String, String)> {
    let repo = p
        .pointer("/repository/id")
        .map(|v| v.to_string())
        .or_else(|| s(p, "/repository/full_name").map(str::to_owned))?;
    let id = p.pointer("/deployment/id")?.to_string();
    Some((repo, id))
}

/// A `POST /deployments` body for the payload's `deployment`.
fn deployment_body(p: &Value, errors: &mut FieldErrors) -> Option<Value> {
    let d = p.get("deployment").filter(|d| d.is_object());
    let Some(d) = d else {
        errors.add("deployment", "required", "the payload has no deployment");
        return None;
    };
    let (repo_key, dep_id) = deployment_key(p)?;
    let sha = s(d, "/sha");
    let extra = d.get("payload").filter(|x| x.is_object());
    let from_payload = |k: &str| extra.and_then(|x| x.get(k)).and_then(Value::as_str);
    let service = from_payload("service")
        .or_else(|| s(p, "/repository/name"))
        .unwrap_or_default();
    let environment = s(d, "/environment").unwrap_or_default();
    if service.is_empty() {
        errors.add(
            "repository.name",
            "required",
            "no service: the payload names no repository",
        );
    }
    if environment.is_empty() {
        errors.add("deployment.environment", "required", "is required");
    }
    if !errors.is_empty() {
        return None;
    }
    let version = from_payload("version")
        .map(str::to_owned)
        .or_else(|| sha.map(|x| x.chars().take(12).collect()))
        .or_else(|| s(d, "/ref").map(str::to_owned))
        .unwrap_or_else(|| dep_id.clone());
    let creator = s(d, "/creator/login");
    let mut body = Map::new();
    body.insert(
        "id".into(),
        // A GitHub deployment belongs to one environment for life; the environment is part of
        // the key so that a reused or replayed id with another environment cannot merge records.
        json!(derived_id(&["github", "deployment", &repo_key, &dep_id, environment]).to_string()),
    );
    body.insert("service".into(), json!(service));
    body.insert("environment".into(), json!(environment));
    body.insert("version".into(), json!(version));
    body.insert("status".into(), json!("queued"));
    body.insert("trigger".into(), json!("webhook"));
    if let Some(sha) = sha {
        body.insert("commit_sha".into(), json!(sha));
    }
    if let Some(r) = s(d, "/ref") {
        body.insert("git_ref".into(), json!(r));
    }
    if let Some(r) = s(p, "/repository/html_url").or_else(|| s(p, "/repository/full_name")) {
        body.insert("repository".into(), json!(r));
    }
    if let Some(c) = creator {
        body.insert("deployer".into(), json!(c));
        let bot = c.ends_with("[bot]") || s(d, "/creator/type") == Some("Bot");
        body.insert(
            "deployer_type".into(),
            json!(if bot { "pipeline" } else { "human" }),
        );
    }
    if let Some(t) = s(d, "/created_at") {
        body.insert("started_at".into(), json!(t));
    }
    for k in ["artifact", "artifact_digest", "change_ref", "team"] {
        if let Some(v) = from_payload(k) {
            body.insert(k.into(), json!(v));
        }
    }
    let mut labels = Map::new();
    labels.insert("github.deployment_id".into(), json!(dep_id));
    if let Some(t) = s(d, "/task") {
        labels.insert("github.task".into(), json!(t));
    }
    if let Some(run) = p.pointer("/workflow_run/id") {
        labels.insert("cicd.pipeline.run.id".into(), json!(run.to_string()));
        body.insert("correlation_id".into(), json!(format!("github-run-{run}")));
    }
    body.insert("labels".into(), Value::Object(labels));
    Some(Value::Object(body))
}

fn repo_url(p: &Value) -> Option<String> {
    s(p, "/repository/html_url")
        .or_else(|| s(p, "/repository/full_name"))
        .map(str::to_owned)
}

fn push(p: &Value) -> Mapped {
    let Some(repository) = repo_url(p) else {
        return Err(Ignored("push names no repository".into()));
    };
    if let Some(tag) = s(p, "/ref").and_then(|r| r.strip_prefix("refs/tags/")) {
        let after = s(p, "/after").unwrap_or_default();
        return Ok(vec![super::tag_pushed(repository, tag, after)]);
    }
    let commits = super::pushed_commits(p, &repository);
    if commits.is_empty() {
        return Err(Ignored(format!(
            "push to {} carries no commits (a tag, or a deleted branch)",
            s(p, "/ref").unwrap_or("?")
        )));
    }
    Ok(vec![Intent::Commits(commits)])
}

fn pull_request(p: &Value) -> Mapped {
    let (Some(repository), Some(number)) = (
        repo_url(p),
        p.pointer("/pull_request/number").and_then(Value::as_i64),
    ) else {
        return Err(Ignored("pull_request names no repository or number".into()));
    };
    Ok(vec![Intent::PullRequest(crate::vcs::PullRequestRecord {
        repository,
        number,
        title: s(p, "/pull_request/title")
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect(),
        state: s(p, "/pull_request/state").unwrap_or("open").to_owned(),
        merged: p
            .pointer("/pull_request/merged")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        head_sha: s(p, "/pull_request/head/sha").map(str::to_owned),
        merge_commit_sha: s(p, "/pull_request/merge_commit_sha").map(str::to_owned),
        url: s(p, "/pull_request/html_url").map(str::to_owned),
        author: s(p, "/pull_request/user/login").map(str::to_owned),
    })])
}

/// A `deployment_protection_rule` request: GitHub waits on shipgate's answer at the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectionRequest {
    pub callback_url: String,
    pub environment: String,
    /// The change request the deployment runs under (`payload.change_ref` or `payload.change`).
    pub change: Option<String>,
    pub digest: Option<String>,
    pub deployer: Option<String>,
}

pub fn protection_request(p: &Value) -> Result<ProtectionRequest, FieldErrors> {
    let mut errors = FieldErrors::default();
    let callback = s(p, "/deployment_callback_url");
    let env = s(p, "/environment").or_else(|| s(p, "/deployment/environment"));
    if callback.is_none() {
        errors.add("deployment_callback_url", "required", "is required");
    }
    if env.is_none() {
        errors.add("environment", "required", "is required");
    }
    let (Some(callback), Some(env)) = (callback, env) else {
        return Err(errors);
    };
    let from_payload = |k: &str| {
        p.pointer(&format!("/deployment/payload/{k}"))
            .and_then(Value::as_str)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
    };
    Ok(ProtectionRequest {
        callback_url: callback.to_owned(),
        environment: env.to_owned(),
        change: from_payload("change_ref").or_else(|| from_payload("change")),
        digest: from_payload("artifact_digest"),
        deployer: s(p, "/sender/login").map(str::to_owned),
    })
}

/// Splits an absolute http(s) URL into its origin (`scheme://authority`, lowercased) and its
/// path (`""` or starting with `/`). `None` for anything else, and for an authority with user
/// info or characters a host and port never have.
fn origin_and_path(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host_chars =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if authority.is_empty() || !authority.chars().all(host_chars) {
        return None;
    }
    Some((
        format!("{scheme}://{}", authority.to_ascii_lowercase()),
        path,
    ))
}

/// Whether a `deployment_callback_url` may receive the GitHub token: it must be on the
/// configured API (`api_base`: same scheme, host and port; under its path prefix, such as
/// GitHub Enterprise Server's `/api/v3`) and be exactly GitHub's callback,
/// `{prefix}/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`. Refused:
/// any `.` or `..` segment, any percent-encoding (so no encoded dot or slash either), empty
/// segments (`//`), a query, a fragment, user info and backslashes. What is checked is exactly
/// what an HTTP client would request, so no normalisation can lead the token elsewhere.
pub fn check_callback_url(api_base: &str, callback: &str) -> Result<(), String> {
    let api_base = api_base.trim();
    let (origin, prefix) = origin_and_path(api_base.trim_end_matches('/')).ok_or_else(|| {
        format!("the configured GitHub API '{api_base}' is not an absolute http(s) URL")
    })?;
    if callback
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '\\' | '?' | '#' | '%' | '@'))
    {
        return Err(format!(
            "'{callback}' has characters a GitHub callback never has (percent-encoding, a query, a fragment, user info, a backslash or whitespace)"
        ));
    }
    let Some((cb_origin, path)) = origin_and_path(callback) else {
        return Err(format!("'{callback}' is not an absolute http(s) URL"));
    };
    if cb_origin != origin {
        return Err(format!(
            "'{callback}' is not on the configured GitHub API ({origin})"
        ));
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    if path.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(format!("'{callback}' has an empty path segment"));
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(format!("'{callback}' has a '.' or '..' path segment"));
    }
    let expected = "{prefix}/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule";
    let not_github =
        || format!("'{callback}' is not GitHub's callback path {expected} (prefix '{prefix}')");
    let rest = path.strip_prefix(prefix).ok_or_else(not_github)?;
    fn name(s: &str) -> bool {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }
    match rest.split('/').collect::<Vec<&str>>().as_slice() {
        [
            "",
            "repos",
            owner,
            repo,
            "actions",
            "runs",
            run,
            "deployment_protection_rule",
        ] if name(owner)
            && name(repo)
            && !run.is_empty()
            && run.len() <= 20
            && run.chars().all(|c| c.is_ascii_digit()) =>
        {
            Ok(())
        }
        _ => Err(not_github()),
    }
}

/// Maps one GitHub delivery (`event` is the `X-GitHub-Event` header).
pub fn map(event: &str, p: &Value) -> Result<Mapped, FieldErrors> {
    let mut errors = FieldErrors::default();
    if !p.is_object() {
        errors.add("", "invalid_type", "expected a JSON object");
        return Err(errors);
    }
    // GitHub Enterprise Server before 3.x sends deployment events without `action`.
    let action = s(p, "/action").unwrap_or("created");
    match event {
        "ping" => Ok(Err(Ignored("ping: the hook is set up".into()))),
        "deployment" if action == "created" => {
            let body = deployment_body(p, &mut errors);
            match body {
                Some(b) if errors.is_empty() => Ok(Ok(vec![Intent::Deployment { body: b }])),
                _ => Err(errors),
            }
        }
        "deployment_status" if action == "created" => {
            let body = deployment_body(p, &mut errors);
            let state = s(p, "/deployment_status/state");
            if state.is_none() {
                errors.add("deployment_status.state", "required", "is required");
            }
            let (Some(body), Some(state)) = (body, state) else {
                return Err(errors);
            };
            if !errors.is_empty() {
                return Err(errors);
            }
            let Some(status) = status_of(state) else {
                return Ok(Err(Ignored(format!(
                    "deployment_status state '{state}' does not change a deployment's outcome"
                ))));
            };
            let (repo_key, _) = deployment_key(p).unwrap_or_default();
            let status_id = p
                .pointer("/deployment_status/id")
                .map(|v| v.to_string())
                .unwrap_or_default();
            let mut st = Map::new();
            st.insert(
                "id".into(),
                json!(
                    derived_id(&[
                        "github",
                        "deployment_status",
                        &repo_key,
                        &status_id,
                        state,
                        body["environment"].as_str().unwrap_or_default(),
                    ])
                    .to_string()
                ),
            );
            st.insert("status".into(), json!(status));
            if let Some(t) = s(p, "/deployment_status/created_at") {
                st.insert("occurred_at".into(), json!(t));
            }
            if let Some(m) = s(p, "/deployment_status/description") {
                st.insert("message".into(), json!(m));
            }
            let deployment_id = body["id"]
                .as_str()
                .and_then(|x| uuid::Uuid::parse_str(x).ok())
                .unwrap_or_default();
            Ok(Ok(vec![Intent::Status {
                deployment_id,
                deployment: body,
                status: Value::Object(st),
            }]))
        }
        "deployment" | "deployment_status" => Ok(Err(Ignored(format!(
            "{event} action '{action}' is not acted on"
        )))),
        "push" => Ok(push(p)),
        "pull_request" => Ok(pull_request(p)),
        "release" => Ok(match (repo_url(p), s(p, "/release/tag_name")) {
            (Some(repository), Some(tag)) if action != "deleted" => {
                Ok(vec![Intent::Tag(crate::vcs::TagRecord {
                    repository,
                    name: tag.to_owned(),
                    sha: None,
                    release_url: s(p, "/release/html_url").map(str::to_owned),
                })])
            }
            _ => Err(Ignored(format!("release action '{action}' links nothing"))),
        }),
        "workflow_run" | "workflow_job" | "deployment_review" | "deployment_protection_rule" => {
            Ok(Err(Ignored(format!(
                "{event} events are accepted but not yet acted on"
            ))))
        }
        other => Ok(Err(Ignored(format!("event type '{other}' is not handled")))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_must_be_githubs_own_path_on_the_configured_api() {
        let ok = [
            (
                "https://api.github.com",
                "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            (
                "https://api.github.com/",
                "https://API.github.com/repos/acme/my.repo_2/actions/runs/123456789/deployment_protection_rule",
            ),
            (
                "https://ghe.example.com/api/v3",
                "https://ghe.example.com/api/v3/repos/o/r/actions/runs/7/deployment_protection_rule",
            ),
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
        ];
        for (api, cb) in ok {
            assert_eq!(check_callback_url(api, cb), Ok(()), "{api} {cb}");
        }
        let gh = "https://api.github.com";
        let ghes = "https://ghe.example.com/api/v3";
        let refused = [
            // The reported traversals.
            (
                gh,
                "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule/../../evil",
            ),
            (ghes, "https://ghe.example.com/api/v3/../../evil"),
            // Percent-encoded dots and slashes, single dots, double slashes.
            (
                gh,
                "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule/%2e%2e/%2E%2E/evil",
            ),
            (
                gh,
                "https://api.github.com/repos/o/r%2f..%2fx/actions/runs/1/deployment_protection_rule",
            ),
            (
                gh,
                "https://api.github.com/repos/o/./actions/runs/1/deployment_protection_rule",
            ),
            (
                gh,
                "https://api.github.com/repos/../r/actions/runs/1/deployment_protection_rule",
            ),
            (
                gh,
                "https://api.github.com//repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            (
                gh,
                "https://api.github.com/repos/o//r/actions/runs/1/deployment_protection_rule",
            ),
            // Other paths on the right host.
            (gh, "https://api.github.com/evil"),
            (gh, "https://api.github.com/"),
            (gh, "https://api.github.com"),
            (
                gh,
                "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule/extra",
            ),
            (
                gh,
                "https://api.github.com/repos/o/r/actions/runs/x1/deployment_protection_rule",
            ),
            (
                gh,
                "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule?x=1",
            ),
            (
                gh,
                "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule#x",
            ),
            (
                gh,
                "https://api.github.com\\repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            // Other hosts, schemes, ports, user info.
            (
                gh,
                "https://api.github.com.evil.com/repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            (
                gh,
                "https://api.github.com@evil.com/repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            (
                gh,
                "http://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            (
                gh,
                "https://api.github.com:8443/repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            // GHES: the /api/v3 prefix is required, and nothing else under it.
            (
                ghes,
                "https://ghe.example.com/repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            (
                ghes,
                "https://ghe.example.com/api/v3x/repos/o/r/actions/runs/1/deployment_protection_rule",
            ),
            (ghes, "https://ghe.example.com/api/v3/evil"),
        ];
        for (api, cb) in refused {
            assert!(check_callback_url(api, cb).is_err(), "{api} {cb}");
        }
    }

    fn deployment(action: Option<&str>) -> Value {
        let mut v = json!({
            "deployment": {"id": 42, "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e", "ref": "main",
                "environment": "production", "creator": {"login": "octocat"}, "created_at": "2019-05-15T15:20:53Z",
                "payload": {}, "task": "deploy"},
            "repository": {"id": 7, "name": "hello", "full_name": "acme/hello", "html_url": "https://github.com/acme/hello"}
        });
        if let Some(a) = action {
            v["action"] = json!(a);
        }
        v
    }

    #[test]
    fn deployment_with_and_without_action_map_to_the_same_record() {
        let a = map("deployment", &deployment(Some("created")))
            .unwrap()
            .unwrap();
        let b = map("deployment", &deployment(None)).unwrap().unwrap();
        assert_eq!(a, b, "GHES payloads without action are the same event");
        let Intent::Deployment { body } = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(body["service"], "hello");
        assert_eq!(body["environment"], "production");
        assert_eq!(body["version"], "f95f852bd8fc");
        assert_eq!(body["deployer_type"], "human");
    }

    #[test]
    fn status_states_and_bad_payloads() {
        let mut p = deployment(Some("created"));
        p["deployment_status"] =
            json!({"id": 9, "state": "success", "created_at": "2019-05-15T15:21:00Z"});
        let m = map("deployment_status", &p).unwrap().unwrap();
        let Intent::Status {
            status,
            deployment_id,
            deployment,
        } = &m[0]
        else {
            panic!()
        };
        assert_eq!(status["status"], "succeeded");
        assert_eq!(deployment["id"], deployment_id.to_string());
        p["deployment_status"]["state"] = json!("inactive");
        assert!(map("deployment_status", &p).unwrap().is_err());
        let e = map("deployment", &json!({"action": "created"})).unwrap_err();
        assert_eq!(e.0[0].field, "deployment");
        assert!(map("teleport", &json!({})).unwrap().is_err());
    }
}
