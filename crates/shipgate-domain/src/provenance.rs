//! Artifact immutability: the digest recorded when an artifact was published (CDEvents
//! `artifact.published`, `shipgate artifact publish`) against the digest deployed. A digest
//! never seen at build, or a published name and version that now has another digest, is
//! flagged; the gate denies it where provenance is required.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::Timestamp;

/// An artifact as published by a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublishedArtifact {
    pub name: String,
    /// The tag or version it was published under, when known.
    pub version: Option<String>,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Who told shipgate (`cdevents`, the CLI's token subject...).
    pub source: String,
    #[schema(value_type = String, format = DateTime)]
    pub published_at: Timestamp,
}

str_enum!(
    /// What shipgate knows of a deployed digest.
    ProvenanceStatus {
        Verified => "verified",
        Unknown => "unknown",
        Mismatch => "mismatch",
    }
);

/// The provenance check of one deployment, kept with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Provenance {
    pub status: ProvenanceStatus,
    /// For a mismatch: the digest published under this name and version.
    pub expected_digest: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub published_at: Option<Timestamp>,
    pub message: String,
}

impl Provenance {
    pub fn ok(&self) -> bool {
        self.status == ProvenanceStatus::Verified
    }
}

/// Checks `digest` (deployed as `name` at `version`) against what was published. `published`
/// holds the records with that digest or that name.
pub fn check(
    name: Option<&str>,
    version: &str,
    digest: &str,
    published: &[PublishedArtifact],
) -> Provenance {
    let short = |n: &str| n.rsplit('/').next().unwrap_or(n).to_owned();
    let same_name = |a: &PublishedArtifact| name.is_none_or(|n| short(n) == short(&a.name));
    if let Some(a) = published
        .iter()
        .find(|a| a.digest == digest && same_name(a))
        .or_else(|| published.iter().find(|a| a.digest == digest))
    {
        return Provenance {
            status: ProvenanceStatus::Verified,
            expected_digest: None,
            published_at: Some(a.published_at),
            message: format!("{} was published by {}", a.digest, a.source),
        };
    }
    if let Some(a) = published
        .iter()
        .filter(|a| same_name(a) && a.version.as_deref() == Some(version))
        .max_by_key(|a| a.published_at)
    {
        return Provenance {
            status: ProvenanceStatus::Mismatch,
            expected_digest: Some(a.digest.clone()),
            published_at: Some(a.published_at),
            message: format!(
                "{} {version} was published as {}, but {digest} was deployed",
                a.name, a.digest
            ),
        };
    }
    Provenance {
        status: ProvenanceStatus::Unknown,
        expected_digest: None,
        published_at: None,
        message: format!("{digest} was never published by a build shipgate knows of"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn a(name: &str, version: &str, digest: &str) -> PublishedArtifact {
        PublishedArtifact {
            name: name.into(),
            version: Some(version.into()),
            digest: digest.into(),
            source: "ci".into(),
            published_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn verified_mismatch_unknown() {
        let p = vec![a("registry/checkout", "1.4.2", "sha256:aa")];
        assert!(check(Some("checkout"), "1.4.2", "sha256:aa", &p).ok());
        let m = check(Some("registry/checkout"), "1.4.2", "sha256:bb", &p);
        assert_eq!(m.status, ProvenanceStatus::Mismatch);
        assert_eq!(m.expected_digest.as_deref(), Some("sha256:aa"));
        assert_eq!(
            check(Some("other"), "9", "sha256:cc", &p).status,
            ProvenanceStatus::Unknown
        );
    }
}
