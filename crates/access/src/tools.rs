//! MCP tools mapped to requirements, default deny: a server filters `tools/list` with
//! [`ToolPolicy::visible`] and checks `tools/call` with [`ToolPolicy::authorize_call`].

use crate::{Action, Authorized, Authorizer, Denial, Error, Principal, Resource};
use mcpsec_core::{Label, SecurityEvent};
use std::collections::HashMap;
use std::time::SystemTime;

/// The longest MCP tool name accepted.
pub const MAX_TOOL_NAME_LEN: usize = 128;

/// What calling a tool requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolRequirement {
    /// Any verified caller (a principal exists), whatever its role and scopes: for tools
    /// that only describe the caller, such as `whoami`.
    Authenticated,
    /// The full decision for this action (role, scopes, organization, ownership, step-up).
    Action(Action),
}

impl From<Action> for ToolRequirement {
    fn from(action: Action) -> Self {
        ToolRequirement::Action(action)
    }
}

/// The outcome of an allowed `tools/call`.
#[derive(Debug, Clone)]
pub enum ToolAccess {
    /// The tool needs only a verified caller.
    Authenticated,
    /// The tool's action was authorized; the proof goes to the handler.
    Authorized(Authorized<Action>),
}

/// Which requirement each MCP tool has. A tool with no entry is denied to everyone.
///
/// Decisions go through the policy's [`Authorizer`], so a tool mapped to an administrative
/// action needs step-up like any other route to it.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    tools: HashMap<String, ToolRequirement>,
    authorizer: Authorizer,
}

impl ToolPolicy {
    /// A policy that denies every tool, deciding with [`Authorizer::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy deciding with `authorizer` (its step-up policy) instead of the default.
    #[must_use]
    pub fn with_authorizer(mut self, authorizer: Authorizer) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// Maps `tool` to `requirement`, an [`Action`] or [`ToolRequirement::Authenticated`]
    /// (replacing an earlier mapping). Tool names follow the MCP rules: 1 to 128
    /// characters of `A-Za-z0-9_-.`.
    pub fn map(
        mut self,
        tool: &str,
        requirement: impl Into<ToolRequirement>,
    ) -> Result<Self, Error> {
        check_tool_name(tool)?;
        self.tools.insert(tool.to_owned(), requirement.into());
        Ok(self)
    }

    /// The requirement of `tool`, if it is mapped.
    pub fn requirement_for(&self, tool: &str) -> Option<ToolRequirement> {
        self.tools.get(tool).copied()
    }

    /// The action `tool` needs, if it is mapped to one.
    pub fn action_for(&self, tool: &str) -> Option<Action> {
        match self.requirement_for(tool)? {
            ToolRequirement::Action(action) => Some(action),
            ToolRequirement::Authenticated => None,
        }
    }

    /// The tools of `tools` that `principal` may call at `now`: mapped, and allowed by
    /// role and scopes. Order is kept. For `tools/list`.
    ///
    /// A tool whose only missing condition is a step-up stays listed: calling it is how
    /// the client learns to step up ([`Denial::StepUpRequired`]), and the call itself is
    /// still refused until it has. A tool that needs step-up is hidden from an API key,
    /// which can never perform one ([`Denial::InteractiveOnly`]).
    pub fn visible<'a>(
        &self,
        principal: &Principal,
        tools: impl IntoIterator<Item = &'a str>,
        now: SystemTime,
    ) -> Vec<&'a str> {
        tools
            .into_iter()
            .filter(|tool| match self.requirement_for(tool) {
                None => false,
                Some(ToolRequirement::Authenticated) => true,
                Some(ToolRequirement::Action(action)) => matches!(
                    self.authorizer.permits(principal, action, now),
                    Ok(()) | Err(Denial::StepUpRequired { .. })
                ),
            })
            .collect()
    }

    /// Decides a `tools/call` of `tool` on `resource` at `now`: [`Denial::UnmappedTool`]
    /// for a tool with no mapping, [`ToolAccess::Authenticated`] for a tool that needs
    /// only a verified caller, otherwise the policy's [`Authorizer`] on its action.
    pub fn authorize_call(
        &self,
        principal: &Principal,
        tool: &str,
        resource: &Resource,
        now: SystemTime,
    ) -> Result<ToolAccess, Denial> {
        match self.requirement_for(tool).ok_or(Denial::UnmappedTool)? {
            ToolRequirement::Authenticated => Ok(ToolAccess::Authenticated),
            ToolRequirement::Action(action) => self
                .authorizer
                .authorize(principal, action, resource, now)
                .map(ToolAccess::Authorized),
        }
    }

    /// An `mcp_tool_denied` event for a refused `tools/call` of `tool`: the denial's reason
    /// code, and the tool's name as the action (left out if longer than a label allows).
    pub fn denied_event(
        &self,
        principal: &Principal,
        tool: &str,
        denial: Denial,
        time: SystemTime,
    ) -> SecurityEvent {
        let mut event = denial.security_event(principal, time);
        if event.kind == mcpsec_core::EventKind::AuthzFail {
            event.kind = mcpsec_core::EventKind::McpToolDenied;
        }
        event.action = Label::new(tool).ok();
        event
    }
}

fn check_tool_name(tool: &str) -> Result<(), Error> {
    let ok = (1..=MAX_TOOL_NAME_LEN).contains(&tool.len())
        && tool
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidToolName)
    }
}
