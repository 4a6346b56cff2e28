//! The use cases: every operation shipgate performs, whichever face asks for it (the HTTP
//! handlers, the webhooks, the demo seeding, the background workers). Each takes what it
//! needs explicitly: [`App`] holds the dependencies (store, clock, settings, the
//! group-commit writer, the read caches, the change notifier, the gate-call log), never an
//! HTTP request. Handlers authenticate, extract a typed request, call one function here and
//! map its result.
use std::sync::Arc;

use shipgate_domain::time::Clock;
use shipgate_store::Store;
use tokio_util::sync::CancellationToken;

use serde::Serialize;
use shipgate_domain::Role;
use utoipa::ToSchema;

use crate::config::Settings;
use crate::error::ApiError;

pub mod changes;
pub mod deliveries;
pub mod deployments;
pub mod environments;
pub mod gate;
pub mod ingest;
pub mod protection;

/// The use cases' dependencies. Built once by `Application::build`.
pub struct App {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    /// The group-commit writer for deployments.
    pub ingest: ingest::Ingest,
    pub declared_envs: environments::DeclaredEnvCache,
    /// Wakes waiting gates when a change is written.
    pub notifier: gate::ChangeNotifier,
    pub gate_log: gate::GateLog,
    pub governance: gate::GovernanceCache,
    /// Cancelled when the server shuts down: long-polls return early.
    pub shutdown: CancellationToken,
}

/// Who performs an operation, with the tenant every query is scoped to: the authenticated
/// caller of a request, or the source a webhook acts as.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Caller {
    pub tenant: String,
    pub subject: String,
    pub role: Role,
    /// May act on any tenant (the bootstrap token).
    pub root: bool,
    /// Writes are limited to environments of this tier.
    pub env_tier: Option<shipgate_domain::EnvTier>,
}

impl Caller {
    /// A token scoped to an environment tier writes only there.
    pub fn require_env_tier(
        &self,
        tier: Option<shipgate_domain::EnvTier>,
        what: &str,
    ) -> Result<(), ApiError> {
        match self.env_tier {
            Some(scope) if Some(scope) != tier => Err(ApiError::Forbidden(format!(
                "this token is limited to {scope} environments; {what} is {}",
                tier.map_or("of no known tier".to_owned(), |t| t.to_string())
            ))),
            _ => Ok(()),
        }
    }
    pub fn require_root(&self) -> Result<(), ApiError> {
        if self.root {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only the root admin token may do this".into(),
            ))
        }
    }
}
