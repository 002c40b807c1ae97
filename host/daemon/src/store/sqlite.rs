//! [`Store`] for [`SqliteStore`]: the async facade over its blocking methods.
//!
//! Writes of the engine's transitions go to the writer thread (group commit,
//! see the `writer` module) and their futures resolve once committed; every
//! other call, read or write, runs on tokio's blocking pool, so no tokio
//! worker ever waits for SQLite.

use super::{
    Event, ExecutionFilter, ExecutionMeta, ExecutionSummary, Fire, ScheduleRow, SecretRow, SourceFormat, SqliteStore,
    Store, StoreError, StoreFuture, StoreResult, StoredExecution, TemplateRow, Transaction, TransactionState,
    WorkflowRow,
};
use crate::dbfile::FileChanged;
use crate::store::HookRow;
use plexus_workflow::status::{CompensationRecord, ExecutionStatus, ItemRecord, StepRecord, WorkflowStatus};
use serde_json::{Map, Value};
use std::future::IntoFuture;

impl SqliteStore {
    /// Run the blocking `f` on tokio's blocking pool.
    fn blocking<T, F>(&self, f: F) -> StoreFuture<T>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteStore) -> StoreResult<T> + Send + 'static,
    {
        let this = self.clone();
        Box::pin(async move {
            let path = this.path().to_owned();
            tokio::task::spawn_blocking(move || f(&this))
                .await
                .unwrap_or_else(|e| Err(StoreError::Io { path, message: format!("a store task failed: {e}") }))
        })
    }
}

impl Store for SqliteStore {
    fn put_workflow(&self, id: &str, source: &str, format: SourceFormat) -> StoreFuture<(u32, bool)> {
        let (id, source) = (id.to_owned(), source.to_owned());
        self.blocking(move |s| s.put_workflow(&id, &source, format))
    }

    fn workflow(&self, id: &str, version: Option<u32>) -> StoreFuture<Option<WorkflowRow>> {
        let id = id.to_owned();
        self.blocking(move |s| s.workflow(&id, version))
    }

    fn workflows(&self) -> StoreFuture<Vec<WorkflowRow>> {
        self.blocking(SqliteStore::workflows)
    }

    fn delete_workflow(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.blocking(move |s| s.delete_workflow(&id))
    }

    fn workflow_versions(&self, id: &str) -> StoreFuture<Vec<WorkflowRow>> {
        let id = id.to_owned();
        self.blocking(move |s| s.workflow_versions(&id))
    }

    fn delete_all_workflows(&self) -> StoreFuture<usize> {
        self.blocking(SqliteStore::delete_all_workflows)
    }

    fn put_template(&self, id: &str, source: &str) -> StoreFuture<u64> {
        let (id, source) = (id.to_owned(), source.to_owned());
        self.blocking(move |s| s.put_template(&id, &source))
    }

    fn template(&self, id: &str) -> StoreFuture<Option<TemplateRow>> {
        let id = id.to_owned();
        self.blocking(move |s| s.template(&id))
    }

    fn templates(&self) -> StoreFuture<Vec<TemplateRow>> {
        self.blocking(SqliteStore::templates)
    }

    fn delete_template(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.blocking(move |s| s.delete_template(&id))
    }

    fn insert_hook(&self, row: &HookRow) -> StoreFuture<bool> {
        let row = row.clone();
        self.blocking(move |s| s.insert_hook(&row))
    }

    fn hooks(&self) -> StoreFuture<Vec<HookRow>> {
        self.blocking(SqliteStore::hooks)
    }

    fn hook(&self, id: &str) -> StoreFuture<Option<HookRow>> {
        let id = id.to_owned();
        self.blocking(move |s| s.hook(&id))
    }

    fn delete_hook(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.blocking(move |s| s.delete_hook(&id))
    }

    fn claim_delivery(&self, hook: &str, delivery: &str, at_ms: u64, forget_before_ms: u64) -> StoreFuture<bool> {
        let (hook, delivery) = (hook.to_owned(), delivery.to_owned());
        self.blocking(move |s| s.claim_delivery(&hook, &delivery, at_ms, forget_before_ms))
    }

    fn finish_delivery(&self, hook: &str, delivery: &str, execution: Option<&str>) -> StoreFuture<()> {
        let (hook, delivery, execution) = (hook.to_owned(), delivery.to_owned(), execution.map(str::to_owned));
        self.blocking(move |s| s.finish_delivery(&hook, &delivery, execution.as_deref()))
    }

    fn deliveries(&self, hook: &str, limit: u32) -> StoreFuture<Vec<plexus_client::HookDelivery>> {
        let hook = hook.to_owned();
        self.blocking(move |s| s.deliveries(&hook, limit))
    }

    fn put_secret(&self, name: &str, sealed: Vec<u8>, key_id: &str) -> StoreFuture<u64> {
        let (name, key_id) = (name.to_owned(), key_id.to_owned());
        self.blocking(move |s| s.put_secret(&name, sealed, &key_id))
    }

    fn secrets(&self) -> StoreFuture<Vec<SecretRow>> {
        self.blocking(SqliteStore::secrets)
    }

    fn delete_secret(&self, name: &str) -> StoreFuture<bool> {
        let name = name.to_owned();
        self.blocking(move |s| s.delete_secret(&name))
    }

    fn insert_execution(
        &self,
        status: &ExecutionStatus,
        meta: &ExecutionMeta,
        state: &Map<String, Value>,
    ) -> StoreFuture<()> {
        Box::pin(self.prepare_insert(status, meta, state).into_future())
    }

    fn update_execution(&self, status: &ExecutionStatus) -> StoreFuture<()> {
        Box::pin(SqliteStore::update_execution(self, status).into_future())
    }

    fn update_step(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> StoreFuture<()> {
        Box::pin(SqliteStore::update_step(self, execution_id, index, record, state).into_future())
    }

    fn update_step_blocking(
        &self,
        execution_id: &str,
        index: usize,
        record: &StepRecord,
        state: Option<&Map<String, Value>>,
    ) -> StoreResult<()> {
        SqliteStore::update_step(self, execution_id, index, record, state).commit()
    }

    fn update_item(&self, execution_id: &str, step: usize, record: &ItemRecord) -> StoreFuture<()> {
        Box::pin(SqliteStore::update_item(self, execution_id, step, record).into_future())
    }

    fn update_item_blocking(&self, execution_id: &str, step: usize, record: &ItemRecord) -> StoreResult<()> {
        SqliteStore::update_item(self, execution_id, step, record).commit()
    }

    fn items(
        &self,
        execution_id: &str,
        step: Option<usize>,
        after: Option<usize>,
        limit: u32,
    ) -> StoreFuture<Vec<(usize, ItemRecord)>> {
        let id = execution_id.to_owned();
        self.blocking(move |s| s.items(&id, step, after, limit))
    }

    fn put_signal(&self, execution_id: &str, signal: &plexus_client::SignalRecord) -> StoreFuture<bool> {
        Box::pin(SqliteStore::put_signal(self, execution_id, signal).into_future())
    }

    fn signals(&self, execution_id: &str) -> StoreFuture<Vec<plexus_client::SignalRecord>> {
        let id = execution_id.to_owned();
        self.blocking(move |s| s.signals(&id))
    }

    fn delete_signals(&self, execution_id: &str, names: &[String]) -> StoreFuture<()> {
        Box::pin(SqliteStore::delete_signals(self, execution_id, names).into_future())
    }

    fn signalled(&self, ids: &[String], since_ms: u64) -> StoreFuture<Vec<(String, String)>> {
        let ids = ids.to_vec();
        self.blocking(move |s| s.signalled(&ids, since_ms))
    }

    fn link_artifact(&self, execution_id: &str, artifact: &plexus_client::ArtifactRecord) -> StoreFuture<()> {
        Box::pin(SqliteStore::link_artifact(self, execution_id, artifact).into_future())
    }

    fn artifacts(&self, execution_id: &str) -> StoreFuture<Vec<plexus_client::ArtifactRecord>> {
        let id = execution_id.to_owned();
        self.blocking(move |s| s.artifacts(&id))
    }

    fn holds_artifact(&self, ids: &[String], digest: &str) -> StoreFuture<bool> {
        let (ids, digest) = (ids.to_vec(), digest.to_owned());
        self.blocking(move |s| s.holds_artifact(&ids, &digest))
    }

    fn held_artifacts(&self, digests: &[String]) -> StoreFuture<std::collections::HashSet<String>> {
        let digests = digests.to_vec();
        self.blocking(move |s| s.held_artifacts(&digests))
    }

    fn put_compensation(&self, execution_id: &str, seq: usize, record: &CompensationRecord) -> StoreFuture<()> {
        Box::pin(SqliteStore::put_compensation(self, execution_id, seq, record).into_future())
    }

    fn record_snapshot(&self, status: &ExecutionStatus, state: &Map<String, Value>) -> StoreFuture<()> {
        Box::pin(SqliteStore::record_snapshot(self, status, state).into_future())
    }

    fn reset_for_retry(&self, stored: StoredExecution) -> StoreFuture<Option<StoredExecution>> {
        self.blocking(move |s| {
            let mut stored = stored;
            Ok(s.reset_for_retry(&mut stored)?.then_some(stored))
        })
    }

    fn execution(&self, id: &str) -> StoreFuture<Option<StoredExecution>> {
        let id = id.to_owned();
        self.blocking(move |s| s.execution(&id))
    }

    fn execution_status(&self, id: &str) -> StoreFuture<Option<WorkflowStatus>> {
        let id = id.to_owned();
        self.blocking(move |s| s.execution_status(&id))
    }

    fn list_executions(&self, filter: &ExecutionFilter) -> StoreFuture<Vec<ExecutionSummary>> {
        let filter = filter.clone();
        self.blocking(move |s| s.list_executions(&filter))
    }

    fn unfinished_executions(&self) -> StoreFuture<Vec<String>> {
        self.blocking(SqliteStore::unfinished_executions)
    }

    fn execution_counts(&self) -> StoreFuture<Vec<(WorkflowStatus, u64)>> {
        self.blocking(SqliteStore::execution_counts)
    }

    fn events(&self, id: &str, after: i64, limit: u32) -> StoreFuture<Vec<Event>> {
        let id = id.to_owned();
        self.blocking(move |s| s.events(&id, after, limit))
    }

    fn prune(&self, ended_before_ms: u64, limit: u32) -> StoreFuture<usize> {
        self.blocking(move |s| s.prune(ended_before_ms, limit))
    }

    fn insert_transaction(&self, tx: &Transaction) -> StoreFuture<bool> {
        let tx = tx.clone();
        self.blocking(move |s| s.insert_transaction(&tx))
    }

    fn transaction(&self, id: &str) -> StoreFuture<Option<Transaction>> {
        let id = id.to_owned();
        self.blocking(move |s| s.transaction(&id))
    }

    fn update_transaction(&self, tx: &Transaction, from: TransactionState) -> StoreFuture<bool> {
        let tx = tx.clone();
        self.blocking(move |s| s.update_transaction(&tx, from))
    }

    fn transactions_in(&self, state: TransactionState) -> StoreFuture<Vec<String>> {
        self.blocking(move |s| s.transactions_in(state))
    }

    fn list_transactions(
        &self,
        state: Option<TransactionState>,
        limit: u32,
    ) -> StoreFuture<Vec<plexus_client::TransactionSummary>> {
        self.blocking(move |s| s.list_transactions(state, limit))
    }

    fn insert_schedule(&self, id: &str, spec: &Value, enabled: bool, created_at_ms: u64) -> StoreFuture<bool> {
        let (id, spec) = (id.to_owned(), spec.clone());
        self.blocking(move |s| s.insert_schedule(&id, &spec, enabled, created_at_ms))
    }

    fn schedules(&self) -> StoreFuture<Vec<ScheduleRow>> {
        self.blocking(SqliteStore::schedules)
    }

    fn set_schedule_enabled(&self, id: &str, enabled: bool) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.blocking(move |s| s.set_schedule_enabled(&id, enabled))
    }

    fn delete_schedule(&self, id: &str) -> StoreFuture<bool> {
        let id = id.to_owned();
        self.blocking(move |s| s.delete_schedule(&id))
    }

    fn record_fire(&self, id: &str, fire: &Fire, advance: bool) -> StoreFuture<()> {
        let (id, fire) = (id.to_owned(), fire.clone());
        self.blocking(move |s| s.record_fire(&id, &fire, advance))
    }

    fn fires(&self, id: &str, limit: u32) -> StoreFuture<Vec<Fire>> {
        let id = id.to_owned();
        self.blocking(move |s| s.fires(&id, limit))
    }

    fn check_file(&self) -> StoreFuture<Result<(), FileChanged>> {
        self.blocking(|s| Ok(s.check_file()))
    }

    fn probe_write(&self) -> StoreFuture<()> {
        self.blocking(SqliteStore::probe_write)
    }
}
