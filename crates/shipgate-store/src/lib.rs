//! The storage port: one [`Store`] trait, implemented for SQLite (the embedded default) and
//! PostgreSQL (for several instances behind a load balancer).
//!
//! Both adapters compile the same SQL module (`sql.rs`) against their own sqlx driver, so they
//! behave the same by construction; the conformance suite in `tests/` proves it.
//!
//! Invariant: every state change and its audit entry commit in one transaction.
#![forbid(unsafe_code)]

use async_trait::async_trait;
use serde::Serialize;
use shipgate_domain::approval::{
    Delegation, GateCall, Group, Person, PolicyRecord, RootCauseReview,
};
use shipgate_domain::audit::{AuditEntry, ChainHead, VerifyReport};
use shipgate_domain::change::{ChangeRequest, ChangeStatus, Decision, Evidence};
use shipgate_domain::input::StatusChange;
use shipgate_domain::time::Timestamp;
use shipgate_domain::*;
use uuid::Uuid;

pub mod postgres;
pub mod rows;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A write that contradicts what is already recorded. `code` is a stable error code.
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    /// The request refers to something that is not there or not valid in the stored state.
    #[error("{0}")]
    Invalid(FieldErrors),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Internal(format!("migration failed: {e}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What to write for one decision on a change, computed by the domain from the change as it
/// stands inside the write transaction.
#[derive(Debug, Clone, Default)]
pub struct ChangeMutation {
    /// The change's new state; `None` leaves it as it is.
    pub change: Option<ChangeRequest>,
    pub decision: Option<Decision>,
    pub evidence: Option<Evidence>,
    /// Audit entries: (action, payload).
    pub audit: Vec<(String, serde_json::Value)>,
    /// Commit the audit entries, then answer with this error (audited refusals).
    pub refused: Option<(ErrorCode, String)>,
}

pub type ChangeUpdate =
    Box<dyn FnOnce(&ChangeRequest) -> StoreResult<ChangeMutation> + Send + 'static>;
pub type DelegationCheck = Box<dyn FnOnce(&[Delegation]) -> StoreResult<()> + Send + 'static>;
pub type ChangeBuild = Box<dyn FnOnce(i64) -> StoreResult<ChangeRequest> + Send + 'static>;

/// Approvals and gates: people, groups, policies, change requests, gate calls.
#[async_trait]
pub trait ChangeStore: Send + Sync {
    async fn put_person(&self, tenant: &str, person: &Person, actor: &str) -> StoreResult<()>;
    async fn list_people(&self, tenant: &str) -> StoreResult<Vec<Person>>;
    /// Creates or replaces a group (audited).
    async fn put_group(
        &self,
        tenant: &str,
        group: &Group,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
    async fn list_groups(&self, tenant: &str) -> StoreResult<Vec<Group>>;
    /// Applies one directory synchronisation: new people and replaced groups, with one audit
    /// entry (`directory.synced`) carrying the plan, all in one transaction.
    async fn apply_directory_sync(
        &self,
        tenant: &str,
        plan: &shipgate_domain::directory::SyncPlan,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Pushes a policy text; the same text as the current version pushes nothing.
    async fn push_policy(
        &self,
        tenant: &str,
        text: &str,
        hash: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<(PolicyRecord, bool)>;
    async fn current_policy(&self, tenant: &str) -> StoreResult<Option<PolicyRecord>>;
    async fn policy_history(&self, tenant: &str) -> StoreResult<Vec<PolicyRecord>>;
    /// Creates a change: `build` gets the tenant's next change number.
    async fn create_change(
        &self,
        tenant: &str,
        actor: &str,
        build: ChangeBuild,
        now: Timestamp,
    ) -> StoreResult<ChangeRequest> {
        self.create_change_from(tenant, actor, build, now, None)
            .await
    }
    /// The same, for a webhook delivery (an ITSM record): the delivery's record, naming the
    /// change, commits in the change's transaction.
    async fn create_change_from(
        &self,
        tenant: &str,
        actor: &str,
        build: ChangeBuild,
        now: Timestamp,
        delivery: Option<shipgate_domain::integrations::Delivery>,
    ) -> StoreResult<ChangeRequest>;
    /// A change by key (`CR-12`) or id.
    async fn get_change(&self, tenant: &str, key: &str) -> StoreResult<Option<ChangeRequest>>;
    async fn list_changes(
        &self,
        tenant: &str,
        status: Option<ChangeStatus>,
        limit: u32,
    ) -> StoreResult<Vec<ChangeRequest>>;
    /// Applies `update` to the change as it stands, under the write lock, and writes the result
    /// with its audit entries in one transaction.
    async fn update_change(
        &self,
        tenant: &str,
        key: &str,
        actor: &str,
        update: ChangeUpdate,
        now: Timestamp,
    ) -> StoreResult<ChangeRequest>;
    /// Changes whose post-deployment review is overdue and not yet escalated (all tenants).
    async fn overdue_reviews(&self, now: Timestamp) -> StoreResult<Vec<(String, String)>>;
    /// Pending changes not yet escalated (all tenants), oldest first: the escalation sweep
    /// asks the domain which are past their SLA.
    async fn pending_unescalated(&self) -> StoreResult<Vec<(String, String)>>;
    async fn log_gate_calls(&self, calls: &[GateCall]) -> StoreResult<()>;
    async fn gate_calls(&self, tenant: &str, change_key: &str) -> StoreResult<Vec<GateCall>>;
    /// Emergency changes of a team since `since`, oldest first (keys).
    async fn emergency_changes(
        &self,
        tenant: &str,
        team: &str,
        since: Timestamp,
    ) -> StoreResult<Vec<String>>;
    /// Opens the team's root-cause review for the month, unless one is open (audited).
    async fn open_root_cause_review(
        &self,
        tenant: &str,
        review: &RootCauseReview,
    ) -> StoreResult<bool>;
    async fn root_cause_reviews(&self, tenant: &str) -> StoreResult<Vec<RootCauseReview>>;
    /// Records a delegation after `check` accepts it against the tenant's delegations, under
    /// the write lock (so two racing halves of a loop cannot both land). Audited.
    async fn put_delegation(
        &self,
        tenant: &str,
        d: &Delegation,
        check: DelegationCheck,
    ) -> StoreResult<()>;
    /// Every delegation of the tenant, newest first.
    async fn list_delegations(&self, tenant: &str) -> StoreResult<Vec<Delegation>>;
    /// Ends a delegation now (audited); `false` when there is no such live delegation.
    async fn revoke_delegation(
        &self,
        tenant: &str,
        id: Uuid,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Audit entries about one subject, in chain order.
    async fn audit_for_subject(&self, tenant: &str, subject: &str) -> StoreResult<Vec<AuditEntry>>;
    /// Waits for change notifications from other instances (PostgreSQL LISTEN). `None` when
    /// the store has no cross-process channel (SQLite: one process).
    async fn listen_changes(
        &self,
    ) -> StoreResult<Option<futures::stream::BoxStream<'static, Uuid>>>;
}

/// What recording a deployment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Created {
    pub deployment: Deployment,
    /// False when an idempotent retry returned the earlier result.
    pub created: bool,
}

/// What appending a status event did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appended {
    pub deployment: Deployment,
    /// The event recorded, or `None` when it repeated the current status.
    pub event: Option<StatusEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A deployment in a "what changed" listing, with the version it replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FeedEntry {
    #[serde(flatten)]
    pub deployment: Deployment,
    pub previous_version: Option<String>,
}

/// Deployments: recording, status events, and the read models over them (history, feed, running, releases).
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// Records a batch of deployments in one transaction (group commit). Each item gets its
    /// own result. With `atomic` false a failed item never affects the others; with `atomic`
    /// true one failed item means nothing is written (the others answer `not_written`).
    async fn create_deployments(
        &self,
        batch: Vec<CreateDeployment>,
        now: Timestamp,
        atomic: bool,
    ) -> StoreResult<Vec<StoreResult<Created>>>;

    /// Appends a status event, checked against the deployment's lifecycle.
    async fn append_event(
        &self,
        tenant: &str,
        deployment_id: Uuid,
        change: StatusChange,
        actor: &str,
        now: Timestamp,
        idempotency: Option<IdempotencyKey>,
    ) -> StoreResult<Appended>;

    async fn get_deployment(&self, tenant: &str, id: Uuid) -> StoreResult<Option<Deployment>>;
    async fn list_deployments(
        &self,
        filter: &DeploymentFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> StoreResult<Page<Deployment>>;
    async fn feed(&self, filter: &DeploymentFilter, limit: u32) -> StoreResult<Vec<FeedEntry>>;
    async fn running(
        &self,
        tenant: &str,
        service: Option<&str>,
        environment: Option<&str>,
    ) -> StoreResult<Vec<RunningVersion>>;
    async fn list_releases(
        &self,
        tenant: &str,
        service: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Release>>;
}

/// Declared services and environments.
#[async_trait]
pub trait InventoryStore: Send + Sync {
    async fn declare_service(
        &self,
        tenant: &str,
        name: &str,
        team: Option<&str>,
        paths: &[String],
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Service>;
    async fn declare_environment(
        &self,
        tenant: &str,
        env: &ResolvedEnvironment,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Environment>;
    async fn list_services(&self, tenant: &str) -> StoreResult<Vec<Service>>;
    async fn list_environments(&self, tenant: &str) -> StoreResult<Vec<Environment>>;
}

/// API tokens, role grants and access reviews.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Stores a token (hash only). `actor` is who created it; audited.
    async fn create_token(&self, token: &ApiToken, actor: &str) -> StoreResult<()>;
    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<ApiToken>>;
    /// The tenant's live tokens (hashes are never returned over the API).
    async fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<ApiToken>>;
    /// Revokes a token, and with `replacement` creates its successor in the same transaction
    /// (rotation). Returns the revoked token, or `None` when there is no such live token.
    async fn revoke_token(
        &self,
        tenant: &str,
        id: Uuid,
        replacement: Option<&ApiToken>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ApiToken>>;
    async fn count_tokens(&self) -> StoreResult<i64>;
    /// The second admin confirms an emergency privilege (audited). `None`: no such unconfirmed
    /// live token.
    async fn confirm_token(
        &self,
        tenant: &str,
        id: Uuid,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<Option<ApiToken>>;
    /// Records that a token was used (not audited: it is an observation, not a change).
    async fn touch_token(&self, id: Uuid, at: Timestamp) -> StoreResult<()>;
    /// Records a completed access review, revoking the privileges it revokes, in one
    /// transaction (audited).
    async fn record_access_review(
        &self,
        tenant: &str,
        review: &shipgate_domain::access::AccessReview,
    ) -> StoreResult<Vec<ApiToken>>;
    async fn access_reviews(
        &self,
        tenant: &str,
    ) -> StoreResult<Vec<shipgate_domain::access::AccessReview>>;
}

/// The audit chain: its head, entries, checkpoints and verification.
#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn audit_head(&self) -> StoreResult<ChainHead>;
    /// Appends entries that record something other than a state change (refused access).
    async fn record_audit(
        &self,
        entries: Vec<shipgate_domain::audit::PendingEntry>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Audit entries after `after_seq`, in sequence order; `tenant` limits them to one tenant.
    async fn audit_entries(
        &self,
        tenant: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditEntry>>;
    /// Recomputes the whole chain and checks every deployment, status event and governance
    /// row against it.
    async fn verify_audit(&self) -> StoreResult<VerifyReport> {
        self.verify_audit_against(None).await
    }
    /// Once, on a store written before governance rows were fingerprinted: appends
    /// `audit.baselined` entries committing to every governance row as it stands, so that
    /// later edits, insertions and deletions are detected. Returns the rows baselined.
    async fn baseline_audit(&self, now: Timestamp) -> StoreResult<u64>;
    /// Publishes the chain's head: appends an `audit.checkpoint` entry naming the head before
    /// it, with an event for the stream, unless nothing was written since the last one.
    /// Returns the head published.
    async fn checkpoint_audit(&self, now: Timestamp) -> StoreResult<Option<ChainHead>>;
    /// The same, and the chain must still hold `expect`, a head an auditor saved earlier (a
    /// recomputed or truncated chain does not).
    async fn verify_audit_against(&self, expect: Option<ChainHead>) -> StoreResult<VerifyReport>;
}

/// What outside systems told us: incidents, version control history (commits, pull requests, tags), published artifacts, webhook deliveries and GitHub protection-rule requests.
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Records an incident, or its change of status (audited and published); `false` when
    /// nothing changed.
    async fn record_incident(
        &self,
        tenant: &str,
        incident: &shipgate_domain::incident::Incident,
        env_tier: Option<shipgate_domain::EnvTier>,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    async fn list_incidents(
        &self,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<shipgate_domain::incident::Incident>>;
    /// Keeps a GitHub protection-rule request until it is answered (`false`: already kept).
    async fn save_protection_request(
        &self,
        tenant: &str,
        id: &str,
        body: &serde_json::Value,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Requests not answered yet: (tenant, id, body, received at).
    async fn pending_protection_requests(
        &self,
    ) -> StoreResult<Vec<(String, String, serde_json::Value, Timestamp)>>;
    async fn answer_protection_request(&self, id: &str, now: Timestamp) -> StoreResult<()>;
    /// Records pushed commits (known ones are kept as they are).
    async fn record_commits(
        &self,
        tenant: &str,
        commits: &[shipgate_domain::vcs::CommitRecord],
    ) -> StoreResult<()>;
    /// Records or updates a pull request (audited: what a deployment shipped).
    async fn record_pull_request(
        &self,
        tenant: &str,
        pr: &shipgate_domain::vcs::PullRequestRecord,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Walks first parents from `from` until `stop` (exclusive) or `limit` commits; the flag is
    /// true when the walk ran out of known history before reaching `stop`.
    async fn commits_between(
        &self,
        tenant: &str,
        from: &str,
        stop: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<shipgate_domain::vcs::CommitRecord>, bool)>;
    /// Records a tag; a `None` sha or release URL keeps the known one (audited).
    async fn record_tag(
        &self,
        tenant: &str,
        tag: &shipgate_domain::vcs::TagRecord,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Deletes a tag (audited when it existed).
    async fn delete_tag(
        &self,
        tenant: &str,
        repository: &str,
        name: &str,
        actor: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Tags pointing at one of these commits.
    async fn tags_for(
        &self,
        tenant: &str,
        shas: &[String],
    ) -> StoreResult<Vec<shipgate_domain::vcs::TagRecord>>;
    /// Pull requests merged as, or headed at, one of these commits.
    async fn pull_requests_for(
        &self,
        tenant: &str,
        shas: &[String],
    ) -> StoreResult<Vec<shipgate_domain::vcs::PullRequestRecord>>;
    /// Records a published artifact (audited); `false` when it was already known.
    async fn publish_artifact(
        &self,
        tenant: &str,
        a: &shipgate_domain::provenance::PublishedArtifact,
        actor: &str,
    ) -> StoreResult<bool>;
    /// Published artifacts with this digest, or with this name (full or last path segment).
    async fn find_artifacts(
        &self,
        tenant: &str,
        name: Option<&str>,
        digest: &str,
    ) -> StoreResult<Vec<shipgate_domain::provenance::PublishedArtifact>>;
    /// Records a delivery; `false` when (source, delivery_id) was already recorded (a rejected
    /// delivery may be redelivered, and its record is replaced).
    async fn record_delivery(
        &self,
        d: &shipgate_domain::integrations::Delivery,
    ) -> StoreResult<bool>;
    /// Whether an accepted delivery from `source` created `record` in the tenant (e.g. whether a
    /// change request was opened from a ServiceNow record).
    async fn delivery_created(&self, source: &str, tenant: &str, record: &str)
    -> StoreResult<bool>;
    async fn find_delivery(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<shipgate_domain::integrations::Delivery>>;
    /// The tenant's newest deliveries.
    async fn list_deliveries(
        &self,
        tenant: &str,
        limit: u32,
    ) -> StoreResult<Vec<shipgate_domain::integrations::Delivery>>;
}

/// The transactional outbox and each sink's cursor.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// The outbox rows `sink` has not delivered yet, oldest first, with the sink's cursor.
    async fn outbox_pending(
        &self,
        sink: &str,
        limit: u32,
    ) -> StoreResult<(i64, Vec<shipgate_domain::events::OutboxRow>)>;
    /// Moves `sink`'s cursor forward to `seq` (never back).
    async fn outbox_ack(&self, sink: &str, seq: i64, now: Timestamp) -> StoreResult<()>;
    /// The newest outbox sequence number (0 when empty).
    async fn outbox_head(&self) -> StoreResult<i64>;
    /// Deletes rows written before `before` that every sink in `sinks` has delivered.
    async fn outbox_prune(&self, sinks: &[&str], before: Timestamp) -> StoreResult<u64>;
}

/// The storage port: every aggregate's port, and the store itself.
#[async_trait]
pub trait Store:
    ChangeStore
    + DeploymentStore
    + InventoryStore
    + IdentityStore
    + AuditStore
    + SourceStore
    + OutboxStore
    + Send
    + Sync
    + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> StoreResult<()>;
}

/// Every port trait, for callers that use the store through `dyn Store`.
pub mod prelude {
    pub use crate::{
        AuditStore, ChangeStore, DeploymentStore, IdentityStore, InventoryStore, OutboxStore,
        SourceStore, Store,
    };
}

/// Opens an existing shipgate database without creating or migrating anything (offline
/// audit verification): a missing file or a database that is not shipgate's is an error.
pub async fn open_existing(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            sqlite::SqliteStore::open_existing(url).await?,
        ))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PgStore::open_existing(url).await?,
        ))
    } else {
        Err(StoreError::Internal(format!(
            "unsupported database URL '{url}': use sqlite://PATH or postgres://..."
        )))
    }
}

/// What an offline verification says of a database that is not shipgate's.
pub(crate) fn not_shipgate(e: sqlx::Error) -> StoreError {
    StoreError::Internal(format!("this database holds no shipgate audit chain ({e})"))
}

/// Opens the store a URL names: `sqlite://PATH` (created if missing) or `postgres://...`.
pub async fn open(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::Internal(format!(
            "unsupported database URL '{url}': use sqlite://PATH or postgres://..."
        )))
    }
}
