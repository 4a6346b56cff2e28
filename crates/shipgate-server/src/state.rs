//! What a request handler may use: the use cases' dependencies ([`App`]) and what only the
//! HTTP face needs (credential caches, SSO, metrics, the refusal log and throttle).
use std::ops::Deref;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::cache::TokenCache;
use crate::service::App;

/// Everything a request handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub struct Inner {
    /// The use cases' dependencies; `state.store`, `state.clock`... read through to it.
    pub app: Arc<App>,
    pub tokens: TokenCache,
    pub grants: crate::cache::GrantCache,
    pub metrics: PrometheusHandle,
    /// Single sign-on, when configured.
    pub oidc: Option<Arc<crate::oidc::Oidc>>,
    /// Group membership from LDAP, when configured.
    pub directory: Option<Arc<crate::ldap::Directory>>,
    /// Refusals of known identities, aggregated onto the audit chain.
    pub refusals: crate::refusals::RefusalLog,
    /// Failed authentication per client address.
    pub auth_throttle: crate::refusals::AuthThrottle,
}

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

impl Deref for Inner {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}
