//! The benchmark row for mcpsec-access: `authorize` against the same checks written by hand.

use crate::Row;
use mcpsec_access::{
    Action, AuthMethods, Authentication, CredentialKind, Resource, Role, ScopeSet, authorize,
};
use mcpsec_core::{OrgId, UserId};
use std::collections::HashSet;
use std::hint::black_box;
use std::time::UNIX_EPOCH;

/// `access.authorize`: a developer configuring an MCP service of their org (the full
/// path: role, scope through the hierarchy, org, proof) against the same checks written
/// the obvious way, with the credential's scopes as a `HashSet<String>`.
pub(crate) fn authorize_row() -> Result<Row, mcpsec_core::Error> {
    let org = OrgId::new("acme")?;
    let principal = mcpsec_access::danger::principal(
        UserId::new("ada")?,
        org.clone(),
        Role::Developer,
        ScopeSet::parse_strict("mcp:write user:token").unwrap_or(ScopeSet::EMPTY),
        CredentialKind::AccessToken,
        Authentication {
            at: Some(UNIX_EPOCH),
            methods: AuthMethods::EMPTY,
        },
    );
    let resource = Resource::of_org(org);
    let naive = NaivePrincipal {
        user: "ada".into(),
        org: "acme".into(),
        role: "developer".into(),
        scopes: ["mcp:write", "user:token"].map(String::from).into(),
    };
    Ok(Row {
        name: "access.authorize",
        baseline: "hashset_scope_check",
        op: Box::new(move || {
            let decision = authorize(
                black_box(&principal),
                black_box(Action::McpConfigure),
                black_box(&resource),
            );
            black_box(decision.is_ok());
        }),
        base: Box::new(move || {
            black_box(naive_authorize(
                black_box(&naive),
                black_box("mcp.configure"),
                black_box("acme"),
            ));
        }),
    })
}

struct NaivePrincipal {
    user: String,
    org: String,
    role: String,
    scopes: HashSet<String>,
}

/// The hand-rolled check a service might write: role list, scopes (with the hierarchy
/// spelled out) looked up in a `HashSet<String>`, org by string comparison.
fn naive_authorize(p: &NaivePrincipal, action: &str, resource_org: &str) -> bool {
    let (roles, satisfied_by): (&[&str], &[&str]) = match action {
        "mcp.configure" => (&["org_admin", "developer"], &["mcp:write", "mcp:admin"]),
        "mcp.use" => (
            &["org_admin", "developer", "viewer"],
            &["mcp:read", "mcp:write", "mcp:admin"],
        ),
        _ => return false,
    };
    roles.contains(&p.role.as_str())
        && satisfied_by.iter().any(|s| p.scopes.contains(*s))
        && p.org == resource_org
        && !p.user.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_agrees_with_authorize_on_the_benchmarked_case() {
        let naive = NaivePrincipal {
            user: "ada".into(),
            org: "acme".into(),
            role: "developer".into(),
            scopes: ["mcp:write".to_owned()].into(),
        };
        assert!(naive_authorize(&naive, "mcp.configure", "acme"));
        assert!(!naive_authorize(&naive, "mcp.configure", "other"));
        assert!(!naive_authorize(&naive, "org.manage_members", "acme"));
    }
}
