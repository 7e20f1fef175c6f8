//! The pruning calls that keep tables bounded (the traits have none: the memory stores
//! bound themselves), on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mcpsec_core::testkit::Namespace;
use mcpsec_core::{AttemptCounter, Label, TokenId, UserId};
use mcpsec_mfa::{AttemptOutcome, ChallengeKey, ChallengeRecord, Cooldown, EmailCodeStore};
use mcpsec_store_sql::{SqlAttemptCounter, SqlEmailCodeStore};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600 + secs)
}

const WINDOW: Duration = Duration::from_secs(60);

macro_rules! prune_tests {
    ($backend:ident, $pool:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn attempt_counter_prune_drops_ended_windows_and_keeps_live_ones() {
                let ns = Namespace::new(stringify!($backend), "prune", "attempts");
                let Some(pool) = $pool(&ns).await else { return };
                let c = SqlAttemptCounter::new(pool);
                c.record_failure("old", WINDOW, at(0)).await.unwrap();
                c.record_failure("live", WINDOW, at(50)).await.unwrap();
                c.record_failure("zero", WINDOW, at(50)).await.unwrap();
                c.release("zero", WINDOW, at(51)).await.unwrap();
                assert_eq!(c.prune(WINDOW, at(60)).await.unwrap(), 2, "old and zero");
                assert_eq!(
                    c.state("live", WINDOW, at(60))
                        .await
                        .unwrap()
                        .map(|s| s.count),
                    Some(1)
                );
                assert_eq!(
                    c.record_failure("old", WINDOW, at(61)).await.unwrap().count,
                    1
                );
            }

            #[tokio::test]
            async fn email_prune_drops_expired_challenges_and_ended_cooldowns() {
                let ns = Namespace::new(stringify!($backend), "prune", "email");
                let Some(pool) = $pool(&ns).await else { return };
                let s = SqlEmailCodeStore::new(pool);
                let key = |flow: &str| ChallengeKey {
                    user: UserId::new("alice").unwrap(),
                    purpose: Label::new("login").unwrap(),
                    flow: TokenId::new(flow).unwrap(),
                };
                let record = |sent: u64| ChallengeRecord {
                    hash: [1; 32],
                    sent_at: at(sent),
                    expires_at: at(sent + 600),
                    attempts: 0,
                };
                s.put(&key("old"), record(0)).await.unwrap();
                s.put(&key("new"), record(300)).await.unwrap();
                let (alice, login) = (UserId::new("alice").unwrap(), Label::new("login").unwrap());
                assert_eq!(
                    s.try_start_cooldown(&alice, &login, at(0), at(60))
                        .await
                        .unwrap(),
                    Cooldown::Started
                );
                assert_eq!(
                    s.prune(at(600)).await.unwrap(),
                    2,
                    "the old challenge and the cooldown"
                );
                assert_eq!(
                    s.attempt(&key("old"), &[1; 32], at(601), 5).await.unwrap(),
                    AttemptOutcome::NotFound
                );
                assert_eq!(
                    s.attempt(&key("new"), &[1; 32], at(601), 5).await.unwrap(),
                    AttemptOutcome::Consumed
                );
            }
        }
    };
}

async fn sqlite(ns: &Namespace) -> Option<sqlx::SqlitePool> {
    Some(common::sqlite_pool(ns).await)
}

prune_tests!(sqlite, sqlite);
prune_tests!(postgres, common::pg_pool);
