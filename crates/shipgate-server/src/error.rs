//! The one place errors become HTTP: RFC 9457 `application/problem+json` with a stable `code`.
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shipgate_domain::{FieldError, FieldErrors};
use shipgate_store::StoreError;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served, for error bodies and logs.
    pub static REQUEST_ID: String;
}

/// Stable error codes: a public contract. The CLI maps them to exit statuses.
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "validation_failed",
        422,
        "The request has invalid or missing fields",
    ),
    ("malformed_json", 400, "The body is not valid JSON"),
    ("bad_request", 400, "The request is malformed"),
    ("unauthenticated", 401, "A valid API token is required"),
    ("forbidden", 403, "The token's role does not allow this"),
    ("not_found", 404, "No such resource"),
    (
        "conflict",
        409,
        "The request conflicts with what is recorded",
    ),
    (
        "deployment_exists",
        409,
        "A deployment with this id is already recorded",
    ),
    (
        "idempotency_key_reused",
        409,
        "The idempotency key was used for a different request",
    ),
    (
        "not_written",
        409,
        "Not written: another record of the same atomic batch was refused",
    ),
    (
        "invalid_transition",
        409,
        "The status change is not allowed from the current status",
    ),
    (
        "self_approval",
        403,
        "Separation of duties: the requester cannot approve their own change",
    ),
    (
        "author_approval",
        403,
        "Separation of duties: commit authors cannot approve this change",
    ),
    (
        "record_author",
        403,
        "Separation of duties: whoever authored the originating record cannot approve this change",
    ),
    (
        "delegation_scope",
        403,
        "The delegation does not cover this approver group",
    ),
    (
        "no_delegation",
        403,
        "No active delegation from that person covers this change",
    ),
    (
        "stale_revision",
        409,
        "The change was resubmitted after you read it; review the current revision",
    ),
    ("id_in_use", 409, "This id already names another record"),
    (
        "not_an_approver",
        403,
        "The caller is not in an approver group this change needs",
    ),
    (
        "dual_acknowledgement",
        403,
        "The emergency bypass needs two different people",
    ),
    ("already_decided", 409, "This decision is already recorded"),
    ("two_person_rule", 403, "A second person must do this"),
    ("already_approved", 409, "The change is already approved"),
    (
        "approval_expired",
        409,
        "The approval has expired; resubmit the change to revalidate it",
    ),
    ("already_recorded", 409, "This is already recorded"),
    (
        "change_closed",
        409,
        "The change is closed until resubmitted",
    ),
    (
        "wrong_path",
        409,
        "This decision does not apply to this type of change",
    ),
    ("no_review_due", 409, "No post-deployment review is due"),
    ("comment_required", 422, "A comment is required"),
    ("no_policy", 409, "No approval policy has been pushed"),
    (
        "no_emergency_policy",
        409,
        "The policy has no emergency section",
    ),
    ("payload_too_large", 413, "The body is larger than allowed"),
    (
        "unsupported_media_type",
        415,
        "The content type is not supported here",
    ),
    (
        "too_many_requests",
        429,
        "Too many failed authentications from this address",
    ),
    (
        "method_not_allowed",
        405,
        "The method is not allowed on this resource",
    ),
    ("overloaded", 503, "The server is busy; retry with backoff"),
    ("store_unavailable", 503, "The store cannot be reached"),
    ("internal", 500, "An unexpected error; it was logged"),
];

#[derive(Debug)]
pub enum ApiError {
    Validation(FieldErrors),
    MalformedJson(String),
    BadRequest(String),
    Unauthenticated(String),
    Forbidden(String),
    NotFound,
    Conflict {
        code: &'static str,
        message: String,
    },
    PayloadTooLarge(String),
    UnsupportedMediaType(String),
    Overloaded,
    /// The path exists, the method does not: these are the methods it answers.
    MethodNotAllowed(Vec<String>),
    /// Rate limited; retry after this many seconds.
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    Unavailable(String),
    Internal(String),
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    pub request_id: Option<String>,
}

impl ApiError {
    fn parts(&self) -> (&'static str, String, Vec<FieldError>) {
        match self {
            ApiError::Validation(e) => {
                let errors = named(e);
                let detail = if e.0.is_empty() {
                    "1 field(s) are invalid: the request is invalid".to_owned()
                } else {
                    format!("{} field(s) are invalid: {e}", e.0.len())
                };
                ("validation_failed", detail, errors)
            }
            ApiError::MalformedJson(m) => ("malformed_json", m.clone(), Vec::new()),
            ApiError::BadRequest(m) => ("bad_request", m.clone(), Vec::new()),
            ApiError::Unauthenticated(m) => ("unauthenticated", m.clone(), Vec::new()),
            ApiError::Forbidden(m) => ("forbidden", m.clone(), Vec::new()),
            ApiError::NotFound => ("not_found", "no such resource".into(), Vec::new()),
            ApiError::Conflict { code, message } => (code, message.clone(), Vec::new()),
            ApiError::PayloadTooLarge(m) => ("payload_too_large", m.clone(), Vec::new()),
            ApiError::UnsupportedMediaType(m) => ("unsupported_media_type", m.clone(), Vec::new()),
            ApiError::Overloaded => ("overloaded", "the ingest queue is full".into(), Vec::new()),
            ApiError::TooManyRequests { message, .. } => {
                ("too_many_requests", message.clone(), Vec::new())
            }
            ApiError::MethodNotAllowed(m) => (
                "method_not_allowed",
                format!("this resource answers {}", m.join(", ")),
                Vec::new(),
            ),
            ApiError::Unavailable(_) => (
                "store_unavailable",
                "the store cannot be reached".into(),
                Vec::new(),
            ),
            ApiError::Internal(_) => (
                "internal",
                "an unexpected error occurred; it was logged".into(),
                Vec::new(),
            ),
        }
    }

    /// One line for logs and delivery records: the code, the detail, and each field at fault.
    pub fn summary(&self) -> String {
        match self {
            ApiError::Validation(e) => {
                e.0.iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            ApiError::MalformedJson(m)
            | ApiError::BadRequest(m)
            | ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::Unavailable(m)
            | ApiError::Internal(m) => m.clone(),
            ApiError::Conflict { code, message } => format!("{code}: {message}"),
            ApiError::NotFound => "not found".into(),
            ApiError::Overloaded => "overloaded".into(),
            ApiError::TooManyRequests { message, .. } => message.clone(),
            ApiError::MethodNotAllowed(m) => {
                format!("method not allowed (allowed: {})", m.join(", "))
            }
        }
    }

    pub fn field(field: &str, code: &str, message: impl Into<String>) -> ApiError {
        let mut e = FieldErrors::default();
        e.add(field, code, message);
        ApiError::Validation(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::Conflict { code, message } => ApiError::Conflict { code, message },
            StoreError::Invalid(f) => ApiError::Validation(f),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<FieldErrors> for ApiError {
    fn from(e: FieldErrors) -> Self {
        ApiError::Validation(e)
    }
}

/// A validation failure always names a field: an empty list (a parser that refused without
/// saying why) still tells the client something, and is logged as the bug it is.
fn named(e: &FieldErrors) -> Vec<FieldError> {
    if e.0.is_empty() {
        tracing::error!("a validation failure named no field");
        vec![FieldError {
            field: String::new(),
            code: "invalid".into(),
            message: "the request is invalid".into(),
        }]
    } else {
        e.0.clone()
    }
}

pub fn problem(code: &str, detail: String, errors: Vec<FieldError>) -> Problem {
    let (status, title) = CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, s, t)| (*s, *t))
        .unwrap_or((409, "Conflict"));
    Problem {
        kind: format!("urn:shipgate:problem:{code}"),
        title: title.to_owned(),
        status,
        detail,
        code: code.to_owned(),
        errors,
        request_id: REQUEST_ID.try_with(Clone::clone).ok(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(m) | ApiError::Unavailable(m) = &self {
            tracing::error!(error = %m, "request failed");
        }
        let retry_after = match &self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        let allow = match &self {
            ApiError::MethodNotAllowed(m) => Some(m.join(", ")),
            _ => None,
        };
        let (code, detail, errors) = self.parts();
        let p = problem(code, detail, errors);
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(p)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(s) = retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(a) = allow
            && let Ok(v) = HeaderValue::from_str(&a)
        {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
