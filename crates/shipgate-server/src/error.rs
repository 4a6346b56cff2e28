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

pub use shipgate_domain::ErrorCode;

/// The HTTP status of every error code: one exhaustive match, so a new code cannot ship
/// without its status.
pub fn status_of(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::MalformedJson | ErrorCode::BadRequest => 400,
        ErrorCode::Unauthenticated => 401,
        ErrorCode::Forbidden
        | ErrorCode::SelfApproval
        | ErrorCode::AuthorApproval
        | ErrorCode::RecordAuthor
        | ErrorCode::DelegationScope
        | ErrorCode::NoDelegation
        | ErrorCode::NotAnApprover
        | ErrorCode::DualAcknowledgement
        | ErrorCode::TwoPersonRule => 403,
        ErrorCode::NotFound => 404,
        ErrorCode::MethodNotAllowed => 405,
        ErrorCode::Conflict
        | ErrorCode::DeploymentExists
        | ErrorCode::IdempotencyKeyReused
        | ErrorCode::NotWritten
        | ErrorCode::InvalidTransition
        | ErrorCode::StaleRevision
        | ErrorCode::IdInUse
        | ErrorCode::AlreadyDecided
        | ErrorCode::AlreadyApproved
        | ErrorCode::ApprovalExpired
        | ErrorCode::AlreadyRecorded
        | ErrorCode::ChangeClosed
        | ErrorCode::WrongPath
        | ErrorCode::NoReviewDue
        | ErrorCode::NoPolicy
        | ErrorCode::NoEmergencyPolicy
        | ErrorCode::PolicyInvalid => 409,
        ErrorCode::PayloadTooLarge => 413,
        ErrorCode::UnsupportedMediaType => 415,
        ErrorCode::ValidationFailed | ErrorCode::CommentRequired => 422,
        ErrorCode::TooManyRequests => 429,
        ErrorCode::Internal => 500,
        ErrorCode::Overloaded | ErrorCode::StoreUnavailable => 503,
    }
}

/// Every code with its status and title, for documentation and the CLI's exit table.
pub fn codes() -> Vec<(&'static str, u16, &'static str)> {
    ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str(), status_of(*c), c.title()))
        .collect()
}

#[derive(Debug)]
pub enum ApiError {
    Validation(FieldErrors),
    MalformedJson(String),
    BadRequest(String),
    Unauthenticated(String),
    Forbidden(String),
    NotFound,
    Conflict {
        code: ErrorCode,
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
    fn parts(&self) -> (ErrorCode, String, Vec<FieldError>) {
        match self {
            ApiError::Validation(e) => {
                let errors = named(e);
                let detail = if e.0.is_empty() {
                    "1 field(s) are invalid: the request is invalid".to_owned()
                } else {
                    format!("{} field(s) are invalid: {e}", e.0.len())
                };
                (ErrorCode::ValidationFailed, detail, errors)
            }
            ApiError::MalformedJson(m) => (ErrorCode::MalformedJson, m.clone(), Vec::new()),
            ApiError::BadRequest(m) => (ErrorCode::BadRequest, m.clone(), Vec::new()),
            ApiError::Unauthenticated(m) => (ErrorCode::Unauthenticated, m.clone(), Vec::new()),
            ApiError::Forbidden(m) => (ErrorCode::Forbidden, m.clone(), Vec::new()),
            ApiError::NotFound => (ErrorCode::NotFound, "no such resource".into(), Vec::new()),
            ApiError::Conflict { code, message } => (*code, message.clone(), Vec::new()),
            ApiError::PayloadTooLarge(m) => (ErrorCode::PayloadTooLarge, m.clone(), Vec::new()),
            ApiError::UnsupportedMediaType(m) => {
                (ErrorCode::UnsupportedMediaType, m.clone(), Vec::new())
            }
            ApiError::Overloaded => (
                ErrorCode::Overloaded,
                "the ingest queue is full".into(),
                Vec::new(),
            ),
            ApiError::TooManyRequests { message, .. } => {
                (ErrorCode::TooManyRequests, message.clone(), Vec::new())
            }
            ApiError::MethodNotAllowed(m) => (
                ErrorCode::MethodNotAllowed,
                format!("this resource answers {}", m.join(", ")),
                Vec::new(),
            ),
            ApiError::Unavailable(_) => (
                ErrorCode::StoreUnavailable,
                "the store cannot be reached".into(),
                Vec::new(),
            ),
            ApiError::Internal(_) => (
                ErrorCode::Internal,
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

pub fn problem(code: ErrorCode, detail: String, errors: Vec<FieldError>) -> Problem {
    Problem {
        kind: format!("urn:shipgate:problem:{code}"),
        title: code.title().to_owned(),
        status: status_of(code),
        detail,
        code: code.as_str().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The string codes the domain refuses with (`refuse("code", ..)`, `code: "code"`) in its
    /// approval rules, read from the source.
    fn domain_refusal_codes() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shipgate-domain/src/approval");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).expect("the domain's approval rules") {
            let p = e.expect("entry").path();
            let src = std::fs::read_to_string(&p).expect("read");
            for marker in ["refuse(", "code: "] {
                for (i, _) in src.match_indices(marker) {
                    let rest = src[i + marker.len()..].trim_start();
                    if let Some(lit) = rest.strip_prefix('"')
                        && let Some(end) = lit.find('"')
                    {
                        out.push(lit[..end].to_owned());
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_domain_refusal_code_is_an_error_code() {
        let codes = domain_refusal_codes();
        assert!(codes.len() >= 15, "the scan found too little: {codes:?}");
        for c in &codes {
            assert!(
                ErrorCode::parse(c).is_some(),
                "the domain refuses with '{c}', which is no ErrorCode: add it with its status"
            );
        }
    }

    #[test]
    fn codes_round_trip_and_separation_of_duties_refusals_are_forbidden() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
        }
        for c in [
            ErrorCode::SelfApproval,
            ErrorCode::AuthorApproval,
            ErrorCode::RecordAuthor,
            ErrorCode::NoDelegation,
            ErrorCode::DelegationScope,
            ErrorCode::NotAnApprover,
        ] {
            assert_eq!(status_of(c), 403, "{c}");
        }
    }

    /// The problem document's shape is a contract: these members, these types, nothing else.
    #[test]
    fn problem_document_shape() {
        let mut e = FieldErrors::default();
        e.add("service", "required", "service is required");
        let (code, detail, errors) = ApiError::Validation(e).parts();
        let v = serde_json::to_value(problem(code, detail, errors)).expect("json");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "code",
                "detail",
                "errors",
                "request_id",
                "status",
                "title",
                "type"
            ]
        );
        assert_eq!(v["type"], "urn:shipgate:problem:validation_failed");
        assert_eq!(v["status"], 422);
        assert_eq!(v["code"], "validation_failed");
        assert_eq!(
            v["errors"],
            serde_json::json!([{"field": "service", "code": "required", "message": "service is required"}])
        );
        // A 5xx never carries its cause.
        let (code, detail, _) = ApiError::Internal("secret table xyz is corrupt".into()).parts();
        assert!(!detail.contains("xyz"));
        assert_eq!(status_of(code), 500);
        let (_, detail, _) = ApiError::Unavailable("pool timed out at 10.0.0.7".into()).parts();
        assert!(!detail.contains("10.0.0.7"));
    }
}
