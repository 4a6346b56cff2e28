//! Integration tests: every test starts the real server on 127.0.0.1:0 over a real store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod approvals;
mod auth;
mod authz;
mod bad_input;
mod cli;
mod deployments;
mod import;
mod incidents;
mod isolation;
mod itsm;
mod ldap;
mod oidc;
mod ops;
mod provenance;
mod stream;
mod webhooks;
