//! The deployment model. Records are immutable facts; status is a series of appended events.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::time::Timestamp;

/// Version of the deployment record format. Stored with every record and hashed into its audit
/// entry, so that the format can evolve without breaking old proofs.
pub const DEPLOYMENT_SCHEMA_VERSION: i32 = 1;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The wire values, in declaration order.
            pub const VALUES: &'static [&'static str] = &[$($s),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
            pub fn expected() -> String {
                [$($s),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// Lifecycle status of a deployment or of one of its targets.
    DeploymentStatus {
        Queued => "queued",
        Started => "started",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
        RolledBack => "rolled_back",
    }
);

impl DeploymentStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, DeploymentStatus::Queued | DeploymentStatus::Started)
    }
}

str_enum!(
    /// What kind of change a deployment carries.
    DeploymentKind {
        Release => "release",
        Hotfix => "hotfix",
        Rollback => "rollback",
        Config => "config",
        SchemaMigration => "schema_migration",
    }
);

str_enum!(
    /// What set the deployment off.
    Trigger {
        Pipeline => "pipeline",
        Manual => "manual",
        Webhook => "webhook",
        Scheduled => "scheduled",
        Gitops => "gitops",
    }
);

str_enum!(
    /// Whether a person or an automated pipeline deployed.
    DeployerType {
        Human => "human",
        Pipeline => "pipeline",
    }
);

str_enum!(
    /// Environment tiers: the OpenTelemetry `deployment.environment.name` well-known values.
    EnvTier {
        Production => "production",
        Staging => "staging",
        Test => "test",
        Development => "development",
    }
);

str_enum!(
    /// What a token may do: each role grants a set of permissions (`access::permits`). The
    /// default is deny.
    Role {
        Viewer => "viewer",
        Requester => "requester",
        Deployer => "deployer",
        Approver => "approver",
        ChangeManager => "change_manager",
        Auditor => "auditor",
        IncidentCommander => "incident_commander",
        EmergencyDeployer => "emergency_deployer",
        Admin => "admin",
    }
);

impl Role {
    pub fn is_admin(self) -> bool {
        matches!(self, Role::Admin)
    }
}

/// An environment label after normalisation through the taxonomy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResolvedEnvironment {
    /// Canonical name (`production-eu-west-1`).
    pub name: String,
    /// The label as the client sent it (`prod-eu-west-1`).
    pub raw: String,
    /// `deployment.environment.name` tier, when it could be recognised.
    pub tier: Option<EnvTier>,
    pub region: Option<String>,
}

/// A validated deployment, ready to be recorded. Every field here is an immutable fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NewDeployment {
    pub id: Uuid,
    pub tenant: String,
    /// Id of the pipeline run that carries this deployment across stages.
    pub correlation_id: Option<String>,
    pub service: String,
    pub team: Option<String>,
    pub environment: ResolvedEnvironment,
    pub version: String,
    pub commit_sha: Option<String>,
    pub git_ref: Option<String>,
    pub repository: Option<String>,
    pub artifact_name: Option<String>,
    /// `sha256:<64 hex>`.
    pub artifact_digest: Option<String>,
    pub deployer: Option<String>,
    pub deployer_type: DeployerType,
    pub kind: DeploymentKind,
    pub trigger: Trigger,
    pub change_ref: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Fan-out targets (regions, clusters, canary slots), each with its own status.
    pub targets: Vec<String>,
    /// A correction references the record it corrects; the old record is never changed.
    pub corrects: Option<Uuid>,
    pub schema_version: i32,
    /// Event time: when the deployment started (or was queued), per the client.
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// Ingest time: when shipgate recorded it.
    #[schema(value_type = String, format = DateTime)]
    pub ingested_at: Timestamp,
    /// Recorded after the fact (import or explicit backfill).
    pub backfilled: bool,
    /// The status the deployment was recorded with (`started`, or an outcome for a backfill).
    pub initial_status: DeploymentStatus,
    /// When a deployment recorded with an outcome finished.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub initial_finished_at: Option<Timestamp>,
    /// Subject of the token that recorded it.
    pub recorded_by: String,
    /// Whether the deployment had a valid approval when it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalCheck>,
    /// The deployed digest against what builds published (artifact immutability).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<crate::provenance::Provenance>,
}

/// What the gate said about a deployment when it was recorded: a deployment to production
/// without a valid grant is flagged here (the record is kept either way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalCheck {
    /// The change request it referenced, if any.
    pub change: Option<String>,
    /// `allowed`, `pending`, `denied`, `expired`, `error`, or `no_change` (none referenced).
    pub state: String,
    /// True when the deployment went ahead without a valid approval.
    pub flagged: bool,
    pub reasons: Vec<String>,
}

/// A validated request to record a deployment: the deployment itself (its first status is
/// `initial_status`, with `initial_finished_at` for one recorded with an outcome) and the
/// idempotency key that guards the request, if the caller sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateDeployment {
    pub deployment: NewDeployment,
    /// Idempotency key scoped to the tenant, with a hash of the request it guards.
    pub idempotency: Option<IdempotencyKey>,
    /// The webhook delivery this record came from: recorded in the same transaction.
    pub delivery: Option<Delivery>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// An appended status event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusEvent {
    pub id: Uuid,
    pub deployment_id: Uuid,
    pub tenant: String,
    /// The fan-out target this event is about; `None` for the deployment as a whole.
    pub target: Option<String>,
    pub status: DeploymentStatus,
    pub message: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ingested_at: Timestamp,
    /// Arrived after a later event, or long after it happened.
    pub late: bool,
    pub recorded_by: String,
}

/// A deployment as read back: its facts, its current (derived) status and its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    #[serde(flatten)]
    pub record: NewDeployment,
    pub status: DeploymentStatus,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    /// Per-target status, when the deployment fans out.
    pub target_status: BTreeMap<String, DeploymentStatus>,
    /// Ids of later records that correct this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrected_by: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<StatusEvent>,
}

/// The version of a service currently running in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunningVersion {
    pub service: String,
    pub environment: String,
    pub env_tier: Option<EnvTier>,
    pub region: Option<String>,
    pub version: String,
    pub deployment_id: Uuid,
    pub commit_sha: Option<String>,
    pub artifact_digest: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub deployed_at: Timestamp,
    pub deployer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    pub name: String,
    pub team: Option<String>,
    /// Path globs the service owns in a monorepo (`services/checkout/**`); empty: the whole
    /// repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Declared ahead (true) or created on first sight (false).
    pub declared: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Environment {
    pub name: String,
    pub tier: Option<EnvTier>,
    pub region: Option<String>,
    pub declared: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Release {
    pub service: String,
    pub version: String,
    pub commit_sha: Option<String>,
    pub artifact_digest: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub first_seen_at: Timestamp,
}

/// An API token as stored: only its hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub tenant: String,
    /// The identity this token acts as (a person or a pipeline).
    pub subject: String,
    pub role: Role,
    /// May act across tenants (the bootstrap token only).
    pub root: bool,
    #[serde(skip)]
    pub token_hash: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// After this the token is refused.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    /// Writes are limited to environments of this tier.
    #[serde(default)]
    pub env_tier: Option<EnvTier>,
    /// Who granted it (the subject that created it).
    #[serde(default)]
    pub created_by: Option<String>,
    /// When it was last used (recorded at most every few minutes).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// The second admin who confirmed an emergency privilege (two-person rule); such a token
    /// is refused until then.
    #[serde(default)]
    pub confirmed_by: Option<String>,
}

impl ApiToken {
    /// A role grant is a privilege with no secret: it is given to an SSO identity (its
    /// subject) or to a group (`group:NAME`), and its hash is this prefix plus its id, which
    /// no presented token can hash to.
    pub const GRANT_PREFIX: &str = "grant:";

    pub fn is_role_grant(&self) -> bool {
        self.token_hash.starts_with(Self::GRANT_PREFIX)
    }

    /// Privileges that work only once a second admin confirms them (two-person rule):
    /// emergency privileges and admin rights (the bootstrap root token excepted).
    pub fn needs_second_admin(&self) -> bool {
        !self.root && matches!(self.role, Role::EmergencyDeployer | Role::Admin)
    }

    /// Whether the token may be used: a two-person privilege needs its second admin.
    pub fn usable(&self) -> bool {
        !self.needs_second_admin() || self.confirmed_by.is_some()
    }
}

/// Filters for deployment history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentFilter {
    pub tenant: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub env_tier: Option<EnvTier>,
    pub status: Option<DeploymentStatus>,
    pub kind: Option<DeploymentKind>,
    pub commit_sha: Option<String>,
    pub artifact_digest: Option<String>,
    pub deployer: Option<String>,
    pub correlation_id: Option<String>,
    pub change_ref: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// Position in a history listing: (started_at, id) of the last row returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub started_at_us: i64,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.started_at_us, self.id.simple())
    }
    pub fn decode(s: &str) -> Option<Cursor> {
        let (t, id) = s.split_once('_')?;
        Some(Cursor {
            started_at_us: t.parse().ok()?,
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// One delivery as recorded: what came, and what shipgate made of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    /// `github`, `gitlab`, `cdevents`...
    pub source: String,
    /// The sender's delivery id (`X-GitHub-Delivery`, the CloudEvent id...).
    pub delivery_id: String,
    pub tenant: String,
    /// The event type as the sender names it.
    pub event: String,
    /// `accepted`, `ignored` or `rejected`.
    pub result: String,
    pub reason: Option<String>,
    /// The shipgate records it created or advanced.
    pub records: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub received_at: crate::time::Timestamp,
}
