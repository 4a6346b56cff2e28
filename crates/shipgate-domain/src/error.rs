use serde::{Deserialize, Serialize};

/// One problem with one field of a request. `field` is a JSON pointer-like dotted path
/// (`labels.team`, `targets[2]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    /// Stable machine-readable code: `required`, `invalid_type`, `invalid_format`,
    /// `too_long`, `unknown_field`, `in_future`, `unknown_environment`, `not_found`, `empty`
    /// (an empty value where none must be left out), `invalid_value` (out of range).
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// Every field error of one request, so that the caller can fix them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }
    pub fn add(&mut self, field: impl Into<String>, code: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, code, message));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for FieldErrors {}

/// Every problem code shipgate answers with: a public contract (the CLI maps codes to exit
/// statuses). The HTTP status of each is the server's (one exhaustive match), so a new code
/// cannot ship without one.
macro_rules! error_codes {
    ($($variant:ident = $code:literal : $title:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears in a problem document.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The problem document's title.
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title,)* }
            }

            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    ValidationFailed = "validation_failed": "The request has invalid or missing fields",
    MalformedJson = "malformed_json": "The body is not valid JSON",
    BadRequest = "bad_request": "The request is malformed",
    Unauthenticated = "unauthenticated": "A valid API token is required",
    Forbidden = "forbidden": "The token's role does not allow this",
    NotFound = "not_found": "No such resource",
    Conflict = "conflict": "The request conflicts with what is recorded",
    DeploymentExists = "deployment_exists": "A deployment with this id is already recorded",
    IdempotencyKeyReused = "idempotency_key_reused": "The idempotency key was used for a different request",
    NotWritten = "not_written": "Not written: another record of the same atomic batch was refused",
    InvalidTransition = "invalid_transition": "The status change is not allowed from the current status",
    SelfApproval = "self_approval": "Separation of duties: the requester cannot approve their own change",
    AuthorApproval = "author_approval": "Separation of duties: commit authors cannot approve this change",
    RecordAuthor = "record_author": "Separation of duties: whoever authored the originating record cannot approve this change",
    DelegationScope = "delegation_scope": "The delegation does not cover this approver group",
    NoDelegation = "no_delegation": "No active delegation from that person covers this change",
    StaleRevision = "stale_revision": "The change was resubmitted after you read it; review the current revision",
    IdInUse = "id_in_use": "This id already names another record",
    NotAnApprover = "not_an_approver": "The caller is not in an approver group this change needs",
    DualAcknowledgement = "dual_acknowledgement": "The emergency bypass needs two different people",
    AlreadyDecided = "already_decided": "This decision is already recorded",
    TwoPersonRule = "two_person_rule": "A second person must do this",
    AlreadyApproved = "already_approved": "The change is already approved",
    ApprovalExpired = "approval_expired": "The approval has expired; resubmit the change to revalidate it",
    AlreadyRecorded = "already_recorded": "This is already recorded",
    ChangeClosed = "change_closed": "The change is closed until resubmitted",
    WrongPath = "wrong_path": "This decision does not apply to this type of change",
    NoReviewDue = "no_review_due": "No post-deployment review is due",
    CommentRequired = "comment_required": "A comment is required",
    NoPolicy = "no_policy": "No approval policy has been pushed",
    NoEmergencyPolicy = "no_emergency_policy": "The policy has no emergency section",
    PolicyInvalid = "policy_invalid": "The stored policy does not parse under this version's bounds; push a corrected one",
    PayloadTooLarge = "payload_too_large": "The body is larger than allowed",
    UnsupportedMediaType = "unsupported_media_type": "The content type is not supported here",
    TooManyRequests = "too_many_requests": "Too many failed authentications from this address",
    MethodNotAllowed = "method_not_allowed": "The method is not allowed on this resource",
    Overloaded = "overloaded": "The server is busy; retry with backoff",
    StoreUnavailable = "store_unavailable": "The store cannot be reached",
    Internal = "internal": "An unexpected error; it was logged",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
