//! Named behaviours of decisions, proofs, events and the MCP tool policy.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use mcpsec_access::{
    Action, AuthMethod, AuthMethods, Authentication, Authorizer, CredentialKind, Denial, Principal,
    Resource, Role, Scope, ScopeSet, ToolPolicy, authorize, authorize_as, perm,
};
use mcpsec_core::{EventKind, Label, OrgId, ReasonCode, UserId};
use std::time::UNIX_EPOCH;

fn principal(role: Role, scopes: &str) -> Principal {
    mcpsec_access::danger::principal(
        UserId::new("alice").unwrap(),
        OrgId::new("acme").unwrap(),
        role,
        ScopeSet::parse_strict(scopes).unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: Some(UNIX_EPOCH),
            methods: AuthMethods::EMPTY,
        },
    )
}

/// The same principal after a TOTP step-up at `UNIX_EPOCH`.
fn stepped_up(p: Principal) -> Principal {
    mcpsec_access::danger::principal(
        p.subject().clone(),
        p.org().clone(),
        p.role(),
        p.scopes(),
        p.credential(),
        Authentication {
            at: Some(UNIX_EPOCH),
            methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
        },
    )
}

fn acme() -> Resource {
    Resource::of_org(OrgId::new("acme").unwrap())
}

#[test]
fn every_action_name_is_a_valid_event_label_and_parses_back() {
    for action in Action::ALL {
        Label::new(action.as_str()).unwrap();
        assert_eq!(action.as_str().parse::<Action>().unwrap(), action);
    }
    assert!("mcp.delete_everything".parse::<Action>().is_err());
    assert!("superuser".parse::<Role>().is_err());
}

#[test]
fn typed_proof_carries_the_action_it_was_checked_for() {
    fn configure(proof: mcpsec_access::Authorized<perm::McpConfigure>) -> Action {
        proof.action()
    }
    let dev = principal(Role::Developer, "mcp:write");
    let proof = authorize_as::<perm::McpConfigure>(&dev, &acme()).unwrap();
    assert_eq!(configure(proof), Action::McpConfigure);
    assert!(authorize_as::<perm::McpManageSettings>(&dev, &acme()).is_err());
}

#[test]
fn personal_actions_need_an_owner_even_in_the_same_org() {
    let admin = principal(Role::OrgAdmin, "user:token");
    assert_eq!(
        authorize(&admin, Action::UserManageTokens, &acme()).unwrap_err(),
        Denial::NotOwner {
            action: Action::UserManageTokens
        }
    );
    assert!(authorize(&admin, Action::UserManageTokens, &Resource::own(&admin)).is_ok());
}

#[test]
fn an_api_key_cannot_exceed_its_owners_role() {
    // A viewer's key that claims mcp:admin still cannot manage settings.
    let viewer_key = principal(Role::Viewer, "mcp:admin");
    assert!(matches!(
        authorize(&viewer_key, Action::McpManageSettings, &acme()),
        Err(Denial::RoleForbids {
            role: Role::Viewer,
            ..
        })
    ));
    assert!(authorize(&viewer_key, Action::McpUse, &acme()).is_ok());
}

#[test]
fn denials_become_events_without_secrets() {
    let dev = principal(Role::Developer, "mcp:read");
    let denial = authorize(&dev, Action::McpConfigure, &acme()).unwrap_err();
    assert_eq!(
        denial,
        Denial::ScopeMissing {
            required: Scope::McpWrite,
            action: Action::McpConfigure,
        }
    );
    assert_eq!(
        denial.to_string(),
        "scope: the credential does not grant mcp:write"
    );
    // The denial carries the action: the caller does not repeat it.
    assert_eq!(denial.action(), Some(Action::McpConfigure));
    let event = denial.security_event(&dev, UNIX_EPOCH);
    assert_eq!(event.kind, EventKind::AuthzFail);
    assert_eq!(event.reason, Some(ReasonCode::ScopeMissing));
    assert_eq!(
        event.action.as_ref().map(Label::as_str),
        Some("mcp.configure")
    );

    let other = Resource::of_org(OrgId::new("evil").unwrap());
    let cross = authorize(&dev, Action::McpUse, &other).unwrap_err();
    assert_eq!(
        cross.security_event(&dev, UNIX_EPOCH).kind,
        EventKind::MaliciousDirectReference
    );
}

#[test]
fn admin_actions_produce_an_authz_admin_event() {
    let admin = stepped_up(principal(Role::OrgAdmin, "org:admin mcp:admin"));
    let proof = Authorizer::default()
        .authorize(&admin, Action::OrgManageMembers, &acme(), UNIX_EPOCH)
        .unwrap();
    let event = proof.admin_event(UNIX_EPOCH).expect("admin action");
    assert_eq!(event.kind, EventKind::AuthzAdmin);
    assert!(event.is_critical());
    let ordinary = authorize(&admin, Action::McpUse, &acme()).unwrap();
    assert!(ordinary.admin_event(UNIX_EPOCH).is_none());
    let admin_actions: Vec<_> = Action::ALL.into_iter().filter(|a| a.is_admin()).collect();
    assert_eq!(
        admin_actions,
        [
            Action::McpManageSettings,
            Action::OrgUpdateSettings,
            Action::OrgManageMembers
        ]
    );
}

#[test]
fn unmapped_tools_are_denied_and_hidden() {
    let policy = ToolPolicy::new()
        .map("search_docs", Action::McpUse)
        .unwrap()
        .map("deploy_server", Action::McpConfigure)
        .unwrap();
    let viewer = principal(Role::Viewer, "mcp:read");
    let tools = ["search_docs", "deploy_server", "drop_database"];
    assert_eq!(policy.visible(&viewer, tools, UNIX_EPOCH), ["search_docs"]);
    assert!(
        policy
            .authorize_call(&viewer, "search_docs", &acme(), UNIX_EPOCH)
            .is_ok()
    );
    assert_eq!(
        policy
            .authorize_call(&viewer, "drop_database", &acme(), UNIX_EPOCH)
            .unwrap_err(),
        Denial::UnmappedTool
    );
    let denial = policy
        .authorize_call(&viewer, "deploy_server", &acme(), UNIX_EPOCH)
        .unwrap_err();
    assert!(matches!(denial, Denial::RoleForbids { .. }));
    let event = policy.denied_event(&viewer, "drop_database", Denial::UnmappedTool, UNIX_EPOCH);
    assert_eq!(event.kind, EventKind::McpToolDenied);
    assert_eq!(event.reason, Some(ReasonCode::UnmappedTool));
    assert_eq!(
        event.action.as_ref().map(Label::as_str),
        Some("drop_database")
    );
}

#[test]
fn tool_names_follow_the_mcp_rules() {
    for bad in ["", "has space", "semi;colon", &"x".repeat(129), "ünï"] {
        assert!(
            ToolPolicy::new().map(bad, Action::McpUse).is_err(),
            "{bad:?}"
        );
    }
    assert!(ToolPolicy::new().map("a.b-c_D9", Action::McpUse).is_ok());
}

#[test]
fn amr_values_parse_tolerantly() {
    let methods = AuthMethods::from_amr(["pwd", "otp", "made-up"]);
    let names: Vec<_> = methods.iter().map(|m| m.as_str()).collect();
    assert_eq!(names, ["pwd", "otp"]);
}
