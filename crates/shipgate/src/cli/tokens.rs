//! Who may do what: API tokens, SSO role grants, and `whoami`.
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{CliResult, Client, without_nulls};
use crate::output::{Output, print_json_or_field, print_revoked, print_rows};

#[derive(Subcommand)]
pub enum TokenCmd {
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
pub enum RoleCmd {
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

pub async fn token(cmd: TokenCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        TokenCmd::Create {
            subject,
            role,
            tenant,
            expires_in,
            env_tier,
        } => {
            let body = json!({"subject": subject, "role": role, "tenant": tenant, "expires_in": expires_in, "env_tier": env_tier});
            create_token(c, out, body).await
        }
        TokenCmd::List => list_tokens(c, out).await,
        TokenCmd::Revoke { id } => revoke(c, out, "tokens", &id).await,
        TokenCmd::Rotate { id } => rotate_token(c, out, &id).await,
        TokenCmd::Confirm { id } => confirm_token(c, out, &id).await,
    }
}

pub async fn role(cmd: RoleCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        RoleCmd::Grant {
            subject,
            group,
            role,
            tenant,
            expires_in,
            env_tier,
        } => {
            let body = json!({"subject": subject, "group": group, "role": role, "tenant": tenant, "expires_in": expires_in, "env_tier": env_tier});
            grant_role(c, out, body).await
        }
        RoleCmd::List => list_role_grants(c, out).await,
        RoleCmd::Revoke { id } => revoke(c, out, "role-grants", &id).await,
    }
}

/// `token create`: prints the new token (shown once).
async fn create_token(c: &Client, out: Output, body: Value) -> CliResult<()> {
    let (_, v) = c.post("/api/v1/tokens", without_nulls(body), None).await?;
    print_json_or_field(&v, out, "token");
    Ok(())
}

async fn list_tokens(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/tokens").await?;
    let cols = [
        "id",
        "subject",
        "role",
        "env_tier",
        "expires_at",
        "created_at",
    ];
    print_rows(&v, out, &cols);
    Ok(())
}

/// `token rotate`: prints the replacement token.
async fn rotate_token(c: &Client, out: Output, id: &str) -> CliResult<()> {
    let path = format!("/api/v1/tokens/{}/rotate", id.trim());
    let (_, v) = c.post(&path, json!({}), None).await?;
    print_json_or_field(&v, out, "token");
    Ok(())
}

async fn confirm_token(c: &Client, out: Output, id: &str) -> CliResult<()> {
    let path = format!("/api/v1/tokens/{}/confirm", id.trim());
    let (_, v) = c.post(&path, json!({}), None).await?;
    let cols = ["id", "subject", "role", "created_by", "confirmed_by"];
    print_rows(&v, out, &cols);
    Ok(())
}

async fn grant_role(c: &Client, out: Output, body: Value) -> CliResult<()> {
    let (_, v) = c
        .post("/api/v1/role-grants", without_nulls(body), None)
        .await?;
    let cols = ["id", "tenant", "subject", "role", "env_tier", "expires_at"];
    print_rows(&v, out, &cols);
    Ok(())
}

async fn list_role_grants(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/role-grants").await?;
    let cols = [
        "id",
        "subject",
        "role",
        "env_tier",
        "expires_at",
        "created_by",
        "last_used_at",
    ];
    print_rows(&v, out, &cols);
    Ok(())
}

/// `token revoke` and `role revoke`: `collection` is `tokens` or `role-grants`.
async fn revoke(c: &Client, out: Output, collection: &str, id: &str) -> CliResult<()> {
    c.delete(&format!("/api/v1/{collection}/{}", id.trim()))
        .await?;
    print_revoked(id.trim(), out);
    Ok(())
}

pub async fn whoami(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/whoami").await?;
    print_rows(&v, out, &["tenant", "subject", "role", "root"]);
    Ok(())
}
