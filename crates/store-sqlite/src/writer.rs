//! Group commit for every write. Writes queue up while the previous transaction is being
//! written; the writer then runs all of them in the next transaction, each in its own
//! savepoint (one failing write cannot undo the others), and answers each caller only once the
//! transaction is committed. One fsync thus makes many webhooks, turns and sends durable.

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use concierge_store::StoreError;

/// The most writes committed in one transaction.
pub const MAX_BATCH: usize = 512;

/// A write waiting for the next transaction.
pub trait WriteJob: Send {
    /// Runs inside the job's savepoint; returns whether it succeeded (a failed job's savepoint
    /// is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Reports the outcome once the transaction is committed, or failed.
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Job<F, R> {
    work: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> WriteJob for Job<F, R>
where
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let outcome = match (committed, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::unavailable("the write did not run")),
            (Err(e), _) => Err(StoreError::unavailable(e)),
        };
        let _ = self.reply.send(outcome);
    }
}

/// Wraps a write for the queue; the receiver gets its result after the commit.
pub fn job<F, R>(work: F) -> (Box<dyn WriteJob>, oneshot::Receiver<Result<R, StoreError>>)
where
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    R: Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job = Job {
        work: Some(work),
        result: None,
        reply,
    };
    (Box::new(job), answer)
}

/// Runs until every sender of `queue` is gone.
pub async fn run(conn: tokio_rusqlite::Connection, mut queue: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        // If the connection is gone the batch is dropped with the closure, and every caller
        // sees its answer channel closed: "store unavailable".
        let _ = conn
            .call_raw(move |conn| {
                let committed = commit_batch(conn, &mut batch).map_err(|e| e.to_string());
                for job in batch {
                    job.finish(committed.clone());
                }
            })
            .await;
    }
}

fn commit_batch(conn: &mut Connection, batch: &mut [Box<dyn WriteJob>]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The savepoint statements are compiled once and kept (rusqlite's `savepoint()` parses
    // its SQL anew each time, which showed in profiles of the write path).
    let step = |sql: &str| tx.prepare_cached(sql).and_then(|mut s| s.execute([]));
    for job in batch.iter_mut() {
        step("SAVEPOINT job")?;
        if job.run(&tx) {
            step("RELEASE job")?;
            continue;
        }
        // Some errors (a full disk, an I/O error) make SQLite roll back the whole
        // transaction: the jobs after it would run outside any transaction. Fail the batch.
        if tx.is_autocommit() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                Some("the transaction was rolled back by an earlier failure".into()),
            ));
        }
        step("ROLLBACK TO job")?;
        step("RELEASE job")?;
    }
    tx.commit()
}
