//! CLI for approvals and gates: people, groups, the policy, change requests, decisions, the
//! approval queue and `gate wait`.
//!
//! `shipgate gate wait` exits 0 only when the deployment is allowed; otherwise 8 when still
//! pending at the timeout, 9 when denied or expired, 7 when shipgate cannot decide.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cli::{print_json, s, short, table};
use crate::client::{Body, CliError, CliResult, Client, exit, query};

/// Exit statuses of `gate wait` / `gate check`.
pub mod gate_exit {
    pub const PENDING: i32 = 8;
    pub const DENIED: i32 = 9;
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ApprovalCommand {
    /// People who can approve (admin).
    #[command(subcommand)]
    Person(PersonCmd),
    /// Approver groups (admin).
    #[command(subcommand)]
    Group(GroupCmd),
    /// The approval policy: push, diff, history, show.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Change requests.
    #[command(subcommand)]
    Change(ChangeCmd),
    /// Your approval queue (`--all`: every pending change and who is blocking it).
    Approvals {
        #[arg(long)]
        all: bool,
    },
    /// Approve a change.
    Approve(DecideArgs),
    /// Reject a change (final until resubmitted), or ask for changes with --request-changes.
    Reject {
        #[command(flatten)]
        args: DecideArgs,
        #[arg(long)]
        request_changes: bool,
    },
    /// Pipeline gates.
    #[command(subcommand)]
    Gate(GateCmd),
    /// Post-deployment reviews due, and root-cause reviews.
    Reviews,
    /// Delegations of approval authority while you are away.
    #[command(subcommand)]
    Delegation(DelegationCmd),
    /// Access reviews: who holds which privileges; attest or revoke each.
    #[command(subcommand)]
    Access(AccessCmd),
}

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

fn bad(msg: impl Into<String>) -> CliError {
    CliError::new(exit::VALIDATION, msg)
}

fn spec_body(a: &SpecArgs, base: Option<Value>) -> CliResult<Value> {
    let mut body = match (&a.file, base) {
        (Some(f), _) => {
            let text = std::fs::read_to_string(f).map_err(|e| {
                CliError::new(exit::FAILURE, format!("cannot read {}: {e}", f.display()))
            })?;
            serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", f.display())))?
        }
        (None, Some(b)) => b,
        (None, None) => json!({}),
    };
    let m = body
        .as_object_mut()
        .ok_or_else(|| bad("the change must be a JSON object"))?;
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

fn print_change(v: &Value, json_out: bool) {
    if json_out {
        print_json(v);
        return;
    }
    println!(
        "{}  {}  [{}] {}",
        s(v, "key"),
        s(v, "type"),
        s(v, "status"),
        s(v, "title")
    );
    println!(
        "  requester {}  revision {}  rework {}",
        s(v, "requester"),
        s(v, "revision"),
        s(v, "rework_count")
    );
    let envs: Vec<String> = v["environments"]
        .as_array()
        .map(|a| a.iter().map(|e| s(e, "name")).collect())
        .unwrap_or_default();
    println!(
        "  environments {}  services {}",
        envs.join(", "),
        v["services"]
    );
    for d in v["decisions"].as_array().cloned().unwrap_or_default() {
        println!(
            "  - {} {} by {}{}{}",
            s(&d, "at").chars().take(19).collect::<String>(),
            s(&d, "kind"),
            s(&d, "actor"),
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

fn print_decision(d: &Value) {
    eprintln!(
        "gate: {} for {} in {}",
        s(d, "state"),
        s(d, "change"),
        s(d, "environment")
    );
    for r in d["reasons"].as_array().cloned().unwrap_or_default() {
        eprintln!("  - {}: {}", s(&r, "code"), s(&r, "message"));
    }
    for g in d["approvals"].as_array().cloned().unwrap_or_default() {
        eprintln!(
            "  group {}: {}/{} approved by [{}]",
            s(&g, "group"),
            g["approved_by"].as_array().map_or(0, Vec::len),
            s(&g, "quorum"),
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

fn gate_result(d: &Value, json_out: bool) -> CliResult<()> {
    if json_out {
        print_json(d);
    }
    print_decision(d);
    let code = match d["state"].as_str() {
        Some("allowed") => return Ok(()),
        Some("pending") => gate_exit::PENDING,
        Some("denied") | Some("expired") => gate_exit::DENIED,
        _ => exit::UNAVAILABLE,
    };
    let reasons: Vec<String> = d["reasons"]
        .as_array()
        .map(|a| a.iter().map(|r| s(r, "code")).collect())
        .unwrap_or_default();
    Err(CliError::new(
        code,
        format!(
            "deployment not allowed: {} ({})",
            s(d, "state"),
            reasons.join(", ")
        ),
    ))
}

fn gate_path(a: &GateArgs, wait: Option<Duration>) -> String {
    format!(
        "/api/v1/gate{}",
        query(&[
            ("change", Some(a.change.clone())),
            ("environment", Some(a.environment.clone())),
            ("digest", a.digest.clone()),
            ("wait", wait.map(|w| format!("{}s", w.as_secs().max(1)))),
        ])
    )
}

/// Posts a decision on the revision of the change as it stands now (fetched first), so that a
/// decision never lands on a revision resubmitted after it was read.
async fn decide(c: &Client, key: &str, mut body: Value, json_out: bool) -> CliResult<()> {
    let current = c
        .get(&format!("/api/v1/changes/{}", query_path(key)))
        .await?;
    if let (Some(obj), Some(r)) = (body.as_object_mut(), current.get("revision")) {
        obj.insert("revision".into(), r.clone());
    }
    let (_, v) = c
        .post(
            &format!("/api/v1/changes/{}/decisions", query_path(key)),
            body,
            None,
        )
        .await?;
    print_change(&v, json_out);
    Ok(())
}

fn query_path(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

pub async fn run(cmd: &ApprovalCommand, c: &Client, json_out: bool) -> CliResult<()> {
    match cmd {
        ApprovalCommand::Person(PersonCmd::Create {
            subject,
            name,
            email,
            token_role,
        }) => {
            let (_, v) = c
                .post(
                    "/api/v1/people",
                    json!({"subject": subject, "name": name, "email": email, "token_role": token_role}),
                    None,
                )
                .await?;
            if json_out {
                print_json(&v);
            } else if let Some(t) = v["token"].as_str() {
                println!("{t}");
            } else {
                println!("{}", s(&v["person"], "subject"));
            }
        }
        ApprovalCommand::Person(PersonCmd::List) => {
            let v = c.get("/api/v1/people").await?;
            list_out(&v, json_out, &["subject", "name", "email"]);
        }
        ApprovalCommand::Group(GroupCmd::Put {
            name,
            members,
            backups,
            description,
            department,
            regions,
            compliance,
        }) => {
            let (_, v) = c
                .send(
                    reqwest::Method::PUT,
                    &format!("/api/v1/groups/{}", query_path(name)),
                    Some(Body::Json(
                        json!({"members": members, "backups": backups, "description": description,
                        "department": department, "regions": regions, "compliance": compliance}),
                    )),
                    None,
                )
                .await?;
            list_out(&v, json_out, &["name", "members", "backups"]);
        }
        ApprovalCommand::Group(GroupCmd::List) => {
            let v = c.get("/api/v1/groups").await?;
            list_out(
                &v,
                json_out,
                &["name", "members", "backups", "department", "regions"],
            );
        }
        ApprovalCommand::Policy(PolicyCmd::Push { file }) => {
            let text = std::fs::read(file).map_err(|e| {
                CliError::new(
                    exit::FAILURE,
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            let (status, v) = c
                .send(
                    reqwest::Method::PUT,
                    "/api/v1/policy",
                    Some(Body::Raw("application/toml".into(), text)),
                    None,
                )
                .await?;
            if json_out {
                print_json(&v);
            } else if status.as_u16() == 201 {
                println!(
                    "policy version {} ({})",
                    s(&v, "version"),
                    short(&s(&v, "hash"), 16)
                );
            } else {
                println!(
                    "unchanged: version {} is already this file",
                    s(&v, "version")
                );
            }
        }
        ApprovalCommand::Policy(PolicyCmd::Diff { file }) => {
            let new = std::fs::read_to_string(file).map_err(|e| {
                CliError::new(
                    exit::FAILURE,
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            let old = match c.get("/api/v1/policy").await {
                Ok(v) => s(&v, "text"),
                Err(e) if e.code == exit::NOT_FOUND => String::new(),
                Err(e) => return Err(e),
            };
            let diff = similar::TextDiff::from_lines(&old, &new);
            let text = diff
                .unified_diff()
                .header("policy in force", &file.display().to_string())
                .to_string();
            if json_out {
                print_json(&json!({"changed": old != new, "diff": text}));
            } else if old == new {
                println!("no difference");
            } else {
                print!("{text}");
            }
        }
        ApprovalCommand::Policy(PolicyCmd::History) => {
            let v = c.get("/api/v1/policy/history").await?;
            if json_out {
                print_json(&v);
            } else {
                let mut t = table(&["version", "hash", "pushed_by", "pushed_at"]);
                for p in v.as_array().cloned().unwrap_or_default() {
                    t.add_row(vec![
                        s(&p, "version"),
                        short(&s(&p, "hash"), 16),
                        s(&p, "pushed_by"),
                        s(&p, "pushed_at"),
                    ]);
                }
                println!("{t}");
            }
        }
        ApprovalCommand::Policy(PolicyCmd::Show) => {
            let v = c.get("/api/v1/policy").await?;
            if json_out {
                print_json(&v);
            } else {
                println!(
                    "# version {} ({}), pushed by {}",
                    s(&v, "version"),
                    s(&v, "hash"),
                    s(&v, "pushed_by")
                );
                print!("{}", s(&v, "text"));
            }
        }
        ApprovalCommand::Change(ChangeCmd::Create(a)) => {
            let (_, v) = c.post("/api/v1/changes", spec_body(a, None)?, None).await?;
            if json_out {
                print_json(&v);
            } else {
                println!("{}", s(&v, "key"));
            }
        }
        ApprovalCommand::Change(ChangeCmd::Get { key }) => {
            let v = c
                .get(&format!("/api/v1/changes/{}", query_path(key)))
                .await?;
            print_change(&v, json_out);
        }
        ApprovalCommand::Change(ChangeCmd::List { status }) => {
            let v = c
                .get(&format!(
                    "/api/v1/changes{}",
                    query(&[("status", status.clone())])
                ))
                .await?;
            if json_out {
                print_json(&v);
            } else {
                let mut t = table(&["key", "type", "status", "title", "requester", "revision"]);
                for x in v.as_array().cloned().unwrap_or_default() {
                    t.add_row(vec![
                        s(&x, "key"),
                        s(&x, "type"),
                        s(&x, "status"),
                        s(&x, "title"),
                        s(&x, "requester"),
                        s(&x, "revision"),
                    ]);
                }
                println!("{t}");
            }
        }
        ApprovalCommand::Change(ChangeCmd::Resubmit { key, spec }) => {
            let cur = c
                .get(&format!("/api/v1/changes/{}", query_path(key)))
                .await?;
            let body = spec_body(spec, Some(spec_of(&cur)))?;
            let (_, v) = c
                .post(
                    &format!("/api/v1/changes/{}/resubmit", query_path(key)),
                    body,
                    None,
                )
                .await?;
            print_change(&v, json_out);
        }
        ApprovalCommand::Change(ChangeCmd::Evidence {
            key,
            kind,
            file,
            digest,
            name,
            uri,
        }) => {
            let digest = match (file, digest) {
                (Some(f), _) => {
                    let bytes = std::fs::read(f).map_err(|e| {
                        CliError::new(exit::FAILURE, format!("cannot read {}: {e}", f.display()))
                    })?;
                    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
                }
                (None, Some(d)) => d.clone(),
                (None, None) => return Err(bad("pass --file or --digest")),
            };
            let name = name.clone().or_else(|| {
                file.as_ref()
                    .and_then(|f| f.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            });
            let (_, v) = c
                .post(
                    &format!("/api/v1/changes/{}/evidence", query_path(key)),
                    json!({"kind": kind, "digest": digest, "name": name, "uri": uri}),
                    None,
                )
                .await?;
            print_change(&v, json_out);
        }
        ApprovalCommand::Change(ChangeCmd::Ack { key, role, comment }) => {
            let decision = match role {
                AckRole::IncidentCommander => "ack_incident_commander",
                AckRole::SystemOwner => "ack_system_owner",
            };
            decide(
                c,
                key,
                json!({"decision": decision, "comment": comment}),
                json_out,
            )
            .await?;
        }
        ApprovalCommand::Change(ChangeCmd::Review { key, comment }) => {
            decide(
                c,
                key,
                json!({"decision": "review", "comment": comment}),
                json_out,
            )
            .await?;
        }
        ApprovalCommand::Change(ChangeCmd::Timeline { key }) => {
            let v = c
                .get(&format!("/api/v1/changes/{}/timeline", query_path(key)))
                .await?;
            if json_out {
                print_json(&v);
            } else {
                let mut t = table(&["at", "source", "what", "actor"]);
                for i in v.as_array().cloned().unwrap_or_default() {
                    t.add_row(vec![
                        s(&i, "at").chars().take(23).collect(),
                        s(&i, "source"),
                        s(&i, "what"),
                        s(&i, "actor"),
                    ]);
                }
                println!("{t}");
            }
        }
        ApprovalCommand::Approvals { all } => {
            let v = c
                .get(&format!(
                    "/api/v1/approvals{}",
                    query(&[("all", all.then(|| "true".to_owned()))])
                ))
                .await?;
            if json_out {
                print_json(&v);
            } else {
                let mut t = table(&["change", "title", "requester", "waiting", "sla", "blocking"]);
                for i in v.as_array().cloned().unwrap_or_default() {
                    let blocking: Vec<String> = i["blocking"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|b| {
                                    format!(
                                        "{}: {} of {} ({})",
                                        s(b, "group"),
                                        b["approved_by"].as_array().map_or(0, Vec::len),
                                        s(b, "quorum"),
                                        s(b, "environment")
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let waiting = i["waiting_secs"].as_i64().unwrap_or(0);
                    t.add_row(vec![
                        s(&i, "change"),
                        s(&i, "title"),
                        s(&i, "requester"),
                        format!("{}m", waiting / 60),
                        if i["sla_breached"] == true {
                            "BREACHED".into()
                        } else {
                            format!("{}m", i["sla_secs"].as_u64().unwrap_or(0) / 60)
                        },
                        blocking.join("; "),
                    ]);
                }
                println!("{t}");
            }
        }
        ApprovalCommand::Approve(a) => {
            decide(
                c,
                &a.key,
                json!({"decision": "approve", "comment": a.comment, "group": a.group, "on_behalf_of": a.on_behalf_of}),
                json_out,
            )
            .await?;
        }
        ApprovalCommand::Reject {
            args,
            request_changes,
        } => {
            let decision = if *request_changes {
                "request_changes"
            } else {
                "reject"
            };
            decide(
                c,
                &args.key,
                json!({"decision": decision, "comment": args.comment, "group": args.group, "on_behalf_of": args.on_behalf_of}),
                json_out,
            )
            .await?;
        }
        ApprovalCommand::Gate(GateCmd::Check { args }) => {
            let d = c.get(&gate_path(args, None)).await?;
            return gate_result(&d, json_out);
        }
        ApprovalCommand::Gate(GateCmd::Wait { args, timeout }) => {
            let timeout = humantime::parse_duration(timeout)
                .map_err(|_| bad(format!("--timeout '{timeout}': use a duration like 30m")))?;
            let deadline = Instant::now()
                .checked_add(timeout)
                .ok_or_else(|| bad(format!("--timeout '{timeout:?}' is too long")))?;
            let mut announced = false;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let wait = left.min(Duration::from_secs(60));
                let d = c.get(&gate_path(args, Some(wait))).await?;
                if d["state"] != "pending" || Instant::now() >= deadline {
                    return gate_result(&d, json_out);
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
        ApprovalCommand::Gate(GateCmd::Explain { change }) => {
            let v = c
                .get(&format!("/api/v1/changes/{}/explain", query_path(change)))
                .await?;
            if json_out {
                print_json(&v);
            } else {
                println!(
                    "{} [{}] policy version {}",
                    s(&v, "change"),
                    s(&v, "status"),
                    s(&v, "policy_version")
                );
                for e in v["environments"].as_array().cloned().unwrap_or_default() {
                    let d = &e["decision"];
                    println!("\n{}: {}", s(d, "environment"), s(d, "state"));
                    println!("  rules: {}", d["rules"]);
                    if let Some(r) = e.get("requirements").filter(|r| !r.is_null()) {
                        println!(
                            "  evidence required: {}  validity {}s  sla {}s",
                            r["evidence"],
                            s(r, "validity"),
                            s(r, "sla")
                        );
                    }
                    for g in d["approvals"].as_array().cloned().unwrap_or_default() {
                        println!(
                            "  group {} needs {}: approved by {} ; eligible {}",
                            s(&g, "group"),
                            s(&g, "quorum"),
                            g["approved_by"],
                            g["eligible"]
                        );
                    }
                    for r in d["reasons"].as_array().cloned().unwrap_or_default() {
                        println!("  - {}: {}", s(&r, "code"), s(&r, "message"));
                    }
                    if let Some(x) = d.get("expires_at").and_then(Value::as_str) {
                        println!("  expires {x}");
                    }
                }
            }
        }
        ApprovalCommand::Delegation(DelegationCmd::Create {
            to,
            from,
            group,
            starts_at,
            until,
            reason,
        }) => {
            let mut body = json!({"to": to, "from": from, "group": group, "starts_at": starts_at, "ends_at": until, "reason": reason});
            if let Value::Object(m) = &mut body {
                m.retain(|_, v| !v.is_null());
            }
            let (_, v) = c.post("/api/v1/delegations", body, None).await?;
            if json_out {
                print_json(&v);
            } else {
                println!("{}", s(&v, "id"));
            }
        }
        ApprovalCommand::Delegation(DelegationCmd::List) => {
            let v = c.get("/api/v1/delegations").await?;
            list_out(
                &v,
                json_out,
                &[
                    "id",
                    "from",
                    "to",
                    "group",
                    "starts_at",
                    "ends_at",
                    "revoked_at",
                    "reason",
                ],
            );
        }
        ApprovalCommand::Delegation(DelegationCmd::Revoke { id }) => {
            c.send(
                reqwest::Method::DELETE,
                &format!("/api/v1/delegations/{}", query_path(id)),
                None,
                None,
            )
            .await?;
            if json_out {
                print_json(&json!({"revoked": id}));
            } else {
                println!("revoked {id}");
            }
        }
        ApprovalCommand::Access(AccessCmd::List) => {
            let v = c.get("/api/v1/access-review").await?;
            list_out(
                &v,
                json_out,
                &[
                    "token_id",
                    "subject",
                    "role",
                    "env_tier",
                    "granted_by",
                    "granted_at",
                    "last_used_at",
                    "groups",
                ],
            );
        }
        ApprovalCommand::Access(AccessCmd::History) => {
            let v = c.get("/api/v1/access-reviews").await?;
            list_out(&v, json_out, &["id", "period", "reviewer", "completed_at"]);
        }
        ApprovalCommand::Access(AccessCmd::Review {
            period,
            revoke,
            comment,
        }) => {
            let me = c.get("/api/v1/whoami").await?;
            let live = c.get("/api/v1/access-review").await?;
            let decisions: Vec<Value> = live
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e["subject"] != me["subject"])
                .map(|e| {
                    let id = s(&e, "token_id");
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
            if json_out {
                print_json(&v);
            } else {
                let n = v["items"].as_array().map_or(0, Vec::len);
                let r = v["items"].as_array().map_or(0, |a| {
                    a.iter().filter(|i| i["decision"] == "revoke").count()
                });
                println!(
                    "access review {} for {}: {n} privileges reviewed, {r} revoked",
                    s(&v, "id"),
                    s(&v, "period")
                );
            }
        }
        ApprovalCommand::Reviews => {
            let v = c.get("/api/v1/reviews").await?;
            if json_out {
                print_json(&v);
            } else {
                let mut t = table(&["change", "due", "overdue", "escalated", "incident"]);
                for r in v["pending_reviews"].as_array().cloned().unwrap_or_default() {
                    t.add_row(vec![
                        s(&r, "change"),
                        s(&r, "due_at"),
                        s(&r, "overdue"),
                        s(&r, "escalated"),
                        s(&r, "incident_id"),
                    ]);
                }
                println!("{t}");
                for r in v["root_cause_reviews"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    println!(
                        "root-cause review: team {} in {}: {}",
                        s(&r, "team"),
                        s(&r, "month"),
                        r["changes"]
                    );
                }
            }
        }
    }
    Ok(())
}

fn list_out(v: &Value, json_out: bool, cols: &[&str]) {
    if json_out {
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
