//! The one place an authorization decision is made.

use crate::{Action, CredentialKind, Ownership, Permission, Principal, Role, Scope, StepUpPolicy};
use mcpsec_core::{EventKind, Label, OrgId, Outcome, ReasonCode, SecurityEvent, UserId};
use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

/// The resource an action touches: the organization it belongs to and, for personal
/// resources, the user who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    org: OrgId,
    owner: Option<UserId>,
}

impl Resource {
    /// A resource of `org` owned by no particular user (org settings, MCP configurations).
    pub fn of_org(org: OrgId) -> Self {
        Self { org, owner: None }
    }

    /// A resource of `org` owned by `owner` (a profile, an API key, a usage log).
    pub fn owned_by(owner: UserId, org: OrgId) -> Self {
        Self {
            org,
            owner: Some(owner),
        }
    }

    /// The principal's own resource (their profile, their keys).
    pub fn own(principal: &Principal) -> Self {
        Self::owned_by(principal.subject().clone(), principal.org().clone())
    }

    /// The organization the resource belongs to.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The owning user, if personal.
    pub fn owner(&self) -> Option<&UserId> {
        self.owner.as_ref()
    }
}

/// Why a request was denied: the first rule, in the order they are checked, that failed.
///
/// Every variant a decision on an [`Action`] returns carries that action, so
/// [`Denial::security_event`] needs only the principal and the time: the caller never
/// repeats (or mistypes) what was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The principal's role does not allow the action.
    RoleForbids {
        /// The role.
        role: Role,
        /// The action.
        action: Action,
    },
    /// The credential's scopes (with the hierarchy) do not include the action's scope.
    ScopeMissing {
        /// The scope the action needs.
        required: Scope,
        /// The action.
        action: Action,
    },
    /// The resource belongs to another organization.
    OtherOrg {
        /// The action.
        action: Action,
    },
    /// The action is on one's own resources and this one belongs to another user.
    NotOwner {
        /// The action.
        action: Action,
    },
    /// The MCP tool is not mapped to any action; unmapped tools are denied. No action to
    /// carry: [`ToolPolicy::denied_event`](crate::ToolPolicy::denied_event) names the tool.
    UnmappedTool,
    /// The action needs a recent step-up authentication the principal does not have: the
    /// HTTP layer answers with an RFC 9470 `insufficient_user_authentication` challenge
    /// carrying these values.
    StepUpRequired {
        /// The `acr_values` the client must request.
        acr_values: String,
        /// The `max_age` the client must request.
        max_age: Duration,
        /// The action.
        action: Action,
    },
    /// The action needs an interactive step-up and the credential cannot do one (an API
    /// key: nobody is there to answer a challenge). Not a challenge: the client must use
    /// an interactive session instead.
    InteractiveOnly {
        /// The credential presented.
        credential: CredentialKind,
        /// The action.
        action: Action,
    },
    /// The action needs a step-up check and was decided by the free [`authorize`] or
    /// [`authorize_as`], which have no clock or step-up policy: decide it with an
    /// [`Authorizer`]. A host bug, never something the client can fix.
    StepUpNotChecked {
        /// The action.
        action: Action,
    },
}

impl Denial {
    /// A short name for the rule that failed: `role`, `scope`, `org`, `ownership`, `tool`,
    /// `step_up`.
    pub const fn rule(&self) -> &'static str {
        match self {
            Denial::RoleForbids { .. } => "role",
            Denial::ScopeMissing { .. } => "scope",
            Denial::OtherOrg { .. } => "org",
            Denial::NotOwner { .. } => "ownership",
            Denial::UnmappedTool => "tool",
            Denial::StepUpRequired { .. }
            | Denial::InteractiveOnly { .. }
            | Denial::StepUpNotChecked { .. } => "step_up",
        }
    }

    /// The action that was refused; `None` only for [`Denial::UnmappedTool`], where the
    /// tool maps to no action.
    pub const fn action(&self) -> Option<Action> {
        match self {
            Denial::RoleForbids { action, .. }
            | Denial::ScopeMissing { action, .. }
            | Denial::OtherOrg { action }
            | Denial::NotOwner { action }
            | Denial::StepUpRequired { action, .. }
            | Denial::InteractiveOnly { action, .. }
            | Denial::StepUpNotChecked { action } => Some(*action),
            Denial::UnmappedTool => None,
        }
    }

    /// The reason code for a [`SecurityEvent`].
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Denial::RoleForbids { .. } => ReasonCode::RoleForbids,
            Denial::ScopeMissing { .. } => ReasonCode::ScopeMissing,
            Denial::OtherOrg { .. } => ReasonCode::OtherOrg,
            Denial::NotOwner { .. } => ReasonCode::NotOwner,
            Denial::UnmappedTool => ReasonCode::UnmappedTool,
            Denial::StepUpRequired { .. }
            | Denial::InteractiveOnly { .. }
            | Denial::StepUpNotChecked { .. } => ReasonCode::StepUpRequired,
        }
    }

    /// An `authz_fail` event (`malicious_direct_reference` for another organization's
    /// resource) for this denial to `principal` at `time`. It names the refused
    /// [`action`](Denial::action), the principal's organization, and the credential that
    /// was used ([`Principal::actor`]): for an API key the actor is
    /// [`Actor::ApiKey`](mcpsec_core::Actor::ApiKey) with the key's id and owner.
    ///
    /// ```
    /// use mcpsec_access::{Action, AuthMethods, Authentication, Authorizer, Credential, Resource, Role, ScopeSet, danger};
    /// use mcpsec_core::{Actor, KeyId, OrgId, UserId};
    /// use std::time::UNIX_EPOCH;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = KeyId::new("k1")?;
    /// // Tests stand in for `ApiKeys::verify` here.
    /// let principal = danger::principal(
    ///     UserId::new("ada")?, OrgId::new("acme")?, Role::Viewer,
    ///     ScopeSet::parse_strict("mcp:read")?, Credential::api_key(key.clone()),
    ///     Authentication { at: None, methods: AuthMethods::EMPTY },
    /// );
    /// let denial = Authorizer::default()
    ///     .authorize(&principal, Action::McpConfigure, &Resource::own(&principal), UNIX_EPOCH)
    ///     .unwrap_err();
    /// let event = denial.security_event(&principal, UNIX_EPOCH);
    /// assert_eq!(event.action.as_ref().map(|a| a.as_str()), Some("mcp.configure"));
    /// assert!(matches!(event.actor, Actor::ApiKey { key: k, .. } if k == key));
    /// # Ok(()) }
    /// ```
    pub fn security_event(&self, principal: &Principal, time: SystemTime) -> SecurityEvent {
        let kind = match self {
            // Reaching into another tenant is what IDOR probing looks like.
            Denial::OtherOrg { .. } => EventKind::MaliciousDirectReference,
            _ => EventKind::AuthzFail,
        };
        principal_event(kind, Outcome::Failure, principal, self.action(), time)
            .with_reason(self.reason_code())
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::RoleForbids { role, action } => {
                write!(f, "role: {role} may not {action}")
            }
            Denial::ScopeMissing { required, .. } => {
                write!(f, "scope: the credential does not grant {required}")
            }
            Denial::OtherOrg { .. } => {
                f.write_str("org: the resource belongs to another organization")
            }
            Denial::NotOwner { .. } => {
                f.write_str("ownership: the resource belongs to another user")
            }
            Denial::UnmappedTool => f.write_str("tool: the tool is not mapped to an action"),
            Denial::StepUpRequired { .. } => {
                f.write_str("step_up: recent multi-factor authentication is required")
            }
            Denial::InteractiveOnly { .. } => f.write_str(
                "step_up: this action needs an interactive session with recent multi-factor \
                 authentication; an API key can never perform it",
            ),
            Denial::StepUpNotChecked { action } => write!(
                f,
                "step_up: {action} needs a step-up check; decide it with an Authorizer"
            ),
        }
    }
}

impl std::error::Error for Denial {}

/// Proof that [`authorize`] allowed a principal an action on a resource.
///
/// Only this crate can make one, so a handler that takes an `Authorized<P>` cannot be
/// reached without the check. `P` is [`Action`] for decisions made at run time, or a
/// marker from [`perm`](crate::perm) for decisions fixed at compile time.
#[derive(Debug, Clone)]
pub struct Authorized<P = Action> {
    action: Action,
    /// Who was allowed, as verified: operations that take the proof read the scopes and
    /// credential from here (a key may not be minted wider than its creator's scopes).
    principal: Principal,
    /// When the step-up this action needed happened; `None` when it needed none.
    stepped_up_at: Option<SystemTime>,
    _permission: PhantomData<fn() -> P>,
}

impl<P> Authorized<P> {
    /// The action allowed.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Who was allowed.
    pub fn subject(&self) -> &UserId {
        self.principal.subject()
    }

    /// In which organization.
    pub fn org(&self) -> &OrgId {
        self.principal.org()
    }

    /// The principal that was allowed, as the verifier built it.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// When the authentication that satisfied this action's step-up requirement happened,
    /// or `None` when the action needed no step-up. A proof for an action that needs one
    /// is made only by [`Authorizer`] after [`StepUpPolicy::check`] passed, so this is
    /// always `Some` for those.
    pub fn stepped_up_at(&self) -> Option<SystemTime> {
        self.stepped_up_at
    }

    /// An `authz_admin` event for administrative actions ([`Action::is_admin`]), which
    /// the platform records every time; `None` for ordinary ones.
    pub fn admin_event(&self, time: SystemTime) -> Option<SecurityEvent> {
        self.action
            .is_admin()
            .then(|| {
                SecurityEvent::new(EventKind::AuthzAdmin, Outcome::Success, time)
                    .with_actor(self.principal.actor())
                    .with_org(self.org().clone())
            })
            .map(|mut event| {
                event.action = action_label(self.action);
                event
            })
    }
}

/// Checks the role and the credential's scopes for `action`, without a resource: what
/// `tools/list` filtering needs. [`authorize`] does this and then checks the resource.
pub fn permits(principal: &Principal, action: Action) -> Result<(), Denial> {
    let spec = action.spec();
    if !spec.roles.contains(&principal.role()) {
        return Err(Denial::RoleForbids {
            role: principal.role(),
            action,
        });
    }
    if !principal.scopes().allows(spec.scope) {
        return Err(Denial::ScopeMissing {
            required: spec.scope,
            action,
        });
    }
    Ok(())
}

/// Decides whether `principal` may perform `action` on `resource`, for actions that need
/// no step-up.
///
/// Allowed only if all hold, checked in this order (the first failure is returned):
/// 1. the principal's role allows the action;
/// 2. the credential's scopes, through the hierarchy, include the action's scope;
/// 3. the resource is in the principal's organization;
/// 4. for actions on one's own resources, the resource's owner is the principal;
/// 5. the action is not one the default [`StepUpPolicy`] asks step-up for (the
///    administrative ones, [`Action::is_admin`]): those are refused with
///    [`Denial::StepUpNotChecked`] ([`Denial::InteractiveOnly`] for an API key), since
///    this function has no clock to check recency with. Decide them with an
///    [`Authorizer`].
///
/// So no `Authorized` for an administrative action is ever made without the step-up
/// check. A host whose policy adds step-up to other actions uses [`Authorizer`] for every
/// decision. Everything else is denied. Pure and allocation-free apart from the
/// reference-count increments of cloning the principal into the proof.
pub fn authorize(
    principal: &Principal,
    action: Action,
    resource: &Resource,
) -> Result<Authorized<Action>, Denial> {
    decide_without_step_up(principal, action, resource)
}

/// [`authorize`] for an action fixed at compile time, returning a proof typed by it.
pub fn authorize_as<P: Permission>(
    principal: &Principal,
    resource: &Resource,
) -> Result<Authorized<P>, Denial> {
    decide_without_step_up(principal, P::ACTION, resource)
}

/// The access decision with step-up: the rules of [`authorize`], then the
/// [`StepUpPolicy`] at `now`.
///
/// ```
/// use mcpsec_access::{
///     Action, Authentication, AuthMethod, AuthMethods, Authorizer, CredentialKind, Denial,
///     Resource, Role, ScopeSet, StepUpPolicy, danger,
/// };
/// use mcpsec_core::{OrgId, UserId};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
/// let org = OrgId::new("acme")?;
/// let admin = |methods, at| {
///     // Tests stand in for a verifier here.
///     danger::principal(
///         UserId::new("ada").unwrap(), org.clone(), Role::OrgAdmin,
///         ScopeSet::parse_strict("org:admin").unwrap(), CredentialKind::AccessToken,
///         Authentication { at: Some(at), methods },
///     )
/// };
/// let authorizer = Authorizer::new(StepUpPolicy::new());
/// let members = Resource::of_org(org.clone());
///
/// // Password only: the client is asked to step up.
/// let pwd = admin(AuthMethods::of(&[AuthMethod::Pwd]), now);
/// let denied = authorizer.authorize(&pwd, Action::OrgManageMembers, &members, now);
/// assert!(matches!(denied, Err(Denial::StepUpRequired { .. })));
///
/// // A TOTP code a minute ago: allowed, and the proof says when the step-up happened.
/// let otp = admin(AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]), now - Duration::from_secs(60));
/// let proof = authorizer.authorize(&otp, Action::OrgManageMembers, &members, now)?;
/// assert!(proof.stepped_up_at().is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    step_up: StepUpPolicy,
}

impl Authorizer {
    /// An authorizer applying `step_up`. [`Authorizer::default`] uses
    /// [`StepUpPolicy::default`] (administrative actions: `otp` or `hwk` + `user` within 15
    /// minutes).
    pub fn new(step_up: StepUpPolicy) -> Self {
        Self { step_up }
    }

    /// The step-up policy applied.
    pub fn step_up(&self) -> &StepUpPolicy {
        &self.step_up
    }

    /// Decides whether `principal` may perform `action` on `resource` at `now`: the rules
    /// of [`authorize`] (role, scopes, organization, ownership, first failure returned),
    /// then, if the policy has a requirement for the action:
    /// - an API key is refused with [`Denial::InteractiveOnly`]: it never satisfies a step-up;
    /// - otherwise the authentication must use an accepted method set and be recent
    ///   (an unknown time fails), or [`Denial::StepUpRequired`] names what to ask for.
    ///
    /// Step-up comes last so that a caller who would be refused anyway is not asked to
    /// authenticate again first.
    pub fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        now: SystemTime,
    ) -> Result<Authorized<Action>, Denial> {
        self.decide(principal, action, resource, now)
    }

    /// [`Authorizer::authorize`] for an action fixed at compile time.
    pub fn authorize_as<P: Permission>(
        &self,
        principal: &Principal,
        resource: &Resource,
        now: SystemTime,
    ) -> Result<Authorized<P>, Denial> {
        self.decide(principal, P::ACTION, resource, now)
    }

    /// The role, scope and step-up checks without a resource, for `tools/list`: what
    /// [`permits`] checks, then step-up as [`Authorizer::authorize`] would.
    pub fn permits(
        &self,
        principal: &Principal,
        action: Action,
        now: SystemTime,
    ) -> Result<(), Denial> {
        permits(principal, action)?;
        self.check_step_up(principal, action, now).map(|_| ())
    }

    fn decide<P>(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        now: SystemTime,
    ) -> Result<Authorized<P>, Denial> {
        check_rules(principal, action, resource)?;
        let stepped_up_at = self.check_step_up(principal, action, now)?;
        Ok(proof(principal, action, stepped_up_at))
    }

    /// `Some(time)` of the authentication that satisfied the requirement, `None` when the
    /// action has none.
    fn check_step_up(
        &self,
        principal: &Principal,
        action: Action,
        now: SystemTime,
    ) -> Result<Option<SystemTime>, Denial> {
        if self.step_up.requirement(action).is_none() {
            return Ok(None);
        }
        if principal.credential() == CredentialKind::ApiKey {
            return Err(Denial::InteractiveOnly {
                credential: CredentialKind::ApiKey,
                action,
            });
        }
        self.step_up
            .check(principal, action, now)
            .map_err(|challenge| Denial::StepUpRequired {
                acr_values: challenge.acr_values,
                max_age: challenge.max_age,
                action,
            })?;
        // `check` passes only with a known, recent authentication time.
        Ok(principal.authentication().at)
    }
}

fn decide_without_step_up<P>(
    principal: &Principal,
    action: Action,
    resource: &Resource,
) -> Result<Authorized<P>, Denial> {
    check_rules(principal, action, resource)?;
    // The default policy's rule, without a clock: what it would ask step-up for is not
    // decided here at all.
    if action.is_admin() {
        return Err(match principal.credential() {
            CredentialKind::ApiKey => Denial::InteractiveOnly {
                credential: CredentialKind::ApiKey,
                action,
            },
            _ => Denial::StepUpNotChecked { action },
        });
    }
    Ok(proof(principal, action, None))
}

fn check_rules(principal: &Principal, action: Action, resource: &Resource) -> Result<(), Denial> {
    permits(principal, action)?;
    if resource.org() != principal.org() {
        return Err(Denial::OtherOrg { action });
    }
    if action.spec().ownership == Ownership::Own && resource.owner() != Some(principal.subject()) {
        return Err(Denial::NotOwner { action });
    }
    Ok(())
}

fn proof<P>(
    principal: &Principal,
    action: Action,
    stepped_up_at: Option<SystemTime>,
) -> Authorized<P> {
    Authorized {
        action,
        principal: principal.clone(),
        stepped_up_at,
        _permission: PhantomData,
    }
}

fn principal_event(
    kind: EventKind,
    outcome: Outcome,
    principal: &Principal,
    action: Option<Action>,
    time: SystemTime,
) -> SecurityEvent {
    let mut event = SecurityEvent::new(kind, outcome, time)
        .with_actor(principal.actor())
        .with_org(principal.org().clone());
    event.action = action.and_then(action_label);
    event
}

/// Action names are fixed ASCII (`mcp.use`) and always valid labels (a unit test checks
/// each); `None` is never expected, and costs only the label if it ever happened.
fn action_label(action: Action) -> Option<Label> {
    Label::new(action.as_str()).ok()
}
