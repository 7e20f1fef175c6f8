//! Sealing small secrets at rest, without depending on the field encryption crate.
//!
//! A capability crate that must keep a secret it will need again (a TOTP seed, a
//! third-party token) stores `sealer.seal(secret, context)` and later
//! `sealer.open(sealed, context)`. `mcpsec-fieldcrypt` implements [`Sealer`] with
//! AES-256-GCM; the context is bound as associated data, so a sealed value copied to
//! another row, column or tenant does not open.

use std::sync::Arc;

use crate::{Error, SecretBytes};

/// The largest plaintext a [`Sealer`] must accept: "small secrets", not documents.
pub const MAX_SEAL_PLAINTEXT: usize = 64 * 1024;

const MAX_CONTEXT_PART: usize = 256;
const AAD_TAG: &[u8] = b"mcpsec-seal-context-v1";

/// Where a sealed value lives: data category, table, column, row and optionally tenant.
///
/// Context parts are not secret (they are bound, not hidden) and are at most 256 bytes
/// each. Two contexts are equal exactly when their [`SealContext::aad`] encodings are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SealContext {
    category: String,
    table: String,
    column: String,
    row: String,
    tenant: Option<String>,
}

impl SealContext {
    /// The context of one field: its data `category` (which key family seals it, such as
    /// `totp_secrets`), and the `table`, `column` and `row` it is stored in.
    pub fn new(
        category: impl Into<String>,
        table: impl Into<String>,
        column: impl Into<String>,
        row: impl Into<String>,
    ) -> Result<Self, Error> {
        let context = Self {
            category: category.into(),
            table: table.into(),
            column: column.into(),
            row: row.into(),
            tenant: None,
        };
        for part in [
            &context.category,
            &context.table,
            &context.column,
            &context.row,
        ] {
            check_part(part)?;
        }
        Ok(context)
    }

    /// Binds the value to a tenant as well.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Result<Self, Error> {
        let tenant = tenant.into();
        check_part(&tenant)?;
        self.tenant = Some(tenant);
        Ok(self)
    }

    /// The data category, which selects the key family.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The tenant, when bound.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The canonical encoding bound as associated data: a version tag, then each part as a
    /// 4-byte big-endian length and its bytes, then a tenant flag. Length prefixes make the
    /// encoding injective: ("a", "bc") and ("ab", "c") never collide.
    pub fn aad(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.aad_len());
        self.write_aad(&mut out);
        out
    }

    /// The length of [`SealContext::aad`].
    pub fn aad_len(&self) -> usize {
        let parts = [&self.category, &self.table, &self.column, &self.row];
        AAD_TAG.len()
            + parts
                .into_iter()
                .chain(self.tenant.as_ref())
                .map(|part| 4 + part.len())
                .sum::<usize>()
            + 1
    }

    /// Appends [`SealContext::aad`] to `out`, for callers that build a larger associated
    /// data buffer without another allocation.
    pub fn write_aad(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(AAD_TAG);
        let parts = [&self.category, &self.table, &self.column, &self.row];
        for part in parts.into_iter().chain(self.tenant.as_ref()) {
            // Parts are capped at 256 bytes, so the length always fits in u32.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out.push(u8::from(self.tenant.is_some()));
    }
}

fn check_part(part: &str) -> Result<(), Error> {
    if part.is_empty() || part.len() > MAX_CONTEXT_PART {
        return Err(Error::InvalidArgument(
            "seal context parts must be 1 to 256 bytes",
        ));
    }
    Ok(())
}

/// Seals and opens small secrets bound to a [`SealContext`].
///
/// Implementations must: provide confidentiality and integrity (an AEAD); bind the whole
/// context so that opening with any other context fails with [`Error::Open`]; use a fresh
/// nonce or IV for every seal; refuse plaintexts over [`MAX_SEAL_PLAINTEXT`] with
/// [`Error::Seal`]; and never put plaintext or key material in an error.
#[async_trait::async_trait]
pub trait Sealer: Send + Sync + std::fmt::Debug {
    /// Encrypts `plaintext` for `context`. The result is opaque bytes safe to store.
    async fn seal(&self, plaintext: &[u8], context: &SealContext) -> Result<Vec<u8>, Error>;

    /// Decrypts what [`Sealer::seal`] produced for the same `context`.
    async fn open(&self, sealed: &[u8], context: &SealContext) -> Result<SecretBytes, Error>;
}

/// A shared sealer seals: one `FieldCrypt` behind an `Arc` can serve the audited sealer
/// (`AuditedSealer::new(Arc::clone(&crypt), ..)`) and the rest of the host at once, and an
/// `Arc<dyn Sealer>` is itself a [`Sealer`].
#[async_trait::async_trait]
impl<T: Sealer + ?Sized> Sealer for Arc<T> {
    async fn seal(&self, plaintext: &[u8], context: &SealContext) -> Result<Vec<u8>, Error> {
        (**self).seal(plaintext, context).await
    }

    async fn open(&self, sealed: &[u8], context: &SealContext) -> Result<SecretBytes, Error> {
        (**self).open(sealed, context).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seals as the context's AAD followed by the plaintext: enough to show which sealer
    /// answered and that the context is passed through.
    #[derive(Debug, Default)]
    struct EchoSealer;

    #[async_trait::async_trait]
    impl Sealer for EchoSealer {
        async fn seal(&self, plaintext: &[u8], context: &SealContext) -> Result<Vec<u8>, Error> {
            let mut out = context.aad();
            out.extend_from_slice(plaintext);
            Ok(out)
        }

        async fn open(&self, sealed: &[u8], context: &SealContext) -> Result<SecretBytes, Error> {
            let body = sealed
                .strip_prefix(context.aad().as_slice())
                .ok_or(Error::Open)?;
            Ok(SecretBytes::new(body.to_vec()))
        }
    }

    fn takes_sealer<S: Sealer>(sealer: S) -> S {
        sealer
    }

    #[tokio::test]
    async fn an_arc_of_a_sealer_is_a_sealer_sharing_the_same_keys() {
        let concrete = Arc::new(EchoSealer);
        let shared = takes_sealer(Arc::clone(&concrete));
        let dynamic: Arc<dyn Sealer> = concrete.clone();
        let dynamic = takes_sealer(dynamic);
        let context = SealContext::new("totp_secrets", "t", "c", "r").unwrap();
        let sealed = shared.seal(b"seed", &context).await.unwrap();
        let opened = dynamic.open(&sealed, &context).await.unwrap();
        assert_eq!(opened.expose_secret(), b"seed");
        let other = SealContext::new("totp_secrets", "t", "c", "other").unwrap();
        assert!(dynamic.open(&sealed, &other).await.is_err());
    }

    #[test]
    fn aad_is_injective_over_part_boundaries() {
        let a = SealContext::new("c", "t", "a", "bc").unwrap();
        let b = SealContext::new("c", "t", "ab", "c").unwrap();
        assert_ne!(a.aad(), b.aad());
        let with_tenant = a.clone().with_tenant("acme").unwrap();
        assert_ne!(a.aad(), with_tenant.aad());
        assert_eq!(with_tenant.tenant(), Some("acme"));
    }

    #[test]
    fn empty_or_huge_parts_are_refused() {
        assert!(SealContext::new("", "t", "c", "r").is_err());
        assert!(SealContext::new("c", "t", "c", "r".repeat(257)).is_err());
        assert!(
            SealContext::new("c", "t", "c", "r")
                .unwrap()
                .with_tenant("")
                .is_err()
        );
    }
}
