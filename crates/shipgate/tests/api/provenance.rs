//! Artifact immutability: the digest a build published against the digest deployed, flagged on
//! the record and enforced by the gate where the tier requires provenance.
use serde_json::{Value, json};
use shipgate_domain::EnvTier;

use crate::helpers::*;

fn deployment(version: &str, digest: &str) -> Value {
    json!({"service": "checkout", "environment": "production", "version": version,
        "commit_sha": sha(1), "artifact": format!("registry/checkout@{digest}"), "deployer": "ci",
        "change_ref": "CR-1"})
}

#[tokio::test]
async fn deployed_digests_are_checked_against_published_ones() {
    let app = TestApp::spawn_with(|s| {
        s.provenance.required_tiers = vec![EnvTier::Production];
    })
    .await;
    let published = digest(1);
    // A build publishes registry/checkout 1.4.2 (from the CLI).
    let out = app
        .cli(
            &[
                "artifact",
                "publish",
                &format!("registry/checkout@{published}"),
                "--version",
                "1.4.2",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Again: already known, still fine.
    let r = app
        .post(
            "/api/v1/artifacts",
            json!({"name": "registry/checkout", "version": "1.4.2", "digest": published}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A token limited to one tier cannot publish (a published digest counts in every tier).
    let dev = app
        .post(
            "/api/v1/tokens",
            json!({"subject": "dev-ci", "role": "deployer", "env_tier": "development"}),
        )
        .await;
    let dev = dev.body["token"].as_str().unwrap().to_owned();
    let r = app
        .post_as(
            "/api/v1/artifacts",
            json!({"name": "registry/checkout", "digest": digest(9)}),
            &dev,
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = app
        .post(
            "/api/v1/artifacts",
            json!({"name": "x", "digest": "md5:12"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "digest");

    let r = app
        .post("/api/v1/deployments", deployment("1.4.2", &published))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["provenance"]["status"], "verified", "{}", r.body);
    // The same name and version with another digest: a mismatch, kept and flagged.
    let r = app
        .post("/api/v1/deployments", deployment("1.4.2", &digest(2)))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["provenance"]["status"], "mismatch");
    assert_eq!(r.body["provenance"]["expected_digest"], published);
    // A digest no build published.
    let r = app
        .post("/api/v1/deployments", deployment("9.9.9", &digest(3)))
        .await;
    assert_eq!(r.body["provenance"]["status"], "unknown");

    // The gate: a pre-approved standard change for production.
    let r = app
        .req(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(&app.token),
            Some("[[rule]]\nname = \"std\"\nauto_approve = true\n[rule.match]\nchange_type = [\"standard\"]\n".to_owned().into()),
            &[("content-type", "application/toml")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .post(
            "/api/v1/changes",
            json!({"type": "standard", "title": "checkout", "services": ["checkout"], "environments": ["production"],
                "artifact_digests": [published, digest(3)]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cr = r.body["key"].as_str().unwrap().to_owned();
    let gate = |extra: String| {
        let app = &app;
        let cr = cr.clone();
        async move {
            app.get(&format!(
                "/api/v1/gate?change={cr}&environment=production{extra}"
            ))
            .await
            .body
        }
    };
    let d = gate(format!("&digest={published}")).await;
    assert_eq!(d["state"], "allowed", "{d}");
    let d = gate(format!("&digest={}", digest(3))).await;
    assert_eq!(d["state"], "denied", "{d}");
    assert!(d.to_string().contains("provenance_unknown"), "{d}");
    // Without a digest: denied (the change names digests, and provenance needs one).
    let d = gate(String::new()).await;
    assert_eq!(d["state"], "denied", "{d}");
    assert!(d.to_string().contains("digest_required"), "{d}");
    // Staging does not require provenance.
    let r = app
        .post(
            "/api/v1/changes",
            json!({"type": "standard", "title": "s", "services": ["checkout"], "environments": ["staging"],
                "artifact_digests": [digest(3)]}),
        )
        .await;
    let cr2 = r.body["key"].as_str().unwrap();
    let d = app
        .get(&format!(
            "/api/v1/gate?change={cr2}&environment=staging&digest={}",
            digest(3)
        ))
        .await;
    assert_eq!(d.body["state"], "allowed", "{}", d.body);
    app.stop().await;
}

/// CDEvents `artifact.published` (the corpus sample) records the digest it names.
#[tokio::test]
async fn cdevents_artifact_published_records_the_digest() {
    let Some(corpus) = crate::webhooks::corpus() else {
        return;
    };
    let app = TestApp::spawn().await;
    let body = std::fs::read(corpus.join("cdevents/artifact_published.json")).unwrap();
    let ev: Value = serde_json::from_slice(&body).unwrap();
    let r = app
        .req(
            reqwest::Method::POST,
            "/api/v1/cdevents",
            Some(&app.token),
            Some(body.into()),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let purl = ev["subject"]["id"].as_str().unwrap();
    if purl.contains("sha256") {
        assert_eq!(r.body["result"], "accepted", "{}", r.body);
        assert!(
            r.body["records"][0]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    } else {
        assert_eq!(r.body["result"], "ignored", "{}", r.body);
    }
    app.stop().await;
}
