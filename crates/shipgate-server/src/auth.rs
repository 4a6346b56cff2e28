//! API tokens: `sg_` + 256 random bits, stored as SHA-256 hashes. Each carries a tenant, a
//! subject (the identity it acts as) and a role.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use rand::RngCore;
use shipgate_domain::audit::sha256_hex;
use shipgate_domain::{ApiToken, Role};

use crate::error::ApiError;
use crate::state::AppState;

pub const TENANT_HEADER: &str = "x-shipgate-tenant";

pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "sg_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

pub use crate::cache::{GrantCache, TokenCache};
pub use crate::service::Caller;

/// Left in a request's extensions once a credential is recognised (the token exists, or the
/// SSO token verified), so that a later refusal is attributed to a known identity.
#[derive(Debug, Clone)]
pub struct KnownIdentity {
    pub tenant: String,
    pub subject: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Already authenticated by the authorisation layer.
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthenticated("missing Authorization: Bearer <token>".into())
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() < 8192)
            .ok_or_else(|| {
                ApiError::Unauthenticated("expected Authorization: Bearer <token>".into())
            })?;
        // Not a shipgate token: a single-sign-on token from the identity provider.
        if !token.starts_with("sg_")
            && let Some(oidc) = &state.oidc
        {
            let id = oidc.verify(token, state.directory.as_deref()).await?;
            parts.extensions.insert(KnownIdentity {
                tenant: id.tenant.clone(),
                subject: id.subject.clone(),
            });
            let tenant = match parts.headers.get(TENANT_HEADER) {
                None => id.tenant.clone(),
                Some(h) => {
                    let asked = h
                        .to_str()
                        .map_err(|_| {
                            ApiError::BadRequest(format!("{TENANT_HEADER} is not valid text"))
                        })?
                        .trim();
                    if !valid_tenant(asked) {
                        return Err(ApiError::BadRequest(format!(
                            "{TENANT_HEADER}: '{asked}' is not a tenant name"
                        )));
                    }
                    asked.to_owned()
                }
            };
            return sso_caller(state, id, tenant).await;
        }
        let hash = hash_token(token);
        let t = match state.tokens.get(&hash) {
            Some(t) => t,
            None => {
                // Fail closed: a store error is an error, never an anonymous pass.
                let t =
                    state.store.find_token(&hash).await?.ok_or_else(|| {
                        ApiError::Unauthenticated("invalid or revoked token".into())
                    })?;
                state.tokens.put(&hash, t.clone());
                t
            }
        };
        parts.extensions.insert(KnownIdentity {
            tenant: t.tenant.clone(),
            subject: t.subject.clone(),
        });
        let now = state.clock.now();
        if !t.usable() {
            return Err(ApiError::Unauthenticated(
                "this emergency privilege awaits a second admin's confirmation".into(),
            ));
        }
        if let Some(exp) = t.expires_at
            && exp <= now
        {
            return Err(ApiError::Unauthenticated("the token has expired".into()));
        }
        // Last use, for access reviews: recorded at most every five minutes per token.
        if t.last_used_at
            .is_none_or(|l| now - l > chrono::Duration::minutes(5))
        {
            let mut touched = t.clone();
            touched.last_used_at = Some(now);
            state.tokens.put(&hash, touched);
            let (store, id) = (state.store.clone(), t.id);
            tokio::spawn(async move {
                if let Err(e) = store.touch_token(id, now).await {
                    tracing::warn!(error = %e, "could not record a token's last use");
                }
            });
        }
        let mut tenant = t.tenant.clone();
        if let Some(h) = parts.headers.get(TENANT_HEADER) {
            let asked = h
                .to_str()
                .map_err(|_| ApiError::BadRequest(format!("{TENANT_HEADER} is not valid text")))?
                .trim();
            if asked != t.tenant {
                if !t.root {
                    return Err(ApiError::Forbidden(
                        "this token cannot act for another tenant".into(),
                    ));
                }
                if !valid_tenant(asked) {
                    return Err(ApiError::BadRequest(format!(
                        "{TENANT_HEADER}: '{asked}' is not a tenant name"
                    )));
                }
                tenant = asked.to_owned();
            }
        }
        Ok(Caller {
            tenant,
            subject: t.subject,
            role: t.role,
            root: t.root,
            env_tier: t.env_tier,
        })
    }
}

fn rank(r: Role) -> usize {
    Role::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

/// The role of a signed-in identity in `tenant`: the highest of what `oidc.role_map` gives its
/// groups (in the SSO tenant only) and the live role grants to it or to one of its groups. An
/// unscoped role beats the same role limited to one tier. No role: refused (default deny).
async fn sso_caller(
    state: &AppState,
    id: crate::oidc::Identity,
    tenant: String,
) -> Result<Caller, ApiError> {
    let grants = state.grants.get(state.store.as_ref(), &tenant).await?;
    let now = state.clock.now();
    let mut best: Option<(Role, Option<shipgate_domain::EnvTier>, Option<&ApiToken>)> =
        if tenant == id.tenant {
            id.mapped.map(|r| (r, None, None))
        } else {
            None
        };
    for g in grants.iter().filter(|g| {
        g.usable()
            && g.expires_at.is_none_or(|e| e > now)
            && (g.subject == id.subject
                || g.subject
                    .strip_prefix("group:")
                    .is_some_and(|n| id.groups.iter().any(|x| x == n)))
    }) {
        let better = match &best {
            None => true,
            Some((r, tier, _)) => {
                rank(g.role) > rank(*r) || (g.role == *r && tier.is_some() && g.env_tier.is_none())
            }
        };
        if better {
            best = Some((g.role, g.env_tier, Some(g)));
        }
    }
    let Some((role, env_tier, grant)) = best else {
        return Err(ApiError::Forbidden(format!(
            "{} has no role in tenant {tenant}: no role grant names it or its groups ({}), and no mapped group gives one",
            id.subject,
            id.groups.join(", ")
        )));
    };
    if let Some(g) = grant {
        state.grants.touch(&state.store, g, now);
    }
    Ok(Caller {
        tenant,
        subject: id.subject,
        role,
        root: false,
        env_tier,
    })
}

pub fn valid_tenant(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
