//! Incidents from Alertmanager and PagerDuty (every corpus sample): recorded, and answered
//! with the recent changes to the affected service.
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;
use crate::webhooks::corpus;

fn pd_sign(secret: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(body);
    format!("v1={}", hex::encode(m.finalize().into_bytes()))
}

#[tokio::test]
async fn alertmanager_and_pagerduty_samples_become_incidents_with_suspects() {
    let Some(corpus) = corpus() else { return };
    let app = TestApp::spawn_with(|s| {
        s.webhooks.insert(
            "default".into(),
            shipgate_server::routes::webhooks::WebhookSecrets {
                pagerduty_secret: Some("pd-secret".to_owned().into()),
                ..Default::default()
            },
        );
    })
    .await;
    // A recent deployment of the service PagerDuty will name.
    let r = app
        .post(
            "/api/v1/deployments",
            json!({"service": "pig208", "environment": "staging", "version": "7"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let deployed = r.body["id"].as_str().unwrap().to_owned();

    let mut files: Vec<_> = std::fs::read_dir(corpus.join("alertmanager"))
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    let mut total = 0;
    for f in &files {
        let body = std::fs::read(f).unwrap();
        let alerts = serde_json::from_slice::<Value>(&body).unwrap()["alerts"]
            .as_array()
            .unwrap()
            .len();
        let r = app
            .req(
                reqwest::Method::POST,
                "/api/v1/integrations/alertmanager",
                Some(&app.token),
                Some(body.into()),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(r.status, 200, "{}: {}", f.display(), r.body);
        assert_eq!(r.body["incidents"].as_array().unwrap().len(), alerts);
        total += alerts;
    }
    assert!(total >= 27, "{total}");
    // Firing then resolved (same fingerprint): one incident, now resolved.
    let list = app.get("/api/v1/incidents").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["status"] == "resolved")
    );

    // PagerDuty: signature checked; triggered then resolved; the subscription object refused.
    let mut seen = Vec::new();
    for name in [
        "incident.triggered.json",
        "incident.resolved.json",
        "incident.priority_updated.json",
    ] {
        let body = std::fs::read(corpus.join("pagerduty").join(name)).unwrap();
        let bad = app
            .req(
                reqwest::Method::POST,
                "/api/v1/webhooks/default/pagerduty",
                None,
                Some(body.clone().into()),
                &[("x-pagerduty-signature", "v1=00")],
            )
            .await;
        assert_eq!(bad.status, 401);
        let sig = format!("v1=deadbeef, {}", pd_sign("pd-secret", &body));
        let r = app
            .req(
                reqwest::Method::POST,
                "/api/v1/webhooks/default/pagerduty",
                None,
                Some(body.into()),
                &[
                    ("content-type", "application/json"),
                    ("x-pagerduty-signature", &sig),
                ],
            )
            .await;
        seen.push((name, r.status, r.body));
    }
    let (_, status, triggered) = &seen[0];
    assert_eq!(*status, 200, "{triggered}");
    assert_eq!(triggered["incidents"][0]["status"], "open");
    assert_eq!(
        triggered["suggested_changes"][0]["id"], deployed,
        "the recent deployment of pig208 is the first suspect: {triggered}"
    );
    assert_eq!(
        seen[1].2["incidents"][0]["status"], "resolved",
        "{}",
        seen[1].2
    );
    assert_eq!(
        seen[2].1, 422,
        "a webhook_subscription is not an event: {}",
        seen[2].2
    );
    assert_eq!(seen[2].2["errors"][0]["field"], "event");
    // The audit trail holds each change of status.
    let audit = app.get("/api/v1/audit?limit=1000").await;
    let text = audit.body.to_string();
    assert!(text.contains("incident.open") && text.contains("incident.resolved"));
    app.stop().await;
}
