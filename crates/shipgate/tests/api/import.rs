use serde_json::{Value, json};

use crate::helpers::*;

fn jsonl(lines: &[Value]) -> String {
    lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn past(h: i64) -> String {
    shipgate_domain::time::format(chrono::Utc::now() - chrono::Duration::hours(h))
}

#[tokio::test]
async fn jsonl_and_csv_imports_are_atomic_idempotent_and_reported_per_line() {
    let app = TestApp::spawn().await;
    let line = |v: &str, h: i64| {
        json!({"service":"billing","environment":"staging","version": v, "status":"succeeded",
        "started_at": past(h), "finished_at": past(h - 1), "commit_sha": sha(h as u32)})
    };
    let good = jsonl(&[line("1.0", 50), line("1.1", 30), line("1.2", 10)]);
    let post = |body: String, q: &str, ct: &str| {
        let q = q.to_owned();
        let ct = ct.to_owned();
        let app = &app;
        async move {
            app.req(
                reqwest::Method::POST,
                &format!("/api/v1/deployments/import{q}"),
                Some(&app.token),
                Some(body.into()),
                &[("content-type", &ct)],
            )
            .await
        }
    };
    let r = post(good.clone(), "", "application/x-ndjson").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["created"].as_u64(), r.body["failed"].as_u64()),
        (Some(3), Some(0))
    );
    let d = app
        .get("/api/v1/deployments?service=billing&limit=1")
        .await
        .body["items"][0]
        .clone();
    assert_eq!(
        (d["backfilled"].as_bool(), d["version"].as_str()),
        (Some(true), Some("1.2"))
    );
    assert_eq!(
        app.get("/api/v1/running?service=billing").await.body[0]["version"],
        "1.2"
    );
    // Re-importing the same file creates nothing new.
    let r = post(good, "", "application/x-ndjson").await;
    assert_eq!(
        (r.body["created"].as_u64(), r.body["replayed"].as_u64()),
        (Some(0), Some(3))
    );

    // A bad line: atomic mode writes nothing and names the line and field.
    let bad = format!(
        "{}\n{{\"service\":\"billing\",\"environment\":\"staging\"}}\nnot json\n",
        line("2.0", 5)
    );
    let before = app.count().await;
    let r = post(bad.clone(), "", "application/x-ndjson").await;
    assert_eq!(r.status, 422);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"lines.2.version") && fields.contains(&"lines.3"),
        "{fields:?}"
    );
    assert_eq!(app.count().await, before);
    // Partial mode writes the good line and reports the bad ones.
    let r = post(bad, "?mode=partial", "application/x-ndjson").await;
    assert_eq!(
        (
            r.status,
            r.body["created"].as_u64(),
            r.body["failed"].as_u64()
        ),
        (200, Some(1), Some(2))
    );
    assert_eq!(r.body["lines"][1]["result"], "failed");
    // Dry run validates only.
    let r = post(
        jsonl(&[line("3.0", 4)]),
        "?dry_run=true",
        "application/x-ndjson",
    )
    .await;
    assert_eq!(
        (r.body["dry_run"].as_bool(), r.body["created"].as_u64()),
        (Some(true), Some(0))
    );

    // CSV: header, labels.* columns, a line with missing columns named by line and column.
    let csv = format!(
        "service,environment,version,status,started_at,finished_at,commit_sha,artifact_digest,deployer,labels.source\n\
         search,prd,5.0,succeeded,{},{},{},{},dana,legacy-sheet\n\
         search,prd\n",
        past(20),
        past(19),
        sha(5),
        digest(5)
    );
    let r = post(csv.clone(), "", "text/csv").await;
    assert_eq!(r.status, 422);
    let f: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(f.contains(&"lines.3.version"), "{f:?}");
    let ok_csv = csv.lines().take(2).collect::<Vec<_>>().join("\n");
    let r = post(ok_csv, "", "text/csv").await;
    assert_eq!(
        (r.status, r.body["created"].as_u64()),
        (200, Some(1)),
        "{}",
        r.body
    );
    let d = app.get("/api/v1/deployments?service=search").await.body["items"][0].clone();
    assert_eq!(d["labels"]["source"], "legacy-sheet");
    assert_eq!(d["environment"]["tier"], "production");
    // A CSV header with an unknown column, and an unknown content type.
    let r = post("service,env,version\n".into(), "", "text/csv").await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (422, Some("header.env"))
    );
    let r = post("x".into(), "", "application/xml").await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    app.verify_ok().await;
    app.stop().await;
}

#[tokio::test]
async fn cli_import_shows_file_line_numbers_across_chunks() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("history.jsonl");
    let mut lines = Vec::new();
    for i in 0..7 {
        lines.push(json!({"service":"api","environment":"dev","version": format!("0.{i}"), "started_at": past(100 - i)}));
    }
    lines.push(json!({"service":"api","environment":"dev","version":"0.9","commit_sha":"nothex"}));
    std::fs::write(&f, jsonl(&lines)).unwrap();
    let out = app
        .cli(
            &["deploy", "import", f.to_str().unwrap(), "--batch", "3"],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("lines.8.commit_sha") || stderr(&out).contains("lines.8.commit_sha"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(
        app.count().await,
        0,
        "atomic across chunks: nothing written"
    );
    // Fix the file: everything goes in, and a second run is a no-op.
    lines.pop();
    std::fs::write(&f, jsonl(&lines)).unwrap();
    let out = app
        .cli(
            &[
                "deploy",
                "import",
                f.to_str().unwrap(),
                "--batch",
                "3",
                "--output",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["created"], 7);
    let out = app
        .cli(
            &["deploy", "import", f.to_str().unwrap(), "--output", "json"],
            &[],
        )
        .await;
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (report["created"].as_u64(), report["replayed"].as_u64()),
        (Some(0), Some(7))
    );
    app.stop().await;
}
