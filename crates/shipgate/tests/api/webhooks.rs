//! Inbound webhooks, driven by the real sample payloads in the shared corpus
//! (`../shared/corpus`, see its SOURCES.md). Every GitHub payload there is sent with a valid
//! signature and is either acted on or acknowledged with a stated reason.
use std::path::PathBuf;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use shipgate_domain::EnvTier;
use shipgate_domain::requirements::RequiredField;

use crate::helpers::*;

const SECRET: &str = "It's a Secret to Everybody";

/// The corpus: `SHIPGATE_CORPUS`, or a `shared/corpus` beside an ancestor of this crate.
pub fn corpus() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SHIPGATE_CORPUS") {
        return Some(PathBuf::from(p));
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let found = here
        .ancestors()
        .map(|a| a.join("shared/corpus"))
        .chain([PathBuf::from("/work/shared/corpus")])
        .find(|p| p.join("SOURCES.md").exists());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the sample payload corpus is required under CI=true (set SHIPGATE_CORPUS)");
        }
        eprintln!(
            "\n*** SKIPPING corpus test: ../shared/corpus not found (set SHIPGATE_CORPUS) ***\n"
        );
    }
    found
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn deliver(app: &TestApp, event: &str, id: &str, body: Vec<u8>, sig: Option<String>) -> Resp {
    let sig = sig.unwrap_or_else(|| sign(&body));
    app.req(
        reqwest::Method::POST,
        "/api/v1/webhooks/default/github",
        None,
        Some(body.into()),
        &[
            ("content-type", "application/json"),
            ("x-github-event", event),
            ("x-github-delivery", id),
            ("x-hub-signature-256", &sig),
        ],
    )
    .await
}

async fn app() -> TestApp {
    TestApp::spawn_with(|s| {
        s.webhooks.insert(
            "default".into(),
            shipgate_server::routes::webhooks::WebhookSecrets {
                github_secret: Some(SECRET.to_owned().into()),
                gitlab_token: Some(SECRET.to_owned().into()),
                ..Default::default()
            },
        );
        // GitHub deployments carry no artifact digest; production still needs the commit.
        s.requirements
            .0
            .insert(EnvTier::Production, vec![RequiredField::CommitSha]);
    })
    .await
}

async fn deployments(app: &TestApp) -> Vec<Value> {
    let r = app.get("/api/v1/deployments?limit=1000").await;
    r.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_github_sample_is_acted_on_or_acknowledged_with_a_reason() {
    let Some(corpus) = corpus() else { return };
    let app = app().await;
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in std::fs::read_dir(corpus.join("github")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() || dir.ends_with("schemas") {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    assert!(files.len() >= 16, "{files:?}");
    for (i, f) in files.iter().enumerate() {
        let event = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(f).unwrap();
        let r = deliver(&app, event, &format!("corpus-{i}"), bytes, None).await;
        assert_eq!(r.status, 200, "{}: {}", f.display(), r.body);
        let result = r.body["result"].as_str().unwrap();
        let acted = (event.starts_with("deployment") && event != "deployment_review")
            || ["pull_request", "push", "release"].contains(&event);
        if acted {
            assert_eq!(result, "accepted", "{}: {}", f.display(), r.body);
            assert!(!r.body["records"].as_array().unwrap().is_empty());
        } else {
            assert_eq!(result, "ignored", "{}: {}", f.display(), r.body);
            assert!(
                r.body["reason"].as_str().is_some_and(|s| !s.is_empty()),
                "{}: a stated reason",
                f.display()
            );
        }
    }
    // The deployments the samples describe, with their outcome.
    let ds = deployments(&app).await;
    let prod = ds
        .iter()
        .find(|d| d["environment"]["name"] == "production" && d["service"] == "Hello-World")
        .unwrap_or_else(|| panic!("{ds:#?}"));
    assert_eq!(
        prod["commit_sha"],
        "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    );
    assert_eq!(
        prod["status"], "succeeded",
        "deployment_status success applied"
    );
    assert_eq!(prod["trigger"], "webhook");
    assert_eq!(prod["recorded_by"], "github");
    let pages: Vec<&Value> = ds
        .iter()
        .filter(|d| d["environment"]["raw"] == "github-pages")
        .collect();
    assert!(!pages.is_empty(), "{ds:#?}");
    assert_eq!(pages[0]["deployer_type"], "pipeline", "github-pages[bot]");

    // Every delivery is on record with its result.
    let list = app.get("/api/v1/webhook-deliveries?limit=1000").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body.as_array().unwrap().len(), files.len());
    app.stop().await;
}

#[tokio::test]
async fn github_deliveries_are_authenticated_deduplicated_and_validated() {
    let Some(corpus) = corpus() else { return };
    let app = app().await;
    let created = std::fs::read(corpus.join("github/deployment/created.json")).unwrap();

    // GitHub Enterprise Server before 3.x: the same event without `action`.
    let mut ghes: Value = serde_json::from_slice(&created).unwrap();
    ghes.as_object_mut().unwrap().remove("action");
    let ghes = serde_json::to_vec(&ghes).unwrap();
    let r = deliver(&app, "deployment", "d-1", ghes.clone(), None).await;
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("accepted")),
        "{}",
        r.body
    );
    assert_eq!(deployments(&app).await.len(), 1);

    // A redelivery (same X-GitHub-Delivery): answered from its record, nothing recorded twice.
    let r = deliver(&app, "deployment", "d-1", ghes.clone(), None).await;
    assert_eq!(r.body["result"], "duplicate", "{}", r.body);
    // The same deployment under a new delivery id: idempotent by its derived id.
    let r = deliver(&app, "deployment", "d-2", created.clone(), None).await;
    assert_eq!(r.body["result"], "accepted", "{}", r.body);
    assert_eq!(deployments(&app).await.len(), 1);

    // Bad signature, and a missing one: refused, recorded, nothing created.
    let mut tampered: Value = serde_json::from_slice(&created).unwrap();
    tampered["deployment"]["id"] = json!(999);
    let tampered = serde_json::to_vec(&tampered).unwrap();
    let r = deliver(
        &app,
        "deployment",
        "d-3",
        tampered.clone(),
        Some(sign(&created)),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    let r = deliver(&app, "deployment", "d-4", tampered, Some(String::new())).await;
    assert_eq!(r.status, 401);
    assert_eq!(deployments(&app).await.len(), 1);
    // A forged delivery cannot claim an id: the real one with that id is still acted on.
    let r = deliver(&app, "deployment", "d-3", created.clone(), None).await;
    assert_eq!(r.body["result"], "accepted", "{}", r.body);

    // Unknown event types are acknowledged with a reason.
    let r = deliver(&app, "teleport", "d-5", b"{}".to_vec(), None).await;
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("ignored"))
    );
    // Truncated JSON: refused with a problem, recorded as rejected, nothing half-created.
    let r = deliver(
        &app,
        "deployment",
        "d-6",
        created[..created.len() / 2].to_vec(),
        None,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    // A deployment with no environment: 422 naming the field.
    let mut bad: Value = serde_json::from_slice(&created).unwrap();
    bad["deployment"]["environment"] = json!("");
    let r = deliver(
        &app,
        "deployment",
        "d-7",
        serde_json::to_vec(&bad).unwrap(),
        None,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "deployment.environment");
    // An enormous payload: 413, never a 500.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(3 * 1024 * 1024)).into_bytes();
    let r = deliver(&app, "deployment", "d-8", huge, None).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(deployments(&app).await.len(), 1);

    let list = app.get("/api/v1/webhook-deliveries").await;
    let by_id = |id: &str| {
        list.body
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["delivery_id"] == format!("default:{id}") && d["source"] == "github")
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_id("d-6")["result"], "rejected");
    assert_eq!(by_id("d-7")["result"], "rejected");
    assert!(
        by_id("d-7")["reason"]
            .as_str()
            .unwrap()
            .contains("deployment.environment")
    );
    assert_eq!(by_id("d-5")["result"], "ignored");
    // A webhook for a tenant with no secret does not exist.
    let r = app
        .req(
            reqwest::Method::POST,
            "/api/v1/webhooks/other/github",
            None,
            Some(created.into()),
            &[("x-github-event", "deployment"), ("x-github-delivery", "x")],
        )
        .await;
    assert_eq!(r.status, 404);
    app.stop().await;
}

#[tokio::test]
async fn production_requirements_reject_a_github_deployment_with_the_reason() {
    let Some(corpus) = corpus() else { return };
    let app = TestApp::spawn_with(|s| {
        s.webhooks.insert(
            "default".into(),
            shipgate_server::routes::webhooks::WebhookSecrets {
                github_secret: Some(SECRET.to_owned().into()),
                gitlab_token: Some(SECRET.to_owned().into()),
                ..Default::default()
            },
        );
    })
    .await;
    let created = std::fs::read(corpus.join("github/deployment/created.json")).unwrap();
    let r = deliver(&app, "deployment", "p-1", created, None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"artifact_digest"), "{fields:?}");
    app.stop().await;
}

async fn send_cdevent(app: &TestApp, body: Vec<u8>, headers: &[(&str, &str)]) -> Resp {
    app.req(
        reqwest::Method::POST,
        "/api/v1/cdevents",
        Some(&app.token),
        Some(body.into()),
        headers,
    )
    .await
}

/// Every CDEvents sample in the corpus, in the three CloudEvents HTTP modes: the 0.5.1 events are
/// validated and acted on or acknowledged; the draft-spec ones are refused, naming why.
#[tokio::test]
async fn every_cdevents_sample_is_acted_on_or_refused_with_a_reason() {
    let Some(corpus) = corpus() else { return };
    let app = app().await;
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["cdevents", "cdevents/v0.6.0-draft"] {
        for f in std::fs::read_dir(corpus.join(sub)).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 13, "{files:?}");
    let mut deployed = 0;
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        let ev: Value = serde_json::from_slice(&bytes).unwrap();
        let ty = ev["context"]["type"].as_str().unwrap().to_owned();
        let id = format!("sample-{i}");
        // Rotate through binary, structured and bare modes.
        let r = match i % 3 {
            0 => {
                send_cdevent(
                    &app,
                    bytes.clone(),
                    &[
                        ("content-type", "application/json"),
                        ("ce-specversion", "1.0"),
                        ("ce-id", &id),
                        ("ce-type", &ty),
                        ("ce-source", "/corpus"),
                    ],
                )
                .await
            }
            1 => {
                let ce = json!({"specversion": "1.0", "id": id, "type": ty, "source": "/corpus", "data": ev});
                send_cdevent(
                    &app,
                    serde_json::to_vec(&ce).unwrap(),
                    &[("content-type", "application/cloudevents+json")],
                )
                .await
            }
            _ => send_cdevent(&app, bytes.clone(), &[("content-type", "application/json")]).await,
        };
        let draft = ev["context"]["specversion"]
            .as_str()
            .unwrap()
            .contains("draft");
        if draft {
            assert_eq!(r.status, 422, "{}: {}", f.display(), r.body);
            assert_eq!(r.body["errors"][0]["code"], "unknown_type", "{}", r.body);
            continue;
        }
        assert_eq!(r.status, 200, "{}: {}", f.display(), r.body);
        let result = r.body["result"].as_str().unwrap();
        if ty.starts_with("dev.cdevents.service.deployed")
            || ty.starts_with("dev.cdevents.service.upgraded")
            || ty.starts_with("dev.cdevents.service.rolledback")
        {
            assert_eq!(result, "accepted", "{}: {}", f.display(), r.body);
            deployed += 1;
        } else if ty.starts_with("dev.cdevents.incident.") {
            assert_eq!(result, "accepted", "{}: {}", f.display(), r.body);
        } else {
            assert_eq!(result, "ignored", "{}: {}", f.display(), r.body);
            assert!(r.body["reason"].as_str().is_some_and(|s| !s.is_empty()));
        }
    }
    assert!(deployed >= 1);
    let ds = deployments(&app).await;
    assert_eq!(ds.len(), deployed, "{ds:#?}");
    let d = ds
        .iter()
        .find(|d| d["labels"]["cdevents.type"] == "dev.cdevents.service.deployed.0.3.0")
        .unwrap();
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["environment"]["raw"], "test123");
    assert!(
        d["artifact_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // The incident samples: detected, then resolved.
    let incidents = app.get("/api/v1/incidents").await;
    let i = &incidents.body[0];
    assert_eq!(i["source"], "cdevents", "{}", incidents.body);
    assert_eq!(i["status"], "resolved");
    assert_eq!(i["service"], "myApp");

    // Strict: an unknown field is refused with its path; nothing recorded.
    let sample = std::fs::read(corpus.join("cdevents/service_deployed.json")).unwrap();
    let mut bad: Value = serde_json::from_slice(&sample).unwrap();
    bad["context"]["id"] = json!("bad-1");
    bad["subject"]["content"]["color"] = json!("blue");
    let r = send_cdevent(
        &app,
        serde_json::to_vec(&bad).unwrap(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "subject.content");
    // The CloudEvent type must be the CDEvent's.
    let r = send_cdevent(
        &app,
        sample.clone(),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "x-1"),
            ("ce-type", "dev.cdevents.service.removed.0.3.0"),
        ],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    // A redelivery of an accepted event acts on nothing.
    let r = send_cdevent(&app, sample, &[("content-type", "application/json")]).await;
    assert_eq!(r.body["result"], "duplicate", "{}", r.body);
    assert_eq!(deployments(&app).await.len(), deployed);
    // Truncated JSON.
    let r = send_cdevent(
        &app,
        b"{\"context\": {".to_vec(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // A viewer may not send events.
    let viewer = app.token_for("v", "viewer", None).await;
    let r = app
        .req(
            reqwest::Method::POST,
            "/api/v1/cdevents",
            Some(&viewer),
            Some(b"{}".to_vec().into()),
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    app.stop().await;
}

/// Every GitLab sample: the Deployment Hook records and advances a deployment (its
/// `+0200` timestamp normalised); the other hooks are acknowledged with a reason.
#[tokio::test]
async fn every_gitlab_sample_is_acted_on_or_acknowledged_with_a_reason() {
    let Some(corpus) = corpus() else { return };
    let app = app().await;
    let send = |body: Vec<u8>, token: &'static str, id: String| {
        let app = &app;
        async move {
            app.req(
                reqwest::Method::POST,
                "/api/v1/webhooks/default/gitlab",
                None,
                Some(body.into()),
                &[
                    ("content-type", "application/json"),
                    ("x-gitlab-token", token),
                    ("x-gitlab-event-uuid", &id),
                ],
            )
            .await
        }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus.join("gitlab"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5);
    for (i, f) in files.iter().enumerate() {
        let r = send(std::fs::read(f).unwrap(), SECRET, format!("gl-{i}")).await;
        assert_eq!(r.status, 200, "{}: {}", f.display(), r.body);
        if !f.ends_with("pipeline.json") {
            assert_eq!(r.body["result"], "accepted", "{}", r.body);
        } else {
            assert_eq!(r.body["result"], "ignored", "{}: {}", f.display(), r.body);
            assert!(r.body["reason"].as_str().is_some_and(|s| !s.is_empty()));
        }
    }
    let ds = deployments(&app).await;
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0]["status"], "succeeded");
    assert_eq!(
        ds[0]["commit_sha"],
        "279484c09fbe69ededfced8c1bb6e6d24616b468"
    );
    assert_eq!(
        ds[0]["started_at"], "2021-04-28T19:50:00Z",
        "the +0200 time in UTC"
    );
    assert_eq!(ds[0]["deployer"], "root");
    // Redelivery, a wrong token, no token.
    let body = std::fs::read(corpus.join("gitlab/deployment.json")).unwrap();
    let r = send(body.clone(), SECRET, "gl-0".into()).await;
    assert!(
        r.body["result"] == "duplicate" || r.body["result"] == "accepted",
        "{}",
        r.body
    );
    let r = send(body.clone(), "guess", "gl-x".into()).await;
    assert_eq!(r.status, 401);
    assert_eq!(deployments(&app).await.len(), 1);
    app.stop().await;
}

/// Jenkins Notification plugin samples, and the Argo CD notification template's document
/// rendered from the corpus Application.
#[tokio::test]
async fn jenkins_and_argocd_notifications_record_deployments() {
    let Some(corpus) = corpus() else { return };
    let app = app().await;
    let post = |path: String, body: Vec<u8>| {
        let app = &app;
        async move {
            app.req(
                reqwest::Method::POST,
                &path,
                Some(&app.token),
                Some(body.into()),
                &[("content-type", "application/json")],
            )
            .await
        }
    };
    for f in ["notification_started.json", "notification_finalized.json"] {
        let body = std::fs::read(corpus.join("jenkins").join(f)).unwrap();
        // Without an environment: refused, naming how to give one.
        let r = post("/api/v1/integrations/jenkins".into(), body.clone()).await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "environment");
        let r = post(
            "/api/v1/integrations/jenkins?environment=staging&service=support".into(),
            body,
        )
        .await;
        assert_eq!(
            (r.status, r.body["result"].as_str()),
            (200, Some("accepted")),
            "{}",
            r.body
        );
    }
    let ds = deployments(&app).await;
    let by_build = |n: &str| {
        ds.iter()
            .find(|d| d["labels"]["cicd.pipeline.run.id"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(by_build("162")["status"], "started");
    assert_eq!(by_build("148")["status"], "succeeded");

    // Argo CD: the document shipgate's notification template renders, built here from the
    // corpus Application with the template's own paths.
    let yaml =
        std::fs::read_to_string(corpus.join("argocd/application.synced-healthy.yaml")).unwrap();
    let app_doc: Value = serde_yaml::from_str(&yaml).unwrap();
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../ci-templates/argocd/shipgate-notifications.yaml"
    ))
    .unwrap();
    let at = |p: &str| {
        app_doc
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    for path in [
        ".app.status.operationState.syncResult.revision",
        ".app.spec.destination.namespace",
        ".app.status.operationState.phase",
        ".app.status.health.status",
        ".app.status.operationState.operation.initiatedBy.username",
    ] {
        assert!(template.contains(path), "the template renders {path}");
        let ptr = path.trim_start_matches(".app").replace('.', "/");
        assert!(!at(&ptr).is_empty(), "the corpus Application has {path}");
    }
    let history = app_doc["status"]["history"].as_array().unwrap();
    let last = history.last().unwrap()["id"].to_string();
    let argo = |phase: &str, health: &str| {
        json!({"app": at("/metadata/name"), "uid": at("/metadata/name"),
            "destination": format!("{}/{}", at("/spec/destination/name"), at("/spec/destination/namespace")),
            "environment": at("/spec/destination/namespace"),
            "revision": at("/status/operationState/syncResult/revision"), "history_id": last,
            "target_revision": at("/spec/source/targetRevision"), "repo_url": at("/spec/source/repoURL"),
            "phase": phase, "health": health,
            "initiated_by": at("/status/operationState/operation/initiatedBy/username"),
            "started_at": at("/status/operationState/startedAt"), "finished_at": at("/status/operationState/finishedAt"),
            "message": at("/status/operationState/message")})
    };
    // The catalog's triggers and templates are Argo CD configuration, not payloads: they parse.
    for sub in ["argocd/catalog/templates", "argocd/catalog/triggers"] {
        for f in std::fs::read_dir(corpus.join(sub)).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            let _: Value = serde_yaml::from_str(&text).unwrap();
        }
    }
    for (phase, health) in [("Running", "Progressing"), ("Succeeded", "Healthy")] {
        let r = post(
            "/api/v1/integrations/argocd".into(),
            serde_json::to_vec(&argo(phase, health)).unwrap(),
        )
        .await;
        assert_eq!(
            (r.status, r.body["result"].as_str()),
            (200, Some("accepted")),
            "{}",
            r.body
        );
    }
    let ds = deployments(&app).await;
    let a = ds
        .iter()
        .find(|d| d["labels"]["argocd.app"] == "velero-test")
        .unwrap();
    assert_eq!(a["status"], "succeeded");
    assert_eq!(a["trigger"], "gitops");
    assert_eq!(
        a["commit_sha"],
        at("/status/operationState/syncResult/revision")
    );
    assert_eq!(a["deployer"], "foo@example.com");
    let r = post(
        "/api/v1/integrations/argocd".into(),
        b"{\"app\": \"x\"}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    app.stop().await;
}

/// Pushes and pull requests give the history a deployment is placed in: what it shipped since
/// the previous deployment of its service to its environment.
#[tokio::test]
async fn a_deployment_shows_the_commits_and_pull_requests_it_shipped() {
    let app = app().await;
    let repo = "https://github.com/acme/checkout";
    let c = |n: u8| format!("{:040x}", n);
    let push = |before: String, ids: Vec<String>| {
        json!({"ref": "refs/heads/main", "before": before, "after": ids.last().unwrap(),
            "repository": {"id": 1, "name": "checkout", "full_name": "acme/checkout", "html_url": repo},
            "commits": ids.iter().map(|id| json!({"id": id, "message": format!("commit {}", &id[38..]),
                "timestamp": "2026-11-20T10:00:00Z", "author": {"name": "Dev", "username": "dev"},
                "added": [], "modified": [if id.ends_with('3') { "services/web/main.go" } else { "services/checkout/main.go" }],
                "removed": []})).collect::<Vec<_>>()})
    };
    let send = |event: &'static str, id: String, body: Value| {
        let app = &app;
        async move { deliver(app, event, &id, serde_json::to_vec(&body).unwrap(), None).await }
    };
    // A monorepo: checkout owns services/checkout/**; commit 3 touches only services/web.
    let r = app
        .post(
            "/api/v1/services",
            json!({"name": "checkout", "paths": ["services/checkout/**"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post("/api/v1/services", json!({"name": "x", "paths": ["/abs"]}))
        .await;
    assert_eq!(r.status, 422);
    let r = send("push", "p1".into(), push(c(0), vec![c(1), c(2)])).await;
    assert_eq!(r.body["result"], "accepted", "{}", r.body);
    let deploy = |version: &str, sha: String, at: &str| {
        let app = &app;
        let body = json!({"service": "checkout", "environment": "staging", "version": version,
            "commit_sha": sha, "repository": repo, "status": "succeeded", "started_at": at, "finished_at": at});
        async move {
            let r = app.post("/api/v1/deployments", body).await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    let v1 = deploy("1", c(2), "2026-11-20T11:00:00Z").await;
    send("push", "p2".into(), push(c(2), vec![c(3), c(4)])).await;
    let r = send(
        "pull_request",
        "pr7".into(),
        json!({"action": "closed", "number": 7, "repository": {"html_url": repo},
            "pull_request": {"number": 7, "title": "Faster checkout", "state": "closed", "merged": true,
                "head": {"sha": c(3)}, "merge_commit_sha": c(4), "html_url": format!("{repo}/pull/7"),
                "user": {"login": "dev"}}}),
    )
    .await;
    assert_eq!(r.body["result"], "accepted", "{}", r.body);
    let v2 = deploy("2", c(4), "2026-11-20T12:00:00Z").await;
    // v2 is tagged (tag push) and released (release event).
    let tag = json!({"ref": "refs/tags/v2", "before": c(0), "after": c(4), "commits": [],
        "repository": {"html_url": repo}});
    assert_eq!(
        send("push", "t1".into(), tag).await.body["result"],
        "accepted"
    );
    let rel = json!({"action": "published", "repository": {"html_url": repo},
        "release": {"tag_name": "v2", "target_commitish": "main", "html_url": format!("{repo}/releases/tag/v2")}});
    assert_eq!(
        send("release", "r1".into(), rel).await.body["result"],
        "accepted"
    );

    let s = app.get(&format!("/api/v1/deployments/{v2}/shipped")).await;
    assert_eq!(s.status, 200, "{}", s.body);
    let shas: Vec<&str> = s.body["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["sha"].as_str().unwrap())
        .collect();
    assert_eq!(
        shas,
        vec![c(4)],
        "commit 3 belongs to another service: {}",
        s.body
    );
    assert_eq!(s.body["previous_deployment"], v1.as_str());
    assert_eq!(s.body["previous_commit"], c(2));
    assert_eq!(s.body["incomplete"], false);
    assert_eq!(s.body["pull_requests"][0]["number"], 7);
    assert_eq!(s.body["pull_requests"][0]["title"], "Faster checkout");
    assert_eq!(s.body["tags"][0]["name"], "v2", "{}", s.body);
    assert_eq!(
        s.body["tags"][0]["release_url"],
        format!("{repo}/releases/tag/v2")
    );
    // The first deployment shipped everything known before it.
    let s = app.get(&format!("/api/v1/deployments/{v1}/shipped")).await;
    assert_eq!(s.body["commits"].as_array().unwrap().len(), 2, "{}", s.body);
    assert!(s.body["previous_deployment"].is_null());
    app.stop().await;
}

/// GitHub's deployment protection rules are decided by shipgate's gate and answered at the
/// callback (a recorded-API mock of GitHub): approved, rejected with the reasons, and rejected when
/// shipgate cannot decide. A pending change is answered when it is approved.
#[tokio::test]
async fn deployment_protection_rules_are_answered_by_the_gate() {
    use std::sync::{Arc, Mutex};
    let answers: Arc<Mutex<Vec<(HeaderMapLite, Value)>>> = Default::default();
    type HeaderMapLite = Option<String>;
    let sink = answers.clone();
    let mock = axum::Router::new().route(
        "/repos/acme/checkout/actions/runs/{run}/deployment_protection_rule",
        axum::routing::post(
            move |h: axum::http::HeaderMap, axum::Json(b): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push((
                        h.get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                        b,
                    ));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gh = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, mock).await });
    let app = TestApp::spawn_with(|s| {
        s.webhooks.insert(
            "default".into(),
            shipgate_server::routes::webhooks::WebhookSecrets {
                github_secret: Some(SECRET.to_owned().into()),
                github_token: Some("ghs_installation".to_owned().into()),
                github_protection_wait_secs: Some(10),
                github_api_url: Some(gh.clone()),
                ..Default::default()
            },
        );
    })
    .await;
    let r = app
        .req(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(&app.token),
            Some("[[rule]]\nname = \"std\"\nauto_approve = true\n[rule.match]\nchange_type = [\"standard\"]\n\n[[rule]]\nname = \"normal\"\napprovals = [{ group = \"cab\" }]\n[rule.match]\nchange_type = [\"normal\"]\n".to_owned().into()),
            &[("content-type", "application/toml")],
        )
        .await;
    assert_eq!(r.status, 422, "cab does not exist yet: {}", r.body);
    let carol = app
        .post(
            "/api/v1/people",
            json!({"subject": "carol", "token_role": "approver"}),
        )
        .await;
    let carol = carol.body["token"].as_str().unwrap().to_owned();
    app.req(
        reqwest::Method::PUT,
        "/api/v1/groups/cab",
        Some(&app.token),
        Some(json!({"members": ["carol"]}).to_string().into()),
        &[("content-type", "application/json")],
    )
    .await;
    let r = app
        .req(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(&app.token),
            Some("[[rule]]\nname = \"std\"\nauto_approve = true\n[rule.match]\nchange_type = [\"standard\"]\n\n[[rule]]\nname = \"normal\"\napprovals = [{ group = \"cab\" }]\n[rule.match]\nchange_type = [\"normal\"]\n".to_owned().into()),
            &[("content-type", "application/toml")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let open = |kind: &'static str| {
        let app = &app;
        async move {
            let r = app
                .post("/api/v1/changes", json!({"type": kind, "title": "t", "services": ["checkout"], "environments": ["staging"]}))
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["key"].as_str().unwrap().to_owned()
        }
    };
    let std_cr = open("standard").await;
    let normal_cr = open("normal").await;
    let request = |run: u32, change: Option<&str>| {
        let payload = match change {
            Some(c) => json!({"change_ref": c}),
            None => json!({}),
        };
        json!({"action": "requested", "environment": "staging", "event": "push",
            "deployment_callback_url": format!("{gh}/repos/acme/checkout/actions/runs/{run}/deployment_protection_rule"),
            "deployment": {"id": run, "sha": format!("{:040x}", run), "ref": "main", "environment": "staging", "payload": payload},
            "repository": {"id": 1, "name": "checkout", "full_name": "acme/checkout"}, "sender": {"login": "octocat"}})
    };
    let send = |run: u32, change: Option<&str>| {
        let app = &app;
        let body = serde_json::to_vec(&request(run, change)).unwrap();
        async move {
            deliver(
                app,
                "deployment_protection_rule",
                &format!("dpr-{run}"),
                body,
                None,
            )
            .await
        }
    };
    let wait_answers = |n: usize| {
        let answers = answers.clone();
        async move {
            wait_until(
                &format!("{n} protection rules are answered"),
                std::time::Duration::from_secs(10),
                async || {
                    let a = answers.lock().unwrap().clone();
                    if a.len() >= n {
                        Ok(a)
                    } else {
                        Err(format!("{a:?}"))
                    }
                },
            )
            .await
        }
    };
    let r = send(1, Some(&std_cr)).await;
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("accepted")),
        "{}",
        r.body
    );
    let a = wait_answers(1).await;
    assert_eq!(a[0].1["state"], "approved", "{:?}", a);
    assert_eq!(a[0].1["environment_name"], "staging");
    assert_eq!(a[0].0.as_deref(), Some("Bearer ghs_installation"));
    // An unknown change: rejected with the reason.
    send(2, Some("CR-99")).await;
    let a = wait_answers(2).await;
    assert_eq!(a[1].1["state"], "rejected");
    assert!(
        a[1].1["comment"]
            .as_str()
            .unwrap()
            .contains("unknown_change"),
        "{:?}",
        a[1]
    );
    // No change named: rejected, saying how to name one.
    send(3, None).await;
    let a = wait_answers(3).await;
    assert_eq!(a[2].1["state"], "rejected");
    assert!(a[2].1["comment"].as_str().unwrap().contains("change_ref"));
    // A callback outside the configured GitHub API never gets the token (same mock, other
    // host name): refused when it arrives, so nothing is kept to be answered later.
    let mut elsewhere = request(5, Some(&std_cr));
    elsewhere["deployment_callback_url"] = json!(format!(
        "{}/repos/acme/checkout/actions/runs/5/deployment_protection_rule",
        gh.replace("127.0.0.1", "localhost")
    ));
    let r = deliver(
        &app,
        "deployment_protection_rule",
        "dpr-5",
        serde_json::to_vec(&elsewhere).unwrap(),
        None,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "deployment_callback_url");
    let kept = app.store.pending_protection_requests().await.unwrap();
    assert!(!kept.iter().any(|(_, id, _, _)| id == "dpr-5"), "{kept:?}");
    assert_eq!(
        answers.lock().unwrap().len(),
        3,
        "not sent outside the GitHub API"
    );
    // Pending: not answered while pending, answered once carol approves. A request on the
    // standard change sent after it is answered at once: by the time that answer arrives, the
    // pending request has had its chance to be answered.
    send(4, Some(&normal_cr)).await;
    send(6, Some(&std_cr)).await;
    let a = wait_answers(4).await;
    assert_eq!(a.len(), 4, "not answered while pending: {a:?}");
    assert_eq!(
        a[3].1["comment"],
        format!("shipgate: {std_cr} allows staging"),
        "not answered while pending: {a:?}"
    );
    // Not forgotten across a restart: answered by the restarted server.
    let db = app.db_url.clone();
    let dir = app.stop().await;
    assert_eq!(
        answers.lock().unwrap().len(),
        4,
        "a shutdown is not a rejection"
    );
    let app = TestApp::spawn_on(db, dir, |s| {
        s.webhooks.insert(
            "default".into(),
            shipgate_server::routes::webhooks::WebhookSecrets {
                github_secret: Some(SECRET.to_owned().into()),
                github_token: Some("ghs_installation".to_owned().into()),
                github_protection_wait_secs: Some(10),
                github_api_url: Some(gh.clone()),
                ..Default::default()
            },
        );
    })
    .await;
    let r = app
        .decide_as(&normal_cr, json!({"decision": "approve"}), &carol)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = wait_answers(5).await;
    assert_eq!(a[4].1["state"], "approved", "{:?}", a[4]);
    assert_eq!(
        a[4].1["comment"],
        format!("shipgate: {normal_cr} allows staging")
    );
    app.stop().await;
}

/// The GitHub token goes only to GitHub's own callback path on the configured API:
/// `/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule`, under the GitHub
/// Enterprise Server `/api/v3` prefix when the configured API has it. Traversals (`..`, `.`,
/// percent-encoded dots), double slashes and other paths on the same host are refused when the
/// request arrives and never receive anything; a mock of GitHub records every request it gets.
#[tokio::test]
async fn protection_rule_callbacks_off_githubs_path_never_get_the_token() {
    use std::sync::{Arc, Mutex};
    type Hits = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let hits: Hits = Default::default();
    let sink = hits.clone();
    let mock =
        axum::Router::new().fallback(move |uri: axum::http::Uri, h: axum::http::HeaderMap| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((
                    uri.path().to_owned(),
                    h.get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                ));
                axum::http::StatusCode::NO_CONTENT
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gh = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, mock).await });
    let secrets = |api: String| shipgate_server::routes::webhooks::WebhookSecrets {
        github_secret: Some(SECRET.to_owned().into()),
        github_token: Some("ghs_installation".to_owned().into()),
        github_protection_wait_secs: Some(1),
        github_api_url: Some(api),
        ..Default::default()
    };
    let app = TestApp::spawn_with(|s| {
        s.webhooks.insert("default".into(), secrets(gh.clone()));
        s.webhooks
            .insert("ghes".into(), secrets(format!("{gh}/api/v3")));
    })
    .await;
    let request = |callback: &str| {
        json!({"action": "requested", "environment": "staging", "event": "push",
            "deployment_callback_url": callback,
            "deployment": {"id": 1, "sha": format!("{:040x}", 1), "ref": "main", "environment": "staging", "payload": {"change_ref": "CR-1"}},
            "repository": {"id": 1, "name": "checkout", "full_name": "acme/checkout"}, "sender": {"login": "octocat"}})
    };
    let send = |tenant: &'static str, id: String, callback: String| {
        let app = &app;
        let body = serde_json::to_vec(&request(callback.as_str())).unwrap();
        async move {
            app.req(
                reqwest::Method::POST,
                &format!("/api/v1/webhooks/{tenant}/github"),
                None,
                Some(body.clone().into()),
                &[
                    ("content-type", "application/json"),
                    ("x-github-event", "deployment_protection_rule"),
                    ("x-github-delivery", &id),
                    ("x-hub-signature-256", &sign(&body)),
                ],
            )
            .await
        }
    };
    let run = "/repos/acme/checkout/actions/runs/1/deployment_protection_rule";
    let refused = [
        ("default", format!("{gh}{run}/../../evil")),
        ("default", format!("{gh}{run}/../../../../../evil")),
        ("default", format!("{gh}{run}/%2e%2e/%2E%2E/evil")),
        (
            "default",
            format!("{gh}/repos/acme/checkout/actions/runs/1/./deployment_protection_rule"),
        ),
        (
            "default",
            format!("{gh}/repos/acme/checkout/actions/runs/1//deployment_protection_rule"),
        ),
        ("default", format!("{gh}/{run}")),
        ("default", format!("{gh}/evil")),
        ("default", format!("{gh}/api/v3/../../evil")),
        ("default", format!("{gh}{run}?redirect=/evil")),
        ("ghes", format!("{gh}/api/v3/../../evil")),
        ("ghes", format!("{gh}/api/v3/%2e%2e/%2e%2e/evil")),
        (
            "ghes",
            format!(
                "{gh}/api/v3/repos/acme/checkout/actions/runs/1/deployment_protection_rule/../../evil"
            ),
        ),
        ("ghes", format!("{gh}{run}")),
    ];
    for (i, (tenant, callback)) in refused.iter().enumerate() {
        let r = send(tenant, format!("bad-{i}"), callback.clone()).await;
        assert_eq!(r.status, 422, "{callback}: {}", r.body);
        assert_eq!(
            r.body["errors"][0]["field"], "deployment_callback_url",
            "{callback}: {}",
            r.body
        );
    }
    // GitHub's own callbacks are answered (rejected: there is no CR-1), with the token.
    let ok = [
        ("default", format!("{gh}{run}")),
        ("ghes", format!("{gh}/api/v3{run}")),
    ];
    for (i, (tenant, callback)) in ok.iter().enumerate() {
        let r = send(tenant, format!("good-{i}"), callback.clone()).await;
        assert_eq!(r.status, 200, "{callback}: {}", r.body);
    }
    // Each kept request is marked answered once GitHub took its answer: with none left, no
    // further call can come.
    wait_until(
        "both callbacks are answered and none is left to answer",
        std::time::Duration::from_secs(10),
        async || {
            let kept = app.store.pending_protection_requests().await.unwrap();
            let n = hits.lock().unwrap().len();
            if n >= 2 && kept.is_empty() {
                Ok(())
            } else {
                Err(format!("{n} calls; still to answer: {kept:?}"))
            }
        },
    )
    .await;
    let mut got = hits.lock().unwrap().clone();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                format!("/api/v3{run}"),
                Some("Bearer ghs_installation".to_owned())
            ),
            (run.to_owned(), Some("Bearer ghs_installation".to_owned())),
        ],
        "only GitHub's callback paths were called"
    );
    app.stop().await;
}
