//! Delegations of approval authority, and the checks a new one must pass.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::time::Timestamp;

/// A delegation of approval authority: `to` may decide for `from` (in `group`, or in every
/// group of `from`) between `starts_at` and `ends_at`. Delegations are never followed further
/// (A to B to C does not give C A's authority).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delegation {
    pub id: Uuid,
    pub from: String,
    pub to: String,
    pub group: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Timestamp,
    pub reason: String,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

impl Delegation {
    pub fn active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.starts_at <= now && now < self.ends_at
    }

    fn overlaps(&self, other: &Delegation) -> bool {
        self.revoked_at.is_none()
            && other.revoked_at.is_none()
            && self.starts_at < other.ends_at
            && other.starts_at < self.ends_at
    }
}

/// Checks a new delegation against the ones recorded: never to oneself, never in a loop
/// (B to A while A to B overlaps), a sane period.
pub fn check_delegation(
    new: &Delegation,
    existing: &[Delegation],
    now: Timestamp,
) -> Result<(), crate::FieldErrors> {
    let mut e = crate::FieldErrors::default();
    if new.from == new.to {
        e.add(
            "to",
            "self_delegation",
            "a delegation to yourself is refused",
        );
    }
    if new.ends_at <= new.starts_at {
        e.add("ends_at", "invalid_value", "must be after starts_at");
    }
    if new.ends_at <= now {
        e.add("ends_at", "in_past", "the period has already ended");
    }
    if new.reason.trim().is_empty() {
        e.add("reason", "required", "say why (absence, handover, ...)");
    }
    if existing
        .iter()
        .any(|d| d.from == new.to && d.to == new.from && d.overlaps(new))
    {
        e.add(
            "to",
            "delegation_loop",
            format!(
                "{} already delegates to {} in this period",
                new.to, new.from
            ),
        );
    }
    e.into_result(())
}
