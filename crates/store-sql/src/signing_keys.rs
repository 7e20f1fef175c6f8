//! [`SigningKeyStore`] on SQL (tables `signing_keyring` and `signing_keys`).

use crate::error::{corrupt, store_error};
use crate::timestamp::{from_db, to_db};
use mcpsec_core::{KeyId, StoreError};
use mcpsec_tokens::{Algorithm, KeyRecord, KeyState, KeyringRecords, SigningKeyStore};
use sqlx::Row;

sql_store!(
    /// [`SigningKeyStore`] on SQLite or PostgreSQL: the keyring's generation in the
    /// one-row table `signing_keyring`, its keys (kid, algorithm, state, retirement date;
    /// never key material) in `signing_keys`.
    ///
    /// [`replace`](SigningKeyStore::replace) is one write transaction that opens with a
    /// conditional `UPDATE … WHERE generation = expected`: of any number of concurrent
    /// writers from one generation, on any number of instances, exactly one moves it and
    /// rewrites the keys; the others change nothing and get a
    /// [`Conflict`](mcpsec_core::StoreErrorKind::Conflict). [`load`](SigningKeyStore::load)
    /// is one statement, so it reads one generation's keys, never a mix.
    SqlSigningKeyStore
);

/// The generation and its keys in one statement (one snapshot on both backends); a ring
/// without keys is one row of NULL key columns.
const LOAD: &str = "
    SELECT r.generation, k.kid, k.algorithm, k.state, k.retired_until
    FROM signing_keyring r LEFT JOIN signing_keys k ON TRUE
    WHERE r.id = 1
    ORDER BY k.position";

const INSERT_KEY: &str = "
    INSERT INTO signing_keys (position, kid, algorithm, state, retired_until)
    VALUES ($1, $2, $3, $4, $5)";

fn state_columns(state: KeyState) -> Result<(&'static str, Option<i64>), StoreError> {
    Ok(match state {
        KeyState::Next => ("next", None),
        KeyState::Current => ("current", None),
        KeyState::Retired { until } => ("retired", Some(to_db(until)?)),
    })
}

fn record_from(
    kid: &str,
    algorithm: &str,
    state: &str,
    retired_until: Option<i64>,
) -> Result<KeyRecord, StoreError> {
    let state = match (state, retired_until) {
        ("next", None) => KeyState::Next,
        ("current", None) => KeyState::Current,
        ("retired", Some(until)) => KeyState::Retired {
            until: from_db(until)?,
        },
        _ => return Err(StoreError::corrupt("a stored key state")),
    };
    Ok(KeyRecord {
        kid: KeyId::new(kid).map_err(corrupt("a stored kid"))?,
        algorithm: Algorithm::from_name(algorithm)
            .ok_or(StoreError::corrupt("a stored key algorithm"))?,
        state,
    })
}

fn lost() -> StoreError {
    StoreError::conflict("the signing keyring changed since it was read")
}

macro_rules! impl_signing_key_store {
    ($db:ty, $begin:expr, $for_update:literal) => {
        #[async_trait::async_trait]
        impl SigningKeyStore for SqlSigningKeyStore<$db> {
            async fn load(&self) -> Result<KeyringRecords, StoreError> {
                let rows = sqlx::query(LOAD)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| store_error("load the signing keyring", e))?;
                let mut generation = None;
                let mut records = Vec::with_capacity(rows.len());
                for row in rows {
                    let get = |e| store_error("decode a signing key row", e);
                    let stored: i64 = row.try_get("generation").map_err(get)?;
                    generation = Some(stored);
                    let kid: Option<String> = row.try_get("kid").map_err(get)?;
                    let Some(kid) = kid else { continue };
                    let algorithm: String = row.try_get("algorithm").map_err(get)?;
                    let state: String = row.try_get("state").map_err(get)?;
                    let until: Option<i64> = row.try_get("retired_until").map_err(get)?;
                    records.push(record_from(&kid, &algorithm, &state, until)?);
                }
                let generation =
                    generation.ok_or(StoreError::corrupt("the signing keyring row is missing"))?;
                Ok(KeyringRecords {
                    generation: u64::try_from(generation)
                        .map_err(corrupt("a negative keyring generation"))?,
                    records,
                })
            }

            async fn replace(
                &self,
                expected_generation: u64,
                records: Vec<KeyRecord>,
            ) -> Result<u64, StoreError> {
                // A generation the column cannot hold was never current.
                let expected = i64::try_from(expected_generation).map_err(|_| lost())?;
                // One write transaction (PostgreSQL: READ COMMITTED; SQLite: IMMEDIATE,
                // i.e. serialized). It opens with the conditional UPDATE of the one
                // generation row: a concurrent writer from the same generation waits for
                // the row lock, re-checks `generation = $1` against the committed row and
                // matches nothing. Only the winner, holding that lock to COMMIT, rewrites
                // the keys; a lost compare-and-swap rolls back having changed nothing.
                let mut tx = self
                    .pool
                    .begin_with($begin)
                    .await
                    .map_err(|e| store_error("begin replacing the signing keyring", e))?;
                let moved: Option<i64> = sqlx::query_scalar(
                    "UPDATE signing_keyring SET generation = generation + 1
                     WHERE id = 1 AND generation = $1
                     RETURNING generation",
                )
                .bind(expected)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| store_error("move the signing keyring generation", e))?;
                let Some(generation) = moved else {
                    tx.rollback()
                        .await
                        .map_err(|e| store_error("end a lost keyring replace", e))?;
                    return Err(lost());
                };
                sqlx::query("DELETE FROM signing_keys")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| store_error("clear the signing keys", e))?;
                for (position, record) in records.iter().enumerate() {
                    let (state, until) = state_columns(record.state)?;
                    sqlx::query(INSERT_KEY)
                        .bind(i64::try_from(position).map_err(corrupt("a key position"))?)
                        .bind(record.kid.as_str())
                        .bind(record.algorithm.as_str())
                        .bind(state)
                        .bind(until)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| store_error("store a signing key", e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| store_error("commit a keyring replace", e))?;
                u64::try_from(generation).map_err(corrupt("a negative keyring generation"))
            }
        }
    };
}

for_each_backend!(impl_signing_key_store);
