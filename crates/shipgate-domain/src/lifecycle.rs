//! The status lifecycle: which transitions are allowed, how late events are treated, and how a
//! fanned-out deployment's targets add up to one outcome.
use std::collections::BTreeMap;

use crate::model::DeploymentStatus::{self, *};
use crate::time::Timestamp;

/// The stage of a status in the lifecycle: queued < started < terminal < rolled back.
fn stage(s: DeploymentStatus) -> u8 {
    match s {
        Queued => 0,
        Started => 1,
        Succeeded | Failed | Cancelled => 2,
        RolledBack => 3,
    }
}

pub fn can_transition(from: DeploymentStatus, to: DeploymentStatus) -> bool {
    match from {
        Queued => matches!(to, Started | Succeeded | Failed | Cancelled),
        Started => matches!(to, Succeeded | Failed | Cancelled),
        Succeeded | Failed => to == RolledBack,
        Cancelled | RolledBack => false,
    }
}

/// What appending an event does to the state it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The state moves to the event's status.
    Advance,
    /// The same status again: a retry. Nothing is appended.
    Duplicate,
    /// An earlier stage that arrives after a later one (a late event): it is recorded as history,
    /// flagged late, and the state does not move.
    History,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionError {
    pub from: DeploymentStatus,
    pub to: DeploymentStatus,
}

impl std::fmt::Display for TransitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot move from '{}' to '{}'", self.from, self.to)
    }
}

/// Decides what an event with status `to` does to a state currently at `from`.
pub fn apply(from: DeploymentStatus, to: DeploymentStatus) -> Result<Effect, TransitionError> {
    if from == to {
        Ok(Effect::Duplicate)
    } else if can_transition(from, to) {
        Ok(Effect::Advance)
    } else if stage(to) < stage(from) {
        Ok(Effect::History)
    } else {
        Err(TransitionError { from, to })
    }
}

/// One outcome for a deployment that fans out to several targets: running while any target
/// runs; then failed if any failed, rolled back if any rolled back, cancelled if all were
/// cancelled, succeeded if all succeeded, and failed for a mix of succeeded and cancelled.
pub fn aggregate(targets: &BTreeMap<String, DeploymentStatus>) -> Option<DeploymentStatus> {
    if targets.is_empty() {
        return None;
    }
    let all = |s: DeploymentStatus| targets.values().all(|t| *t == s);
    let any = |s: DeploymentStatus| targets.values().any(|t| *t == s);
    Some(if all(Queued) {
        Queued
    } else if targets.values().any(|t| !t.is_terminal()) {
        Started
    } else if any(Failed) {
        Failed
    } else if any(RolledBack) {
        RolledBack
    } else if all(Cancelled) {
        Cancelled
    } else if all(Succeeded) {
        Succeeded
    } else {
        Failed
    })
}

/// The state a deployment is in, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub status: DeploymentStatus,
    pub finished_at: Option<Timestamp>,
    pub last_event_at: Timestamp,
    pub targets: BTreeMap<String, DeploymentStatus>,
}

/// The outcome of applying an event to a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub state: State,
    /// Whether the event is appended (false for a duplicate).
    pub append: bool,
    pub late: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventError {
    UnknownTarget(String),
    Transition(TransitionError),
}

/// Applies a status event (for the whole deployment, or for one target) to a state.
pub fn apply_event(
    state: &State,
    target: Option<&str>,
    to: DeploymentStatus,
    at: Timestamp,
    arrived_late: bool,
) -> Result<Applied, EventError> {
    let mut next = state.clone();
    let late_by_order = at < state.last_event_at;
    let effect = match target {
        Some(t) => {
            let cur = *state
                .targets
                .get(t)
                .ok_or_else(|| EventError::UnknownTarget(t.to_owned()))?;
            let effect = apply(cur, to).map_err(EventError::Transition)?;
            if effect == Effect::Advance {
                next.targets.insert(t.to_owned(), to);
                if let Some(agg) = aggregate(&next.targets) {
                    next.status = agg;
                }
            }
            effect
        }
        None => {
            let effect = apply(state.status, to).map_err(EventError::Transition)?;
            if effect == Effect::Advance {
                next.status = to;
            }
            effect
        }
    };
    if effect == Effect::Duplicate {
        return Ok(Applied {
            state: state.clone(),
            append: false,
            late: false,
        });
    }
    if next.status.is_terminal() && !state.status.is_terminal() {
        next.finished_at = Some(at);
    }
    if next.status == RolledBack && state.status != RolledBack {
        next.finished_at = state.finished_at.or(Some(at));
    }
    if at > state.last_event_at {
        next.last_event_at = at;
    }
    Ok(Applied {
        state: next,
        append: true,
        late: arrived_late || late_by_order || effect == Effect::History,
    })
}

/// Recomputes a deployment's state from its recorded events, in the order they were applied
/// (their audit sequence). The first event (two, for a deployment recorded with an outcome)
/// came with the record itself.
pub fn replay(
    d: &crate::model::NewDeployment,
    events: &[crate::model::StatusEvent],
) -> Result<State, String> {
    let n = if d.initial_status.is_terminal() { 2 } else { 1 };
    if events.len() < n {
        return Err(format!(
            "has {} event(s); its creation alone wrote {n}",
            events.len()
        ));
    }
    let mut state = State {
        status: d.initial_status,
        finished_at: d.initial_finished_at,
        last_event_at: events[..n]
            .iter()
            .map(|e| e.occurred_at)
            .max()
            .unwrap_or(d.started_at),
        targets: d
            .targets
            .iter()
            .map(|t| (t.clone(), d.initial_status))
            .collect(),
    };
    for e in &events[n..] {
        let a = apply_event(&state, e.target.as_deref(), e.status, e.occurred_at, false).map_err(
            |err| {
                format!(
                    "event {} ({}) cannot follow its predecessors: {err:?}",
                    e.id, e.status
                )
            },
        )?;
        if a.append {
            state = a.state;
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_micros;

    fn st(status: DeploymentStatus, targets: &[(&str, DeploymentStatus)]) -> State {
        State {
            status,
            finished_at: None,
            last_event_at: from_micros(1_000),
            targets: targets.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    #[test]
    fn transitions() {
        assert_eq!(apply(Started, Succeeded), Ok(Effect::Advance));
        assert_eq!(apply(Succeeded, Succeeded), Ok(Effect::Duplicate));
        assert_eq!(apply(Succeeded, Started), Ok(Effect::History));
        assert_eq!(apply(Succeeded, RolledBack), Ok(Effect::Advance));
        assert!(apply(Failed, Succeeded).is_err());
        assert!(apply(Cancelled, RolledBack).is_err());
    }

    #[test]
    fn targets_aggregate() {
        let s = st(Started, &[("eu", Started), ("us", Started)]);
        let a = apply_event(&s, Some("eu"), Succeeded, from_micros(2_000), false).expect("ok");
        assert_eq!(a.state.status, Started);
        let b =
            apply_event(&a.state, Some("us"), Succeeded, from_micros(3_000), false).expect("ok");
        assert_eq!(b.state.status, Succeeded);
        assert_eq!(b.state.finished_at, Some(from_micros(3_000)));
        let c = apply_event(&a.state, Some("us"), Failed, from_micros(3_000), false).expect("ok");
        assert_eq!(c.state.status, Failed);
        assert!(matches!(
            apply_event(&s, Some("apac"), Failed, from_micros(3_000), false),
            Err(EventError::UnknownTarget(_))
        ));
    }

    #[test]
    fn late_events_are_history() {
        let s = st(Succeeded, &[]);
        let a = apply_event(&s, None, Started, from_micros(500), false).expect("ok");
        assert!(a.append && a.late);
        assert_eq!(a.state.status, Succeeded);
        let d = apply_event(&s, None, Succeeded, from_micros(5_000), false).expect("ok");
        assert!(!d.append);
    }
}
