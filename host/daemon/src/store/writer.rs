//! The store's writer: one write connection, committing in groups.
//!
//! A write is a job put in a queue. Whoever holds the write connection runs
//! every job queued at that moment (up to [`MAX_GROUP`]) in one transaction —
//! each inside its own savepoint, so a job that fails is rolled back alone —
//! commits once, and only then answers each job's caller. A caller that finds
//! the connection free takes it and commits its own job (and any that queued
//! meanwhile) on its own thread, so an uncontended write costs no hand-off
//! between threads; callers that arrive while a commit is in flight queue, and
//! the next holder commits them all together (classic leader/follower group
//! commit). Either way a caller learns of its write only once it is durable
//! ("persisted before reported"), and under load a commit's fixed cost is paid
//! once for many transitions.
//!
//! Async callers (the engine's journal) [`Writer::submit`] instead: the job
//! is queued and the caller's task awaits its answer while a writer thread
//! from tokio's blocking pool commits whatever is queued, group after group,
//! until the queue is empty. No tokio worker ever waits for SQLite.

use super::{StoreError, StoreResult};
use rusqlite::Connection;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

/// The most jobs committed together.
pub const MAX_GROUP: usize = 256;

/// What to do once the group's commit is known (`None`: committed; `Some`: why not).
type Answer = Box<dyn FnOnce(Option<&CommitFailure>) + Send>;

/// One write waiting for a commit.
trait Job: Send {
    /// Do the work inside the group's transaction (`alone`: the only job in
    /// it); returns whether it worked, and its answer for after the commit.
    fn run(self: Box<Self>, conn: &Connection, alone: bool) -> (bool, Answer);
    /// Answer with `failure` without running (the transaction could not begin).
    fn fail(self: Box<Self>, failure: &CommitFailure);
}

/// Where a job's result goes: a blocked caller's channel or an awaiting task's.
type Reply<R> = Box<dyn FnOnce(StoreResult<R>) + Send>;

/// A [`Job`] running `f` and replying with its result.
struct Write<R, F> {
    f: F,
    reply: Reply<R>,
    path: Arc<PathBuf>,
}

impl<R, F> Job for Write<R, F>
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection, alone: bool) -> (bool, Answer) {
        let Write { f, reply, path } = *self;
        // Alone in its group, a failed job rolls the whole transaction back
        // (see `commit_queued`): no savepoint needed.
        let result = if alone { f(conn) } else { in_savepoint(conn, &path, f) };
        let ok = result.is_ok();
        let answer: Answer = Box::new(move |failure| {
            reply(match failure {
                Some(failure) if ok => Err(failure.error(&path)),
                _ => result,
            });
        });
        (ok, answer)
    }

    fn fail(self: Box<Self>, failure: &CommitFailure) {
        (self.reply)(Err(failure.error(&self.path)));
    }
}

/// Why a group was not committed, reproducible for every job in it.
#[derive(Debug)]
pub(super) struct CommitFailure {
    code: Option<rusqlite::ffi::Error>,
    message: String,
}

impl CommitFailure {
    fn of(e: &rusqlite::Error) -> Self {
        let code = match e {
            rusqlite::Error::SqliteFailure(code, _) => Some(*code),
            _ => None,
        };
        Self { code, message: e.to_string() }
    }

    fn error(&self, path: &Path) -> StoreError {
        let code = self.code.unwrap_or_else(|| rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR));
        let source = rusqlite::Error::SqliteFailure(code, Some(self.message.clone()));
        StoreError::Sqlite { path: path.to_owned(), source }
    }
}

/// The write connection and the queue of writes waiting for it.
pub(super) struct Writer {
    conn: Mutex<Connection>,
    queue: Mutex<Vec<Box<dyn Job>>>,
    path: Arc<PathBuf>,
    /// Transactions committed (or tried): fewer than the writes under load.
    commits: AtomicU64,
    /// A writer thread is committing submitted jobs.
    committing: AtomicBool,
}

impl Writer {
    /// A writer on `conn`, the database at `path`.
    pub(super) fn new(conn: Connection, path: Arc<PathBuf>) -> Self {
        Self {
            conn: Mutex::new(conn),
            queue: Mutex::default(),
            path,
            commits: AtomicU64::new(0),
            committing: AtomicBool::new(false),
        }
    }

    /// How many transactions have been committed (or tried).
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Run `f` in the next group's transaction; return its result once the
    /// group is committed (or the commit's error). Blocks the calling thread.
    ///
    /// `f` may run on another caller's thread: give it owned data (serialise
    /// records before calling, which also keeps that work out of the commit).
    pub(super) fn write<R, F>(&self, f: F) -> StoreResult<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (reply, answer) = sync_channel(1);
        let answer: Receiver<StoreResult<R>> = answer;
        self.enqueue(f, Box::new(move |result| drop(reply.send(result))));
        let answered = || match answer.try_recv() {
            Ok(result) => Some(result),
            Err(TryRecvError::Empty) => None,
            // The holder that took our job panicked before answering.
            Err(TryRecvError::Disconnected) => Some(Err(StoreError::Io {
                path: (*self.path).clone(),
                message: "a state write was lost to a panic; it was not committed".into(),
            })),
        };
        loop {
            // Whoever holds the connection commits everything queued, ours
            // included unless an earlier holder already took it.
            let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(result) = answered() {
                return result;
            }
            self.commit_queued(&conn);
            drop(conn);
            if let Some(result) = answered() {
                return result;
            }
        }
    }

    /// Queue `f` for the next group commit and return its result once the
    /// group is committed (or the commit's error), without blocking: a writer
    /// thread from tokio's blocking pool commits while jobs are queued. Call
    /// it inside a tokio runtime. As with [`Self::write`], give `f` owned data.
    pub(super) fn submit<R, F>(self: &Arc<Self>, f: F) -> impl Future<Output = StoreResult<R>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.enqueue(f, Box::new(move |result| drop(reply.send(result))));
        if !self.committing.swap(true, Ordering::AcqRel) {
            let writer = self.clone();
            tokio::task::spawn_blocking(move || writer.commit_while_queued());
        }
        let path = self.path.clone();
        async move {
            // The writer thread panicked before answering.
            answer.await.unwrap_or_else(|_| {
                Err(StoreError::Io {
                    path: (*path).clone(),
                    message: "a state write was lost to a panic; it was not committed".into(),
                })
            })
        }
    }

    fn enqueue<R, F>(&self, f: F, reply: Reply<R>)
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
    {
        let job = Box::new(Write { f, reply, path: self.path.clone() });
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).push(job);
    }

    /// The writer thread: commit groups until nothing is queued.
    fn commit_while_queued(&self) {
        loop {
            while !self.queue.lock().unwrap_or_else(PoisonError::into_inner).is_empty() {
                let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
                // A job that panics (a bug) fails its group (their answers are
                // dropped: "lost to a panic") and must not take the writer
                // thread with it: `committing` would stay set and nothing
                // submitted later would be committed.
                let group = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit_queued(&conn)));
                if group.is_err() {
                    tracing::error!(db = %self.path.display(), "a state write panicked; its group was not committed");
                }
            }
            self.committing.store(false, Ordering::Release);
            // A job queued after the last look and before the flag dropped
            // has nobody to commit it: take the role back.
            let queued = !self.queue.lock().unwrap_or_else(PoisonError::into_inner).is_empty();
            if !queued || self.committing.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }

    /// Take up to [`MAX_GROUP`] queued jobs and commit them together.
    fn commit_queued(&self, conn: &Connection) {
        let group: Vec<Box<dyn Job>> = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let n = queue.len().min(MAX_GROUP);
            queue.drain(..n).collect()
        };
        if group.is_empty() {
            return;
        }
        if !conn.is_autocommit() {
            // A holder panicked inside its transaction: undo what it left.
            let _ = conn.execute_batch("ROLLBACK");
        }
        if let Err(e) = statement(conn, "BEGIN IMMEDIATE") {
            let failure = CommitFailure::of(&e);
            for job in group {
                job.fail(&failure);
            }
            return;
        }
        let alone = group.len() == 1;
        let mut all_ok = true;
        let answers: Vec<Answer> = group
            .into_iter()
            .map(|job| {
                let (ok, answer) = job.run(conn, alone);
                all_ok &= ok;
                answer
            })
            .collect();
        self.commits.fetch_add(1, Ordering::Relaxed);
        // A failed job alone in its group ran without a savepoint: undo it all.
        let end = if alone && !all_ok { "ROLLBACK" } else { "COMMIT" };
        let failure = statement(conn, end).err().map(|e| {
            let _ = statement(conn, "ROLLBACK");
            CommitFailure::of(&e)
        });
        for answer in answers {
            answer(failure.as_ref());
        }
    }
}

/// Run `f` inside a savepoint: kept if it succeeds, undone if it fails.
fn in_savepoint<R>(conn: &Connection, path: &Path, f: impl FnOnce(&Connection) -> StoreResult<R>) -> StoreResult<R> {
    let sql = |e: rusqlite::Error| StoreError::Sqlite { path: path.to_owned(), source: e };
    statement(conn, "SAVEPOINT job").map_err(sql)?;
    let result = f(conn);
    let end = if result.is_ok() { statement(conn, "RELEASE job") } else { statement(conn, "ROLLBACK TO job") };
    let released = if result.is_ok() { end } else { end.and_then(|()| statement(conn, "RELEASE job")) };
    match released {
        Ok(()) => result,
        Err(e) => result.and(Err(sql(e))),
    }
}

/// Run one fixed statement, prepared once per connection.
fn statement(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> (tempfile::TempDir, Writer, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
        let reader = Connection::open(&path).unwrap();
        (dir, Writer::new(conn, Arc::new(path)), reader)
    }

    fn insert(w: &Writer, k: i64) -> StoreResult<usize> {
        w.write(move |c| {
            c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                .map_err(|source| StoreError::Sqlite { path: PathBuf::new(), source })
        })
    }

    #[test]
    fn concurrent_writes_all_land_in_fewer_commits_and_a_failing_one_fails_alone() {
        let (_dir, writer, reader) = writer();
        let writer = Arc::new(writer);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        // Key 0 is written by every thread: all but one of those fail
                        // (a duplicate key), without undoing the others' writes.
                        let k = if i == 50 { 0 } else { t * 1000 + i + 1 };
                        let result = insert(&writer, k);
                        if k != 0 {
                            assert_eq!(result.unwrap(), 1);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let rows: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 8 * 99 + 1, "every write but the duplicate keys");
        // Eight writers at once: writes queue while a commit is in flight and share the next.
        assert!(writer.commits() < 800, "{} commits for 800 writes: no group formed", writer.commits());
    }

    #[test]
    fn a_write_that_fails_halfway_leaves_nothing_alone_or_in_a_group() {
        let (_dir, writer, reader) = writer();
        let writer = Arc::new(writer);
        let half = |w: &Writer, k: i64| {
            w.write(move |c| {
                let sql = |source| StoreError::Sqlite { path: PathBuf::new(), source };
                c.execute("INSERT INTO t (k, v) VALUES (?1, 'first')", [k]).map_err(sql)?;
                c.execute("INSERT INTO t (k, v) VALUES (?1, 'again')", [k]).map_err(sql)
            })
        };
        // Alone (nothing else queued): the transaction is rolled back.
        assert!(half(&writer, 1).is_err());
        // Beside other writers: its savepoint is rolled back, theirs commit.
        let others: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        insert(&writer, 100 + t * 100 + i).unwrap();
                    }
                })
            })
            .collect();
        for k in 2..40 {
            assert!(half(&writer, k).is_err());
        }
        for thread in others {
            thread.join().unwrap();
        }
        let firsts: i64 = reader.query_row("SELECT COUNT(*) FROM t WHERE v = 'first'", [], |r| r.get(0)).unwrap();
        assert_eq!(firsts, 0, "no half-done write survives");
        let rows: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submitted_writes_commit_in_groups_without_blocking_their_tasks() {
        let (_dir, writer, reader) = writer();
        let writer = Arc::new(writer);
        let tasks: Vec<_> = (0..200)
            .map(|k| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .submit(move |c| {
                            c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                                .map_err(|source| StoreError::Sqlite { path: PathBuf::new(), source })
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), 1);
        }
        let rows: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 200, "every submitted write is committed once it is answered");
        assert!(writer.commits() < 200, "{} commits for 200 writes: no group formed", writer.commits());
        // A failing job fails alone, and blocking writers share the same queue.
        let dup = writer.submit(|c| {
            c.execute("INSERT INTO t (k, v) VALUES (1, 'again')", [])
                .map_err(|source| StoreError::Sqlite { path: PathBuf::new(), source })
        });
        assert!(dup.await.is_err());
        let blocking = writer.clone();
        tokio::task::spawn_blocking(move || insert(&blocking, 1000)).await.unwrap().unwrap();
        let rows: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 201);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_write_that_panics_fails_its_group_and_later_writes_still_commit() {
        let (_dir, writer, reader) = writer();
        let writer = Arc::new(writer);
        let boom = writer.submit(|_| -> StoreResult<()> { panic!("a bug in a state write") });
        let err = boom.await.unwrap_err().to_string();
        assert!(err.contains("lost to a panic"), "{err}");
        for k in 1..=3 {
            let later = writer.submit(move |c| {
                c.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
                    .map_err(|source| StoreError::Sqlite { path: PathBuf::new(), source })
            });
            let answered = tokio::time::timeout(std::time::Duration::from_secs(10), later).await;
            assert_eq!(answered.expect("a write submitted after a panic is committed").unwrap(), 1);
        }
        let rows: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 3);
    }

    #[test]
    fn a_write_is_visible_to_other_connections_when_it_returns() {
        let (_dir, writer, reader) = writer();
        for k in 1..=20 {
            insert(&writer, k).unwrap();
            let seen: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
            assert_eq!(seen, k);
        }
    }

    #[test]
    fn a_failed_commit_fails_its_writes_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).unwrap();
        // A deferred foreign-key violation passes its statement and fails at COMMIT.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE child (p INTEGER REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let writer = Writer::new(conn, Arc::new(path.clone()));
        let orphan = writer.write(|c| {
            c.execute("INSERT INTO child (p) VALUES (42)", [])
                .map_err(|source| StoreError::Sqlite { path: PathBuf::new(), source })
        });
        let err = orphan.unwrap_err().to_string();
        assert!(err.contains("FOREIGN KEY"), "{err}");
        assert!(err.contains("w.db"), "names the database: {err}");
        insert(&writer, 42).unwrap();
        writer
            .write(|c| {
                c.execute("INSERT INTO child (p) VALUES (42)", [])
                    .map_err(|source| StoreError::Sqlite { path: PathBuf::new(), source })
            })
            .unwrap();
        let reader = Connection::open(&path).unwrap();
        let children: i64 = reader.query_row("SELECT COUNT(*) FROM child", [], |r| r.get(0)).unwrap();
        assert_eq!(children, 1, "the failed group left nothing behind");
    }
}
