//! Change requests (`shipgate change …`) and the decisions on them: approve, reject, the
//! emergency acknowledgements and the post-deployment review.
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::client::{CliError, CliResult, Client, path_segment};
use crate::exit;
use crate::output::{Output, field_text, print_json, table};

#[derive(Args, Clone)]
pub struct SpecArgs {
    /// standard, normal or emergency.
    #[arg(long = "type")]
    change_type: Option<String>,
    #[arg(long)]
    title: Option<String>,
    #[arg(long = "service")]
    services: Vec<String>,
    #[arg(long = "env")]
    environments: Vec<String>,
    /// Artifact digests (sha256:<hex>) this change deploys.
    #[arg(long = "digest")]
    digests: Vec<String>,
    #[arg(long)]
    justification: Option<String>,
    #[arg(long)]
    impact: Option<String>,
    #[arg(long)]
    rollback_plan: Option<String>,
    #[arg(long)]
    window_start: Option<String>,
    #[arg(long)]
    window_end: Option<String>,
    #[arg(long)]
    ticket: Option<String>,
    #[arg(long)]
    risk: Option<String>,
    #[arg(long)]
    criticality: Option<String>,
    #[arg(long = "compliance")]
    compliance: Vec<String>,
    /// schema_change, security_patch, customer_facing.
    #[arg(long = "flag")]
    flags: Vec<String>,
    #[arg(long = "author")]
    authors: Vec<String>,
    #[arg(long)]
    team: Option<String>,
    #[arg(long)]
    incident: Option<String>,
    #[arg(long)]
    exploit: Option<String>,
    /// A JSON file with the change (flags override its fields).
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AckRole {
    IncidentCommander,
    SystemOwner,
}

#[derive(Subcommand)]
pub enum ChangeCmd {
    /// Open a change request; prints its key (CR-<n>).
    Create(SpecArgs),
    Get {
        key: String,
    },
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Resubmit (a new revision): after a rejection, a request for changes, an expiry or a new
    /// digest. Flags replace the fields they name.
    Resubmit {
        key: String,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Attach evidence: a file (its sha256 is computed here) or a digest.
    Evidence {
        key: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long)]
        digest: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        uri: Option<String>,
    },
    /// Emergency: acknowledge the gate bypass as incident commander or system owner.
    Ack {
        key: String,
        #[arg(long = "as", value_enum)]
        role: AckRole,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Record the post-deployment review.
    Review {
        key: String,
        #[arg(long)]
        comment: String,
    },
    /// The decision timeline: decisions, gate calls, deployments.
    Timeline {
        key: String,
    },
}

#[derive(Args)]
pub struct DecideArgs {
    key: String,
    #[arg(long)]
    comment: Option<String>,
    /// The approver group this approval counts for, when you sit in several.
    #[arg(long)]
    group: Option<String>,
    /// Decide for this person under their delegation to you.
    #[arg(long)]
    on_behalf_of: Option<String>,
}

pub async fn run(cmd: ChangeCmd, c: &Client, out: Output) -> CliResult<()> {
    match cmd {
        ChangeCmd::Create(a) => create(c, out, &a).await,
        ChangeCmd::Get { key } => get(c, out, &key).await,
        ChangeCmd::List { status } => list(c, out, status).await,
        ChangeCmd::Resubmit { key, spec } => resubmit(c, out, &key, &spec).await,
        ChangeCmd::Evidence {
            key,
            kind,
            file,
            digest,
            name,
            uri,
        } => {
            let digest = evidence_digest(file.as_deref(), digest)?;
            let name = name.or_else(|| {
                file.as_ref()
                    .and_then(|f| f.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            });
            let body = json!({"kind": kind, "digest": digest, "name": name, "uri": uri});
            evidence(c, out, &key, body).await
        }
        ChangeCmd::Ack { key, role, comment } => ack(c, out, &key, role, comment).await,
        ChangeCmd::Review { key, comment } => review(c, out, &key, comment).await,
        ChangeCmd::Timeline { key } => timeline(c, out, &key).await,
    }
}

fn read_error(f: &Path, e: std::io::Error) -> CliError {
    CliError::new(exit::FAILURE, format!("cannot read {}: {e}", f.display()))
}

/// The change as a JSON body: the `--file` (or `base`), with the flags given laid over it.
fn spec_body(a: &SpecArgs, base: Option<Value>) -> CliResult<Value> {
    let mut body = match (&a.file, base) {
        (Some(f), _) => {
            let text = std::fs::read_to_string(f).map_err(|e| read_error(f, e))?;
            serde_json::from_str(&text)
                .map_err(|e| CliError::validation(format!("{}: {e}", f.display())))?
        }
        (None, Some(b)) => b,
        (None, None) => json!({}),
    };
    let m = body
        .as_object_mut()
        .ok_or_else(|| CliError::validation("the change must be a JSON object"))?;
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| json!(v));
    set("type", a.change_type.clone().map(Value::String));
    set("title", a.title.clone().map(Value::String));
    set("services", list(&a.services));
    set("environments", list(&a.environments));
    set("artifact_digests", list(&a.digests));
    set("justification", a.justification.clone().map(Value::String));
    set("impact", a.impact.clone().map(Value::String));
    set("rollback_plan", a.rollback_plan.clone().map(Value::String));
    set("window_start", a.window_start.clone().map(Value::String));
    set("window_end", a.window_end.clone().map(Value::String));
    set("ticket", a.ticket.clone().map(Value::String));
    set("risk", a.risk.clone().map(Value::String));
    set("criticality", a.criticality.clone().map(Value::String));
    set("compliance", list(&a.compliance));
    set("artifact_flags", list(&a.flags));
    set("authors", list(&a.authors));
    set("team", a.team.clone().map(Value::String));
    set("incident_id", a.incident.clone().map(Value::String));
    set("exploit_ref", a.exploit.clone().map(Value::String));
    Ok(body)
}

/// The submission fields of a stored change, for a resubmission that changes a few of them.
fn spec_of(change: &Value) -> Value {
    let keys = [
        "type",
        "title",
        "justification",
        "impact",
        "rollback_plan",
        "window_start",
        "window_end",
        "services",
        "artifact_digests",
        "ticket",
        "risk",
        "criticality",
        "compliance",
        "artifact_flags",
        "authors",
        "team",
        "incident_id",
        "exploit_ref",
    ];
    let mut m = serde_json::Map::new();
    for k in keys {
        if let Some(v) = change.get(k).filter(|v| !v.is_null()) {
            m.insert(k.to_owned(), v.clone());
        }
    }
    let envs: Vec<Value> = change["environments"]
        .as_array()
        .map(|a| a.iter().map(|e| e["raw"].clone()).collect())
        .unwrap_or_default();
    m.insert("environments".into(), Value::Array(envs));
    Value::Object(m)
}

fn print_change(v: &Value, out: Output) {
    if out.is_json() {
        print_json(v);
        return;
    }
    println!(
        "{}  {}  [{}] {}",
        field_text(v, "key"),
        field_text(v, "type"),
        field_text(v, "status"),
        field_text(v, "title")
    );
    println!(
        "  requester {}  revision {}  rework {}",
        field_text(v, "requester"),
        field_text(v, "revision"),
        field_text(v, "rework_count")
    );
    let envs: Vec<String> = v["environments"]
        .as_array()
        .map(|a| a.iter().map(|e| field_text(e, "name")).collect())
        .unwrap_or_default();
    println!(
        "  environments {}  services {}",
        envs.join(", "),
        v["services"]
    );
    for d in v["decisions"].as_array().cloned().unwrap_or_default() {
        println!(
            "  - {} {} by {}{}{}",
            field_text(&d, "at").chars().take(19).collect::<String>(),
            field_text(&d, "kind"),
            field_text(&d, "actor"),
            if d["self_approval"] == true {
                " (self-approval, small-team mode)"
            } else {
                ""
            },
            d.get("comment")
                .and_then(Value::as_str)
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        );
    }
}

/// Posts a decision on the revision of the change as it stands now (fetched first), so that a
/// decision never lands on a revision resubmitted after it was read.
async fn decide(c: &Client, out: Output, key: &str, mut body: Value) -> CliResult<()> {
    let current = c
        .get(&format!("/api/v1/changes/{}", path_segment(key)))
        .await?;
    if let (Some(obj), Some(r)) = (body.as_object_mut(), current.get("revision")) {
        obj.insert("revision".into(), r.clone());
    }
    let (_, v) = c
        .post(
            &format!("/api/v1/changes/{}/decisions", path_segment(key)),
            body,
            None,
        )
        .await?;
    print_change(&v, out);
    Ok(())
}

/// `change create`: prints the new key (CR-<n>).
async fn create(c: &Client, out: Output, a: &SpecArgs) -> CliResult<()> {
    let (_, v) = c.post("/api/v1/changes", spec_body(a, None)?, None).await?;
    if out.is_json() {
        print_json(&v);
    } else {
        println!("{}", field_text(&v, "key"));
    }
    Ok(())
}

async fn get(c: &Client, out: Output, key: &str) -> CliResult<()> {
    let v = c
        .get(&format!("/api/v1/changes/{}", path_segment(key)))
        .await?;
    print_change(&v, out);
    Ok(())
}

async fn list(c: &Client, out: Output, status: Option<String>) -> CliResult<()> {
    let v = c
        .get_query("/api/v1/changes", &[("status", status)])
        .await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    let mut t = table(&["key", "type", "status", "title", "requester", "revision"]);
    for x in v.as_array().cloned().unwrap_or_default() {
        t.add_row(vec![
            field_text(&x, "key"),
            field_text(&x, "type"),
            field_text(&x, "status"),
            field_text(&x, "title"),
            field_text(&x, "requester"),
            field_text(&x, "revision"),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `change resubmit`: the stored change, with the flags given replacing the fields they name.
async fn resubmit(c: &Client, out: Output, key: &str, spec: &SpecArgs) -> CliResult<()> {
    let cur = c
        .get(&format!("/api/v1/changes/{}", path_segment(key)))
        .await?;
    let body = spec_body(spec, Some(spec_of(&cur)))?;
    let (_, v) = c
        .post(
            &format!("/api/v1/changes/{}/resubmit", path_segment(key)),
            body,
            None,
        )
        .await?;
    print_change(&v, out);
    Ok(())
}

/// The digest of the evidence: the sha256 of `--file`, computed here, or `--digest`.
fn evidence_digest(file: Option<&Path>, digest: Option<String>) -> CliResult<String> {
    match (file, digest) {
        (Some(f), _) => {
            let bytes = std::fs::read(f).map_err(|e| read_error(f, e))?;
            Ok(format!("sha256:{}", hex::encode(Sha256::digest(&bytes))))
        }
        (None, Some(d)) => Ok(d),
        (None, None) => Err(CliError::validation("pass --file or --digest")),
    }
}

async fn evidence(c: &Client, out: Output, key: &str, body: Value) -> CliResult<()> {
    let (_, v) = c
        .post(
            &format!("/api/v1/changes/{}/evidence", path_segment(key)),
            body,
            None,
        )
        .await?;
    print_change(&v, out);
    Ok(())
}

/// `change ack`: the emergency bypass acknowledged as incident commander or system owner.
async fn ack(
    c: &Client,
    out: Output,
    key: &str,
    role: AckRole,
    comment: Option<String>,
) -> CliResult<()> {
    let decision = match role {
        AckRole::IncidentCommander => "ack_incident_commander",
        AckRole::SystemOwner => "ack_system_owner",
    };
    decide(
        c,
        out,
        key,
        json!({"decision": decision, "comment": comment}),
    )
    .await
}

/// `change review`: the post-deployment review.
async fn review(c: &Client, out: Output, key: &str, comment: String) -> CliResult<()> {
    decide(
        c,
        out,
        key,
        json!({"decision": "review", "comment": comment}),
    )
    .await
}

async fn timeline(c: &Client, out: Output, key: &str) -> CliResult<()> {
    let v = c
        .get(&format!("/api/v1/changes/{}/timeline", path_segment(key)))
        .await?;
    if out.is_json() {
        print_json(&v);
        return Ok(());
    }
    let mut t = table(&["at", "source", "what", "actor"]);
    for i in v.as_array().cloned().unwrap_or_default() {
        t.add_row(vec![
            field_text(&i, "at").chars().take(23).collect(),
            field_text(&i, "source"),
            field_text(&i, "what"),
            field_text(&i, "actor"),
        ]);
    }
    println!("{t}");
    Ok(())
}

/// `shipgate approve`.
pub async fn approve(c: &Client, out: Output, a: &DecideArgs) -> CliResult<()> {
    decide(
        c,
        out,
        &a.key,
        json!({"decision": "approve", "comment": a.comment, "group": a.group, "on_behalf_of": a.on_behalf_of}),
    )
    .await
}

/// `shipgate reject`, or with `--request-changes` a request for changes.
pub async fn reject(
    c: &Client,
    out: Output,
    a: &DecideArgs,
    request_changes: bool,
) -> CliResult<()> {
    let decision = if request_changes {
        "request_changes"
    } else {
        "reject"
    };
    decide(
        c,
        out,
        &a.key,
        json!({"decision": decision, "comment": a.comment, "group": a.group, "on_behalf_of": a.on_behalf_of}),
    )
    .await
}
