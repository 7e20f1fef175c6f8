//! The claims of a verified token, and the `Principal` they describe.

use crate::{Algorithm, Error};
use mcpsec_access::{AuthMethods, Authentication, CredentialKind, Principal, Role, ScopeSet};
use mcpsec_core::{OrgId, TokenId, UserId};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::SystemTime;

/// The claims of a token that passed every check. Only [`TokenVerifier`](crate::TokenVerifier) makes one.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    pub(crate) subject: UserId,
    pub(crate) issuer: String,
    pub(crate) expires_at: SystemTime,
    pub(crate) issued_at: SystemTime,
    pub(crate) jti: Option<TokenId>,
    pub(crate) scopes: ScopeSet,
    pub(crate) org: Option<OrgId>,
    pub(crate) role: Option<Role>,
    pub(crate) auth_time: Option<SystemTime>,
    pub(crate) amr: AuthMethods,
    pub(crate) acr: Option<String>,
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) exp_seconds: f64,
    pub(crate) payload: Arc<Map<String, Value>>,
}

impl VerifiedClaims {
    /// `sub`.
    pub fn subject(&self) -> &UserId {
        &self.subject
    }
    /// `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// `exp`.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
    /// `iat`.
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }
    /// `jti`, when present and a valid identifier.
    pub fn jti(&self) -> Option<&TokenId> {
        self.jti.as_ref()
    }
    /// The known scopes of `scope` (unknown ones dropped).
    pub fn scopes(&self) -> ScopeSet {
        self.scopes
    }
    /// `org`.
    pub fn org(&self) -> Option<&OrgId> {
        self.org.as_ref()
    }
    /// `role`.
    pub fn role(&self) -> Option<Role> {
        self.role
    }
    /// `auth_time`.
    pub fn auth_time(&self) -> Option<SystemTime> {
        self.auth_time
    }
    /// The known methods of `amr`.
    pub fn amr(&self) -> AuthMethods {
        self.amr
    }
    /// `acr`.
    pub fn acr(&self) -> Option<&str> {
        self.acr.as_deref()
    }
    /// The key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// The algorithm it was signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
    /// The whole verified payload, for display (`mcpsec token verify`).
    pub fn payload(&self) -> &Map<String, Value> {
        &self.payload
    }

    /// The [`Principal`] for this token, with the role from its `role` claim.
    /// Fails when `org` or `role` is absent: use [`VerifiedClaims::principal_with_role`]
    /// when the role comes from the host's membership store.
    pub fn principal(&self) -> Result<Principal, Error> {
        let role = self.role.ok_or(Error::MissingClaim("role"))?;
        self.principal_with_role(role)
    }

    /// The [`Principal`] for this token with a role the host looked up.
    pub fn principal_with_role(&self, role: Role) -> Result<Principal, Error> {
        let org = self.org.clone().ok_or(Error::MissingClaim("org"))?;
        Ok(Principal::new(
            self.subject.clone(),
            org,
            role,
            self.scopes,
            CredentialKind::AccessToken,
            Authentication {
                at: Some(self.auth_time.unwrap_or(self.issued_at)),
                methods: self.amr,
            },
        ))
    }
}
