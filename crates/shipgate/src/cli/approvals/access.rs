//! Who may decide: delegations of approval authority, and access reviews of every privilege.
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{CliResult, Client, path_segment, without_nulls};
use crate::output::{
    Output, field_text, print_json, print_json_or_field, print_revoked, print_rows,
};

#[derive(Subcommand)]
pub enum AccessCmd {
    /// Every live privilege: role, scope, granted by, last used, groups.
    List,
    /// Complete a review: revoke the named tokens and attest every other privilege.
    Review {
        /// The review period, such as 2026-Q4.
        #[arg(long)]
        period: String,
        /// Token ids to revoke.
        #[arg(long = "revoke")]
        revoke: Vec<String>,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Completed reviews.
    History,
}

#[derive(Subcommand)]
pub enum DelegationCmd {
    /// Let someone decide for you (or, as an admin, for --from) until a time.
    Create {
        #[arg(long)]
        to: String,
        #[arg(long)]
        from: Option<String>,
        /// Only in this approver group.
        #[arg(long)]
        group: Option<String>,
        /// RFC 3339; defaults to now.
        #[arg(long)]
        starts_at: Option<String>,
        /// RFC 3339.
        #[arg(long)]
        until: String,
        #[arg(long)]
        reason: String,
    },
    List,
    /// End a delegation now.
    Revoke {
        id: String,
    },
}

pub async fn delegation(cmd: DelegationCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        DelegationCmd::Create {
            to,
            from,
            group,
            starts_at,
            until,
            reason,
        } => {
            let body = json!({"to": to, "from": from, "group": group, "starts_at": starts_at, "ends_at": until, "reason": reason});
            create_delegation(c, out, body).await
        }
        DelegationCmd::List => list_delegations(c, out).await,
        DelegationCmd::Revoke { id } => revoke_delegation(c, out, &id).await,
    }
}

pub async fn access(cmd: AccessCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        AccessCmd::List => list_privileges(c, out).await,
        AccessCmd::Review {
            period,
            revoke,
            comment,
        } => review(c, out, &period, &revoke, comment).await,
        AccessCmd::History => history(c, out).await,
    }
}

/// `delegation create`: prints the new delegation's id.
async fn create_delegation(c: &Client, out: Output, body: Value) -> CliResult<()> {
    let (_, v) = c
        .post("/api/v1/delegations", without_nulls(body), None)
        .await?;
    print_json_or_field(&v, out, "id");
    Ok(())
}

async fn list_delegations(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/delegations").await?;
    let cols = [
        "id",
        "from",
        "to",
        "group",
        "starts_at",
        "ends_at",
        "revoked_at",
        "reason",
    ];
    print_rows(&v, out, &cols);
    Ok(())
}

async fn revoke_delegation(c: &Client, out: Output, id: &str) -> CliResult<()> {
    c.delete(&format!("/api/v1/delegations/{}", path_segment(id)))
        .await?;
    print_revoked(id, out);
    Ok(())
}

/// `access list`: every live privilege.
async fn list_privileges(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/access-review").await?;
    let cols = [
        "token_id",
        "subject",
        "role",
        "env_tier",
        "granted_by",
        "granted_at",
        "last_used_at",
        "groups",
    ];
    print_rows(&v, out, &cols);
    Ok(())
}

async fn history(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/access-reviews").await?;
    print_rows(&v, out, &["id", "period", "reviewer", "completed_at"]);
    Ok(())
}

/// `access review`: revokes the tokens named and attests every other live privilege (the
/// reviewer's own excepted).
async fn review(
    c: &Client,
    out: Output,
    period: &str,
    revoke: &[String],
    comment: Option<String>,
) -> CliResult<()> {
    let me = c.get("/api/v1/whoami").await?;
    let live = c.get("/api/v1/access-review").await?;
    let decisions: Vec<Value> = live
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["subject"] != me["subject"])
        .map(|e| {
            let id = field_text(&e, "token_id");
            let d = if revoke.contains(&id) {
                "revoke"
            } else {
                "attest"
            };
            json!({"token_id": id, "decision": d, "comment": comment})
        })
        .collect();
    let (_, v) = c
        .post(
            "/api/v1/access-reviews",
            json!({"period": period, "decisions": decisions}),
            None,
        )
        .await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    let n = v["items"].as_array().map_or(0, Vec::len);
    let r = v["items"].as_array().map_or(0, |a| {
        a.iter().filter(|i| i["decision"] == "revoke").count()
    });
    println!(
        "access review {} for {}: {n} privileges reviewed, {r} revoked",
        field_text(&v, "id"),
        field_text(&v, "period")
    );
    Ok(())
}
