//! Inbound integrations: what a webhook or event from another tool means for shipgate. Each
//! source maps its payload to `Intent`s expressed in shipgate's own API shapes, so the same
//! validation, idempotency and audit apply as for the HTTP API. No IO here.
use serde_json::Value;
use uuid::Uuid;

pub mod argocd;
pub mod cdevents;
pub mod github;
pub mod gitlab;
pub mod itsm;
pub mod jenkins;

/// The namespace of shipgate's derived ids (UUID v5): the same upstream record always maps to the
/// same shipgate id, so redeliveries are idempotent.
const NAMESPACE: Uuid = Uuid::from_u128(0x5a1f_6a7e_0b1e_4c5d_9e2f_8a7b_6c5d_4e3f);

pub fn derived_id(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes())
}

pub use crate::model::Delivery;

/// What one delivery asks shipgate to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Record a deployment (a body for `POST /deployments`, with a derived `id`).
    Deployment { body: Value },
    /// Append a status to a deployment (a body for `POST /deployments/{id}/events`, with a
    /// derived `id`); `deployment` creates the deployment first when shipgate has not seen it.
    Status {
        deployment_id: Uuid,
        deployment: Value,
        status: Value,
    },
    /// Commits pushed to a branch (history for "what did this deployment ship").
    Commits(Vec<crate::vcs::CommitRecord>),
    /// A pull request opened, updated, merged or closed.
    PullRequest(crate::vcs::PullRequestRecord),
    /// A tag created or updated (from a tag push or a release); `None` sha keeps a known one.
    Tag(crate::vcs::TagRecord),
    /// A tag deleted.
    TagDeleted { repository: String, name: String },
    /// An incident detected, reported or resolved elsewhere.
    Incident(crate::incident::Incident),
    /// A build published an artifact: its digest is what deployments are checked against.
    Artifact {
        name: String,
        version: Option<String>,
        digest: String,
    },
}

/// A delivery shipgate acknowledges but does not act on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored(pub String);

/// The outcome of mapping one delivery.
pub type Mapped = Result<Vec<Intent>, Ignored>;

pub(crate) fn s<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The commits of a push (GitHub and GitLab send the same shape), each with its parent on the
/// pushed branch: the push's `before` for the first, the previous commit for the others.
pub(crate) fn pushed_commits(p: &Value, repository: &str) -> Vec<crate::vcs::CommitRecord> {
    let zero = |x: &str| x.chars().all(|c| c == '0');
    let mut parent = s(p, "/before").filter(|b| !zero(b)).map(str::to_owned);
    let mut out = Vec::new();
    for c in p
        .get("commits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(sha) = s(c, "/id") else { continue };
        let files = ["added", "modified", "removed"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect();
        out.push(crate::vcs::CommitRecord {
            repository: repository.to_owned(),
            sha: sha.to_owned(),
            parent: parent.clone(),
            message: s(c, "/message")
                .unwrap_or_default()
                .chars()
                .take(2000)
                .collect(),
            author: s(c, "/author/username")
                .or_else(|| s(c, "/author/name"))
                .map(str::to_owned),
            committed_at: s(c, "/timestamp")
                .and_then(gitlab::parse_time)
                .map(|t| t.to_rfc3339()),
            url: s(c, "/url").map(str::to_owned),
            files,
        });
        parent = Some(sha.to_owned());
    }
    out
}

/// A tag push: the tag now names `after`, or (an empty or all-zero `after`) was deleted.
pub(crate) fn tag_pushed(repository: String, name: &str, after: &str) -> Intent {
    if after.is_empty() || after.chars().all(|c| c == '0') {
        Intent::TagDeleted {
            repository,
            name: name.to_owned(),
        }
    } else {
        Intent::Tag(crate::vcs::TagRecord {
            repository,
            name: name.to_owned(),
            sha: Some(after.to_owned()),
            release_url: None,
        })
    }
}
