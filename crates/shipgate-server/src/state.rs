use std::ops::Deref;
use std::sync::Arc;

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
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState { inner: Arc::new(inner) }
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}
