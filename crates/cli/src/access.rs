//! `mcpsec access check` and `mcpsec access matrix`.

use mcpsec_access::{
    Action, AuthMethod, AuthMethods, Authentication, Authorizer, CredentialKind, Denial, Ownership,
    Resource, Role, ScopeSet,
};
use mcpsec_core::{OrgId, UserId};
use serde::Serialize;
use std::time::SystemTime;

/// Whose resource the checked action touches, relative to the principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The principal's own resource.
    SelfOwned,
    /// A resource of the principal's organization that no user owns.
    SameOrg,
    /// A resource of another user in the same organization.
    OtherUser,
    /// A resource of another organization.
    OtherOrg,
}

impl Owner {
    /// The action's natural owner: `self` for own resources, `same-org` for org resources.
    pub fn natural_for(action: Action) -> Owner {
        match action.spec().ownership {
            Ownership::Own => Owner::SelfOwned,
            Ownership::SameOrg => Owner::SameOrg,
        }
    }

    /// The flag value (`self`, `same-org`, `other-user`, `other-org`).
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::SelfOwned => "self",
            Owner::SameOrg => "same-org",
            Owner::OtherUser => "other-user",
            Owner::OtherOrg => "other-org",
        }
    }
}

/// The answer to one `access check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckAnswer {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The rule that failed (`role`, `scope`, `org`, `ownership`), when denied.
    pub rule: Option<&'static str>,
    /// The denial in words, when denied.
    pub reason: Option<String>,
    /// The role checked.
    pub role: &'static str,
    /// The scopes as given, in canonical form.
    pub scopes: String,
    /// The scopes the hierarchy makes of them.
    pub effective_scopes: String,
    /// The action checked.
    pub action: &'static str,
    /// The scope the action needs.
    pub required_scope: &'static str,
    /// Whose resource was assumed.
    pub owner: &'static str,
}

impl CheckAnswer {
    /// Whether the decision was allow.
    pub fn allowed(&self) -> bool {
        self.rule.is_none()
    }

    /// `allow` or `deny: <rule that failed>`: the first line scripts read.
    pub fn first_line(&self) -> String {
        match &self.reason {
            None => "allow".to_owned(),
            Some(reason) => format!("deny: {reason}"),
        }
    }

    /// The human output: the first line, then what was checked.
    pub fn to_text(&self) -> String {
        format!(
            "{}\nrole: {}\nscopes: {}\neffective scopes: {}\naction: {} (needs {})\nowner: {}\n",
            self.first_line(),
            self.role,
            or_none(&self.scopes),
            or_none(&self.effective_scopes),
            self.action,
            self.required_scope,
            self.owner,
        )
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "(none)" } else { s }
}

/// Decides `action` for a principal with `role` and `scopes` on a resource owned as `owner`
/// says, through [`mcpsec_access::Authorizer::authorize`], the same call a service makes.
pub fn check(role: Role, scopes: ScopeSet, action: Action, owner: Owner) -> CheckAnswer {
    let decision = decide(role, scopes, action, owner);
    let denial = decision.err();
    CheckAnswer {
        decision: if denial.is_none() { "allow" } else { "deny" },
        rule: denial.as_ref().map(Denial::rule),
        reason: denial.as_ref().map(|d| d.to_string()),
        role: role.as_str(),
        scopes: scopes.to_string(),
        effective_scopes: scopes.effective().to_string(),
        action: action.as_str(),
        required_scope: action.spec().scope.as_str(),
        owner: owner.as_str(),
    }
}

fn decide(role: Role, scopes: ScopeSet, action: Action, owner: Owner) -> Result<(), Denial> {
    let now = SystemTime::now();
    // Fixed, valid identifiers: the checker reasons about relations, not real users.
    let (Ok(me), Ok(colleague), Ok(stranger), Ok(org), Ok(other_org)) = (
        UserId::new("principal"),
        UserId::new("colleague"),
        UserId::new("stranger"),
        OrgId::new("org"),
        OrgId::new("other-org"),
    ) else {
        return Err(Denial::OtherOrg { action });
    };
    let principal = mcpsec_access::danger::principal(
        me.clone(),
        org.clone(),
        role,
        scopes,
        CredentialKind::AccessToken,
        // An interactive session that stepped up with TOTP just now: the checker answers
        // the role, scope, org and ownership question; step-up is a per-request condition
        // the service's `Authorizer` adds for administrative actions.
        Authentication {
            at: Some(now),
            methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        },
    );
    let resource = match owner {
        Owner::SelfOwned => Resource::owned_by(me, org),
        Owner::SameOrg => Resource::of_org(org),
        Owner::OtherUser => Resource::owned_by(colleague, org),
        Owner::OtherOrg => Resource::owned_by(stranger, other_org),
    };
    Authorizer::default()
        .authorize(&principal, action, &resource, now)
        .map(|_| ())
}

/// The role × action table as Markdown: what each role may do when its credential holds
/// the action's scope.
pub fn matrix_markdown() -> String {
    let mut out = String::from("| action | scope | resource |");
    for role in Role::ALL {
        out.push_str(&format!(" {role} |"));
    }
    out.push_str("\n|---|---|---|");
    out.push_str(&"---|".repeat(Role::ALL.len()));
    out.push('\n');
    for action in Action::ALL {
        let spec = action.spec();
        out.push_str(&format!(
            "| `{}` | `{}` | {} |",
            spec.name,
            spec.scope,
            spec.ownership.as_str()
        ));
        for role in Role::ALL {
            let allowed = check(
                role,
                ScopeSet::of(&[spec.scope]),
                action,
                Owner::natural_for(action),
            )
            .allowed();
            out.push_str(if allowed { " yes |" } else { " no |" });
        }
        out.push('\n');
    }
    out
}
