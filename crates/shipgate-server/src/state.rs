use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use shipgate_domain::environment::EnvironmentAlias;

use metrics_exporter_prometheus::PrometheusHandle;
use shipgate_domain::time::Clock;
use shipgate_store::Store;

use crate::auth::TokenCache;
use crate::config::Settings;
use crate::ingest::Ingest;

/// Everything a request handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub ingest: Ingest,
    pub tokens: TokenCache,
    pub grants: crate::auth::GrantCache,
    pub metrics: PrometheusHandle,
    pub declared_envs: DeclaredEnvCache,
    pub hub: crate::gate::ChangeNotifier,
    /// Single sign-on, when configured.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Group membership from LDAP, when configured.
    pub directory: Option<Arc<crate::ldap::Directory>>,
    pub gate_log: crate::gate::GateLog,
    pub governance: crate::gate::GovernanceCache,
    /// Refusals of known identities, aggregated onto the audit chain.
    pub refusals: crate::refusals::RefusalLog,
    /// Failed authentication per client address.
    pub auth_throttle: crate::refusals::AuthThrottle,
    /// Cancelled when the server shuts down: long-polls return early.
    pub shutdown: tokio_util::sync::CancellationToken,
}

type EnvMap = Arc<HashMap<String, EnvironmentAlias>>;

/// Each tenant's declared environments, kept for a few seconds so that ingest does not read
/// them on every request. Declaring an environment forgets the tenant's entry.
pub type DeclaredEnvCache = crate::cache::TtlMap<EnvMap>;

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState {
            inner: Arc::new(inner),
        }
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}
