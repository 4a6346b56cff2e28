//! `shipgate policy …`: push, diff, history and show the approval policy.
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use crate::client::{Body, CliError, CliResult, Client};
use crate::exit;
use crate::output::{Output, field_text, print_json, short, table};

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Push a policy file as the new version.
    Push { file: PathBuf },
    /// Show how a file differs from the policy in force.
    Diff { file: PathBuf },
    /// Every version, newest first.
    History,
    /// The policy in force.
    Show,
}

pub async fn run(cmd: PolicyCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        PolicyCmd::Push { file } => push(c, out, &file).await,
        PolicyCmd::Diff { file } => diff(c, out, &file).await,
        PolicyCmd::History => history(c, out).await,
        PolicyCmd::Show => show(c, out).await,
    }
}

fn cannot_read(file: &Path, e: std::io::Error) -> CliError {
    CliError::new(
        exit::FAILURE,
        format!("cannot read {}: {e}", file.display()),
    )
}

async fn push(c: &Client, out: Output, file: &Path) -> CliResult<()> {
    let text = std::fs::read(file).map_err(|e| cannot_read(file, e))?;
    let (status, v) = c
        .send(
            reqwest::Method::PUT,
            "/api/v1/policy",
            &[],
            Some(Body::Raw("application/toml".into(), text)),
            None,
        )
        .await?;
    if out.is_json() {
        print_json(&v);
    } else if status.as_u16() == 201 {
        println!(
            "policy version {} ({})",
            field_text(&v, "version"),
            short(&field_text(&v, "hash"), 16)
        );
    } else {
        println!(
            "unchanged: version {} is already this file",
            field_text(&v, "version")
        );
    }
    Ok(())
}

/// `policy diff`: a unified diff from the policy in force (none yet: empty) to the file.
async fn diff(c: &Client, out: Output, file: &Path) -> CliResult<()> {
    let new = std::fs::read_to_string(file).map_err(|e| cannot_read(file, e))?;
    let old = match c.get("/api/v1/policy").await {
        Ok(v) => field_text(&v, "text"),
        Err(e) if e.code == exit::NOT_FOUND => String::new(),
        Err(e) => return Err(e),
    };
    let diff = similar::TextDiff::from_lines(&old, &new);
    let text = diff
        .unified_diff()
        .header("policy in force", &file.display().to_string())
        .to_string();
    if out.is_json() {
        print_json(&json!({"changed": old != new, "diff": text}));
    } else if old == new {
        println!("no difference");
    } else {
        print!("{text}");
    }
    Ok(())
}

async fn history(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/policy/history").await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    let mut t = table(&["version", "hash", "pushed_by", "pushed_at"]);
    for p in v.as_array().cloned().unwrap_or_default() {
        t.add_row(vec![
            field_text(&p, "version"),
            short(&field_text(&p, "hash"), 16),
            field_text(&p, "pushed_by"),
            field_text(&p, "pushed_at"),
        ]);
    }
    println!("{t}");
    Ok(())
}

async fn show(c: &Client, out: Output) -> CliResult<()> {
    let v = c.get("/api/v1/policy").await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    println!(
        "# version {} ({}), pushed by {}",
        field_text(&v, "version"),
        field_text(&v, "hash"),
        field_text(&v, "pushed_by")
    );
    print!("{}", field_text(&v, "text"));
    Ok(())
}
