//! Exit statuses: a contract for scripts (README, "Exit statuses"). A refusal from the server
//! maps by its problem `code` first, then by its HTTP status; [`for_problem`] is the one table.
//! 2 is clap's: an invalid command line.

/// Any other failure: a server error, an unexpected answer, a local file that cannot be read.
pub const FAILURE: i32 = 1;
/// Invalid input.
pub const VALIDATION: i32 = 3;
/// Not authenticated, or the token's role does not allow this.
pub const AUTH: i32 = 4;
pub const NOT_FOUND: i32 = 5;
/// The request conflicts with what is recorded (and a failed `audit verify`).
pub const CONFLICT: i32 = 6;
/// shipgate cannot be reached, or is unavailable after retries.
pub const UNAVAILABLE: i32 = 7;
/// `gate wait` / `gate check`: still pending.
pub const GATE_PENDING: i32 = 8;
/// `gate wait` / `gate check`: denied or expired.
pub const GATE_DENIED: i32 = 9;
/// Refused by separation of duties or the approval rules: another person must do this.
pub const REFUSED: i32 = 10;
/// The change was resubmitted after it was read: read it again, then decide.
pub const STALE_REVISION: i32 = 11;
/// Too many requests (HTTP 429): retry later.
pub const RATE_LIMITED: i32 = 12;

/// The exit status for a problem document: its `code` (see the server's `error::CODES`)
/// decides where it names a refusal scripts must tell apart; otherwise its HTTP status class.
pub fn for_problem(status: u16, code: &str) -> i32 {
    match (code, status) {
        (
            "self_approval"
            | "author_approval"
            | "record_author"
            | "not_an_approver"
            | "no_delegation"
            | "delegation_scope"
            | "dual_acknowledgement"
            | "two_person_rule"
            | "already_decided",
            _,
        ) => REFUSED,
        ("stale_revision", _) => STALE_REVISION,
        ("too_many_requests", _) | (_, 429) => RATE_LIMITED,
        ("unauthenticated" | "forbidden", _) | (_, 401 | 403) => AUTH,
        ("not_found", _) | (_, 404) => NOT_FOUND,
        (_, 409) => CONFLICT,
        ("overloaded" | "store_unavailable", _) | (_, 502..=504) => UNAVAILABLE,
        (_, 400 | 413 | 415 | 422) => VALIDATION,
        _ => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the table, by code and by status alone.
    #[test]
    fn each_row_of_the_table() {
        let rows: &[(u16, &str, i32)] = &[
            (403, "self_approval", REFUSED),
            (403, "author_approval", REFUSED),
            (403, "record_author", REFUSED),
            (403, "not_an_approver", REFUSED),
            (403, "no_delegation", REFUSED),
            (403, "delegation_scope", REFUSED),
            (403, "dual_acknowledgement", REFUSED),
            (403, "two_person_rule", REFUSED),
            (409, "already_decided", REFUSED),
            (409, "stale_revision", STALE_REVISION),
            (429, "too_many_requests", RATE_LIMITED),
            (429, "", RATE_LIMITED),
            (401, "unauthenticated", AUTH),
            (403, "forbidden", AUTH),
            (401, "", AUTH),
            (403, "", AUTH),
            (404, "not_found", NOT_FOUND),
            (404, "", NOT_FOUND),
            (409, "conflict", CONFLICT),
            (409, "already_approved", CONFLICT),
            (409, "approval_expired", CONFLICT),
            (409, "", CONFLICT),
            (503, "overloaded", UNAVAILABLE),
            (503, "store_unavailable", UNAVAILABLE),
            (502, "", UNAVAILABLE),
            (504, "", UNAVAILABLE),
            (400, "malformed_json", VALIDATION),
            (400, "bad_request", VALIDATION),
            (413, "payload_too_large", VALIDATION),
            (415, "unsupported_media_type", VALIDATION),
            (422, "validation_failed", VALIDATION),
            (422, "comment_required", VALIDATION),
            (500, "internal", FAILURE),
            (405, "method_not_allowed", FAILURE),
            (418, "", FAILURE),
        ];
        for (status, code, want) in rows {
            assert_eq!(for_problem(*status, code), *want, "{status} {code}");
        }
    }

    /// Every code the server sends maps to its status class, unless it is one of the refusals
    /// scripts tell apart; a new code is never left to the catch-all by accident.
    #[test]
    fn every_server_code_maps_by_its_class() {
        let told_apart: &[(&str, i32)] = &[
            ("self_approval", REFUSED),
            ("author_approval", REFUSED),
            ("record_author", REFUSED),
            ("not_an_approver", REFUSED),
            ("no_delegation", REFUSED),
            ("delegation_scope", REFUSED),
            ("dual_acknowledgement", REFUSED),
            ("two_person_rule", REFUSED),
            ("already_decided", REFUSED),
            ("stale_revision", STALE_REVISION),
            ("too_many_requests", RATE_LIMITED),
        ];
        for (code, status, _) in shipgate_server::error::codes() {
            let want = match told_apart.iter().find(|(c, _)| *c == code) {
                Some((_, exit)) => *exit,
                None => match status {
                    400 | 413 | 415 | 422 => VALIDATION,
                    401 | 403 => AUTH,
                    404 => NOT_FOUND,
                    409 => CONFLICT,
                    503 => UNAVAILABLE,
                    _ => FAILURE,
                },
            };
            assert_eq!(for_problem(status, code), want, "{code} ({status})");
        }
        for (code, _) in told_apart {
            assert!(
                shipgate_server::error::codes()
                    .iter()
                    .any(|(c, _, _)| c == code),
                "{code} is not a code the server sends"
            );
        }
    }
}
