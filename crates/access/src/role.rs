//! Roles: the base permission level of a user within an organization.

use crate::Error;

/// A user's role in their organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Full control over organization resources, user management, MCP service
    /// configuration and monitoring.
    OrgAdmin,
    /// Create and use MCP service configurations, view organization usage analytics,
    /// manage personal API keys and tokens.
    Developer,
    /// Use existing MCP services read-only, view personal usage history; no configuration.
    Viewer,
}

impl Role {
    /// The three roles, most to least privileged.
    pub const ALL: [Role; 3] = [Role::OrgAdmin, Role::Developer, Role::Viewer];

    /// The role's name (`org_admin`, `developer`, `viewer`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::OrgAdmin => "org_admin",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(Error::UnknownRole)
    }
}
