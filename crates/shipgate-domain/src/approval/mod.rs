//! Approval rules and the gate decision, free of IO: who may approve what (separation of
//! duties, one person counts once, backups), what a decision does to a change, and what the
//! gate answers for an environment right now.
//!
//! The files build on each other in one direction; each uses only files listed above it:
//!
//! - `delegation`: delegations of approval authority and their checks;
//! - `separation`: who may never approve or acknowledge a change;
//! - `groups`: approver groups, and the matching that counts approvals against them;
//! - `verdict`: the gate's answer, and the policy version it is given under;
//! - `records`: stored records (pushed policies, gate calls, root-cause reviews);
//! - `request`: a decision as requested, its outcome and its refusal;
//! - `authority`: whose authority a decision carries (the actor's own or a delegator's);
//! - `emergency`: the emergency path (the gate's answer, the two acknowledgements);
//! - `gate`: the gate decision (`decide`, `standing`);
//! - `decision`: what a decision does to a change (`apply_decision`);
//! - `submission`: opening and resubmitting a change;
//! - `escalation`, `explain`: an overdue change's escalation; requirements and standing per
//!   environment.
mod authority;
mod decision;
mod delegation;
mod emergency;
mod escalation;
mod explain;
mod gate;
mod groups;
mod records;
mod request;
mod separation;
mod submission;
mod verdict;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use self::decision::apply_decision;
pub use self::delegation::{Delegation, check_delegation};
pub use self::escalation::escalation_due;
pub use self::explain::explain;
pub use self::gate::{decide, standing};
pub use self::groups::{Group, GroupProgress};
pub use self::records::{GateCall, PolicyRecord, RootCauseReview};
pub use self::request::{DecisionRequest, Outcome, Refusal};
pub use self::separation::exclusion;
pub use self::submission::{open_change, resubmit};
pub use self::verdict::{GateDecision, GateState, PolicyVersion, Reason};
pub use crate::identity::Person;
