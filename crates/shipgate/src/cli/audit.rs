//! `shipgate audit …`: verify the hash chain (through the server, or offline against the
//! database), print its head, and show entries.
use clap::Subcommand;
use serde_json::Value;
use shipgate_domain::audit::ChainHead;

use crate::client::{CliError, CliResult, Client};
use crate::exit;
use crate::output::{Output, field_text, print_json, short, table};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Verify the hash chain and every record against it. With --database-url it reads the
    /// database directly (offline); otherwise it asks the server.
    Verify {
        #[arg(long)]
        database_url: Option<String>,
        /// A head saved earlier (`shipgate audit head`), as SEQ:HASH: the chain must still
        /// hold it, so a recomputed or truncated chain is detected.
        #[arg(long, value_parser = parse_expect_head)]
        expect_head: Option<ChainHead>,
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

fn parse_expect_head(s: &str) -> Result<ChainHead, String> {
    shipgate_domain::audit::parse_head(s)
}

pub async fn run(cmd: AuditCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        AuditCmd::Verify { expect_head, .. } => verify(c, out, expect_head).await,
        AuditCmd::Head => head(c, out).await,
        AuditCmd::Log { after, limit } => log(c, out, after, limit).await,
    }
}

/// `audit verify --database-url`: reads the database directly, creating and migrating nothing.
pub async fn verify_offline(
    url: &str,
    expect_head: Option<ChainHead>,
    out: Output,
) -> CliResult<()> {
    let store = shipgate_store::open_existing(url).await.map_err(|e| {
        CliError::new(
            exit::UNAVAILABLE,
            format!("cannot verify {url}: {e} (nothing was created)"),
        )
    })?;
    let report = store
        .verify_audit_against(expect_head)
        .await
        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?;
    report_verify(&serde_json::to_value(&report).unwrap_or_default(), out)
}

async fn verify(c: &Client, out: Output, expect_head: Option<ChainHead>) -> CliResult<()> {
    let params = [(
        "expect_head",
        expect_head.map(|h| format!("{}:{}", h.seq, h.hash)),
    )];
    let r = c.get_query("/api/v1/audit/verify", &params).await?;
    report_verify(&r, out)
}

/// Prints a verification report; a broken chain is a conflict (exit 6).
fn report_verify(r: &Value, out: Output) -> CliResult<()> {
    if out.is_json() {
        print_json(r);
    }
    let ok = r.get("ok").and_then(Value::as_bool).unwrap_or(false);
    if ok {
        if out == Output::Table {
            println!(
                "audit chain intact: {} entries, {} records checked, head {} {}",
                field_text(r, "entries_checked"),
                field_text(r, "records_checked"),
                r.pointer("/head/seq")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                r.pointer("/head/hash")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            );
        }
        return Ok(());
    }
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
            field_text(&b, "seq"),
            field_text(&b, "kind"),
            field_text(&b, "message")
        ),
    ))
}

async fn head(c: &Client, out: Output) -> CliResult<()> {
    let r = c.get("/api/v1/audit/head").await?;
    if out.is_json() {
        print_json(&r);
    } else {
        println!("{}:{}", field_text(&r, "seq"), field_text(&r, "hash"));
    }
    Ok(())
}

async fn log(c: &Client, out: Output, after: i64, limit: u32) -> CliResult<()> {
    let params = [
        ("after", Some(after.to_string())),
        ("limit", Some(limit.to_string())),
    ];
    let v = c.get_query("/api/v1/audit", &params).await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    let mut t = table(&["seq", "at", "actor", "action", "subject", "hash"]);
    for e in v["items"].as_array().cloned().unwrap_or_default() {
        t.add_row(vec![
            field_text(&e, "seq"),
            field_text(&e, "at").chars().take(19).collect(),
            field_text(&e, "actor"),
            field_text(&e, "action"),
            field_text(&e, "subject"),
            short(&field_text(&e, "hash"), 16),
        ]);
    }
    println!("{t}");
    Ok(())
}
