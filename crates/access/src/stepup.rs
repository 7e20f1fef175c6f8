//! Step-up: administrative actions require recent multi-factor authentication.
//!
//! Default: every action that needs an `*:admin` scope or the org admin role
//! ([`Action::is_admin`]) requires, within the last 15 minutes, one of the methods the
//! [`Requirement`] names: `otp` (a TOTP or recovery code, on top of the session's first
//! factor) or `hwk` + `user` (a user-verified passkey, feature `passkeys`). These are the
//! values `mcpsec-mfa`'s verifiers return (its `Verified`), so the host copies them rather
//! than writing `amr` by hand.
//!
//! The policy does not trust `mfa`: it says "more than one factor" without saying which,
//! and "password + email code" marked `mfa` by a host once passed as strong as TOTP.
//! `swk` or `hwk` alone does not count either: RFC 8176 defines them as proof of
//! possession of a key, one factor, which says nothing about user verification.
//!
//! Email codes are a weaker factor (NIST SP 800-63B) and never satisfy an administrative
//! action, even when a host lists them in a requirement, unless the host turns on
//! [`StepUpPolicy::danger_accept_email_codes_for_admin_actions`].
//!
//! The policy lives here, not in `mcpsec-mfa`, because it is part of the access decision:
//! an [`Authorizer`](crate::Authorizer) holds one, and an
//! [`Authorized`](crate::Authorized) for an action that needs step-up exists only if the
//! check passed. An HTTP layer depends on this crate alone to turn a denial into an
//! RFC 9470 challenge.
//!
//! API keys never satisfy a step-up: a key is not an interactive authentication, there
//! is nobody to challenge, so an action that needs step-up is refused for a key with
//! [`Denial::InteractiveOnly`](crate::Denial::InteractiveOnly) rather than an
//! `insufficient_user_authentication` challenge the client could never answer.

use crate::{Action, AuthMethod, AuthMethods, Principal};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// The `acr` value the policy asks for by default.
pub const DEFAULT_ACR: &str = "urn:mcpsec:acr:mfa";

/// What an action requires of the authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The `acr` value a client must request (`acr_values`) to satisfy it.
    pub acr: String,
    /// How long ago the authentication may have happened.
    pub max_age: Duration,
    /// The method sets that satisfy it: the authentication's `amr` must hold every method
    /// of at least one set. An empty set satisfies nothing (fail closed), and a set with
    /// `email` never satisfies an administrative action without
    /// [`StepUpPolicy::danger_accept_email_codes_for_admin_actions`].
    pub accepted: Vec<AuthMethods>,
}

impl Requirement {
    /// The default for administrative actions: `otp` or `hwk` + `user` within 15
    /// minutes, asking for [`DEFAULT_ACR`].
    pub fn admin() -> Self {
        Self {
            acr: DEFAULT_ACR.to_owned(),
            max_age: Duration::from_secs(15 * 60),
            accepted: vec![
                AuthMethods::of(&[AuthMethod::Otp]),
                AuthMethods::of(&[AuthMethod::Hwk, AuthMethod::User]),
            ],
        }
    }
}

/// The client must authenticate again; what the HTTP layer turns into an RFC 9470
/// `insufficient_user_authentication` challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step-up authentication required")]
pub struct StepUpRequired {
    /// The `acr_values` to request.
    pub acr_values: String,
    /// The `max_age` to request.
    pub max_age: Duration,
}

/// Which actions need recent MFA.
#[derive(Debug, Clone)]
pub struct StepUpPolicy {
    admin: Requirement,
    overrides: HashMap<Action, Option<Requirement>>,
    accept_email: bool,
}

impl Default for StepUpPolicy {
    fn default() -> Self {
        Self {
            admin: Requirement::admin(),
            overrides: HashMap::new(),
            accept_email: false,
        }
    }
}

impl StepUpPolicy {
    /// The default policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the requirement for `action` (`None`: no step-up for it).
    #[must_use]
    pub fn require(mut self, action: Action, requirement: Option<Requirement>) -> Self {
        self.overrides.insert(action, requirement);
        self
    }

    /// Lets an email code (`amr` `email`) satisfy step-up for every action, administrative
    /// ones included. Email is a weaker factor than TOTP or a passkey (NIST SP 800-63B):
    /// turn this on only knowingly.
    #[must_use]
    pub fn danger_accept_email_codes_for_admin_actions(mut self) -> Self {
        self.accept_email = true;
        self
    }

    /// The requirement for `action`, if any.
    pub fn requirement(&self, action: Action) -> Option<&Requirement> {
        match self.overrides.get(&action) {
            Some(r) => r.as_ref(),
            None => action.is_admin().then_some(&self.admin),
        }
    }

    /// Whether `principal` may perform `action` now as far as authentication goes.
    /// [`Authorizer::authorize`](crate::Authorizer::authorize) calls this after the role,
    /// scope, organization and ownership rules; call it directly only to preview.
    pub fn check(
        &self,
        principal: &Principal,
        action: Action,
        now: SystemTime,
    ) -> Result<(), StepUpRequired> {
        let Some(requirement) = self.requirement(action) else {
            return Ok(());
        };
        let auth = principal.authentication();
        let email_only = AuthMethods::of(&[AuthMethod::Email]);
        let email_allowed = self.accept_email || !action.is_admin();
        // An empty set would accept anyone; a set naming email, even one a host wrote into
        // an admin requirement, is ignored for admin actions unless the danger option is on.
        let strong = requirement
            .accepted
            .iter()
            .chain(self.accept_email.then_some(&email_only))
            .filter(|set| **set != AuthMethods::EMPTY)
            .filter(|set| email_allowed || !set.contains(AuthMethod::Email))
            .any(|set| set.iter().all(|m| auth.methods.contains(m)));
        // An unknown authentication time fails recency: unknown is not "just now".
        let recent = auth
            .at
            .and_then(|at| now.duration_since(at).ok())
            .is_some_and(|age| age <= requirement.max_age);
        if strong && recent {
            Ok(())
        } else {
            Err(StepUpRequired {
                acr_values: requirement.acr.clone(),
                max_age: requirement.max_age,
            })
        }
    }
}
