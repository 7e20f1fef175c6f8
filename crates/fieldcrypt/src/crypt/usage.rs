//! A [`FieldCrypt`]'s side of the nonce budget: reserving ahead, reporting, giving back
//! (see [`crate::budget`]).

use super::FieldCrypt;
use crate::budget::BudgetState;
use crate::{Category, Error};
use std::sync::PoisonError;

/// How far one key version is into its nonce budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The data category.
    pub category: Category,
    /// The key version.
    pub version: u32,
    /// Whether it is the category's primary version.
    pub primary: bool,
    /// Encryptions reserved by every process sharing the ledger: an upper bound on the
    /// encryptions performed under this version (reserved-but-unused blocks count).
    pub reserved: u64,
    /// Encryptions by this process.
    pub this_process: u64,
    /// Where that is in the budget.
    pub state: BudgetState,
}

impl FieldCrypt {
    /// Every key version's place in its nonce budget. A host polls this (or
    /// [`FieldCrypt::due_for_rotation`]) on its rotation schedule.
    pub fn usage(&self) -> Vec<KeyUsage> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (category, ring) in rings.iter() {
            for (version, state) in &ring.versions {
                out.push(KeyUsage {
                    category: category.clone(),
                    version: *version,
                    primary: *version == ring.primary,
                    reserved: state.usage.reserved(),
                    this_process: state.usage.local(),
                    state: state.usage.state(&self.budget),
                });
            }
        }
        out
    }

    /// Categories whose primary key has reached the warning threshold of its budget.
    pub fn due_for_rotation(&self) -> Vec<Category> {
        self.usage()
            .into_iter()
            .filter(|usage| usage.primary && usage.state != BudgetState::Ok)
            .map(|usage| usage.category)
            .collect()
    }

    /// Gives the unused part of every nonce reservation back to the ledger, for a clean
    /// shutdown (call it after the last encryption). An encryption after it still works:
    /// it reserves again. Returns how many were given back. A crash, which skips this,
    /// loses at most one block per key version (see [`crate::budget`]).
    pub async fn release_reservations(&self) -> Result<u64, Error> {
        let mut given_back = Vec::new();
        {
            let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
            for (category, ring) in rings.iter() {
                for (version, state) in &ring.versions {
                    let unused = state.usage.release();
                    if unused > 0 {
                        given_back.push((category.clone(), *version, unused));
                    }
                }
            }
        }
        let mut total = 0u64;
        let mut first_error = None;
        for (category, version, unused) in given_back {
            total = total.saturating_add(unused);
            // A ledger that cannot take them back keeps them: an over-count, safe.
            if let Err(error) = self.ledger.release(&category, version, unused).await {
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(total),
        }
    }

    /// Reserves nonces ahead for every category's primary version, waiting for the
    /// ledger: call it after building (or after installing a new primary) so the first
    /// synchronous [`FieldCrypt::encrypt`] does not find an empty allowance. Later
    /// refills run in the background (see [`crate::budget`]).
    /// [`LocalKeyset::field_crypt`](crate::LocalKeyset::field_crypt) and its rotations
    /// call it.
    pub async fn reserve_ahead(&self) -> Result<(), Error> {
        for category in self.categories() {
            self.reserve_primary(&category).await?;
        }
        Ok(())
    }

    /// Waits until `category`'s primary version has a nonce to give.
    pub(crate) async fn reserve_primary(&self, category: &Category) -> Result<(), Error> {
        let (usage, version) = {
            let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
            let ring = rings
                .get(category)
                .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
            let state = ring
                .versions
                .get(&ring.primary)
                .ok_or(Error::Keyset("the primary key version is missing"))?;
            (state.usage.clone(), ring.primary)
        };
        usage
            .reserve(&self.budget, &self.ledger, category, version)
            .await
    }

    /// Runs a synchronous encryption under `category`'s primary version, and once more
    /// after waiting for a reservation if it found none (the async paths wait; the
    /// synchronous ones fail closed).
    pub(super) async fn with_reservation<T>(
        &self,
        category: &Category,
        encrypt: impl Fn() -> Result<T, Error>,
    ) -> Result<T, Error> {
        match encrypt() {
            Err(Error::NonceReservationPending { .. }) => {
                self.reserve_primary(category).await?;
                encrypt()
            }
            other => other,
        }
    }

    /// Takes one encryption from the budget of `category`'s primary version, for an
    /// encryption under a subject key (see [`crate::budget`]).
    pub(super) fn charge_primary(&self, category: &Category) -> Result<(), Error> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let (category, ring) = rings
            .get_key_value(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        let state = ring
            .versions
            .get(&ring.primary)
            .ok_or(Error::Keyset("the primary key version is missing"))?;
        state
            .usage
            .take(&self.budget, &self.ledger, category, ring.primary)
    }
}
