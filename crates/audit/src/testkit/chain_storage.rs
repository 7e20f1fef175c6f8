//! The [`ChainStorage`] conformance suite: one public async function per case, each taking
//! a fresh [`ChainStorageHarness`], and [`chain_storage_suite!`](crate::chain_storage_suite)
//! to expand them into named `#[tokio::test]`s for a backend. The cases drive a real
//! [`ChainSink`] over the backend, so what they check is what a host gets: the chain is
//! the sink's, the backend must keep it whole.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test suite: failing loudly is its job"
)]

use crate::record::Entry;
use crate::{
    ChainConfig, ChainSink, ChainStorage, CheckpointKey, CheckpointPolicy, FileSinkConfig,
    MemoryChainStorage, Record, VerifyOptions, verify_bytes,
};
use mcpsec_core::{EventKind, ManualClock, Outcome, SecurityEvent, ServiceId, SharedClock, UserId};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// A backend under test, in a namespace of its own (a fresh file, a fresh schema).
#[async_trait::async_trait]
pub trait ChainStorageHarness: Send + Sync {
    /// Opens the backend: empty the first time, holding what was stored since after that
    /// (the previous storage has been dropped: a reopen after a clean close or a crash).
    async fn open(&self) -> Box<dyn ChainStorage>;
    /// Every record stored so far, in order.
    async fn stored(&self) -> Vec<Record>;
    /// While `refuse` is true, appends must fail and store nothing (a full disk, a
    /// rolled-back transaction).
    fn refuse_appends(&self, refuse: bool);
}

static KEY: LazyLock<Arc<CheckpointKey>> =
    LazyLock::new(|| Arc::new(CheckpointKey::generate().expect("key generation")));

fn clock() -> SharedClock {
    Arc::new(ManualClock::at_unix(1_767_225_600))
}

fn chain(signed: bool) -> ChainConfig {
    let chain = ChainConfig::new(ServiceId::new("conformance").unwrap());
    if signed {
        chain.with_checkpoints(
            KEY.clone(),
            CheckpointPolicy {
                every_records: 1000,
                every: Duration::from_secs(3600),
            },
        )
    } else {
        chain
    }
}

async fn sink(h: &impl ChainStorageHarness, signed: bool) -> ChainSink {
    ChainSink::with_storage(h.open().await, FileSinkConfig::new(chain(signed), clock())).unwrap()
}

/// A refresh-token reuse: critical, so acknowledged only once stored.
fn critical(user: &str) -> SecurityEvent {
    SecurityEvent::new(
        EventKind::AuthnTokenReuse,
        Outcome::Failure,
        std::time::UNIX_EPOCH,
    )
    .with_user(UserId::new(user).unwrap())
}

fn users(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.entry {
            Entry::Event { event, .. } => match &event.actor {
                mcpsec_core::Actor::User { user } => Some(user.as_str().to_owned()),
                _ => Some(event.kind.as_str().to_owned()),
            },
            _ => None,
        })
        .collect()
}

fn verify(records: &[Record]) -> crate::Report {
    let mut text = Vec::new();
    for r in records {
        r.write_json(&mut text).unwrap();
        text.push(b'\n');
    }
    let options = VerifyOptions::with_keys(vec![*KEY.public_key()]).allow_unsigned_tail();
    verify_bytes(&text, &options).expect("the stored chain verifies")
}

/// A critical event is stored when the sink acknowledges it, before any close.
pub async fn acknowledged_critical_event_is_stored(h: impl ChainStorageHarness) {
    let sink = sink(&h, true).await;
    sink.append(critical("ada")).await.unwrap();
    assert_eq!(users(&h.stored().await), ["ada"]);
    sink.close().unwrap();
}

/// Batches are stored whole and in order, and the stored chain verifies.
pub async fn batches_are_stored_in_order_and_verify(h: impl ChainStorageHarness) {
    let sink = sink(&h, true).await;
    let names: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
    for name in &names {
        let event = SecurityEvent::new(
            EventKind::AuthnLoginFail,
            Outcome::Failure,
            std::time::UNIX_EPOCH,
        )
        .with_user(UserId::new(name.as_str()).unwrap());
        sink.append(event).await.unwrap();
    }
    sink.close().unwrap();
    let stored = h.stored().await;
    assert_eq!(users(&stored), names);
    let seqs: Vec<u64> = stored.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=21).collect::<Vec<_>>(),
        "20 events and a checkpoint"
    );
    assert_eq!(verify(&stored).records, 21);
}

/// A refused batch stores nothing, its critical caller gets an error, and the chain goes
/// on without a hole: the next batch starts with the gap record.
pub async fn refused_batch_stores_nothing_and_the_chain_goes_on(h: impl ChainStorageHarness) {
    let sink = sink(&h, true).await;
    sink.append(critical("before")).await.unwrap();
    h.refuse_appends(true);
    assert!(sink.append(critical("lost")).await.is_err());
    h.refuse_appends(false);
    sink.append(critical("after")).await.unwrap();
    sink.close().unwrap();
    let stored = h.stored().await;
    assert_eq!(users(&stored), ["before", "sys_monitor_disabled", "after"]);
    assert_eq!(sink.write_failures(), 1);
    verify(&stored);
}

/// Reopening resumes the chain at the stored head: one chain across both runs.
pub async fn reopening_resumes_the_chain(h: impl ChainStorageHarness) {
    let first = sink(&h, true).await;
    first.append(critical("ada")).await.unwrap();
    first.close().unwrap();
    drop(first);
    let second = sink(&h, true).await;
    assert_eq!(
        second.unverified_tail(),
        None,
        "a checkpoint closed the first run"
    );
    second.append(critical("bob")).await.unwrap();
    second.close().unwrap();
    let stored = h.stored().await;
    assert_eq!(users(&stored), ["ada", "bob"]);
    let report = verify(&stored);
    assert_eq!(report.chains.len(), 1);
    assert_eq!(stored.last().map(|r| r.seq), Some(4));
}

/// Records after the last signed one are sealed off as unverified when a sink with the
/// key reopens the storage, never adopted by its next checkpoint.
pub async fn unsigned_tail_is_sealed_on_reopen(h: impl ChainStorageHarness) {
    let unsigned = sink(&h, false).await;
    unsigned.append(critical("ada")).await.unwrap();
    unsigned.append(critical("bob")).await.unwrap();
    unsigned.close().unwrap();
    drop(unsigned);
    let signed = sink(&h, true).await;
    assert_eq!(signed.unverified_tail(), Some((1, 2)));
    signed.close().unwrap();
    let stored = h.stored().await;
    assert!(matches!(
        stored.get(2).map(|r| &r.entry),
        Some(Entry::Unverified(seal)) if (seal.from, seal.to) == (1, 2)
    ));
    assert_eq!(verify(&stored).unverified.len(), 1);
}

/// Expands the [`ChainStorage`] suite into one named `#[tokio::test]` per case, in a
/// module named after the backend: `chain_storage_suite!(file, async { MyHarness::new() })`
/// gives `file::refused_batch_stores_nothing_and_the_chain_goes_on` and so on. The
/// expression is evaluated once per test, so each case gets a fresh namespace. The calling
/// crate needs tokio with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! chain_storage_suite {
    ($backend:ident, $harness:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::chain_storage_suite!(@cases $harness;
                acknowledged_critical_event_is_stored,
                batches_are_stored_in_order_and_verify,
                refused_batch_stores_nothing_and_the_chain_goes_on,
                reopening_resumes_the_chain,
                unsigned_tail_is_sealed_on_reopen,
            );
        }
    };
    (@cases $harness:expr; $($case:ident,)+) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::testkit::chain_storage::$case($harness.await).await;
            }
        )+
    };
}

/// The memory backend's harness.
#[derive(Debug, Default)]
pub struct MemoryHarness(MemoryChainStorage);

impl MemoryHarness {
    /// A fresh, empty backend.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl ChainStorageHarness for MemoryHarness {
    async fn open(&self) -> Box<dyn ChainStorage> {
        Box::new(self.0.clone())
    }
    async fn stored(&self) -> Vec<Record> {
        self.0.records()
    }
    fn refuse_appends(&self, refuse: bool) {
        self.0.refuse_appends(refuse);
    }
}

/// The file backend's harness: a fresh log file in its own directory, removed on drop.
#[derive(Debug)]
pub struct FileHarness {
    dir: PathBuf,
    faults: Arc<crate::WriteFaults>,
}

impl FileHarness {
    /// A fresh directory under the system's temporary directory, named by `name` and the
    /// process id.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mcpsec-chain-storage-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        FileHarness {
            dir,
            faults: Arc::default(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }
}

impl Drop for FileHarness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[async_trait::async_trait]
impl ChainStorageHarness for FileHarness {
    async fn open(&self) -> Box<dyn ChainStorage> {
        let instance = ServiceId::new("conformance").unwrap();
        let storage = crate::FileStorage::open(
            &self.path(),
            &instance,
            std::slice::from_ref(KEY.public_key()),
            None,
        )
        .unwrap()
        .with_write_faults(Some(self.faults.clone()));
        Box::new(storage)
    }
    async fn stored(&self) -> Vec<Record> {
        let text = std::fs::read(self.path()).unwrap();
        text.split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| Record::parse(line).unwrap())
            .collect()
    }
    fn refuse_appends(&self, refuse: bool) {
        self.faults.set_full(refuse);
    }
}
