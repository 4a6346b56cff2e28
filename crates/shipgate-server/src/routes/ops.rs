//! Health, readiness and metrics, at the root.
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics_text))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: String,
    store: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses((status = 200, body = Health)))]
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        store: state.store.backend().into(),
        error: None,
    })
}

#[utoipa::path(get, path = "/readyz", tag = "ops", security(()),
    description = "Ready when the store answers within 2 seconds.",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let backend = state.store.backend().to_owned();
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                store: backend,
                error: None,
            }),
        ),
        Ok(Err(e)) => {
            // The cause is logged, never sent: it can name hosts and files.
            tracing::error!(error = %e, "readiness: the store cannot be reached");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable".into(),
                    store: backend,
                    error: Some("the store cannot be reached".into()),
                }),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable".into(),
                store: backend,
                error: Some("store did not answer within 2s".into()),
            }),
        ),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops", security(()),
    description = "Prometheus text exposition.",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}
