//! The claims of a verified token, and the `Principal` they describe.

use crate::{Algorithm, Error};
use mcpsec_access::{AuthMethods, Authentication, Credential, Principal, Role, ScopeSet};
use mcpsec_core::{OrgId, TokenId, UserId};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::SystemTime;

/// The longest `sub`, `org`, `jti` or `sid` a verified token may carry, in bytes.
///
/// These claims are the issuer's data, not mcpsec identifiers: an outside issuer's
/// `sub: "ada@example.com"`, `org: "Acme Inc"` or base64 `jti` are accepted as any
/// non-empty string up to this cap without control characters. Identifiers this workspace
/// mints keep the strict [`UserId`] rules.
pub const MAX_CLAIM_ID_LEN: usize = 256;

/// The claims of a token that passed every check. Only [`TokenVerifier`](crate::TokenVerifier) makes one.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    pub(crate) subject: String,
    pub(crate) issuer: String,
    pub(crate) expires_at: SystemTime,
    pub(crate) issued_at: SystemTime,
    pub(crate) jti: Option<String>,
    pub(crate) sid: Option<String>,
    pub(crate) scopes: ScopeSet,
    pub(crate) org: Option<String>,
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
    /// `sub`, as the issuer wrote it (see [`MAX_CLAIM_ID_LEN`]).
    pub fn subject(&self) -> &str {
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
    /// `jti`, when present, as the issuer wrote it.
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }
    /// `sid`, when present: the login session (refresh-token family) the token was minted
    /// from, as the issuer wrote it. A verifier built with
    /// [`sessions`](crate::TokenVerifierBuilder::sessions) has checked that the session was
    /// not revoked.
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }
    /// The known scopes of `scope` (unknown ones dropped).
    pub fn scopes(&self) -> ScopeSet {
        self.scopes
    }
    /// `org`, as the issuer wrote it.
    pub fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }
    /// `role`.
    pub fn role(&self) -> Option<Role> {
        self.role
    }
    /// `auth_time`; `None` when the token does not say (never `iat` in its place).
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
    ///
    /// A `Principal` names mcpsec identifiers ([`UserId`], [`OrgId`]); `sub` and `org` are
    /// used as they are when they follow those rules (tokens of an mcpsec issuer always
    /// do). An outside issuer's `sub` such as `ada@example.com` fails with
    /// [`Error::NotAnIdentifier`]: the host maps it to its own user with
    /// [`principal_mapped`](VerifiedClaims::principal_mapped). Nothing is rewritten or
    /// hashed silently, so two issuers' subjects can never collide on one user.
    pub fn principal_with_role(&self, role: Role) -> Result<Principal, Error> {
        let subject = UserId::new(&self.subject).map_err(|_| Error::NotAnIdentifier("sub"))?;
        let org = self.org.as_deref().ok_or(Error::MissingClaim("org"))?;
        let org = OrgId::new(org).map_err(|_| Error::NotAnIdentifier("org"))?;
        Ok(self.principal_mapped(subject, org, role))
    }

    /// The [`Principal`] for this token as the host's own user, org and role: for an
    /// outside issuer whose `sub`/`org` are not mcpsec identifiers, the host looks them up
    /// ([`subject`](VerifiedClaims::subject), [`org`](VerifiedClaims::org),
    /// [`issuer`](VerifiedClaims::issuer)) in its user store and passes what it found.
    /// Scopes, `auth_time` and `amr` still come from the token.
    ///
    /// This is the one place an outside identity becomes a principal, and only from
    /// verified claims.
    pub fn principal_mapped(&self, subject: UserId, org: OrgId, role: Role) -> Principal {
        // The workspace's token verifier: `VerifiedClaims` exists only after
        // `TokenVerifier` checked the signature, issuer, audience and lifetime, which is
        // what the danger path asks of its caller. A `jti` that is not a valid id is left
        // out rather than altered (the token still verified; only its id is unknown).
        mcpsec_access::danger::principal(
            subject,
            org,
            role,
            self.scopes,
            Credential::access_token(self.jti.as_deref().and_then(|jti| TokenId::new(jti).ok())),
            Authentication {
                // Unknown stays unknown: `iat` says when the token was minted (perhaps
                // by a refresh days after the login), not when the user authenticated.
                at: self.auth_time,
                methods: self.amr,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpsec_access::{CredentialId, CredentialKind};
    use mcpsec_core::TokenId;
    use std::time::UNIX_EPOCH;

    fn claims(jti: Option<&str>) -> VerifiedClaims {
        VerifiedClaims {
            subject: "ada".to_owned(),
            issuer: "https://issuer.example".to_owned(),
            expires_at: UNIX_EPOCH,
            issued_at: UNIX_EPOCH,
            jti: jti.map(str::to_owned),
            sid: None,
            scopes: ScopeSet::parse_strict("mcp:read").unwrap(),
            org: Some("acme".to_owned()),
            role: Some(Role::Developer),
            auth_time: None,
            amr: AuthMethods::EMPTY,
            acr: None,
            kid: "k1".to_owned(),
            alg: Algorithm::EdDSA,
            exp_seconds: 0.0,
            payload: Arc::new(Map::new()),
        }
    }

    #[test]
    fn principal_carries_the_token_and_its_jti() {
        let principal = claims(Some("tok-1")).principal().unwrap();
        assert_eq!(principal.credential(), CredentialKind::AccessToken);
        assert_eq!(
            principal.credential_id(),
            Some(&CredentialId::Token(TokenId::new("tok-1").unwrap()))
        );
    }

    #[test]
    fn a_jti_that_is_not_an_id_is_left_out_not_altered() {
        let odd = claims(Some("has space/and+base64==")).principal().unwrap();
        assert_eq!(odd.credential(), CredentialKind::AccessToken);
        assert_eq!(odd.credential_id(), None);
        assert_eq!(claims(None).principal().unwrap().credential_id(), None);
    }
}
