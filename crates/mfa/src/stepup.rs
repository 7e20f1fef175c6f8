//! Step-up: administrative actions require recent multi-factor authentication.
//!
//! Default: every action that needs an `*:admin` scope or the org admin role
//! ([`Action::is_admin`]) requires MFA within the last 15 minutes: the `amr` holds `mfa`
//! (a passkey, feature `passkeys`, reports `swk` + `mfa`: phishing-resistant and
//! user-verified) or `otp` (a TOTP code, a second factor on top of the session's first).
//! `swk` or `hwk` alone does not count: RFC 8176 defines them as proof of possession of a
//! key, one factor, which says nothing about user verification.
//!
//! Email codes are a weaker factor (NIST SP 800-63B) and do not count unless the host
//! turns on [`StepUpPolicy::danger_accept_email_codes_for_admin_actions`].

use mcpsec_access::{Action, AuthMethod, Principal};
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
            admin: Requirement {
                acr: DEFAULT_ACR.to_owned(),
                max_age: Duration::from_secs(15 * 60),
            },
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

    /// Lets email codes satisfy step-up for administrative actions. Email is a weaker
    /// factor than TOTP or a passkey (NIST SP 800-63B): turn this on only knowingly.
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

    /// Whether `principal` may perform `action` now as far as authentication goes (call
    /// after [`mcpsec_access::authorize`]).
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
        // `swk`/`hwk` alone prove possession of a key only (RFC 8176): not multi-factor.
        let strong = [AuthMethod::Otp, AuthMethod::Mfa]
            .into_iter()
            .any(|m| auth.methods.contains(m))
            || (self.accept_email && auth.methods.contains(AuthMethod::Email));
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
