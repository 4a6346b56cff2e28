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

use crate::config::Settings;

pub mod environments;
pub mod gate;
pub mod ingest;

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
