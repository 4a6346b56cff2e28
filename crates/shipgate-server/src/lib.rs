//! shipgate's HTTP API: the only crate that knows HTTP and JSON.
//!
//! Handlers are thin: they authenticate, turn the wire request into a domain command, call the
//! store (through the group-commit writer for creates) and map the result. Errors become
//! RFC 9457 problem documents in exactly one place (`error.rs`).
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod authz;
pub mod cache;
pub mod cdevents_schema;
pub mod config;
pub mod error;
pub mod ldap;
pub mod oidc;
pub mod refusals;
pub mod routes;
pub mod service;
pub mod settings;
pub mod sink;
pub mod state;
pub mod stream;
pub mod telemetry;
pub mod writeback;

pub use app::{Application, Bootstrap};
pub use config::Settings;
