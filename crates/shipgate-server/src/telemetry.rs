//! Logs, metrics and request ids, in one module.
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::error::REQUEST_ID;

/// JSON logs (or human-readable with `pretty`), filtered by `RUST_LOG` (default `info`).
pub fn init_tracing(format: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "pretty" {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}

/// The process-wide Prometheus recorder (installed once, shared by every server in the process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .map(|b| b.build_recorder())
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Gives each request an id (kept from a valid `x-request-id` header), records its latency by
/// matched route, and logs failures.
pub async fn observe(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let status = resp.status().as_u16();
    let elapsed = start.elapsed().as_secs_f64();
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    metrics::histogram!("shipgate_http_request_duration_seconds", "method" => method.clone(), "path" => path.clone(), "status" => status.to_string())
        .record(elapsed);
    if status >= 500 {
        tracing::error!(request_id = %id, %method, %path, status, elapsed_ms = elapsed * 1e3, "request failed");
    } else if status >= 400 {
        tracing::info!(request_id = %id, %method, %path, status, elapsed_ms = elapsed * 1e3, "request refused");
    } else {
        tracing::debug!(request_id = %id, %method, %path, status, elapsed_ms = elapsed * 1e3, "request");
    }
    resp
}
