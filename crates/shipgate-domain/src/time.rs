//! Time as the domain sees it: UTC, microsecond precision (what both stores keep losslessly).
use chrono::{DateTime, TimeZone, Utc};

pub type Timestamp = DateTime<Utc>;

/// The clock is passed in, so that rules about "now" are deterministic in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        truncate(Utc::now())
    }
}

/// A clock fixed at one instant, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// A clock for tests: the system's time plus an offset that only grows. Time passes as usual,
/// and a test moves past an expiry or a cache's TTL with `advance` instead of sleeping.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_us: std::sync::atomic::AtomicI64,
}

impl ShiftedClock {
    pub fn advance(&self, by: std::time::Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_us
            .fetch_add(us, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        let off = self.offset_us.load(std::sync::atomic::Ordering::SeqCst);
        let now = truncate(Utc::now());
        now.checked_add_signed(chrono::TimeDelta::microseconds(off))
            .unwrap_or(now)
    }
}

pub fn truncate(t: Timestamp) -> Timestamp {
    from_micros(t.timestamp_micros())
}

pub fn to_micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

pub fn from_micros(us: i64) -> Timestamp {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// Parses RFC 3339 (`2026-01-02T03:04:05Z`, offsets allowed). Returns a message on failure.
pub fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| truncate(t.with_timezone(&Utc)))
        .map_err(|e| format!("not an RFC 3339 timestamp ({e}); example: 2026-01-02T03:04:05Z"))
}

pub fn format(t: Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `at` plus `d`, saturating at the end of representable time (never panics).
pub(crate) fn after(at: Timestamp, d: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|s| at.checked_add_signed(s))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
