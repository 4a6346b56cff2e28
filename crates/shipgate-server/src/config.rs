//! Typed configuration: defaults, then a TOML file, then `SHIPGATE_*` environment variables
//! (nested keys with `__`, e.g. `SHIPGATE_INGEST__MAX_BATCH=512`). Passed by value, never global.
use std::path::Path;

use secrecy::SecretString;
use serde::Deserialize;
use shipgate_domain::environment::Taxonomy;
use shipgate_domain::requirements::Requirements;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// host:port to listen on; port 0 picks a free port.
    pub listen: String,
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: String,
    /// Bootstrap admin token of a new store; generated and printed once when unset.
    pub admin_token: Option<SecretString>,
    /// `json` (default) or `pretty` logs.
    pub log_format: String,
    /// Largest accepted request body, in bytes (imports have their own limit).
    pub max_body_bytes: usize,
    pub max_import_bytes: usize,
    /// Refuse to start without configured authentication (production mode).
    pub production: bool,
    pub ingest: IngestSettings,
    pub environments: Taxonomy,
    /// Fields each environment tier requires, e.g. `production = ["commit_sha", "artifact_digest", "deployer", "change_ref"]`.
    pub requirements: Requirements,
    /// How often overdue post-deployment reviews are looked for and escalated, in seconds.
    pub review_sweep_secs: u64,
    /// Longest a gate call may wait (`?wait=`), in seconds.
    pub max_gate_wait_secs: u64,
    /// Single sign-on through an OpenID Connect provider.
    pub oidc: crate::settings::OidcSettings,
    /// Group membership from an LDAP directory.
    pub ldap: crate::settings::LdapSettings,
    /// Event streaming to NATS JetStream.
    pub nats: crate::settings::NatsSettings,
    /// Event streaming to Kafka.
    pub kafka: crate::settings::KafkaSettings,
    /// The transactional outbox the event relays read.
    pub outbox: crate::settings::OutboxSettings,
    /// Webhook secrets per tenant: `[webhooks.<tenant>] github_secret = "..."`.
    pub webhooks: std::collections::BTreeMap<String, crate::settings::WebhookSecrets>,
    /// ServiceNow and Jira per tenant: `[itsm.<tenant>.servicenow]`, `[itsm.<tenant>.jira]`.
    pub itsm: crate::settings::ItsmSettings,
    /// Artifact immutability: tiers whose gate requires a published digest.
    pub provenance: ProvenanceSettings,
    /// Refused requests: the failed-authentication budget per client address and how refusals
    /// of known identities are aggregated on the audit chain.
    pub auth: crate::settings::AuthSettings,
    /// The audit chain's published head.
    pub audit: AuditSettings,
    /// How long read caches keep what they read.
    pub cache: crate::cache::CacheSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Every this many seconds the chain's head is checkpointed and published on the event
    /// stream (when anything was written since the last checkpoint); 0 turns it off.
    pub checkpoint_secs: u64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            checkpoint_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvenanceSettings {
    /// In these tiers the gate denies a digest no build published, or one that differs from the
    /// digest published under the same name and version (e.g. `["production"]`).
    pub required_tiers: Vec<shipgate_domain::EnvTier>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// Most deployments written in one group-commit transaction.
    pub max_batch: usize,
    /// Requests that may wait for the writer before callers are told to back off.
    pub queue_depth: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            max_batch: 512,
            queue_depth: 8192,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://shipgate.db".into(),
            admin_token: None,
            log_format: "json".into(),
            max_body_bytes: 1024 * 1024,
            max_import_bytes: 64 * 1024 * 1024,
            production: false,
            ingest: IngestSettings::default(),
            environments: Taxonomy::default(),
            requirements: Requirements::default(),
            review_sweep_secs: 30,
            max_gate_wait_secs: 300,
            oidc: crate::settings::OidcSettings::default(),
            ldap: crate::settings::LdapSettings::default(),
            nats: Default::default(),
            kafka: Default::default(),
            outbox: Default::default(),
            webhooks: Default::default(),
            itsm: Default::default(),
            provenance: Default::default(),
            auth: Default::default(),
            audit: Default::default(),
            cache: Default::default(),
        }
    }
}

impl Settings {
    /// Loads defaults, then `file` (if given, it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut b = config::Config::builder();
        if let Some(f) = file {
            b = b.add_source(
                config::File::from(f)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        b = b.add_source(
            config::Environment::with_prefix("SHIPGATE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(false),
        );
        let settings: Settings = b.build()?.try_deserialize()?;
        Ok(settings)
    }
}

/// A commented example configuration (`shipgate config example`).
pub const EXAMPLE: &str = r#"# shipgate configuration. Every key can also be set as SHIPGATE_<KEY>
# (nested keys joined by a double underscore: SHIPGATE_INGEST__MAX_BATCH=512).

# Where the server listens (host:port; port 0 picks a free port).
listen = "127.0.0.1:8080"
# sqlite://PATH (embedded, the default) or postgres://user@host:5432/db
database_url = "sqlite://shipgate.db"
# Bootstrap admin token for a new store. Unset: one is generated and printed once.
# admin_token = "sg_..."
# Logs: "json" or "pretty".
log_format = "json"
# Production mode: refuse to start without single sign-on ([oidc]), and refuse to create a
# new store without admin_token.
production = false
max_body_bytes = 1048576
max_import_bytes = 67108864

[ingest]
# Deployments written per group-commit transaction, and how many may queue for the writer.
max_batch = 512
queue_depth = 8192

[environments]
# Refuse labels that name no tier and were not declared.
strict = false

# Words that name a tier, matched against each part of a label (the defaults cover
# prod/prd/live/production, stg/stage/uat/preprod, test/qa/sit, dev/sandbox/local).
[environments.tier_words]
prod = "production"
live = "production"
stg = "staging"
qa = "test"
dev = "development"

# Exact labels with fixed values.
[environments.aliases.westeurope-live]
name = "production-westeurope"
tier = "production"
region = "westeurope"

# Metadata each tier requires. A request that lacks any gets one error listing them all.
[requirements]
production = ["commit_sha", "artifact_digest", "deployer", "change_ref"]
staging = ["commit_sha"]

# Single sign-on (OpenID Connect). Bearer tokens that are not shipgate tokens are verified
# against the provider's published keys; group claims map to roles (the highest wins).
# [oidc]
# issuer = "https://login.example.com/realms/acme"
# audience = "urn:shipgate"
# groups_claim = "groups"
# tenant = "default"
# [oidc.role_map]
# "release-engineers" = "deployer"
# "change-advisory-board" = "approver"
# "sre-leads" = "incident_commander"

# Group membership from LDAP: mapped directory groups define approver groups' members, and
# every person's directory groups count as SSO groups for role_map and role grants.
# [ldap]
# url = "ldaps://ldap.example.com"
# bind_dn = "cn=shipgate,ou=services,dc=example,dc=com"
# bind_password = "..."            # better: SHIPGATE_LDAP__BIND_PASSWORD
# user_base_dn = "ou=people,dc=example,dc=com"
# user_id_attribute = "uid"        # must equal the SSO subject
# group_base_dn = "ou=groups,dc=example,dc=com"
# refresh_secs = 300
# [ldap.group_map]
# "change-advisory-board" = "cab"

# Event streaming: every state change is written to an outbox in its own transaction and relayed
# in commit order; a broker outage loses nothing.
# [nats]
# url = "nats://127.0.0.1:4222"   # subjects shipgate.<tenant>.<kind>.<env-tier>
# stream = "SHIPGATE"
# [kafka]
# brokers = ["127.0.0.1:9092"]
# topic = "shipgate.events"
[outbox]
# Delivered events older than this are deleted.
retention_days = 7

# Inbound webhooks, per tenant: POST /api/v1/webhooks/<tenant>/github
# [webhooks.default]
# github_secret = "..."           # better: SHIPGATE_WEBHOOKS__DEFAULT__GITHUB_SECRET
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses() {
        let dir = std::env::temp_dir().join(format!("sg-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("c.toml");
        std::fs::write(&f, EXAMPLE).expect("write");
        let s = Settings::load(Some(&f)).expect("parses");
        assert_eq!(s.ingest.max_batch, 512);
        assert!(s.environments.aliases.contains_key("westeurope-live"));
        assert_eq!(s.requirements.0.len(), 2);
    }
}
