//! The one authorisation layer. Every route has an entry here naming the permission it needs;
//! a middleware checks it before any handler runs. A route without an entry is refused (default
//! deny), and a test walks the OpenAPI document to prove every route is covered.
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shipgate_domain::access::{Permission, permits, roles_with};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

use Permission::*;

/// (method, route template, permission).
pub const ROUTES: &[(&str, &str, Permission)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Public),
    ("GET", "/api/v1/openapi.json", Public),
    ("GET", "/api/v1/whoami", Authenticated),
    // Deployments and inventory.
    ("GET", "/api/v1/deployments", DeploymentsRead),
    ("POST", "/api/v1/deployments", DeploymentsWrite),
    ("POST", "/api/v1/deployments/import", DeploymentsWrite),
    ("GET", "/api/v1/deployments/{id}", DeploymentsRead),
    ("POST", "/api/v1/deployments/{id}/events", DeploymentsWrite),
    ("GET", "/api/v1/deployments/{id}/shipped", DeploymentsRead),
    ("GET", "/api/v1/running", DeploymentsRead),
    ("GET", "/api/v1/recent-changes", DeploymentsRead),
    ("GET", "/api/v1/deployments/feed", DeploymentsRead),
    ("GET", "/api/v1/releases", DeploymentsRead),
    ("GET", "/api/v1/services", DeploymentsRead),
    ("POST", "/api/v1/services", InventoryAdmin),
    ("GET", "/api/v1/environments", DeploymentsRead),
    ("POST", "/api/v1/environments", InventoryAdmin),
    ("GET", "/api/v1/environments/resolve", DeploymentsRead),
    // Approvals and gates.
    ("GET", "/api/v1/changes", ChangesRead),
    ("POST", "/api/v1/changes", ChangesRequest),
    ("GET", "/api/v1/changes/{key}", ChangesRead),
    ("POST", "/api/v1/changes/{key}/resubmit", ChangesRequest),
    ("POST", "/api/v1/changes/{key}/evidence", ChangesRequest),
    ("POST", "/api/v1/changes/{key}/decisions", ChangesDecide),
    ("GET", "/api/v1/changes/{key}/explain", ChangesRead),
    ("GET", "/api/v1/changes/{key}/timeline", ChangesRead),
    ("GET", "/api/v1/gate", ChangesRead),
    ("GET", "/api/v1/approvals", ChangesRead),
    ("GET", "/api/v1/reviews", ChangesRead),
    ("GET", "/api/v1/delegations", ChangesRead),
    ("POST", "/api/v1/delegations", ChangesDecide),
    ("DELETE", "/api/v1/delegations/{id}", ChangesDecide),
    ("GET", "/api/v1/people", ChangesRead),
    ("POST", "/api/v1/people", GovernanceAdmin),
    ("GET", "/api/v1/groups", ChangesRead),
    ("PUT", "/api/v1/groups/{name}", GovernanceAdmin),
    ("GET", "/api/v1/policy", ChangesRead),
    ("PUT", "/api/v1/policy", GovernanceAdmin),
    ("GET", "/api/v1/policy/history", ChangesRead),
    // Tokens and the audit trail.
    ("POST", "/api/v1/tokens", TokensAdmin),
    ("GET", "/api/v1/tokens", TokensAdmin),
    ("DELETE", "/api/v1/tokens/{id}", TokensAdmin),
    ("POST", "/api/v1/tokens/{id}/rotate", TokensAdmin),
    ("POST", "/api/v1/tokens/{id}/confirm", TokensAdmin),
    ("POST", "/api/v1/role-grants", TokensAdmin),
    ("GET", "/api/v1/role-grants", TokensAdmin),
    ("DELETE", "/api/v1/role-grants/{id}", TokensAdmin),
    // Integrations: webhooks authenticate with the tenant's webhook secret, in the handler.
    ("POST", "/api/v1/webhooks/{tenant}/github", Public),
    ("POST", "/api/v1/webhooks/{tenant}/gitlab", Public),
    ("POST", "/api/v1/webhooks/{tenant}/servicenow", Public),
    ("POST", "/api/v1/webhooks/{tenant}/jira", Public),
    ("POST", "/api/v1/cdevents", DeploymentsWrite),
    ("POST", "/api/v1/artifacts", DeploymentsWrite),
    (
        "POST",
        "/api/v1/integrations/alertmanager",
        DeploymentsWrite,
    ),
    ("POST", "/api/v1/webhooks/{tenant}/pagerduty", Public),
    ("GET", "/api/v1/incidents", DeploymentsRead),
    ("POST", "/api/v1/integrations/jenkins", DeploymentsWrite),
    ("POST", "/api/v1/integrations/argocd", DeploymentsWrite),
    ("GET", "/api/v1/webhook-deliveries", AuditRead),
    ("GET", "/api/v1/audit", AuditRead),
    ("GET", "/api/v1/audit/verify", AuditRead),
    ("GET", "/api/v1/audit/head", AuditRead),
    ("GET", "/api/v1/access-review", AccessReview),
    ("GET", "/api/v1/access-reviews", AccessReview),
    ("POST", "/api/v1/access-reviews", AccessReview),
];

pub fn permission_for(method: &Method, route: &str) -> Option<Permission> {
    // HEAD is GET without the body (axum serves it with the GET handler): same permission.
    let m = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|(x, r, _)| *x == m && *r == route)
        .map(|(_, _, p)| *p)
}

/// The methods a route answers (for 405 and `Allow`).
pub fn methods_for(route: &str) -> Vec<&'static str> {
    let mut m: Vec<&'static str> = ROUTES
        .iter()
        .filter(|(_, r, _)| *r == route)
        .map(|(m, _, _)| *m)
        .collect();
    if m.contains(&"GET") {
        m.push("HEAD");
    }
    m
}

/// Puts a refusal of a known identity on the audit chain (aggregated per identity and window).
fn audit_refusal(state: &AppState, tenant: &str, actor: &str, route: &str, reason: &str) {
    state.refusals.refused(crate::refusals::Refused {
        tenant: tenant.to_owned(),
        actor: actor.to_owned(),
        route: route.to_owned(),
        reason: reason.to_owned(),
    });
}

/// Why a request was refused.
pub enum Refusal {
    /// No route rule (default deny), or the credential was missing or refused.
    Unauthenticated(ApiError),
    /// The caller is known but its role lacks the permission.
    Denied {
        caller: Caller,
        permission: Permission,
    },
}

/// The decision for one request: `Ok(None)` for a public route, `Ok(Some(caller))` when the
/// caller may use the route. No IO beyond the credential lookups (cached).
pub async fn decide(
    state: &AppState,
    route: &str,
    parts: &mut axum::http::request::Parts,
) -> Result<Option<Caller>, Refusal> {
    let Some(perm) = permission_for(&parts.method, route) else {
        let allowed = methods_for(route);
        if !allowed.is_empty() {
            return Err(Refusal::Unauthenticated(ApiError::MethodNotAllowed(
                allowed.into_iter().map(str::to_owned).collect(),
            )));
        }
        return Err(Refusal::Unauthenticated(ApiError::Forbidden(format!(
            "{} {route} has no access rule: refused by default",
            parts.method
        ))));
    };
    if perm == Public {
        return Ok(None);
    }
    let caller = Caller::from_request_parts(parts, state)
        .await
        .map_err(Refusal::Unauthenticated)?;
    if !permits(caller.role, perm) {
        return Err(Refusal::Denied {
            caller,
            permission: perm,
        });
    }
    Ok(Some(caller))
}

/// Authenticates and authorises every matched route before its handler runs. The caller is
/// left in the request's extensions for the handler.
pub async fn authorize(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let Some(route) = matched.map(|m| m.as_str().to_owned()) else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let client = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let presented = parts
        .headers
        .contains_key(axum::http::header::AUTHORIZATION);
    // An address past its failed-authentication budget is refused before any lookup.
    if presented
        && let Some(ip) = client
        && let Some(wait) = state.auth_throttle.blocked(ip)
    {
        metrics::counter!("shipgate_auth_throttled_total").increment(1);
        return ApiError::TooManyRequests {
            message: format!(
                "too many failed authentications from {ip}; retry in {}s",
                wait.as_secs().max(1)
            ),
            retry_after_secs: wait.as_secs().max(1),
        }
        .into_response();
    }
    match decide(&state, &route, &mut parts).await {
        Ok(None) => next.run(Request::from_parts(parts, body)).await,
        Ok(Some(caller)) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(Refusal::Unauthenticated(e @ ApiError::MethodNotAllowed(_))) => e.into_response(),
        Err(Refusal::Unauthenticated(e)) => {
            // A refused credential of a known identity (expired, unconfirmed, another tenant)
            // goes on the chain; an unknown one (forged, mistyped, a scanner) is counted and
            // logged, and spends the client address's failed-authentication budget. A missing
            // credential is neither.
            if presented {
                match parts.extensions.get::<crate::auth::KnownIdentity>() {
                    Some(k) => audit_refusal(
                        &state,
                        &k.tenant,
                        &k.subject,
                        &format!("{} {route}", parts.method),
                        &e.summary(),
                    ),
                    None => {
                        metrics::counter!("shipgate_auth_failures_total").increment(1);
                        tracing::warn!(client = ?client, route = %route, reason = %e.summary(), "unknown credential refused");
                    }
                }
                if matches!(e, ApiError::Unauthenticated(_))
                    && let Some(ip) = client
                {
                    state.auth_throttle.failed(ip);
                }
            }
            e.into_response()
        }
        Err(Refusal::Denied {
            caller,
            permission: perm,
        }) => {
            audit_refusal(
                &state,
                &caller.tenant,
                &caller.subject,
                &format!("{} {route}", parts.method),
                &format!("role '{}' lacks '{}'", caller.role, perm.as_str()),
            );
            metrics::counter!("shipgate_authz_denied_total", "permission" => perm.as_str())
                .increment(1);
            tracing::warn!(subject = %caller.subject, role = %caller.role, permission = perm.as_str(), route = %route, "access denied");
            let granted: Vec<&str> = roles_with(perm).iter().map(|r| r.as_str()).collect();
            ApiError::Forbidden(format!(
                "role '{}' does not grant '{}' (granted by: {})",
                caller.role,
                perm.as_str(),
                granted.join(", ")
            ))
            .into_response()
        }
    }
}
