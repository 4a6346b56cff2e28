//! Mandatory metadata per environment tier (production requires a commit, a digest, ...).
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::FieldErrors;
use crate::model::{EnvTier, NewDeployment};

/// A field that configuration can make mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequiredField {
    CommitSha,
    GitRef,
    Repository,
    ArtifactName,
    ArtifactDigest,
    Deployer,
    ChangeRef,
    CorrelationId,
    Team,
}

impl RequiredField {
    pub fn name(self) -> &'static str {
        match self {
            RequiredField::CommitSha => "commit_sha",
            RequiredField::GitRef => "git_ref",
            RequiredField::Repository => "repository",
            RequiredField::ArtifactName => "artifact_name",
            RequiredField::ArtifactDigest => "artifact_digest",
            RequiredField::Deployer => "deployer",
            RequiredField::ChangeRef => "change_ref",
            RequiredField::CorrelationId => "correlation_id",
            RequiredField::Team => "team",
        }
    }

    fn present(self, d: &NewDeployment) -> bool {
        match self {
            RequiredField::CommitSha => d.commit_sha.is_some(),
            RequiredField::GitRef => d.git_ref.is_some(),
            RequiredField::Repository => d.repository.is_some(),
            RequiredField::ArtifactName => d.artifact_name.is_some(),
            RequiredField::ArtifactDigest => d.artifact_digest.is_some(),
            RequiredField::Deployer => d.deployer.is_some(),
            RequiredField::ChangeRef => d.change_ref.is_some(),
            RequiredField::CorrelationId => d.correlation_id.is_some(),
            RequiredField::Team => d.team.is_some(),
        }
    }
}

/// Per-tier requirements. Tiers not listed require nothing beyond the always-required fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Requirements(pub BTreeMap<EnvTier, Vec<RequiredField>>);

impl Default for Requirements {
    fn default() -> Self {
        let mut m = BTreeMap::new();
        m.insert(
            EnvTier::Production,
            vec![
                RequiredField::CommitSha,
                RequiredField::ArtifactDigest,
                RequiredField::Deployer,
            ],
        );
        Requirements(m)
    }
}

impl Requirements {
    /// Adds a `required` error for every field this deployment's tier needs and lacks.
    pub fn check(&self, d: &NewDeployment, errors: &mut FieldErrors) {
        let Some(tier) = d.environment.tier else {
            return;
        };
        for f in self.0.get(&tier).map(Vec::as_slice).unwrap_or_default() {
            if !f.present(d) {
                errors.add(
                    f.name(),
                    "required",
                    format!("required for {} deployments", tier.as_str()),
                );
            }
        }
    }
}
