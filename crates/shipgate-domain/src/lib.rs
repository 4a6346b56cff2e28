//! shipgate's domain, in two halves:
//! - tracking: deployments, their validation and status lifecycle, environments, the audit chain;
//! - governance: change requests, the approval policy, approver groups, the gate's decision.
//!
//! Invariant: nothing in this crate performs IO. Time, configuration and the previous chain
//! head are passed in by the caller.
#![forbid(unsafe_code)]

#[macro_use]
pub mod model;
pub mod access;
pub mod approval;
pub mod audit;
pub mod canonical;
pub mod change;
pub mod directory;
pub mod environment;
pub mod error;
pub mod events;
pub mod identity;
pub mod import;
pub mod incident;
pub mod input;
pub mod integrations;
pub mod lifecycle;
pub mod policy;
pub mod provenance;
pub mod requirements;
pub mod time;
pub mod vcs;

pub use error::{ErrorCode, FieldError, FieldErrors};
pub use model::*;
