//! The tamper-evident audit chain.
//!
//! Every write appends an entry `{format, seq, at, tenant, actor, action, subject,
//! payload_hash, prev_hash}`; its `hash` is the SHA-256 of that object's canonical JSON, and
//! `prev_hash` is the previous entry's hash (64 zeros for the first). The payload is the
//! canonical JSON of the facts written, so a verifier can recompute it from the stored records
//! and detect edits, deletions and insertions made behind shipgate's back. Canonical JSON is
//! the exact format [`canonical_json`] documents (keys sorted by their UTF-8 bytes, `serde_json`
//! rendering, no whitespace): close to RFC 8785 but not it.
//!
//! Deployments and status events are themselves immutable records, so their entries do not
//! copy them: the payload lists each record's fingerprint (the SHA-256 of the record's
//! canonical JSON), `{"deployment": H, "events": [[event id, H], ...]}`, in the order the
//! events were applied. The subject is the deployment id, so one deployment's entries are
//! found together.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

pub use crate::canonical::{ChainHead, GENESIS_HASH, canonical_json, sha256_hex};
use crate::model::{NewDeployment, StatusEvent};
use crate::time::{Timestamp, format, to_micros};

/// Version of the entry format; hashed into every entry.
pub const AUDIT_FORMAT: i32 = 1;

pub const ACTION_DEPLOYMENT_CREATED: &str = "deployment.created";
pub const ACTION_DEPLOYMENT_EVENT: &str = "deployment.status_changed";

/// An entry before it is chained.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEntry {
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// Canonical JSON of the facts written.
    pub payload: String,
    /// The event this change publishes (written to the outbox with the entry).
    pub event: Option<crate::events::OutboxEvent>,
    /// Governance rows this entry wrote: the store fingerprints each row as stored (inside
    /// the same transaction) and adds `records` to the payload before sealing it.
    pub rows: Vec<RowRef>,
}

/// A row of a governance table, by tenant and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RowRef {
    #[serde(rename = "t")]
    pub table: String,
    pub tenant: String,
    #[serde(rename = "k")]
    pub key: String,
}

/// One row's fingerprint as an entry commits to it (`h: null`: the row was deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowFingerprint {
    #[serde(flatten)]
    pub row: RowRef,
    pub h: Option<String>,
}

impl PendingEntry {
    pub fn new(tenant: &str, actor: &str, action: &str, subject: &str, payload: &Value) -> Self {
        PendingEntry {
            tenant: tenant.to_owned(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            payload: canonical_json(payload),
            event: None,
            rows: Vec::new(),
        }
    }

    /// Declares a governance row this entry wrote (its fingerprint is added at commit).
    pub fn touching(mut self, table: &str, tenant: &str, key: impl ToString) -> Self {
        self.rows.push(RowRef {
            table: table.to_owned(),
            tenant: tenant.to_owned(),
            key: key.to_string(),
        });
        self
    }

    /// Adds the rows' fingerprints to the payload (`records`), as the store does before
    /// sealing (`row_fingerprints`). A payload that is not an object is wrapped as
    /// `{"value": ...}`.
    pub fn seal_records(&mut self, fps: Vec<RowFingerprint>) {
        if fps.is_empty() {
            return;
        }
        let v: Value = serde_json::from_str(&self.payload).unwrap_or(Value::Null);
        let mut obj = match v {
            Value::Object(o) => o,
            other => {
                let mut o = serde_json::Map::new();
                o.insert("value".into(), other);
                o
            }
        };
        obj.insert("row_fingerprints".into(), json!(fps));
        self.payload = canonical_json(&Value::Object(obj));
        self.rows.clear();
    }

    pub fn with_event(mut self, e: crate::events::OutboxEvent) -> Self {
        self.event = Some(e);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub format: i32,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub payload_hash: String,
    pub prev_hash: String,
    pub hash: String,
    pub payload: String,
}

pub fn entry_hash(e: &AuditEntry) -> String {
    let body = json!({
        "format": e.format,
        "seq": e.seq,
        "at": to_micros(e.at),
        "tenant": e.tenant,
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "payload_hash": e.payload_hash,
        "prev_hash": e.prev_hash,
    });
    sha256_hex(canonical_json(&body).as_bytes())
}

/// Chains pending entries onto `head`, returning the sealed entries and the new head.
pub fn seal(
    head: &ChainHead,
    at: Timestamp,
    pending: Vec<PendingEntry>,
) -> (Vec<AuditEntry>, ChainHead) {
    let mut prev = head.clone();
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        let mut e = AuditEntry {
            seq: prev.seq + 1,
            format: AUDIT_FORMAT,
            at,
            tenant: p.tenant,
            actor: p.actor,
            action: p.action,
            subject: p.subject,
            payload_hash: sha256_hex(p.payload.as_bytes()),
            prev_hash: prev.hash.clone(),
            hash: String::new(),
            payload: p.payload,
        };
        e.hash = entry_hash(&e);
        prev = ChainHead {
            seq: e.seq,
            hash: e.hash.clone(),
        };
        out.push(e);
    }
    (out, prev)
}

/// The facts of a deployment that its audit entry commits to.
pub fn deployment_payload(d: &NewDeployment) -> Value {
    let mut v = json!({
        "schema_version": d.schema_version,
        "id": d.id,
        "tenant": d.tenant,
        "correlation_id": d.correlation_id,
        "service": d.service,
        "team": d.team,
        "environment": d.environment.name,
        "environment_raw": d.environment.raw,
        "env_tier": d.environment.tier.map(|t| t.as_str()),
        "region": d.environment.region,
        "version": d.version,
        "commit_sha": d.commit_sha,
        "git_ref": d.git_ref,
        "repository": d.repository,
        "artifact_name": d.artifact_name,
        "artifact_digest": d.artifact_digest,
        "deployer": d.deployer,
        "deployer_type": d.deployer_type.as_str(),
        "kind": d.kind.as_str(),
        "trigger": d.trigger.as_str(),
        "change_ref": d.change_ref,
        "labels": d.labels,
        "targets": d.targets,
        "corrects": d.corrects,
        "started_at": format(d.started_at),
        "ingested_at": format(d.ingested_at),
        "backfilled": d.backfilled,
        "initial_status": d.initial_status.as_str(),
        "initial_finished_at": d.initial_finished_at.map(format),
        "recorded_by": d.recorded_by,
    });
    // Added with the approvals capability; absent on records that never carried it.
    if let (Some(a), Some(m)) = (&d.approval, v.as_object_mut()) {
        m.insert("approval".into(), json!(a));
    }
    v
}

/// The facts of a status event that its audit entry commits to.
pub fn event_payload(e: &StatusEvent) -> Value {
    json!({
        "id": e.id,
        "deployment_id": e.deployment_id,
        "tenant": e.tenant,
        "target": e.target,
        "status": e.status.as_str(),
        "message": e.message,
        "occurred_at": format(e.occurred_at),
        "ingested_at": format(e.ingested_at),
        "late": e.late,
        "recorded_by": e.recorded_by,
    })
}

/// The fingerprint of a record: SHA-256 of its canonical JSON.
pub fn fingerprint(payload: &Value) -> String {
    sha256_hex(canonical_json(payload).as_bytes())
}

/// The payload of a `deployment.created` entry: the deployment's fingerprint and those of the
/// status events recorded with it.
pub fn created_entry_payload(d: &NewDeployment, events: &[StatusEvent]) -> Value {
    json!({
        "deployment": fingerprint(&deployment_payload(d)),
        "events": events_fingerprints(events),
    })
}

/// The payload of a `deployment.status_changed` entry.
pub fn events_entry_payload(events: &[StatusEvent]) -> Value {
    json!({ "events": events_fingerprints(events) })
}

fn events_fingerprints(events: &[StatusEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| json!([e.id, fingerprint(&event_payload(e))]))
        .collect()
}

#[derive(Deserialize)]
struct RecordsPayload {
    deployment: Option<String>,
    #[serde(default)]
    events: Vec<(Uuid, String)>,
}

/// Where the chain or the records disagree with what was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Break {
    /// The audit entry at fault, when there is one.
    pub seq: Option<i64>,
    /// `chain_gap`, `chain_link`, `entry_hash`, `payload_hash`, `payload_format`,
    /// `record_modified`, `record_missing`, `record_unaudited`, `projection_modified`,
    /// `head_mismatch` (the chain no longer holds a saved head), `chain_truncated`.
    pub kind: String,
    pub subject: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub entries_checked: u64,
    pub records_checked: u64,
    pub head: ChainHead,
    /// The first broken link (lowest sequence number), if any.
    pub first_break: Option<Break>,
    /// Every problem found, up to a limit.
    pub problems: Vec<Break>,
}

const MAX_PROBLEMS: usize = 100;

/// Verifies a chain fed in sequence order, then the records against it. Streaming: the caller
/// feeds pages of entries and then pages of records.
pub struct Verifier {
    expected_seq: i64,
    prev_hash: String,
    entries: u64,
    records: u64,
    problems: Vec<Break>,
    /// (table, tenant, key) -> (seq, position in the entry, fingerprint) of the latest entry
    /// that commits to a stored record; `None`: the entry recorded its deletion.
    committed: HashMap<RowRef, (i64, u32, Option<[u8; 32]>)>,
    /// A head the auditor saved earlier: the chain must still hold it.
    expect: Option<ChainHead>,
}

/// The key of a deployment or status event in the verifier (kinds never collide).
pub fn deployment_key(tenant: &str, id: Uuid) -> RowRef {
    RowRef {
        table: "deployments".into(),
        tenant: tenant.to_owned(),
        key: id.to_string(),
    }
}

pub fn event_key(tenant: &str, id: Uuid) -> RowRef {
    RowRef {
        table: "deployment_events".into(),
        tenant: tenant.to_owned(),
        key: id.to_string(),
    }
}

/// Parses `SEQ:HASH` (a head an auditor saved).
pub fn parse_head(s: &str) -> Result<ChainHead, String> {
    let (seq, hash) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("'{s}': expected SEQ:HASH"))?;
    let seq: i64 = seq
        .parse()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("'{seq}' is not a sequence number"))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("'{hash}' is not a SHA-256 hash (64 hex digits)"));
    }
    Ok(ChainHead {
        seq,
        hash: hash.to_ascii_lowercase(),
    })
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

fn hash_bytes(hex_str: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(v) = hex::decode(hex_str)
        && v.len() == 32
    {
        out.copy_from_slice(&v);
    }
    out
}

impl Verifier {
    pub fn new() -> Self {
        Verifier {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            entries: 0,
            records: 0,
            problems: Vec::new(),
            committed: HashMap::new(),
            expect: None,
        }
    }

    /// Verifies against a head saved earlier: entry `expect.seq` must still carry
    /// `expect.hash` (a recomputed chain does not), and the chain must reach it (a truncated
    /// one does not).
    pub fn expecting(mut self, expect: Option<ChainHead>) -> Self {
        self.expect = expect.filter(|h| h.seq > 0);
        self
    }

    fn problem(&mut self, seq: Option<i64>, kind: &str, subject: Option<String>, message: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Break {
                seq,
                kind: kind.to_owned(),
                subject,
                message,
            });
        }
    }

    pub fn entry(&mut self, e: &AuditEntry) {
        self.entries += 1;
        if e.seq != self.expected_seq {
            self.problem(
                Some(e.seq),
                "chain_gap",
                None,
                format!(
                    "expected entry {} but found {}: entries were deleted, inserted or reordered",
                    self.expected_seq, e.seq
                ),
            );
        }
        if e.prev_hash != self.prev_hash {
            self.problem(
                Some(e.seq),
                "chain_link",
                None,
                format!("entry {} does not link to the entry before it", e.seq),
            );
        }
        if entry_hash(e) != e.hash {
            self.problem(
                Some(e.seq),
                "entry_hash",
                Some(e.subject.clone()),
                format!(
                    "entry {} was altered: its hash does not match its contents",
                    e.seq
                ),
            );
        }
        if sha256_hex(e.payload.as_bytes()) != e.payload_hash {
            self.problem(
                Some(e.seq),
                "payload_hash",
                Some(e.subject.clone()),
                format!("entry {}'s payload was altered", e.seq),
            );
        }
        if let Some(x) = &self.expect
            && x.seq == e.seq
            && x.hash != e.hash
        {
            self.problem(
                Some(e.seq),
                "head_mismatch",
                None,
                format!(
                    "entry {} is not the entry the saved head names (hash {}): the chain was rewritten",
                    e.seq, x.hash
                ),
            );
        }
        // Governance rows this entry wrote.
        if e.payload.contains("\"row_fingerprints\"") {
            #[derive(Deserialize)]
            struct WithRecords {
                #[serde(default)]
                row_fingerprints: Vec<RowFingerprint>,
            }
            match serde_json::from_str::<WithRecords>(&e.payload) {
                Ok(w) => {
                    for (i, r) in w.row_fingerprints.into_iter().enumerate() {
                        let h = r.h.as_deref().map(hash_bytes);
                        self.committed.insert(r.row, (e.seq, i as u32, h));
                    }
                }
                Err(_) => self.problem(
                    Some(e.seq),
                    "payload_format",
                    Some(e.subject.clone()),
                    format!("entry {}'s records cannot be read", e.seq),
                ),
            }
        }
        if e.action == ACTION_DEPLOYMENT_CREATED || e.action == ACTION_DEPLOYMENT_EVENT {
            match (
                Uuid::parse_str(&e.subject),
                serde_json::from_str::<RecordsPayload>(&e.payload),
            ) {
                (Ok(id), Ok(p)) => {
                    if let Some(h) = p.deployment {
                        self.committed.insert(
                            deployment_key(&e.tenant, id),
                            (e.seq, 0, Some(hash_bytes(&h))),
                        );
                    }
                    for (i, (event_id, h)) in p.events.iter().enumerate() {
                        self.committed.insert(
                            event_key(&e.tenant, *event_id),
                            (e.seq, i as u32 + 1, Some(hash_bytes(h))),
                        );
                    }
                }
                _ => self.problem(
                    Some(e.seq),
                    "payload_format",
                    Some(e.subject.clone()),
                    format!("entry {} does not list the records it wrote", e.seq),
                ),
            }
        }
        self.expected_seq = e.seq + 1;
        self.prev_hash = e.hash.clone();
    }

    /// Where the chain recorded a record: (entry seq, position in the entry). Status events
    /// are applied in this order.
    pub fn position(&self, key: &RowRef) -> Option<(i64, u32)> {
        self.committed.get(key).map(|(s, p, _)| (*s, *p))
    }

    /// Checks one stored record against the latest audit entry that wrote it: a deployment or
    /// status event (`payload` is its fingerprinted facts) or a governance row (its image).
    pub fn record(&mut self, key: &RowRef, payload: &Value) {
        self.records += 1;
        let actual = hash_bytes(&fingerprint(payload));
        let what = format!("{} row {} (tenant {})", key.table, key.key, key.tenant);
        let subject = Some(format!("{}:{}", key.table, key.key));
        match self.committed.remove(key) {
            None => self.problem(
                None,
                "record_unaudited",
                subject,
                format!("{what} has no audit entry: it was written outside shipgate"),
            ),
            Some((seq, _, None)) => self.problem(
                Some(seq),
                "record_unaudited",
                subject,
                format!("{what} was deleted by audit entry {seq} but exists: it was written outside shipgate"),
            ),
            Some((seq, _, Some(h))) if h != actual => self.problem(
                Some(seq),
                "record_modified",
                subject,
                format!("{what} differs from what audit entry {seq} recorded: it was modified"),
            ),
            Some(_) => {}
        }
    }

    /// Records that a stored projection (a deployment's status, or what runs where) disagrees
    /// with what its recorded events imply.
    pub fn projection_mismatch(&mut self, subject: String, message: String) {
        self.problem(None, "projection_modified", Some(subject), message);
    }

    pub fn finish(mut self, stored_head: Option<ChainHead>) -> VerifyReport {
        let mut leftovers: Vec<(RowRef, i64)> = self
            .committed
            .iter()
            .filter(|(_, (_, _, h))| h.is_some())
            .map(|(k, (s, _, _))| (k.clone(), *s))
            .collect();
        leftovers.sort();
        for (k, seq) in leftovers {
            self.problem(
                Some(seq),
                "record_missing",
                Some(format!("{}:{}", k.table, k.key)),
                format!(
                    "{} row {} (tenant {}) written by audit entry {seq} is missing: it was deleted",
                    k.table, k.key, k.tenant
                ),
            );
        }
        let head = ChainHead {
            seq: self.expected_seq - 1,
            hash: self.prev_hash.clone(),
        };
        if let Some(x) = self.expect.clone()
            && x.seq > head.seq
        {
            self.problem(
                Some(head.seq + 1),
                "chain_truncated",
                None,
                format!(
                    "the chain ends at entry {} but the saved head names entry {}: entries were removed",
                    head.seq, x.seq
                ),
            );
        }
        if let Some(stored) = stored_head
            && stored != head
        {
            self.problem(
                    Some(head.seq + 1),
                    "chain_gap",
                    None,
                    format!(
                        "the chain ends at entry {} but shipgate last wrote entry {}: entries at the end were deleted",
                        head.seq, stored.seq
                    ),
                );
        }
        self.problems.sort_by_key(|b| b.seq.unwrap_or(i64::MAX));
        VerifyReport {
            ok: self.problems.is_empty(),
            entries_checked: self.entries,
            records_checked: self.records,
            head,
            first_break: self.problems.first().cloned(),
            problems: self.problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_micros;

    fn chain(n: usize) -> Vec<AuditEntry> {
        let pending = (0..n)
            .map(|i| {
                PendingEntry::new(
                    "t",
                    "a",
                    "token.created",
                    &format!("s{i}"),
                    &json!({"i": i}),
                )
            })
            .collect();
        seal(&ChainHead::genesis(), from_micros(1), pending).0
    }

    fn verify(entries: &[AuditEntry]) -> VerifyReport {
        let mut v = Verifier::new();
        for e in entries {
            v.entry(e);
        }
        v.finish(None)
    }

    #[test]
    fn a_recomputed_or_truncated_chain_fails_against_a_saved_head() {
        let original = chain(5);
        let saved = ChainHead {
            seq: 3,
            hash: original[2].hash.clone(),
        };
        let check = |entries: &[AuditEntry]| {
            let mut v = Verifier::new().expecting(Some(saved.clone()));
            for e in entries {
                v.entry(e);
            }
            v.finish(None)
        };
        assert!(check(&original).ok);
        // Entry 2 rewritten and every hash after it recomputed: intact on its own.
        let mut pending: Vec<PendingEntry> = (0..5)
            .map(|i| {
                PendingEntry::new(
                    "t",
                    "a",
                    "token.created",
                    &format!("s{i}"),
                    &json!({"i": i}),
                )
            })
            .collect();
        pending[1] = PendingEntry::new("t", "mallory", "token.created", "s1", &json!({"i": 1}));
        let forged = seal(&ChainHead::genesis(), from_micros(1), pending).0;
        assert!(verify(&forged).ok, "a recomputed chain verifies on its own");
        let r = check(&forged);
        assert_eq!(r.first_break.expect("break").kind, "head_mismatch");
        // Cut back before the saved head.
        let r = check(&original[..2]);
        assert!(
            r.problems.iter().any(|p| p.kind == "chain_truncated"),
            "{r:?}"
        );
        assert!(parse_head("3:zz").is_err() && parse_head("x").is_err());
        assert_eq!(
            parse_head(&format!("3:{}", saved.hash)).expect("parses"),
            saved
        );
    }

    #[test]
    fn intact_chain_verifies() {
        let r = verify(&chain(5));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.head.seq, 5);
    }

    #[test]
    fn edits_deletions_and_reorders_are_found() {
        let mut c = chain(5);
        c[2].actor = "mallory".into();
        assert_eq!(verify(&c).first_break.expect("break").seq, Some(3));

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(&c).first_break.expect("break").kind, "chain_gap");

        let mut c = chain(5);
        c.swap(1, 2);
        assert!(!verify(&c).ok);

        let mut c = chain(5);
        c[4].payload = "{}".into();
        assert_eq!(verify(&c).first_break.expect("break").kind, "payload_hash");
    }
}
