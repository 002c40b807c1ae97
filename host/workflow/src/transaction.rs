//! Rolling back a transaction: QtForge's `rollback_transaction`, on the
//! engine's compensations (see [`plexus_client::Transaction`] for the rules).

use super::engine::{Engine, Execution, Prepared};
use super::status::{CompensationRecord, StepStatus, WorkflowStatus, epoch_ms};
use plexus_client::TransactionCompensation;
use std::collections::BTreeSet;
use std::sync::Arc;

/// One execution of a transaction, with the workflow version it runs.
pub type Member = (Arc<Prepared>, Arc<Execution>);

impl Engine {
    /// Roll back transaction `id`: run the compensation of every completed
    /// step of every *completed* execution of `members`, newest step end
    /// first across all of them (equal times: the later execution, then the
    /// later step in DAG order, first). Executions that failed or were
    /// cancelled compensated themselves already and are left alone.
    /// Compensations already recorded as completed (a rollback resumed after
    /// a restart) are not run again. Each rolled-back execution ends
    /// [`WorkflowStatus::RolledBack`], or [`WorkflowStatus::RollbackFailed`]
    /// if one of its compensations failed; every compensation failure is
    /// reported and the others still run.
    ///
    /// Returns whether every compensation succeeded, and each compensation in
    /// the order it ran (or had run).
    pub async fn roll_back_transaction(&self, id: &str, members: &[Member]) -> (bool, Vec<TransactionCompensation>) {
        let completed: Vec<usize> =
            (0..members.len()).filter(|&m| members[m].1.lock().status == WorkflowStatus::Completed).collect();
        // (end time, member, DAG rank, step) of every completed step with a compensation.
        let mut plan: Vec<(u64, usize, usize, usize)> = Vec::new();
        for &m in &completed {
            let (prepared, exec) = &members[m];
            let s = exec.lock();
            for (i, r) in s.steps.iter().enumerate() {
                if r.status == StepStatus::Completed && prepared.workflow.compensation(&r.id).is_some() {
                    plan.push((r.ended_at_ms.unwrap_or(0), m, prepared.dag.rank[i], i));
                }
            }
        }
        plan.sort_unstable();
        let mut report = Vec::with_capacity(plan.len());
        let mut failed: BTreeSet<usize> = BTreeSet::new();
        for &(_, m, _, i) in plan.iter().rev() {
            let (prepared, exec) = &members[m];
            let step_id = &prepared.workflow.steps[i].id;
            let earlier: Option<CompensationRecord> = {
                let s = exec.lock();
                s.compensations.iter().find(|c| &c.step == step_id && c.status == StepStatus::Completed).cloned()
            };
            let record = match earlier {
                Some(record) => Some(record),
                None => self.compensate_step(prepared, exec, i).await,
            };
            let Some(record) = record else { continue };
            if record.status != StepStatus::Completed {
                failed.insert(m);
            }
            report.push(TransactionCompensation { execution_id: exec.id().to_owned(), record });
        }
        for &m in &completed {
            let exec = &members[m].1;
            let ok = !failed.contains(&m);
            exec.update_status(|s| {
                s.status = if ok { WorkflowStatus::RolledBack } else { WorkflowStatus::RollbackFailed };
                s.error = Some(if ok {
                    format!("rolled back with transaction `{id}`")
                } else {
                    format!("transaction `{id}` rolled back; a compensation of this execution failed")
                });
                s.ended_at_ms.get_or_insert(epoch_ms(self.clock().now()));
            })
            .await;
            self.host().end_execution(exec.id());
            exec.recorded().await;
        }
        (failed.is_empty(), report)
    }
}
