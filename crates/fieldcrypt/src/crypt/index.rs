//! Blind indexes derived from a category's index key (see [`crate::blind`]).

use super::FieldCrypt;
use crate::{Category, Error};
use std::sync::PoisonError;

impl FieldCrypt {
    /// A blind index for equality search on one column; see [`crate::blind`].
    pub fn blind_index(
        &self,
        category: &Category,
        table: &str,
        column: &str,
        config: crate::blind::BlindIndexConfig,
    ) -> Result<crate::blind::BlindIndex, Error> {
        let rings = self.rings.read().unwrap_or_else(PoisonError::into_inner);
        let ring = rings
            .get(category)
            .ok_or_else(|| Error::UnknownCategory(category.to_string()))?;
        crate::blind::BlindIndex::derive(&ring.index_key, category, table, column, config)
    }
}
