//! The settings of each feature, as typed configuration reads them (`config.rs` composes them
//! into `Settings`). A leaf: the features import their settings from here, never the other
//! way round.
use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;
use shipgate_domain::Role;
use shipgate_domain::integrations::itsm::ItsmMapping;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OidcSettings {
    /// The provider's issuer URL; unset turns SSO off.
    pub issuer: Option<String>,
    /// The audience shipgate's tokens must carry.
    pub audience: Option<String>,
    /// Override the JWKS location (otherwise discovered from the issuer).
    pub jwks_uri: Option<String>,
    /// The claim that holds the caller's groups.
    pub groups_claim: String,
    /// The claim that names the caller.
    pub subject_claim: String,
    /// Group name -> shipgate role.
    pub role_map: BTreeMap<String, Role>,
    /// The tenant SSO callers act in.
    pub tenant: String,
    /// How long fetched keys are trusted before they are fetched again, in seconds.
    pub jwks_refresh_secs: u64,
    /// Allowed clock skew for `exp` and `nbf`, in seconds (at most [`MAX_LEEWAY_SECS`]; a
    /// larger setting counts as that).
    pub leeway_secs: u64,
}

impl Default for OidcSettings {
    fn default() -> Self {
        OidcSettings {
            issuer: None,
            audience: None,
            jwks_uri: None,
            groups_claim: "groups".into(),
            subject_claim: "sub".into(),
            role_map: BTreeMap::new(),
            tenant: "default".into(),
            jwks_refresh_secs: 300,
            leeway_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldap://host:389` or `ldaps://host:636`; unset turns directory sync off.
    pub url: Option<String>,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// The account shipgate binds as (read-only access is enough); unset binds anonymously.
    pub bind_dn: Option<String>,
    pub bind_password: Option<SecretString>,
    /// Where people are: their entries give each member's subject, name and email.
    pub user_base_dn: String,
    pub user_filter: String,
    /// The attribute that is the person's shipgate subject (the same value the OIDC
    /// `subject_claim` or the API token carries).
    pub user_id_attribute: String,
    pub user_name_attribute: String,
    pub user_email_attribute: String,
    /// Where groups are.
    pub group_base_dn: String,
    pub group_filter: String,
    pub group_name_attribute: String,
    /// Attributes that list members: DNs (`member`, `uniqueMember`) or bare ids (`memberUid`).
    pub member_attributes: Vec<String>,
    /// Directory group name -> shipgate approver group whose members it defines.
    pub group_map: BTreeMap<String, String>,
    /// The tenant whose approver groups the directory defines.
    pub tenant: String,
    /// How often the directory is read, in seconds.
    pub refresh_secs: u64,
    /// Connect and operation timeout, in seconds.
    pub timeout_secs: u64,
}

impl Default for LdapSettings {
    fn default() -> Self {
        LdapSettings {
            url: None,
            starttls: false,
            bind_dn: None,
            bind_password: None,
            user_base_dn: String::new(),
            user_filter: "(|(objectClass=inetOrgPerson)(objectClass=person))".into(),
            user_id_attribute: "uid".into(),
            user_name_attribute: "cn".into(),
            user_email_attribute: "mail".into(),
            group_base_dn: String::new(),
            group_filter:
                "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
                    .into(),
            group_name_attribute: "cn".into(),
            member_attributes: vec!["member".into(), "uniqueMember".into(), "memberUid".into()],
            group_map: BTreeMap::new(),
            tenant: "default".into(),
            refresh_secs: 300,
            timeout_secs: 10,
        }
    }
}

impl LdapSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.url.is_none() {
            return Ok(());
        }
        if self.user_base_dn.is_empty() || self.group_base_dn.is_empty() {
            anyhow::bail!("ldap.url is set but ldap.user_base_dn or ldap.group_base_dn is not");
        }
        if self.bind_dn.is_some() != self.bind_password.is_some() {
            anyhow::bail!("ldap.bind_dn and ldap.bind_password go together");
        }
        Ok(())
    }
}

/// One tenant's webhook secrets.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSecrets {
    /// The secret set on the GitHub webhook (HMAC-SHA256 of each delivery).
    pub github_secret: Option<SecretString>,
    /// A GitHub token allowed to review deployment protection rules (a GitHub App installation
    /// token); used to answer `deployment_callback_url`.
    pub github_token: Option<SecretString>,
    /// How long a protection rule waits on shipgate's gate before it is answered `rejected`.
    pub github_protection_wait_secs: Option<u64>,
    /// The GitHub API the token may be sent to (GitHub Enterprise Server:
    /// `https://ghe.example.com/api/v3`); a callback URL elsewhere is refused. Default
    /// `https://api.github.com`.
    pub github_api_url: Option<String>,
    /// The PagerDuty V3 webhook subscription's signing secret (`X-PagerDuty-Signature`).
    pub pagerduty_secret: Option<SecretString>,
    /// The secret token set on the GitLab webhook (sent verbatim in `X-Gitlab-Token`).
    pub gitlab_token: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// `nats://host:4222`; unset turns NATS publishing off.
    pub url: Option<String>,
    /// The JetStream stream shipgate creates (or updates) for its subjects.
    pub stream: String,
    /// Subjects are `<prefix>.<tenant>.<kind>.<env-tier>`.
    pub subject_prefix: String,
    /// How long JetStream remembers message ids for dedupe, in seconds.
    pub duplicate_window_secs: u64,
    /// How long the stream keeps messages, in days.
    pub max_age_days: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: None,
            stream: "SHIPGATE".into(),
            subject_prefix: "shipgate".into(),
            duplicate_window_secs: 600,
            max_age_days: 7,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port`; empty turns Kafka publishing off.
    pub brokers: Vec<String>,
    /// One topic for every event; the record key is the record the event is about, and the
    /// CloudEvents attributes travel as `ce_*` headers (binary mode).
    pub topic: String,
    /// Partitions of the topic when shipgate creates it. Events go to partition 0 so that one
    /// topic keeps shipgate's commit order.
    pub partitions: i32,
    pub replication_factor: i16,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: Vec::new(),
            topic: "shipgate.events".into(),
            partitions: 1,
            replication_factor: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    /// Delivered events older than this are deleted from the outbox, in days.
    pub retention_days: u64,
    /// How often the relay looks for new events when idle, in milliseconds.
    pub poll_ms: u64,
    /// Events sent per round trip.
    pub batch: u32,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            retention_days: 7,
            poll_ms: 10,
            batch: 256,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceNowSettings {
    /// `https://acme.service-now.com`
    pub instance_url: String,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The token ServiceNow's outbound REST message sends in `X-Shipgate-Token`.
    pub inbound_token: Option<SecretString>,
    pub mapping: ItsmMapping,
    /// The field written on decision, and its values.
    pub approval_field: String,
    pub approved_value: String,
    pub rejected_value: String,
    /// The journal field that gets the decision's comment.
    pub comment_field: String,
}

impl Default for ServiceNowSettings {
    fn default() -> Self {
        ServiceNowSettings {
            instance_url: String::new(),
            username: None,
            password: None,
            inbound_token: None,
            mapping: ItsmMapping::default(),
            approval_field: "approval".into(),
            approved_value: "approved".into(),
            rejected_value: "rejected".into(),
            comment_field: "work_notes".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JiraSettings {
    /// `https://acme.atlassian.net`
    pub base_url: String,
    pub username: Option<String>,
    pub api_token: Option<SecretString>,
    /// The token Jira's webhook sends in `X-Shipgate-Token`.
    pub inbound_token: Option<SecretString>,
    pub mapping: ItsmMapping,
    /// The transition taken on approval and on rejection, by its name or its target status.
    pub approve_transition: String,
    pub reject_transition: String,
}

impl Default for JiraSettings {
    fn default() -> Self {
        JiraSettings {
            base_url: String::new(),
            username: None,
            api_token: None,
            inbound_token: None,
            mapping: ItsmMapping::default(),
            approve_transition: "Approved".into(),
            reject_transition: "Rejected".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ItsmTenant {
    pub servicenow: Option<ServiceNowSettings>,
    pub jira: Option<JiraSettings>,
}

pub type ItsmSettings = BTreeMap<String, ItsmTenant>;

/// `[auth]`: how refusals are limited.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Failed authentications one client address may make per minute (sustained).
    pub failures_per_minute: u32,
    /// Failed authentications one client address may make in a burst.
    pub failure_burst: u32,
    /// Refusals of one known identity within this many seconds share one audit entry.
    pub refusal_window_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            failures_per_minute: 60,
            failure_burst: 30,
            refusal_window_secs: 1,
        }
    }
}
