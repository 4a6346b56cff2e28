//! Source history learned from webhooks (GitHub `push`, `pull_request`): commits with their
//! parent, and pull requests with the commits that landed them, so that a deployment can show
//! what it shipped since the previous deployment of its service to its environment.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommitRecord {
    /// The repository URL (`https://github.com/acme/checkout`).
    pub repository: String,
    pub sha: String,
    /// The previous commit on the pushed branch (the push's `before` for its first commit).
    pub parent: Option<String>,
    pub message: String,
    pub author: Option<String>,
    /// RFC 3339.
    pub committed_at: Option<String>,
    pub url: Option<String>,
    /// Paths the commit added, modified or removed (for monorepo attribution).
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PullRequestRecord {
    pub repository: String,
    pub number: i64,
    pub title: String,
    pub state: String,
    pub merged: bool,
    pub head_sha: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub url: Option<String>,
    pub author: Option<String>,
}

/// A tag, from a tag push (which names its commit) and/or a release (which names its page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TagRecord {
    pub repository: String,
    pub name: String,
    pub sha: Option<String>,
    pub release_url: Option<String>,
}

/// What a deployment shipped: the commits since the previous deployment, and their pull requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shipped {
    /// The previous deployment of the service to the environment (with a commit), if any.
    pub previous_deployment: Option<uuid::Uuid>,
    pub previous_commit: Option<String>,
    pub commits: Vec<CommitRecord>,
    pub pull_requests: Vec<PullRequestRecord>,
    /// Tags on the shipped commits (releases included).
    pub tags: Vec<TagRecord>,
    /// The walk stopped before reaching the previous commit (history not known that far back).
    pub incomplete: bool,
}

/// Whether a path matches a glob (`*` within a segment, `**` across segments, `?` one char).
pub fn glob_match(glob: &str, path: &str) -> bool {
    fn go(g: &[u8], p: &[u8]) -> bool {
        match (g.first(), p.first()) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(b'*'), _) if g.get(1) == Some(&b'*') => {
                let rest = if g.get(2) == Some(&b'/') {
                    &g[3..]
                } else {
                    &g[2..]
                };
                (0..=p.len()).any(|i| go(rest, &p[i..]))
            }
            (Some(b'*'), _) => {
                let mut i = 0;
                loop {
                    if go(&g[1..], &p[i..]) {
                        return true;
                    }
                    if i >= p.len() || p[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            (Some(b'?'), Some(c)) if *c != b'/' => go(&g[1..], &p[1..]),
            (Some(a), Some(b)) if a == b => go(&g[1..], &p[1..]),
            _ => false,
        }
    }
    go(glob.as_bytes(), path.as_bytes())
}

/// A commit belongs to a service when it touches one of its paths (no paths: every commit).
pub fn touches(commit: &CommitRecord, paths: &[String]) -> bool {
    paths.is_empty()
        || commit
            .files
            .iter()
            .any(|f| paths.iter().any(|g| glob_match(g, f)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(
            "services/checkout/**",
            "services/checkout/src/main.rs"
        ));
        assert!(glob_match(
            "services/*/Dockerfile",
            "services/web/Dockerfile"
        ));
        assert!(!glob_match(
            "services/checkout/**",
            "services/web/src/main.rs"
        ));
        assert!(glob_match("**/*.proto", "api/v1/pay.proto"));
        assert!(!glob_match("*.md", "docs/a.md"));
    }
}
