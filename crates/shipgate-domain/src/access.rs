//! Role-based access: which permissions each role grants. One table, consulted by the server's
//! single authorisation layer for every route (default deny).
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Role;

str_enum!(
    /// What a route needs. `public` routes need no token; `authenticated` needs any valid token.
    Permission {
        Public => "public",
        Authenticated => "authenticated",
        DeploymentsRead => "deployments:read",
        DeploymentsWrite => "deployments:write",
        InventoryAdmin => "inventory:admin",
        ChangesRead => "changes:read",
        ChangesRequest => "changes:request",
        ChangesDecide => "changes:decide",
        GovernanceAdmin => "governance:admin",
        TokensAdmin => "tokens:admin",
        AuditRead => "audit:read",
        MetricsRead => "metrics:read",
        AccessReview => "access:review",
    }
);

/// Whether `role` grants `p`.
pub fn permits(role: Role, p: Permission) -> bool {
    use Permission::*;
    use Role::*;
    match p {
        Public | Authenticated => true,
        DeploymentsRead | ChangesRead => true,
        DeploymentsWrite => matches!(role, Deployer | EmergencyDeployer | Admin),
        ChangesRequest => matches!(
            role,
            Requester | Deployer | EmergencyDeployer | ChangeManager | Admin
        ),
        ChangesDecide => matches!(role, Approver | ChangeManager | IncidentCommander | Admin),
        AuditRead | AccessReview => matches!(role, Auditor | Admin),
        InventoryAdmin | GovernanceAdmin | TokensAdmin => matches!(role, Admin),
        MetricsRead => true,
    }
}

/// One privilege as an access review sees it: a live token, who holds it, who granted it, when
/// it was last used, and the approver groups its holder sits in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Entitlement {
    /// `token` (a credential) or `role_grant` (a role given to an SSO identity or group).
    pub kind: String,
    /// The token's or the role grant's id.
    pub token_id: uuid::Uuid,
    pub subject: String,
    pub role: Role,
    pub env_tier: Option<crate::model::EnvTier>,
    pub granted_by: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub granted_at: crate::time::Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<crate::time::Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<crate::time::Timestamp>,
    pub groups: Vec<String>,
}

str_enum!(
    ReviewDecision {
        Attest => "attest",
        Revoke => "revoke",
    }
);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewedGrant {
    pub token_id: uuid::Uuid,
    pub subject: String,
    pub role: Role,
    pub decision: ReviewDecision,
    pub comment: Option<String>,
}

/// A completed access review: every live privilege attested or revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccessReview {
    pub id: uuid::Uuid,
    /// `2026-Q4`.
    pub period: String,
    pub reviewer: String,
    pub items: Vec<ReviewedGrant>,
    #[schema(value_type = String, format = DateTime)]
    pub completed_at: crate::time::Timestamp,
}

/// Checks a review against the privileges in force: every one decided exactly once, none
/// unknown, and no reviewer deciding on their own privileges.
pub fn check_review(
    reviewer: &str,
    decisions: &[(uuid::Uuid, ReviewDecision, Option<String>)],
    live: &[Entitlement],
) -> Result<Vec<ReviewedGrant>, crate::FieldErrors> {
    let mut e = crate::FieldErrors::default();
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, (id, d, comment)) in decisions.iter().enumerate() {
        match live.iter().find(|x| x.token_id == *id) {
            None => e.add(
                format!("decisions[{i}].token_id"),
                "unknown_grant",
                format!("{id} is not a live privilege of this tenant"),
            ),
            Some(_) if !seen.insert(*id) => e.add(
                format!("decisions[{i}].token_id"),
                "duplicate",
                "decided twice",
            ),
            Some(x) if x.subject == reviewer => e.add(
                format!("decisions[{i}].token_id"),
                "self_review",
                "a reviewer cannot review their own privileges",
            ),
            Some(x) => out.push(ReviewedGrant {
                token_id: *id,
                subject: x.subject.clone(),
                role: x.role,
                decision: *d,
                comment: comment.clone(),
            }),
        }
    }
    for x in live {
        if x.subject != reviewer && !seen.contains(&x.token_id) {
            e.add(
                "decisions",
                "incomplete",
                format!(
                    "{} ({}, token {}) is neither attested nor revoked",
                    x.subject, x.role, x.token_id
                ),
            );
        }
    }
    e.into_result(out)
}

/// The roles that grant `p` (for error messages and the access matrix).
pub fn roles_with(p: Permission) -> Vec<Role> {
    Role::ALL
        .iter()
        .copied()
        .filter(|r| permits(*r, p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_deny_and_least_privilege() {
        assert!(!permits(Role::Viewer, Permission::DeploymentsWrite));
        assert!(!permits(Role::Viewer, Permission::ChangesDecide));
        assert!(
            !permits(Role::Deployer, Permission::ChangesDecide),
            "deployers do not approve"
        );
        assert!(
            !permits(Role::Approver, Permission::DeploymentsWrite),
            "approvers do not deploy"
        );
        assert!(!permits(Role::Auditor, Permission::TokensAdmin));
        assert!(permits(Role::Auditor, Permission::AuditRead));
        assert_eq!(roles_with(Permission::TokensAdmin), vec![Role::Admin]);
    }
}
