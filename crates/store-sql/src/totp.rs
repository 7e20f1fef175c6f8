//! TOTP enrollments on SQL (table `totp_enrollments`), whose secret is stored only sealed.
//!
//! The store holds the host's [`Sealer`] and its API takes and returns
//! [`TotpSecret`]s, never bytes: there is no way through it to put a secret in the table
//! unsealed. Each sealed secret is bound to its row: the [`SealContext`] is category
//! `totp_secrets`, table `totp_enrollments`, column `sealed_secret` and row
//! `<user>/<enrollment in hex>/<config>`, so a sealed value copied to another user's or
//! another enrollment's row does not open, and neither does a row whose code parameters
//! were edited (a skew widened in the database).

use crate::error::{corrupt, store_error};
use crate::timestamp::{from_db, from_db_opt, to_db};
use mcpsec_core::{SealContext, Sealer, StoreError, UserId};
use mcpsec_mfa::{EnrollmentId, TotpAlgorithm, TotpConfig, TotpSecret};
use std::sync::Arc;
use std::time::SystemTime;

/// The data category TOTP secrets are sealed under: the host's sealer needs a key for it
/// (with `mcpsec-fieldcrypt`, a keyring for category `totp_secrets`).
pub const TOTP_SEAL_CATEGORY: &str = "totp_secrets";

/// Why a [`SqlTotpEnrollments`] call failed. Never carries secret material.
#[derive(Debug)]
#[non_exhaustive]
pub enum TotpEnrollmentError {
    /// The stored sealed secret does not open for its row: it was copied from another row,
    /// the row was edited, or it was sealed under a key the sealer no longer holds. The
    /// sealer's reason is the source.
    Unsealable(mcpsec_core::Error),
    /// Refused before anything was written: the sealer would not seal (for example no key
    /// for [`TOTP_SEAL_CATEGORY`]) or the code parameters are invalid.
    Refused(mcpsec_mfa::Error),
    /// This secret is already saved for this user (its enrollment id exists); nothing
    /// changed.
    Duplicate,
    /// The database (or the sealer's own store) failed.
    Store(StoreError),
}

impl std::fmt::Display for TotpEnrollmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsealable(_) => f.write_str("the stored TOTP secret does not open for its row"),
            Self::Refused(e) => write!(f, "TOTP enrollment refused: {e}"),
            Self::Duplicate => f.write_str("this TOTP secret is already enrolled"),
            Self::Store(e) => std::fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for TotpEnrollmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unsealable(e) => Some(e),
            Self::Refused(e) => Some(e),
            Self::Duplicate => None,
            Self::Store(e) => Some(e),
        }
    }
}

impl From<StoreError> for TotpEnrollmentError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// What [`SqlTotpEnrollments::confirm`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Confirmation {
    /// The pending enrollment is now confirmed.
    Confirmed,
    /// It was confirmed before; nothing changed.
    AlreadyConfirmed,
    /// No such enrollment for this user.
    Unknown,
}

/// An enrollment as listed: no secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentState {
    /// The enrollment ([`TotpSecret::enrollment_id`]).
    pub enrollment: EnrollmentId,
    /// When it was saved.
    pub created_at: SystemTime,
    /// When it was confirmed; `None` while pending.
    pub confirmed_at: Option<SystemTime>,
}

/// A loaded enrollment: the opened secret and its parameters.
#[derive(Debug)]
pub struct LoadedEnrollment {
    /// The secret, opened (zeroized on drop, redacted in `Debug`).
    pub secret: TotpSecret,
    /// Its code parameters.
    pub config: TotpConfig,
    /// When it was saved and confirmed.
    pub state: EnrollmentState,
}

/// TOTP enrollments on SQLite or PostgreSQL, the secret sealed by the host's [`Sealer`].
///
/// A user may hold several enrollments (one per secret, keyed by
/// [`TotpSecret::enrollment_id`]); each is saved pending and confirmed once, by one
/// conditional `UPDATE`.
pub struct SqlTotpEnrollments<DB: sqlx::Database> {
    pool: sqlx::Pool<DB>,
    sealer: Arc<dyn Sealer>,
}

impl<DB: sqlx::Database> SqlTotpEnrollments<DB> {
    /// A store on `pool` (migrated) sealing with `sealer`, which needs a key for
    /// [`TOTP_SEAL_CATEGORY`].
    pub fn new(pool: sqlx::Pool<DB>, sealer: Arc<dyn Sealer>) -> Self {
        Self { pool, sealer }
    }

    /// The pool it runs on.
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }
}

impl<DB: sqlx::Database> Clone for SqlTotpEnrollments<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sealer: Arc::clone(&self.sealer),
        }
    }
}

impl<DB: sqlx::Database> std::fmt::Debug for SqlTotpEnrollments<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTotpEnrollments")
            .field("backend", &DB::NAME)
            .finish_non_exhaustive()
    }
}

/// The code parameters as stored: `<algorithm>.<digits>.<step>.<skew>`, e.g. `SHA1.6.30.1`.
fn config_to_db(config: TotpConfig) -> String {
    let algorithm = match config.algorithm {
        TotpAlgorithm::Sha1 => "SHA1",
        TotpAlgorithm::Sha256 => "SHA256",
        TotpAlgorithm::Sha512 => "SHA512",
    };
    format!(
        "{algorithm}.{}.{}.{}",
        config.digits, config.step, config.skew
    )
}

fn config_from_db(text: &str) -> Result<TotpConfig, StoreError> {
    let bad = || StoreError::corrupt("stored TOTP parameters do not parse");
    let mut parts = text.split('.');
    let (Some(algorithm), Some(digits), Some(step), Some(skew), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    let algorithm = match algorithm {
        "SHA1" => TotpAlgorithm::Sha1,
        "SHA256" => TotpAlgorithm::Sha256,
        "SHA512" => TotpAlgorithm::Sha512,
        _ => return Err(bad()),
    };
    Ok(TotpConfig {
        algorithm,
        digits: digits.parse().map_err(corrupt("stored TOTP digits"))?,
        step: step.parse().map_err(corrupt("stored TOTP step"))?,
        skew: skew.parse().map_err(corrupt("stored TOTP skew"))?,
    })
}

fn enrollment_from_db(bytes: &[u8]) -> Result<EnrollmentId, StoreError> {
    <[u8; 16]>::try_from(bytes)
        .map(EnrollmentId)
        .map_err(corrupt("a stored enrollment id that is not 16 bytes"))
}

/// The context the secret of (`user`, `enrollment`) with `config` is sealed under.
fn seal_context(
    user: &UserId,
    enrollment: &EnrollmentId,
    config: &str,
) -> Result<SealContext, StoreError> {
    use std::fmt::Write as _;
    // User ids never contain '/', so the row name is unambiguous.
    let mut row = format!("{}/", user.as_str());
    for byte in enrollment.0 {
        let _ = write!(row, "{byte:02x}");
    }
    row.push('/');
    row.push_str(config);
    SealContext::new(TOTP_SEAL_CATEGORY, "totp_enrollments", "sealed_secret", row)
        .map_err(|e| StoreError::rejected("a TOTP seal context").with_source(e))
}

fn state_from(
    enrollment: EnrollmentId,
    created_at: i64,
    confirmed_at: Option<i64>,
) -> Result<EnrollmentState, StoreError> {
    Ok(EnrollmentState {
        enrollment,
        created_at: from_db(created_at)?,
        confirmed_at: from_db_opt(confirmed_at)?,
    })
}

/// The statements on `totp_enrollments`, per backend. On PostgreSQL each is a call of a
/// `SECURITY DEFINER` function of migration 0008 (one user's rows, named by the
/// arguments), so a pool logged in as the service role reads no enrollment directly; on
/// SQLite the statement itself. Each answers with a row (or rows) exactly when the
/// statement it stands for did.
trait EnrollmentSql {
    /// Pending enrollment `($1, $2)` with sealed secret `$3`, config `$4`, created `$5`,
    /// unless it exists: its `created_at`, or no row.
    const SAVE: &'static str;
    /// `($1, $2)` confirmed at `$3` if it was not: a row when this call confirmed it.
    const CONFIRM: &'static str;
    /// Whether `($1, $2)` exists: one boolean.
    const EXISTS: &'static str;
    /// `($1, $2)`'s sealed secret, config, created and confirmed times, or no row.
    const LOAD: &'static str;
    /// User `$1`'s enrollment ids, created and confirmed times, oldest first.
    const LIST: &'static str;
    /// `($1, $2)` removed: a row when there was one.
    const REMOVE: &'static str;
}

#[cfg(feature = "sqlite")]
impl EnrollmentSql for sqlx::Sqlite {
    const SAVE: &'static str = "INSERT INTO totp_enrollments \
         (user_id, enrollment, sealed_secret, config, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, enrollment) DO NOTHING RETURNING created_at";
    const CONFIRM: &'static str = "UPDATE totp_enrollments SET confirmed_at = $3 \
         WHERE user_id = $1 AND enrollment = $2 AND confirmed_at IS NULL \
         RETURNING confirmed_at";
    const EXISTS: &'static str = "SELECT EXISTS (SELECT 1 FROM totp_enrollments \
         WHERE user_id = $1 AND enrollment = $2)";
    const LOAD: &'static str = "SELECT sealed_secret, config, created_at, confirmed_at \
         FROM totp_enrollments WHERE user_id = $1 AND enrollment = $2";
    const LIST: &'static str = "SELECT enrollment, created_at, confirmed_at \
         FROM totp_enrollments WHERE user_id = $1 ORDER BY created_at, enrollment";
    const REMOVE: &'static str =
        "DELETE FROM totp_enrollments WHERE user_id = $1 AND enrollment = $2 RETURNING 1";
}

#[cfg(feature = "postgres")]
impl EnrollmentSql for sqlx::Postgres {
    // A NULL answer (nothing written) becomes no row, as the statement's.
    const SAVE: &'static str = "SELECT saved FROM totp_enrollment_save($1, $2, $3, $4, $5) \
         AS saved WHERE saved IS NOT NULL";
    const CONFIRM: &'static str = "SELECT confirmed FROM totp_enrollment_confirm($1, $2, $3) \
         AS confirmed WHERE confirmed IS NOT NULL";
    const EXISTS: &'static str = "SELECT totp_enrollment_exists($1, $2)";
    const LOAD: &'static str = "SELECT sealed_secret, config, created_at, confirmed_at \
         FROM totp_enrollment_load($1, $2)";
    const LIST: &'static str = "SELECT enrollment, created_at, confirmed_at \
         FROM totp_enrollment_list($1) ORDER BY created_at, enrollment";
    const REMOVE: &'static str = "SELECT 1 WHERE totp_enrollment_remove($1, $2)";
}

macro_rules! impl_totp_enrollments {
    ($db:ty, $begin:expr, $for_update:literal) => {
        impl SqlTotpEnrollments<$db> {
            /// Seals `secret` for `user` and saves it as a pending enrollment with
            /// `config`; returns its id. [`TotpEnrollmentError::Refused`] (invalid
            /// parameters, a sealer that refuses) and [`TotpEnrollmentError::Duplicate`]
            /// (this secret is already saved for `user`) change nothing.
            pub async fn save_pending(
                &self,
                user: &UserId,
                secret: &TotpSecret,
                config: TotpConfig,
                now: SystemTime,
            ) -> Result<EnrollmentId, TotpEnrollmentError> {
                // The parameters are checked by computing one code with them (there is no
                // other public check); the code is dropped.
                secret
                    .code_at(config, 0)
                    .map_err(TotpEnrollmentError::Refused)?;
                let enrollment = secret.enrollment_id(user);
                let config = config_to_db(config);
                let context = seal_context(user, &enrollment, &config)?;
                let sealed =
                    secret
                        .seal(self.sealer.as_ref(), &context)
                        .await
                        .map_err(|e| match e {
                            mcpsec_mfa::Error::Store(e) => TotpEnrollmentError::Store(e),
                            refused => TotpEnrollmentError::Refused(refused),
                        })?;
                // One conditional insert: an existing (user, enrollment) is left as it is.
                let saved: Option<i64> = sqlx::query_scalar(<$db as EnrollmentSql>::SAVE)
                    .bind(user.as_str())
                    .bind(&enrollment.0[..])
                    .bind(sealed.as_slice())
                    .bind(config.as_str())
                    .bind(to_db(now)?)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("save a TOTP enrollment", e))?;
                match saved {
                    Some(_) => Ok(enrollment),
                    None => Err(TotpEnrollmentError::Duplicate),
                }
            }

            /// Confirms `user`'s pending `enrollment` at `now` (after a first valid code).
            pub async fn confirm(
                &self,
                user: &UserId,
                enrollment: &EnrollmentId,
                now: SystemTime,
            ) -> Result<Confirmation, StoreError> {
                // One conditional UPDATE: `confirmed_at IS NULL` is checked under the row
                // lock (PostgreSQL) or the write lock (SQLite), so of concurrent
                // confirmations exactly one returns a row.
                let confirmed: Option<i64> = sqlx::query_scalar(<$db as EnrollmentSql>::CONFIRM)
                    .bind(user.as_str())
                    .bind(&enrollment.0[..])
                    .bind(to_db(now)?)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("confirm a TOTP enrollment", e))?;
                if confirmed.is_some() {
                    return Ok(Confirmation::Confirmed);
                }
                // Nothing was written; which refusal it was, for the answer only.
                let exists: bool = sqlx::query_scalar(<$db as EnrollmentSql>::EXISTS)
                    .bind(user.as_str())
                    .bind(&enrollment.0[..])
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| store_error("read a TOTP enrollment", e))?;
                Ok(if exists {
                    Confirmation::AlreadyConfirmed
                } else {
                    Confirmation::Unknown
                })
            }

            /// `user`'s `enrollment` with its secret opened; `None` when there is none.
            /// A sealed secret that does not open for this row (copied from another row,
            /// edited) is [`TotpEnrollmentError::Unsealable`].
            pub async fn load(
                &self,
                user: &UserId,
                enrollment: &EnrollmentId,
            ) -> Result<Option<LoadedEnrollment>, TotpEnrollmentError> {
                let row: Option<(Vec<u8>, String, i64, Option<i64>)> =
                    sqlx::query_as(<$db as EnrollmentSql>::LOAD)
                        .bind(user.as_str())
                        .bind(&enrollment.0[..])
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| store_error("read a TOTP enrollment", e))?;
                let Some((sealed, config_text, created_at, confirmed_at)) = row else {
                    return Ok(None);
                };
                let config = config_from_db(&config_text)?;
                let context = seal_context(user, enrollment, &config_text)?;
                let bytes = self
                    .sealer
                    .open(&sealed, &context)
                    .await
                    .map_err(|e| match e {
                        mcpsec_core::Error::Store(e) => TotpEnrollmentError::Store(e),
                        other => TotpEnrollmentError::Unsealable(other),
                    })?;
                let secret = TotpSecret::from_bytes(bytes).map_err(|e| {
                    StoreError::corrupt("a sealed TOTP secret of the wrong length").with_source(e)
                })?;
                // The id is a hash of the user and the secret: a second check, past the
                // sealer's, that this secret belongs to this row.
                if secret.enrollment_id(user) != *enrollment {
                    return Err(TotpEnrollmentError::Unsealable(mcpsec_core::Error::Open));
                }
                Ok(Some(LoadedEnrollment {
                    secret,
                    config,
                    state: state_from(*enrollment, created_at, confirmed_at)?,
                }))
            }

            /// `user`'s enrollments, oldest first: ids and state only, nothing opened.
            pub async fn list(&self, user: &UserId) -> Result<Vec<EnrollmentState>, StoreError> {
                let rows: Vec<(Vec<u8>, i64, Option<i64>)> =
                    sqlx::query_as(<$db as EnrollmentSql>::LIST)
                        .bind(user.as_str())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(|e| store_error("list TOTP enrollments", e))?;
                rows.into_iter()
                    .map(|(enrollment, created, confirmed)| {
                        state_from(enrollment_from_db(&enrollment)?, created, confirmed)
                    })
                    .collect()
            }

            /// Removes `user`'s `enrollment`; whether there was one.
            pub async fn remove(
                &self,
                user: &UserId,
                enrollment: &EnrollmentId,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(<$db as EnrollmentSql>::REMOVE)
                    .bind(user.as_str())
                    .bind(&enrollment.0[..])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| store_error("remove a TOTP enrollment", e))?;
                Ok(done.is_some())
            }
        }
    };
}

for_each_backend!(impl_totp_enrollments);
