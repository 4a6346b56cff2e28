//! Command-line interface. Client commands read `SHIPGATE_URL` and `SHIPGATE_TOKEN`, accept
//! `--output json`, and exit non-zero on failure with a status per error class.
//!
//! This module holds the clap tree and the dispatch; each command group has its own module, with
//! one function per subcommand.
mod approvals;
mod audit;
mod deploy;
mod import;
mod inventory;
mod serve;
mod tokens;

use clap::{Parser, Subcommand};

use crate::client::{CliResult, Client};
use crate::output::{Output, print_json};

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

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// Run the server (JSON API under /api/v1, /healthz, /readyz, /metrics).
    Serve(serve::ServeArgs),
    /// Record and query deployments.
    #[command(subcommand)]
    Deploy(deploy::DeployCmd),
    /// What is running where: the current version of each service in each environment.
    Running {
        #[arg(long)]
        service: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
    },
    /// The deployments feed: what was deployed in the last N hours, and the version each replaced.
    // `changes`, the old name, stays as a hidden alias for scripts; `change` is change requests.
    #[command(alias = "changes")]
    Feed {
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[arg(long)]
        service: Option<String>,
        #[arg(long = "env")]
        environment: Option<String>,
    },
    /// Services.
    #[command(subcommand)]
    Service(inventory::ServiceCmd),
    /// Environments and the label taxonomy.
    #[command(subcommand, name = "env")]
    Environment(inventory::EnvCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(tokens::TokenCmd),
    /// Roles for people and groups signing in through SSO, per tenant and environment tier.
    #[command(subcommand)]
    Role(tokens::RoleCmd),
    /// Artifacts builds publish (for artifact immutability checks).
    #[command(subcommand)]
    Artifact(inventory::ArtifactCmd),
    /// The audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Configuration.
    #[command(subcommand)]
    Config(serve::ConfigCmd),
    /// Print the OpenAPI document.
    Openapi,
    /// Show who the token belongs to.
    Whoami,
    #[command(flatten)]
    Approvals(approvals::ApprovalCommand),
}

pub async fn run() -> i32 {
    let cli = Cli::parse();
    let output = cli.output;
    match dispatch(cli).await {
        Ok(()) => 0,
        Err(e) => {
            // With --output json, a problem document from the server goes to stdout as is.
            if let (Output::Json, Some(p)) = (output, &e.problem) {
                print_json(p);
            }
            eprintln!("error: {}", e.message);
            e.code
        }
    }
}

/// Commands that need no server first, then the client commands.
async fn dispatch(cli: Cli) -> CliResult<()> {
    let out = cli.output;
    match cli.command {
        Command::Serve(args) => serve::serve(&args).await,
        Command::Config(serve::ConfigCmd::Example) => {
            serve::print_example_config();
            Ok(())
        }
        Command::Openapi => serve::print_openapi(),
        Command::Audit(audit::AuditCmd::Verify {
            database_url: Some(url),
            expect_head,
        }) => audit::verify_offline(&url, expect_head, out).await,
        command => client_command(command, &Client::new(&cli.url, cli.token)?, out).await,
    }
}

async fn client_command(command: Command, c: &Client, out: Output) -> CliResult<()> {
    match command {
        Command::Deploy(cmd) => deploy::run(cmd, c, out).await,
        Command::Running {
            service,
            environment,
        } => inventory::running(c, out, service, environment).await,
        Command::Feed {
            hours,
            service,
            environment,
        } => deploy::feed(c, out, hours, service, environment).await,
        Command::Service(cmd) => inventory::service(cmd, c, out).await,
        Command::Environment(cmd) => inventory::environment(cmd, c, out).await,
        Command::Artifact(cmd) => inventory::artifact(cmd, c, out).await,
        Command::Token(cmd) => tokens::token(cmd, c, out).await,
        Command::Role(cmd) => tokens::role(cmd, c, out).await,
        Command::Whoami => tokens::whoami(c, out).await,
        Command::Audit(cmd) => audit::run(cmd, c, out).await,
        Command::Approvals(cmd) => approvals::run(cmd, c, out).await,
        Command::Serve(_) | Command::Config(_) | Command::Openapi => Ok(()),
    }
}
