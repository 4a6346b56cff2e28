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
        AuditRead => matches!(role, Auditor | Admin),
        InventoryAdmin | GovernanceAdmin | TokensAdmin => matches!(role, Admin),
        MetricsRead => true,
    }
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
