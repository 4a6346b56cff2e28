//! Turns untrusted JSON into validated commands, collecting every field error at once.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use chrono::TimeDelta;
use regex::Regex;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::environment::{EnvError, Taxonomy};
use crate::error::FieldErrors;
use crate::model::*;
use crate::requirements::Requirements;
use crate::time::{Timestamp, parse_rfc3339};

pub static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$").expect("static regex"));
static LABEL_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$").expect("static regex"));
static HEX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9a-fA-F]+$").expect("static regex"));

/// How far in the future a client's clock may be before its timestamps are refused.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// Events that arrive this long after they happened are flagged late.
pub const LATE_AFTER_SECS: i64 = 900;

/// What validation needs to know besides the request.
pub struct Context<'a> {
    pub tenant: &'a str,
    pub recorded_by: &'a str,
    pub now: Timestamp,
    pub taxonomy: &'a Taxonomy,
    pub requirements: &'a Requirements,
    /// Environments declared ahead, by canonical name: their tier and region win.
    pub declared_environment: &'a dyn Fn(&str) -> Option<crate::environment::EnvironmentAlias>,
    /// Set for imports: the records describe the past.
    pub backfill: bool,
}

/// Reads typed fields out of a JSON object, remembering which ones were consumed and which
/// were wrong.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: String,
    used: BTreeSet<&'static str>,
    pub errors: FieldErrors,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>, prefix: &str) -> Self {
        Fields {
            map,
            prefix: prefix.to_owned(),
            used: BTreeSet::new(),
            errors: FieldErrors::default(),
        }
    }

    fn path(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.used.insert(key);
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// An optional string field, trimmed; empty counts as absent. Checked against `max` chars.
    pub fn opt_str(&mut self, key: &'static str, max: usize) -> Option<String> {
        let v = self.get(key)?;
        match v {
            Value::String(s) => {
                let s = s.trim();
                if s.is_empty() {
                    None
                } else if s.chars().count() > max {
                    let p = self.path(key);
                    self.errors
                        .add(p, "too_long", format!("at most {max} characters"));
                    None
                } else if s.chars().any(char::is_control) {
                    let p = self.path(key);
                    self.errors
                        .add(p, "invalid_format", "must not contain control characters");
                    None
                } else {
                    Some(s.to_owned())
                }
            }
            other => {
                let p = self.path(key);
                self.errors.add(
                    p,
                    "invalid_type",
                    format!("expected a string, got {}", type_name(other)),
                );
                None
            }
        }
    }

    /// An optional string field that, when given, must say something: an empty (or
    /// whitespace-only) string is refused, never read as "none". Leave the field out (or send
    /// null) for none.
    pub fn opt_str_nonempty(&mut self, key: &'static str, max: usize) -> Option<String> {
        if self.given_empty(key) {
            return None;
        }
        self.opt_str(key, max)
    }

    /// Records an error and answers true when `key` is given as an empty string.
    fn given_empty(&mut self, key: &'static str) -> bool {
        let empty = matches!(self.map.get(key), Some(Value::String(s)) if s.trim().is_empty());
        if empty {
            self.used.insert(key);
            let p = self.path(key);
            self.errors.add(
                p,
                "empty",
                "must not be empty; leave the field out for none",
            );
        }
        empty
    }

    pub fn req_str(&mut self, key: &'static str, max: usize) -> Option<String> {
        let present = self.map.get(key).is_some_and(|v| !v.is_null());
        let v = self.opt_str(key, max);
        if v.is_none() && !self.errors.0.iter().any(|e| e.field == self.path(key)) {
            let p = self.path(key);
            let msg = if present {
                "must not be empty"
            } else {
                "is required"
            };
            self.errors.add(p, "required", msg);
        }
        v
    }

    pub fn name(&mut self, key: &'static str, required: bool) -> Option<String> {
        let v = if required {
            self.req_str(key, 128)
        } else {
            self.opt_str(key, 128)
        }?;
        if NAME.is_match(&v) {
            Some(v)
        } else {
            let p = self.path(key);
            self.errors.add(
                p,
                "invalid_format",
                "must be 1-128 characters of letters, digits, '.', '_', '/' or '-'",
            );
            None
        }
    }

    pub fn uuid(&mut self, key: &'static str) -> Option<Uuid> {
        let s = self.opt_str(key, 64)?;
        match Uuid::parse_str(&s) {
            Ok(u) => Some(u),
            Err(_) => {
                let p = self.path(key);
                self.errors
                    .add(p, "invalid_format", format!("'{s}' is not a UUID"));
                None
            }
        }
    }

    pub fn timestamp(&mut self, key: &'static str, now: Timestamp) -> Option<Timestamp> {
        let s = self.opt_str(key, 64)?;
        match parse_rfc3339(&s) {
            Ok(t) if t.signed_duration_since(now) > TimeDelta::seconds(MAX_CLOCK_SKEW_SECS) => {
                let p = self.path(key);
                self.errors.add(
                    p,
                    "in_future",
                    format!("'{s}' is in the future (more than {MAX_CLOCK_SKEW_SECS}s ahead of the server clock)"),
                );
                None
            }
            Ok(t) => Some(t),
            Err(m) => {
                let p = self.path(key);
                self.errors.add(p, "invalid_format", m);
                None
            }
        }
    }

    /// An RFC 3339 timestamp that may lie in the future (planned windows).
    pub fn timestamp_any(&mut self, key: &'static str) -> Option<Timestamp> {
        let s = self.opt_str(key, 64)?;
        match parse_rfc3339(&s) {
            Ok(t) => Some(t),
            Err(m) => {
                let p = self.path(key);
                self.errors.add(p, "invalid_format", m);
                None
            }
        }
    }

    /// [`Fields::timestamp_any`], refusing an empty string instead of reading it as absent.
    pub fn timestamp_any_nonempty(&mut self, key: &'static str) -> Option<Timestamp> {
        if self.given_empty(key) {
            return None;
        }
        self.timestamp_any(key)
    }

    /// Marks a key as read by the caller itself.
    pub fn mark(&mut self, key: &'static str) {
        self.used.insert(key);
    }

    pub fn enumeration<T>(
        &mut self,
        key: &'static str,
        parse: fn(&str) -> Option<T>,
        expected: fn() -> String,
    ) -> Option<T> {
        let s = self.opt_str(key, 64)?;
        match parse(&s) {
            Some(v) => Some(v),
            None => {
                let p = self.path(key);
                self.errors.add(
                    p,
                    "invalid_value",
                    format!("'{s}' is not one of: {}", expected()),
                );
                None
            }
        }
    }

    /// [`Fields::enumeration`], refusing an empty string instead of reading it as absent.
    pub fn enumeration_nonempty<T>(
        &mut self,
        key: &'static str,
        parse: fn(&str) -> Option<T>,
        expected: fn() -> String,
    ) -> Option<T> {
        if self.given_empty(key) {
            return None;
        }
        self.enumeration(key, parse, expected)
    }

    pub fn bool(&mut self, key: &'static str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                let p = self.path(key);
                self.errors.add(
                    p,
                    "invalid_type",
                    format!("expected a boolean, got {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn string_map(&mut self, key: &'static str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(v) = self.get(key) else { return out };
        let Value::Object(m) = v else {
            let p = self.path(key);
            self.errors.add(
                p,
                "invalid_type",
                format!("expected an object, got {}", type_name(v)),
            );
            return out;
        };
        if m.len() > 64 {
            let p = self.path(key);
            self.errors.add(p, "too_long", "at most 64 labels");
            return out;
        }
        for (k, v) in m {
            let path = format!("{}.{k}", self.path(key));
            if !LABEL_KEY.is_match(k) {
                self.errors.add(
                    path,
                    "invalid_format",
                    "label keys are 1-63 characters of letters, digits, '.', '_', '/' or '-'",
                );
                continue;
            }
            match v {
                Value::String(s) if s.chars().count() <= 256 => {
                    out.insert(k.clone(), s.clone());
                }
                Value::String(_) => self.errors.add(path, "too_long", "at most 256 characters"),
                Value::Number(n) => {
                    out.insert(k.clone(), n.to_string());
                }
                Value::Bool(b) => {
                    out.insert(k.clone(), b.to_string());
                }
                other => self.errors.add(
                    path,
                    "invalid_type",
                    format!("expected a string, got {}", type_name(other)),
                ),
            }
        }
        out
    }

    /// A list of free-form strings (e.g. path globs); the caller validates each.
    pub fn text_list(&mut self, key: &'static str) -> Vec<String> {
        let Some(v) = self.get(key) else {
            return Vec::new();
        };
        let Value::Array(items) = v else {
            let p = self.path(key);
            self.errors.add(
                p,
                "invalid_type",
                format!("expected an array, got {}", type_name(v)),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.trim().to_owned()),
                other => {
                    let path = format!("{}[{i}]", self.path(key));
                    self.errors.add(
                        path,
                        "invalid_type",
                        format!("expected a string, got {}", type_name(other)),
                    )
                }
            }
        }
        out
    }

    pub fn string_list(&mut self, key: &'static str) -> Vec<String> {
        let Some(v) = self.get(key) else {
            return Vec::new();
        };
        let Value::Array(items) = v else {
            let p = self.path(key);
            self.errors.add(
                p,
                "invalid_type",
                format!("expected an array, got {}", type_name(v)),
            );
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{}[{i}]", self.path(key));
            match item {
                Value::String(s) if NAME.is_match(s.trim()) => {
                    let s = s.trim().to_owned();
                    if out.contains(&s) {
                        self.errors
                            .add(path, "duplicate", format!("'{s}' is listed twice"));
                    } else {
                        out.push(s);
                    }
                }
                Value::String(_) => self.errors.add(
                    path,
                    "invalid_format",
                    "must be 1-128 characters of letters, digits, '.', '_', '/' or '-'",
                ),
                other => self.errors.add(
                    path,
                    "invalid_type",
                    format!("expected a string, got {}", type_name(other)),
                ),
            }
        }
        if out.len() > 256 {
            let p = self.path(key);
            self.errors.add(p, "too_long", "at most 256 entries");
        }
        out
    }

    /// Flags every key that no accessor asked for.
    pub fn finish(mut self) -> FieldErrors {
        for k in self.map.keys() {
            if !self.used.contains(k.as_str()) {
                let p = self.path(k);
                self.errors.add(p, "unknown_field", "is not a known field");
            }
        }
        self.errors
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `sha256:<64 hex>` or bare 64 hex, normalised to `sha256:<lowercase hex>`.
pub fn parse_digest(s: &str) -> Result<String, String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() == 64 && HEX.is_match(hex) {
        Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
    } else {
        Err(format!(
            "'{s}' is not a sha256 digest: expected 'sha256:' followed by 64 hex characters"
        ))
    }
}

/// A full git commit id: 40 (SHA-1) or 64 (SHA-256) hex characters.
pub fn parse_commit(s: &str) -> Result<String, String> {
    if (s.len() == 40 || s.len() == 64) && HEX.is_match(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "'{s}' is not a full commit id: expected 40 or 64 hex characters"
        ))
    }
}

/// Splits `registry/name@sha256:<hex>` into its name and digest.
pub fn parse_artifact_ref(s: &str) -> Result<(String, String), String> {
    let (name, digest) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("'{s}' is not an artifact reference: expected NAME@sha256:<hex>"))?;
    if name.is_empty() {
        return Err(format!("'{s}' has no artifact name before '@'"));
    }
    Ok((name.to_owned(), parse_digest(digest)?))
}

/// A deployment creation request's fields as read, before they are checked together.
struct CreateFields {
    id: Option<Uuid>,
    correlation_id: Option<String>,
    service: Option<String>,
    team: Option<String>,
    env_raw: Option<String>,
    version: Option<String>,
    commit_sha: Option<String>,
    git_ref: Option<String>,
    repository: Option<String>,
    artifact: Option<String>,
    artifact_name: Option<String>,
    artifact_digest: Option<String>,
    deployer: Option<String>,
    deployer_type: Option<DeployerType>,
    kind: Option<DeploymentKind>,
    trigger: Option<Trigger>,
    change_ref: Option<String>,
    region: Option<String>,
    labels: BTreeMap<String, String>,
    targets: Vec<String>,
    corrects: Option<Uuid>,
    status: Option<DeploymentStatus>,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    backfilled: Option<bool>,
}

/// Reads every field of a creation request (each one's own errors, and unknown fields).
fn read_create(map: &Map<String, Value>, ctx: &Context<'_>) -> (CreateFields, FieldErrors) {
    let mut f = Fields::new(map, "");
    let fields = CreateFields {
        id: f.uuid("id"),
        correlation_id: f.opt_str("correlation_id", 256),
        service: f.name("service", true),
        team: f.name("team", false),
        env_raw: f.req_str("environment", 128),
        version: f.req_str("version", 128),
        commit_sha: f.opt_str("commit_sha", 64),
        git_ref: f.opt_str("git_ref", 256),
        repository: f.opt_str("repository", 512),
        artifact: f.opt_str("artifact", 1024),
        artifact_name: f.opt_str("artifact_name", 512),
        artifact_digest: f.opt_str("artifact_digest", 80),
        deployer: f.opt_str("deployer", 256),
        deployer_type: f.enumeration("deployer_type", DeployerType::parse, DeployerType::expected),
        kind: f.enumeration("kind", DeploymentKind::parse, DeploymentKind::expected),
        trigger: f.enumeration("trigger", Trigger::parse, Trigger::expected),
        change_ref: f.opt_str("change_ref", 128),
        region: f.opt_str("region", 64),
        labels: f.string_map("labels"),
        targets: f.string_list("targets"),
        corrects: f.uuid("corrects"),
        status: f.enumeration_nonempty(
            "status",
            DeploymentStatus::parse,
            DeploymentStatus::expected,
        ),
        started_at: f.timestamp("started_at", ctx.now),
        finished_at: f.timestamp("finished_at", ctx.now),
        backfilled: f.bool("backfilled"),
    };
    (fields, f.finish())
}

/// Validates a deployment creation request (API body, import line).
pub fn parse_create(value: &Value, ctx: &Context<'_>) -> Result<CreateDeployment, FieldErrors> {
    let Value::Object(map) = value else {
        let mut e = FieldErrors::default();
        e.add(
            "",
            "invalid_type",
            format!("expected a JSON object, got {}", type_name(value)),
        );
        return Err(e);
    };
    let (f, mut errors) = read_create(map, ctx);
    let commit_sha = f.commit_sha.and_then(|c| {
        parse_commit(&c)
            .map_err(|m| errors.add("commit_sha", "invalid_format", m))
            .ok()
    });
    let mut artifact_name = f.artifact_name;
    let digest = check_artifact(
        &mut errors,
        f.artifact,
        &mut artifact_name,
        f.artifact_digest,
    );
    let environment = f
        .env_raw
        .and_then(|raw| resolve_environment(ctx, &raw, f.region, &mut errors));
    let started = f.started_at.unwrap_or(ctx.now);
    let status = initial_status(&mut errors, f.status, started, f.finished_at);
    if f.corrects.is_some() && f.corrects == f.id {
        errors.add(
            "corrects",
            "invalid_value",
            "a record cannot correct itself",
        );
    }

    let (Some(service), Some(environment), Some(version)) = (f.service, environment, f.version)
    else {
        return Err(errors);
    };
    let late = ctx.now.signed_duration_since(started).num_seconds() > LATE_AFTER_SECS;
    let deployment = NewDeployment {
        id: f.id.unwrap_or_else(Uuid::now_v7),
        tenant: ctx.tenant.to_owned(),
        correlation_id: f.correlation_id,
        service,
        team: f.team,
        environment,
        version,
        commit_sha,
        git_ref: f.git_ref,
        repository: f.repository,
        artifact_name,
        artifact_digest: digest,
        deployer: f.deployer,
        deployer_type: f.deployer_type.unwrap_or(DeployerType::Pipeline),
        kind: f.kind.unwrap_or(DeploymentKind::Release),
        trigger: f.trigger.unwrap_or(Trigger::Pipeline),
        change_ref: f.change_ref,
        labels: f.labels,
        targets: f.targets,
        corrects: f.corrects,
        schema_version: DEPLOYMENT_SCHEMA_VERSION,
        started_at: started,
        ingested_at: ctx.now,
        backfilled: ctx.backfill || f.backfilled.unwrap_or(false) || (late && status.is_terminal()),
        initial_status: status,
        initial_finished_at: if status.is_terminal() {
            Some(f.finished_at.unwrap_or(started))
        } else {
            None
        },
        recorded_by: ctx.recorded_by.to_owned(),
        approval: None,
        provenance: None,
    };
    ctx.requirements.check(&deployment, &mut errors);
    errors.into_result(CreateDeployment {
        deployment,
        idempotency: None,
        delivery: None,
    })
}

/// The artifact digest, from `artifact_digest` or an `artifact` reference (which also names
/// the artifact when `artifact_name` does not); the two must agree.
fn check_artifact(
    errors: &mut FieldErrors,
    artifact: Option<String>,
    artifact_name: &mut Option<String>,
    artifact_digest: Option<String>,
) -> Option<String> {
    let mut digest = artifact_digest.and_then(|d| {
        parse_digest(&d)
            .map_err(|m| errors.add("artifact_digest", "invalid_format", m))
            .ok()
    });
    if let Some(a) = artifact {
        match parse_artifact_ref(&a) {
            Ok((n, d)) => {
                if digest.as_ref().is_some_and(|x| *x != d) {
                    errors.add(
                        "artifact",
                        "conflict",
                        "digest differs from artifact_digest",
                    );
                }
                artifact_name.get_or_insert(n);
                digest = Some(d);
            }
            Err(m) => errors.add("artifact", "invalid_format", m),
        }
    }
    digest
}

/// The environment, resolved by the tenant's taxonomy; an explicit `region` wins.
fn resolve_environment(
    ctx: &Context<'_>,
    raw: &str,
    region: Option<String>,
    errors: &mut FieldErrors,
) -> Option<ResolvedEnvironment> {
    match ctx.taxonomy.resolve(raw, ctx.declared_environment) {
        Ok(mut e) => {
            if region.is_some() {
                e.region = region;
            }
            Some(e)
        }
        Err(EnvError::Invalid(m)) => {
            errors.add("environment", "invalid_format", m);
            None
        }
        Err(EnvError::Unknown(m)) => {
            errors.add("environment", "unknown_environment", m);
            None
        }
    }
}

/// The status the deployment is recorded with (`succeeded` when only `finished_at` says it
/// ended, else `started`), consistent with `finished_at`.
fn initial_status(
    errors: &mut FieldErrors,
    status: Option<DeploymentStatus>,
    started: Timestamp,
    finished_at: Option<Timestamp>,
) -> DeploymentStatus {
    let status = status.unwrap_or(if finished_at.is_some() {
        DeploymentStatus::Succeeded
    } else {
        DeploymentStatus::Started
    });
    if let Some(fin) = finished_at {
        if !status.is_terminal() {
            errors.add(
                "finished_at",
                "conflict",
                format!("a '{status}' deployment has not finished"),
            );
        }
        if fin < started {
            errors.add("finished_at", "invalid_value", "is before started_at");
        }
    }
    status
}

/// A status change as submitted, before it is checked against the deployment's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub id: Option<Uuid>,
    pub target: Option<String>,
    pub status: DeploymentStatus,
    pub message: Option<String>,
    pub occurred_at: Option<Timestamp>,
}

pub fn parse_status_change(value: &Value, now: Timestamp) -> Result<StatusChange, FieldErrors> {
    let Value::Object(map) = value else {
        let mut e = FieldErrors::default();
        e.add(
            "",
            "invalid_type",
            format!("expected a JSON object, got {}", type_name(value)),
        );
        return Err(e);
    };
    let mut f = Fields::new(map, "");
    let id = f.uuid("id");
    let target = f.name("target", false);
    let status = f.enumeration_nonempty(
        "status",
        DeploymentStatus::parse,
        DeploymentStatus::expected,
    );
    let present = map.get("status").is_some_and(|v| !v.is_null());
    let message = f.opt_str("message", 2000);
    let occurred_at = f.timestamp("occurred_at", now);
    let mut errors = f.finish();
    if !present {
        errors.add("status", "required", "is required");
    }
    match status {
        Some(status) if errors.is_empty() => Ok(StatusChange {
            id,
            target,
            status,
            message,
            occurred_at,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx<'a>(tax: &'a Taxonomy, req: &'a Requirements, now: Timestamp) -> Context<'a> {
        Context {
            tenant: "t1",
            recorded_by: "ci",
            now,
            taxonomy: tax,
            requirements: req,
            declared_environment: &|_| None,
            backfill: false,
        }
    }

    #[test]
    fn minimal_and_full_requests() {
        let (tax, req) = (Taxonomy::default(), Requirements::default());
        let now = crate::time::parse_rfc3339("2026-11-01T10:00:00Z").expect("ts");
        let c = parse_create(
            &json!({"service":"checkout","environment":"dev","version":"1"}),
            &ctx(&tax, &req, now),
        )
        .expect("valid");
        assert_eq!(c.deployment.initial_status, DeploymentStatus::Started);
        assert_eq!(c.deployment.environment.tier, Some(EnvTier::Development));
        let c = parse_create(
            &json!({"service":"checkout","environment":"prod-eu-west-1","version":"1.4.2",
                    "commit_sha": "A".repeat(40), "deployer":"alice",
                    "artifact": format!("registry/checkout@sha256:{}", "AB".repeat(32))}),
            &ctx(&tax, &req, now),
        )
        .expect("valid");
        assert_eq!(
            c.deployment.artifact_name.as_deref(),
            Some("registry/checkout")
        );
        assert_eq!(
            c.deployment.artifact_digest,
            Some(format!("sha256:{}", "ab".repeat(32)))
        );
        assert_eq!(c.deployment.commit_sha, Some("a".repeat(40)));
    }

    #[test]
    fn every_field_error_is_reported_at_once() {
        let (tax, req) = (Taxonomy::default(), Requirements::default());
        let now = crate::time::parse_rfc3339("2026-11-01T10:00:00Z").expect("ts");
        let err = parse_create(
            &json!({"environment":"production","version":5,"commit_sha":"xyz",
                    "artifact_digest":"sha256:nothex","started_at":"2027-01-01T00:00:00Z",
                    "id":"not-a-uuid","colour":"red","kind":"big-bang","labels":{"a":[1]}}),
            &ctx(&tax, &req, now),
        )
        .expect_err("invalid");
        let fields: BTreeSet<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "service",
            "version",
            "commit_sha",
            "artifact_digest",
            "started_at",
            "id",
            "colour",
            "kind",
            "labels.a",
        ] {
            assert!(fields.contains(f), "missing error for {f}: {err:?}");
        }
    }

    #[test]
    fn production_requirements_are_listed() {
        let (tax, req) = (Taxonomy::default(), Requirements::default());
        let now = crate::time::parse_rfc3339("2026-11-01T10:00:00Z").expect("ts");
        let err = parse_create(
            &json!({"service":"s","environment":"prd","version":"1"}),
            &ctx(&tax, &req, now),
        )
        .expect_err("missing metadata");
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["commit_sha", "artifact_digest", "deployer"]);
    }

    #[test]
    fn empty_values_are_refused_not_read_as_none() {
        let v = json!({"a": "", "b": "  ", "c": "x", "d": null, "tier": ""});
        let map = v.as_object().expect("object");
        let mut f = Fields::new(map, "");
        assert_eq!(f.opt_str_nonempty("a", 10), None);
        assert_eq!(f.opt_str_nonempty("b", 10), None);
        assert_eq!(f.opt_str_nonempty("c", 10).as_deref(), Some("x"));
        assert_eq!(f.opt_str_nonempty("d", 10), None);
        assert_eq!(f.opt_str_nonempty("missing", 10), None);
        assert_eq!(
            f.enumeration_nonempty("tier", EnvTier::parse, EnvTier::expected),
            None
        );
        let e = f.finish();
        let fields: Vec<(&str, &str)> =
            e.0.iter()
                .map(|e| (e.field.as_str(), e.code.as_str()))
                .collect();
        assert_eq!(
            fields,
            vec![("a", "empty"), ("b", "empty"), ("tier", "empty")]
        );
    }

    #[test]
    fn status_change_parsing() {
        let now = crate::time::parse_rfc3339("2026-11-01T10:00:00Z").expect("ts");
        assert!(parse_status_change(&json!({"status":"succeeded"}), now).is_ok());
        let e = parse_status_change(&json!({"status":"done","x":1}), now).expect_err("bad");
        assert_eq!(e.0.len(), 2);
        let e = parse_status_change(&json!({}), now).expect_err("bad");
        assert_eq!(e.0[0].field, "status");
    }
}
