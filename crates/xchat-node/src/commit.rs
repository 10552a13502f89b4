//! The store's committer: a thread of its own that commits the node's
//! batches of writes in the order they were handed over.
//!
//! A commit waits for the disk (`synchronous=FULL`: an fsync of the WAL),
//! from a fraction of a millisecond on an idle SSD to tens of milliseconds
//! on a busy one. Done on the node's task, that wait would stop everything
//! else: no input handled, no batch growing. Here the node hands a batch's
//! writes over and goes on handling the next inputs while the disk works;
//! the batches that queued meanwhile are committed together in the next
//! transaction, so the busier the disk, the larger the group commit. The
//! node still acknowledges, answers, notifies and sends for a batch only
//! once its commit is done (see `node.rs`), and commits never change order.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;
use xchat_core::io::Write;
use xchat_store::{Store, StoreError};

/// Most writes merged into one transaction: a bound on how long one commit
/// holds the store (and so how long a read may wait for it).
pub const MAX_MERGED_WRITES: usize = 16 * 1024;

/// Whether a batch's writes are on disk: `Ok` once committed; the error of
/// the transaction that failed (the batch that failed first gets it; later
/// batches see their sender dropped).
pub type Committed = oneshot::Receiver<Result<(), StoreError>>;

struct Job {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The committer thread and the store it shares with the node's reads.
pub struct Committer {
    store: Arc<Mutex<Store>>,
    jobs: Option<std_mpsc::SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the thread that commits into `store`; at most `in_flight`
    /// batches wait for it (a [`Committer::submit`] beyond that waits).
    ///
    /// # Errors
    /// What the operating system says when the thread cannot start.
    pub fn start(store: Store, in_flight: usize) -> std::io::Result<Self> {
        let store = Arc::new(Mutex::new(store));
        let (jobs, queue) = std_mpsc::sync_channel::<Job>(in_flight);
        let shared = Arc::clone(&store);
        let thread = std::thread::Builder::new()
            .name("xchat-commit".into())
            .spawn(move || commit_in_order(&shared, &queue))?;
        Ok(Self { store, jobs: Some(jobs), thread: Some(thread) })
    }

    /// Hands `writes` over to be committed after every batch handed over
    /// before them. Blocks while `in_flight` batches wait: the node never
    /// has that many (it waits for commits first).
    pub fn submit(&self, writes: Vec<Write>) -> Committed {
        let (done, committed) = oneshot::channel();
        if let Some(jobs) = &self.jobs {
            // A stopped thread (after a failed commit) drops the job: the
            // receiver then reports the store gone.
            let _ = jobs.send(Job { writes, done });
        }
        committed
    }

    /// The store, for reads and backups: waits while a commit holds it.
    /// A read sees what is committed, which may be less than the messenger
    /// already holds (batches still in flight), never more.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops the thread once every batch handed over is committed.
    pub fn finish(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // A panicked committer has already failed its batches.
            let _ = thread.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The thread: takes the first batch waiting, with every other batch that
/// waits behind it (up to [`MAX_MERGED_WRITES`]), and commits them in one
/// transaction.
fn commit_in_order(store: &Mutex<Store>, queue: &std_mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut writes = first.writes.len();
        let mut jobs = vec![first];
        while writes < MAX_MERGED_WRITES {
            let Ok(job) = queue.try_recv() else { break };
            writes += job.writes.len();
            jobs.push(job);
        }
        let result = {
            let mut store = store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // One call for all of them: a write that a later batch replaces
            // is skipped (`Batch::write_all`).
            store.apply(|batch| batch.write_all(jobs.iter().flat_map(|job| &job.writes)))
        };
        match result {
            Ok(()) => {
                for job in jobs {
                    let _ = job.done.send(Ok(()));
                }
            }
            Err(error) => {
                // Nothing of these batches is kept, and nothing after them
                // may be: the node stops on this error.
                if let Some(job) = jobs.into_iter().next() {
                    let _ = job.done.send(Err(error));
                }
                return;
            }
        }
    }
}
