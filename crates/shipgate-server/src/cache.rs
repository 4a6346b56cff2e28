//! Read caches with a time to live measured on the injected clock, so that tests move time
//! forward instead of sleeping. The TTLs are settings (`[cache]`).
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;
use shipgate_domain::time::{Clock, Timestamp};

/// How long each cache keeps what it read, in seconds. Writes through this instance forget
/// their entries at once; other instances see a write within the TTL.
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

impl<V: Clone> TtlMap<V> {
    pub fn new(clock: Arc<dyn Clock>, ttl_secs: u64) -> Self {
        TtlMap {
            ttl: chrono::TimeDelta::try_seconds(i64::try_from(ttl_secs).unwrap_or(i64::MAX))
                .unwrap_or(chrono::TimeDelta::MAX),
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
