//! Approvals and gates in SQL, compiled once per backend like `sql.rs`: people, approver
//! groups, policy versions, change requests with their decisions and evidence, gate calls and
//! root-cause reviews. Every write appends its audit entries in the same transaction.
use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::json;
use shipgate_domain::approval::{
    Delegation, GateCall, GateState, Group, Person, PolicyRecord, RootCauseReview,
};
use shipgate_domain::audit::{AuditEntry, PendingEntry};
use shipgate_domain::change::{
    ChangeRequest, ChangeSpec, ChangeStatus, Decision, DecisionKind, Evidence,
};
use shipgate_domain::events::{self, EventKind};
use shipgate_domain::time::{Timestamp, to_micros};
use sqlx::{QueryBuilder, Row};
use uuid::Uuid;

use super::super::{Db, NOTIFY_CHANGE};
use super::{
    AUDIT_COLUMNS, Conn, DbRow, Operational, SqlStore, audit_from_row, internal, json_col,
    json_text, opt_ts, opt_uuid_col, ts, uuid_col,
};
use crate::{ChangeBuild, ChangeStore, ChangeUpdate, DelegationCheck, StoreError, StoreResult};

const CHANGE_COLUMNS: &str = "id, tenant, number, change_key, change_type, status, requester, team, revision, rework_count, policy_hash, policy_version, spec, created_at, updated_at, decided_at, review_due_at, reviewed_at, review_escalated_at, escalated_at";
const DECISION_COLUMNS: &str = "id, change_id, tenant, revision, kind, actor, on_behalf_of, group_name, comment, self_approval, policy_hash, at";
const EVIDENCE_COLUMNS: &str =
    "id, change_id, tenant, kind, name, digest, uri, metadata, added_by, added_at";
const DELEGATION_COLUMNS: &str = "id, tenant, from_subject, to_subject, group_name, starts_at, ends_at, reason, created_by, created_at, revoked_at";

fn delegation_from_row(r: &DbRow) -> StoreResult<Delegation> {
    Ok(Delegation {
        id: uuid_col(r, "id")?,
        from: r.try_get("from_subject")?,
        to: r.try_get("to_subject")?,
        group: r.try_get("group_name")?,
        starts_at: ts(r, "starts_at")?,
        ends_at: ts(r, "ends_at")?,
        reason: r.try_get("reason")?,
        created_by: r.try_get("created_by")?,
        created_at: ts(r, "created_at")?,
        revoked_at: opt_ts(r, "revoked_at")?,
    })
}

const GATE_COLUMNS: &str = "id, tenant, change_id, change_key, environment, digest, deployer, caller, state, reasons, policy_hash, waited_ms, at";

fn opt_micros(t: Option<Timestamp>) -> Option<i64> {
    t.map(to_micros)
}

fn change_from_row(r: &DbRow) -> StoreResult<ChangeRequest> {
    let spec: ChangeSpec = json_col(r, "spec")?;
    let status: String = r.try_get("status")?;
    Ok(ChangeRequest {
        id: uuid_col(r, "id")?,
        key: r.try_get("change_key")?,
        tenant: r.try_get("tenant")?,
        spec,
        requester: r.try_get("requester")?,
        status: ChangeStatus::parse(&status)
            .ok_or_else(|| internal(format!("bad change status {status}")))?,
        revision: r.try_get::<i64, _>("revision")? as i32,
        rework_count: r.try_get::<i64, _>("rework_count")? as i32,
        policy_hash: r.try_get("policy_hash")?,
        policy_version: r.try_get("policy_version")?,
        created_at: ts(r, "created_at")?,
        updated_at: ts(r, "updated_at")?,
        decided_at: opt_ts(r, "decided_at")?,
        review_due_at: opt_ts(r, "review_due_at")?,
        reviewed_at: opt_ts(r, "reviewed_at")?,
        review_escalated_at: opt_ts(r, "review_escalated_at")?,
        escalated_at: opt_ts(r, "escalated_at")?,
        decisions: Vec::new(),
        evidence: Vec::new(),
    })
}

fn decision_from_row(r: &DbRow) -> StoreResult<Decision> {
    let kind: String = r.try_get("kind")?;
    Ok(Decision {
        id: uuid_col(r, "id")?,
        revision: r.try_get::<i64, _>("revision")? as i32,
        kind: DecisionKind::parse(&kind).ok_or_else(|| internal(format!("bad kind {kind}")))?,
        actor: r.try_get("actor")?,
        on_behalf_of: r.try_get("on_behalf_of")?,
        group: r.try_get("group_name")?,
        comment: r.try_get("comment")?,
        self_approval: r.try_get("self_approval")?,
        policy_hash: r.try_get("policy_hash")?,
        at: ts(r, "at")?,
    })
}

fn evidence_from_row(r: &DbRow) -> StoreResult<Evidence> {
    Ok(Evidence {
        id: uuid_col(r, "id")?,
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        digest: r.try_get("digest")?,
        uri: r.try_get("uri")?,
        metadata: json_col(r, "metadata")?,
        added_by: r.try_get("added_by")?,
        added_at: ts(r, "added_at")?,
    })
}

fn gate_call_from_row(r: &DbRow) -> StoreResult<GateCall> {
    let state: String = r.try_get("state")?;
    Ok(GateCall {
        id: uuid_col(r, "id")?,
        tenant: r.try_get("tenant")?,
        change_id: opt_uuid_col(r, "change_id")?,
        change: r.try_get("change_key")?,
        environment: r.try_get("environment")?,
        digest: r.try_get("digest")?,
        deployer: r.try_get("deployer")?,
        caller: r.try_get("caller")?,
        state: shipgate_domain::approval::GateState::parse(&state)
            .ok_or_else(|| internal(format!("bad gate state {state}")))?,
        reasons: json_col(r, "reasons")?,
        policy_hash: r.try_get("policy_hash")?,
        waited_ms: r.try_get("waited_ms")?,
        at: ts(r, "at")?,
        env_tier: None,
    })
}

fn policy_from_row(r: &DbRow) -> StoreResult<PolicyRecord> {
    Ok(PolicyRecord {
        version: r.try_get("version")?,
        hash: r.try_get("hash")?,
        text: r.try_get("text")?,
        pushed_by: r.try_get("pushed_by")?,
        pushed_at: ts(r, "pushed_at")?,
    })
}

/// Writes the change's current state (insert or full update of the projection row).
async fn write_change(
    conn: &mut Conn,
    c: &ChangeRequest,
    number: i64,
    insert: bool,
) -> StoreResult<()> {
    let sql = if insert {
        format!(
            "INSERT INTO changes ({CHANGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        )
    } else {
        "UPDATE changes SET tenant = $2, number = $3, change_key = $4, change_type = $5, status = $6, requester = $7, team = $8, revision = $9, rework_count = $10, policy_hash = $11, policy_version = $12, spec = $13, created_at = $14, updated_at = $15, decided_at = $16, review_due_at = $17, reviewed_at = $18, review_escalated_at = $19, escalated_at = $20 WHERE id = $1".to_owned()
    };
    sqlx::query(&sql)
        .bind(c.id.to_string())
        .bind(&c.tenant)
        .bind(number)
        .bind(&c.key)
        .bind(c.spec.change_type.as_str())
        .bind(c.status.as_str())
        .bind(&c.requester)
        .bind(&c.spec.team)
        .bind(i64::from(c.revision))
        .bind(i64::from(c.rework_count))
        .bind(&c.policy_hash)
        .bind(c.policy_version)
        .bind(json_text(&c.spec))
        .bind(to_micros(c.created_at))
        .bind(to_micros(c.updated_at))
        .bind(opt_micros(c.decided_at))
        .bind(opt_micros(c.review_due_at))
        .bind(opt_micros(c.reviewed_at))
        .bind(opt_micros(c.review_escalated_at))
        .bind(opt_micros(c.escalated_at))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn notify(conn: &mut Conn, id: Uuid) -> StoreResult<()> {
    if let Some(sql) = NOTIFY_CHANGE {
        sqlx::query(sql)
            .bind(id.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl SqlStore {
    async fn load_change_rows(
        &self,
        conn: &mut Conn,
        mut c: ChangeRequest,
    ) -> StoreResult<ChangeRequest> {
        let rows = sqlx::query(&format!(
            "SELECT {DECISION_COLUMNS} FROM change_decisions WHERE change_id = $1 ORDER BY at, id"
        ))
        .bind(c.id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        c.decisions = rows
            .iter()
            .map(decision_from_row)
            .collect::<StoreResult<_>>()?;
        let rows = sqlx::query(&format!(
            "SELECT {EVIDENCE_COLUMNS} FROM change_evidence WHERE change_id = $1 ORDER BY added_at, id"
        ))
        .bind(c.id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        c.evidence = rows
            .iter()
            .map(evidence_from_row)
            .collect::<StoreResult<_>>()?;
        Ok(c)
    }

    async fn find_change(
        &self,
        conn: &mut Conn,
        tenant: &str,
        key: &str,
    ) -> StoreResult<Option<(ChangeRequest, i64)>> {
        let by_id = Uuid::parse_str(key).is_ok();
        let sql = if by_id {
            format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE tenant = $1 AND id = $2")
        } else {
            format!("SELECT {CHANGE_COLUMNS} FROM changes WHERE tenant = $1 AND change_key = $2")
        };
        let key = if by_id {
            key.to_ascii_lowercase()
        } else {
            key.to_ascii_uppercase()
        };
        let Some(r) = sqlx::query(&sql)
            .bind(tenant)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let number: i64 = r.try_get("number")?;
        let c = change_from_row(&r)?;
        Ok(Some((self.load_change_rows(conn, c).await?, number)))
    }
}

#[async_trait]
impl ChangeStore for SqlStore {
    async fn put_person(&self, tenant: &str, p: &Person, actor: &str) -> StoreResult<()> {
        let mut tx = self.begin_audited().await?;
        sqlx::query(
            "INSERT INTO people (tenant, subject, name, email, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, subject) DO UPDATE SET name = excluded.name, email = excluded.email",
        )
        .bind(tenant)
        .bind(&p.subject)
        .bind(&p.name)
        .bind(&p.email)
        .bind(to_micros(p.created_at))
        .execute(&mut *tx)
        .await?;
        tx.audit(
            p.created_at,
            vec![
                PendingEntry::new(tenant, actor, "person.saved", &p.subject, &json!(p))
                    .touching("people", tenant, &p.subject),
            ],
        );
        tx.commit().await?;
        Ok(())
    }

    async fn list_people(&self, tenant: &str) -> StoreResult<Vec<Person>> {
        let rows = sqlx::query("SELECT subject, name, email, created_at FROM people WHERE tenant = $1 ORDER BY subject")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Person {
                    subject: r.try_get("subject")?,
                    name: r.try_get("name")?,
                    email: r.try_get("email")?,
                    created_at: ts(r, "created_at")?,
                })
            })
            .collect()
    }

    async fn put_group(
        &self,
        tenant: &str,
        g: &Group,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_audited().await?;
        sqlx::query(
            "INSERT INTO approver_groups (tenant, name, body, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(tenant)
        .bind(&g.name)
        .bind(json_text(g))
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await?;
        tx.audit(
            now,
            vec![
                PendingEntry::new(
                    tenant,
                    actor,
                    "group.saved",
                    &format!("group:{}", g.name),
                    &json!(g),
                )
                .touching("approver_groups", tenant, &g.name),
            ],
        );
        tx.commit().await?;
        Ok(())
    }

    async fn apply_directory_sync(
        &self,
        tenant: &str,
        plan: &shipgate_domain::directory::SyncPlan,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        if plan.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_audited().await?;
        for p in &plan.new_people {
            sqlx::query(
                "INSERT INTO people (tenant, subject, name, email, created_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant, subject) DO NOTHING",
            )
            .bind(tenant)
            .bind(&p.subject)
            .bind(&p.name)
            .bind(&p.email)
            .bind(to_micros(p.created_at))
            .execute(&mut *tx)
            .await?;
        }
        for g in &plan.groups {
            sqlx::query(
                "INSERT INTO approver_groups (tenant, name, body, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant, name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .bind(tenant)
            .bind(&g.name)
            .bind(json_text(g))
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await?;
        }
        let mut entry = PendingEntry::new(
            tenant,
            actor,
            "directory.synced",
            "directory",
            &json!({
                "new_people": plan.new_people.iter().map(|p| &p.subject).collect::<Vec<_>>(),
                "changes": plan.changes,
                "missing": plan.missing,
            }),
        );
        for p in &plan.new_people {
            entry = entry.touching("people", tenant, &p.subject);
        }
        for g in &plan.groups {
            entry = entry.touching("approver_groups", tenant, &g.name);
        }
        tx.audit(now, vec![entry]);
        tx.commit().await?;
        Ok(())
    }

    async fn list_groups(&self, tenant: &str) -> StoreResult<Vec<Group>> {
        let rows = sqlx::query("SELECT body FROM approver_groups WHERE tenant = $1 ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| json_col(r, "body")).collect()
    }

    async fn push_policy(
        &self,
        tenant: &str,
        text: &str,
        hash: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<(PolicyRecord, bool)> {
        let mut tx = self.begin_audited().await?;
        let cur = sqlx::query("SELECT version, hash, text, pushed_by, pushed_at FROM policies WHERE tenant = $1 ORDER BY version DESC LIMIT 1")
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
        let cur = cur.as_ref().map(policy_from_row).transpose()?;
        if let Some(c) = &cur
            && c.hash == hash
        {
            tx.rollback().await?;
            return Ok((c.clone(), false));
        }
        let rec = PolicyRecord {
            version: cur.as_ref().map_or(1, |c| c.version + 1),
            hash: hash.to_owned(),
            text: text.to_owned(),
            pushed_by: actor.to_owned(),
            pushed_at: now,
        };
        sqlx::query("INSERT INTO policies (tenant, version, hash, text, pushed_by, pushed_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(tenant)
            .bind(rec.version)
            .bind(&rec.hash)
            .bind(&rec.text)
            .bind(&rec.pushed_by)
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await?;
        tx.audit(now, vec![PendingEntry::new(
                tenant,
                actor,
                "policy.pushed",
                &format!("policy:{}", rec.version),
                &json!({"version": rec.version, "hash": rec.hash, "previous_hash": cur.map(|c| c.hash), "text": rec.text}),
            )
            .touching("policies", tenant, rec.version)]);
        tx.commit().await?;
        Ok((rec, true))
    }

    async fn current_policy(&self, tenant: &str) -> StoreResult<Option<PolicyRecord>> {
        let r = sqlx::query("SELECT version, hash, text, pushed_by, pushed_at FROM policies WHERE tenant = $1 ORDER BY version DESC LIMIT 1")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(policy_from_row).transpose()
    }

    async fn policy_history(&self, tenant: &str) -> StoreResult<Vec<PolicyRecord>> {
        let rows = sqlx::query("SELECT version, hash, text, pushed_by, pushed_at FROM policies WHERE tenant = $1 ORDER BY version DESC")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn create_change_from(
        &self,
        tenant: &str,
        actor: &str,
        build: ChangeBuild,
        now: Timestamp,
        delivery: Option<shipgate_domain::integrations::Delivery>,
    ) -> StoreResult<ChangeRequest> {
        let mut tx = self.begin_audited().await?;
        let n: Option<i64> = sqlx::query("SELECT MAX(number) AS n FROM changes WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        let number = n.unwrap_or(0) + 1;
        let c = build(number)?;
        write_change(&mut tx, &c, number, true).await?;
        let mut entries = vec![
            PendingEntry::new(
                tenant,
                actor,
                "change.submitted",
                &c.id.to_string(),
                &json!({"key": c.key, "revision": c.revision, "spec": c.spec, "status": c.status, "policy_hash": c.policy_hash}),
            )
            .touching("changes", tenant, c.id)
            .with_event(events::change_event(&c, "submitted", EventKind::Change, now)),
        ];
        if c.status == ChangeStatus::Approved {
            entries.push(
                PendingEntry::new(
                    tenant,
                    "policy",
                    "change.approved",
                    &c.id.to_string(),
                    &json!({"key": c.key, "revision": c.revision, "by": "policy", "policy_hash": c.policy_hash, "reason": "pre-approved or no review required by the policy"}),
                )
                .with_event(events::change_event(&c, "approved", EventKind::Approval, now)),
            );
        }
        tx.audit(now, entries);
        if let Some(mut d) = delivery {
            // Whoever reads the change's events (the ITSM write-back) finds the delivery that
            // opened it: they commit together.
            d.records = vec![c.key.clone()];
            tx.operational(Operational::DeliveryLog);
            super::sources::insert_delivery(&mut tx, &d).await?;
        }
        notify(&mut tx, c.id).await?;
        tx.commit().await?;
        Ok(c)
    }

    async fn get_change(&self, tenant: &str, key: &str) -> StoreResult<Option<ChangeRequest>> {
        let mut conn = self.pool.acquire().await?;
        Ok(self
            .find_change(&mut conn, tenant, key)
            .await?
            .map(|(c, _)| c))
    }

    async fn list_changes(
        &self,
        tenant: &str,
        status: Option<ChangeStatus>,
        limit: u32,
    ) -> StoreResult<Vec<ChangeRequest>> {
        let mut qb: QueryBuilder<Db> = QueryBuilder::new(format!(
            "SELECT {CHANGE_COLUMNS} FROM changes WHERE tenant = "
        ));
        qb.push_bind(tenant.to_owned());
        if let Some(s) = status {
            qb.push(" AND status = ").push_bind(s.as_str().to_owned());
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit.clamp(1, 1000)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut changes: Vec<ChangeRequest> = rows
            .iter()
            .map(change_from_row)
            .collect::<StoreResult<_>>()?;
        if changes.is_empty() {
            return Ok(changes);
        }
        // Decisions and evidence of the whole page in two queries.
        let mut decisions: HashMap<Uuid, Vec<Decision>> = HashMap::new();
        let mut evidence: HashMap<Uuid, Vec<Evidence>> = HashMap::new();
        for (table, cols) in [
            ("change_decisions", DECISION_COLUMNS),
            ("change_evidence", EVIDENCE_COLUMNS),
        ] {
            let mut qb: QueryBuilder<Db> =
                QueryBuilder::new(format!("SELECT {cols} FROM {table} WHERE change_id IN ("));
            let mut sep = qb.separated(", ");
            for c in &changes {
                sep.push_bind(c.id.to_string());
            }
            sep.push_unseparated(")");
            for r in qb.build().fetch_all(&self.pool).await? {
                let cid = uuid_col(&r, "change_id")?;
                if table == "change_decisions" {
                    decisions
                        .entry(cid)
                        .or_default()
                        .push(decision_from_row(&r)?);
                } else {
                    evidence
                        .entry(cid)
                        .or_default()
                        .push(evidence_from_row(&r)?);
                }
            }
        }
        for c in &mut changes {
            let mut d = decisions.remove(&c.id).unwrap_or_default();
            d.sort_by_key(|x| (x.at, x.id));
            c.decisions = d;
            let mut e = evidence.remove(&c.id).unwrap_or_default();
            e.sort_by_key(|x| (x.added_at, x.id));
            c.evidence = e;
        }
        Ok(changes)
    }

    async fn update_change(
        &self,
        tenant: &str,
        key: &str,
        actor: &str,
        update: ChangeUpdate,
        now: Timestamp,
    ) -> StoreResult<ChangeRequest> {
        let mut tx = self.begin_audited().await?;
        let Some((current, number)) = self.find_change(&mut tx, tenant, key).await? else {
            return Err(StoreError::NotFound);
        };
        let m = update(&current)?;
        if let Some(c) = &m.change {
            write_change(&mut tx, c, number, false).await?;
        }
        if let Some(d) = &m.decision {
            sqlx::query(&format!(
                "INSERT INTO change_decisions ({DECISION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ))
            .bind(d.id.to_string())
            .bind(current.id.to_string())
            .bind(tenant)
            .bind(i64::from(d.revision))
            .bind(d.kind.as_str())
            .bind(&d.actor)
            .bind(&d.on_behalf_of)
            .bind(&d.group)
            .bind(&d.comment)
            .bind(d.self_approval)
            .bind(&d.policy_hash)
            .bind(to_micros(d.at))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(e) = &m.evidence {
            sqlx::query(&format!(
                "INSERT INTO change_evidence ({EVIDENCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ))
            .bind(e.id.to_string())
            .bind(current.id.to_string())
            .bind(tenant)
            .bind(&e.kind)
            .bind(&e.name)
            .bind(&e.digest)
            .bind(&e.uri)
            .bind(json_text(&e.metadata))
            .bind(&e.added_by)
            .bind(to_micros(e.added_at))
            .execute(&mut *tx)
            .await?;
        }
        // A state change publishes one event per audit entry; a refusal publishes nothing.
        let changed = m.refused.is_none()
            && (m.change.is_some() || m.decision.is_some() || m.evidence.is_some());
        let mut after = m.change.clone().unwrap_or_else(|| current.clone());
        if let Some(d) = &m.decision {
            after.decisions.push(d.clone());
        }
        if let Some(e) = &m.evidence {
            after.evidence.push(e.clone());
        }
        let kind = if m.decision.is_some() {
            EventKind::Approval
        } else {
            EventKind::Change
        };
        let entries: Vec<PendingEntry> = m
            .audit
            .iter()
            .map(|(action, payload)| {
                let e = PendingEntry::new(tenant, actor, action, &current.id.to_string(), payload);
                if changed {
                    let predicate = action.rsplit('.').next().unwrap_or(action);
                    e.with_event(events::change_event(&after, predicate, kind, now))
                } else {
                    e
                }
            })
            .collect();
        // The rows written are fingerprinted on the first entry (every write has one).
        let mut entries = entries;
        let mut touched: Vec<(&str, String)> = Vec::new();
        if m.change.is_some() {
            touched.push(("changes", current.id.to_string()));
        }
        if let Some(d) = &m.decision {
            touched.push(("change_decisions", d.id.to_string()));
        }
        if let Some(e) = &m.evidence {
            touched.push(("change_evidence", e.id.to_string()));
        }
        if !touched.is_empty() {
            if entries.is_empty() {
                entries.push(PendingEntry::new(
                    tenant,
                    actor,
                    "change.updated",
                    &current.id.to_string(),
                    &json!({"key": current.key}),
                ));
            }
            let first = entries.remove(0);
            let first = touched
                .into_iter()
                .fold(first, |e, (t, k)| e.touching(t, tenant, k));
            entries.insert(0, first);
        }
        tx.audit(now, entries);
        if m.change.is_some() || m.decision.is_some() || m.evidence.is_some() {
            notify(&mut tx, current.id).await?;
        }
        tx.commit().await?;
        if let Some((code, message)) = m.refused {
            return Err(StoreError::Conflict { code, message });
        }
        let mut conn = self.own_writes().acquire().await?;
        self.find_change(&mut conn, tenant, &current.id.to_string())
            .await?
            .map(|(c, _)| c)
            .ok_or(StoreError::NotFound)
    }

    async fn overdue_reviews(&self, now: Timestamp) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT tenant, change_key FROM changes WHERE reviewed_at IS NULL AND review_due_at IS NOT NULL \
             AND review_due_at < $1 AND review_escalated_at IS NULL ORDER BY review_due_at LIMIT 500",
        )
        .bind(to_micros(now))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant")?, r.try_get("change_key")?)))
            .collect()
    }

    async fn pending_unescalated(&self) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT tenant, change_key FROM changes WHERE status = 'pending' AND escalated_at IS NULL ORDER BY updated_at LIMIT 1000",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("tenant")?, r.try_get("change_key")?)))
            .collect()
    }

    async fn log_gate_calls(&self, calls: &[GateCall]) -> StoreResult<()> {
        if calls.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_audited().await?;
        // Final answers (not "pending") are audited and published; every call is logged.
        let finals: Vec<PendingEntry> = calls
            .iter()
            .filter(|c| c.state != GateState::Pending)
            .map(|c| {
                let payload = json!(c);
                let tier = c.env_tier;
                PendingEntry::new(&c.tenant, &c.caller, "gate.decided", &c.change, &payload)
                    .with_event(events::gate_event(
                        &c.tenant,
                        &c.change,
                        &c.environment,
                        tier,
                        &payload,
                        c.at,
                    ))
            })
            .collect();
        if !finals.is_empty() {
            let at = calls
                .iter()
                .map(|c| c.at)
                .max()
                .unwrap_or_else(chrono::Utc::now);
            tx.audit(at, finals);
        }
        tx.operational(Operational::GateCallLog);
        for chunk in calls.chunks(500) {
            let mut qb: QueryBuilder<Db> =
                QueryBuilder::new(format!("INSERT INTO gate_calls ({GATE_COLUMNS}) "));
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(c.id.to_string())
                    .push_bind(c.tenant.clone())
                    .push_bind(c.change_id.map(|u| u.to_string()))
                    .push_bind(c.change.clone())
                    .push_bind(c.environment.clone())
                    .push_bind(c.digest.clone())
                    .push_bind(c.deployer.clone())
                    .push_bind(c.caller.clone())
                    .push_bind(c.state.as_str().to_owned())
                    .push_bind(json_text(&c.reasons))
                    .push_bind(c.policy_hash.clone())
                    .push_bind(c.waited_ms)
                    .push_bind(to_micros(c.at));
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn gate_calls(&self, tenant: &str, change_key: &str) -> StoreResult<Vec<GateCall>> {
        let rows = sqlx::query(&format!(
            "SELECT {GATE_COLUMNS} FROM gate_calls WHERE tenant = $1 AND change_key = $2 ORDER BY at, id LIMIT 10000"
        ))
        .bind(tenant)
        .bind(change_key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(gate_call_from_row).collect()
    }

    async fn emergency_changes(
        &self,
        tenant: &str,
        team: &str,
        since: Timestamp,
    ) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT change_key FROM changes WHERE tenant = $1 AND team = $2 AND change_type = 'emergency' AND created_at >= $3 ORDER BY created_at",
        )
        .bind(tenant)
        .bind(team)
        .bind(to_micros(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("change_key")?)).collect()
    }

    async fn open_root_cause_review(&self, tenant: &str, r: &RootCauseReview) -> StoreResult<bool> {
        let mut tx = self.begin_audited().await?;
        let exists = sqlx::query(
            "SELECT id FROM root_cause_reviews WHERE tenant = $1 AND team = $2 AND month = $3",
        )
        .bind(tenant)
        .bind(&r.team)
        .bind(&r.month)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("INSERT INTO root_cause_reviews (id, tenant, team, month, changes, opened_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(r.id.to_string())
            .bind(tenant)
            .bind(&r.team)
            .bind(&r.month)
            .bind(json_text(&r.changes))
            .bind(to_micros(r.opened_at))
            .execute(&mut *tx)
            .await?;
        tx.audit(
            r.opened_at,
            vec![
                PendingEntry::new(
                    tenant,
                    "shipgate",
                    "review.root_cause_opened",
                    &r.id.to_string(),
                    &json!(r),
                )
                .touching("root_cause_reviews", tenant, r.id),
            ],
        );
        tx.commit().await?;
        Ok(true)
    }

    async fn root_cause_reviews(&self, tenant: &str) -> StoreResult<Vec<RootCauseReview>> {
        let rows = sqlx::query("SELECT id, team, month, changes, opened_at FROM root_cause_reviews WHERE tenant = $1 ORDER BY opened_at DESC")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RootCauseReview {
                    id: uuid_col(r, "id")?,
                    team: r.try_get("team")?,
                    month: r.try_get("month")?,
                    changes: json_col(r, "changes")?,
                    opened_at: ts(r, "opened_at")?,
                })
            })
            .collect()
    }

    async fn put_delegation(
        &self,
        tenant: &str,
        d: &Delegation,
        check: DelegationCheck,
    ) -> StoreResult<()> {
        let mut tx = self.begin_audited().await?;
        let rows = sqlx::query(&format!(
            "SELECT {DELEGATION_COLUMNS} FROM delegations WHERE tenant = $1 AND revoked_at IS NULL AND ends_at > $2"
        ))
        .bind(tenant)
        .bind(to_micros(d.created_at))
        .fetch_all(&mut *tx)
        .await?;
        let existing: Vec<Delegation> = rows
            .iter()
            .map(delegation_from_row)
            .collect::<StoreResult<_>>()?;
        check(&existing)?;
        sqlx::query(&format!(
            "INSERT INTO delegations ({DELEGATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)"
        ))
        .bind(d.id.to_string())
        .bind(tenant)
        .bind(&d.from)
        .bind(&d.to)
        .bind(&d.group)
        .bind(to_micros(d.starts_at))
        .bind(to_micros(d.ends_at))
        .bind(&d.reason)
        .bind(&d.created_by)
        .bind(to_micros(d.created_at))
        .execute(&mut *tx)
        .await?;
        tx.audit(
            d.created_at,
            vec![
                PendingEntry::new(
                    tenant,
                    &d.created_by,
                    "delegation.created",
                    &d.id.to_string(),
                    &json!(d),
                )
                .touching("delegations", tenant, d.id),
            ],
        );
        notify(&mut tx, Uuid::nil()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_delegations(&self, tenant: &str) -> StoreResult<Vec<Delegation>> {
        let rows = sqlx::query(&format!(
            "SELECT {DELEGATION_COLUMNS} FROM delegations WHERE tenant = $1 ORDER BY created_at DESC, id DESC LIMIT 1000"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delegation_from_row).collect()
    }

    async fn revoke_delegation(
        &self,
        tenant: &str,
        id: Uuid,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_audited().await?;
        let n = sqlx::query("UPDATE delegations SET revoked_at = $1 WHERE id = $2 AND tenant = $3 AND revoked_at IS NULL")
            .bind(to_micros(now))
            .bind(id.to_string())
            .bind(tenant)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.audit(
            now,
            vec![
                PendingEntry::new(
                    tenant,
                    actor,
                    "delegation.revoked",
                    &id.to_string(),
                    &json!({"id": id}),
                )
                .touching("delegations", tenant, id),
            ],
        );
        notify(&mut tx, Uuid::nil()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn audit_for_subject(&self, tenant: &str, subject: &str) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE subject = $1 AND tenant = $2 ORDER BY seq LIMIT 10000"
        ))
        .bind(subject)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn listen_changes(
        &self,
    ) -> StoreResult<Option<futures::stream::BoxStream<'static, Uuid>>> {
        super::super::listen(&self.pool).await
    }
}
