//! openraft's own conformance suite for log storage and state machines, run against the
//! quorum's durable files: vote, append, truncate, purge, snapshot install and reads, each
//! checked the way openraft relies on them.

mod common;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use weir_quorum::{LogStore, StateMachine, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        let sm = StateMachine::open(dir.path(), Box::<common::Applied>::default()).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn the_durable_store_passes_openrafts_storage_suite() {
    glommio::LocalExecutor::default().run(async {
        Suite::test_all(Builder).await.unwrap();
    });
}
