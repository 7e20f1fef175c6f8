//! The one place an authorization decision is made.

use crate::{Action, Ownership, Permission, Principal, Role, Scope};
use mcpsec_core::{Actor, EventKind, Label, OrgId, Outcome, ReasonCode, SecurityEvent, UserId};
use std::marker::PhantomData;
use std::time::SystemTime;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    },
    /// The resource belongs to another organization.
    OtherOrg,
    /// The action is on one's own resources and this one belongs to another user.
    NotOwner,
    /// The MCP tool is not mapped to any action; unmapped tools are denied.
    UnmappedTool,
}

impl Denial {
    /// A short name for the rule that failed: `role`, `scope`, `org`, `ownership`, `tool`.
    pub const fn rule(self) -> &'static str {
        match self {
            Denial::RoleForbids { .. } => "role",
            Denial::ScopeMissing { .. } => "scope",
            Denial::OtherOrg => "org",
            Denial::NotOwner => "ownership",
            Denial::UnmappedTool => "tool",
        }
    }

    /// The reason code for a [`SecurityEvent`].
    pub const fn reason_code(self) -> ReasonCode {
        match self {
            Denial::RoleForbids { .. } => ReasonCode::RoleForbids,
            Denial::ScopeMissing { .. } => ReasonCode::ScopeMissing,
            Denial::OtherOrg => ReasonCode::OtherOrg,
            Denial::NotOwner => ReasonCode::NotOwner,
            Denial::UnmappedTool => ReasonCode::UnmappedTool,
        }
    }

    /// An `authz_fail` event for this denial of `action` to `principal` at `time`.
    pub fn security_event(
        self,
        principal: &Principal,
        action: Action,
        time: SystemTime,
    ) -> SecurityEvent {
        let kind = match self {
            // Reaching into another tenant is what IDOR probing looks like.
            Denial::OtherOrg => EventKind::MaliciousDirectReference,
            _ => EventKind::AuthzFail,
        };
        principal_event(kind, Outcome::Failure, principal, action, time)
            .with_reason(self.reason_code())
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denial::RoleForbids { role, action } => {
                write!(f, "role: {role} may not {action}")
            }
            Denial::ScopeMissing { required } => {
                write!(f, "scope: the credential does not grant {required}")
            }
            Denial::OtherOrg => f.write_str("org: the resource belongs to another organization"),
            Denial::NotOwner => f.write_str("ownership: the resource belongs to another user"),
            Denial::UnmappedTool => f.write_str("tool: the tool is not mapped to an action"),
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

    /// An `authz_admin` event for administrative actions ([`Action::is_admin`]), which
    /// the platform records every time; `None` for ordinary ones.
    pub fn admin_event(&self, time: SystemTime) -> Option<SecurityEvent> {
        self.action
            .is_admin()
            .then(|| {
                SecurityEvent::new(EventKind::AuthzAdmin, Outcome::Success, time)
                    .with_user(self.subject().clone())
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
        });
    }
    Ok(())
}

/// Decides whether `principal` may perform `action` on `resource`.
///
/// Allowed only if all hold, checked in this order (the first failure is returned):
/// 1. the principal's role allows the action;
/// 2. the credential's scopes, through the hierarchy, include the action's scope;
/// 3. the resource is in the principal's organization;
/// 4. for actions on one's own resources, the resource's owner is the principal.
///
/// Everything else is denied. Pure and allocation-free apart from the reference-count
/// increments of cloning the principal into the proof.
pub fn authorize(
    principal: &Principal,
    action: Action,
    resource: &Resource,
) -> Result<Authorized<Action>, Denial> {
    decide(principal, action, resource)
}

/// [`authorize`] for an action fixed at compile time, returning a proof typed by it.
pub fn authorize_as<P: Permission>(
    principal: &Principal,
    resource: &Resource,
) -> Result<Authorized<P>, Denial> {
    decide(principal, P::ACTION, resource)
}

fn decide<P>(
    principal: &Principal,
    action: Action,
    resource: &Resource,
) -> Result<Authorized<P>, Denial> {
    permits(principal, action)?;
    if resource.org() != principal.org() {
        return Err(Denial::OtherOrg);
    }
    if action.spec().ownership == Ownership::Own && resource.owner() != Some(principal.subject()) {
        return Err(Denial::NotOwner);
    }
    Ok(Authorized {
        action,
        principal: principal.clone(),
        _permission: PhantomData,
    })
}

fn principal_event(
    kind: EventKind,
    outcome: Outcome,
    principal: &Principal,
    action: Action,
    time: SystemTime,
) -> SecurityEvent {
    let mut event = SecurityEvent::new(kind, outcome, time)
        .with_actor(Actor::User {
            user: principal.subject().clone(),
        })
        .with_org(principal.org().clone());
    event.action = action_label(action);
    event
}

/// Action names are fixed ASCII (`mcp.use`) and always valid labels (a unit test checks
/// each); `None` is never expected, and costs only the label if it ever happened.
fn action_label(action: Action) -> Option<Label> {
    Label::new(action.as_str()).ok()
}
