//! The HTTP routes. Each module exposes `routes()`; this one merges them, adds the OpenAPI
//! document (generated from the same registrations, so it matches the real routes) and the
//! cross-cutting layers.
use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::response::IntoResponse;
use serde_json::Value;

use shipgate_domain::FieldErrors;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub mod admin;
pub mod approvals;
pub mod deployments;
pub mod inventory;
pub mod ops;
pub mod webhooks;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shipgate",
        description = "Deployment governance: record every deployment, decide which may go ahead.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(crate::error::Problem, shipgate_domain::FieldError)),
    tags(
        (name = "deployments", description = "Recording deployments and their status"),
        (name = "inventory", description = "What runs where, what changed, services, environments, releases"),
        (name = "admin", description = "Tokens and the audit trail"),
        (name = "approvals", description = "Change requests, approval policy, approver groups and the deployment gate"),
        (name = "ops", description = "Health, readiness and metrics")
    )
)]
struct ApiDoc;

struct BearerAuth;
impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn router(state: AppState) -> axum::Router {
    let import_limit = state
        .settings
        .max_import_bytes
        .max(state.settings.max_body_bytes);
    let (router, mut api) = api_routes().split_for_parts();
    document_common_responses(&mut api);
    let api_json = api.to_pretty_json().unwrap_or_else(|_| "{}".into());
    router
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let body = api_json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        // Every matched route passes the one authorisation layer (crate::authz).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::authz::authorize,
        ))
        .fallback(|| async { ApiError::NotFound.into_response() })
        .layer(axum::middleware::from_fn(crate::telemetry::observe))
        .layer(DefaultBodyLimit::max(import_limit))
        .with_state(state)
}

/// The OpenAPI document, for tests and `shipgate openapi`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut api = api_routes().split_for_parts().1;
    document_common_responses(&mut api);
    api
}

/// A request-body property's constraints, as its parser enforces them.
#[derive(Default, Clone, Copy)]
struct Prop {
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<&'static str>,
    date_time: bool,
    uuid: bool,
    values: &'static [&'static str],
    /// For integers: the smallest value.
    minimum: Option<i64>,
    /// The parser reads more forms than the type's JSON Schema format: drop the format.
    any_format: bool,
    /// For arrays: whether the parser refuses duplicates.
    unique: bool,
    /// For arrays: at least this many items, each matching `pattern`.
    min_items: Option<usize>,
    list: bool,
}

/// A name (the parser trims it first).
const NAME_PATTERN: &str = "^\\s*[A-Za-z0-9][A-Za-z0-9._/-]{0,127}\\s*$";
/// A name in a list: exact (padding that trims away could make two items one).
const LIST_NAME_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$";
/// An optional name: blank reads as absent.
const OPT_NAME_PATTERN: &str = "^\\s*([A-Za-z0-9][A-Za-z0-9._/-]{0,127})?\\s*$";
const TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
const SOME_TEXT_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";
const DIGEST_PATTERN: &str = "^sha256:[0-9a-f]{64}$";

/// The rules of each request body's properties (the parsers in `shipgate_domain::input`,
/// `change.rs` and the handlers): free text (control characters refused, a length limit),
/// required text (not blank), names, digests, times, ids, enumerations and lists of names.
fn body_rule(schema: &str, prop: &str) -> Option<Prop> {
    let text = |max| Prop {
        max_length: Some(max),
        pattern: Some(TEXT_PATTERN),
        ..Default::default()
    };
    let req = |max| Prop {
        min_length: Some(1),
        max_length: Some(max),
        pattern: Some(SOME_TEXT_PATTERN),
        ..Default::default()
    };
    let name = Prop {
        max_length: Some(140),
        pattern: Some(NAME_PATTERN),
        ..Default::default()
    };
    let opt_name = Prop {
        pattern: Some(OPT_NAME_PATTERN),
        ..name
    };
    let names = |min| Prop {
        pattern: Some(LIST_NAME_PATTERN),
        list: true,
        unique: true,
        min_items: min,
        ..Default::default()
    };
    let time = Prop {
        date_time: true,
        ..Default::default()
    };
    let uuid = Prop {
        uuid: true,
        ..Default::default()
    };
    let digest = Prop {
        pattern: Some(DIGEST_PATTERN),
        ..Default::default()
    };
    let opt_digest = Prop {
        pattern: Some("^\\s*(sha256:[0-9a-f]{64})?\\s*$"),
        ..Default::default()
    };
    let one_of = |values| Prop {
        values,
        ..Default::default()
    };
    Some(match (schema, prop) {
        ("CreatePersonRequest", "subject") => name,
        ("CreatePersonRequest", "name" | "email") => text(256),
        ("GroupRequest", "description") => text(1000),
        ("GroupRequest", "members") => names(Some(1)),
        ("GroupRequest", "backups" | "regions" | "compliance") => names(None),
        ("GroupRequest", "department") => text(128),
        ("ChangeSubmission", "type") => one_of(&["standard", "normal", "emergency"]),
        ("ChangeSubmission", "title") => req(200),
        ("ChangeSubmission", "justification" | "impact" | "rollback_plan") => text(10_000),
        // RFC 3339 as chrono reads it (a superset of JSON Schema's date-time): no format.
        ("ChangeSubmission", "window_start" | "window_end") => return None,
        ("ChangeSubmission", "services" | "environments") => names(Some(1)),
        ("ChangeSubmission", "compliance" | "authors") => names(None),
        ("ChangeSubmission", "artifact_digests") => Prop {
            list: true,
            ..digest
        },
        ("ChangeSubmission", "artifact_flags") => Prop {
            list: true,
            values: &["schema_change", "security_patch", "customer_facing"],
            ..Default::default()
        },
        ("ChangeSubmission", "risk") => one_of(&["low", "medium", "high", "critical"]),
        ("ChangeSubmission", "ticket" | "incident_id" | "exploit_ref") => text(256),
        ("ChangeSubmission", "criticality") => text(64),
        ("ChangeSubmission", "team") => text(128),
        ("EvidenceRequest", "kind") => name,
        ("EvidenceRequest", "digest") => digest,
        ("EvidenceRequest", "name") => text(256),
        ("EvidenceRequest", "uri") => text(2048),
        ("DecisionBody", "decision") => one_of(&[
            "approve",
            "reject",
            "request_changes",
            "ack_incident_commander",
            "ack_system_owner",
            "review",
        ]),
        ("DecisionBody", "comment") => text(10_000),
        ("DecisionBody", "group") => req(128),
        ("DecisionBody", "on_behalf_of") => text(256),
        ("DecisionBody", "revision") => Prop {
            minimum: Some(1),
            ..Default::default()
        },
        ("DelegationRequest", "to") => name,
        ("DelegationRequest", "from") => opt_name,
        ("DelegationRequest", "group") => req(128),
        ("DelegationRequest", "starts_at" | "ends_at") => time,
        ("DelegationRequest", "reason") => req(1000),
        // Any form `Uuid::parse_str` reads (braced, URN, no hyphens): no format.
        ("CreateDeploymentRequest", "id" | "corrects") => Prop {
            any_format: true,
            ..Default::default()
        },
        ("CreateDeploymentRequest", "service") => name,
        ("CreateDeploymentRequest", "team") => opt_name,
        ("CreateDeploymentRequest", "targets") => names(None),
        ("CreateDeploymentRequest", "environment" | "version") => req(128),
        // Optional: blank reads as absent.
        ("CreateDeploymentRequest", "commit_sha") => Prop {
            pattern: Some("^\\s*([0-9a-fA-F]{40}|[0-9a-fA-F]{64})?\\s*$"),
            ..Default::default()
        },
        ("CreateDeploymentRequest", "artifact_digest") => opt_digest,
        ("CreateDeploymentRequest", "artifact") => Prop {
            pattern: Some("^\\s*([^@\\s]{1,900}@sha256:[0-9a-f]{64})?\\s*$"),
            ..Default::default()
        },
        // RFC 3339 as chrono reads it (a superset of JSON Schema's date-time): no format.
        ("CreateDeploymentRequest", "started_at" | "finished_at") => Prop {
            any_format: true,
            ..Default::default()
        },
        ("CreateDeploymentRequest", "correlation_id" | "deployer" | "git_ref") => text(256),
        ("CreateDeploymentRequest", "repository" | "artifact_name") => text(512),
        ("CreateDeploymentRequest", "change_ref") => text(128),
        ("CreateDeploymentRequest", "region") => text(64),
        ("StatusChangeRequest", "id") => uuid,
        ("StatusChangeRequest", "target") => opt_name,
        ("StatusChangeRequest", "message") => text(2000),
        ("StatusChangeRequest", "occurred_at") => time,
        ("CreateTokenRequest" | "CreateRoleGrantRequest", "subject" | "group") => req(256),
        ("CreateTokenRequest" | "CreateRoleGrantRequest", "tenant") => Prop {
            pattern: Some("^[A-Za-z0-9_-]{1,64}$"),
            ..Default::default()
        },
        ("CreateTokenRequest" | "CreateRoleGrantRequest", "expires_in") => Prop {
            pattern: Some("^[1-9][0-9]{0,2}[hd]$"),
            ..Default::default()
        },
        ("ReviewRequest", "period") => req(32),
        ("DeclareServiceRequest", "name") => name,
        ("DeclareServiceRequest", "team") => opt_name,
        ("DeclareServiceRequest", "paths") => Prop {
            list: true,
            pattern: Some("^[^/\\s][^\\s]{0,255}$"),
            unique: false,
            ..Default::default()
        },
        ("DeclareEnvironmentRequest", "name") => Prop {
            pattern: Some("^[a-z0-9][a-z0-9._/-]{0,127}$"),
            ..Default::default()
        },
        ("DeclareEnvironmentRequest", "region") => text(64),
        ("PublishArtifactRequest", "name") => req(512),
        ("PublishArtifactRequest", "version") => text(128),
        ("PublishArtifactRequest", "digest") => opt_digest,
        _ => return None,
    })
}

/// Applies [`body_rule`] to the request-body schemas of the document.
fn tighten_request_bodies(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::{ArrayItems, KnownFormat, Schema, SchemaFormat};
    use utoipa::openapi::{RefOr, Type};
    let mut bodies = std::collections::BTreeSet::new();
    for item in api.paths.paths.values() {
        for op in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
            .into_iter()
            .flatten()
        {
            for c in op.request_body.iter().flat_map(|b| b.content.values()) {
                if let Some(RefOr::Ref(r)) = &c.schema {
                    bodies.insert(r.ref_location.rsplit('/').next().unwrap_or("").to_owned());
                }
            }
        }
    }
    let Some(components) = api.components.as_mut() else {
        return;
    };
    let apply = |o: &mut utoipa::openapi::schema::Object, r: &Prop| {
        if r.min_length.is_some() {
            o.min_length = r.min_length;
        }
        if r.max_length.is_some() {
            o.max_length = r.max_length;
        }
        if let Some(p) = r.pattern {
            o.pattern = Some(p.into());
        }
        if r.date_time {
            o.format = Some(SchemaFormat::KnownFormat(KnownFormat::DateTime));
        }
        if r.uuid {
            o.format = Some(SchemaFormat::KnownFormat(KnownFormat::Uuid));
        }
        if r.any_format {
            o.format = None;
        }
        if let Some(m) = r.minimum {
            o.minimum = Some(utoipa::Number::Int(m as isize));
            o.maximum = Some(utoipa::Number::Int(i32::MAX as isize));
        }
        if !r.values.is_empty() {
            let mut values: Vec<serde_json::Value> = r.values.iter().map(|v| (*v).into()).collect();
            // An optional field may be null (read as absent).
            if matches!(&o.schema_type, utoipa::openapi::schema::SchemaType::Array(ts) if ts.contains(&Type::Null))
            {
                values.push(serde_json::Value::Null);
            }
            o.enum_values = Some(values);
        }
    };
    for name in bodies {
        let Some(RefOr::T(Schema::Object(obj))) = components.schemas.get_mut(&name) else {
            continue;
        };
        for (prop, schema) in obj.properties.iter_mut() {
            let Some(rule) = body_rule(&name, prop) else {
                continue;
            };
            match schema {
                RefOr::T(Schema::Object(o)) if !rule.list => apply(o, &rule),
                RefOr::T(Schema::Array(a)) if rule.list => {
                    a.min_items = rule.min_items;
                    a.max_items = Some(256);
                    a.unique_items = rule.unique;
                    let item = Prop {
                        list: false,
                        min_items: None,
                        ..rule
                    };
                    let mut o = utoipa::openapi::schema::Object::with_type(Type::String);
                    apply(&mut o, &item);
                    a.items = ArrayItems::RefOrSchema(Box::new(RefOr::T(Schema::Object(o))));
                }
                _ => {}
            }
        }
    }
}

/// What a string query parameter may hold, as its handler parses it: the values of an
/// enumeration, or a pattern.
fn query_rule(path: &str, name: &str) -> Option<(&'static [&'static str], Option<&'static str>)> {
    use shipgate_domain::model::{DeploymentKind, DeploymentStatus, EnvTier};
    const DIGEST: &str = "^(sha256:)?[0-9a-fA-F]{64}$";
    const LABEL: &str = "^[a-z0-9][a-z0-9._/-]{0,127}$";
    Some(match name {
        "status" if path == "/api/v1/changes" => (
            &[
                "pending",
                "approved",
                "bypassed",
                "rejected",
                "changes_requested",
                "withdrawn",
            ],
            None,
        ),
        "status" => (DeploymentStatus::VALUES, None),
        "tier" => (EnvTier::VALUES, None),
        "kind" => (DeploymentKind::VALUES, None),
        "digest" | "artifact_digest" => (&[], Some(DIGEST)),
        "commit_sha" => (&[], Some("^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")),
        "environment" | "label" => (&[], Some(LABEL)),
        // Filters: any text (a filter that matches nothing answers an empty page).
        "tenant" => (&[], Some("^[A-Za-z0-9_-]{1,64}$")),
        "service" | "deployer" | "correlation_id" | "change" => (&[], None),
        "since" | "until" => (&[], Some("^[0-9]{1,4}[mhd]$")),
        "expect_head" => (&[], Some("^[0-9]{1,18}:[0-9a-f]{64}$")),
        "wait" => (&[], Some("^[0-9]{1,2}s?$")),
        "format" => (&["jsonl", "csv"], None),
        "mode" => (&["atomic", "partial"], None),
        "all" | "dry_run" => (&["true", "false"], None),
        _ => return None,
    })
}

/// Query and path parameters as strict as `Params` reads them: a string parameter is never
/// empty (empty and repeated parameters are refused), `limit` and `hours` have the bounds the
/// handlers enforce, and an `{id}` in a path is a UUID.
fn tighten_parameters(path: &str, op: &mut utoipa::openapi::path::Operation) {
    use utoipa::Number;
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{KnownFormat, Schema, SchemaFormat, SchemaType};
    use utoipa::openapi::{RefOr, Type};
    for p in op.parameters.iter_mut().flatten() {
        let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut() else {
            continue;
        };
        let is_string = match &o.schema_type {
            SchemaType::Type(t) => *t == Type::String,
            SchemaType::Array(ts) => ts.contains(&Type::String),
            SchemaType::AnyValue => false,
        };
        match (&p.parameter_in, p.name.as_str()) {
            (ParameterIn::Query, "limit") => {
                o.minimum = Some(Number::Int(1));
                o.maximum = Some(Number::Int(if path == "/api/v1/audit" {
                    10_000
                } else {
                    1000
                }));
            }
            (ParameterIn::Query, "hours") => {
                o.minimum = Some(Number::Int(1));
                o.maximum = Some(Number::Int(24 * 366));
            }
            (ParameterIn::Query, "after") => o.minimum = Some(Number::Int(0)),
            (ParameterIn::Header, "Idempotency-Key") => {
                o.min_length = Some(1);
                o.max_length = Some(255);
                o.pattern = Some("^[!-~]([ -~]*[!-~])?$".into());
            }
            (ParameterIn::Path, "id") => {
                o.format = Some(SchemaFormat::KnownFormat(KnownFormat::Uuid));
            }
            (ParameterIn::Query, name) if is_string && query_rule(path, name).is_some() => {
                let (values, pattern) = query_rule(path, name).unwrap_or_default();
                o.min_length = Some(1);
                if !values.is_empty() {
                    o.enum_values = Some(values.iter().map(|v| (*v).into()).collect());
                }
                o.pattern = Some(pattern.unwrap_or("\\S").into());
            }
            (ParameterIn::Query, _) if is_string => {
                o.min_length = Some(1);
                if o.pattern.is_none() {
                    o.pattern = Some("\\S".into());
                }
            }
            _ => {}
        }
    }
}

/// The answers every operation can give, documented once here rather than on each route: the
/// one authorisation layer (401, 403, 429 with `Retry-After`, 405 with `Allow`), the body
/// readers (400, 413, 415) and the validators (422), each an RFC 9457 problem document.
fn document_common_responses(api: &mut utoipa::openapi::OpenApi) {
    tighten_request_bodies(api);
    use utoipa::openapi::{
        Content, Ref, RefOr, ResponseBuilder, Type, header::HeaderBuilder, schema::ObjectBuilder,
    };
    let problem = |why: &str, header: Option<(&str, &str)>| {
        let mut b = ResponseBuilder::new().description(why).content(
            "application/problem+json",
            Content::new(Some(Ref::from_schema_name("Problem"))),
        );
        if let Some((name, ty)) = header {
            let schema = ObjectBuilder::new().schema_type(if ty == "integer" {
                Type::Integer
            } else {
                Type::String
            });
            b = b.header(name, HeaderBuilder::new().schema(schema).build());
        }
        RefOr::T(b.build())
    };
    for (path, item) in api.paths.paths.iter_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            tighten_parameters(path, op);
        }
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let public = op.security.as_ref().is_some_and(|s| {
                s.iter().all(|r| {
                    serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_object().map(|o| o.is_empty()))
                        .unwrap_or(false)
                })
            });
            let has_body = op.request_body.is_some();
            let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let has_path_params = path.contains('{');
            let r = &mut op.responses.responses;
            let mut add = |code: &str, resp: RefOr<utoipa::openapi::Response>| {
                r.entry(code.to_owned()).or_insert(resp);
            };
            if !public {
                add("401", problem("No valid credential", None));
                add(
                    "403",
                    problem("The caller's role does not allow this", None),
                );
                add(
                    "429",
                    problem(
                        "Too many failed authentications from this address",
                        Some(("Retry-After", "integer")),
                    ),
                );
            }
            add(
                "405",
                problem("The method is not allowed here", Some(("Allow", "string"))),
            );
            if has_body {
                add("400", problem("The body is not valid JSON", None));
                add("413", problem("The body is larger than allowed", None));
                add("415", problem("The content type is not supported", None));
            }
            if has_path_params {
                add(
                    "404",
                    problem("No such resource in the caller's tenant", None),
                );
            }
            if has_body {
                add(
                    "409",
                    problem("The request conflicts with what is recorded", None),
                );
            }
            if has_body || has_params {
                add("400", problem("The request is malformed", None));
                add(
                    "422",
                    problem("Invalid or missing fields, each one named", None),
                );
            }
        }
    }
}

/// Every documented route: one list for the server and its OpenAPI document.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(deployments::routes())
        .merge(inventory::routes())
        .merge(admin::routes())
        .merge(approvals::routes())
        .merge(ops::routes())
        .merge(webhooks::routes())
}

/// The body of a request, refused with a problem when too large or unreadable.
pub fn body_bytes(body: Result<Bytes, BytesRejection>, max: usize) -> ApiResult<Bytes> {
    let b = body.map_err(|r| {
        if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("the body is larger than {max} bytes"))
        } else {
            ApiError::BadRequest(format!("the body could not be read: {r}"))
        }
    })?;
    if b.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "the body is larger than {max} bytes"
        )));
    }
    Ok(b)
}

pub fn parse_json(b: &[u8]) -> ApiResult<Value> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::MalformedJson(
            "the body is empty; a JSON object is expected".into(),
        ));
    }
    serde_json::from_slice(b)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))
}

/// The `Idempotency-Key` header, checked once at the edge: 1-255 visible ASCII characters.
/// Absent, it is `None`; the use case then falls back to the record's own id.
pub struct IdempotencyHeader(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyHeader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Some(h) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyHeader(None));
        };
        let key = h
            .to_str()
            .ok()
            .and_then(crate::service::deployments::valid_key)
            .ok_or_else(|| {
                ApiError::field(
                    "Idempotency-Key",
                    "invalid_format",
                    "must be 1-255 visible ASCII characters",
                )
            })?;
        Ok(IdempotencyHeader(Some(key.to_owned())))
    }
}

/// The query string as its pairs, in order (so that a repeated parameter can be refused); an
/// unreadable query string is a problem document, like every other error.
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|q| QueryPairs(q.0))
            .map_err(|e| ApiError::BadRequest(format!("the query string cannot be read: {e}")))
    }
}

/// Query parameters as a map, with every unknown, repeated or empty parameter reported.
pub struct Params {
    pub map: BTreeMap<String, String>,
    pub errors: FieldErrors,
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>, known: &[&str]) -> Params {
        let mut errors = FieldErrors::default();
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if !known.contains(&k.as_str()) {
                errors.add(
                    k.clone(),
                    "unknown_field",
                    format!("is not a parameter here (known: {})", known.join(", ")),
                );
                continue;
            }
            if v.trim().is_empty() {
                errors.add(
                    k.clone(),
                    "empty",
                    "must not be empty; leave the parameter out for none",
                );
            }
            if map.insert(k.clone(), v).is_some() {
                errors.add(k, "duplicate", "give the parameter once");
            }
        }
        Params { map, errors }
    }

    pub fn get(&self, k: &str) -> Option<String> {
        self.map
            .get(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// `limit`: an integer from 1 to 1000.
    pub fn limit(&mut self) -> Option<u32> {
        self.parse("limit", |s| {
            s.parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or("an integer from 1 to 1000".to_owned())
        })
    }

    pub fn parse<T>(&mut self, k: &str, f: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        let v = self.get(k)?;
        match f(&v) {
            Ok(t) => Some(t),
            Err(m) => {
                self.errors.add(k, "invalid_value", m);
                None
            }
        }
    }

    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }
}

pub use crate::service::environments::{declared_environments, resolve_environment};

/// The tenant a read is scoped to: the caller's, or for the root token the `tenant` parameter.
pub fn read_tenant(caller: &Caller, asked: Option<String>) -> ApiResult<String> {
    if let Some(t) = &asked
        && !crate::auth::valid_tenant(t)
    {
        return Err(ApiError::field(
            "tenant",
            "invalid_format",
            "1-64 letters, digits, '-' or '_'",
        ));
    }
    match asked {
        Some(t) if t != caller.tenant => {
            if caller.root {
                Ok(t)
            } else {
                Err(ApiError::Forbidden(
                    "this token cannot read another tenant".into(),
                ))
            }
        }
        _ => Ok(caller.tenant.clone()),
    }
}

/// How far back a relative `since`/`until` may reach: 36,600 days (about 100 years).
pub const MAX_LOOKBACK_DAYS: i64 = 36_600;

/// `24h`, `30m`, `7d` or an RFC 3339 time, as an instant relative to `now`. A relative value
/// reaches back at most [`MAX_LOOKBACK_DAYS`]; every computation is checked, so no input
/// panics.
pub fn parse_since(
    s: &str,
    now: shipgate_domain::time::Timestamp,
) -> Result<shipgate_domain::time::Timestamp, String> {
    let usage = || format!("'{s}': use a duration like 30m, 24h, 7d or an RFC 3339 time");
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let per_unit: Option<i64> = match unit {
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        _ => None,
    };
    match (num.is_empty(), per_unit) {
        (false, Some(per_unit)) => {
            let too_far = || {
                format!(
                    "'{s}' is out of range: at most {MAX_LOOKBACK_DAYS} days back (or give an RFC 3339 time)"
                )
            };
            let secs = num
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(per_unit))
                .filter(|secs| *secs <= MAX_LOOKBACK_DAYS * 86_400)
                .ok_or_else(too_far)?;
            chrono::TimeDelta::try_seconds(secs)
                .and_then(|d| now.checked_sub_signed(d))
                .ok_or_else(too_far)
        }
        _ => shipgate_domain::time::parse_rfc3339(s).map_err(|_| usage()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{MAX_LOOKBACK_DAYS, parse_since};

    #[test]
    fn since_never_panics_and_is_bounded() {
        let now = shipgate_domain::time::parse_rfc3339("2026-11-01T10:00:00Z").unwrap();
        assert_eq!(
            parse_since("24h", now).unwrap(),
            now - chrono::TimeDelta::hours(24)
        );
        assert_eq!(
            parse_since("30m", now).unwrap(),
            now - chrono::TimeDelta::minutes(30)
        );
        assert!(parse_since(&format!("{MAX_LOOKBACK_DAYS}d"), now).is_ok());
        for bad in [
            "100000000d",
            &format!("{}d", MAX_LOOKBACK_DAYS + 1),
            "9223372036854775807d",
            "9223372036854775807m",
            "99999999999999999999999h",
            "153722867280912930m",
            "d",
            "-5d",
            "7w",
            "tomorrow",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
        assert!(
            parse_since("100000000d", now)
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(
            parse_since("2026-01-02T03:04:05Z", now).unwrap(),
            shipgate_domain::time::parse_rfc3339("2026-01-02T03:04:05Z").unwrap()
        );
    }
}
