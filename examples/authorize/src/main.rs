//! Shows how an MCP server uses mcpsec-access: map its tools to actions or to "any
//! verified caller" (unmapped tools are denied), filter `tools/list` for the caller,
//! decide each `tools/call` (administrative tools need a recent step-up), and report
//! denials and administrative actions as security events.
//!
//! Run: `cargo run -p example-authorize`

use mcpsec_access::{
    Action, AuthMethod, AuthMethods, Authentication, CredentialKind, Denial, Resource, Role,
    ScopeSet, ToolAccess, ToolPolicy, ToolRequirement,
};
use mcpsec_core::{Clock, EventSink, ManualClock, MemorySink, OrgId, SecurityEvent, UserId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::at_unix(1_767_225_600);
    let sink = MemorySink::new();

    // 1. The server's tools, each mapped to the action it performs.
    // `whoami` only describes the caller: any verified principal may call it.
    let policy = ToolPolicy::new()
        .map("whoami", ToolRequirement::Authenticated)?
        .map("search_docs", Action::McpUse)?
        .map("create_server_config", Action::McpConfigure)?
        .map("set_org_mcp_limits", Action::McpManageSettings)?;
    let tools = [
        "whoami",
        "search_docs",
        "create_server_config",
        "set_org_mcp_limits",
        "shell_exec",
    ];

    // 2. Callers, as a token or API key verifier would build them (here the example stands
    //    in for the verifier, which is what `danger` is named for). Both stepped up with
    //    TOTP just now.
    let org = OrgId::new("acme")?;
    let authentication = Authentication {
        at: Some(clock.now()),
        methods: AuthMethods::of(&[AuthMethod::Pwd, AuthMethod::Otp]),
    };
    let viewer = mcpsec_access::danger::principal(
        UserId::new("vera")?,
        org.clone(),
        Role::Viewer,
        ScopeSet::parse_tolerant("mcp:read openid")?,
        CredentialKind::AccessToken,
        authentication,
    );
    let admin = mcpsec_access::danger::principal(
        UserId::new("ada")?,
        org.clone(),
        Role::OrgAdmin,
        ScopeSet::parse_strict("mcp:admin org:read")?,
        CredentialKind::AccessToken,
        authentication,
    );

    // 3. tools/list shows each caller only what it may call.
    println!(
        "viewer sees: {:?}",
        policy.visible(&viewer, tools, clock.now())
    );
    println!(
        "admin sees:  {:?}",
        policy.visible(&admin, tools, clock.now())
    );

    // 4. tools/call: decide, and report.
    let config = Resource::of_org(org);
    for (who, principal) in [("viewer", &viewer), ("admin", &admin)] {
        for tool in tools {
            match policy.authorize_call(principal, tool, &config, clock.now()) {
                Ok(ToolAccess::Authenticated) => {
                    println!("{who} calls {tool}: allowed (any verified caller)");
                }
                Ok(ToolAccess::Authorized(proof)) => {
                    println!("{who} calls {tool}: allowed ({})", proof.action());
                    if let Some(event) = proof.admin_event(clock.now()) {
                        sink.record(event).await?;
                    }
                }
                Err(Denial::StepUpRequired {
                    acr_values,
                    max_age,
                    ..
                }) => {
                    // The HTTP layer answers 401 insufficient_user_authentication (RFC 9470).
                    println!(
                        "{who} calls {tool}: step up (acr_values={acr_values}, max_age={})",
                        max_age.as_secs()
                    );
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
