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
/// belong to it), is given the connection's [`Load`] share, and returns the connection's future.
pub type Job = Box<dyn FnOnce(Load) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One connection counted against its worker until dropped. The connection's slot holds it,
/// so a WebSocket tunnel that outlives hyper's connection keeps counting.
pub struct Load(Arc<AtomicUsize>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Load")
    }
}

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

/// The running workers of one listener. Dropping it lets them finish: each stops once it is
/// told to stop, and its runtime's remaining tasks are dropped.
pub struct Workers {
    queues: Vec<Worker>,
    stop: CancellationToken,
    /// Where the search for the least-loaded worker starts: rotates, so ties spread.
    next: AtomicUsize,
}

struct Worker {
    /// Jobs with the load share each was counted with.
    queue: mpsc::UnboundedSender<(Job, Load)>,
    /// Live connections handed to this worker (see [`Load`]).
    live: Arc<AtomicUsize>,
}

impl Workers {
    /// Starts [`count()`] worker threads named `name-N` (Linux shows 15 bytes of a thread's
    /// name: keep `name` short enough for `N` to show). Should one fail to start, those
    /// already started are stopped again.
    pub fn start(name: &str) -> std::io::Result<Workers> {
        let mut workers = Workers {
            queues: Vec::with_capacity(count()),
            stop: CancellationToken::new(),
            next: AtomicUsize::new(0),
        };
        for index in 0..count() {
            let worker = spawn_worker(name, index, workers.stop.clone())?;
            workers.queues.push(worker);
        }
        Ok(workers)
    }

    /// Hands `job` to the worker with the fewest live connections (ties taken in turn).
    /// Fails, dropping the job, if that worker has stopped.
    pub fn dispatch(&self, job: Job) -> Result<(), WorkerGone> {
        let n = self.queues.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let worker = (0..n)
            .filter_map(|i| self.queues.get((first + i) % n))
            .min_by_key(|w| w.live.load(Ordering::Relaxed))
            .ok_or(WorkerGone)?;
        worker.live.fetch_add(1, Ordering::Relaxed);
        let load = Load(worker.live.clone());
        // On failure the job, and with it its load share, is dropped: the count is undone.
        worker.queue.send((job, load)).map_err(|_| WorkerGone)
    }
}

/// The chosen worker has stopped (or there is none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerGone;

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn spawn_worker(name: &str, index: usize, stop: CancellationToken) -> std::io::Result<Worker> {
    let (queue, mut jobs) = mpsc::unbounded_channel::<(Job, Load)>();
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
                            // Run inside a task: a panic there ends that connection, not
                            // the worker.
                            Some((job, load)) => drop(tokio::spawn(async move { job(load).await })),
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
        let job: Job = Box::new(move |load| {
            let here = WORKER.with(Cell::get);
            Box::pin(async move {
                seen.send(here).unwrap();
                hold.cancelled().await;
                drop(load);
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
    fn a_load_share_kept_after_its_job_ended_still_counts() {
        let workers = Workers::start("test-worker").unwrap();
        // A job that hands its share out (as a connection hands its slot to a tunnel) and ends.
        let (shares_tx, shares) = std::sync::mpsc::channel();
        let (first_tx, first) = std::sync::mpsc::channel();
        let job: Job = Box::new(move |load| {
            first_tx.send(WORKER.with(Cell::get)).unwrap();
            shares_tx.send(load).unwrap();
            Box::pin(std::future::ready(()))
        });
        assert!(workers.dispatch(job).is_ok());
        let tunnel_worker = first.recv().unwrap();
        let _tunnel = shares.recv().unwrap();
        // The next connections avoid that worker until the others carry as much.
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let hold = CancellationToken::new();
        for _ in 1..count() {
            report_where(&workers, &seen_tx, &hold);
        }
        for _ in 1..count() {
            assert_ne!(seen.recv().unwrap(), tunnel_worker);
        }
        hold.cancel();
    }

    #[test]
    fn other_threads_use_the_slot_after_the_workers() {
        assert_eq!(current(), count());
    }
}
