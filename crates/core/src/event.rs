//! Security events: what happened, to whom, and why, with no room for a secret.
//!
//! Every field is a closed enum, a validated identifier, an address or a time. There is no
//! free-form text a caller could fill with a token, a password or a request body.

use crate::{Error, KeyId, Label, OrgId, RequestId, ResourceId, ServiceId, UserId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::SystemTime;

/// Declares an enum whose variants have a fixed wire name, with `as_str`, `FromStr`,
/// `Display`, serde by name and a list of all variants.
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(Error::InvalidIdentifier {
                        kind: stringify!($name),
                        reason: "not a known name",
                    }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

named_enum!(
    /// What happened, named by the OWASP Logging Vocabulary where it has a name, and with
    /// `mcp_*` / `authn_mfa_*` names of our own where it does not.
    EventKind {
        /// A login (or credential check: token, API key) succeeded.
        AuthnLoginSuccess = "authn_login_success",
        /// A login (or credential check: token, API key) failed.
        AuthnLoginFail = "authn_login_fail",
        /// A login failure crossed the limit of attempts.
        AuthnLoginFailMax = "authn_login_fail_max",
        /// An account or source was locked or throttled.
        AuthnLoginLock = "authn_login_lock",
        /// A token or API key was created.
        AuthnTokenCreated = "authn_token_created",
        /// A token or API key was revoked.
        AuthnTokenRevoked = "authn_token_revoked",
        /// A token was used again after it was consumed or revoked (refresh-token reuse).
        AuthnTokenReuse = "authn_token_reuse",
        /// A token or API key was deleted.
        AuthnTokenDelete = "authn_token_delete",
        /// A second factor was verified.
        AuthnMfaSuccess = "authn_mfa_success",
        /// A second factor was wrong, replayed or expired.
        AuthnMfaFail = "authn_mfa_fail",
        /// A second factor was enrolled, regenerated or removed.
        AuthnMfaChanged = "authn_mfa_changed",
        /// A recovery code was used.
        AuthnMfaRecoveryUsed = "authn_mfa_recovery_used",
        /// An authorization check denied an action.
        AuthzFail = "authz_fail",
        /// A user's permissions were changed.
        AuthzChange = "authz_change",
        /// An administrative action was performed.
        AuthzAdmin = "authz_admin",
        /// Too many requests from one source.
        ExcessRateLimitExceeded = "excess_rate_limit_exceeded",
        /// Input failed validation (an oversized or malformed credential, header, scope).
        InputValidationFail = "input_validation_fail",
        /// A request touched an object of another user or tenant.
        MaliciousDirectReference = "malicious_direct_reference",
        /// Permissions on an object changed.
        PrivilegePermissionsChanged = "privilege_permissions_changed",
        /// Sensitive data was read.
        SensitiveRead = "sensitive_read",
        /// Sensitive data was changed.
        SensitiveUpdate = "sensitive_update",
        /// Sensitive data was deleted (including crypto-shredding).
        SensitiveDelete = "sensitive_delete",
        /// A session was created.
        SessionCreated = "session_created",
        /// A session was renewed (refresh).
        SessionRenewed = "session_renewed",
        /// A session expired.
        SessionExpired = "session_expired",
        /// A session was revoked (logout, admin revocation, refresh-token reuse): the
        /// access tokens minted from it are refused from now on.
        SessionRevoked = "session_revoked",
        /// A signing, encryption or hashing key was rotated.
        SysCryptoKeyRotated = "sys_crypto_key_rotated",
        /// Decryption or authentication of stored data failed (tampering or wrong key).
        SysCryptoFail = "sys_crypto_fail",
        /// Security monitoring was switched off.
        SysMonitorDisabled = "sys_monitor_disabled",
        /// The service started.
        SysStartup = "sys_startup",
        /// The service shut down.
        SysShutdown = "sys_shutdown",
        /// A user was created.
        UserCreated = "user_created",
        /// A user was deleted.
        UserDeleted = "user_deleted",
        /// An MCP tool was called.
        McpToolCall = "mcp_tool_call",
        /// An MCP tool call was denied.
        McpToolDenied = "mcp_tool_denied",
        /// An MCP server configuration was changed.
        McpConfigChanged = "mcp_config_changed",
    }
);

impl EventKind {
    /// The severity an event of this kind has unless the emitter says otherwise.
    pub const fn default_severity(self) -> Severity {
        use EventKind::*;
        match self {
            AuthnTokenReuse
            | AuthnLoginLock
            | AuthnLoginFailMax
            | AuthzAdmin
            | AuthzChange
            | AuthnMfaChanged
            | AuthnMfaRecoveryUsed
            | MaliciousDirectReference
            | PrivilegePermissionsChanged
            | SysCryptoKeyRotated
            | SysCryptoFail
            | SysMonitorDisabled
            | UserDeleted
            | SensitiveDelete => Severity::Critical,
            AuthnLoginFail
            | AuthnMfaFail
            | AuthzFail
            | ExcessRateLimitExceeded
            | InputValidationFail
            | McpToolDenied => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

named_enum!(
    /// Whether the thing the event describes succeeded.
    Outcome {
        /// It succeeded (or was allowed).
        Success = "success",
        /// It failed (or was denied).
        Failure = "failure",
    }
);

named_enum!(
    /// How urgently an event matters. Sinks must make [`Severity::Critical`] events durable
    /// before [`EventSink::record`](crate::EventSink::record) returns.
    Severity {
        /// Routine.
        Info = "info",
        /// Worth a look; may feed anomaly rules.
        Warning = "warning",
        /// Must never be lost: durable before `record` returns, and may alert.
        Critical = "critical",
    }
);

named_enum!(
    /// Why, as a closed code. Coarse on purpose for credential failures: enough for an
    /// operator and an anomaly rule, never enough to tell an attacker which byte was wrong.
    ReasonCode {
        /// The credential was not well formed.
        Malformed = "malformed",
        /// The input was larger than the cap.
        TooLarge = "too_large",
        /// A checksum did not match.
        BadChecksum = "bad_checksum",
        /// A signature or MAC did not verify.
        BadSignature = "bad_signature",
        /// The algorithm was not the one bound to the key.
        WrongAlgorithm = "wrong_algorithm",
        /// The credential expired.
        Expired = "expired",
        /// The credential is not valid yet.
        NotYetValid = "not_yet_valid",
        /// The issuer did not match.
        WrongIssuer = "wrong_issuer",
        /// The audience did not match.
        WrongAudience = "wrong_audience",
        /// The token type did not match.
        WrongType = "wrong_type",
        /// No key with that id.
        UnknownKey = "unknown_key",
        /// No credential with that id.
        UnknownCredential = "unknown_credential",
        /// The secret did not match the stored hash.
        SecretMismatch = "secret_mismatch",
        /// The credential was revoked.
        Revoked = "revoked",
        /// The credential is disabled.
        Disabled = "disabled",
        /// A single-use credential was used again.
        Reused = "reused",
        /// A one-time code was wrong.
        WrongCode = "wrong_code",
        /// A one-time code was replayed.
        Replayed = "replayed",
        /// The role does not allow the action.
        RoleForbids = "role_forbids",
        /// The credential's scopes do not include the action's scope.
        ScopeMissing = "scope_missing",
        /// The resource belongs to another user.
        NotOwner = "not_owner",
        /// The resource belongs to another organization.
        OtherOrg = "other_org",
        /// The MCP tool is not mapped to an action (default deny).
        UnmappedTool = "unmapped_tool",
        /// Recent multi-factor authentication is required.
        StepUpRequired = "step_up_required",
        /// Too many attempts; throttled.
        RateLimited = "rate_limited",
        /// Locked after repeated failures.
        LockedOut = "locked_out",
        /// Decryption failed (tampering, wrong context, unknown key).
        DecryptFailed = "decrypt_failed",
        /// Scheduled or manual key rotation.
        Rotation = "rotation",
        /// A key reached its usage budget.
        KeyBudgetExhausted = "key_budget_exhausted",
        /// A stored record failed an integrity check.
        Tampered = "tampered",
        /// A fact the decision needs could not be read (a store failed): refused, since
        /// unknown is never read as allowed.
        Unavailable = "unavailable",
    }
);

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Actor {
    /// A user, by id.
    User {
        /// The user.
        user: UserId,
    },
    /// An API key, by its public id, and its owner when known.
    ApiKey {
        /// The key's public id (never the key).
        key: KeyId,
        /// The owning user, when the key was found.
        owner: Option<UserId>,
    },
    /// Another service.
    Service {
        /// The service.
        service: ServiceId,
    },
    /// Nobody identified yet (a failed login with an unknown credential).
    Anonymous,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// The kind of resource (`mcp_config`, `api_key`, `signing_key`, …).
    pub kind: Label,
    /// Which one, when there is one.
    pub id: Option<ResourceId>,
}

/// One security-relevant occurrence.
///
/// Built with [`SecurityEvent::new`] and the `with_*` methods; fields are public to read,
/// and the struct is `#[non_exhaustive]` so that it can grow.
/// Deserialization is strict: an unknown field is an error, so a misspelt or invented
/// field is refused rather than silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SecurityEvent {
    /// What happened.
    pub kind: EventKind,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// How urgent; defaults from the kind.
    pub severity: Severity,
    /// When, from the emitter's [`Clock`](crate::Clock); RFC 3339 on the wire.
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    /// Who acted.
    pub actor: Actor,
    /// In which organization.
    pub org: Option<OrgId>,
    /// From which network address.
    pub source: Option<IpAddr>,
    /// On what.
    pub resource: Option<ResourceRef>,
    /// The action or tool concerned (`mcp.configure`, a tool name).
    pub action: Option<Label>,
    /// Why (for failures and denials, and notable successes such as rotation).
    pub reason: Option<ReasonCode>,
    /// Which request, for correlation.
    pub request_id: Option<RequestId>,
}

impl SecurityEvent {
    /// An event of `kind` with `outcome` at `time`, severity from the kind, anonymous actor.
    pub fn new(kind: EventKind, outcome: Outcome, time: SystemTime) -> Self {
        Self {
            kind,
            outcome,
            severity: kind.default_severity(),
            time,
            actor: Actor::Anonymous,
            org: None,
            source: None,
            resource: None,
            action: None,
            reason: None,
            request_id: None,
        }
    }

    /// Sets who acted.
    pub fn with_actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// Sets a user as the actor.
    pub fn with_user(self, user: UserId) -> Self {
        self.with_actor(Actor::User { user })
    }

    /// Sets the organization.
    pub fn with_org(mut self, org: OrgId) -> Self {
        self.org = Some(org);
        self
    }

    /// Sets the source address.
    pub fn with_source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// Sets the resource acted on.
    pub fn with_resource(mut self, kind: Label, id: Option<ResourceId>) -> Self {
        self.resource = Some(ResourceRef { kind, id });
        self
    }

    /// Sets the action or tool concerned.
    pub fn with_action(mut self, action: Label) -> Self {
        self.action = Some(action);
        self
    }

    /// Sets the reason code.
    pub fn with_reason(mut self, reason: ReasonCode) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Sets the request id.
    pub fn with_request_id(mut self, request_id: RequestId) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// Overrides the severity that the kind gave.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Whether a sink must make this event durable before accepting it.
    pub fn is_critical(&self) -> bool {
        self.severity == Severity::Critical
    }
}

/// RFC 3339 timestamps (UTC, nanosecond precision when present) for `SystemTime`.
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(*time))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample() -> SecurityEvent {
        SecurityEvent::new(
            EventKind::AuthzFail,
            Outcome::Failure,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        )
        .with_actor(Actor::ApiKey {
            key: KeyId::new("k1").unwrap(),
            owner: Some(UserId::new("u1").unwrap()),
        })
        .with_org(OrgId::new("acme").unwrap())
        .with_source("192.0.2.7".parse().unwrap())
        .with_resource(
            Label::new("mcp_config").unwrap(),
            Some(ResourceId::new("cfg-9").unwrap()),
        )
        .with_action(Label::new("mcp.configure").unwrap())
        .with_reason(ReasonCode::ScopeMissing)
        .with_request_id(RequestId::new("req-1").unwrap())
    }

    #[test]
    fn names_follow_the_owasp_vocabulary() {
        assert_eq!(EventKind::AuthnLoginFail.as_str(), "authn_login_fail");
        assert_eq!(EventKind::AuthnTokenReuse.as_str(), "authn_token_reuse");
        assert_eq!(EventKind::AuthzFail.as_str(), "authz_fail");
        assert_eq!(EventKind::AuthzAdmin.as_str(), "authz_admin");
        assert_eq!(
            EventKind::SysCryptoKeyRotated.as_str(),
            "sys_crypto_key_rotated"
        );
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), *kind);
            assert!(
                kind.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
    }

    #[test]
    fn severity_defaults_from_the_kind() {
        assert!(
            SecurityEvent::new(EventKind::AuthnTokenReuse, Outcome::Failure, UNIX_EPOCH)
                .is_critical()
        );
        assert!(
            !SecurityEvent::new(EventKind::AuthnLoginSuccess, Outcome::Success, UNIX_EPOCH)
                .is_critical()
        );
        let raised = SecurityEvent::new(EventKind::AuthnLoginFail, Outcome::Failure, UNIX_EPOCH)
            .with_severity(Severity::Critical);
        assert!(raised.is_critical());
    }

    #[test]
    fn json_round_trip_with_rfc3339_time() {
        let event = sample();
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains("\"kind\":\"authz_fail\""), "{json}");
        assert!(
            json.contains("\"time\":\"2023-11-14T22:13:20.123000000Z\""),
            "{json}"
        );
        let back: SecurityEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn deserializing_rejects_values_ids_would_refuse() {
        let json = serde_json::to_string(&sample()).unwrap();
        let smuggled = json.replace("\"cfg-9\"", "\"mcp_sk_live_secret\"");
        assert!(serde_json::from_str::<SecurityEvent>(&smuggled).is_err());
        let unknown = json.replace("authz_fail", "made_up_kind");
        assert!(serde_json::from_str::<SecurityEvent>(&unknown).is_err());
        let extra_field = json.replacen('{', "{\"note\":\"free text\",", 1);
        assert!(serde_json::from_str::<SecurityEvent>(&extra_field).is_err());
        let extra_in_actor = json.replace("\"type\":\"api_key\"", "\"type\":\"api_key\",\"x\":1");
        assert!(serde_json::from_str::<SecurityEvent>(&extra_in_actor).is_err());
        let extra_in_resource =
            json.replace("\"kind\":\"mcp_config\"", "\"kind\":\"mcp_config\",\"x\":1");
        assert!(serde_json::from_str::<SecurityEvent>(&extra_in_resource).is_err());
    }
}
