//! Shows how an MCP server uses mcpsec-access: map its tools to actions (unmapped tools
//! are denied), filter `tools/list` for the caller, decide each `tools/call`, and report
//! denials and administrative actions as security events.
//!
//! Run: `cargo run -p example-authorize`

use mcpsec_access::{
    Action, AuthMethod, AuthMethods, Authentication, CredentialKind, Principal, Resource, Role,
    ScopeSet, ToolPolicy,
};
use mcpsec_core::{Clock, EventSink, ManualClock, MemorySink, OrgId, SecurityEvent, UserId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::at_unix(1_767_225_600);
    let sink = MemorySink::new();

    // 1. The server's tools, each mapped to the action it performs.
    let policy = ToolPolicy::new()
        .map("search_docs", Action::McpUse)?
        .map("create_server_config", Action::McpConfigure)?
        .map("set_org_mcp_limits", Action::McpManageSettings)?;
    let tools = [
        "search_docs",
        "create_server_config",
        "set_org_mcp_limits",
        "shell_exec",
    ];

    // 2. Callers, as a token or API key verifier would build them.
    let org = OrgId::new("acme")?;
    let authentication = Authentication {
        at: Some(clock.now()),
        methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
    };
    let viewer = Principal::new(
        UserId::new("vera")?,
        org.clone(),
        Role::Viewer,
        ScopeSet::parse_tolerant("mcp:read openid")?,
        CredentialKind::AccessToken,
        authentication,
    );
    let admin = Principal::new(
        UserId::new("ada")?,
        org.clone(),
        Role::OrgAdmin,
        ScopeSet::parse_strict("mcp:admin org:read")?,
        CredentialKind::AccessToken,
        authentication,
    );

    // 3. tools/list shows each caller only what it may call.
    println!("viewer sees: {:?}", policy.visible(&viewer, tools));
    println!("admin sees:  {:?}", policy.visible(&admin, tools));

    // 4. tools/call: decide, and report.
    let config = Resource::of_org(org);
    for (who, principal) in [("viewer", &viewer), ("admin", &admin)] {
        for tool in tools {
            match policy.authorize_call(principal, tool, &config) {
                Ok(proof) => {
                    println!("{who} calls {tool}: allowed ({})", proof.action());
                    if let Some(event) = proof.admin_event(clock.now()) {
                        sink.record(event).await?;
                    }
                }
                Err(denial) => {
                    println!("{who} calls {tool}: denied, {denial}");
                    sink.record(policy.denied_event(principal, tool, denial, clock.now()))
                        .await?;
                }
            }
        }
    }

    // 5. What the audit log received: kinds and reasons, never a credential.
    for SecurityEvent {
        kind,
        reason,
        action,
        ..
    } in sink.events()
    {
        let reason = reason.map_or("", |r| r.as_str());
        println!(
            "event: {kind} {reason} (action {})",
            action.map_or("-".into(), |a| a.to_string())
        );
    }
    Ok(())
}
