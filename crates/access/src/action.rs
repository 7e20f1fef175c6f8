//! Actions: the canonical list of what can be done, each with the scope it needs, the roles
//! allowed to do it, and whose resource it acts on. Declared once, in [`Action::spec`].

use crate::{Error, Role, Scope};

/// Whose resource an action may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ownership {
    /// Only the principal's own resources (profile, personal keys, personal usage).
    Own,
    /// Any resource of the principal's organization.
    SameOrg,
}

impl Ownership {
    /// `own` or `same-org`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Ownership::Own => "own",
            Ownership::SameOrg => "same-org",
        }
    }
}

/// Something a principal can ask to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `mcp.use`: call an MCP service.
    McpUse,
    /// `mcp.configure`: create or change an MCP service configuration.
    McpConfigure,
    /// `mcp.manage_settings`: manage organization-wide MCP settings.
    McpManageSettings,
    /// `user.read_profile`: read one's own profile.
    UserReadProfile,
    /// `user.update_profile`: update one's own profile.
    UserUpdateProfile,
    /// `user.manage_tokens`: create, list and revoke one's own API keys and tokens.
    UserManageTokens,
    /// `usage.view_own`: view one's own usage history.
    UsageViewOwn,
    /// `org.view_usage`: view organization usage analytics.
    OrgViewUsage,
    /// `org.update_settings`: update organization settings.
    OrgUpdateSettings,
    /// `org.manage_members`: manage organization members and billing.
    OrgManageMembers,
}

/// What an action requires. See [`Action::spec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    /// The action's name (`mcp.use`).
    pub name: &'static str,
    /// The scope the credential must grant (through the hierarchy).
    pub scope: Scope,
    /// The roles allowed to perform it.
    pub roles: &'static [Role],
    /// Whose resources it may touch.
    pub ownership: Ownership,
}

const ALL_ROLES: &[Role] = &[Role::OrgAdmin, Role::Developer, Role::Viewer];
const ADMIN_DEV: &[Role] = &[Role::OrgAdmin, Role::Developer];
const ADMIN: &[Role] = &[Role::OrgAdmin];

impl Action {
    /// All ten actions.
    pub const ALL: [Action; 10] = [
        Action::McpUse,
        Action::McpConfigure,
        Action::McpManageSettings,
        Action::UserReadProfile,
        Action::UserUpdateProfile,
        Action::UserManageTokens,
        Action::UsageViewOwn,
        Action::OrgViewUsage,
        Action::OrgUpdateSettings,
        Action::OrgManageMembers,
    ];

    /// The table: name — scope — roles — ownership. The one place these are declared.
    pub const fn spec(self) -> ActionSpec {
        use Ownership::{Own, SameOrg};
        let (name, scope, roles, ownership) = match self {
            Action::McpUse => ("mcp.use", Scope::McpRead, ALL_ROLES, SameOrg),
            Action::McpConfigure => ("mcp.configure", Scope::McpWrite, ADMIN_DEV, SameOrg),
            Action::McpManageSettings => ("mcp.manage_settings", Scope::McpAdmin, ADMIN, SameOrg),
            Action::UserReadProfile => ("user.read_profile", Scope::UserRead, ALL_ROLES, Own),
            Action::UserUpdateProfile => ("user.update_profile", Scope::UserWrite, ALL_ROLES, Own),
            Action::UserManageTokens => ("user.manage_tokens", Scope::UserToken, ADMIN_DEV, Own),
            Action::UsageViewOwn => ("usage.view_own", Scope::UserRead, ALL_ROLES, Own),
            Action::OrgViewUsage => ("org.view_usage", Scope::OrgRead, ADMIN_DEV, SameOrg),
            Action::OrgUpdateSettings => ("org.update_settings", Scope::OrgWrite, ADMIN, SameOrg),
            Action::OrgManageMembers => ("org.manage_members", Scope::OrgAdmin, ADMIN, SameOrg),
        };
        ActionSpec {
            name,
            scope,
            roles,
            ownership,
        }
    }

    /// The action's name (`mcp.use`).
    pub const fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Whether `role` may perform this action (scopes and ownership aside).
    pub fn allows_role(self, role: Role) -> bool {
        self.spec().roles.contains(&role)
    }

    /// Whether the action is administrative: it needs an `*:admin` scope or is reserved to
    /// the org admin role. The step-up policy requires recent MFA for these by default.
    pub fn is_admin(self) -> bool {
        let spec = self.spec();
        matches!(spec.scope, Scope::McpAdmin | Scope::OrgAdmin) || spec.roles == [Role::OrgAdmin]
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(Error::UnknownAction)
    }
}

/// An action known at compile time, so a handler can demand proof of exactly it:
/// `fn configure(proof: Authorized<McpConfigure>)` cannot be called with a proof for
/// `mcp.use`. See [`authorize_as`](crate::authorize_as).
pub trait Permission {
    /// The action this marker stands for.
    const ACTION: Action;
}

macro_rules! permissions {
    ($($(#[$doc:meta])* $name:ident => $action:ident,)+) => {
        /// One marker type per action, for [`Authorized<P>`](crate::Authorized).
        pub mod perm {
            use super::{Action, Permission};
            $(
                $(#[$doc])*
                #[derive(Debug, Clone, Copy, PartialEq, Eq)]
                pub enum $name {}
                impl Permission for $name {
                    const ACTION: Action = Action::$action;
                }
            )+
        }
    };
}

permissions! {
    /// Marker for [`Action::McpUse`].
    McpUse => McpUse,
    /// Marker for [`Action::McpConfigure`].
    McpConfigure => McpConfigure,
    /// Marker for [`Action::McpManageSettings`].
    McpManageSettings => McpManageSettings,
    /// Marker for [`Action::UserReadProfile`].
    UserReadProfile => UserReadProfile,
    /// Marker for [`Action::UserUpdateProfile`].
    UserUpdateProfile => UserUpdateProfile,
    /// Marker for [`Action::UserManageTokens`].
    UserManageTokens => UserManageTokens,
    /// Marker for [`Action::UsageViewOwn`].
    UsageViewOwn => UsageViewOwn,
    /// Marker for [`Action::OrgViewUsage`].
    OrgViewUsage => OrgViewUsage,
    /// Marker for [`Action::OrgUpdateSettings`].
    OrgUpdateSettings => OrgUpdateSettings,
    /// Marker for [`Action::OrgManageMembers`].
    OrgManageMembers => OrgManageMembers,
}
