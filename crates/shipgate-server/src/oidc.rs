//! Single sign-on: bearer tokens issued by an OpenID Connect provider (JWT access or ID
//! tokens) are verified against the provider's JWKS (discovered from the issuer, cached, and
//! refetched when a token names a key the cache does not know, for key rotation). The issuer,
//! the audience, the expiry and an asymmetric signature are all required, and a token is not
//! accepted before its `nbf` (not before); `exp` and `nbf` share one small leeway
//! (`leeway_secs`, at most [`MAX_LEEWAY_SECS`]). `alg=none` and HMAC algorithms are refused.
//! Group claims map to shipgate roles; the highest mapped role wins.
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use shipgate_domain::Role;
use tokio::sync::RwLock;

use crate::error::ApiError;
pub use crate::settings::OidcSettings;

/// Who an SSO token names.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    /// The token's group claim plus the caller's directory groups.
    pub groups: Vec<String>,
    /// The highest role `role_map` gives those groups (in `tenant`).
    pub mapped: Option<Role>,
    /// The tenant SSO callers act in unless they ask for another.
    pub tenant: String,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

/// What a verified token said, kept until it expires (at most `jwks_refresh_secs`), keyed by
/// the SHA-256 of the whole token: the same bytes were already verified, so the signature check
/// is not repeated on every request.
struct Verified {
    subject: String,
    groups: Vec<String>,
    until: Instant,
}

pub struct Oidc {
    settings: OidcSettings,
    issuer: String,
    audience: String,
    http: reqwest::Client,
    keys: RwLock<Option<Keys>>,
    verified: std::sync::RwLock<std::collections::HashMap<String, Verified>>,
}

const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn unauthenticated(m: impl Into<String>) -> ApiError {
    ApiError::Unauthenticated(m.into())
}

/// The largest clock skew allowed for `exp` and `nbf`, whatever the setting says.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Checks the `nbf` (not before) claim at `now` (seconds since the epoch): a token is not
/// accepted before it, give or take `leeway` seconds. Absent is fine; present, it must be a
/// number.
fn not_before_ok(claims: &Value, now: i64, leeway: u64) -> Result<(), String> {
    let Some(nbf) = claims.get("nbf").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let nbf = nbf
        .as_f64()
        .filter(|n| n.is_finite())
        .ok_or("the token's nbf is not a NumericDate")?;
    let latest = now.saturating_add(i64::try_from(leeway).unwrap_or(i64::MAX));
    if nbf > latest as f64 {
        return Err("the token is not valid yet (nbf is in the future)".into());
    }
    Ok(())
}

impl Oidc {
    /// `None` when SSO is not configured. An issuer without an audience is a configuration
    /// error: a token for any other application would be accepted.
    pub fn new(settings: &OidcSettings) -> anyhow::Result<Option<Oidc>> {
        let Some(issuer) = settings.issuer.clone() else {
            return Ok(None);
        };
        let Some(audience) = settings.audience.clone() else {
            anyhow::bail!("oidc.issuer is set but oidc.audience is not");
        };
        if settings.role_map.is_empty() {
            anyhow::bail!("oidc.role_map is empty: no SSO caller could be given a role");
        }
        Ok(Some(Oidc {
            settings: settings.clone(),
            issuer,
            audience,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            keys: RwLock::new(None),
            verified: Default::default(),
        }))
    }

    async fn fetch_keys(&self) -> Result<JwkSet, ApiError> {
        let unavailable = |e: String| ApiError::Unavailable(format!("identity provider: {e}"));
        let uri = match &self.settings.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let doc: Value = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
                    .json()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                doc["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| unavailable("discovery document has no jwks_uri".into()))?
                    .to_owned()
            }
        };
        self.http
            .get(&uri)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .json()
            .await
            .map_err(|e| unavailable(e.to_string()))
    }

    /// The key named `kid`: from the cache, else (rotation) from a fresh fetch, at most once
    /// every few seconds.
    async fn key(&self, kid: &str) -> Result<jsonwebtoken::jwk::Jwk, ApiError> {
        let refresh = Duration::from_secs(self.settings.jwks_refresh_secs.max(1));
        {
            let g = self.keys.read().await;
            if let Some(k) = g.as_ref()
                && let Some(j) = k.set.find(kid)
                && k.fetched.elapsed() < refresh
            {
                return Ok(j.clone());
            }
        }
        let mut g = self.keys.write().await;
        // Refetch when the keys are old, or when the token names an unknown key (rotation) and
        // the last fetch is more than a second ago: unknown kids cannot force a fetch storm.
        let refetch = match g.as_ref() {
            None => true,
            Some(k) => {
                k.fetched.elapsed() >= refresh
                    || (k.set.find(kid).is_none() && k.fetched.elapsed() > Duration::from_secs(1))
            }
        };
        if refetch {
            let set = self.fetch_keys().await?;
            *g = Some(Keys {
                set,
                fetched: Instant::now(),
            });
        }
        g.as_ref()
            .and_then(|k| k.set.find(kid).cloned())
            .ok_or_else(|| {
                unauthenticated(
                    "the token is signed with a key the identity provider does not publish",
                )
            })
    }

    /// Checks the signature, issuer, audience and expiry; returns the subject, the group
    /// claim and `exp` (seconds since the epoch).
    async fn verify_signed(&self, token: &str) -> Result<(String, Vec<String>, i64), ApiError> {
        let header = decode_header(token)
            .map_err(|e| unauthenticated(format!("not a valid signed token: {e}")))?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(unauthenticated(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthenticated("the token names no signing key (kid)"))?;
        let jwk = self.key(&kid).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| unauthenticated(format!("unusable signing key: {e}")))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let leeway = self.settings.leeway_secs.min(MAX_LEEWAY_SECS);
        v.leeway = leeway;
        // A token is not accepted before its `nbf`, with the same leeway as `exp`.
        v.validate_nbf = true;
        let data = decode::<Value>(token, &key, &v)
            .map_err(|e| unauthenticated(format!("the token was refused: {e}")))?;
        let claims = data.claims;
        not_before_ok(&claims, chrono::Utc::now().timestamp(), leeway)
            .map_err(|m| unauthenticated(format!("the token was refused: {m}")))?;
        let subject = claims[&self.settings.subject_claim]
            .as_str()
            .or_else(|| claims["client_id"].as_str())
            .ok_or_else(|| unauthenticated("the token names no subject"))?
            .to_owned();
        let groups: Vec<String> = match &claims[&self.settings.groups_claim] {
            Value::Array(a) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let exp = claims["exp"].as_i64().unwrap_or(0);
        Ok((subject, groups, exp))
    }

    /// Verifies `token`; the caller's groups are its group claim plus, when a directory is
    /// configured, its directory groups.
    pub async fn verify(
        &self,
        token: &str,
        directory: Option<&crate::ldap::Directory>,
    ) -> Result<Identity, ApiError> {
        let key = shipgate_domain::audit::sha256_hex(token.as_bytes());
        let cached = self.verified.read().ok().and_then(|m| {
            m.get(&key)
                .filter(|v| v.until > Instant::now())
                .map(|v| (v.subject.clone(), v.groups.clone()))
        });
        let (subject, mut groups) = match cached {
            Some(c) => c,
            None => {
                let (subject, groups, exp) = self.verify_signed(token).await?;
                let now_unix = chrono::Utc::now().timestamp();
                let refresh =
                    i64::try_from(self.settings.jwks_refresh_secs.max(1)).unwrap_or(i64::MAX);
                let ttl =
                    u64::try_from(exp.saturating_sub(now_unix).clamp(0, refresh)).unwrap_or(0);
                let until = Instant::now().checked_add(Duration::from_secs(ttl));
                if ttl > 0
                    && let Some(until) = until
                    && let Ok(mut m) = self.verified.write()
                {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert(
                        key,
                        Verified {
                            subject: subject.clone(),
                            groups: groups.clone(),
                            until,
                        },
                    );
                }
                (subject, groups)
            }
        };
        if let Some(d) = directory {
            groups.extend(d.groups_of(&subject));
        }
        let rank = |r: &Role| Role::ALL.iter().position(|x| x == r).unwrap_or(0);
        let mapped = groups
            .iter()
            .filter_map(|g| self.settings.role_map.get(g))
            .max_by_key(|r| rank(r))
            .copied();
        Ok(Identity {
            subject,
            groups,
            mapped,
            tenant: self.settings.tenant.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::not_before_ok;
    use serde_json::json;

    #[test]
    fn not_before_is_honoured_with_the_leeway() {
        let now = 1_800_000_000;
        assert!(not_before_ok(&json!({}), now, 60).is_ok());
        assert!(not_before_ok(&json!({"nbf": null}), now, 60).is_ok());
        assert!(not_before_ok(&json!({"nbf": now - 10}), now, 60).is_ok());
        assert!(not_before_ok(&json!({"nbf": now + 60}), now, 60).is_ok());
        assert!(not_before_ok(&json!({"nbf": now + 61}), now, 60).is_err());
        assert!(not_before_ok(&json!({"nbf": now + 3600}), now, 60).is_err());
        assert!(not_before_ok(&json!({"nbf": 1.0e300}), now, 60).is_err());
        assert!(not_before_ok(&json!({"nbf": "soon"}), now, 60).is_err());
        assert!(not_before_ok(&json!({"nbf": now + 10}), now, u64::MAX).is_ok());
    }
}
