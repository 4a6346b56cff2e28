//! ServiceNow and Jira: a change record in either opens a shipgate change request, and
//! shipgate's decision is written back. The tools are HTTP mocks (third-party SaaS) that answer
//! with the corpus records and record what shipgate sends.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::webhooks::corpus;

type Calls = Arc<Mutex<Vec<(String, String, Value, bool)>>>;

fn authed(h: &HeaderMap) -> bool {
    h.get("authorization").is_some()
}

/// A mock of the parts of ServiceNow's Table API and Jira's REST API shipgate calls.
async fn mock(record: Value) -> (String, Calls) {
    let calls: Calls = Default::default();
    let app = axum::Router::new()
        .route(
            "/api/now/table/change_request",
            get(
                |State((c, rec)): State<(Calls, Value)>, h: HeaderMap, q: axum::extract::RawQuery| async move {
                    let q = q.0.unwrap_or_default();
                    c.lock().unwrap().push(("GET".into(), format!("change_request?{q}"), Value::Null, authed(&h)));
                    let number = rec["number"].as_str().unwrap_or_default().to_owned();
                    if q.contains(&number) {
                        axum::Json(json!({"result": [{"sys_id": rec["sys_id"], "number": rec["number"]}]}))
                    } else {
                        axum::Json(json!({"result": []}))
                    }
                },
            ),
        )
        .route(
            "/api/now/table/change_request/{id}",
            patch(
                |State((c, rec)): State<(Calls, Value)>, Path(id): Path<String>, h: HeaderMap, axum::Json(b): axum::Json<Value>| async move {
                    c.lock().unwrap().push(("PATCH".into(), format!("change_request/{id}"), b.clone(), authed(&h)));
                    let mut merged = rec.clone();
                    for (k, v) in b.as_object().unwrap() {
                        merged[k] = v.clone();
                    }
                    axum::Json(json!({"result": merged}))
                },
            ),
        )
        .route(
            "/rest/api/2/issue/{key}/transitions",
            get(|State((c, _)): State<(Calls, Value)>, Path(key): Path<String>, h: HeaderMap| async move {
                c.lock().unwrap().push(("GET".into(), format!("{key}/transitions"), Value::Null, authed(&h)));
                axum::Json(json!({"transitions": [
                    {"id": "31", "name": "Approve", "to": {"name": "Approved"}},
                    {"id": "41", "name": "Reject", "to": {"name": "Rejected"}}]}))
            })
            .post(
                |State((c, _)): State<(Calls, Value)>, Path(key): Path<String>, h: HeaderMap, axum::Json(b): axum::Json<Value>| async move {
                    c.lock().unwrap().push(("POST".into(), format!("{key}/transitions"), b, authed(&h)));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/rest/api/2/issue/{key}/comment",
            post(
                |State((c, _)): State<(Calls, Value)>, Path(key): Path<String>, h: HeaderMap, axum::Json(b): axum::Json<Value>| async move {
                    c.lock().unwrap().push(("POST".into(), format!("{key}/comment"), b, authed(&h)));
                    axum::Json(json!({}))
                },
            ),
        )
        .with_state((calls.clone(), record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn wait_for(calls: &Calls, what: &str) -> (String, String, Value, bool) {
    wait_until(
        &format!("the tool gets {what}"),
        Duration::from_secs(30),
        async || {
            let calls = calls.lock().unwrap();
            calls
                .iter()
                .find(|(m, p, _, _)| format!("{m} {p}").contains(what))
                .cloned()
                .ok_or_else(|| format!("{calls:?}"))
        },
    )
    .await
}

/// Waits until the `sink` relay has gone past every outbox event written so far: whatever it
/// was going to do with them, it has done.
async fn until_relayed(app: &TestApp, sink: &str) {
    let head = app.store.outbox_head().await.unwrap();
    wait_until(
        &format!("the {sink} relay reaches outbox event {head}"),
        Duration::from_secs(10),
        async || {
            let (cursor, _) = app.store.outbox_pending(sink, 1).await.unwrap();
            if cursor >= head {
                Ok(())
            } else {
                Err(format!("at {cursor}"))
            }
        },
    )
    .await;
}

async fn inbound(app: &TestApp, system: &str, token: &str, body: Vec<u8>) -> Resp {
    app.req(
        reqwest::Method::POST,
        &format!("/api/v1/webhooks/default/{system}"),
        None,
        Some(body.into()),
        &[
            ("content-type", "application/json"),
            ("x-shipgate-token", token),
        ],
    )
    .await
}

const POLICY: &str = r#"
[[rule]]
name = "production"
approvals = [{ group = "cab" }]
[rule.match]
env_tier = ["production"]
change_type = ["normal", "emergency"]
"#;

#[tokio::test]
async fn itsm_change_records_open_change_requests_and_get_the_decision_back() {
    let Some(corpus) = corpus() else { return };
    let record: Value = serde_json::from_slice(
        &std::fs::read(corpus.join("servicenow/change_request.CHG0000023.json")).unwrap(),
    )
    .unwrap();
    let (snow, snow_calls) = mock(record.clone()).await;
    let (jira, jira_calls) = mock(Value::Null).await;
    let app = TestApp::spawn_with(|s| {
        s.outbox.poll_ms = 5;
        let mut t = shipgate_server::writeback::ItsmTenant::default();
        let mut sn = shipgate_server::writeback::ServiceNowSettings {
            instance_url: snow.clone(),
            username: Some("shipgate".into()),
            password: Some("pw".to_owned().into()),
            inbound_token: Some("in-snow".to_owned().into()),
            ..Default::default()
        };
        sn.mapping.default_service = Some("legacy-app".into());
        t.servicenow = Some(sn);
        let mut j = shipgate_server::writeback::JiraSettings {
            base_url: jira.clone(),
            username: Some("shipgate".into()),
            api_token: Some("tok".to_owned().into()),
            inbound_token: Some("in-jira".to_owned().into()),
            approve_transition: "Approved".into(),
            reject_transition: "Reject".into(),
            ..Default::default()
        };
        j.mapping.default_service = Some("web".into());
        t.jira = Some(j);
        s.itsm.insert("default".into(), t);
    })
    .await;
    let r = app
        .post(
            "/api/v1/people",
            json!({"subject": "carol", "token_role": "approver"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let carol = r.body["token"].as_str().unwrap().to_owned();
    let r = app
        .req(
            reqwest::Method::PUT,
            "/api/v1/groups/cab",
            Some(&app.token),
            Some(json!({"members": ["carol"]}).to_string().into()),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .req(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(&app.token),
            Some(POLICY.to_owned().into()),
            &[("content-type", "application/toml")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // ServiceNow: the corpus change_request opens a change request.
    let body = serde_json::to_vec(&record).unwrap();
    assert_eq!(
        inbound(&app, "servicenow", "guess", body.clone())
            .await
            .status,
        401
    );
    // The corpus record is a standard change; this policy pre-approves none: refused, saying so.
    let r = inbound(&app, "servicenow", "in-snow", body.clone()).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["code"], "not_pre_approved");
    // With a standard-change rule the same record (redelivered) opens a pre-approved change,
    // and the approval is written back at once.
    let r = app
        .req(
            reqwest::Method::PUT,
            "/api/v1/policy",
            Some(&app.token),
            Some(format!("[[rule]]\nname = \"standard\"\nauto_approve = true\n[rule.match]\nchange_type = [\"standard\"]\n{POLICY}").into()),
            &[("content-type", "application/toml")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = inbound(&app, "servicenow", "in-snow", body.clone()).await;
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("accepted")),
        "{}",
        r.body
    );
    let cr = r.body["records"][0].as_str().unwrap().to_owned();
    let c = app.get(&format!("/api/v1/changes/{cr}")).await;
    assert_eq!(c.body["ticket"], "CHG0000023");
    assert_eq!(c.body["title"], record["short_description"]);
    assert_eq!(c.body["type"], "standard");
    assert_eq!(c.body["status"], "approved", "{}", c.body);
    // The same record again: already tracked, nothing new.
    let again = inbound(&app, "servicenow", "in-snow", body).await;
    assert_eq!(again.status, 200);
    assert_ne!(again.body["result"], "accepted", "{}", again.body);
    let (_, path, sent, authed) = wait_for(&snow_calls, "PATCH change_request/").await;
    assert!(path.ends_with(record["sys_id"].as_str().unwrap()), "{path}");
    assert_eq!(sent["approval"], "approved");
    assert!(sent["work_notes"].as_str().unwrap().contains(&cr), "{sent}");
    assert!(
        sent["work_notes"].as_str().unwrap().contains("by policy"),
        "{sent}"
    );
    assert!(authed);

    // A change opened in shipgate that merely names a ticket does not act on it.
    let r = app
        .post(
            "/api/v1/changes",
            json!({"type": "standard", "title": "x", "services": ["legacy-app"], "environments": ["production"], "ticket": "CHG0000099"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "approved");
    until_relayed(&app, "servicenow").await;
    assert!(
        !snow_calls
            .lock()
            .unwrap()
            .iter()
            .any(|(_, p, _, _)| p.contains("CHG0000099")),
        "{:?}",
        snow_calls.lock().unwrap()
    );

    // Jira: a created issue opens a change; a rejection takes the Reject transition.
    let created = std::fs::read(corpus.join("jira/issue_created.json")).unwrap();
    let r = inbound(&app, "jira", "in-jira", created).await;
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("accepted")),
        "{}",
        r.body
    );
    let cr2 = r.body["records"][0].as_str().unwrap().to_owned();
    let c = app.get(&format!("/api/v1/changes/{cr2}")).await;
    assert_eq!(
        c.body["status"], "pending",
        "normal: the policy's approval runs: {}",
        c.body
    );
    assert_eq!(c.body["requester"], "admin", "the Jira user");
    let updated = std::fs::read(corpus.join("jira/issue_updated_status_updated.json")).unwrap();
    let r = inbound(&app, "jira", "in-jira", updated).await;
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("ignored")),
        "{}",
        r.body
    );
    let r = app
        .decide_as(
            &cr2,
            json!({"decision": "reject", "comment": "not this week"}),
            &carol,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, path, sent, _) = wait_for(&jira_calls, "POST TEST-4/transitions").await;
    assert_eq!(path, "TEST-4/transitions");
    assert_eq!(sent["transition"]["id"], "41");
    assert!(
        sent.pointer("/update/comment/0/add/body")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("rejected"),
        "{sent}"
    );
    // A record that names no service and none is configured: refused, naming the field.
    let mut bad = record.clone();
    bad["number"] = json!("CHG0099999");
    bad["short_description"] = json!("");
    let r = inbound(
        &app,
        "servicenow",
        "in-snow",
        serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "short_description");
    app.stop().await;
}

/// Integrity issue, item 5: every identity that authored an ITSM record is excluded from
/// approving the change it opens, compared as people (trimmed, case-folded, by email).
#[tokio::test]
async fn itsm_record_authors_never_approve_their_change() {
    let (snow, _) = mock(Value::Null).await;
    let (jira, _) = mock(Value::Null).await;
    let app = TestApp::spawn_with(|s| {
        let mut t = shipgate_server::writeback::ItsmTenant::default();
        let mut sn = shipgate_server::writeback::ServiceNowSettings {
            instance_url: snow.clone(),
            inbound_token: Some("in-snow".to_owned().into()),
            ..Default::default()
        };
        sn.mapping.default_service = Some("legacy-app".into());
        t.servicenow = Some(sn);
        let mut j = shipgate_server::writeback::JiraSettings {
            base_url: jira.clone(),
            inbound_token: Some("in-jira".to_owned().into()),
            ..Default::default()
        };
        j.mapping.default_service = Some("web".into());
        t.jira = Some(j);
        s.itsm.insert("default".into(), t);
    })
    .await;
    let mut tokens = std::collections::BTreeMap::new();
    for (who, email) in [
        ("carol", "carol@acme.test"),
        ("dave", "dave@acme.test"),
        ("erin", "erin@acme.test"),
    ] {
        let r = app
            .post(
                "/api/v1/people",
                json!({"subject": who, "email": email, "token_role": "approver"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        tokens.insert(who, r.body["token"].as_str().unwrap().to_owned());
    }
    let put = |path: &'static str, body: String, ct: &'static str| {
        let app = &app;
        async move {
            app.req(
                reqwest::Method::PUT,
                path,
                Some(&app.token),
                Some(body.into()),
                &[("content-type", ct)],
            )
            .await
        }
    };
    let r = put(
        "/api/v1/groups/cab",
        json!({"members": ["carol", "dave", "erin"]}).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = put("/api/v1/policy", POLICY.to_owned(), "application/toml").await;
    assert_eq!(r.status, 201, "{}", r.body);
    // requested_by names someone else; opened_by is carol; the padded requester is dave.
    let record = json!({"result": {
        "number": "CHG0100001", "sys_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "short_description": "Rotate TLS certificates", "type": "Normal", "risk": "3",
        "requested_by": {"display_value": " DAVE ", "value": "6816f79cc0a8016401c5a33be04be441"},
        "opened_by": {"display_value": "Carol", "value": "carol@acme.test"},
        "sys_created_by": "admin", "assigned_to": ""}});
    let r = inbound(
        &app,
        "servicenow",
        "in-snow",
        serde_json::to_vec(&record).unwrap(),
    )
    .await;
    assert_eq!(r.body["result"], "accepted", "{}", r.body);
    let cr = r.body["records"][0].as_str().unwrap().to_owned();
    for (who, code) in [("carol", "record_author"), ("dave", "self_approval")] {
        let r = app
            .decide_as(&cr, json!({"decision": "approve"}), &tokens[who])
            .await;
        assert_eq!(r.status, 403, "{who}: {}", r.body);
        assert_eq!(r.body["code"], code, "{who}: {}", r.body);
    }
    let r = app
        .decide_as(&cr, json!({"decision": "approve"}), &tokens["erin"])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "approved", "{}", r.body);

    // Jira: the reporter (by email) and the creator cannot approve.
    let issue = json!({"webhookEvent": "jira:issue_created", "user": {"name": "svc-jira"},
        "issue": {"key": "OPS-12", "fields": {"summary": "Failover drill", "labels": ["normal"],
            "reporter": {"name": "x", "emailAddress": "Erin@Acme.test"},
            "creator": {"name": "dave"}}}});
    let r = inbound(&app, "jira", "in-jira", serde_json::to_vec(&issue).unwrap()).await;
    assert_eq!(r.body["result"], "accepted", "{}", r.body);
    let cr = r.body["records"][0].as_str().unwrap().to_owned();
    for who in ["erin", "dave"] {
        let r = app
            .decide_as(&cr, json!({"decision": "approve"}), &tokens[who])
            .await;
        assert_eq!(r.status, 403, "{who}: {}", r.body);
    }
    let r = app
        .decide_as(&cr, json!({"decision": "approve"}), &tokens["carol"])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.verify_ok().await;
    app.stop().await;
}
