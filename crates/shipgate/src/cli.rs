//! Command-line interface. Client commands read `SHIPGATE_URL` and `SHIPGATE_TOKEN`, accept
//! `--output json`, and exit non-zero on failure with a status per error class.
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::{Value, json};
use shipgate_server::{Application, Settings};

use crate::client::{Body, CliError, CliResult, Client, exit, query};

#[derive(Parser)]
#[command(
    name = "shipgate",
    version,
    about = "Deployment governance: record every deployment, decide which may go ahead."
)]
struct Cli {
    /// shipgate server URL.
    #[arg(
        long,
        global = true,
        env = "SHIPGATE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// API token.
    #[arg(long, global = true, env = "SHIPGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// Run the server (JSON API under /api/v1, /healthz, /readyz, /metrics).
    Serve(ServeArgs),
    /// Record and query deployments.
    #[command(subcommand)]
    Deploy(DeployCmd),
    /// What is running where: the current version of each service in each environment.
    Running {
        #[arg(long)]
        service: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
    },
    /// What changed in the last N hours.
    Changes {
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long)]
        service: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
    },
    /// Services.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Environments and the label taxonomy.
    #[command(subcommand, name = "env")]
    Environment(EnvCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Roles for people and groups signing in through SSO, per tenant and environment tier.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Artifacts builds publish (for artifact immutability checks).
    #[command(subcommand)]
    Artifact(ArtifactCmd),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the OpenAPI document.
    Openapi,
    /// Show who the token belongs to.
    Whoami,
    #[command(flatten)]
    Approvals(crate::approvals_cli::ApprovalCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (SHIPGATE_* environment variables override it).
    #[arg(long, env = "SHIPGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Load demo data (teams, services, environments, 60 days of deployments) into an empty store.
    #[arg(long)]
    demo: bool,
}

#[derive(Subcommand)]
enum DeployCmd {
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
struct StartArgs {
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
struct FinishArgs {
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
struct ListArgs {
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

#[derive(Args)]
struct ImportArgs {
    file: PathBuf,
    /// jsonl or csv (default: from the file name).
    #[arg(long, value_parser = ["jsonl", "csv"])]
    format: Option<String>,
    /// Write the good lines even if some are bad (default: all or nothing).
    #[arg(long)]
    partial: bool,
    /// Records per request.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
}

#[derive(Subcommand)]
enum ServiceCmd {
    List,
    /// Declare a service ahead of its first deployment.
    Declare {
        name: String,
        #[arg(long)]
        team: Option<String>,
        /// A path glob the service owns in a monorepo (repeatable), e.g. services/checkout/**.
        #[arg(long = "path")]
        paths: Vec<String>,
    },
}

#[derive(Subcommand)]
enum EnvCmd {
    List,
    /// Declare an environment.
    Declare {
        name: String,
        #[arg(long)]
        tier: Option<String>,
        #[arg(long)]
        region: Option<String>,
    },
    /// Show how a label is normalised.
    Resolve {
        label: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token (shown once).
    Create {
        #[arg(long)]
        subject: String,
        #[arg(long, value_parser = ["viewer", "requester", "deployer", "approver", "change_manager", "auditor", "incident_commander", "emergency_deployer", "admin"])]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime, such as 90d or 12h.
        #[arg(long)]
        expires_in: Option<String>,
        /// Limit writes to one environment tier (production, staging, test, development).
        #[arg(long)]
        env_tier: Option<String>,
    },
    /// The tenant's live tokens.
    List,
    /// Revoke a token at once.
    Revoke { id: String },
    /// Replace a token with a new one (same subject, role and scope); the old one stops working.
    Rotate { id: String },
    /// Confirm an emergency privilege as the second admin (two-person rule).
    Confirm { id: String },
}

#[derive(Subcommand)]
enum ArtifactCmd {
    /// Record the digest a build published: NAME@sha256:<hex>.
    Publish {
        artifact: String,
        /// The tag or version it was published under.
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Subcommand)]
enum RoleCmd {
    /// Assign a role to an SSO identity (--subject) or group (--group).
    Grant {
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        subject: Option<String>,
        #[arg(long)]
        group: Option<String>,
        #[arg(long, value_parser = ["viewer", "requester", "deployer", "approver", "change_manager", "auditor", "incident_commander", "emergency_deployer", "admin"])]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime, such as 90d.
        #[arg(long)]
        expires_in: Option<String>,
        /// Limit writes to one environment tier.
        #[arg(long)]
        env_tier: Option<String>,
    },
    /// The tenant's live role grants.
    List,
    /// Revoke a role grant at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Verify the hash chain and every record against it. With --database-url it reads the
    /// database directly (offline); otherwise it asks the server.
    Verify {
        #[arg(long)]
        database_url: Option<String>,
        /// A head saved earlier (`shipgate audit head`), as SEQ:HASH: the chain must still
        /// hold it, so a recomputed or truncated chain is detected.
        #[arg(long, value_parser = parse_expect_head)]
        expect_head: Option<shipgate_domain::audit::ChainHead>,
    },
    /// Print the head of the audit chain (SEQ:HASH), to save for a later --expect-head.
    Head,
    /// Show audit entries.
    Log {
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print a commented example configuration.
    Example,
}

pub async fn run() -> i32 {
    let cli = Cli::parse();
    let output = cli.output;
    match dispatch(cli).await {
        Ok(()) => 0,
        Err(e) => {
            // With --output json, a problem document from the server goes to stdout as is.
            if let (Output::Json, Some(p)) = (output, &e.problem) {
                println!("{}", serde_json::to_string_pretty(p).unwrap_or_default());
            }
            eprintln!("error: {}", e.message);
            e.code
        }
    }
}

pub(crate) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub(crate) fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub(crate) fn short(x: &str, n: usize) -> String {
    x.strip_prefix("sha256:")
        .unwrap_or(x)
        .chars()
        .take(n)
        .collect()
}

pub(crate) fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_header(headers.to_vec());
    t
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
            s(d, "started_at").chars().take(19).collect::<String>(),
            s(d, "service"),
            d.pointer("/environment/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            s(d, "version"),
            s(d, "status"),
            s(d, "kind"),
            short(&s(d, "commit_sha"), 8),
            s(d, "deployer"),
            s(d, "id"),
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

fn client(cli: &Cli) -> CliResult<Client> {
    Client::new(&cli.url, cli.token.clone())
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
    Err(CliError::new(
        exit::VALIDATION,
        "no deployment id: pass --id, set SHIPGATE_DEPLOYMENT_ID, or --id-file/SHIPGATE_ID_FILE",
    ))
}

async fn dispatch(cli: Cli) -> CliResult<()> {
    let out = cli.output;
    match &cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Config(ConfigCmd::Example) => {
            print!("{}", shipgate_server::config::EXAMPLE);
            Ok(())
        }
        Command::Openapi => {
            println!(
                "{}",
                shipgate_server::routes::openapi()
                    .to_pretty_json()
                    .map_err(|e| CliError::new(1, e.to_string()))?
            );
            Ok(())
        }
        Command::Audit(AuditCmd::Verify {
            database_url: Some(url),
            expect_head,
        }) => {
            let store = shipgate_store::open_existing(url).await.map_err(|e| {
                CliError::new(
                    exit::UNAVAILABLE,
                    format!("cannot verify {url}: {e} (nothing was created)"),
                )
            })?;
            let report = store
                .verify_audit_against(expect_head.clone())
                .await
                .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
            report_verify(&serde_json::to_value(&report).unwrap_or_default(), out)
        }
        _ => client_command(&cli, client(&cli)?).await,
    }
}

fn parse_expect_head(s: &str) -> Result<shipgate_domain::audit::ChainHead, String> {
    shipgate_domain::audit::parse_head(s)
}

fn report_verify(r: &Value, out: Output) -> CliResult<()> {
    if out == Output::Json {
        print_json(r);
    }
    let ok = r.get("ok").and_then(Value::as_bool).unwrap_or(false);
    if ok {
        if out == Output::Table {
            println!(
                "audit chain intact: {} entries, {} records checked, head {} {}",
                s(r, "entries_checked"),
                s(r, "records_checked"),
                r.pointer("/head/seq")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                r.pointer("/head/hash")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            );
        }
        Ok(())
    } else {
        let b = r.get("first_break").cloned().unwrap_or_default();
        let n = r
            .get("problems")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        Err(CliError::new(
            exit::CONFLICT,
            format!(
                "audit verification FAILED: first broken link at entry {} ({}): {} [{n} problem(s) in all]",
                s(&b, "seq"),
                s(&b, "kind"),
                s(&b, "message")
            ),
        ))
    }
}

async fn client_command(cli: &Cli, c: Client) -> CliResult<()> {
    let out = cli.output;
    match &cli.command {
        Command::Deploy(DeployCmd::Start(a)) => {
            let mut labels = serde_json::Map::new();
            for l in &a.labels {
                let (k, v) = l.split_once('=').ok_or_else(|| {
                    CliError::new(
                        exit::VALIDATION,
                        format!("--label '{l}': expected KEY=VALUE"),
                    )
                })?;
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
            if let Value::Object(m) = &mut body {
                m.retain(|_, v| !v.is_null());
            }
            let key = uuid::Uuid::new_v4().to_string();
            let (_, d) = c.post("/api/v1/deployments", body, Some(&key)).await?;
            let id = s(&d, "id");
            if let Some(f) = &a.id_file {
                std::fs::write(f, format!("{id}\n")).map_err(|e| {
                    CliError::new(exit::FAILURE, format!("cannot write {}: {e}", f.display()))
                })?;
            }
            if out == Output::Json {
                print_json(&d)
            } else {
                println!("{id}")
            }
            Ok(())
        }
        Command::Deploy(DeployCmd::Finish(a) | DeployCmd::Status(a)) => {
            if matches!(cli.command, Command::Deploy(DeployCmd::Finish(_)))
                && matches!(a.status.as_str(), "queued" | "started")
            {
                return Err(CliError::new(
                    exit::VALIDATION,
                    "finish takes an outcome: succeeded, failed, cancelled or rolled_back",
                ));
            }
            let id = deployment_id(a.id.clone(), a.id_file.clone())?;
            let mut body = json!({"status": a.status, "target": a.target, "message": a.message});
            if let Value::Object(m) = &mut body {
                m.retain(|_, v| !v.is_null());
            }
            let key = uuid::Uuid::new_v4().to_string();
            let (_, r) = c
                .post(
                    &format!("/api/v1/deployments/{id}/events"),
                    body,
                    Some(&key),
                )
                .await?;
            if out == Output::Json {
                print_json(&r);
            } else {
                let d = &r["deployment"];
                println!(
                    "{} {} {} -> {}",
                    s(d, "service"),
                    s(d, "version"),
                    d.pointer("/environment/name")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    s(d, "status")
                );
            }
            Ok(())
        }
        Command::Deploy(DeployCmd::Get { id }) => {
            let d = c.get(&format!("/api/v1/deployments/{id}")).await?;
            if out == Output::Json {
                print_json(&d);
            } else {
                println!("{}", deployment_table(std::slice::from_ref(&d)));
                let mut t = table(&["occurred", "target", "status", "late", "message", "by"]);
                for e in d["events"].as_array().cloned().unwrap_or_default() {
                    t.add_row(vec![
                        s(&e, "occurred_at"),
                        s(&e, "target"),
                        s(&e, "status"),
                        s(&e, "late"),
                        s(&e, "message"),
                        s(&e, "recorded_by"),
                    ]);
                }
                println!("{t}");
            }
            Ok(())
        }
        Command::Deploy(DeployCmd::List(a)) => {
            let q = query(&[
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
            ]);
            let page = c.get(&format!("/api/v1/deployments{q}")).await?;
            if out == Output::Json {
                print_json(&page);
            } else {
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
            }
            Ok(())
        }
        Command::Deploy(DeployCmd::Import(a)) => import(&c, a, out).await,
        Command::Running {
            service,
            environment,
        } => {
            let r = c
                .get(&format!(
                    "/api/v1/running{}",
                    query(&[
                        ("service", service.clone()),
                        ("environment", environment.clone())
                    ])
                ))
                .await?;
            if out == Output::Json {
                print_json(&r);
            } else {
                let mut t = table(&[
                    "service",
                    "environment",
                    "tier",
                    "version",
                    "deployed",
                    "commit",
                    "digest",
                    "deployer",
                ]);
                for v in r.as_array().cloned().unwrap_or_default() {
                    t.add_row(vec![
                        s(&v, "service"),
                        s(&v, "environment"),
                        s(&v, "env_tier"),
                        s(&v, "version"),
                        s(&v, "deployed_at").chars().take(19).collect(),
                        short(&s(&v, "commit_sha"), 8),
                        short(&s(&v, "artifact_digest"), 12),
                        s(&v, "deployer"),
                    ]);
                }
                println!("{t}");
            }
            Ok(())
        }
        Command::Changes {
            hours,
            service,
            environment,
        } => {
            let r = c
                .get(&format!(
                    "/api/v1/deployments/feed{}",
                    query(&[
                        ("hours", Some(hours.to_string())),
                        ("service", service.clone()),
                        ("environment", environment.clone())
                    ])
                ))
                .await?;
            if out == Output::Json {
                print_json(&r);
            } else {
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
                        s(&d, "started_at").chars().take(19).collect(),
                        s(&d, "service"),
                        d.pointer("/environment/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        s(&d, "previous_version"),
                        s(&d, "version"),
                        s(&d, "status"),
                        s(&d, "kind"),
                        s(&d, "deployer"),
                        s(&d, "change_ref"),
                    ]);
                }
                println!("changes since {}\n{t}", s(&r, "since"));
            }
            Ok(())
        }
        Command::Service(cmd) => {
            let v = match cmd {
                ServiceCmd::List => c.get("/api/v1/services").await?,
                ServiceCmd::Declare { name, team, paths } => {
                    c.post(
                        "/api/v1/services",
                        json!({"name": name, "team": team, "paths": paths}),
                        None,
                    )
                    .await?
                    .1
                }
            };
            simple_output(&v, out, &["name", "team", "declared", "created_at"]);
            Ok(())
        }
        Command::Environment(cmd) => {
            let v = match cmd {
                EnvCmd::List => c.get("/api/v1/environments").await?,
                EnvCmd::Declare { name, tier, region } => {
                    c.post(
                        "/api/v1/environments",
                        json!({"name": name, "tier": tier, "region": region}),
                        None,
                    )
                    .await?
                    .1
                }
                EnvCmd::Resolve { label } => {
                    c.get(&format!(
                        "/api/v1/environments/resolve{}",
                        query(&[("label", Some(label.clone()))])
                    ))
                    .await?
                }
            };
            simple_output(&v, out, &["name", "raw", "tier", "region", "declared"]);
            Ok(())
        }
        Command::Token(TokenCmd::List) => {
            let v = c.get("/api/v1/tokens").await?;
            simple_output(
                &v,
                out,
                &[
                    "id",
                    "subject",
                    "role",
                    "env_tier",
                    "expires_at",
                    "created_at",
                ],
            );
            Ok(())
        }
        Command::Token(TokenCmd::Revoke { id }) => {
            c.send(
                reqwest::Method::DELETE,
                &format!("/api/v1/tokens/{}", id.trim()),
                None,
                None,
            )
            .await?;
            if out == Output::Json {
                print_json(&json!({"revoked": id.trim()}));
            } else {
                println!("revoked {}", id.trim());
            }
            Ok(())
        }
        Command::Token(TokenCmd::Confirm { id }) => {
            let (_, v) = c
                .post(
                    &format!("/api/v1/tokens/{}/confirm", id.trim()),
                    json!({}),
                    None,
                )
                .await?;
            simple_output(
                &v,
                out,
                &["id", "subject", "role", "created_by", "confirmed_by"],
            );
            Ok(())
        }
        Command::Token(TokenCmd::Rotate { id }) => {
            let (_, v) = c
                .post(
                    &format!("/api/v1/tokens/{}/rotate", id.trim()),
                    json!({}),
                    None,
                )
                .await?;
            if out == Output::Json {
                print_json(&v)
            } else {
                println!("{}", s(&v, "token"))
            }
            Ok(())
        }
        Command::Token(TokenCmd::Create {
            subject,
            role,
            tenant,
            expires_in,
            env_tier,
        }) => {
            let mut body = json!({"subject": subject, "role": role, "tenant": tenant, "expires_in": expires_in, "env_tier": env_tier});
            if let Value::Object(m) = &mut body {
                m.retain(|_, v| !v.is_null());
            }
            let (_, v) = c.post("/api/v1/tokens", body, None).await?;
            if out == Output::Json {
                print_json(&v)
            } else {
                println!("{}", s(&v, "token"))
            }
            Ok(())
        }
        Command::Role(RoleCmd::Grant {
            subject,
            group,
            role,
            tenant,
            expires_in,
            env_tier,
        }) => {
            let mut body = json!({"subject": subject, "group": group, "role": role, "tenant": tenant, "expires_in": expires_in, "env_tier": env_tier});
            if let Value::Object(m) = &mut body {
                m.retain(|_, v| !v.is_null());
            }
            let (_, v) = c.post("/api/v1/role-grants", body, None).await?;
            simple_output(
                &v,
                out,
                &["id", "tenant", "subject", "role", "env_tier", "expires_at"],
            );
            Ok(())
        }
        Command::Artifact(ArtifactCmd::Publish { artifact, version }) => {
            let mut body = json!({"name": artifact, "version": version});
            if let Value::Object(m) = &mut body {
                m.retain(|_, v| !v.is_null());
            }
            let (_, v) = c.post("/api/v1/artifacts", body, None).await?;
            simple_output(&v, out, &["name", "version", "digest", "published_at"]);
            Ok(())
        }
        Command::Role(RoleCmd::List) => {
            let v = c.get("/api/v1/role-grants").await?;
            simple_output(
                &v,
                out,
                &[
                    "id",
                    "subject",
                    "role",
                    "env_tier",
                    "expires_at",
                    "created_by",
                    "last_used_at",
                ],
            );
            Ok(())
        }
        Command::Role(RoleCmd::Revoke { id }) => {
            c.send(
                reqwest::Method::DELETE,
                &format!("/api/v1/role-grants/{}", id.trim()),
                None,
                None,
            )
            .await?;
            if out == Output::Json {
                print_json(&json!({"revoked": id.trim()}));
            } else {
                println!("revoked {}", id.trim());
            }
            Ok(())
        }
        Command::Audit(AuditCmd::Verify { expect_head, .. }) => {
            let path = match expect_head {
                Some(h) => format!("/api/v1/audit/verify?expect_head={}:{}", h.seq, h.hash),
                None => "/api/v1/audit/verify".to_owned(),
            };
            let r = c.get(&path).await?;
            report_verify(&r, out)
        }
        Command::Audit(AuditCmd::Head) => {
            let r = c.get("/api/v1/audit/head").await?;
            if out == Output::Json {
                print_json(&r);
            } else {
                println!("{}:{}", s(&r, "seq"), s(&r, "hash"));
            }
            Ok(())
        }
        Command::Audit(AuditCmd::Log { after, limit }) => {
            let v = c
                .get(&format!("/api/v1/audit?after={after}&limit={limit}"))
                .await?;
            if out == Output::Json {
                print_json(&v);
            } else {
                let mut t = table(&["seq", "at", "actor", "action", "subject", "hash"]);
                for e in v["items"].as_array().cloned().unwrap_or_default() {
                    t.add_row(vec![
                        s(&e, "seq"),
                        s(&e, "at").chars().take(19).collect(),
                        s(&e, "actor"),
                        s(&e, "action"),
                        s(&e, "subject"),
                        short(&s(&e, "hash"), 16),
                    ]);
                }
                println!("{t}");
            }
            Ok(())
        }
        Command::Whoami => {
            let v = c.get("/api/v1/whoami").await?;
            simple_output(&v, out, &["tenant", "subject", "role", "root"]);
            Ok(())
        }
        Command::Approvals(cmd) => crate::approvals_cli::run(cmd, &c, out == Output::Json).await,
        Command::Serve(_) | Command::Config(_) | Command::Openapi => Ok(()),
    }
}

fn simple_output(v: &Value, out: Output, cols: &[&str]) {
    if out == Output::Json {
        print_json(v);
        return;
    }
    let rows = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let mut t = table(cols);
    for r in rows {
        t.add_row(cols.iter().map(|c| s(&r, c)).collect::<Vec<_>>());
    }
    println!("{t}");
}

async fn import(c: &Client, a: &ImportArgs, out: Output) -> CliResult<()> {
    let text = std::fs::read_to_string(&a.file).map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!("cannot read {}: {e}", a.file.display()),
        )
    })?;
    let format: &str = match a.format.as_deref() {
        Some("csv") => "csv",
        Some(_) => "jsonl",
        None if a
            .file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv")) =>
        {
            "csv"
        }
        None => "jsonl",
    };
    // Split into chunks of whole records, keeping file line numbers: CSV chunks repeat the header.
    let all: Vec<&str> = text.lines().collect();
    let (header, body_start) = if format == "csv" {
        (all.first().copied(), 1)
    } else {
        (None, 0)
    };
    let chunks: Vec<(usize, String)> = all[body_start.min(all.len())..]
        .chunks(a.batch.max(1))
        .enumerate()
        .map(|(i, lines)| {
            let first_line = body_start + i * a.batch.max(1);
            let mut s = String::new();
            if let Some(h) = header {
                s.push_str(h);
                s.push('\n');
            }
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
            (first_line, s)
        })
        .collect();
    let total_records = all.len() - body_start.min(all.len());
    let bar = indicatif::ProgressBar::new(total_records as u64);
    if std::io::stderr().is_terminal() && out == Output::Table {
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let ctype = if format == "csv" {
        "text/csv"
    } else {
        "application/x-ndjson"
    };
    let mode = if a.partial { "partial" } else { "atomic" };
    let send = |dry: bool, first_line: usize, chunk: String| async move {
        let path = format!("/api/v1/deployments/import?format={format}&mode={mode}&dry_run={dry}");
        let r = c
            .send(
                reqwest::Method::POST,
                &path,
                Some(Body::Raw(ctype.into(), chunk.into_bytes())),
                Some("import"),
            )
            .await;
        (first_line, r)
    };
    // Renumber the server's line numbers (relative to the chunk) to the file's.
    let renumber = |first_line: usize, v: &mut Value| {
        let offset = if format == "csv" {
            first_line - 1
        } else {
            first_line
        };
        if let Some(lines) = v.get_mut("lines").and_then(Value::as_array_mut) {
            for l in lines {
                if let Some(n) = l.get("line").and_then(Value::as_u64) {
                    l["line"] = json!(n as usize + offset);
                }
            }
        }
        if let Some(errs) = v.get_mut("errors").and_then(Value::as_array_mut) {
            for e in errs {
                if let Some(f) = e.get("field").and_then(Value::as_str).map(str::to_owned)
                    && let Some(rest) = f.strip_prefix("lines.")
                {
                    let (n, tail) = rest
                        .split_once('.')
                        .map(|(n, t)| (n, format!(".{t}")))
                        .unwrap_or((rest, String::new()));
                    if let Ok(n) = n.parse::<usize>() {
                        e["field"] = json!(format!("lines.{}{tail}", n + offset));
                    }
                }
            }
        }
    };
    if !a.partial && chunks.len() > 1 {
        // All or nothing across chunks: validate every chunk before writing any.
        bar.set_prefix("validating");
        let mut problems = Vec::new();
        for (first, chunk) in chunks.clone() {
            let n = chunk.lines().count() - usize::from(header.is_some());
            match send(true, first, chunk).await {
                (_, Ok(_)) => {}
                (first, Err(mut e)) if e.code == exit::VALIDATION => {
                    if let Some(p) = e.problem.as_mut() {
                        renumber(first, p);
                        problems.extend(p["errors"].as_array().cloned().unwrap_or_default());
                    }
                }
                (_, Err(e)) => return Err(e),
            }
            bar.inc(n as u64);
        }
        if !problems.is_empty() {
            bar.finish_and_clear();
            let problem = json!({"title": "Import refused", "detail": "bad lines; nothing was written", "code": "validation_failed", "errors": problems});
            return Err(CliError {
                code: exit::VALIDATION,
                message: crate::client::describe(
                    &problem,
                    reqwest::StatusCode::UNPROCESSABLE_ENTITY,
                ),
                problem: Some(problem),
            });
        }
        bar.set_position(0);
    }
    bar.set_prefix("importing");
    let mut report = json!({"total": 0, "created": 0, "replayed": 0, "failed": 0, "lines": []});
    for (first, chunk) in chunks {
        let n = chunk.lines().count() - usize::from(header.is_some());
        let (first, r) = send(false, first, chunk).await;
        let (_, mut v) = match r {
            Ok(v) => v,
            Err(mut e) => {
                if let Some(p) = e.problem.as_mut() {
                    renumber(first, p);
                    e.message =
                        crate::client::describe(p, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
                }
                bar.finish_and_clear();
                return Err(e);
            }
        };
        renumber(first, &mut v);
        for k in ["total", "created", "replayed", "failed"] {
            report[k] = json!(report[k].as_u64().unwrap_or(0) + v[k].as_u64().unwrap_or(0));
        }
        let failed_lines: Vec<Value> = v["lines"]
            .as_array()
            .map(|src| {
                src.iter()
                    .filter(|l| l["result"] != "created" && l["result"] != "replayed")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if let Some(dst) = report["lines"].as_array_mut() {
            dst.extend(failed_lines);
        }
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    if out == Output::Json {
        print_json(&report);
    } else {
        println!(
            "imported {}: {} created, {} already present, {} failed",
            a.file.display(),
            report["created"],
            report["replayed"],
            report["failed"]
        );
        for l in report["lines"].as_array().cloned().unwrap_or_default() {
            for e in l["errors"].as_array().cloned().unwrap_or_default() {
                println!(
                    "  line {}: {}: {}",
                    l["line"],
                    s(&e, "field"),
                    s(&e, "message")
                );
            }
        }
    }
    if report["failed"].as_u64().unwrap_or(0) > 0 {
        return Err(CliError::new(
            exit::VALIDATION,
            format!("{} line(s) failed", report["failed"]),
        ));
    }
    Ok(())
}

async fn serve(args: &ServeArgs) -> CliResult<()> {
    let mut settings = Settings::load(args.config.as_deref())?;
    shipgate_server::telemetry::init_tracing(&settings.log_format);
    if args.demo && std::env::var("SHIPGATE_DATABASE_URL").is_err() && args.config.is_none() {
        settings.database_url = "sqlite://shipgate-demo.db".into();
    }
    let (app, boot) = Application::build(
        settings.clone(),
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await?;
    let url = format!(
        "http://{}:{}",
        settings
            .listen
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or("127.0.0.1"),
        app.port()
    );
    let mut token_line = boot
        .generated_admin_token
        .map(|t| format!("admin token (shown once): {t}"));
    // Startup lines go to stderr; a closed stderr must not bring the server down.
    let say = |a: std::fmt::Arguments| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{a}");
    };
    if args.demo {
        let store = app.store();
        let seeded = crate::demo::seed(store.as_ref()).await?;
        if token_line.is_none() {
            // A demo restarted on its old file: hand out a fresh admin token so it can be used at once.
            let t = crate::demo::demo_token(store.as_ref()).await?;
            token_line = Some(format!("admin token (demo): {t}"));
        }
        say(format_args!("demo data: {seeded}"));
        let approvals = crate::demo::seed_approvals(store.as_ref()).await?;
        say(format_args!("demo approvals: {approvals}"));
    }
    say(format_args!(
        "shipgate {} listening on {url} (store: {})",
        env!("CARGO_PKG_VERSION"),
        settings.database_url.split('?').next().unwrap_or("")
    ));
    if let Some(t) = &token_line {
        say(format_args!("{t}"));
        say(format_args!(
            "try:  SHIPGATE_URL={url} SHIPGATE_TOKEN=<token> shipgate running"
        ));
    }
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        stop.cancel();
                        return;
                    }
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down: finishing in-flight requests");
        stop.cancel();
    });
    app.run()
        .await
        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))
}
