//! `shipgate deploy …` (record and query deployments) and `shipgate feed`, the deployments
//! feed.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use comfy_table::Table;
use serde_json::{Value, json};

use super::import::{ImportArgs, import};
use crate::client::{CliError, CliResult, Client, without_nulls};
use crate::exit;
use crate::output::{Output, field_text, print_json, print_json_or_field, short, table};

#[derive(Subcommand)]
pub enum DeployCmd {
    /// Record the start of a deployment; prints its id.
    Start(StartArgs),
    /// Record the outcome of a deployment (or of one of its targets).
    Finish(FinishArgs),
    /// Record any status change (queued, started, succeeded, failed, cancelled, rolled_back).
    Status(FinishArgs),
    /// Show one deployment with its events.
    Get { id: String },
    /// Deployment history, newest first.
    List(ListArgs),
    /// Import past deployments from a JSONL or CSV file.
    Import(ImportArgs),
}

#[derive(Args)]
pub struct StartArgs {
    #[arg(long)]
    service: String,
    /// Environment label (normalised by the server: prd, live, prod-eu-west-1 ...).
    #[arg(long = "env")]
    environment: String,
    #[arg(long)]
    version: String,
    /// Full commit id.
    #[arg(long = "commit")]
    commit: Option<String>,
    /// Artifact reference NAME@sha256:<hex>.
    #[arg(long)]
    artifact: Option<String>,
    #[arg(long)]
    repository: Option<String>,
    /// Branch or tag.
    #[arg(long = "ref")]
    git_ref: Option<String>,
    /// Who deployed (default: $SHIPGATE_DEPLOYER, $GITHUB_ACTOR, $GITLAB_USER_LOGIN, $BUILD_USER_ID, $USER).
    #[arg(long)]
    deployer: Option<String>,
    #[arg(long, value_parser = ["human", "pipeline"])]
    deployer_type: Option<String>,
    #[arg(long, value_parser = ["release", "hotfix", "rollback", "config", "schema_migration"])]
    kind: Option<String>,
    #[arg(long, value_parser = ["pipeline", "manual", "webhook", "scheduled", "gitops"])]
    trigger: Option<String>,
    /// Change request / ticket reference.
    #[arg(long = "change")]
    change_ref: Option<String>,
    /// Pipeline run id shared by all stages (default: taken from the CI's environment).
    #[arg(long)]
    correlation_id: Option<String>,
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    region: Option<String>,
    /// Fan-out target (repeat): region, cluster or canary slot.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// Label KEY=VALUE (repeat).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Id of an earlier record this one corrects.
    #[arg(long)]
    corrects: Option<String>,
    /// Initial status.
    #[arg(long, default_value = "started", value_parser = ["queued", "started"])]
    status: String,
    /// Also write the id to this file, for later pipeline stages.
    #[arg(long, env = "SHIPGATE_ID_FILE")]
    id_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct FinishArgs {
    #[arg(long, value_parser = ["queued", "started", "succeeded", "failed", "cancelled", "rolled_back"])]
    status: String,
    /// Deployment id (default: $SHIPGATE_DEPLOYMENT_ID, then the id file).
    #[arg(long, env = "SHIPGATE_DEPLOYMENT_ID")]
    id: Option<String>,
    #[arg(long, env = "SHIPGATE_ID_FILE")]
    id_file: Option<PathBuf>,
    /// The fan-out target this is about.
    #[arg(long)]
    target: Option<String>,
    #[arg(long)]
    message: Option<String>,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    service: Option<String>,
    #[arg(long = "env")]
    environment: Option<String>,
    #[arg(long)]
    tier: Option<String>,
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    kind: Option<String>,
    #[arg(long = "commit")]
    commit: Option<String>,
    #[arg(long)]
    digest: Option<String>,
    #[arg(long)]
    deployer: Option<String>,
    #[arg(long)]
    correlation_id: Option<String>,
    /// RFC 3339 time or duration back from now (24h, 7d).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// Tenant to read (root token only).
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    cursor: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub async fn run(cmd: DeployCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        DeployCmd::Start(a) => start(c, out, &a).await,
        DeployCmd::Finish(a) => record_status(c, out, &a, true).await,
        DeployCmd::Status(a) => record_status(c, out, &a, false).await,
        DeployCmd::Get { id } => get(c, out, &id).await,
        DeployCmd::List(a) => list(c, out, &a).await,
        DeployCmd::Import(a) => import(c, &a, out).await,
    }
}

/// The environment name of a deployment (or a feed entry).
fn environment_name(d: &Value) -> String {
    d.pointer("/environment/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn deployment_table(items: &[Value]) -> Table {
    let mut t = table(&[
        "started",
        "service",
        "environment",
        "version",
        "status",
        "kind",
        "commit",
        "deployer",
        "id",
    ]);
    for d in items {
        t.add_row(vec![
            field_text(d, "started_at")
                .chars()
                .take(19)
                .collect::<String>(),
            field_text(d, "service"),
            environment_name(d),
            field_text(d, "version"),
            field_text(d, "status"),
            field_text(d, "kind"),
            short(&field_text(d, "commit_sha"), 8),
            field_text(d, "deployer"),
            field_text(d, "id"),
        ]);
    }
    t
}

fn default_deployer() -> Option<String> {
    [
        "SHIPGATE_DEPLOYER",
        "GITHUB_ACTOR",
        "GITLAB_USER_LOGIN",
        "BUILD_USER_ID",
        "USER",
        "LOGNAME",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
}

/// The pipeline run id, from the CI's own environment.
fn default_correlation_id() -> Option<String> {
    if let (Ok(repo), Ok(run)) = (
        std::env::var("GITHUB_REPOSITORY"),
        std::env::var("GITHUB_RUN_ID"),
    ) {
        let attempt = std::env::var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|_| "1".into());
        return Some(format!("github:{repo}/{run}/{attempt}"));
    }
    if let Ok(id) = std::env::var("CI_PIPELINE_ID") {
        return Some(format!(
            "gitlab:{}/{id}",
            std::env::var("CI_PROJECT_PATH").unwrap_or_default()
        ));
    }
    if let Ok(tag) = std::env::var("BUILD_TAG") {
        return Some(format!("jenkins:{tag}"));
    }
    None
}

fn deployment_id(id: Option<String>, file: Option<PathBuf>) -> CliResult<String> {
    if let Some(id) = id.filter(|i| !i.trim().is_empty()) {
        return Ok(id.trim().to_owned());
    }
    if let Some(f) = file {
        let text = std::fs::read_to_string(&f).map_err(|e| {
            CliError::new(
                exit::FAILURE,
                format!("cannot read id file {}: {e}", f.display()),
            )
        })?;
        return Ok(text.trim().to_owned());
    }
    Err(CliError::validation(
        "no deployment id: pass --id, set SHIPGATE_DEPLOYMENT_ID, or --id-file/SHIPGATE_ID_FILE",
    ))
}

/// `deploy start`: the request body, with the deployer and correlation id from the CI.
fn start_body(a: &StartArgs) -> CliResult<Value> {
    let mut labels = serde_json::Map::new();
    for l in &a.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| CliError::validation(format!("--label '{l}': expected KEY=VALUE")))?;
        labels.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let mut body = json!({
        "service": a.service, "environment": a.environment, "version": a.version, "status": a.status,
        "commit_sha": a.commit, "artifact": a.artifact, "repository": a.repository, "git_ref": a.git_ref,
        "deployer": a.deployer.clone().or_else(default_deployer), "deployer_type": a.deployer_type,
        "kind": a.kind, "trigger": a.trigger, "change_ref": a.change_ref,
        "correlation_id": a.correlation_id.clone().or_else(default_correlation_id),
        "team": a.team, "region": a.region, "corrects": a.corrects,
    });
    if !a.targets.is_empty() {
        body["targets"] = json!(a.targets);
    }
    if !labels.is_empty() {
        body["labels"] = Value::Object(labels);
    }
    Ok(without_nulls(body))
}

async fn start(c: &Client, out: Output, a: &StartArgs) -> CliResult<()> {
    let body = start_body(a)?;
    let key = uuid::Uuid::new_v4().to_string();
    let (_, d) = c.post("/api/v1/deployments", body, Some(&key)).await?;
    if let Some(f) = &a.id_file {
        std::fs::write(f, format!("{}\n", field_text(&d, "id"))).map_err(|e| {
            CliError::new(exit::FAILURE, format!("cannot write {}: {e}", f.display()))
        })?;
    }
    print_json_or_field(&d, out, "id");
    Ok(())
}

/// `deploy finish` (an outcome only) and `deploy status` (any status).
async fn record_status(c: &Client, out: Output, a: &FinishArgs, finish: bool) -> CliResult<()> {
    if finish && matches!(a.status.as_str(), "queued" | "started") {
        return Err(CliError::validation(
            "finish takes an outcome: succeeded, failed, cancelled or rolled_back",
        ));
    }
    let id = deployment_id(a.id.clone(), a.id_file.clone())?;
    let body = without_nulls(json!({"status": a.status, "target": a.target, "message": a.message}));
    let key = uuid::Uuid::new_v4().to_string();
    let (_, r) = c
        .post(
            &format!("/api/v1/deployments/{id}/events"),
            body,
            Some(&key),
        )
        .await?;
    if out.is_json() {
        print_json(&r);
    } else {
        let d = &r["deployment"];
        println!(
            "{} {} {} -> {}",
            field_text(d, "service"),
            field_text(d, "version"),
            environment_name(d),
            field_text(d, "status")
        );
    }
    Ok(())
}

async fn get(c: &Client, out: Output, id: &str) -> CliResult<()> {
    let d = c.get(&format!("/api/v1/deployments/{id}")).await?;
    if out.is_json() {
        print_json(&d);
        return Ok(());
    }
    println!("{}", deployment_table(std::slice::from_ref(&d)));
    let mut t = table(&["occurred", "target", "status", "late", "message", "by"]);
    for e in d["events"].as_array().cloned().unwrap_or_default() {
        t.add_row(vec![
            field_text(&e, "occurred_at"),
            field_text(&e, "target"),
            field_text(&e, "status"),
            field_text(&e, "late"),
            field_text(&e, "message"),
            field_text(&e, "recorded_by"),
        ]);
    }
    println!("{t}");
    Ok(())
}

async fn list(c: &Client, out: Output, a: &ListArgs) -> CliResult<()> {
    let params = [
        ("service", a.service.clone()),
        ("environment", a.environment.clone()),
        ("tier", a.tier.clone()),
        ("status", a.status.clone()),
        ("kind", a.kind.clone()),
        ("commit_sha", a.commit.clone()),
        ("artifact_digest", a.digest.clone()),
        ("deployer", a.deployer.clone()),
        ("correlation_id", a.correlation_id.clone()),
        ("since", a.since.clone()),
        ("until", a.until.clone()),
        ("tenant", a.tenant.clone()),
        ("cursor", a.cursor.clone()),
        ("limit", Some(a.limit.to_string())),
    ];
    let page = c.get_query("/api/v1/deployments", &params).await?;
    if out.is_json() {
        print_json(&page);
        return Ok(());
    }
    println!(
        "{}",
        deployment_table(
            page["items"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
        )
    );
    if let Some(cur) = page["next_cursor"].as_str() {
        println!("more: --cursor {cur}");
    }
    Ok(())
}

/// The deployments feed: what was deployed in the last `hours`, and the version each replaced.
pub async fn feed(
    c: &Client,
    out: Output,
    hours: u32,
    service: Option<String>,
    environment: Option<String>,
) -> CliResult<()> {
    let params = [
        ("hours", Some(hours.to_string())),
        ("service", service),
        ("environment", environment),
    ];
    let r = c.get_query("/api/v1/deployments/feed", &params).await?;
    if out.is_json() {
        print_json(&r);
        return Ok(());
    }
    let mut t = table(&[
        "started",
        "service",
        "environment",
        "from",
        "to",
        "status",
        "kind",
        "deployer",
        "change",
    ]);
    for d in r["items"].as_array().cloned().unwrap_or_default() {
        t.add_row(vec![
            field_text(&d, "started_at").chars().take(19).collect(),
            field_text(&d, "service"),
            environment_name(&d),
            field_text(&d, "previous_version"),
            field_text(&d, "version"),
            field_text(&d, "status"),
            field_text(&d, "kind"),
            field_text(&d, "deployer"),
            field_text(&d, "change_ref"),
        ]);
    }
    println!("deployments since {}\n{t}", field_text(&r, "since"));
    Ok(())
}
