//! shipgate's domain: the deployment model, its validation rules, the environment taxonomy,
//! the status lifecycle and the audit hash chain.
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

pub use error::{FieldError, FieldErrors};
pub use model::*;
