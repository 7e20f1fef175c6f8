//! The crate's error type.

/// Why a field-encryption operation failed. Nothing was written or changed.
///
/// Messages name categories, versions and rules, which are not secret; they never contain
/// plaintext, key material or ciphertext bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ciphertext is not in a format this crate reads (bad prefix, truncated header,
    /// bad base64, unknown flags).
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    /// The input is larger than the cap for its kind.
    #[error("{0} is larger than the cap")]
    TooLarge(&'static str),
    /// The ciphertext was written in a format version this build does not read.
    #[error("unsupported ciphertext format version {0}")]
    UnsupportedVersion(u8),
    /// No keyring for this data category: the keyset lacks it (add it with
    /// [`LocalKeyset::add_category`](crate::LocalKeyset::add_category), or use a category
    /// the keyset has). Sealing through core's
    /// `Sealer` reports it as `mcpsec_core::Error::SealCategoryMissing`, with the name.
    #[error("the keyset has no keyring for data category {0:?}")]
    UnknownCategory(String),
    /// The keyring has no key with this version.
    #[error("data category {category:?} has no key version {version}")]
    UnknownKeyVersion {
        /// The data category.
        category: String,
        /// The version named by the ciphertext.
        version: u32,
    },
    /// The key version is below the category's minimum decryption version: data written
    /// under it must have been re-encrypted (`rewrap`) before the minimum was raised.
    #[error("data category {category:?} refuses key version {version} (below the minimum)")]
    KeyVersionRetired {
        /// The data category.
        category: String,
        /// The refused version.
        version: u32,
    },
    /// The ciphertext names a key version whose key is not the one that sealed it (its
    /// header's key id differs): the version number was handed out twice (a keyset
    /// restored from an older copy, then rotated), so the key the data needs is elsewhere,
    /// or the header was edited. Nothing was decrypted.
    #[error(
        "data category {category:?} key version {version} is not the key this ciphertext was sealed with"
    )]
    KeyMismatch {
        /// The data category.
        category: String,
        /// The version named by the ciphertext.
        version: u32,
    },
    /// The ciphertext's category is not the category of the context it is opened with.
    #[error("the ciphertext belongs to another data category")]
    WrongCategory,
    /// Authentication failed: the ciphertext was changed, or it belongs to another row,
    /// column, table, tenant or subject, or the key is wrong. Deliberately one error.
    #[error("decryption failed (tampered data, wrong context or wrong key)")]
    Decrypt,
    /// The subject's data key was deleted (crypto-shredding): the data is gone for good.
    #[error("the subject's data key was shredded; the data cannot be recovered")]
    Shredded,
    /// The ciphertext is sealed with a subject key and must be opened with its subject.
    #[error("the ciphertext is bound to a subject; open it with that subject")]
    SubjectRequired,
    /// The key version has reached its budget of random nonces: rotate the category.
    #[error("data category {category:?} key version {version} reached its nonce budget; rotate")]
    NonceBudgetExhausted {
        /// The data category.
        category: String,
        /// The exhausted version.
        version: u32,
    },
    /// No nonce reservation is available for the key version yet: the usage ledger has
    /// not answered (a refill is under way, or the ledger cannot be reached). Nothing was
    /// encrypted. Retry after awaiting [`FieldCrypt::reserve_ahead`](crate::FieldCrypt::reserve_ahead),
    /// or use an async path ([`Sealer::seal`](mcpsec_core::Sealer::seal)), which waits.
    #[error("data category {category:?} key version {version} has no nonce reservation yet; retry")]
    NonceReservationPending {
        /// The data category.
        category: String,
        /// The key version waiting for a reservation.
        version: u32,
    },
    /// The key provider (master key, KMS) failed or refused.
    #[error("key provider: {0}")]
    KeyProvider(&'static str),
    /// The keyset file is not valid.
    #[error("invalid keyset: {0}")]
    Keyset(&'static str),
    /// The keyset file is older than one already seen (its generation went backwards): an
    /// older copy was restored. Nothing is read from it or written to it.
    #[error(
        "the keyset file is at generation {found}, older than generation {seen} already seen (rollback)"
    )]
    Rollback {
        /// The newest generation seen by this handle or recorded in the watermark.
        seen: u64,
        /// The generation of the file on disk.
        found: u64,
    },
    /// A store (subject keys, usage ledger, rewrap checkpoints, rows) failed; nothing was
    /// changed by this call.
    #[error(transparent)]
    Store(#[from] mcpsec_core::StoreError),
    /// An argument was outside what the function accepts.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// Reading or writing a file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The operating system's random generator failed.
    #[error("the operating system's random number generator is unavailable")]
    RandomUnavailable,
}

impl From<mcpsec_core::Error> for Error {
    fn from(error: mcpsec_core::Error) -> Self {
        match error {
            mcpsec_core::Error::RandomUnavailable => Self::RandomUnavailable,
            mcpsec_core::Error::InvalidArgument(why) => Self::InvalidArgument(why),
            mcpsec_core::Error::InvalidIdentifier { reason, .. } => Self::InvalidArgument(reason),
            mcpsec_core::Error::Store(inner) => Self::Store(inner),
            mcpsec_core::Error::SealCategoryMissing { category } => Self::UnknownCategory(category),
            // Sealing, sinks and anything added later: a failed dependency, cause kept.
            other => Self::Store(mcpsec_core::StoreError::from_core("mcpsec-core", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpsec_core::{StoreError, StoreErrorKind};
    use std::error::Error as _;

    #[test]
    fn core_errors_keep_their_variant() {
        let timeout = StoreError::timeout("ledger");
        assert!(matches!(
            Error::from(mcpsec_core::Error::Store(timeout.clone())),
            Error::Store(inner) if inner == timeout
        ));
        // Once flattened to `InvalidArgument("core error")`; now the sink failure is the cause.
        let refused = Error::from(mcpsec_core::Error::SinkUnavailable("full"));
        let Error::Store(inner) = &refused else {
            panic!("{refused:?}")
        };
        assert_eq!(inner.kind(), StoreErrorKind::Unavailable);
        assert_eq!(
            refused
                .source()
                .and_then(|e| e.downcast_ref::<mcpsec_core::Error>()),
            Some(&mcpsec_core::Error::SinkUnavailable("full"))
        );
    }

    #[test]
    fn a_missing_category_keeps_its_name_across_core() {
        let missing = mcpsec_core::Error::SealCategoryMissing {
            category: "totp_secrets".to_owned(),
        };
        assert!(
            missing.to_string().contains("\"totp_secrets\""),
            "{missing}"
        );
        let back = Error::from(missing);
        assert!(matches!(&back, Error::UnknownCategory(c) if c == "totp_secrets"));
        assert_eq!(
            back.to_string(),
            "the keyset has no keyring for data category \"totp_secrets\""
        );
    }
}
