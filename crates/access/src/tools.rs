//! MCP tools mapped to actions, default deny: a server filters `tools/list` with
//! [`ToolPolicy::visible`] and checks `tools/call` with [`ToolPolicy::authorize_call`].

use crate::{Action, Authorized, Denial, Error, Principal, Resource, authorize, permits};
use mcpsec_core::{Label, SecurityEvent};
use std::collections::HashMap;
use std::time::SystemTime;

/// The longest MCP tool name accepted.
pub const MAX_TOOL_NAME_LEN: usize = 128;

/// Which action each MCP tool needs. A tool with no entry is denied to everyone.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    tools: HashMap<String, Action>,
}

impl ToolPolicy {
    /// A policy that denies every tool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `tool` to `action` (replacing an earlier mapping). Tool names follow the MCP
    /// rules: 1 to 128 characters of `A-Za-z0-9_-.`.
    pub fn map(mut self, tool: &str, action: Action) -> Result<Self, Error> {
        check_tool_name(tool)?;
        self.tools.insert(tool.to_owned(), action);
        Ok(self)
    }

    /// The action `tool` needs, if it is mapped.
    pub fn action_for(&self, tool: &str) -> Option<Action> {
        self.tools.get(tool).copied()
    }

    /// The tools of `tools` that `principal` may call: mapped, and allowed by role and
    /// scopes. Order is kept. For `tools/list`.
    pub fn visible<'a>(
        &self,
        principal: &Principal,
        tools: impl IntoIterator<Item = &'a str>,
    ) -> Vec<&'a str> {
        tools
            .into_iter()
            .filter(|tool| {
                self.action_for(tool)
                    .is_some_and(|action| permits(principal, action).is_ok())
            })
            .collect()
    }

    /// Decides a `tools/call` of `tool` on `resource`: [`Denial::UnmappedTool`] for a tool
    /// with no mapping, otherwise [`authorize`] of its action.
    pub fn authorize_call(
        &self,
        principal: &Principal,
        tool: &str,
        resource: &Resource,
    ) -> Result<Authorized<Action>, Denial> {
        let action = self.action_for(tool).ok_or(Denial::UnmappedTool)?;
        authorize(principal, action, resource)
    }
}

impl ToolPolicy {
    /// An `mcp_tool_denied` event for a refused `tools/call` of `tool`: the denial's reason
    /// code, and the tool's name as the action (left out if longer than a label allows).
    pub fn denied_event(
        &self,
        principal: &Principal,
        tool: &str,
        denial: Denial,
        time: SystemTime,
    ) -> SecurityEvent {
        let action = self.action_for(tool).unwrap_or(Action::McpUse);
        let mut event = denial.security_event(principal, action, time);
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
