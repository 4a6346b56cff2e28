//! What shipgate knows about: what is running where, services, environments and artifacts.
use clap::Subcommand;
use serde_json::json;

use crate::client::{CliResult, Client, without_nulls};
use crate::output::{Output, field_text, print_json, print_rows, short, table};

#[derive(Subcommand)]
pub enum ServiceCmd {
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
pub enum EnvCmd {
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
pub enum ArtifactCmd {
    /// Record the digest a build published: NAME@sha256:<hex>.
    Publish {
        artifact: String,
        /// The tag or version it was published under.
        #[arg(long)]
        version: Option<String>,
    },
}

/// `shipgate running`: the current version of each service in each environment.
pub async fn running(
    c: &Client,
    out: Output,
    service: Option<String>,
    environment: Option<String>,
) -> CliResult<()> {
    let params = [("service", service), ("environment", environment)];
    let r = c.get_query("/api/v1/running", &params).await?;
    if out.is_json() {
        print_json(&r);
        return Ok(());
    }
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
            field_text(&v, "service"),
            field_text(&v, "environment"),
            field_text(&v, "env_tier"),
            field_text(&v, "version"),
            field_text(&v, "deployed_at").chars().take(19).collect(),
            short(&field_text(&v, "commit_sha"), 8),
            short(&field_text(&v, "artifact_digest"), 12),
            field_text(&v, "deployer"),
        ]);
    }
    println!("{t}");
    Ok(())
}

const SERVICE_COLUMNS: &[&str] = &["name", "team", "declared", "created_at"];
const ENVIRONMENT_COLUMNS: &[&str] = &["name", "raw", "tier", "region", "declared"];

pub async fn service(cmd: ServiceCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        ServiceCmd::List => list_services(c, out).await,
        ServiceCmd::Declare { name, team, paths } => {
            declare_service(c, out, &name, team, &paths).await
        }
    }
}

pub async fn environment(cmd: EnvCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        EnvCmd::List => list_environments(c, out).await,
        EnvCmd::Declare { name, tier, region } => {
            declare_environment(c, out, &name, tier, region).await
        }
        EnvCmd::Resolve { label } => resolve_environment(c, out, label).await,
    }
}

pub async fn artifact(cmd: ArtifactCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        ArtifactCmd::Publish { artifact, version } => {
            publish_artifact(c, out, &artifact, version).await
        }
    }
}

async fn list_services(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/services").await?;
    print_rows(&v, out, SERVICE_COLUMNS);
    Ok(())
}

async fn declare_service(
    c: &Client,
    out: Output,
    name: &str,
    team: Option<String>,
    paths: &[String],
) -> CliResult<()> {
    let body = json!({"name": name, "team": team, "paths": paths});
    let (_, v) = c.post("/api/v1/services", body, None).await?;
    print_rows(&v, out, SERVICE_COLUMNS);
    Ok(())
}

async fn list_environments(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/environments").await?;
    print_rows(&v, out, ENVIRONMENT_COLUMNS);
    Ok(())
}

async fn declare_environment(
    c: &Client,
    out: Output,
    name: &str,
    tier: Option<String>,
    region: Option<String>,
) -> CliResult<()> {
    let body = json!({"name": name, "tier": tier, "region": region});
    let (_, v) = c.post("/api/v1/environments", body, None).await?;
    print_rows(&v, out, ENVIRONMENT_COLUMNS);
    Ok(())
}

/// `env resolve`: how the server normalises a label.
async fn resolve_environment(c: &Client, out: Output, label: String) -> CliResult<()> {
    let params = [("label", Some(label))];
    let v = c.get_query("/api/v1/environments/resolve", &params).await?;
    print_rows(&v, out, ENVIRONMENT_COLUMNS);
    Ok(())
}

/// `artifact publish`: records the digest a build published.
async fn publish_artifact(
    c: &Client,
    out: Output,
    artifact: &str,
    version: Option<String>,
) -> CliResult<()> {
    let body = without_nulls(json!({"name": artifact, "version": version}));
    let (_, v) = c.post("/api/v1/artifacts", body, None).await?;
    print_rows(&v, out, &["name", "version", "digest", "published_at"]);
    Ok(())
}
