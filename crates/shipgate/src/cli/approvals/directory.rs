//! The approvers' directory (admin): people and approver groups.
use clap::Subcommand;
use serde_json::json;

use crate::client::{Body, CliResult, Client, path_segment};
use crate::output::{Output, field_text, print_json, print_rows};

#[derive(Subcommand)]
pub enum PersonCmd {
    /// Record a person; with --token-role, also create their personal token (printed once).
    Create {
        subject: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        token_role: Option<String>,
    },
    List,
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Create or replace a group.
    Put {
        name: String,
        #[arg(long = "member")]
        members: Vec<String>,
        #[arg(long = "backup")]
        backups: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        department: Option<String>,
        #[arg(long = "region")]
        regions: Vec<String>,
        #[arg(long = "compliance")]
        compliance: Vec<String>,
    },
    List,
}

pub async fn person(cmd: PersonCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        PersonCmd::Create {
            subject,
            name,
            email,
            token_role,
        } => {
            let body =
                json!({"subject": subject, "name": name, "email": email, "token_role": token_role});
            create_person(c, out, body).await
        }
        PersonCmd::List => list_people(c, out).await,
    }
}

pub async fn group(cmd: GroupCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        GroupCmd::Put {
            name,
            members,
            backups,
            description,
            department,
            regions,
            compliance,
        } => {
            let body = json!({"members": members, "backups": backups, "description": description,
                "department": department, "regions": regions, "compliance": compliance});
            put_group(c, out, &name, body).await
        }
        GroupCmd::List => list_groups(c, out).await,
    }
}

/// `person create`: prints the personal token when one was created, else the subject.
async fn create_person(c: &Client, out: Output, body: serde_json::Value) -> CliResult<()> {
    let (_, v) = c.post("/api/v1/people", body, None).await?;
    if out.is_json() {
        print_json(&v);
    } else if let Some(t) = v["token"].as_str() {
        println!("{t}");
    } else {
        println!("{}", field_text(&v["person"], "subject"));
    }
    Ok(())
}

async fn list_people(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/people").await?;
    print_rows(&v, out, &["subject", "name", "email"]);
    Ok(())
}

async fn put_group(c: &Client, out: Output, name: &str, body: serde_json::Value) -> CliResult<()> {
    let (_, v) = c
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/groups/{}", path_segment(name)),
            &[],
            Some(Body::Json(body)),
            None,
        )
        .await?;
    print_rows(&v, out, &["name", "members", "backups"]);
    Ok(())
}

async fn list_groups(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/groups").await?;
    let cols = ["name", "members", "backups", "department", "regions"];
    print_rows(&v, out, &cols);
    Ok(())
}
