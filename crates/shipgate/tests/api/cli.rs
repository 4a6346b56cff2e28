use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::helpers::*;

/// The pipeline flow from the README: start in one stage, finish in another via the id file.
#[tokio::test]
async fn pipeline_records_a_deployment_across_stages() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let id_file = dir.path().join("deployment-id");
    let artifact = format!("registry/checkout@{}", digest(7));
    let commit = sha(7);
    let out = app
        .cli(
            &[
                "deploy",
                "start",
                "--service",
                "checkout",
                "--env",
                "prod-eu-west-1",
                "--version",
                "1.4.2",
                "--commit",
                &commit,
                "--artifact",
                &artifact,
                "--kind",
                "hotfix",
                "--label",
                "team=payments",
                "--target",
                "canary",
                "--target",
                "main",
            ],
            &[
                ("SHIPGATE_ID_FILE", id_file.to_str().unwrap()),
                ("GITHUB_ACTOR", "octocat"),
                ("GITHUB_RUN_ID", "991"),
                ("GITHUB_REPOSITORY", "acme/checkout"),
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = stdout(&out);
    assert_eq!(std::fs::read_to_string(&id_file).unwrap().trim(), id);
    // A later stage (another job) finishes each target through the id file.
    for target in ["canary", "main"] {
        let out = app
            .cli(
                &[
                    "deploy",
                    "finish",
                    "--status",
                    "succeeded",
                    "--target",
                    target,
                ],
                &[("SHIPGATE_ID_FILE", id_file.to_str().unwrap())],
            )
            .await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let out = app
        .cli(&["deploy", "get", &id, "--output", "json"], &[])
        .await;
    let d: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(d["status"], "succeeded");
    assert_eq!(d["deployer"], "octocat");
    assert_eq!(d["correlation_id"], "github:acme/checkout/991/1");
    assert_eq!(d["labels"]["team"], "payments");
    assert_eq!(d["events"].as_array().unwrap().len(), 3);
    let out = app
        .cli(
            &["deploy", "finish", "--status", "failed", "--id", &id],
            &[],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(6),
        "a contradiction is a conflict: {}",
        stderr(&out)
    );
    // The id can also travel as an environment variable.
    let out = app
        .cli(
            &[
                "deploy",
                "status",
                "--status",
                "rolled_back",
                "--output",
                "json",
            ],
            &[("SHIPGATE_DEPLOYMENT_ID", &id)],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = app.cli(&["running", "--output", "json"], &[]).await;
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        r.as_array().unwrap().len(),
        0,
        "the rolled back version no longer runs"
    );
    let out = app
        .cli(&["deploy", "list", "--service", "checkout"], &[])
        .await;
    assert!(stdout(&out).contains("1.4.2"));
    let out = app.cli(&["feed", "--hours", "1"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("checkout"));
    assert!(stdout(&out).starts_with("deployments since "));
    // The old name still works for scripts, hidden from the help.
    let old = app.cli(&["changes", "--hours", "1"], &[]).await;
    assert_eq!(old.status.code(), Some(0), "{}", stderr(&old));
    assert!(stdout(&old).contains("checkout"));
    let help = app.cli(&["--help"], &[]).await;
    assert!(stdout(&help).contains("deployments feed"));
    assert!(
        !stdout(&help)
            .lines()
            .any(|l| l.trim_start().starts_with("changes")),
        "{}",
        stdout(&help)
    );

    // Exit codes by error class.
    let out = app
        .cli(
            &[
                "deploy",
                "start",
                "--service",
                "checkout",
                "--env",
                "prod",
                "--version",
                "2",
                "--deployer",
                "x",
            ],
            &[],
        )
        .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "missing production metadata is a validation error"
    );
    assert!(stderr(&out).contains("commit_sha"));
    let out = app
        .cli(&["deploy", "get", &uuid::Uuid::now_v7().to_string()], &[])
        .await;
    assert_eq!(out.status.code(), Some(5));
    let out = app
        .cli(&["whoami"], &[("SHIPGATE_TOKEN", "sg_wrong")])
        .await;
    assert_eq!(out.status.code(), Some(4));
    let out = app
        .cli(&["deploy", "finish", "--status", "succeeded"], &[])
        .await;
    assert_eq!(out.status.code(), Some(3), "no id anywhere");
    let out = run_cli(&["running"], &[("SHIPGATE_URL", "http://127.0.0.1:9")]).await;
    assert_eq!(out.status.code(), Some(7), "unreachable server");
    let out = app
        .cli(
            &["token", "create", "--subject", "ci", "--role", "deployer"],
            &[],
        )
        .await;
    assert!(stdout(&out).starts_with("sg_"));
    app.stop().await;
}

/// Refusals scripts must tell apart have exit statuses of their own: separation of duties and
/// the approval rules (10), and rate limiting (12).
#[tokio::test]
async fn governance_refusals_have_their_own_exit_statuses() {
    let app = TestApp::spawn().await;
    let p = crate::approvals::setup(&app).await;
    let digest = digest(42);
    let out = app
        .cli(
            &[
                "change",
                "create",
                "--type",
                "normal",
                "--title",
                "checkout 1.4.2",
                "--service",
                "checkout",
                "--env",
                "prod-eu-west-1",
                "--digest",
                &digest,
                "--justification",
                "new payment flow",
                "--impact",
                "checkout only",
                "--rollback-plan",
                "redeploy 1.4.1",
                "--ticket",
                "JIRA-7",
                "--risk",
                "high",
                "--compliance",
                "pci",
                "--team",
                "payments",
            ],
            &[("SHIPGATE_TOKEN", &p.alice)],
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cr = stdout(&out);
    let approve = |token: &str| approve_as(&app, &cr, token.to_owned());
    // The requester, even holding an approver token.
    let out = approve(&p.alice_approver).await;
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let problem: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(problem["code"], "self_approval");
    // Not an approver of this change.
    let out = approve(&p.ivan).await;
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    // A person counts once.
    let out = approve(&p.carol).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = approve(&p.carol).await;
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    let problem: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(problem["code"], "already_decided");
    // Past its failed-authentication budget, an address is told to slow down.
    for i in 0..80 {
        let r = app
            .req(
                reqwest::Method::GET,
                "/api/v1/whoami",
                Some(&format!("sg_bogus{i}")),
                None,
                &[],
            )
            .await;
        assert!(r.status == 401 || r.status == 429, "{}", r.status);
    }
    let out = app.cli(&["whoami"], &[]).await;
    assert_eq!(out.status.code(), Some(12), "{}", stderr(&out));
    app.stop().await;
}

async fn approve_as(app: &TestApp, cr: &str, token: String) -> std::process::Output {
    app.cli(
        &["approve", cr, "--output", "json"],
        &[("SHIPGATE_TOKEN", &token)],
    )
    .await
}

/// `shipgate audit verify` finds direct edits to the database, online and offline.
#[tokio::test]
async fn audit_verify_detects_tampering() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        let r = app
            .post(
                "/api/v1/deployments",
                prod_body("ledger", &format!("1.{i}"), i),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let out = app.cli(&["audit", "verify"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("intact"));
    // The head an auditor saves, from the API and the CLI.
    let head = app.get("/api/v1/audit/head").await.body;
    let out = app.cli(&["audit", "head"], &[]).await;
    let saved = stdout(&out).trim().to_owned();
    // The chain is every tenant's: a tenant's own admin cannot read its head.
    let tenant_admin = app.token_for("t-admin", "admin", Some("other")).await;
    let r = app
        .req(
            reqwest::Method::GET,
            "/api/v1/audit/head",
            Some(&tenant_admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        saved,
        format!("{}:{}", head["seq"], head["hash"].as_str().unwrap())
    );
    let out = app
        .cli(&["audit", "verify", "--expect-head", &saved], &[])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = app
        .cli(&["audit", "verify", "--expect-head", "2:nothex"], &[])
        .await;
    assert_ne!(out.status.code(), Some(0));
    let out = app.cli(&["audit", "log", "--output", "json"], &[]).await;
    let log: Value = serde_json::from_str(&stdout(&out)).unwrap();
    // One entry per deployment: it fingerprints the deployment and its first status event.
    let created: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "deployment.created")
        .collect();
    assert_eq!(created.len(), 3);
    let payload: Value = serde_json::from_str(created[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["deployment"].as_str().unwrap().len(), 64);
    assert_eq!(payload["events"].as_array().unwrap().len(), 1);

    let raw = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
    sqlx::query("UPDATE deployments SET version = '6.6.6' WHERE version = '1.1'")
        .execute(&raw)
        .await
        .unwrap();
    let out = app.cli(&["audit", "verify"], &[]).await;
    assert_eq!(out.status.code(), Some(6));
    assert!(stderr(&out).contains("record_modified"), "{}", stderr(&out));
    let db_url = app.db_url.clone();
    let _dir = app.stop().await;
    // Offline, straight from the database file, as an auditor would.
    let out = run_cli(
        &[
            "audit",
            "verify",
            "--database-url",
            &db_url,
            "--output",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(6));
    let r: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(r["first_break"]["kind"], "record_modified");
    sqlx::query("UPDATE deployments SET version = '1.1' WHERE version = '6.6.6'")
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(&raw)
        .await
        .unwrap();
    let out = run_cli(&["audit", "verify", "--database-url", &db_url], &[]).await;
    assert_eq!(out.status.code(), Some(6));
    assert!(stderr(&out).contains("entry 2"), "{}", stderr(&out));
    // Against the saved head, offline too.
    let out = run_cli(
        &[
            "audit",
            "verify",
            "--database-url",
            &db_url,
            "--expect-head",
            &saved,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(6));

    // A mistyped path fails, says so, and creates nothing.
    let missing = _dir.path().join("no-such.db");
    let out = run_cli(
        &[
            "audit",
            "verify",
            "--database-url",
            &format!("sqlite://{}", missing.display()),
        ],
        &[],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("intact"));
    assert!(
        stderr(&out).contains("nothing was created"),
        "{}",
        stderr(&out)
    );
    assert!(!missing.exists(), "no database was created");
    // A file that is not shipgate's is refused the same way.
    let other = _dir.path().join("other.db");
    std::fs::write(&other, b"").unwrap();
    let out = run_cli(
        &[
            "audit",
            "verify",
            "--database-url",
            &format!("sqlite://{}", other.display()),
        ],
        &[],
    )
    .await;
    assert_ne!(out.status.code(), Some(0));
}

/// The README's first command: `shipgate serve --demo` shows real records at once.
#[tokio::test]
async fn demo_serves_realistic_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_shipgate"))
        .args(["serve", "--demo"])
        .env("SHIPGATE_LISTEN", "127.0.0.1:0")
        .env("SHIPGATE_DATABASE_URL", &db)
        .env_remove("SHIPGATE_ADMIN_TOKEN")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr_pipe = child.stderr.take().unwrap();
    // The pipe is drained to the end: a reader that stopped early would make the server's
    // later writes to stderr fail.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut url = None;
        let mut tx = Some(tx);
        for line in BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on ").nth(1) {
                url = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(t) = line.split("admin token (shown once): ").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send((
                    url.clone().expect("url printed before the token"),
                    t.trim().to_owned(),
                ));
            }
        }
    });
    let (url, token) = tokio::task::spawn_blocking(move || {
        rx.recv_timeout(std::time::Duration::from_secs(120))
            .expect("demo server did not print its URL and token")
    })
    .await
    .unwrap();
    let envs = [
        ("SHIPGATE_URL", url.as_str()),
        ("SHIPGATE_TOKEN", token.as_str()),
    ];
    let cli = |args: &'static [&'static str]| run_cli(args, &envs);
    let out = cli(&["deploy", "list", "--limit", "1000", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let items = page["items"].as_array().unwrap();
    assert!(
        items.len() >= 300,
        "a few hundred deployments, got {}",
        items.len()
    );
    let services: std::collections::BTreeSet<&str> =
        items.iter().filter_map(|d| d["service"].as_str()).collect();
    let teams: std::collections::BTreeSet<&str> =
        items.iter().filter_map(|d| d["team"].as_str()).collect();
    assert!(services.len() >= 8 && teams.len() >= 4);
    let oldest = items
        .iter()
        .filter_map(|d| d["started_at"].as_str())
        .min()
        .unwrap();
    assert!(
        oldest
            < shipgate_domain::time::format(chrono::Utc::now() - chrono::Duration::days(50))
                .as_str()
    );
    let kinds: std::collections::BTreeSet<&str> =
        items.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(
        kinds.contains("rollback") && kinds.contains("hotfix"),
        "{kinds:?}"
    );
    let out = cli(&["running", "--output", "json"]).await;
    let running: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(running.as_array().unwrap().len() >= 20);
    // Change requests in every state, on the shipped example policy.
    let out = cli(&["change", "list", "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let changes: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let states: std::collections::BTreeSet<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["status"].as_str())
        .collect();
    for s in ["approved", "pending", "rejected", "bypassed"] {
        assert!(states.contains(s), "{s} missing from {states:?}");
    }
    let digest_of = |key: &str| {
        changes
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["key"] == key)
            .and_then(|c| c["artifact_digests"][0].as_str())
            .unwrap()
            .to_owned()
    };
    let d1: &'static str = Box::leak(digest_of("CR-1").into_boxed_str());
    let d2: &'static str = Box::leak(digest_of("CR-2").into_boxed_str());
    let out = cli(Box::leak(Box::new([
        "gate",
        "check",
        "--change",
        "CR-1",
        "--env",
        "prod-us-east-1",
        "--digest",
        d1,
    ])))
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "CR-1 is approved: {}",
        stderr(&out)
    );
    let out = cli(Box::leak(Box::new([
        "gate",
        "check",
        "--change",
        "CR-2",
        "--env",
        "prod-us-east-1",
        "--digest",
        d2,
    ])))
    .await;
    assert_eq!(out.status.code(), Some(8), "CR-2 waits on the CAB");
    let out = cli(&["approvals", "--all", "--output", "json"]).await;
    let queue: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(!queue.as_array().unwrap().is_empty());
    let out = cli(&["audit", "verify"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = child.kill();
    let _ = child.wait();
}
