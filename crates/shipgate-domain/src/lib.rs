//! shipgate's domain: the deployment model, its validation rules, the environment taxonomy,
//! the status lifecycle and the audit hash chain.
//!
//! Invariant: nothing in this crate performs IO. Time, configuration and the previous chain
//! head are passed in by the caller.
#![forbid(unsafe_code)]

pub mod audit;
pub mod environment;
pub mod error;
pub mod import;
pub mod input;
pub mod lifecycle;
pub mod model;
pub mod requirements;
pub mod time;

pub use error::{FieldError, FieldErrors};
pub use model::*;
