//! Building and running the server: a trivial `main` and a testable start (port 0 allowed).
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use shipgate_domain::time::Clock;
use shipgate_domain::{ApiToken, Role};
use shipgate_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::{TokenCache, generate_token, hash_token};
use crate::config::Settings;
use crate::service::ingest::Ingest;
use crate::state::{AppState, Inner};

/// What the first start of a store created.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The admin token, when shipgate generated it (it is shown once).
    pub generated_admin_token: Option<String>,
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    port: u16,
    writer: JoinHandle<()>,
    shutdown: CancellationToken,
    background: Vec<tokio::task::JoinHandle<()>>,
    store: Arc<dyn Store>,
    state: AppState,
}

/// Creates the bootstrap admin token of a store that has none.
pub async fn bootstrap(
    store: &dyn Store,
    settings: &Settings,
    clock: &dyn Clock,
) -> anyhow::Result<Bootstrap> {
    if store.count_tokens().await? > 0 {
        return Ok(Bootstrap {
            generated_admin_token: None,
        });
    }
    let (token, generated) = match &settings.admin_token {
        Some(t) => (t.expose_secret().to_owned(), false),
        None if settings.production => {
            anyhow::bail!(
                "production mode: refusing to start a new store without SHIPGATE_ADMIN_TOKEN (configure authentication)"
            )
        }
        None => (generate_token(), true),
    };
    let t = ApiToken {
        id: Uuid::now_v7(),
        tenant: "default".into(),
        subject: "admin".into(),
        role: Role::Admin,
        root: true,
        token_hash: hash_token(&token),
        created_at: clock.now(),
        expires_at: None,
        env_tier: None,
        created_by: Some("shipgate".into()),
        last_used_at: None,
        confirmed_by: None,
    };
    store.create_token(&t, "shipgate").await?;
    Ok(Bootstrap {
        generated_admin_token: generated.then_some(token),
    })
}

/// Checkpoints the audit chain's head at an interval (published on the event stream).
fn spawn_checkpoints(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match state.store.checkpoint_audit(state.clock.now()).await {
                Ok(Some(h)) => {
                    tracing::info!(seq = h.seq, hash = %h.hash, "audit head checkpointed")
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not checkpoint the audit head"),
            }
        }
    })
}

impl Application {
    /// Opens the store (unless one is given), creates the bootstrap token, and binds.
    pub async fn build(
        settings: Settings,
        store: Option<Arc<dyn Store>>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<(Application, Bootstrap)> {
        if settings.production && settings.oidc.issuer.is_none() {
            anyhow::bail!(
                "production mode: refusing to start without single sign-on; configure [oidc] issuer, audience and role_map (or SHIPGATE_OIDC__ISSUER ...)"
            );
        }
        let store = match store {
            Some(s) => s,
            None => shipgate_store::open(&settings.database_url).await?,
        };
        let boot = bootstrap(store.as_ref(), &settings, clock.as_ref()).await?;
        let baselined = store.baseline_audit(clock.now()).await?;
        if baselined > 0 {
            tracing::info!(
                rows = baselined,
                "governance rows written before fingerprinting were committed to the audit chain"
            );
        }
        let (ingest, writer) = Ingest::spawn(
            store.clone(),
            clock.clone(),
            settings.ingest.max_batch,
            settings.ingest.queue_depth,
        );
        let listener = TcpListener::bind(&settings.listen).await?;
        let port = listener.local_addr()?.port();
        let shutdown = CancellationToken::new();
        let oidc = crate::oidc::Oidc::new(&settings.oidc)?.map(Arc::new);
        let directory = crate::ldap::Directory::new(&settings.ldap)?.map(Arc::new);
        let hub = crate::service::gate::ChangeNotifier::default();
        let (gate_log, gate_log_task) = crate::service::gate::GateLog::spawn(store.clone());
        let forwarder = hub.forward_store(store.clone(), shutdown.clone());
        let sweep = Duration::from_secs(settings.review_sweep_secs.max(1));
        let (refusals, refusal_task) = crate::refusals::RefusalLog::spawn(
            store.clone(),
            clock.clone(),
            Duration::from_secs(settings.auth.refusal_window_secs.clamp(1, 3600)),
            shutdown.clone(),
        );
        let auth_throttle = crate::refusals::AuthThrottle::new(&settings.auth);
        let app = Arc::new(crate::service::App {
            store: store.clone(),
            clock: clock.clone(),
            ingest,
            declared_envs: crate::service::environments::DeclaredEnvCache::new(
                clock.clone(),
                settings.cache.environments_secs,
            ),
            notifier: hub,
            gate_log,
            governance: crate::service::gate::GovernanceCache::new(
                clock.clone(),
                settings.cache.governance_secs,
            ),
            shutdown: shutdown.clone(),
            settings,
        });
        let state = AppState::new(Inner {
            tokens: TokenCache::new(clock.clone(), app.settings.cache.tokens_secs),
            grants: crate::auth::GrantCache::new(clock.clone(), app.settings.cache.grants_secs),
            metrics: crate::telemetry::metrics_handle(),
            oidc,
            directory: directory.clone(),
            refusals,
            auth_throttle,
            app: app.clone(),
        });
        let sweeper = crate::service::gate::spawn_review_sweeper(app.clone(), sweep);
        let mut background = vec![gate_log_task, forwarder, sweeper, refusal_task];
        if state.settings.audit.checkpoint_secs > 0 {
            background.push(spawn_checkpoints(
                state.clone(),
                Duration::from_secs(state.settings.audit.checkpoint_secs),
            ));
        }
        if let Some(d) = directory {
            background.push(d.spawn(app.clone()));
        }
        background.extend(crate::stream::spawn_all(&state));
        crate::service::protection::resume(&app).await;
        let router = crate::routes::router(state.clone());
        Ok((
            Application {
                listener,
                router,
                port,
                writer,
                background,
                shutdown,
                store,
                state,
            },
            boot,
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The server's state (for in-process benchmarks and tools).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The whole HTTP service, to drive in-process without a socket.
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }

    /// Cancel this to stop the server gracefully: in-flight requests finish, queued writes
    /// commit, then `run` returns.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn run(self) -> std::io::Result<()> {
        let token = self.shutdown.clone();
        // The state must go with the router: its queues' senders keep the writers alive.
        drop(self.state);
        axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await?;
        // Every request handle is gone: the writers drain their queues and stop.
        for t in self.background {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                tracing::error!("a background task did not stop within 10s");
            }
        }
        if tokio::time::timeout(Duration::from_secs(30), self.writer)
            .await
            .is_err()
        {
            tracing::error!("the writer did not drain within 30s");
        }
        tracing::info!("shipgate stopped");
        Ok(())
    }
}
