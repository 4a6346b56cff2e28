//! Refused requests, kept in proportion. A refused *known* identity (a real token or SSO
//! identity used outside its role or tenant) is evidence an auditor wants: it goes on the
//! audit chain, aggregated to at most one entry per identity and window, so a loop of refused
//! calls cannot flood the chain. A refused *unknown* credential (forged, mistyped, a scanner)
//! proves nothing about anyone: it is counted (`shipgate_auth_failures_total`) and logged, never
//! chained. Failed authentication is rate limited per client address (`governor`): past the
//! budget, every credentialed request from that address answers 429 until it recovers.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::settings::AuthSettings;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use shipgate_domain::audit::PendingEntry;
use shipgate_domain::time::{Clock, Timestamp};
use shipgate_store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// One refused request of a known identity.
#[derive(Debug, Clone)]
pub struct Refused {
    pub tenant: String,
    pub actor: String,
    pub route: String,
    pub reason: String,
}

#[derive(Default)]
struct Agg {
    count: u64,
    routes: BTreeMap<String, u64>,
    reasons: BTreeSet<String>,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
}

/// Refusals of known identities, aggregated onto the audit chain by a background task.
#[derive(Clone)]
pub struct RefusalLog {
    tx: mpsc::Sender<(Refused, Timestamp)>,
    clock: Arc<dyn Clock>,
}

impl RefusalLog {
    pub fn spawn(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        window: Duration,
        stop: CancellationToken,
    ) -> (RefusalLog, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<(Refused, Timestamp)>(4096);
        let c = clock.clone();
        let h = tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    m = rx.recv() => m,
                    _ = stop.cancelled() => None,
                };
                let Some(first) = first else { return };
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + window;
                loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(m) => batch.push(m),
                            None => break,
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = stop.cancelled() => break,
                    }
                }
                let entries = aggregate(batch);
                if let Err(e) = store.record_audit(entries, c.now()).await {
                    tracing::warn!(error = %e, "could not audit refused requests");
                }
            }
        });
        (RefusalLog { tx, clock }, h)
    }

    /// Queues a refusal; never blocks the request (a full queue drops it, counted).
    pub fn refused(&self, r: Refused) {
        if self.tx.try_send((r, self.clock.now())).is_err() {
            metrics::counter!("shipgate_refusals_dropped_total").increment(1);
        }
    }
}

/// One `access.denied` entry per (tenant, identity) with the count, routes and reasons.
fn aggregate(batch: Vec<(Refused, Timestamp)>) -> Vec<PendingEntry> {
    let mut by: BTreeMap<(String, String), Agg> = BTreeMap::new();
    for (r, at) in batch {
        let a = by.entry((r.tenant, r.actor)).or_default();
        a.count += 1;
        *a.routes.entry(r.route).or_default() += 1;
        a.reasons.insert(r.reason);
        a.first = Some(a.first.map_or(at, |f| f.min(at)));
        a.last = Some(a.last.map_or(at, |l| l.max(at)));
    }
    by.into_iter()
        .map(|((tenant, actor), a)| {
            let subject = a.routes.keys().next().cloned().unwrap_or_default();
            PendingEntry::new(
                &tenant,
                &actor,
                "access.denied",
                &subject,
                &serde_json::json!({
                    "count": a.count,
                    "routes": a.routes,
                    "reasons": a.reasons,
                    "first_at": a.first.map(shipgate_domain::time::format),
                    "last_at": a.last.map(shipgate_domain::time::format),
                }),
            )
        })
        .collect()
}

/// Failed authentication per client address.
pub struct AuthThrottle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl AuthThrottle {
    pub fn new(s: &AuthSettings) -> Self {
        let per_min = NonZeroU32::new(s.failures_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(s.failure_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        AuthThrottle {
            limiter: RateLimiter::keyed(Quota::per_minute(per_min).allow_burst(burst)),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must still wait, if it is over its budget.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let mut m = self.blocked.lock().ok()?;
        let until = *m.get(&ip)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            m.remove(&ip);
            None
        }
    }

    /// Records a failed authentication from `ip`; past the budget the address is blocked until
    /// the limiter lets it through again.
    pub fn failed(&self, ip: IpAddr) {
        if let Err(not_until) = self.limiter.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if let Ok(mut m) = self.blocked.lock() {
                if m.len() > 100_000 {
                    let now = Instant::now();
                    m.retain(|_, u| *u > now);
                    self.limiter.retain_recent();
                }
                m.insert(ip, Instant::now() + wait);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_blocks_an_address_and_spares_others() {
        let t = AuthThrottle::new(&AuthSettings {
            failures_per_minute: 1,
            failure_burst: 3,
            refusal_window_secs: 1,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            t.failed(a);
            assert!(t.blocked(a).is_none());
        }
        t.failed(a);
        let w = t.blocked(a).unwrap();
        assert!(
            w > Duration::from_secs(1) && w <= Duration::from_secs(60),
            "{w:?}"
        );
        assert!(t.blocked(b).is_none());
    }

    #[test]
    fn refusals_aggregate_per_identity() {
        let at = shipgate_domain::time::from_micros(0);
        let r = |actor: &str, route: &str| {
            (
                Refused {
                    tenant: "t".into(),
                    actor: actor.into(),
                    route: route.into(),
                    reason: "role".into(),
                },
                at,
            )
        };
        let e = aggregate(vec![
            r("a", "GET /x"),
            r("a", "GET /x"),
            r("a", "POST /y"),
            r("b", "GET /x"),
        ]);
        assert_eq!(e.len(), 2);
    }
}
