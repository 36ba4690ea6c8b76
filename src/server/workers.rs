//! Per-core serving: one thread per core, each running its own single-threaded runtime, and
//! every accepted public connection handed to one of them for its whole life.
//!
//! Why: on tokio's shared work-stealing runtime a proxied request crosses threads — the
//! client's connection task, the pooled upstream connection's task and the I/O driver can each
//! sit on another worker — and every crossing costs atomics, queue hand-offs and wake-up system
//! calls. A connection pinned to one thread, with that thread's own upstream pool
//! ([`current`] selects it), keeps the whole exchange on one core. The accept loop stays on
//! the main runtime and hands each connection to the worker with the fewest live ones (one
//! hand-off per connection, none per request).
//!
//! Everything else (background jobs, the store, the admin listener) stays on the main runtime.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Work for a worker: runs inside its runtime (so sockets registered and tasks spawned there
/// belong to it) and returns the connection's future.
pub type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

thread_local! {
    /// The index of the worker this thread is, if it is one.
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// How many serving workers a gateway runs: one per core the process may use (cgroup quotas
/// and CPU affinity count), at least one.
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The slot of per-worker state the calling thread uses: its worker index, or
/// [`count()`] for any other thread (the main runtime's), so that state used outside the
/// workers is never shared with one of them.
pub fn current() -> usize {
    WORKER.with(Cell::get).unwrap_or_else(count)
}

/// The running workers of one listener. Dropping it lets them finish: each stops once its
/// queue is closed and it is told to stop, and its runtime's remaining tasks are dropped.
pub struct Workers {
    queues: Vec<Worker>,
    stop: CancellationToken,
}

struct Worker {
    queue: mpsc::UnboundedSender<Job>,
    /// Live connections handed to this worker.
    live: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts [`count()`] worker threads named `name-N`.
    pub fn start(name: &str) -> std::io::Result<Workers> {
        let stop = CancellationToken::new();
        let queues = (0..count())
            .map(|index| spawn_worker(name, index, stop.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Workers { queues, stop })
    }

    /// Hands `job` to the worker with the fewest live connections; the job's future counts as
    /// one until it completes. Returns the job if every worker has stopped.
    pub fn dispatch(&self, job: Job) -> Result<(), Job> {
        let Some(worker) = self
            .queues
            .iter()
            .min_by_key(|w| w.live.load(Ordering::Relaxed))
        else {
            return Err(job);
        };
        let live = worker.live.clone();
        live.fetch_add(1, Ordering::Relaxed);
        let counted: Job = Box::new(move || {
            let connection = job();
            Box::pin(async move {
                let _live = LiveGuard(live);
                connection.await;
            })
        });
        worker.queue.send(counted).map_err(|gone| {
            worker.live.fetch_sub(1, Ordering::Relaxed);
            gone.0
        })
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn spawn_worker(name: &str, index: usize, stop: CancellationToken) -> std::io::Result<Worker> {
    let (queue, mut jobs) = mpsc::unbounded_channel::<Job>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(format!("{name}-{index}"))
        .spawn(move || {
            WORKER.with(|w| w.set(Some(index)));
            runtime.block_on(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        job = jobs.recv() => match job {
                            Some(job) => drop(tokio::spawn(job())),
                            None => { stop.cancelled().await; break; }
                        },
                    }
                }
            });
        })?;
    Ok(Worker {
        queue,
        live: Arc::new(AtomicUsize::new(0)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Dispatches a job that reports the worker it runs on and stays live until `hold` fires.
    fn report_where(
        workers: &Workers,
        seen: &std::sync::mpsc::Sender<Option<usize>>,
        hold: &CancellationToken,
    ) {
        let (seen, hold) = (seen.clone(), hold.clone());
        let job: Job = Box::new(move || {
            let here = WORKER.with(Cell::get);
            Box::pin(async move {
                seen.send(here).unwrap();
                hold.cancelled().await;
            })
        });
        assert!(workers.dispatch(job).is_ok());
    }

    #[test]
    fn each_live_connection_goes_to_the_least_loaded_worker_and_runs_there() {
        let workers = Workers::start("test-worker").unwrap();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let hold = CancellationToken::new();
        // Twice as many live jobs as workers: least-loaded dispatch gives each worker two.
        for _ in 0..2 * count() {
            report_where(&workers, &seen_tx, &hold);
        }
        let mut per_worker = vec![0; count()];
        for _ in 0..2 * count() {
            let index = seen.recv().unwrap().expect("a job ran outside the workers");
            per_worker[index] += 1;
        }
        assert_eq!(per_worker, vec![2; count()]);
        hold.cancel();
    }

    #[test]
    fn other_threads_use_the_slot_after_the_workers() {
        assert_eq!(current(), count());
    }
}
