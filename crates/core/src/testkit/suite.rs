//! The one convention every mcpsec conformance suite follows, so a SQL or Redis backend
//! gets each case as its own named test.
//!
//! A suite is a module of `pub async fn <case>(subject: S)` functions, one per property,
//! each taking a fresh subject (a store handle, or a harness that also writes fixtures),
//! plus a macro named `<suite>_suite!` that expands every case into a
//! `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` inside a module named
//! after the backend (RustCrypto's `aead::dev::new_test!` is the model):
//!
//! ```ignore
//! mcpsec_tokens::refresh_store_suite!(postgres, |ns: mcpsec_core::testkit::Namespace| async move {
//!     Arc::new(PgRefreshStore::connect_fresh_schema(ns.as_str()).await) as Arc<dyn RefreshTokenStore>
//! });
//! // -> postgres::concurrent_consume_one_wins, postgres::reuse_is_reported, …
//! ```
//!
//! The factory is an async closure taking a [`Namespace`] unique to the backend, the suite
//! and the case: a SQL backend makes a fresh schema (or a key prefix in Redis) under that
//! name, so cases run in parallel without seeing each other's rows. A case that needs two
//! handles on one backend (two service instances sharing a store) clones the one it gets;
//! it never calls the factory itself.
//!
//! Suite macros are written with [`conformance_suite!`](crate::conformance_suite); the
//! calling crate needs tokio with the `macros` and `rt-multi-thread` features.

/// The name of one case run against one backend: `{backend}__{suite}__{case}`, lowercase
/// ASCII letters, digits and `_` only, at most [`Namespace::MAX_LEN`] bytes (a longer name
/// keeps its start and ends in a hash of the whole), so it is a valid PostgreSQL schema
/// name, SQLite file stem or Redis key prefix as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// PostgreSQL's identifier limit.
    pub const MAX_LEN: usize = 63;

    /// The namespace of `case` of `suite` run against `backend`.
    pub fn new(backend: &str, suite: &str, case: &str) -> Self {
        let full: String = format!("{backend}__{suite}__{case}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        if full.len() <= Self::MAX_LEN {
            return Self(full);
        }
        // FNV-1a: deterministic across runs and platforms, enough to keep names apart.
        let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let keep = Self::MAX_LEN - 17;
        Self(format!(
            "{}_{hash:016x}",
            full.get(..keep).unwrap_or_default()
        ))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Expands a suite's cases into named tests for one backend; the building block of every
/// `<suite>_suite!` macro in the workspace.
///
/// ```ignore
/// #[macro_export]
/// macro_rules! my_store_suite {
///     ($backend:ident, $factory:expr) => {
///         $crate::testkit::__conformance_suite!(
///             suite = "my_store",
///             cases = [$crate::testkit::my_store],
///             backend = $backend,
///             factory = $factory,
///             tests = [first_case, second_case],
///         );
///     };
/// }
/// ```
///
/// Each test builds the [`Namespace`] for its case, awaits `factory(namespace)` for a fresh
/// subject and runs `cases::<case>(subject)`.
#[macro_export]
macro_rules! conformance_suite {
    (
        suite = $suite:literal,
        cases = [$($cases:tt)*],
        backend = $backend:ident,
        factory = $factory:expr,
        tests = [$($case:ident),+ $(,)?] $(,)?
    ) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            use $($cases)* as __cases;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let namespace = $crate::testkit::Namespace::new(
                        ::core::stringify!($backend),
                        $suite,
                        ::core::stringify!($case),
                    );
                    let subject = ($factory)(namespace).await;
                    __cases::$case(subject).await;
                }
            )+
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_identifiers_and_distinct() {
        let a = Namespace::new("postgres", "refresh_store", "concurrent_consume_one_wins");
        assert_eq!(
            a.as_str(),
            "postgres__refresh_store__concurrent_consume_one_wins"
        );
        let long = "x".repeat(80);
        let b = Namespace::new("memory", &long, "a");
        let c = Namespace::new("memory", &long, "b");
        assert_eq!(b.as_str().len(), Namespace::MAX_LEN);
        assert_ne!(b, c, "the hash keeps long names apart");
        assert!(
            Namespace::new("Sql-Lite", "s", "c")
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
    }
}
