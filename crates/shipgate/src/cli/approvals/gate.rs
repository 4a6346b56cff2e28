//! Pipeline gates: `gate wait` blocks until the deployment is allowed, `gate check` asks once,
//! `gate explain` says what would gate a change and why.
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::{CliError, CliResult, Client, path_segment};
use crate::exit;
use crate::output::{Output, field_text, print_json};

#[derive(Args)]
pub struct GateArgs {
    #[arg(long, env = "SHIPGATE_CHANGE")]
    change: String,
    #[arg(long = "env")]
    environment: String,
    /// `sha256:<hex>` of the artifact about to be deployed (required when the change names
    /// digests). The deployer is always the identity of SHIPGATE_TOKEN.
    #[arg(long)]
    digest: Option<String>,
}

#[derive(Subcommand)]
pub enum GateCmd {
    /// Block until the deployment is allowed (exit 0) or cannot be (non-zero, with reasons).
    Wait {
        #[command(flatten)]
        args: GateArgs,
        /// Give up after this long (30m, 1h).
        #[arg(long, default_value = "30m")]
        timeout: String,
    },
    /// Ask once, without waiting.
    Check {
        #[command(flatten)]
        args: GateArgs,
    },
    /// What would gate this change right now, and why.
    Explain {
        #[arg(long)]
        change: String,
    },
}

pub async fn run(cmd: GateCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        GateCmd::Wait { args, timeout } => wait(c, out, &args, &timeout).await,
        GateCmd::Check { args } => check(c, out, &args).await,
        GateCmd::Explain { change } => explain(c, out, &change).await,
    }
}

fn print_decision(d: &Value) {
    eprintln!(
        "gate: {} for {} in {}",
        field_text(d, "state"),
        field_text(d, "change"),
        field_text(d, "environment")
    );
    for r in d["reasons"].as_array().cloned().unwrap_or_default() {
        eprintln!(
            "  - {}: {}",
            field_text(&r, "code"),
            field_text(&r, "message")
        );
    }
    for g in d["approvals"].as_array().cloned().unwrap_or_default() {
        eprintln!(
            "  group {}: {}/{} approved by [{}]",
            field_text(&g, "group"),
            g["approved_by"].as_array().map_or(0, Vec::len),
            field_text(&g, "quorum"),
            g["approved_by"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
    }
    if let Some(e) = d.get("expires_at").and_then(Value::as_str) {
        eprintln!("  valid until {e}");
    }
}

fn gate_result(d: &Value, out: Output) -> CliResult<()> {
    if out.is_json() {
        print_json(d);
    }
    print_decision(d);
    let code = match d["state"].as_str() {
        Some("allowed") => return Ok(()),
        Some("pending") => exit::GATE_PENDING,
        Some("denied") | Some("expired") => exit::GATE_DENIED,
        _ => exit::UNAVAILABLE,
    };
    let reasons: Vec<String> = d["reasons"]
        .as_array()
        .map(|a| a.iter().map(|r| field_text(r, "code")).collect())
        .unwrap_or_default();
    Err(CliError::new(
        code,
        format!(
            "deployment not allowed: {} ({})",
            field_text(d, "state"),
            reasons.join(", ")
        ),
    ))
}

/// Asks the gate once; with `wait`, the server holds the request up to that long for a decision.
async fn ask_gate(c: &Client, a: &GateArgs, wait: Option<Duration>) -> CliResult<Value> {
    let params = [
        ("change", Some(a.change.clone())),
        ("environment", Some(a.environment.clone())),
        ("digest", a.digest.clone()),
        ("wait", wait.map(|w| format!("{}s", w.as_secs().max(1)))),
    ];
    c.get_query("/api/v1/gate", &params).await
}

async fn check(c: &Client, out: Output, args: &GateArgs) -> CliResult<()> {
    let d = ask_gate(c, args, None).await?;
    gate_result(&d, out)
}

/// Asks the gate, each time holding the request up to a minute, until it is no longer pending or
/// the timeout passes.
async fn wait(c: &Client, out: Output, args: &GateArgs, timeout: &str) -> CliResult<()> {
    let timeout = humantime::parse_duration(timeout).map_err(|_| {
        CliError::validation(format!("--timeout '{timeout}': use a duration like 30m"))
    })?;
    let deadline = Instant::now()
        .checked_add(timeout)
        .ok_or_else(|| CliError::validation(format!("--timeout '{timeout:?}' is too long")))?;
    let mut announced = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.min(Duration::from_secs(60));
        let d = ask_gate(c, args, Some(wait)).await?;
        if d["state"] != "pending" || Instant::now() >= deadline {
            return gate_result(&d, out);
        }
        if !announced {
            // Progress for people watching the pipeline log.
            print_decision(&d);
            eprintln!(
                "waiting up to {} for a decision...",
                humantime::format_duration(Duration::from_secs(timeout.as_secs()))
            );
            announced = true;
        }
    }
}

async fn explain(c: &Client, out: Output, change: &str) -> CliResult<()> {
    let v = c
        .get(&format!("/api/v1/changes/{}/explain", path_segment(change)))
        .await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    println!(
        "{} [{}] policy version {}",
        field_text(&v, "change"),
        field_text(&v, "status"),
        field_text(&v, "policy_version")
    );
    for e in v["environments"].as_array().cloned().unwrap_or_default() {
        print_explained(&e);
    }
    Ok(())
}

/// One environment of `gate explain`: the decision, the rules, what they require, and why.
fn print_explained(e: &Value) {
    let d = &e["decision"];
    println!(
        "\n{}: {}",
        field_text(d, "environment"),
        field_text(d, "state")
    );
    println!("  rules: {}", d["rules"]);
    if let Some(r) = e.get("requirements").filter(|r| !r.is_null()) {
        println!(
            "  evidence required: {}  validity {}s  sla {}s",
            r["evidence"],
            field_text(r, "validity"),
            field_text(r, "sla")
        );
    }
    for g in d["approvals"].as_array().cloned().unwrap_or_default() {
        println!(
            "  group {} needs {}: approved by {} ; eligible {}",
            field_text(&g, "group"),
            field_text(&g, "quorum"),
            g["approved_by"],
            g["eligible"]
        );
    }
    for r in d["reasons"].as_array().cloned().unwrap_or_default() {
        println!(
            "  - {}: {}",
            field_text(&r, "code"),
            field_text(&r, "message")
        );
    }
    if let Some(x) = d.get("expires_at").and_then(Value::as_str) {
        println!("  expires {x}");
    }
}
