//! Step-up as part of the access decision, the credential a principal carries, and tool
//! requirements.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use mcpsec_access::{
    Action, AuthMethod, AuthMethods, Authentication, Authorizer, Credential, CredentialId,
    CredentialKind, DEFAULT_ACR, Denial, Principal, Resource, Role, ScopeSet, StepUpPolicy,
    ToolAccess, ToolPolicy, ToolRequirement, authorize, authorize_as, danger, perm,
};
use mcpsec_core::{Actor, EventKind, KeyId, OrgId, ReasonCode, TokenId, UserId};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000)
}

fn otp() -> AuthMethods {
    AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp])
}

fn admin(
    credential: impl Into<Credential>,
    methods: AuthMethods,
    at: Option<SystemTime>,
) -> Principal {
    danger::principal(
        UserId::new("ada").unwrap(),
        OrgId::new("acme").unwrap(),
        Role::OrgAdmin,
        ScopeSet::parse_strict("org:admin mcp:admin user:token").unwrap(),
        credential,
        Authentication { at, methods },
    )
}

fn acme() -> Resource {
    Resource::of_org(OrgId::new("acme").unwrap())
}

fn key_id() -> KeyId {
    KeyId::new("k_0123456789abcdef").unwrap()
}

#[test]
fn admin_action_without_step_up_is_a_challenge_naming_acr_and_max_age() {
    let authorizer = Authorizer::default();
    let password_only = admin(
        CredentialKind::AccessToken,
        AuthMethods::of(&[AuthMethod::Pwd]),
        Some(now()),
    );
    let denial = authorizer
        .authorize(&password_only, Action::OrgManageMembers, &acme(), now())
        .unwrap_err();
    assert_eq!(
        denial,
        Denial::StepUpRequired {
            acr_values: DEFAULT_ACR.to_owned(),
            max_age: Duration::from_secs(15 * 60),
            action: Action::OrgManageMembers,
        }
    );
    assert_eq!(denial.rule(), "step_up");
    assert_eq!(denial.reason_code(), ReasonCode::StepUpRequired);
}

#[test]
fn stale_or_unknown_authentication_fails_step_up() {
    let authorizer = Authorizer::default();
    let stale = admin(
        CredentialKind::AccessToken,
        otp(),
        Some(now() - Duration::from_secs(16 * 60)),
    );
    let unknown = admin(CredentialKind::AccessToken, otp(), None);
    for p in [&stale, &unknown] {
        assert!(matches!(
            authorizer.authorize(p, Action::OrgUpdateSettings, &acme(), now()),
            Err(Denial::StepUpRequired { .. })
        ));
    }
}

#[test]
fn proof_for_a_step_up_action_records_when_the_step_up_happened() {
    let at = now() - Duration::from_secs(60);
    let p = admin(CredentialKind::AccessToken, otp(), Some(at));
    let authorizer = Authorizer::default();
    let proof = authorizer
        .authorize_as::<perm::OrgManageMembers>(&p, &acme(), now())
        .unwrap();
    assert_eq!(proof.stepped_up_at(), Some(at));
    // An ordinary action needs none, and its proof says so.
    let ordinary = authorizer
        .authorize(&p, Action::McpUse, &acme(), now())
        .unwrap();
    assert_eq!(ordinary.stepped_up_at(), None);
}

#[test]
fn free_authorize_never_proves_an_admin_action() {
    // Even a principal that stepped up a second ago: the free functions have no clock
    // and no policy, so they refuse rather than skip the check.
    let p = admin(CredentialKind::AccessToken, otp(), Some(now()));
    for action in Action::ALL.into_iter().filter(|a| a.is_admin()) {
        let resource = Resource::own(&p);
        assert_eq!(
            authorize(&p, action, &resource).unwrap_err(),
            Denial::StepUpNotChecked { action },
            "{action}"
        );
    }
    assert!(authorize_as::<perm::OrgManageMembers>(&p, &acme()).is_err());
    assert!(authorize_as::<perm::McpManageSettings>(&p, &acme()).is_err());
    // Ordinary actions keep the simple API.
    assert!(authorize(&p, Action::McpUse, &acme()).is_ok());
}

#[test]
fn admin_action_by_api_key_is_refused_not_challenged() {
    // However fresh the (claimed) authentication, a key cannot answer a challenge.
    let key = admin(Credential::api_key(key_id()), otp(), Some(now()));
    let authorizer = Authorizer::default();
    for action in Action::ALL.into_iter().filter(|a| a.is_admin()) {
        let denial = authorizer
            .authorize(&key, action, &Resource::own(&key), now())
            .unwrap_err();
        assert_eq!(
            denial,
            Denial::InteractiveOnly {
                credential: CredentialKind::ApiKey,
                action,
            },
            "{action}"
        );
        assert!(denial.to_string().contains("API key"));
        // The free functions give the same clear reason.
        assert_eq!(
            authorize(&key, action, &Resource::own(&key)).unwrap_err(),
            denial
        );
    }
    // A key still does what needs no step-up.
    assert!(
        authorizer
            .authorize(&key, Action::McpUse, &acme(), now())
            .is_ok()
    );
}

#[test]
fn a_host_policy_can_add_step_up_to_an_ordinary_action() {
    let policy = StepUpPolicy::new().require(
        Action::UserManageTokens,
        Some(mcpsec_access::Requirement::admin()),
    );
    let authorizer = Authorizer::new(policy);
    let pwd = admin(
        CredentialKind::AccessToken,
        AuthMethods::of(&[AuthMethod::Pwd]),
        Some(now()),
    );
    assert!(matches!(
        authorizer.authorize_as::<perm::UserManageTokens>(&pwd, &Resource::own(&pwd), now()),
        Err(Denial::StepUpRequired { .. })
    ));
}

#[test]
fn step_up_is_checked_after_the_other_rules() {
    // A viewer asking for an admin action is refused by role, not asked to step up.
    let viewer = danger::principal(
        UserId::new("vera").unwrap(),
        OrgId::new("acme").unwrap(),
        Role::Viewer,
        ScopeSet::parse_strict("org:admin").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    let denial = Authorizer::default()
        .authorize(&viewer, Action::OrgManageMembers, &acme(), now())
        .unwrap_err();
    assert_eq!(denial.rule(), "role");
}

#[test]
fn principal_carries_the_credential_and_events_name_the_key() {
    let key = admin(Credential::api_key(key_id()), AuthMethods::EMPTY, None);
    assert_eq!(key.credential(), CredentialKind::ApiKey);
    assert_eq!(key.credential_id(), Some(&CredentialId::Key(key_id())));
    let expected = Actor::ApiKey {
        key: key_id(),
        owner: Some(UserId::new("ada").unwrap()),
    };
    assert_eq!(key.actor(), expected);
    let denial = Authorizer::default()
        .authorize(&key, Action::OrgManageMembers, &acme(), now())
        .unwrap_err();
    assert_eq!(denial.security_event(&key, now()).actor, expected);
    let proof = authorize_as::<perm::UserManageTokens>(&key, &Resource::own(&key)).unwrap();
    assert_eq!(proof.actor(), expected);

    let jti = TokenId::new("tok-1").unwrap();
    let token = admin(
        Credential::access_token(Some(jti.clone())),
        otp(),
        Some(now()),
    );
    assert_eq!(token.credential_id(), Some(&CredentialId::Token(jti)));
    assert_eq!(
        token.actor(),
        Actor::User {
            user: UserId::new("ada").unwrap()
        }
    );
    // Downscoping keeps the credential.
    assert_eq!(
        key.downscope(ScopeSet::parse_strict("mcp:read").unwrap())
            .credential_id(),
        key.credential_id()
    );
}

#[test]
fn a_denials_event_carries_the_action_and_the_api_key_id() {
    // issue 18: the caller passes the principal and the time, never the action again.
    let key = admin(Credential::api_key(key_id()), AuthMethods::EMPTY, None);
    let cases = [
        Authorizer::default()
            .authorize(&key, Action::OrgManageMembers, &acme(), now())
            .unwrap_err(),
        authorize(
            &key,
            Action::McpUse,
            &Resource::of_org(OrgId::new("evil").unwrap()),
        )
        .unwrap_err(),
    ];
    for (denial, action) in cases.iter().zip([Action::OrgManageMembers, Action::McpUse]) {
        assert_eq!(denial.action(), Some(action));
        let event = denial.security_event(&key, now());
        assert_eq!(
            event.action.as_ref().map(mcpsec_core::Label::as_str),
            Some(action.as_str())
        );
        assert!(
            matches!(&event.actor, Actor::ApiKey { key, .. } if *key == key_id()),
            "{:?}",
            event.actor
        );
        assert_eq!(event.reason, Some(denial.reason_code()));
    }
}

#[test]
fn authenticated_tools_need_only_a_verified_caller() {
    let policy = ToolPolicy::new()
        .map("whoami", ToolRequirement::Authenticated)
        .unwrap()
        .map("set_limits", Action::McpManageSettings)
        .unwrap();
    let nobody_special = danger::principal(
        UserId::new("vera").unwrap(),
        OrgId::new("acme").unwrap(),
        Role::Viewer,
        ScopeSet::parse_strict("").unwrap(),
        CredentialKind::AccessToken,
        Authentication {
            at: None,
            methods: AuthMethods::EMPTY,
        },
    );
    assert!(matches!(
        policy.authorize_call(&nobody_special, "whoami", &acme(), now()),
        Ok(ToolAccess::Authenticated)
    ));
    assert_eq!(
        policy.visible(&nobody_special, ["whoami", "set_limits", "other"], now()),
        ["whoami"]
    );
    assert_eq!(
        policy.requirement_for("whoami"),
        Some(ToolRequirement::Authenticated)
    );
    assert_eq!(policy.action_for("whoami"), None);
    // Default deny stays.
    assert_eq!(
        policy
            .authorize_call(&nobody_special, "other", &acme(), now())
            .unwrap_err(),
        Denial::UnmappedTool
    );
}

#[test]
fn admin_tools_need_step_up_through_the_tool_policy() {
    let policy = ToolPolicy::new()
        .map("set_limits", Action::McpManageSettings)
        .unwrap();
    let pwd = admin(
        CredentialKind::AccessToken,
        AuthMethods::of(&[AuthMethod::Pwd]),
        Some(now()),
    );
    let denial = policy
        .authorize_call(&pwd, "set_limits", &acme(), now())
        .unwrap_err();
    assert!(matches!(denial, Denial::StepUpRequired { .. }));
    // Still listed, so the client calls it and learns to step up; hidden from a key,
    // which never can.
    assert_eq!(policy.visible(&pwd, ["set_limits"], now()), ["set_limits"]);
    let key = admin(Credential::api_key(key_id()), otp(), Some(now()));
    assert!(policy.visible(&key, ["set_limits"], now()).is_empty());
    assert_eq!(
        policy
            .authorize_call(&key, "set_limits", &acme(), now())
            .unwrap_err(),
        Denial::InteractiveOnly {
            credential: CredentialKind::ApiKey,
            action: Action::McpManageSettings,
        }
    );
    let event = policy.denied_event(&pwd, "set_limits", denial, now());
    assert_eq!(event.kind, EventKind::McpToolDenied);
    assert_eq!(event.reason, Some(ReasonCode::StepUpRequired));

    let stepped = admin(CredentialKind::AccessToken, otp(), Some(now()));
    match policy.authorize_call(&stepped, "set_limits", &acme(), now()) {
        Ok(ToolAccess::Authorized(proof)) => {
            assert_eq!(proof.action(), Action::McpManageSettings);
            assert_eq!(proof.stepped_up_at(), Some(now()));
        }
        other => panic!("expected a proof, got {other:?}"),
    }
}
