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

mod chain;
mod changes;
mod deployments;
mod identity;
mod inventory;
mod outbox;
mod sources;
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

/// The one audited write. `SqlStore::begin_audited` takes the in-process writer lock, opens
/// the transaction and locks the chain head before anything else is read or written; the
/// writes run on it (it derefs to the connection); `audit` stages the entries that describe
/// them; `commit` seals the staged entries onto the chain (with their row fingerprints and
/// outbox rows), moves the head and commits, all in the one transaction. A transaction that
/// staged no entry is rolled back, so no write commits without its audit entry. Dropping it
/// rolls back too.
pub(super) struct AuditedTx<'s> {
    _writer: tokio::sync::MutexGuard<'s, ()>,
    tx: sqlx::Transaction<'static, Db>,
    head: ChainHead,
    staged: Vec<(Timestamp, Vec<PendingEntry>)>,
    /// Operational rows written in the same transaction (see [`Operational`]).
    operational: Option<Operational>,
}

impl SqlStore {
    pub(super) async fn begin_audited(&self) -> StoreResult<AuditedTx<'_>> {
        let writer = self.write_lock.lock().await;
        let mut tx = self.writer.begin().await?;
        let head = lock_head(&mut tx).await?;
        Ok(AuditedTx {
            _writer: writer,
            tx,
            head,
            staged: Vec::new(),
            operational: None,
        })
    }

    /// For reads that must see this process's last commit (SQLite: the writer connection).
    pub(super) fn own_writes(&self) -> &Pool<Db> {
        &self.writer
    }

    /// A write to operational state (see [`Operational`]): serialised with the audited
    /// writes, and never on the chain.
    pub(super) async fn operational(
        &self,
        _why: Operational,
    ) -> (tokio::sync::MutexGuard<'_, ()>, &Pool<Db>) {
        (self.write_lock.lock().await, &self.writer)
    }
}

impl AuditedTx<'_> {
    /// The chain head as it stood when the transaction began (locked until commit).
    pub(super) fn head(&self) -> &ChainHead {
        &self.head
    }

    /// Stages audit entries for the writes of this transaction, sealed at `now` on commit.
    pub(super) fn audit(&mut self, now: Timestamp, entries: Vec<PendingEntry>) {
        if !entries.is_empty() {
            self.staged.push((now, entries));
        }
    }

    /// Declares that this transaction also writes operational state, which commits even
    /// when no entry is staged.
    pub(super) fn operational(&mut self, why: Operational) {
        self.operational = Some(why);
    }

    /// Seals the staged entries, moves the head and commits; returns the new head. Nothing
    /// staged and nothing operational declared: rolls back (nothing unaudited is committed).
    pub(super) async fn commit(mut self) -> StoreResult<ChainHead> {
        if self.staged.is_empty() && self.operational.is_none() {
            self.tx.rollback().await?;
            return Ok(self.head);
        }
        let mut head = self.head.clone();
        for (now, entries) in std::mem::take(&mut self.staged) {
            head = append_audit(&mut self.tx, &head, now, entries).await?;
        }
        self.tx.commit().await?;
        Ok(head)
    }

    pub(super) async fn rollback(self) -> StoreResult<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl std::ops::Deref for AuditedTx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.tx
    }
}

impl std::ops::DerefMut for AuditedTx<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.tx
    }
}

/// Tables written without an audit entry, each for its reason (ARCHITECTURE.md lists the
/// same; a test holds the two lists equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operational {
    /// `api_tokens.last_used_at`: an observation of use, not a change of privilege.
    TokenLastUsed,
    /// `outbox_cursors` and pruning `outbox`: delivery progress of each sink; the events
    /// themselves were written with their audit entries.
    OutboxProgress,
    /// `commits`: a cache of the repository's history, immutable by SHA and reproducible from
    /// the repository.
    CommitHistory,
    /// `webhook_deliveries`: the record of what arrived. A delivery whose whole effect is a
    /// new deployment commits in that deployment's transaction; the others are recorded after
    /// their audited effect, or as ignored or refused.
    DeliveryLog,
    /// `protection_requests`: pending questions from GitHub, kept until answered; the
    /// answer is a gate call, whose final answer is audited.
    ProtectionRequests,
    /// `gate_calls`: the log of questions asked of the gate; each final answer is audited as
    /// `gate.decided` in the same transaction.
    GateCallLog,
    /// `deployments` and `running` in bulk: the benchmark baseline and bulk loading
    /// (raw_insert_deployments, rebuild_running), outside the port; the verifier reports
    /// such rows as unaudited.
    BulkLoad,
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
        let (_writer, db) = self.operational(Operational::BulkLoad).await;
        for tx_rows in rows.chunks(per_tx.max(1)) {
            let mut tx = db.begin().await?;
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
        let (_writer, db) = self.operational(Operational::BulkLoad).await;
        let mut tx = db.begin().await?;
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
}
