//! The SQL store, compiled once per backend: `super` provides `Db` (the sqlx driver),
//! `BACKEND`, `LOCK_HEAD` and `MIGRATOR`. Static SQL uses `$N` placeholders, which both
//! drivers accept; dynamic SQL goes through `QueryBuilder`, which writes each driver's own.
use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use shipgate_domain::audit::{
    self, ACTION_DEPLOYMENT_CREATED, ACTION_DEPLOYMENT_EVENT, AuditEntry, ChainHead, PendingEntry,
    VerifyReport,
};
use shipgate_domain::input::{LATE_AFTER_SECS, StatusChange};
use shipgate_domain::lifecycle::{self, EventError, State};
use shipgate_domain::time::{Timestamp, from_micros, to_micros};
use shipgate_domain::*;
use sqlx::{Pool, QueryBuilder, Row};
use uuid::Uuid;

use super::{BACKEND, Db, LOCK_HEAD};
use crate::{Appended, Created, FeedEntry, Page, Store, StoreError, StoreResult};

pub(super) type DbRow = <Db as sqlx::Database>::Row;
pub(super) type Conn = <Db as sqlx::Database>::Connection;

/// Rows per multi-row INSERT statement (keeps under SQLite's bind-parameter limit).
const CHUNK: usize = 500;

const DEPLOYMENT_COLUMNS: &str = "id, tenant, correlation_id, service, team, environment, environment_raw, env_tier, region, version, commit_sha, git_ref, repository, artifact_name, artifact_digest, deployer, deployer_type, kind, trigger_type, change_ref, labels, targets, corrects, schema_version, started_at, ingested_at, backfilled, initial_status, initial_finished_at, recorded_by, status, finished_at, last_event_at, target_status, approval, provenance";
/// What runs where, computed from the deployments themselves: the latest succeeded deployment
/// of each service in each environment. The `running` table is this, kept up to date.
const RUNNING_FROM_DEPLOYMENTS: &str = "SELECT tenant, service, environment, deployment_id, finished_at FROM (\
     SELECT tenant, service, environment, id AS deployment_id, finished_at, ROW_NUMBER() OVER (\
     PARTITION BY tenant, service, environment ORDER BY finished_at DESC, id DESC) AS rn \
     FROM deployments WHERE status = 'succeeded') ranked WHERE rn = 1";
const EVENT_COLUMNS: &str = "id, deployment_id, tenant, target, status, message, occurred_at, ingested_at, late, recorded_by";
pub(super) const AUDIT_COLUMNS: &str =
    "seq, format, at, tenant, actor, action, subject, payload_hash, prev_hash, hash, payload";

pub struct SqlStore {
    /// Reads.
    pub(super) pool: Pool<Db>,
    /// Writes. For SQLite this is one dedicated connection: SQLite has one writer anyway, and a
    /// connection that only writes keeps its page cache warm (a connection's cache is dropped
    /// whenever another connection has written).
    pub(super) writer: Pool<Db>,
    /// Serialises writers in this process; the head-row lock serialises them across processes.
    pub(super) write_lock: tokio::sync::Mutex<()>,
}

pub(super) fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

pub(super) fn uuid_col(r: &DbRow, col: &str) -> StoreResult<Uuid> {
    let s: String = r.try_get(col)?;
    Uuid::parse_str(&s).map_err(internal)
}

pub(super) fn opt_uuid_col(r: &DbRow, col: &str) -> StoreResult<Option<Uuid>> {
    let s: Option<String> = r.try_get(col)?;
    s.map(|s| Uuid::parse_str(&s).map_err(internal)).transpose()
}

fn enum_col<T>(r: &DbRow, col: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let s: String = r.try_get(col)?;
    parse(&s).ok_or_else(|| internal(format!("unexpected {col} '{s}'")))
}

fn opt_tier(r: &DbRow, col: &str) -> StoreResult<Option<EnvTier>> {
    let s: Option<String> = r.try_get(col)?;
    Ok(s.and_then(|s| EnvTier::parse(&s)))
}

pub(super) fn ts(r: &DbRow, col: &str) -> StoreResult<Timestamp> {
    Ok(from_micros(r.try_get::<i64, _>(col)?))
}

pub(super) fn opt_ts(r: &DbRow, col: &str) -> StoreResult<Option<Timestamp>> {
    Ok(r.try_get::<Option<i64>, _>(col)?.map(from_micros))
}

pub(super) fn json_col<T: serde::de::DeserializeOwned>(r: &DbRow, col: &str) -> StoreResult<T> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(internal)
}

fn deployment_from_row(r: &DbRow) -> StoreResult<Deployment> {
    let record = NewDeployment {
        id: uuid_col(r, "id")?,
        tenant: r.try_get("tenant")?,
        correlation_id: r.try_get("correlation_id")?,
        service: r.try_get("service")?,
        team: r.try_get("team")?,
        environment: ResolvedEnvironment {
            name: r.try_get("environment")?,
            raw: r.try_get("environment_raw")?,
            tier: opt_tier(r, "env_tier")?,
            region: r.try_get("region")?,
        },
        version: r.try_get("version")?,
        commit_sha: r.try_get("commit_sha")?,
        git_ref: r.try_get("git_ref")?,
        repository: r.try_get("repository")?,
        artifact_name: r.try_get("artifact_name")?,
        artifact_digest: r.try_get("artifact_digest")?,
        deployer: r.try_get("deployer")?,
        deployer_type: enum_col(r, "deployer_type", DeployerType::parse)?,
        kind: enum_col(r, "kind", DeploymentKind::parse)?,
        trigger: enum_col(r, "trigger_type", Trigger::parse)?,
        change_ref: r.try_get("change_ref")?,
        labels: json_col(r, "labels")?,
        targets: json_col(r, "targets")?,
        corrects: opt_uuid_col(r, "corrects")?,
        schema_version: r.try_get::<i64, _>("schema_version")? as i32,
        started_at: ts(r, "started_at")?,
        ingested_at: ts(r, "ingested_at")?,
        backfilled: r.try_get("backfilled")?,
        initial_status: enum_col(r, "initial_status", DeploymentStatus::parse)?,
        initial_finished_at: opt_ts(r, "initial_finished_at")?,
        recorded_by: r.try_get("recorded_by")?,
        approval: opt_json_col(r, "approval")?,
        provenance: opt_json_col(r, "provenance")?,
    };
    Ok(Deployment {
        record,
        status: enum_col(r, "status", DeploymentStatus::parse)?,
        finished_at: opt_ts(r, "finished_at")?,
        target_status: json_col(r, "target_status")?,
        corrected_by: Vec::new(),
        events: Vec::new(),
    })
}

fn event_from_row(r: &DbRow) -> StoreResult<StatusEvent> {
    Ok(StatusEvent {
        id: uuid_col(r, "id")?,
        deployment_id: uuid_col(r, "deployment_id")?,
        tenant: r.try_get("tenant")?,
        target: r.try_get("target")?,
        status: enum_col(r, "status", DeploymentStatus::parse)?,
        message: r.try_get("message")?,
        occurred_at: ts(r, "occurred_at")?,
        ingested_at: ts(r, "ingested_at")?,
        late: r.try_get("late")?,
        recorded_by: r.try_get("recorded_by")?,
    })
}

pub(super) fn audit_from_row(r: &DbRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        seq: r.try_get("seq")?,
        format: r.try_get::<i64, _>("format")? as i32,
        at: ts(r, "at")?,
        tenant: r.try_get("tenant")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        subject: r.try_get("subject")?,
        payload_hash: r.try_get("payload_hash")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
        payload: r.try_get("payload")?,
    })
}

/// How far `sink` has delivered the outbox (0: nothing yet).
async fn outbox_cursor(pool: &Pool<Db>, sink: &str) -> StoreResult<i64> {
    Ok(
        sqlx::query("SELECT seq FROM outbox_cursors WHERE sink = $1")
            .bind(sink)
            .fetch_optional(pool)
            .await?
            .map(|r| r.try_get("seq"))
            .transpose()?
            .unwrap_or(0),
    )
}

fn delivery_from_row(r: &DbRow) -> StoreResult<shipgate_domain::integrations::Delivery> {
    Ok(shipgate_domain::integrations::Delivery {
        source: r.try_get("source")?,
        delivery_id: r.try_get("delivery_id")?,
        tenant: r.try_get("tenant")?,
        event: r.try_get("event")?,
        result: r.try_get("result")?,
        reason: r.try_get("reason")?,
        records: json_col(r, "records")?,
        received_at: ts(r, "received_at")?,
    })
}

fn service_paths(r: &DbRow) -> StoreResult<Vec<String>> {
    Ok(opt_json_col(r, "paths")?.unwrap_or_default())
}

/// A nullable JSON text column.
fn opt_json_col<T: serde::de::DeserializeOwned>(r: &DbRow, col: &str) -> StoreResult<Option<T>> {
    let v: Option<String> = r.try_get(col)?;
    v.map(|s| serde_json::from_str(&s))
        .transpose()
        .map_err(internal)
}

fn scoped_key(tenant: &str, key: &str) -> String {
    format!("{tenant}\n{key}")
}

pub(super) fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

const TOKEN_COLUMNS: &str = "id, tenant, subject, role, root, token_hash, created_at, expires_at, env_tier, created_by, last_used_at, confirmed_by";

fn token_from_row(r: &DbRow) -> StoreResult<ApiToken> {
    Ok(ApiToken {
        id: uuid_col(r, "id")?,
        tenant: r.try_get("tenant")?,
        subject: r.try_get("subject")?,
        role: enum_col(r, "role", Role::parse)?,
        root: r.try_get("root")?,
        token_hash: r.try_get("token_hash")?,
        created_at: ts(r, "created_at")?,
        expires_at: opt_ts(r, "expires_at")?,
        env_tier: opt_tier(r, "env_tier")?,
        created_by: r.try_get("created_by")?,
        last_used_at: opt_ts(r, "last_used_at")?,
        confirmed_by: r.try_get("confirmed_by")?,
    })
}

async fn insert_token(conn: &mut Conn, token: &ApiToken) -> StoreResult<()> {
    sqlx::query(&format!(
        "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(token.id.to_string())
    .bind(&token.tenant)
    .bind(&token.subject)
    .bind(token.role.as_str())
    .bind(token.root)
    .bind(&token.token_hash)
    .bind(to_micros(token.created_at))
    .bind(token.expires_at.map(to_micros))
    .bind(token.env_tier.map(|t| t.as_str().to_owned()))
    .bind(&token.created_by)
    .bind(token.last_used_at.map(to_micros))
    .bind(&token.confirmed_by)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A row of the deployments table about to be written.
struct DeploymentRow<'a> {
    d: &'a NewDeployment,
    status: DeploymentStatus,
    finished_at: Option<Timestamp>,
    last_event_at: Timestamp,
    target_status: BTreeMap<String, DeploymentStatus>,
}

async fn insert_deployments(conn: &mut Conn, rows: &[DeploymentRow<'_>]) -> StoreResult<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("INSERT INTO deployments ({DEPLOYMENT_COLUMNS}) "));
        qb.push_values(chunk, |mut b, r| {
            let d = r.d;
            b.push_bind(d.id.to_string())
                .push_bind(d.tenant.clone())
                .push_bind(d.correlation_id.clone())
                .push_bind(d.service.clone())
                .push_bind(d.team.clone())
                .push_bind(d.environment.name.clone())
                .push_bind(d.environment.raw.clone())
                .push_bind(d.environment.tier.map(|t| t.as_str().to_owned()))
                .push_bind(d.environment.region.clone())
                .push_bind(d.version.clone())
                .push_bind(d.commit_sha.clone())
                .push_bind(d.git_ref.clone())
                .push_bind(d.repository.clone())
                .push_bind(d.artifact_name.clone())
                .push_bind(d.artifact_digest.clone())
                .push_bind(d.deployer.clone())
                .push_bind(d.deployer_type.as_str().to_owned())
                .push_bind(d.kind.as_str().to_owned())
                .push_bind(d.trigger.as_str().to_owned())
                .push_bind(d.change_ref.clone())
                .push_bind(json_text(&d.labels))
                .push_bind(json_text(&d.targets))
                .push_bind(d.corrects.map(|c| c.to_string()))
                .push_bind(i64::from(d.schema_version))
                .push_bind(to_micros(d.started_at))
                .push_bind(to_micros(d.ingested_at))
                .push_bind(d.backfilled)
                .push_bind(d.initial_status.as_str().to_owned())
                .push_bind(d.initial_finished_at.map(to_micros))
                .push_bind(d.recorded_by.clone())
                .push_bind(r.status.as_str().to_owned())
                .push_bind(r.finished_at.map(to_micros))
                .push_bind(to_micros(r.last_event_at))
                .push_bind(json_text(&r.target_status))
                .push_bind(d.approval.as_ref().map(json_text))
                .push_bind(d.provenance.as_ref().map(json_text));
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_events(conn: &mut Conn, events: &[StatusEvent]) -> StoreResult<()> {
    for chunk in events.chunks(CHUNK) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("INSERT INTO deployment_events ({EVENT_COLUMNS}) "));
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(e.id.to_string())
                .push_bind(e.deployment_id.to_string())
                .push_bind(e.tenant.clone())
                .push_bind(e.target.clone())
                .push_bind(e.status.as_str().to_owned())
                .push_bind(e.message.clone())
                .push_bind(to_micros(e.occurred_at))
                .push_bind(to_micros(e.ingested_at))
                .push_bind(e.late)
                .push_bind(e.recorded_by.clone());
        });
        qb.build().execute(&mut *conn).await?;
    }
    Ok(())
}

pub(super) async fn lock_head(conn: &mut Conn) -> StoreResult<ChainHead> {
    let r = sqlx::query(LOCK_HEAD).fetch_one(&mut *conn).await?;
    Ok(ChainHead {
        seq: r.try_get("seq")?,
        hash: r.try_get("hash")?,
    })
}

/// A governance row's image as stored (see `rows.rs`): its table, tenant, key and columns.
fn image_from_row(
    spec: &crate::rows::TableSpec,
    r: &DbRow,
) -> StoreResult<(String, String, serde_json::Value)> {
    use crate::rows::Ty;
    let get = |col: &str, ty: Ty| -> StoreResult<serde_json::Value> {
        Ok(match ty {
            Ty::Text => serde_json::json!(r.try_get::<Option<String>, _>(col)?),
            Ty::Int => serde_json::json!(r.try_get::<Option<i64>, _>(col)?),
            Ty::Bool => serde_json::json!(r.try_get::<Option<bool>, _>(col)?),
        })
    };
    let tenant: String = r.try_get("tenant")?;
    let key = get(spec.key.0, spec.key.1)?;
    let key_text = match &key {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut m = serde_json::Map::new();
    m.insert("table".into(), spec.table.into());
    m.insert("tenant".into(), tenant.clone().into());
    m.insert(spec.key.0.into(), key);
    for (c, ty) in spec.cols {
        m.insert((*c).into(), get(c, *ty)?);
    }
    Ok((tenant, key_text, serde_json::Value::Object(m)))
}

/// The fingerprints of the governance rows pending entries wrote, read back as stored inside
/// the write transaction (`None`: the row is gone).
async fn fingerprint_rows(
    conn: &mut Conn,
    rows: &[audit::RowRef],
) -> StoreResult<Vec<audit::RowFingerprint>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let spec = crate::rows::spec(&r.table)
            .ok_or_else(|| internal(format!("{} is not a governance table", r.table)))?;
        let sql = format!(
            "SELECT tenant, {} FROM {} WHERE tenant = $1 AND {} = $2",
            spec.select_list(),
            spec.table,
            spec.key.0
        );
        let q = sqlx::query(&sql).bind(r.tenant.clone());
        let q = match spec.key.1 {
            crate::rows::Ty::Int => q.bind(r.key.parse::<i64>().map_err(internal)?),
            _ => q.bind(r.key.clone()),
        };
        let row = q.fetch_optional(&mut *conn).await?;
        let h = match row {
            Some(row) => Some(audit::fingerprint(&image_from_row(spec, &row)?.2)),
            None => None,
        };
        out.push(audit::RowFingerprint { row: r.clone(), h });
    }
    Ok(out)
}

/// Seals pending entries onto the chain, writes them and moves the head, in the caller's
/// transaction.
pub(super) async fn append_audit(
    conn: &mut Conn,
    head: &ChainHead,
    now: Timestamp,
    pending: Vec<PendingEntry>,
) -> StoreResult<ChainHead> {
    if pending.is_empty() {
        return Ok(head.clone());
    }
    let mut pending = pending;
    for p in pending.iter_mut() {
        if !p.rows.is_empty() {
            let rows = std::mem::take(&mut p.rows);
            let fps = fingerprint_rows(conn, &rows).await?;
            p.seal_records(fps);
        }
    }
    let events: Vec<Option<shipgate_domain::events::OutboxEvent>> =
        pending.iter_mut().map(|p| p.event.take()).collect();
    let (entries, new_head) = audit::seal(head, now, pending);
    let outbox: Vec<(i64, shipgate_domain::events::OutboxEvent, String)> = entries
        .iter()
        .zip(events)
        .filter_map(|(e, ev)| ev.map(|ev| (e.seq, ev, e.tenant.clone())))
        .collect();
    for chunk in outbox.chunks(CHUNK) {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO outbox (seq, at, tenant, kind, env_tier, event_type, subject_id, body) ",
        );
        qb.push_values(chunk, |mut b, (seq, ev, tenant)| {
            b.push_bind(*seq)
                .push_bind(to_micros(now))
                .push_bind(tenant.clone())
                .push_bind(ev.kind.as_str())
                .push_bind(ev.env_tier.map(|t| t.as_str()))
                .push_bind(ev.event_type.clone())
                .push_bind(ev.subject_id.clone())
                .push_bind(ev.body.clone());
        });
        qb.build().execute(&mut *conn).await?;
    }
    for chunk in entries.chunks(CHUNK) {
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("INSERT INTO audit_log ({AUDIT_COLUMNS}) "));
        qb.push_values(chunk, |mut b, e| {
            b.push_bind(e.seq)
                .push_bind(i64::from(e.format))
                .push_bind(to_micros(e.at))
                .push_bind(e.tenant.clone())
                .push_bind(e.actor.clone())
                .push_bind(e.action.clone())
                .push_bind(e.subject.clone())
                .push_bind(e.payload_hash.clone())
                .push_bind(e.prev_hash.clone())
                .push_bind(e.hash.clone())
                .push_bind(e.payload.clone());
        });
        qb.build().execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(new_head.seq)
        .bind(new_head.hash.clone())
        .execute(&mut *conn)
        .await?;
    Ok(new_head)
}

/// Points `running` at the latest succeeded deployment of a service in an environment.
async fn refresh_running(
    conn: &mut Conn,
    tenant: &str,
    service: &str,
    environment: &str,
) -> StoreResult<()> {
    let latest = sqlx::query(
        "SELECT id, finished_at FROM deployments WHERE tenant = $1 AND service = $2 AND environment = $3 \
         AND status = 'succeeded' ORDER BY finished_at DESC, id DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(service)
    .bind(environment)
    .fetch_optional(&mut *conn)
    .await?;
    match latest {
        Some(r) => {
            let id: String = r.try_get("id")?;
            let at: Option<i64> = r.try_get("finished_at")?;
            sqlx::query(
                "INSERT INTO running (tenant, service, environment, deployment_id, deployed_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant, service, environment) DO UPDATE SET deployment_id = excluded.deployment_id, deployed_at = excluded.deployed_at",
            )
            .bind(tenant)
            .bind(service)
            .bind(environment)
            .bind(id)
            .bind(at.unwrap_or_default())
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "DELETE FROM running WHERE tenant = $1 AND service = $2 AND environment = $3",
            )
            .bind(tenant)
            .bind(service)
            .bind(environment)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

fn push_filter(qb: &mut QueryBuilder<'_, Db>, f: &DeploymentFilter, prefix: &str) {
    qb.push(format!(" WHERE {prefix}tenant = "))
        .push_bind(f.tenant.clone());
    let eq = |qb: &mut QueryBuilder<'_, Db>, col: &str, v: &Option<String>| {
        if let Some(v) = v {
            qb.push(format!(" AND {prefix}{col} = "))
                .push_bind(v.clone());
        }
    };
    eq(qb, "service", &f.service);
    eq(qb, "environment", &f.environment);
    eq(qb, "env_tier", &f.env_tier.map(|t| t.as_str().to_owned()));
    eq(qb, "status", &f.status.map(|t| t.as_str().to_owned()));
    eq(qb, "kind", &f.kind.map(|t| t.as_str().to_owned()));
    eq(qb, "commit_sha", &f.commit_sha);
    eq(qb, "artifact_digest", &f.artifact_digest);
    eq(qb, "deployer", &f.deployer);
    eq(qb, "correlation_id", &f.correlation_id);
    eq(qb, "change_ref", &f.change_ref);
    if let Some(t) = f.since {
        qb.push(format!(" AND {prefix}started_at >= "))
            .push_bind(to_micros(t));
    }
    if let Some(t) = f.until {
        qb.push(format!(" AND {prefix}started_at < "))
            .push_bind(to_micros(t));
    }
}

impl SqlStore {
    pub(super) fn new(pool: Pool<Db>, writer: Pool<Db>) -> Self {
        SqlStore {
            pool,
            writer,
            write_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The connection pool, for tests and tools that must reach under the API.
    pub fn pool(&self) -> &Pool<Db> {
        &self.pool
    }

    /// Benchmark ceiling and bulk loading: inserts deployment rows only (no events, no audit),
    /// `per_tx` rows per transaction in multi-row statements. Not part of the port: it bypasses
    /// the audit chain, so `verify_audit` will report these rows as unaudited.
    pub async fn raw_insert_deployments(
        &self,
        rows: &[(NewDeployment, DeploymentStatus, Option<Timestamp>)],
        per_tx: usize,
    ) -> StoreResult<()> {
        for tx_rows in rows.chunks(per_tx.max(1)) {
            let mut tx = self.writer.begin().await?;
            let dr: Vec<DeploymentRow<'_>> = tx_rows
                .iter()
                .map(|(d, status, fin)| DeploymentRow {
                    d,
                    status: *status,
                    finished_at: *fin,
                    last_event_at: fin.unwrap_or(d.started_at),
                    target_status: BTreeMap::new(),
                })
                .collect();
            insert_deployments(&mut tx, &dr).await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Recomputes the `running` projection from scratch (after a bulk load).
    pub async fn rebuild_running(&self) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM running").execute(&mut *tx).await?;
        sqlx::query(&format!(
            "INSERT INTO running (tenant, service, environment, deployment_id, deployed_at) \
             SELECT tenant, service, environment, deployment_id, finished_at FROM ({RUNNING_FROM_DEPLOYMENTS}) latest"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_events(&self, tenant: &str, id: Uuid) -> StoreResult<Vec<StatusEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM deployment_events WHERE deployment_id = $1 AND tenant = $2 ORDER BY occurred_at, ingested_at, id"
        ))
        .bind(id.to_string())
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_deployments(
        &self,
        batch: Vec<CreateDeployment>,
        now: Timestamp,
        atomic: bool,
    ) -> StoreResult<Vec<StoreResult<Created>>> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;

        // What is already recorded that the batch could collide with.
        let keys: Vec<String> = batch
            .iter()
            .filter_map(|c| {
                c.idempotency
                    .as_ref()
                    .map(|k| scoped_key(&c.deployment.tenant, &k.key))
            })
            .collect();
        let mut known_keys: HashMap<String, (String, String)> = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT scoped_key, request_hash, result_id FROM idempotency_keys WHERE scoped_key IN (",
            );
            let mut sep = qb.separated(", ");
            for k in chunk {
                sep.push_bind(k.clone());
            }
            sep.push_unseparated(")");
            for r in qb.build().fetch_all(&mut *tx).await? {
                known_keys.insert(
                    r.try_get("scoped_key")?,
                    (r.try_get("request_hash")?, r.try_get("result_id")?),
                );
            }
        }
        let ids: Vec<String> = batch
            .iter()
            .flat_map(|c| std::iter::once(c.deployment.id).chain(c.deployment.corrects))
            .map(|u| u.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // Ids are scoped to the tenant (another tenant's record never collides), and one id
        // names one record: a deployment's id is never a status event's.
        let mut known_ids: BTreeSet<(String, Uuid)> = BTreeSet::new();
        let mut known_event_ids: BTreeSet<(String, Uuid)> = BTreeSet::new();
        for chunk in ids.chunks(CHUNK) {
            for (table, set) in [
                ("deployments", &mut known_ids),
                ("deployment_events", &mut known_event_ids),
            ] {
                let mut qb: QueryBuilder<Db> =
                    QueryBuilder::new(format!("SELECT id, tenant FROM {table} WHERE id IN ("));
                let mut sep = qb.separated(", ");
                for k in chunk {
                    sep.push_bind(k.clone());
                }
                sep.push_unseparated(")");
                for r in qb.build().fetch_all(&mut *tx).await? {
                    set.insert((r.try_get("tenant")?, uuid_col(&r, "id")?));
                }
            }
        }

        enum Plan {
            Insert,
            Replay(Uuid),
            SameAs(usize),
            Fail(StoreError),
        }
        let mut plans: Vec<Plan> = Vec::with_capacity(batch.len());
        let mut batch_keys: HashMap<String, (usize, String)> = HashMap::new();
        let mut batch_ids: BTreeSet<(String, Uuid)> = BTreeSet::new();
        for (i, c) in batch.iter().enumerate() {
            let d = &c.deployment;
            if let Some(k) = &c.idempotency {
                let sk = scoped_key(&d.tenant, &k.key);
                if let Some((hash, result)) = known_keys.get(&sk) {
                    plans.push(if *hash == k.request_hash {
                        Uuid::parse_str(result)
                            .map(Plan::Replay)
                            .unwrap_or_else(|e| Plan::Fail(internal(e)))
                    } else {
                        Plan::Fail(StoreError::Conflict {
                            code: "idempotency_key_reused",
                            message: format!(
                                "idempotency key '{}' was used for a different request",
                                k.key
                            ),
                        })
                    });
                    continue;
                }
                if let Some((j, hash)) = batch_keys.get(&sk) {
                    plans.push(if *hash == k.request_hash {
                        Plan::SameAs(*j)
                    } else {
                        Plan::Fail(StoreError::Conflict {
                            code: "idempotency_key_reused",
                            message: format!(
                                "idempotency key '{}' was used for a different request",
                                k.key
                            ),
                        })
                    });
                    continue;
                }
            }
            let mine = (d.tenant.clone(), d.id);
            if known_ids.contains(&mine) || batch_ids.contains(&mine) {
                plans.push(Plan::Fail(StoreError::Conflict {
                    code: "deployment_exists",
                    message: format!(
                        "a deployment with id {} is already recorded with different content",
                        d.id
                    ),
                }));
                continue;
            }
            if known_event_ids.contains(&mine) {
                plans.push(Plan::Fail(StoreError::Conflict {
                    code: "id_in_use",
                    message: format!("{} is the id of a status event; choose another id", d.id),
                }));
                continue;
            }
            if let Some(c) = d.corrects {
                let theirs = (d.tenant.clone(), c);
                if !known_ids.contains(&theirs) && !batch_ids.contains(&theirs) {
                    let mut e = FieldErrors::default();
                    e.add(
                        "corrects",
                        "not_found",
                        format!("no deployment {c} to correct"),
                    );
                    plans.push(Plan::Fail(StoreError::Invalid(e)));
                    continue;
                }
            }
            if let Some(k) = &c.idempotency {
                batch_keys.insert(scoped_key(&d.tenant, &k.key), (i, k.request_hash.clone()));
            }
            batch_ids.insert(mine);
            plans.push(Plan::Insert);
        }

        if atomic && plans.iter().any(|p| matches!(p, Plan::Fail(_))) {
            tx.rollback().await?;
            return Ok(plans
                .into_iter()
                .map(|p| match p {
                    Plan::Fail(e) => Err(e),
                    _ => Err(StoreError::Conflict {
                        code: "not_written",
                        message: "not written: another record of this batch was refused".into(),
                    }),
                })
                .collect());
        }

        // Build everything the inserts write.
        let mut rows = Vec::new();
        let mut events = Vec::new();
        let mut pending = Vec::new();
        let mut built: HashMap<usize, Deployment> = HashMap::new();
        let mut services = BTreeSet::new();
        let mut environments = BTreeMap::new();
        let mut releases = BTreeMap::new();
        let mut running: BTreeSet<(String, String, String)> = BTreeSet::new();
        let mut idem_rows = Vec::new();
        for (i, c) in batch.iter().enumerate() {
            if !matches!(plans[i], Plan::Insert) {
                continue;
            }
            let d = &c.deployment;
            let mut evs = Vec::new();
            let mk = |status, at| StatusEvent {
                id: Uuid::now_v7(),
                deployment_id: d.id,
                tenant: d.tenant.clone(),
                target: None,
                status,
                message: None,
                occurred_at: at,
                ingested_at: now,
                late: d.backfilled,
                recorded_by: d.recorded_by.clone(),
            };
            if d.initial_status.is_terminal() {
                evs.push(mk(DeploymentStatus::Started, d.started_at));
                evs.push(mk(
                    d.initial_status,
                    d.initial_finished_at.unwrap_or(d.started_at),
                ));
            } else {
                evs.push(mk(d.initial_status, d.started_at));
            }
            let last_event_at = evs
                .iter()
                .map(|e| e.occurred_at)
                .max()
                .unwrap_or(d.started_at);
            let target_status: BTreeMap<String, DeploymentStatus> = d
                .targets
                .iter()
                .map(|t| (t.clone(), d.initial_status))
                .collect();
            pending.push(
                PendingEntry::new(
                    &d.tenant,
                    &d.recorded_by,
                    ACTION_DEPLOYMENT_CREATED,
                    &d.id.to_string(),
                    &audit::created_entry_payload(d, &evs),
                )
                .with_event(shipgate_domain::events::deployment_recorded(d)),
            );
            services.insert((d.tenant.clone(), d.service.clone(), d.team.clone()));
            environments.insert(
                (d.tenant.clone(), d.environment.name.clone()),
                d.environment.clone(),
            );
            releases
                .entry((d.tenant.clone(), d.service.clone(), d.version.clone()))
                .or_insert((
                    d.commit_sha.clone(),
                    d.artifact_digest.clone(),
                    d.started_at,
                ));
            if d.initial_status == DeploymentStatus::Succeeded {
                running.insert((
                    d.tenant.clone(),
                    d.service.clone(),
                    d.environment.name.clone(),
                ));
            }
            if let Some(k) = &c.idempotency {
                idem_rows.push((
                    scoped_key(&d.tenant, &k.key),
                    k.request_hash.clone(),
                    d.id.to_string(),
                ));
            }
            rows.push(DeploymentRow {
                d,
                status: d.initial_status,
                finished_at: d.initial_finished_at,
                last_event_at,
                target_status: target_status.clone(),
            });
            built.insert(
                i,
                Deployment {
                    record: d.clone(),
                    status: d.initial_status,
                    finished_at: d.initial_finished_at,
                    target_status,
                    corrected_by: Vec::new(),
                    events: evs.clone(),
                },
            );
            events.extend(evs);
        }

        if !rows.is_empty() {
            insert_deployments(&mut tx, &rows).await?;
            insert_events(&mut tx, &events).await?;
            let services: Vec<_> = services.into_iter().collect();
            for chunk in services.chunks(CHUNK) {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO services (tenant, name, team, declared, created_at) ",
                );
                qb.push_values(chunk, |mut b, (t, n, team)| {
                    b.push_bind(t.clone())
                        .push_bind(n.clone())
                        .push_bind(team.clone())
                        .push_bind(false)
                        .push_bind(to_micros(now));
                });
                qb.push(" ON CONFLICT (tenant, name) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            let environments: Vec<_> = environments.into_iter().collect();
            for chunk in environments.chunks(CHUNK) {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO environments (tenant, name, tier, region, declared, created_at) ",
                );
                qb.push_values(chunk, |mut b, ((t, n), e)| {
                    b.push_bind(t.clone())
                        .push_bind(n.clone())
                        .push_bind(e.tier.map(|t| t.as_str().to_owned()))
                        .push_bind(e.region.clone())
                        .push_bind(false)
                        .push_bind(to_micros(now));
                });
                qb.push(" ON CONFLICT (tenant, name) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            let releases: Vec<_> = releases.into_iter().collect();
            for chunk in releases.chunks(CHUNK) {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO releases (tenant, service, version, commit_sha, artifact_digest, first_seen_at) ",
                );
                qb.push_values(chunk, |mut b, ((t, s, v), (c, a, at))| {
                    b.push_bind(t.clone())
                        .push_bind(s.clone())
                        .push_bind(v.clone())
                        .push_bind(c.clone())
                        .push_bind(a.clone())
                        .push_bind(to_micros(*at));
                });
                qb.push(" ON CONFLICT (tenant, service, version) DO NOTHING");
                qb.build().execute(&mut *tx).await?;
            }
            for chunk in idem_rows.chunks(CHUNK) {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                    "INSERT INTO idempotency_keys (scoped_key, request_hash, result_id, created_at) ",
                );
                qb.push_values(chunk, |mut b, (k, h, id)| {
                    b.push_bind(k.clone())
                        .push_bind(h.clone())
                        .push_bind(id.clone())
                        .push_bind(to_micros(now));
                });
                qb.build().execute(&mut *tx).await?;
            }
            for (t, s, e) in &running {
                refresh_running(&mut tx, t, s, e).await?;
            }
            append_audit(&mut tx, &head, now, pending).await?;
        }
        tx.commit().await?;
        drop(_writer);

        let mut out = Vec::with_capacity(plans.len());
        for (i, plan) in plans.into_iter().enumerate() {
            out.push(match plan {
                Plan::Insert => built
                    .get(&i)
                    .cloned()
                    .map(|d| Created {
                        deployment: d,
                        created: true,
                    })
                    .ok_or(StoreError::NotFound),
                Plan::SameAs(j) => built
                    .get(&j)
                    .cloned()
                    .map(|d| Created {
                        deployment: d,
                        created: false,
                    })
                    .ok_or(StoreError::NotFound),
                Plan::Replay(id) => {
                    match self.get_deployment(&batch[i].deployment.tenant, id).await {
                        Ok(Some(d)) => Ok(Created {
                            deployment: d,
                            created: false,
                        }),
                        Ok(None) => Err(StoreError::NotFound),
                        Err(e) => Err(e),
                    }
                }
                Plan::Fail(e) => Err(e),
            });
        }
        Ok(out)
    }

    async fn append_event(
        &self,
        tenant: &str,
        deployment_id: Uuid,
        change: StatusChange,
        actor: &str,
        now: Timestamp,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Appended> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        let key = idempotency
            .as_ref()
            .map(|k| scoped_key(tenant, &k.key))
            .or(change
                .id
                .map(|id| scoped_key(tenant, &format!("event:{id}"))));
        let request_hash = idempotency
            .as_ref()
            .map(|k| k.request_hash.clone())
            .unwrap_or_else(|| format!("{deployment_id}/{:?}/{}", change.target, change.status));
        if let Some(k) = &key {
            let known = sqlx::query(
                "SELECT request_hash, result_id FROM idempotency_keys WHERE scoped_key = $1",
            )
            .bind(k.clone())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = known {
                let hash: String = r.try_get("request_hash")?;
                let result: String = r.try_get("result_id")?;
                drop(tx);
                drop(_writer);
                if hash != request_hash {
                    return Err(StoreError::Conflict {
                        code: "idempotency_key_reused",
                        message:
                            "this idempotency key or event id was used for a different request"
                                .into(),
                    });
                }
                let d = self
                    .get_deployment(tenant, deployment_id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let event = d
                    .events
                    .iter()
                    .find(|e| e.id.to_string() == result)
                    .cloned();
                return Ok(Appended {
                    deployment: d,
                    event,
                });
            }
        }
        let row = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1 AND tenant = $2"
        ))
        .bind(deployment_id.to_string())
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let current = deployment_from_row(&row)?;
        let state = State {
            status: current.status,
            finished_at: current.finished_at,
            last_event_at: ts(&row, "last_event_at")?,
            targets: current.target_status.clone(),
        };
        if let Some(id) = change.id {
            let taken = sqlx::query(
                "SELECT id FROM deployment_events WHERE tenant = $1 AND id = $2 \
                 UNION ALL SELECT id FROM deployments WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if taken.is_some() {
                return Err(StoreError::Conflict {
                    code: "id_in_use",
                    message: format!("{id} already names a record; choose another id"),
                });
            }
        }
        let occurred_at = change.occurred_at.unwrap_or(now);
        let arrived_late = (now - occurred_at).num_seconds() > LATE_AFTER_SECS;
        let applied = lifecycle::apply_event(
            &state,
            change.target.as_deref(),
            change.status,
            occurred_at,
            arrived_late,
        )
        .map_err(|e| match e {
            EventError::UnknownTarget(t) => {
                let mut fe = FieldErrors::default();
                fe.add(
                    "target",
                    "not_found",
                    format!("'{t}' is not a target of this deployment"),
                );
                StoreError::Invalid(fe)
            }
            EventError::Transition(t) => StoreError::Conflict {
                code: "invalid_transition",
                message: format!("deployment is '{}': {t}", current.status),
            },
        })?;
        if !applied.append {
            drop(tx);
            drop(_writer);
            let d = self
                .get_deployment(tenant, deployment_id)
                .await?
                .ok_or(StoreError::NotFound)?;
            return Ok(Appended {
                deployment: d,
                event: None,
            });
        }
        let event = StatusEvent {
            id: change.id.unwrap_or_else(Uuid::now_v7),
            deployment_id,
            tenant: tenant.to_owned(),
            target: change.target.clone(),
            status: change.status,
            message: change.message.clone(),
            occurred_at,
            ingested_at: now,
            late: applied.late,
            recorded_by: actor.to_owned(),
        };
        insert_events(&mut tx, std::slice::from_ref(&event)).await?;
        let s = &applied.state;
        sqlx::query("UPDATE deployments SET status = $1, finished_at = $2, last_event_at = $3, target_status = $4 WHERE id = $5 AND tenant = $6")
            .bind(s.status.as_str())
            .bind(s.finished_at.map(to_micros))
            .bind(to_micros(s.last_event_at))
            .bind(json_text(&s.targets))
            .bind(deployment_id.to_string())
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        if (s.status == DeploymentStatus::Succeeded)
            != (state.status == DeploymentStatus::Succeeded)
        {
            refresh_running(
                &mut tx,
                tenant,
                &current.record.service,
                &current.record.environment.name,
            )
            .await?;
        }
        if let Some(k) = key {
            sqlx::query("INSERT INTO idempotency_keys (scoped_key, request_hash, result_id, created_at) VALUES ($1, $2, $3, $4)")
                .bind(k)
                .bind(request_hash)
                .bind(event.id.to_string())
                .bind(to_micros(now))
                .execute(&mut *tx)
                .await?;
        }
        let entry = PendingEntry::new(
            tenant,
            actor,
            ACTION_DEPLOYMENT_EVENT,
            &deployment_id.to_string(),
            &audit::events_entry_payload(std::slice::from_ref(&event)),
        )
        .with_event(shipgate_domain::events::deployment_status(
            &current.record,
            &event,
            s.status,
        ));
        append_audit(&mut tx, &head, now, vec![entry]).await?;
        tx.commit().await?;
        drop(_writer);
        let d = self
            .get_deployment(tenant, deployment_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(Appended {
            deployment: d,
            event: Some(event),
        })
    }

    async fn get_deployment(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Deployment>> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE id = $1 AND tenant = $2"
        ))
        .bind(id.to_string())
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let mut d = deployment_from_row(&row)?;
        d.events = self.load_events(tenant, id).await?;
        d.corrected_by = sqlx::query(
            "SELECT id FROM deployments WHERE corrects = $1 AND tenant = $2 ORDER BY id",
        )
        .bind(id.to_string())
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| uuid_col(r, "id"))
        .collect::<StoreResult<_>>()?;
        Ok(Some(d))
    }

    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> StoreResult<Page<Deployment>> {
        let limit = limit.clamp(1, 1000);
        let mut qb: QueryBuilder<Db> =
            QueryBuilder::new(format!("SELECT {DEPLOYMENT_COLUMNS} FROM deployments"));
        push_filter(&mut qb, filter, "");
        if let Some(c) = after {
            qb.push(" AND (started_at < ")
                .push_bind(c.started_at_us)
                .push(" OR (started_at = ")
                .push_bind(c.started_at_us)
                .push(" AND id < ")
                .push_bind(c.id.to_string())
                .push("))");
        }
        qb.push(" ORDER BY started_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut items: Vec<Deployment> = rows
            .iter()
            .map(deployment_from_row)
            .collect::<StoreResult<_>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|d| {
                Cursor {
                    started_at_us: to_micros(d.record.started_at),
                    id: d.record.id,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn feed(&self, filter: &DeploymentFilter, limit: u32) -> StoreResult<Vec<FeedEntry>> {
        let cols: String = DEPLOYMENT_COLUMNS
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT {cols}, (SELECT p.version FROM deployments p WHERE p.tenant = d.tenant AND p.service = d.service \
             AND p.environment = d.environment AND p.status IN ('succeeded', 'rolled_back') AND p.started_at < d.started_at \
             ORDER BY p.started_at DESC LIMIT 1) AS previous_version FROM deployments d"
        ));
        push_filter(&mut qb, filter, "d.");
        qb.push(" ORDER BY d.started_at DESC, d.id DESC LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 1000)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(FeedEntry {
                    deployment: deployment_from_row(r)?,
                    previous_version: r.try_get("previous_version")?,
                })
            })
            .collect()
    }

    async fn running(
        &self,
        tenant: &str,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> StoreResult<Vec<RunningVersion>> {
        // Only the columns the answer needs: this is read on every dashboard refresh.
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "SELECT d.id, d.service, d.environment, d.env_tier, d.region, d.version, d.commit_sha, d.artifact_digest, \
             d.deployer, d.started_at, d.finished_at FROM running r JOIN deployments d ON d.tenant = r.tenant AND d.id = r.deployment_id WHERE r.tenant = ",
        );
        qb.push_bind(tenant.to_owned());
        if let Some(s) = service {
            qb.push(" AND r.service = ").push_bind(s.to_owned());
        }
        if let Some(e) = environment {
            qb.push(" AND r.environment = ").push_bind(e.to_owned());
        }
        qb.push(" ORDER BY r.service, r.environment");
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RunningVersion {
                    service: r.try_get("service")?,
                    environment: r.try_get("environment")?,
                    env_tier: opt_tier(r, "env_tier")?,
                    region: r.try_get("region")?,
                    version: r.try_get("version")?,
                    deployment_id: uuid_col(r, "id")?,
                    commit_sha: r.try_get("commit_sha")?,
                    artifact_digest: r.try_get("artifact_digest")?,
                    deployed_at: opt_ts(r, "finished_at")?
                        .map_or_else(|| ts(r, "started_at"), Ok)?,
                    deployer: r.try_get("deployer")?,
                })
            })
            .collect()
    }

    async fn declare_service(
        &self,
        tenant: &str,
        name: &str,
        team: Option<&str>,
        paths: &[String],
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Service> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO services (tenant, name, team, declared, created_at, paths) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, name) DO UPDATE SET team = excluded.team, declared = excluded.declared, paths = excluded.paths",
        )
        .bind(tenant)
        .bind(name)
        .bind(team)
        .bind(true)
        .bind(to_micros(now))
        .bind(json_text(&paths))
        .execute(&mut *tx)
        .await?;
        let payload =
            serde_json::json!({"tenant": tenant, "name": name, "team": team, "paths": paths});
        append_audit(
            &mut tx,
            &head,
            now,
            vec![PendingEntry::new(
                tenant,
                actor,
                "service.declared",
                name,
                &payload,
            )],
        )
        .await?;
        let r = sqlx::query(
            "SELECT name, team, declared, created_at, paths FROM services WHERE tenant = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let s = Service {
            name: r.try_get("name")?,
            team: r.try_get("team")?,
            declared: r.try_get("declared")?,
            created_at: ts(&r, "created_at")?,
            paths: service_paths(&r)?,
        };
        tx.commit().await?;
        Ok(s)
    }

    async fn declare_environment(
        &self,
        tenant: &str,
        env: &ResolvedEnvironment,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Environment> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        sqlx::query(
            "INSERT INTO environments (tenant, name, tier, region, declared, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, name) DO UPDATE SET tier = excluded.tier, region = excluded.region, declared = excluded.declared",
        )
        .bind(tenant)
        .bind(&env.name)
        .bind(env.tier.map(|t| t.as_str()))
        .bind(&env.region)
        .bind(true)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        let payload = serde_json::json!({"tenant": tenant, "name": env.name, "tier": env.tier, "region": env.region, "raw": env.raw});
        append_audit(
            &mut tx,
            &head,
            now,
            vec![PendingEntry::new(
                tenant,
                actor,
                "environment.declared",
                &env.name,
                &payload,
            )],
        )
        .await?;
        let r = sqlx::query("SELECT name, tier, region, declared, created_at FROM environments WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(&env.name)
            .fetch_one(&mut *tx)
            .await?;
        let e = Environment {
            name: r.try_get("name")?,
            tier: opt_tier(&r, "tier")?,
            region: r.try_get("region")?,
            declared: r.try_get("declared")?,
            created_at: ts(&r, "created_at")?,
        };
        tx.commit().await?;
        Ok(e)
    }

    async fn list_services(&self, tenant: &str) -> StoreResult<Vec<Service>> {
        let rows = sqlx::query(
            "SELECT name, team, declared, created_at, paths FROM services WHERE tenant = $1 ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Service {
                    name: r.try_get("name")?,
                    team: r.try_get("team")?,
                    declared: r.try_get("declared")?,
                    created_at: ts(r, "created_at")?,
                    paths: service_paths(r)?,
                })
            })
            .collect()
    }

    async fn list_environments(&self, tenant: &str) -> StoreResult<Vec<Environment>> {
        let rows = sqlx::query("SELECT name, tier, region, declared, created_at FROM environments WHERE tenant = $1 ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Environment {
                    name: r.try_get("name")?,
                    tier: opt_tier(r, "tier")?,
                    region: r.try_get("region")?,
                    declared: r.try_get("declared")?,
                    created_at: ts(r, "created_at")?,
                })
            })
            .collect()
    }

    async fn list_releases(
        &self,
        tenant: &str,
        service: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Release>> {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(
            "SELECT service, version, commit_sha, artifact_digest, first_seen_at FROM releases WHERE tenant = ",
        );
        qb.push_bind(tenant.to_owned());
        if let Some(s) = service {
            qb.push(" AND service = ").push_bind(s.to_owned());
        }
        qb.push(" ORDER BY first_seen_at DESC LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 1000)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Release {
                    service: r.try_get("service")?,
                    version: r.try_get("version")?,
                    commit_sha: r.try_get("commit_sha")?,
                    artifact_digest: r.try_get("artifact_digest")?,
                    first_seen_at: ts(r, "first_seen_at")?,
                })
            })
            .collect()
    }

    async fn create_token(&self, token: &ApiToken, actor: &str) -> StoreResult<()> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        insert_token(&mut tx, token).await?;
        let payload = serde_json::json!({"id": token.id, "tenant": token.tenant, "subject": token.subject, "role": token.role, "root": token.root, "expires_at": token.expires_at, "env_tier": token.env_tier});
        append_audit(
            &mut tx,
            &head,
            token.created_at,
            vec![
                PendingEntry::new(
                    &token.tenant,
                    actor,
                    "token.created",
                    &token.id.to_string(),
                    &payload,
                )
                .touching("api_tokens", &token.tenant, token.id),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>> {
        let r = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<ApiToken>> {
        let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant = $1 AND revoked_at IS NULL ORDER BY created_at, id"))
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(
        &self,
        tenant: &str,
        id: Uuid,
        replacement: Option<&ApiToken>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ApiToken>> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        let Some(old) = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL"))
            .bind(id.to_string())
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let old = token_from_row(&old)?;
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
            .bind(to_micros(now))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let mut entries = vec![PendingEntry::new(
            tenant,
            actor,
            "token.revoked",
            &id.to_string(),
            &serde_json::json!({"id": id, "subject": old.subject, "role": old.role, "replaced_by": replacement.map(|r| r.id)}),
        )
        .touching("api_tokens", tenant, id)];
        if let Some(new) = replacement {
            insert_token(&mut tx, new).await?;
            entries.push(PendingEntry::new(
                tenant,
                actor,
                "token.created",
                &new.id.to_string(),
                &serde_json::json!({"id": new.id, "tenant": new.tenant, "subject": new.subject, "role": new.role, "root": new.root, "expires_at": new.expires_at, "env_tier": new.env_tier, "rotates": id}),
            )
            .touching("api_tokens", &new.tenant, new.id));
        }
        append_audit(&mut tx, &head, now, entries).await?;
        tx.commit().await?;
        Ok(Some(old))
    }

    async fn confirm_token(
        &self,
        tenant: &str,
        id: Uuid,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ApiToken>> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        let n = sqlx::query("UPDATE api_tokens SET confirmed_by = $1 WHERE id = $2 AND tenant = $3 AND revoked_at IS NULL AND confirmed_by IS NULL")
            .bind(actor)
            .bind(id.to_string())
            .bind(tenant)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let t = token_from_row(
            &sqlx::query(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?,
        )?;
        append_audit(
            &mut tx,
            &head,
            now,
            vec![PendingEntry::new(
                tenant,
                actor,
                "token.confirmed",
                &id.to_string(),
                &serde_json::json!({"id": id, "subject": t.subject, "role": t.role, "granted_by": t.created_by, "confirmed_by": actor}),
            )
            .touching("api_tokens", tenant, id)],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(t))
    }

    async fn touch_token(&self, id: Uuid, at: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(to_micros(at))
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn record_access_review(
        &self,
        tenant: &str,
        review: &shipgate_domain::access::AccessReview,
    ) -> StoreResult<Vec<ApiToken>> {
        use shipgate_domain::access::ReviewDecision;
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        let mut revoked = Vec::new();
        let mut entries = Vec::new();
        for item in review
            .items
            .iter()
            .filter(|i| i.decision == ReviewDecision::Revoke)
        {
            let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 AND tenant = $2 AND revoked_at IS NULL"))
                .bind(item.token_id.to_string())
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { continue };
            revoked.push(token_from_row(&row)?);
            sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
                .bind(to_micros(review.completed_at))
                .bind(item.token_id.to_string())
                .execute(&mut *tx)
                .await?;
            entries.push(PendingEntry::new(
                tenant,
                &review.reviewer,
                "token.revoked",
                &item.token_id.to_string(),
                &serde_json::json!({"id": item.token_id, "subject": item.subject, "role": item.role, "access_review": review.id}),
            )
            .touching("api_tokens", tenant, item.token_id));
        }
        sqlx::query("INSERT INTO access_reviews (id, tenant, period, reviewer, items, completed_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(review.id.to_string())
            .bind(tenant)
            .bind(&review.period)
            .bind(&review.reviewer)
            .bind(json_text(&review.items))
            .bind(to_micros(review.completed_at))
            .execute(&mut *tx)
            .await?;
        entries.push(
            PendingEntry::new(
                tenant,
                &review.reviewer,
                "access_review.completed",
                &review.id.to_string(),
                &serde_json::json!(review),
            )
            .touching("access_reviews", tenant, review.id),
        );
        append_audit(&mut tx, &head, review.completed_at, entries).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn access_reviews(
        &self,
        tenant: &str,
    ) -> StoreResult<Vec<shipgate_domain::access::AccessReview>> {
        let rows = sqlx::query("SELECT id, period, reviewer, items, completed_at FROM access_reviews WHERE tenant = $1 ORDER BY completed_at DESC")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(shipgate_domain::access::AccessReview {
                    id: uuid_col(r, "id")?,
                    period: r.try_get("period")?,
                    reviewer: r.try_get("reviewer")?,
                    items: json_col(r, "items")?,
                    completed_at: ts(r, "completed_at")?,
                })
            })
            .collect()
    }

    async fn count_tokens(&self) -> StoreResult<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    async fn record_audit(&self, entries: Vec<PendingEntry>, now: Timestamp) -> StoreResult<()> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        append_audit(&mut tx, &head, now, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_incident(
        &self,
        tenant: &str,
        i: &shipgate_domain::incident::Incident,
        env_tier: Option<shipgate_domain::EnvTier>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        let prev: Option<String> = sqlx::query(
            "SELECT status FROM incidents WHERE tenant = $1 AND source = $2 AND external_id = $3",
        )
        .bind(tenant)
        .bind(&i.source)
        .bind(&i.external_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get("status"))
        .transpose()?;
        if prev.as_deref() == Some(i.status.as_str()) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO incidents (tenant, source, external_id, status, service, started_at, updated_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant, source, external_id) DO UPDATE SET \
             status = excluded.status, updated_at = excluded.updated_at, body = excluded.body",
        )
        .bind(tenant)
        .bind(&i.source)
        .bind(&i.external_id)
        .bind(i.status.as_str())
        .bind(&i.service)
        .bind(to_micros(i.started_at))
        .bind(to_micros(now))
        .bind(json_text(i))
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            &head,
            now,
            vec![
                PendingEntry::new(
                    tenant,
                    actor,
                    &format!("incident.{}", i.status.as_str()),
                    &format!("{}:{}", i.source, i.external_id),
                    &serde_json::json!(i),
                )
                .with_event(shipgate_domain::events::incident_event(
                    tenant, i, env_tier, now,
                )),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_incidents(
        &self,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<shipgate_domain::incident::Incident>> {
        let rows = sqlx::query(
            "SELECT body FROM incidents WHERE tenant = $1 ORDER BY started_at DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| json_col(r, "body")).collect()
    }

    async fn save_protection_request(
        &self,
        tenant: &str,
        id: &str,
        body: &serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let _writer = self.write_lock.lock().await;
        let r = sqlx::query(
            "INSERT INTO protection_requests (id, tenant, body, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(tenant)
        .bind(body.to_string())
        .bind(to_micros(now))
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn pending_protection_requests(
        &self,
    ) -> StoreResult<Vec<(String, String, serde_json::Value, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT id, tenant, body, created_at FROM protection_requests WHERE answered_at IS NULL ORDER BY created_at LIMIT 10000",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("tenant")?,
                    r.try_get("id")?,
                    json_col(r, "body")?,
                    ts(r, "created_at")?,
                ))
            })
            .collect()
    }

    async fn answer_protection_request(&self, id: &str, now: Timestamp) -> StoreResult<()> {
        let _writer = self.write_lock.lock().await;
        sqlx::query("UPDATE protection_requests SET answered_at = $1 WHERE id = $2")
            .bind(to_micros(now))
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn record_commits(
        &self,
        tenant: &str,
        commits: &[shipgate_domain::vcs::CommitRecord],
    ) -> StoreResult<()> {
        if commits.is_empty() {
            return Ok(());
        }
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        for chunk in commits.chunks(CHUNK) {
            let mut qb: QueryBuilder<Db> =
                QueryBuilder::new("INSERT INTO commits (tenant, repository, sha, body) ");
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(tenant.to_owned())
                    .push_bind(c.repository.clone())
                    .push_bind(c.sha.clone())
                    .push_bind(json_text(c));
            });
            qb.push(" ON CONFLICT (tenant, repository, sha) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_pull_request(
        &self,
        tenant: &str,
        pr: &shipgate_domain::vcs::PullRequestRecord,
    ) -> StoreResult<()> {
        let _writer = self.write_lock.lock().await;
        sqlx::query(
            "INSERT INTO pull_requests (tenant, repository, number, head_sha, merge_commit_sha, body) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, repository, number) DO UPDATE SET \
             head_sha = excluded.head_sha, merge_commit_sha = excluded.merge_commit_sha, body = excluded.body",
        )
        .bind(tenant)
        .bind(&pr.repository)
        .bind(pr.number)
        .bind(&pr.head_sha)
        .bind(&pr.merge_commit_sha)
        .bind(json_text(pr))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn commits_between(
        &self,
        tenant: &str,
        from: &str,
        stop: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<shipgate_domain::vcs::CommitRecord>, bool)> {
        let mut out: Vec<shipgate_domain::vcs::CommitRecord> = Vec::new();
        let mut next = Some(from.to_owned());
        while let Some(sha) = next.take() {
            if Some(sha.as_str()) == stop {
                return Ok((out, false));
            }
            if out.len() >= limit || out.iter().any(|c| c.sha == sha) {
                return Ok((out, true));
            }
            let r = sqlx::query("SELECT body FROM commits WHERE tenant = $1 AND sha = $2 LIMIT 1")
                .bind(tenant)
                .bind(&sha)
                .fetch_optional(&self.pool)
                .await?;
            let Some(r) = r else {
                // History unknown from here: complete only when there was nothing to stop at.
                return Ok((out, stop.is_some()));
            };
            let c: shipgate_domain::vcs::CommitRecord = json_col(&r, "body")?;
            next = c.parent.clone();
            out.push(c);
        }
        Ok((out, stop.is_some()))
    }

    async fn record_tag(
        &self,
        tenant: &str,
        t: &shipgate_domain::vcs::TagRecord,
    ) -> StoreResult<()> {
        let _writer = self.write_lock.lock().await;
        sqlx::query(
            "INSERT INTO tags (tenant, repository, name, sha, release_url) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, repository, name) DO UPDATE SET \
             sha = COALESCE(excluded.sha, tags.sha), release_url = COALESCE(excluded.release_url, tags.release_url)",
        )
        .bind(tenant)
        .bind(&t.repository)
        .bind(&t.name)
        .bind(&t.sha)
        .bind(&t.release_url)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn delete_tag(&self, tenant: &str, repository: &str, name: &str) -> StoreResult<()> {
        let _writer = self.write_lock.lock().await;
        sqlx::query("DELETE FROM tags WHERE tenant = $1 AND repository = $2 AND name = $3")
            .bind(tenant)
            .bind(repository)
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn tags_for(
        &self,
        tenant: &str,
        shas: &[String],
    ) -> StoreResult<Vec<shipgate_domain::vcs::TagRecord>> {
        let mut out = Vec::new();
        for chunk in shas.chunks(200) {
            let mut qb: QueryBuilder<Db> = QueryBuilder::new(
                "SELECT repository, name, sha, release_url FROM tags WHERE tenant = ",
            );
            qb.push_bind(tenant.to_owned()).push(" AND sha IN (");
            let mut sep = qb.separated(", ");
            for s in chunk {
                sep.push_bind(s.clone());
            }
            qb.push(") ORDER BY name");
            for r in qb.build().fetch_all(&self.pool).await? {
                out.push(shipgate_domain::vcs::TagRecord {
                    repository: r.try_get("repository")?,
                    name: r.try_get("name")?,
                    sha: r.try_get("sha")?,
                    release_url: r.try_get("release_url")?,
                });
            }
        }
        Ok(out)
    }

    async fn pull_requests_for(
        &self,
        tenant: &str,
        shas: &[String],
    ) -> StoreResult<Vec<shipgate_domain::vcs::PullRequestRecord>> {
        let mut out: Vec<shipgate_domain::vcs::PullRequestRecord> = Vec::new();
        for chunk in shas.chunks(200) {
            let mut qb: QueryBuilder<Db> =
                QueryBuilder::new("SELECT body FROM pull_requests WHERE tenant = ");
            qb.push_bind(tenant.to_owned())
                .push(" AND (merge_commit_sha IN (");
            let mut sep = qb.separated(", ");
            for s in chunk {
                sep.push_bind(s.clone());
            }
            qb.push(") OR head_sha IN (");
            let mut sep = qb.separated(", ");
            for s in chunk {
                sep.push_bind(s.clone());
            }
            qb.push(")) ORDER BY number");
            for r in qb.build().fetch_all(&self.pool).await? {
                let pr: shipgate_domain::vcs::PullRequestRecord = json_col(&r, "body")?;
                if !out
                    .iter()
                    .any(|x| x.repository == pr.repository && x.number == pr.number)
                {
                    out.push(pr);
                }
            }
        }
        Ok(out)
    }

    async fn publish_artifact(
        &self,
        tenant: &str,
        a: &shipgate_domain::provenance::PublishedArtifact,
        actor: &str,
    ) -> StoreResult<bool> {
        let _writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let r = sqlx::query(
            "INSERT INTO artifacts (tenant, digest, name, version, source, published_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, digest, name) DO NOTHING",
        )
        .bind(tenant)
        .bind(&a.digest)
        .bind(&a.name)
        .bind(&a.version)
        .bind(&a.source)
        .bind(to_micros(a.published_at))
        .execute(&mut *tx)
        .await?;
        let created = r.rows_affected() == 1;
        if created {
            let head = lock_head(&mut tx).await?;
            append_audit(
                &mut tx,
                &head,
                a.published_at,
                vec![PendingEntry::new(
                    tenant,
                    actor,
                    "artifact.published",
                    &a.digest,
                    &serde_json::json!(a),
                )],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    async fn find_artifacts(
        &self,
        tenant: &str,
        name: Option<&str>,
        digest: &str,
    ) -> StoreResult<Vec<shipgate_domain::provenance::PublishedArtifact>> {
        let short = name.map(|n| n.rsplit('/').next().unwrap_or(n).to_owned());
        let rows = sqlx::query(
            "SELECT name, version, digest, source, published_at FROM artifacts WHERE tenant = $1 \
             AND (digest = $2 OR name = $3 OR name = $4) ORDER BY published_at DESC LIMIT 200",
        )
        .bind(tenant)
        .bind(digest)
        .bind(name.unwrap_or(""))
        .bind(short.unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(shipgate_domain::provenance::PublishedArtifact {
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    digest: r.try_get("digest")?,
                    source: r.try_get("source")?,
                    published_at: ts(r, "published_at")?,
                })
            })
            .collect()
    }

    async fn record_delivery(
        &self,
        d: &shipgate_domain::integrations::Delivery,
    ) -> StoreResult<bool> {
        let _writer = self.write_lock.lock().await;
        let r = sqlx::query(
            "INSERT INTO webhook_deliveries (source, delivery_id, tenant, event, result, reason, records, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, delivery_id) DO UPDATE SET \
             event = excluded.event, result = excluded.result, reason = excluded.reason, \
             records = excluded.records, received_at = excluded.received_at \
             WHERE webhook_deliveries.result = 'rejected'",
        )
        .bind(&d.source)
        .bind(&d.delivery_id)
        .bind(&d.tenant)
        .bind(&d.event)
        .bind(&d.result)
        .bind(&d.reason)
        .bind(json_text(&d.records))
        .bind(to_micros(d.received_at))
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delivery_created(
        &self,
        source: &str,
        tenant: &str,
        record: &str,
    ) -> StoreResult<bool> {
        let pattern = format!(
            "%{}%",
            serde_json::Value::String(record.to_owned())
                .to_string()
                .replace(['%', '_'], "")
        );
        let r = sqlx::query(
            "SELECT 1 AS one FROM webhook_deliveries WHERE source = $1 AND tenant = $2 \
             AND result = 'accepted' AND records LIKE $3 LIMIT 1",
        )
        .bind(source)
        .bind(tenant)
        .bind(pattern)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.is_some())
    }

    async fn find_delivery(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<shipgate_domain::integrations::Delivery>> {
        let r = sqlx::query(
            "SELECT source, delivery_id, tenant, event, result, reason, records, received_at \
             FROM webhook_deliveries WHERE source = $1 AND delivery_id = $2",
        )
        .bind(source)
        .bind(delivery_id)
        .fetch_optional(&self.pool)
        .await?;
        r.as_ref().map(delivery_from_row).transpose()
    }

    async fn list_deliveries(
        &self,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<shipgate_domain::integrations::Delivery>> {
        let rows = sqlx::query(
            "SELECT source, delivery_id, tenant, event, result, reason, records, received_at \
             FROM webhook_deliveries WHERE tenant = $1 ORDER BY received_at DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn outbox_pending(
        &self,
        sink: &str,
        limit: u32,
    ) -> StoreResult<(i64, Vec<shipgate_domain::events::OutboxRow>)> {
        use shipgate_domain::events::{EventKind, OutboxRow};
        let cursor = outbox_cursor(&self.pool, sink).await?;
        let rows = sqlx::query(
            "SELECT seq, at, tenant, kind, env_tier, event_type, subject_id, body FROM outbox \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(cursor)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(OutboxRow {
                    seq: r.try_get("seq")?,
                    at: ts(r, "at")?,
                    tenant: r.try_get("tenant")?,
                    kind: enum_col(r, "kind", EventKind::parse)?,
                    env_tier: opt_tier(r, "env_tier")?,
                    event_type: r.try_get("event_type")?,
                    subject_id: r.try_get("subject_id")?,
                    body: r.try_get("body")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((cursor, rows))
    }

    async fn outbox_ack(&self, sink: &str, seq: i64, now: Timestamp) -> StoreResult<()> {
        let _writer = self.write_lock.lock().await;
        sqlx::query(
            "INSERT INTO outbox_cursors (sink, seq, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at \
             WHERE outbox_cursors.seq < excluded.seq",
        )
        .bind(sink)
        .bind(seq)
        .bind(to_micros(now))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn outbox_head(&self) -> StoreResult<i64> {
        let r = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM outbox")
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get("seq")?)
    }

    async fn outbox_prune(&self, sinks: &[&str], before: Timestamp) -> StoreResult<u64> {
        let _writer = self.write_lock.lock().await;
        let mut delivered = i64::MAX;
        for sink in sinks {
            delivered = delivered.min(outbox_cursor(&self.writer, sink).await?);
        }
        let r = sqlx::query("DELETE FROM outbox WHERE seq <= $1 AND at < $2")
            .bind(delivered)
            .bind(to_micros(before))
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected())
    }

    async fn audit_head(&self) -> StoreResult<ChainHead> {
        let r = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(ChainHead {
            seq: r.try_get("seq")?,
            hash: r.try_get("hash")?,
        })
    }

    async fn audit_entries(
        &self,
        tenant: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>> {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > "
        ));
        qb.push_bind(after_seq);
        if let Some(t) = tenant {
            qb.push(" AND tenant = ").push_bind(t.to_owned());
        }
        qb.push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 10_000)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn checkpoint_audit(&self, now: Timestamp) -> StoreResult<Option<ChainHead>> {
        let _w = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        let last = sqlx::query("SELECT action FROM audit_log WHERE seq = $1")
            .bind(head.seq)
            .fetch_optional(&mut *tx)
            .await?;
        let last: Option<String> = last.map(|r| r.try_get("action")).transpose()?;
        if head.seq == 0 || last.as_deref() == Some("audit.checkpoint") {
            tx.rollback().await?;
            return Ok(None);
        }
        let entry = PendingEntry::new(
            "shipgate",
            "shipgate",
            "audit.checkpoint",
            &format!("audit-head:{}", head.seq),
            &serde_json::json!({"head": head}),
        )
        .with_event(shipgate_domain::events::audit_checkpoint_event(&head, now));
        append_audit(&mut tx, &head, now, vec![entry]).await?;
        tx.commit().await?;
        Ok(Some(head))
    }

    async fn baseline_audit(&self, now: Timestamp) -> StoreResult<u64> {
        let _w = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        if head.seq == 0 {
            tx.rollback().await?;
            return Ok(0);
        }
        let fingerprinted = sqlx::query(
            "SELECT seq FROM audit_log WHERE payload LIKE '%\"row_fingerprints\"%' ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        if fingerprinted.is_some() {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut entries = Vec::new();
        let mut n = 0u64;
        for spec in crate::rows::GOVERNANCE_TABLES {
            let rows = sqlx::query(&spec.select_all()).fetch_all(&mut *tx).await?;
            let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for r in &rows {
                let (tenant, key, _) = image_from_row(spec, r)?;
                by_tenant.entry(tenant).or_default().push(key);
            }
            for (tenant, keys) in by_tenant {
                for chunk in keys.chunks(CHUNK) {
                    n += chunk.len() as u64;
                    let e = PendingEntry::new(
                        &tenant,
                        "shipgate",
                        "audit.baselined",
                        spec.table,
                        &serde_json::json!({"table": spec.table, "rows": chunk.len()}),
                    );
                    entries.push(
                        chunk
                            .iter()
                            .fold(e, |e, k| e.touching(spec.table, &tenant, k)),
                    );
                }
            }
        }
        if entries.is_empty() {
            entries.push(PendingEntry::new(
                "",
                "shipgate",
                "audit.baselined",
                "governance",
                &serde_json::json!({"row_fingerprints": []}),
            ));
        }
        append_audit(&mut tx, &head, now, entries).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn verify_audit_against(&self, expect: Option<ChainHead>) -> StoreResult<VerifyReport> {
        const PAGE: i64 = 5000;
        // One read transaction: a consistent snapshot while writers go on.
        let mut tx = self.pool.begin().await?;
        if BACKEND == "postgres" {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let hr = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let stored_head = ChainHead {
            seq: hr.try_get("seq")?,
            hash: hr.try_get("hash")?,
        };
        let mut v = audit::Verifier::new().expecting(expect);
        let mut after = i64::MIN;
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"
            ))
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                let e = audit_from_row(r)?;
                after = e.seq;
                v.entry(&e);
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        let mut after = (String::new(), String::new());
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments WHERE tenant > $1 OR (tenant = $1 AND id > $2) ORDER BY tenant, id LIMIT $3"
            ))
            .bind(after.0.clone())
            .bind(after.1.clone())
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
            let page: Vec<Deployment> = rows
                .iter()
                .map(deployment_from_row)
                .collect::<StoreResult<_>>()?;
            // This page's events, in the order they were applied: where the chain recorded them.
            let mut events: HashMap<(String, Uuid), Vec<StatusEvent>> = HashMap::new();
            let mut by_tenant: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for d in &page {
                by_tenant
                    .entry(d.record.tenant.as_str())
                    .or_default()
                    .push(d.record.id.to_string());
            }
            for (tenant, ids) in by_tenant {
                let mut qb: QueryBuilder<Db> = QueryBuilder::new(format!(
                    "SELECT {EVENT_COLUMNS} FROM deployment_events WHERE tenant = "
                ));
                qb.push_bind(tenant.to_owned());
                qb.push(" AND deployment_id IN (");
                let mut sep = qb.separated(", ");
                for id in ids {
                    sep.push_bind(id);
                }
                sep.push_unseparated(")");
                for r in qb.build().fetch_all(&mut *tx).await? {
                    let e = event_from_row(&r)?;
                    events
                        .entry((e.tenant.clone(), e.deployment_id))
                        .or_default()
                        .push(e);
                }
            }
            for evs in events.values_mut() {
                evs.sort_by_key(|e| {
                    (
                        v.position(&audit::event_key(&e.tenant, e.id))
                            .unwrap_or((i64::MAX, 0)),
                        e.id,
                    )
                });
            }
            for d in &page {
                after = (d.record.tenant.clone(), d.record.id.to_string());
                v.record(
                    &audit::deployment_key(&d.record.tenant, d.record.id),
                    &audit::deployment_payload(&d.record),
                );
                let evs = events
                    .remove(&(d.record.tenant.clone(), d.record.id))
                    .unwrap_or_default();
                match lifecycle::replay(&d.record, &evs) {
                    Ok(st) if st.status == d.status && st.finished_at == d.finished_at && st.targets == d.target_status => {}
                    Ok(st) => v.projection_mismatch(
                        d.record.id.to_string(),
                        format!(
                            "deployment {} is stored as '{}' but its recorded events make it '{}': its status was modified",
                            d.record.id, d.status, st.status
                        ),
                    ),
                    Err(m) => v.projection_mismatch(d.record.id.to_string(), format!("deployment {} {m}", d.record.id)),
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        // What runs where must be what the deployments say.
        let stored = sqlx::query("SELECT tenant, service, environment, deployment_id FROM running")
            .fetch_all(&mut *tx)
            .await?;
        let expected = sqlx::query(RUNNING_FROM_DEPLOYMENTS)
            .fetch_all(&mut *tx)
            .await?;
        let key = |r: &DbRow| -> StoreResult<(String, String, String, String)> {
            Ok((
                r.try_get("tenant")?,
                r.try_get("service")?,
                r.try_get("environment")?,
                r.try_get("deployment_id")?,
            ))
        };
        let stored: BTreeSet<_> = stored.iter().map(key).collect::<StoreResult<_>>()?;
        let expected: BTreeSet<_> = expected.iter().map(key).collect::<StoreResult<_>>()?;
        for (t, s, e, id) in stored.symmetric_difference(&expected) {
            v.projection_mismatch(
                format!("running:{t}/{s}/{e}"),
                format!("what runs for {s} in {e} (tenant {t}) disagrees with the deployments (deployment {id})"),
            );
        }
        let mut after = (String::new(), String::new());
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS} FROM deployment_events WHERE tenant > $1 OR (tenant = $1 AND id > $2) ORDER BY tenant, id LIMIT $3"
            ))
            .bind(after.0.clone())
            .bind(after.1.clone())
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                let e = event_from_row(r)?;
                after = (e.tenant.clone(), e.id.to_string());
                v.record(
                    &audit::event_key(&e.tenant, e.id),
                    &audit::event_payload(&e),
                );
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        // Every governance row against the latest entry that wrote it.
        for spec in crate::rows::GOVERNANCE_TABLES {
            let rows = sqlx::query(&spec.select_all()).fetch_all(&mut *tx).await?;
            for r in &rows {
                let (tenant, key, image) = image_from_row(spec, r)?;
                v.record(
                    &audit::RowRef {
                        table: spec.table.into(),
                        tenant,
                        key,
                    },
                    &image,
                );
            }
        }
        tx.rollback().await?;
        Ok(v.finish(Some(stored_head)))
    }
}
