//! [`FieldCrypt`] as core's [`Sealer`](mcpsec_core::Sealer), for the capability crates.

use super::FieldCrypt;
use crate::{Category, Error};
use mcpsec_core::{SealContext, SecretBytes};

#[async_trait::async_trait]
impl mcpsec_core::Sealer for FieldCrypt {
    async fn seal(
        &self,
        plaintext: &[u8],
        context: &SealContext,
    ) -> Result<Vec<u8>, mcpsec_core::Error> {
        if plaintext.len() > mcpsec_core::MAX_SEAL_PLAINTEXT {
            return Err(mcpsec_core::Error::Seal(
                "plaintext larger than the seal cap",
            ));
        }
        // A name that is not a valid category cannot be in the keyset either: both say
        // which category is missing, so the host can fix its keyset or its context.
        let missing = || mcpsec_core::Error::SealCategoryMissing {
            category: context.category().to_owned(),
        };
        let category = Category::new(context.category()).map_err(|_| missing())?;
        self.with_reservation(&category, || self.encrypt(plaintext, context))
            .await
            .map_err(|error| match error {
                Error::UnknownCategory(category) => {
                    mcpsec_core::Error::SealCategoryMissing { category }
                }
                Error::NonceBudgetExhausted { .. } => {
                    mcpsec_core::Error::Seal("the category's key must be rotated")
                }
                Error::NonceReservationPending { .. } => {
                    mcpsec_core::Error::Seal("the nonce ledger cannot be reached")
                }
                Error::RandomUnavailable => mcpsec_core::Error::RandomUnavailable,
                _ => mcpsec_core::Error::Seal("field encryption failed"),
            })
    }

    async fn open(
        &self,
        sealed: &[u8],
        context: &SealContext,
    ) -> Result<SecretBytes, mcpsec_core::Error> {
        // `decrypt` records the failure.
        self.decrypt(sealed, context)
            .await
            .map_err(|_| mcpsec_core::Error::Open)
    }
}
