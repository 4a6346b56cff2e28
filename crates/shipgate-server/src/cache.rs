//! Read caches with a time to live measured on the injected clock, so that tests move time
//! forward instead of sleeping. The TTLs are settings (`[cache]`).
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use shipgate_domain::ApiToken;
use shipgate_domain::time::{Clock, Timestamp};

/// How long each cache keeps what it read, in seconds (at most an hour: a revoked token must
/// not live on in another instance's cache). Writes through this instance forget their entries
/// at once; other instances see a write within the TTL.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// API tokens by hash (revocation reaches other instances within this).
    pub tokens_secs: u64,
    /// Each tenant's SSO role grants.
    pub grants_secs: u64,
    /// Each tenant's policy, approver groups and people.
    pub governance_secs: u64,
    /// Each tenant's declared environments.
    pub environments_secs: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            tokens_secs: 30,
            grants_secs: 5,
            governance_secs: 2,
            environments_secs: 5,
        }
    }
}

/// Entries by key, each fresh for `ttl` after it was read. Bounded: keys can come from
/// requests, so a full map is cleared.
pub struct TtlMap<V> {
    ttl: chrono::TimeDelta,
    clock: Arc<dyn Clock>,
    entries: RwLock<HashMap<String, (Timestamp, V)>>,
}

const MAX_ENTRIES: usize = 10_000;
/// The longest any cache keeps an entry, whatever the settings say.
pub const MAX_TTL_SECS: u64 = 3600;

impl<V: Clone> TtlMap<V> {
    pub fn new(clock: Arc<dyn Clock>, ttl_secs: u64) -> Self {
        TtlMap {
            // Bounded by MAX_TTL_SECS, so the conversion cannot fail.
            ttl: chrono::TimeDelta::seconds(ttl_secs.min(MAX_TTL_SECS) as i64),
            clock,
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        let map = self.entries.read().ok()?;
        let (at, v) = map.get(key)?;
        let age = self.clock.now().signed_duration_since(*at);
        (age >= chrono::TimeDelta::zero() && age < self.ttl).then(|| v.clone())
    }

    pub fn put(&self, key: &str, v: V) {
        if let Ok(mut map) = self.entries.write() {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert(key.to_owned(), (self.clock.now(), v));
        }
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut map) = self.entries.write() {
            map.remove(key);
        }
    }
}

/// Recently seen tokens, so that authentication costs no store round trip on the hot path.
/// Revocation and rotation forget a token at once in this instance; other instances forget it
/// within the TTL.
pub type TokenCache = crate::cache::TtlMap<ApiToken>;

type Grants = std::sync::Arc<Vec<ApiToken>>;

/// Each tenant's role grants, kept for a few seconds (granting or revoking here forgets them at
/// once; other instances see it within the TTL).
pub struct GrantCache {
    entries: crate::cache::TtlMap<Grants>,
    touched: crate::cache::TtlMap<()>,
}

impl GrantCache {
    pub fn new(clock: std::sync::Arc<dyn shipgate_domain::time::Clock>, ttl_secs: u64) -> Self {
        GrantCache {
            entries: crate::cache::TtlMap::new(clock.clone(), ttl_secs),
            // A grant's last use is recorded at most every five minutes.
            touched: crate::cache::TtlMap::new(clock, 300),
        }
    }

    pub fn forget(&self, tenant: &str) {
        self.entries.forget(tenant);
    }

    pub async fn get(
        &self,
        store: &dyn shipgate_store::Store,
        tenant: &str,
    ) -> Result<Arc<Vec<ApiToken>>, crate::error::ApiError> {
        if let Some(g) = self.entries.get(tenant) {
            return Ok(g);
        }
        // Fail closed: a store error is an error, never a pass.
        let mut all = store.list_tokens(tenant).await?;
        all.retain(ApiToken::is_role_grant);
        let g = std::sync::Arc::new(all);
        self.entries.put(tenant, g.clone());
        Ok(g)
    }

    /// Records a grant's last use for access reviews, at most every five minutes.
    pub fn touch(
        &self,
        store: &Arc<dyn shipgate_store::Store>,
        g: &ApiToken,
        now: shipgate_domain::time::Timestamp,
    ) {
        let key = g.id.to_string();
        if self.touched.get(&key).is_some() {
            return;
        }
        self.touched.put(&key, ());
        let (store, id) = (store.clone(), g.id);
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(id, now).await {
                tracing::warn!(error = %e, "could not record a role grant's last use");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shipgate_domain::time::ShiftedClock;

    #[test]
    fn entries_expire_on_the_clock_and_no_setting_keeps_them_longer_than_an_hour() {
        let clock = Arc::new(ShiftedClock::default());
        let short: TtlMap<u8> = TtlMap::new(clock.clone(), 5);
        let huge: TtlMap<u8> = TtlMap::new(clock.clone(), u64::MAX);
        short.put("t", 1);
        huge.put("t", 1);
        assert_eq!((short.get("t"), huge.get("t")), (Some(1), Some(1)));
        clock.advance(std::time::Duration::from_secs(6));
        assert_eq!(short.get("t"), None);
        assert_eq!(huge.get("t"), Some(1));
        clock.advance(std::time::Duration::from_secs(MAX_TTL_SECS));
        assert_eq!(huge.get("t"), None, "a huge TTL is bounded");
        let off: TtlMap<u8> = TtlMap::new(clock, 0);
        off.put("t", 1);
        assert_eq!(off.get("t"), None, "0 turns the cache off");
    }
}
