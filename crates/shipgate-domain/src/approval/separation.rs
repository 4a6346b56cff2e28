//! Separation of duties: who may never approve a change, or acknowledge an emergency one.
use crate::change::ChangeRequest;
use crate::identity::Identities;
use crate::policy::Policy;

/// Who is excluded from approving a change, and why: the requester, whoever authored the
/// record the change was opened from (ITSM opener, requester, reporter, assignee), and, when
/// the policy says so, the authors of its commits. Compared as people, not strings.
pub fn exclusion(
    change: &ChangeRequest,
    policy: &Policy,
    ids: &Identities,
    person: &str,
) -> Option<&'static str> {
    if ids.same(&change.requester, person) {
        return Some("self_approval");
    }
    if ids.among(person, &change.spec.record_authors) {
        return Some("record_author");
    }
    if policy.separation.authors_cannot_approve && ids.among(person, &change.spec.authors) {
        return Some("author_approval");
    }
    None
}

/// Who may never give an emergency acknowledgement: the requester, a record author, and any
/// listed commit author (whatever the policy says about approvals).
pub(super) fn ack_exclusion(
    change: &ChangeRequest,
    ids: &Identities,
    person: &str,
) -> Option<&'static str> {
    if ids.same(&change.requester, person) {
        return Some("self_approval");
    }
    if ids.among(person, &change.spec.record_authors) {
        return Some("record_author");
    }
    if ids.among(person, &change.spec.authors) {
        return Some("author_approval");
    }
    None
}
