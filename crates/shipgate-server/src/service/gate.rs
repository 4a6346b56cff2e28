//! The gate service: loads what a decision needs (change, policy, groups), asks the domain,
//! logs every gate call, and wakes waiting gates the moment a change moves, in this process
//! (a broadcast) and across processes (PostgreSQL LISTEN/NOTIFY).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::TtlMap;

use shipgate_domain::approval::{
    GateCall, GateDecision, GateState, Group, PolicyVersion, RootCauseReview, decide,
};
use shipgate_domain::change::{ChangeRequest, ChangeType};
use shipgate_domain::identity::Identities;
use shipgate_domain::policy::Policy;
use shipgate_domain::time::Timestamp;
use shipgate_store::{ChangeMutation, Store, StoreResult};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::App;
use crate::error::{ApiError, ApiResult};

/// Change notifications inside this process.
#[derive(Clone)]
pub struct ChangeNotifier {
    tx: broadcast::Sender<Uuid>,
}

impl Default for ChangeNotifier {
    fn default() -> Self {
        ChangeNotifier {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl ChangeNotifier {
    pub fn notify(&self, id: Uuid) {
        let _ = self.tx.send(id);
    }
    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.tx.subscribe()
    }

    /// Forwards the store's cross-process notifications (PostgreSQL) into this hub, and
    /// reconnects when the listening connection drops.
    pub fn forward_store(&self, store: Arc<dyn Store>, stop: CancellationToken) -> JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            loop {
                match store.listen_changes().await {
                    Ok(None) => return,
                    Ok(Some(mut s)) => loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            n = s.next() => match n {
                                Some(id) => hub.notify(id),
                                None => break,
                            },
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for change notifications; retrying")
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        })
    }
}

struct LogJob {
    call: GateCall,
    reply: oneshot::Sender<StoreResult<()>>,
}

/// Group commit for gate calls: every answered call is logged before it is answered.
#[derive(Clone)]
pub struct GateLog {
    tx: mpsc::Sender<LogJob>,
}

impl GateLog {
    pub fn spawn(store: Arc<dyn Store>) -> (GateLog, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<LogJob>(8192);
        let h = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < 512 {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                // A caller that gave up (its answer was `error`, past its deadline) is not
                // logged as if it had been answered.
                jobs.retain(|j| !j.reply.is_closed());
                if jobs.is_empty() {
                    continue;
                }
                let calls: Vec<GateCall> = jobs.iter().map(|j| j.call.clone()).collect();
                let r = store.log_gate_calls(&calls).await;
                for j in jobs {
                    let _ = j.reply.send(match &r {
                        Ok(()) => Ok(()),
                        Err(e) => Err(shipgate_store::StoreError::Unavailable(e.to_string())),
                    });
                }
            }
        });
        (GateLog { tx }, h)
    }

    pub async fn log(&self, call: GateCall) -> StoreResult<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(LogJob { call, reply })
            .await
            .map_err(|_| shipgate_store::StoreError::Unavailable("gate log stopped".into()))?;
        rx.await
            .map_err(|_| shipgate_store::StoreError::Unavailable("gate log stopped".into()))?
    }
}

type GroupMap = BTreeMap<String, Group>;

/// Parsed policies and groups per tenant, for a couple of seconds; writes here forget them.
pub struct GovernanceCache {
    policies: TtlMap<Option<Arc<PolicyVersion>>>,
    groups: TtlMap<Arc<GroupMap>>,
    identities: TtlMap<Arc<Identities>>,
}

impl GovernanceCache {
    pub fn new(clock: Arc<dyn shipgate_domain::time::Clock>, ttl_secs: u64) -> Self {
        GovernanceCache {
            policies: TtlMap::new(clock.clone(), ttl_secs),
            groups: TtlMap::new(clock.clone(), ttl_secs),
            identities: TtlMap::new(clock, ttl_secs),
        }
    }

    pub fn forget(&self, tenant: &str) {
        self.policies.forget(tenant);
        self.groups.forget(tenant);
        self.identities.forget(tenant);
    }
}

pub async fn policy(app: &App, tenant: &str) -> ApiResult<Option<Arc<PolicyVersion>>> {
    if let Some(cached) = app.governance.policies.get(tenant) {
        return Ok(cached);
    }
    let rec = app.store.current_policy(tenant).await?;
    let pv = match rec {
        None => None,
        Some(r) => {
            let policy = Policy::parse(&r.text).map_err(|e| ApiError::Conflict {
                code: shipgate_domain::ErrorCode::PolicyInvalid,
                message: format!("stored policy version {} does not parse: {e}", r.version),
            })?;
            Some(Arc::new(PolicyVersion {
                version: r.version,
                hash: r.hash,
                policy,
            }))
        }
    };
    app.governance.policies.put(tenant, pv.clone());
    Ok(pv)
}

pub async fn groups(app: &App, tenant: &str) -> ApiResult<Arc<BTreeMap<String, Group>>> {
    if let Some(cached) = app.governance.groups.get(tenant) {
        return Ok(cached);
    }
    let g: BTreeMap<String, Group> = app
        .store
        .list_groups(tenant)
        .await?
        .into_iter()
        .map(|g| (g.name.clone(), g))
        .collect();
    let g = Arc::new(g);
    app.governance.groups.put(tenant, g.clone());
    Ok(g)
}

/// Who is who in a tenant (subjects and emails of its people), for separation of duties.
pub async fn identities(app: &App, tenant: &str) -> ApiResult<Arc<Identities>> {
    if let Some(cached) = app.governance.identities.get(tenant) {
        return Ok(cached);
    }
    let ids = Arc::new(Identities::from_people(
        &app.store.list_people(tenant).await?,
    ));
    app.governance.identities.put(tenant, ids.clone());
    Ok(ids)
}

/// A gate question.
#[derive(Debug, Clone)]
pub struct GateQuery {
    pub tenant: String,
    pub caller: String,
    pub change: String,
    pub environment: String,
    pub digest: Option<String>,
    pub deployer: Option<String>,
}

/// Decides once. Never fails: what cannot be decided is an `error` decision (fail closed).
pub async fn evaluate(app: &App, q: &GateQuery) -> (GateDecision, Option<ChangeRequest>) {
    let now = app.clock.now();
    let loaded = async {
        let change = app.store.get_change(&q.tenant, &q.change).await?;
        let pv = policy(app, &q.tenant).await?;
        let groups = groups(app, &q.tenant).await?;
        let ids = identities(app, &q.tenant).await?;
        Ok::<_, ApiError>((change, pv, groups, ids))
    }
    .await;
    match loaded {
        Ok((None, _, _, _)) => (
            GateDecision {
                state: GateState::Denied,
                reasons: vec![shipgate_domain::approval::Reason {
                    code: "unknown_change".into(),
                    message: format!("there is no change {} in this tenant", q.change),
                }],
                ..GateDecision::error(&q.change, &q.environment, "unknown_change", String::new())
            },
            None,
        ),
        Ok((Some(c), pv, groups, ids)) => {
            let mut d = decide(
                &c,
                pv.as_deref(),
                &groups,
                &ids,
                &q.environment,
                q.digest.as_deref(),
                q.deployer.as_deref(),
                now,
            );
            require_provenance(app, q, &mut d).await;
            (d, Some(c))
        }
        Err(e) => {
            // The cause is logged; the answer says what happened, never the store's text.
            tracing::error!(error = %e.summary(), change = %q.change, "the gate could not decide");
            let (code, msg) = match &e {
                ApiError::Unavailable(_) => {
                    ("unavailable", "the store cannot be reached".to_owned())
                }
                // Refusals are written for clients (a stored policy that no longer parses).
                ApiError::Conflict { code, message } => (code.as_str(), message.clone()),
                _ => (
                    "internal",
                    "the gate could not decide; the cause was logged".to_owned(),
                ),
            };
            (
                GateDecision::error(&q.change, &q.environment, code, msg),
                None,
            )
        }
    }
}

fn terminal(s: GateState) -> bool {
    !matches!(s, GateState::Pending)
}

/// Answers a gate call, waiting up to `wait` for a pending decision to settle. Wakes on change
/// notifications and at the decision's own time boundaries (cooling-off end, expiry). Every
/// answer is logged before it is returned; if it cannot be logged, the answer is `error`.
pub async fn gate(app: &App, q: GateQuery, wait: Duration) -> GateDecision {
    let started = Instant::now();
    // Checked: a wait too long to represent is no wait (the answer stays pending), never a
    // panic.
    let deadline = started.checked_add(wait).unwrap_or(started);
    let mut rx = app.notifier.subscribe();
    let (mut d, mut change_id) = {
        let (d, c) = evaluate(app, &q).await;
        (d, c.map(|c| c.id))
    };
    while !terminal(d.state) && Instant::now() < deadline && !app.shutdown.is_cancelled() {
        let mut until = deadline;
        for t in [d.not_before, d.expires_at].into_iter().flatten() {
            let now = app.clock.now();
            if t > now {
                let dt = t
                    .signed_duration_since(now)
                    .to_std()
                    .unwrap_or_default()
                    .saturating_add(Duration::from_millis(5));
                if let Some(at) = Instant::now().checked_add(dt) {
                    until = until.min(at);
                }
            }
        }
        let woke = tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => true,
            _ = app.shutdown.cancelled() => true,
            r = rx.recv() => match r {
                Ok(id) => id.is_nil() || change_id.is_none_or(|c| c == id),
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => true,
            },
        };
        if woke {
            let (nd, c) = evaluate(app, &q).await;
            d = nd;
            change_id = c.map(|c| c.id).or(change_id);
        }
    }
    let call = GateCall {
        id: Uuid::now_v7(),
        tenant: q.tenant.clone(),
        change_id: d.change_id,
        change: d.change.clone(),
        environment: d.environment.clone(),
        digest: q.digest.clone(),
        deployer: q.deployer.clone(),
        caller: q.caller.clone(),
        state: d.state,
        reasons: d.reasons.clone(),
        policy_hash: d.policy_hash.clone(),
        waited_ms: started.elapsed().as_millis() as i64,
        at: app.clock.now(),
        env_tier: super::environments::resolve_environment(app, &q.tenant, &d.environment)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|e| e.tier),
    };
    metrics::counter!("shipgate_gate_decisions_total", "state" => d.state.as_str()).increment(1);
    if let Err(e) = app.gate_log.log(call).await {
        tracing::error!(error = %e, "gate call could not be logged; answering error");
        return GateDecision::error(
            &q.change,
            &q.environment,
            "unavailable",
            "the gate call could not be logged, so it is not answered".to_owned(),
        );
    }
    d
}

/// What the gate says about a deployment being recorded: the deployment is kept either way,
/// but one that goes to production (or names a change) without a valid approval is flagged.
/// The provenance of a deployed digest (none without a digest).
pub async fn check_provenance(
    app: &App,
    tenant: &str,
    name: Option<&str>,
    version: &str,
    digest: Option<&str>,
) -> ApiResult<Option<shipgate_domain::provenance::Provenance>> {
    let Some(digest) = digest else {
        return Ok(None);
    };
    let published = app.store.find_artifacts(tenant, name, digest).await?;
    let p = shipgate_domain::provenance::check(name, version, digest, &published);
    if !p.ok() {
        metrics::counter!("shipgate_provenance_flagged_total", "status" => p.status.as_str())
            .increment(1);
    }
    Ok(Some(p))
}

/// Where the tier requires provenance, an allowed gate answer becomes a denial unless the
/// digest was published (and is the one published under its name and version).
async fn require_provenance(app: &App, q: &GateQuery, d: &mut GateDecision) {
    if d.state != GateState::Allowed || app.settings.provenance.required_tiers.is_empty() {
        return;
    }
    let reason = |code: &str, message: String| shipgate_domain::approval::Reason {
        code: code.into(),
        message,
    };
    let tier = match super::environments::resolve_environment(app, &q.tenant, &q.environment).await
    {
        Ok(Ok(e)) => e.tier,
        Ok(Err(m)) => {
            // Cannot tell whether provenance is required: fail closed.
            d.state = GateState::Error;
            d.reasons.push(reason(
                "unavailable",
                format!("the environment's tier could not be resolved to check provenance: {m}"),
            ));
            return;
        }
        Err(e) => {
            tracing::error!(error = %e.summary(), "environments could not be read");
            d.state = GateState::Error;
            d.reasons.push(reason(
                "unavailable",
                "the store cannot be reached".to_owned(),
            ));
            return;
        }
    };
    if !tier.is_some_and(|t| app.settings.provenance.required_tiers.contains(&t)) {
        return;
    }
    let Some(digest) = q.digest.as_deref() else {
        d.state = GateState::Denied;
        d.reasons.push(reason(
            "provenance_required",
            "this environment requires the artifact's digest (pass --digest) to check its provenance".into(),
        ));
        return;
    };
    match app.store.find_artifacts(&q.tenant, None, digest).await {
        Ok(published) => {
            let p = shipgate_domain::provenance::check(None, "", digest, &published);
            if !p.ok() {
                d.state = GateState::Denied;
                d.reasons.push(reason(
                    &format!("provenance_{}", p.status.as_str()),
                    p.message,
                ));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "provenance could not be checked");
            d.state = GateState::Error;
            d.reasons.push(reason(
                "unavailable",
                "provenance could not be checked; the cause was logged".to_owned(),
            ));
        }
    }
}

pub async fn check_deployment(
    app: &App,
    d: &shipgate_domain::NewDeployment,
) -> Option<shipgate_domain::ApprovalCheck> {
    use shipgate_domain::{ApprovalCheck, EnvTier};
    let production = d.environment.tier == Some(EnvTier::Production);
    match &d.change_ref {
        None if production => Some(ApprovalCheck {
            change: None,
            state: "no_change".into(),
            flagged: true,
            reasons: vec!["recorded against production without a change request".into()],
        }),
        None => None,
        Some(cr) => {
            let q = GateQuery {
                tenant: d.tenant.clone(),
                caller: d.recorded_by.clone(),
                change: cr.clone(),
                environment: d.environment.name.clone(),
                digest: d.artifact_digest.clone(),
                // Who recorded it (authenticated), never the free `deployer` field.
                deployer: Some(d.recorded_by.clone()),
            };
            let (dec, _) = evaluate(app, &q).await;
            Some(ApprovalCheck {
                change: Some(cr.clone()),
                state: dec.state.as_str().to_owned(),
                flagged: !dec.allowed() && (production || dec.change_id.is_some()),
                reasons: dec.reasons.iter().map(|r| r.code.clone()).collect(),
            })
        }
    }
}

/// What a decision writes: the domain's outcome with its audit entries, or for a refusal that
/// must be audited (self-approval, bypass attempts) the audit entry alone and the refusal.
/// The one place decisions become store writes (the API and the demo both use it).
pub fn decision_mutation(
    c: &ChangeRequest,
    pv: &PolicyVersion,
    groups: &BTreeMap<String, Group>,
    ids: &Identities,
    req: shipgate_domain::approval::DecisionRequest,
    now: Timestamp,
) -> StoreResult<ChangeMutation> {
    let (actor, kind) = (req.actor.clone(), req.kind);
    match shipgate_domain::approval::apply_decision(c, pv, groups, ids, req, now) {
        Ok(o) => {
            let mut audit = vec![(
                format!("change.{}", o.decision.kind),
                serde_json::json!({"key": c.key, "revision": c.revision, "decision": o.decision}),
            )];
            for t in &o.transitions {
                audit.push((
                    (*t).to_owned(),
                    serde_json::json!({"key": c.key, "revision": c.revision, "status": o.change.status, "policy_hash": pv.hash}),
                ));
            }
            Ok(ChangeMutation {
                change: Some(o.change),
                decision: Some(o.decision),
                audit,
                ..Default::default()
            })
        }
        Err(r) if r.audited => Ok(ChangeMutation {
            audit: vec![(
                "change.decision_refused".into(),
                serde_json::json!({"key": c.key, "revision": c.revision, "actor": actor, "decision": kind, "code": r.code, "reason": r.message}),
            )],
            refused: Some((refusal_code(r.code), r.message)),
            ..Default::default()
        }),
        Err(r) => Err(shipgate_store::StoreError::Conflict {
            code: refusal_code(r.code),
            message: r.message,
        }),
    }
}

/// A domain refusal's code as an error code. Every code the domain refuses with is one
/// (`every_domain_refusal_code_is_an_error_code` holds the domain's source to it); should one
/// slip through, it is logged and answered as an internal error, never guessed.
fn refusal_code(code: &str) -> shipgate_domain::ErrorCode {
    shipgate_domain::ErrorCode::parse(code).unwrap_or_else(|| {
        tracing::error!(code, "a domain refusal code with no error code");
        shipgate_domain::ErrorCode::Internal
    })
}

/// Applies a write to a change and wakes the gates waiting on it.
pub async fn update_change(
    app: &App,
    tenant: &str,
    key: &str,
    actor: &str,
    f: impl FnOnce(&ChangeRequest) -> StoreResult<ChangeMutation> + Send + 'static,
) -> ApiResult<ChangeRequest> {
    let now = app.clock.now();
    let r = app
        .store
        .update_change(tenant, key, actor, Box::new(f), now)
        .await;
    if let Ok(c) = &r {
        app.notifier.notify(c.id);
    }
    Ok(r?)
}

/// After an emergency change opens: a team over its monthly threshold gets a root-cause review.
pub async fn check_emergency_threshold(app: &App, c: &ChangeRequest) -> ApiResult<()> {
    if c.spec.change_type != ChangeType::Emergency {
        return Ok(());
    }
    let Some(pv) = policy(app, &c.tenant).await? else {
        return Ok(());
    };
    let Some(ep) = &pv.policy.emergency else {
        return Ok(());
    };
    let team = c.spec.team.clone().unwrap_or_else(|| "unassigned".into());
    let now = app.clock.now();
    let month_start = month_start(now);
    let keys = app
        .store
        .emergency_changes(&c.tenant, &team, month_start)
        .await?;
    if keys.len() as u32 > ep.monthly_threshold {
        let review = RootCauseReview {
            id: Uuid::now_v7(),
            team,
            month: now.format("%Y-%m").to_string(),
            changes: keys,
            opened_at: now,
        };
        if app.store.open_root_cause_review(&c.tenant, &review).await? {
            tracing::warn!(team = %review.team, month = %review.month, "emergency threshold exceeded: root-cause review opened");
            metrics::counter!("shipgate_root_cause_reviews_opened_total").increment(1);
        }
    }
    Ok(())
}

fn month_start(now: Timestamp) -> Timestamp {
    use chrono::{Datelike, TimeZone};
    chrono::Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// Escalates stalled approvals past their SLA to the policy's resolution authority, once each.
async fn escalate_stalled(app: &App, now: Timestamp) {
    let pending = match app.store.pending_unescalated().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "escalation sweep failed");
            return;
        }
    };
    for (tenant, key) in pending {
        let Ok(Some(pv)) = policy(app, &tenant).await else {
            continue;
        };
        if !pv.policy.rules.iter().any(|r| r.escalate_to.is_some()) {
            continue;
        }
        let Ok(Some(c)) = app.store.get_change(&tenant, &key).await else {
            continue;
        };
        if shipgate_domain::approval::escalation_due(&c, &pv, now).is_none() {
            continue;
        }
        let r = update_change(app, &tenant, &key, "shipgate", move |c| {
            let Some((to, sla)) = shipgate_domain::approval::escalation_due(c, &pv, now) else {
                return Ok(ChangeMutation::default());
            };
            let mut next = c.clone();
            next.escalated_at = Some(now);
            Ok(ChangeMutation {
                audit: vec![(
                    "change.escalated".into(),
                    serde_json::json!({"key": c.key, "to": to, "sla_secs": sla.as_secs(), "waiting_since": c.updated_at}),
                )],
                change: Some(next),
                ..Default::default()
            })
        })
        .await;
        match r {
            Ok(_) => {
                tracing::warn!(tenant = %tenant, change = %key, "approval SLA passed: escalated");
                metrics::counter!("shipgate_approvals_escalated_total").increment(1);
            }
            Err(e) => tracing::warn!(error = ?e, change = %key, "could not escalate"),
        }
    }
}

/// Escalates overdue post-deployment reviews, once each: an audit entry, a log line at error
/// level and a metric that alerting watches. Also escalates stalled approvals.
pub fn spawn_review_sweeper(app: Arc<App>, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = app.clock.now();
            escalate_stalled(&app, now).await;
            let due = match app.store.overdue_reviews(now).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "review sweep failed");
                    continue;
                }
            };
            for (tenant, key) in due {
                let r = update_change(&app, &tenant, &key, "shipgate", move |c| {
                    if c.reviewed_at.is_some() || c.review_escalated_at.is_some() {
                        return Ok(ChangeMutation::default());
                    }
                    let mut next = c.clone();
                    next.review_escalated_at = Some(now);
                    Ok(ChangeMutation {
                        audit: vec![(
                            "change.review_overdue".into(),
                            serde_json::json!({"key": c.key, "due": c.review_due_at, "requester": c.requester, "incident_id": c.spec.incident_id}),
                        )],
                        change: Some(next),
                        ..Default::default()
                    })
                })
                .await;
                match r {
                    Ok(_) => {
                        tracing::error!(tenant = %tenant, change = %key, "post-deployment review overdue: escalated");
                        metrics::counter!("shipgate_reviews_overdue_total").increment(1);
                    }
                    Err(e) => tracing::warn!(error = ?e, change = %key, "could not escalate"),
                }
            }
        }
    })
}
