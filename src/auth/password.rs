//! Password hashing and verification: argon2id PHC strings, computed off the async reactor.
//!
//! Owns the bounded hashing pool, the wait limit that turns a full queue into
//! `HashError::Busy` (503 + `Retry-After` at the HTTP layer), and the dummy hash that makes
//! "unknown user" cost the same as "wrong password".
//!
//! The pool is a fixed set of threads, one per permit, each owning one argon2 memory block
//! that it reuses for every hash. Allocating the block per hash (as `spawn_blocking` with
//! argon2's own allocation did) left one retained ~19 MiB block per malloc arena and blocking
//! thread: resident memory climbed to hundreds of MB and was never returned. With owned blocks
//! the argon2 memory is at most `permits × memory_kib`, whatever the number of logins. Work
//! goes to the most recently idle thread (a stack), so a thread only ever allocates its block
//! when that many hashes ran at once: memory follows peak concurrency, not the core count.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::hash_formats::StoredHash;
use crate::config::Argon2Settings;

/// Salt length of new hashes (argon2's recommended 16 bytes).
const SALT_LEN: usize = 16;

/// Largest stored `m` (KiB) a worker grows its block to for one verification; a stored hash
/// asking for more is refused as internal rather than allowed to allocate without bound.
const MAX_STORED_MEMORY_KIB: u32 = 4 * 1024 * 1024;

/// Why a hash or verify did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashError {
    /// No hashing slot became free within `max_wait`: answer 503 with `Retry-After`.
    Busy,
    /// Something that should not happen (unparsable stored hash, argon2 or task failure);
    /// the text names the failure only, never a password or hash.
    Internal(String),
}

impl fmt::Display for HashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busy => f.write_str("password hashing is busy"),
            Self::Internal(why) => write!(f, "password hashing failed: {why}"),
        }
    }
}

impl std::error::Error for HashError {}

/// The argon2id hasher shared by every request; cloning shares the same pool and counters.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Arc<Semaphore>,
    /// How many hashes may run at once (the semaphore's size).
    pool_size: u32,
    max_wait: Duration,
    /// PHC string of a random password under the current parameters, for unknown users.
    dummy_phc: PasswordHash,
    hashes_started: Arc<AtomicU64>,
    /// The least time a failed check takes, in nanoseconds: the slowest scheme in the store,
    /// measured at start ([`PasswordHasher::measure_floor`]).
    floor_nanos: AtomicU64,
    /// The hashing threads; dropping it ends them.
    workers: Workers,
    queue: QueueCounters,
}

/// Work for one hashing thread, run with that thread's own memory block; what it returns
/// delivers the answer, once the thread is idle again (so a caller who has its answer finds
/// the same thread free for its next hash).
type Job = Box<dyn FnOnce(&mut Workspace) -> Deliver + Send>;

/// Hands a finished job's answer to whoever waits for it.
type Deliver = Box<dyn FnOnce() + Send>;

/// A job and the hashing slot it holds: the slot is freed only after its thread is idle
/// again, so whoever holds a slot always finds an idle thread.
struct Task {
    job: Job,
    permit: OwnedSemaphorePermit,
}

/// The hashing threads: one channel each, and the stack of idle ones (most recent on top).
struct Workers {
    senders: Vec<mpsc::Sender<Task>>,
    idle: Arc<Mutex<Vec<usize>>>,
}

impl Workers {
    /// Starts `count` threads, each keeping `keep` blocks once it has hashed.
    fn start(count: usize, keep: usize) -> Result<Workers, String> {
        // Thread 0 on top: the first jobs all go to it.
        let idle = Arc::new(Mutex::new((0..count).rev().collect::<Vec<_>>()));
        let mut senders = Vec::with_capacity(count);
        for n in 0..count {
            let (tx, rx) = mpsc::channel::<Task>();
            let idle = Arc::clone(&idle);
            std::thread::Builder::new()
                .name(format!("authgate-hash-{n}"))
                .spawn(move || worker(n, &rx, &idle, keep))
                .map_err(|e| format!("cannot start a password hashing thread: {e}"))?;
            senders.push(tx);
        }
        Ok(Workers { senders, idle })
    }

    /// Hands `job` to the most recently idle thread.
    fn send(&self, job: Job, permit: OwnedSemaphorePermit) -> Result<(), String> {
        let n = lock(&self.idle)
            .pop()
            .ok_or("no idle hashing thread for a held slot")?;
        let sender = self.senders.get(n).ok_or("no such hashing thread")?;
        sender
            .send(Task { job, permit })
            .map_err(|_| "the hashing thread has stopped".to_owned())
    }
}

/// The idle stack, whatever a panicking holder left (each change is one push or pop).
fn lock(idle: &Mutex<Vec<usize>>) -> std::sync::MutexGuard<'_, Vec<usize>> {
    idle.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A hashing thread's reusable argon2 memory.
struct Workspace {
    blocks: Vec<Block>,
    /// Blocks the configured parameters need: what the thread keeps between jobs.
    keep: usize,
}

impl Workspace {
    fn new(keep: usize) -> Self {
        Self {
            blocks: Vec::new(),
            keep,
        }
    }

    /// Runs argon2 for `params` in this workspace's memory, growing it if a stored hash asks
    /// for more than the configured cost and shrinking it back afterwards.
    fn run(
        &mut self,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), HashError> {
        let need = params.block_count();
        if self.blocks.len() < need {
            self.blocks.resize(need, Block::default());
        }
        let memory = self
            .blocks
            .get_mut(..need)
            .ok_or_else(|| HashError::Internal("argon2 memory".into()))?;
        let result = Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, out, memory)
            .map_err(|e| HashError::Internal(format!("argon2: {e}")));
        if self.blocks.len() > self.keep {
            self.blocks.truncate(self.keep);
            self.blocks.shrink_to_fit();
        }
        result
    }
}

/// The hashing queue as `/metrics` shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HashQueue {
    /// Requests waiting for a hashing slot now.
    pub waiting: u64,
    /// Slots granted (or waits given up) so far.
    pub waits: u64,
    /// Seconds spent waiting for a slot, all waits together.
    pub wait_seconds: f64,
}

#[derive(Default)]
struct QueueCounters {
    waiting: AtomicU64,
    waits: AtomicU64,
    wait_micros: AtomicU64,
}

/// Counts one request in the queue until dropped (a cancelled wait leaves it too).
struct InQueue<'a> {
    counters: &'a QueueCounters,
    since: std::time::Instant,
}

impl<'a> InQueue<'a> {
    fn enter(counters: &'a QueueCounters) -> Self {
        counters.waiting.fetch_add(1, Ordering::Relaxed);
        Self {
            counters,
            since: std::time::Instant::now(),
        }
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        let micros = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.counters.waiting.fetch_sub(1, Ordering::Relaxed);
        self.counters.waits.fetch_add(1, Ordering::Relaxed);
        self.counters
            .wait_micros
            .fetch_add(micros, Ordering::Relaxed);
    }
}

/// The outcome of a password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The password matched a stored hash.
    pub matched: bool,
    /// It matched a hash that is not argon2id with the configured parameters: store a new one.
    pub rehash: bool,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The dummy hash is not secret, but nothing here is useful in a log either.
        f.debug_struct("PasswordHasher")
            .field("m_cost", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .field("max_wait", &self.inner.max_wait)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Builds the hasher: validates the parameters, starts `permits` hashing threads (callers
    /// pass `max(1, cores - 1)`), and computes the dummy hash.
    ///
    /// This waits for one argon2 hash, so call it at start-up (or on a blocking thread), not
    /// from a request.
    pub fn new(
        settings: Argon2Settings,
        permits: usize,
        max_wait: Duration,
    ) -> Result<Self, String> {
        if permits == 0 || permits > Semaphore::MAX_PERMITS {
            return Err(format!(
                "password hashing permits must be between 1 and {}, not {permits}",
                Semaphore::MAX_PERMITS
            ));
        }
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| format!("invalid argon2 parameters: {e}"))?;
        let workers = Workers::start(permits, params.block_count())?;
        let slots = Arc::new(Semaphore::new(permits));
        // The dummy hash holds a slot like any hash, so the thread that ran it is idle again
        // before anyone else can take that slot.
        let slot = Arc::clone(&slots)
            .try_acquire_owned()
            .map_err(|e| format!("password hashing slots: {e}"))?;
        let dummy_phc = dummy_hash(&workers, &params, slot)?;
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                permits: slots,
                pool_size: u32::try_from(permits).unwrap_or(u32::MAX),
                max_wait,
                dummy_phc,
                hashes_started: Arc::new(AtomicU64::new(0)),
                floor_nanos: AtomicU64::new(0),
                workers,
                queue: QueueCounters::default(),
            }),
        })
    }

    /// Sets the floor of failed checks to the slowest of `samples` (one stored hash per
    /// scheme and parameter set, `Store::password_hash_samples`) and of the dummy hash: each
    /// timed as the median of three checks of a random password, on the hashing pool. No
    /// floor when every sample is argon2id with the configured parameters (the dummy's cost).
    /// Called at start; returns the floor.
    pub async fn measure_floor(&self, samples: &[String]) -> Result<Duration, HashError> {
        let mut targets: Vec<Option<StoredHash>> = vec![None];
        for sample in samples {
            match StoredHash::parse(sample) {
                // Argon2id with our parameters costs what the dummy costs.
                Ok(parsed) if !parsed.needs_rehash(&self.inner.params) => {}
                // It cannot be checked at all: its owner's logins fail as internal errors.
                Ok(parsed) if !parsed.is_supported() => {
                    tracing::warn!("a stored password hash is of an unsupported algorithm")
                }
                Ok(parsed) => targets.push(Some(parsed)),
                Err(reason) => tracing::warn!(reason, "a stored password hash does not parse"),
            }
        }
        if targets.len() == 1 {
            // Every user's hash is the dummy's scheme: failures already cost the same.
            self.inner.floor_nanos.store(0, Ordering::Relaxed);
            return Ok(Duration::ZERO);
        }
        let mut floor = Duration::ZERO;
        for target in targets {
            let mut times = Vec::with_capacity(3);
            for _ in 0..3 {
                let permit = self.acquire(self.permits_for(target.as_ref())).await?;
                let target = target.clone();
                let dummy = self.inner.dummy_phc.clone();
                let spent = self
                    .run(permit, move |space| {
                        let began = Instant::now();
                        let secret = SecretBytes::random()?;
                        match &target {
                            Some(stored) => verify_stored(space, secret.as_bytes(), stored)?,
                            None => check(space, secret.as_bytes(), &dummy)?,
                        };
                        Ok(began.elapsed())
                    })
                    .await?;
                times.push(spent);
            }
            times.sort();
            floor = floor.max(times.get(1).copied().unwrap_or_default());
        }
        let nanos = u64::try_from(floor.as_nanos()).unwrap_or(u64::MAX);
        self.inner.floor_nanos.store(nanos, Ordering::Relaxed);
        Ok(floor)
    }

    /// The least time a failed check takes.
    pub fn floor(&self) -> Duration {
        Duration::from_nanos(self.inner.floor_nanos.load(Ordering::Relaxed))
    }

    /// Hashing slots a check against `stored` takes: one per argon2 run's worth of memory,
    /// so a large scrypt hash counts as several argon2 runs (at most the whole pool).
    fn permits_for(&self, stored: Option<&StoredHash>) -> u32 {
        let per_slot = u64::from(self.inner.params.m_cost()).max(1);
        let needed = stored.map_or(1, |s| s.memory_kib().div_ceil(per_slot));
        u32::try_from(needed)
            .unwrap_or(u32::MAX)
            .clamp(1, self.inner.pool_size.max(1))
    }

    /// Hashes `password` with a fresh random salt into a PHC string
    /// (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let permit = self.acquire(1).await?;
        let secret = SecretBytes::copy_of(password);
        let params = self.inner.params.clone();
        let started = Arc::clone(&self.inner.hashes_started);
        self.run(permit, move |space| {
            started.fetch_add(1, Ordering::Relaxed);
            new_phc(space, &params, secret.as_bytes()).map(|phc| phc.to_string())
        })
        .await
    }

    /// Checks `password` against a stored PHC string. `None` (no such user) verifies against
    /// the dummy hash and answers `false`, so both failures cost one argon2 run.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, HashError> {
        Ok(self.check(password, phc).await?.matched)
    }

    /// Checks `password` against a stored hash of any format the store may hold (argon2,
    /// bcrypt, werkzeug pbkdf2 and scrypt), on the hashing pool — a large scrypt hash taking
    /// several slots. `None` (no such user) checks against the dummy hash. A failed check
    /// lasts at least the floor; the wait happens after the slot is given back.
    pub async fn check(&self, password: &str, stored: Option<&str>) -> Result<Checked, HashError> {
        let stored = match stored {
            Some(text) => Some(parse_stored(text)?),
            None => None,
        };
        let permit = self.acquire(self.permits_for(stored.as_ref())).await?;
        let secret = SecretBytes::copy_of(password);
        let dummy = self.inner.dummy_phc.clone();
        let params = self.inner.params.clone();
        let started = Arc::clone(&self.inner.hashes_started);
        let (checked, spent) = self
            .run(permit, move |space| {
                let began = Instant::now();
                started.fetch_add(1, Ordering::Relaxed);
                let checked = match &stored {
                    Some(hash) => Checked {
                        matched: verify_stored(space, secret.as_bytes(), hash)?,
                        rehash: hash.needs_rehash(&params),
                    },
                    None => {
                        check(space, secret.as_bytes(), &dummy)?;
                        Checked {
                            matched: false,
                            rehash: false,
                        }
                    }
                };
                Ok((checked, began.elapsed()))
            })
            .await?;
        if !checked.matched {
            // Imported users' cheaper schemes must not tell them apart by timing.
            let floor = self.floor();
            if floor > spent {
                tokio::time::sleep(floor - spent).await;
            }
        }
        Ok(Checked {
            rehash: checked.matched && checked.rehash,
            ..checked
        })
    }

    /// How many argon2 runs (hashes and verifies, the dummy included) have started since
    /// construction; the start-up dummy hash is not counted.
    pub fn hashes_started(&self) -> u64 {
        self.inner.hashes_started.load(Ordering::Relaxed)
    }

    /// The hashing queue now: who waits, and how long waits took so far.
    pub fn queue(&self) -> HashQueue {
        let q = &self.inner.queue;
        HashQueue {
            waiting: q.waiting.load(Ordering::Relaxed),
            waits: q.waits.load(Ordering::Relaxed),
            wait_seconds: q.wait_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    async fn acquire(&self, slots: u32) -> Result<OwnedSemaphorePermit, HashError> {
        let _in_queue = InQueue::enter(&self.inner.queue);
        let waiting = Arc::clone(&self.inner.permits).acquire_many_owned(slots);
        match tokio::time::timeout(self.inner.max_wait, waiting).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(HashError::Internal("hashing pool closed".into())),
            Err(_elapsed) => Err(HashError::Busy),
        }
    }

    /// Runs `job` on a hashing thread under the caller's span. The permit moves with the job
    /// so the slot stays taken until argon2 finishes, even if the request future is dropped;
    /// with one thread per permit a job never waits for a thread.
    async fn run<T, F>(&self, permit: OwnedSemaphorePermit, job: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Workspace) -> Result<T, HashError> + Send + 'static,
    {
        let span = tracing::Span::current();
        let (tx, rx) = oneshot::channel();
        let boxed: Job = Box::new(move |space| {
            let answer = span.in_scope(|| job(space));
            Box::new(move || {
                // The request may have gone away meanwhile; nobody is left to tell.
                let _ = tx.send(answer);
            })
        });
        self.inner
            .workers
            .send(boxed, permit)
            .map_err(HashError::Internal)?;
        rx.await
            .map_err(|_| HashError::Internal("hashing task failed".into()))?
    }

    /// Takes a hashing slot without waiting, so tests can fill the pool deterministically.
    #[cfg(test)]
    fn take_permit_for_test(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.inner.permits).try_acquire_owned().ok()
    }
}

/// Hashing thread `n`: runs its tasks until its sender is gone, going back on the idle
/// stack before it frees each task's slot and delivers the answer. A panicking job loses its answer (the caller sees
/// an internal error), not the thread.
fn worker(n: usize, rx: &mpsc::Receiver<Task>, idle: &Mutex<Vec<usize>>, keep: usize) {
    let mut space = Workspace::new(keep);
    while let Ok(Task { job, permit }) = rx.recv() {
        let deliver = catch_unwind(AssertUnwindSafe(|| job(&mut space)));
        if deliver.is_err() {
            tracing::error!("a password hashing job panicked");
            space = Workspace::new(keep);
        }
        lock(idle).push(n);
        drop(permit);
        if let Ok(deliver) = deliver {
            deliver();
        }
    }
}

/// A new argon2id PHC hash of `password` with a random salt, in `space`'s memory.
fn new_phc(
    space: &mut Workspace,
    params: &Params,
    password: &[u8],
) -> Result<PasswordHash, HashError> {
    let mut raw = [0u8; SALT_LEN];
    getrandom::fill(&mut raw)
        .map_err(|e| HashError::Internal(format!("random source failed: {e}")))?;
    let salt = Salt::new(&raw).map_err(|e| HashError::Internal(format!("salt: {e}")))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    space.run(
        Algorithm::Argon2id,
        Version::V0x13,
        params.clone(),
        password,
        &salt,
        &mut out,
    )?;
    let internal = |e: &dyn fmt::Display| HashError::Internal(format!("phc: {e}"));
    Ok(PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| internal(&e))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| internal(&e))?),
    })
}

/// Parses a stored hash; failure means a corrupt store row, logged without its content.
fn parse_stored(text: &str) -> Result<StoredHash, HashError> {
    StoredHash::parse(text).map_err(|reason| {
        tracing::error!(reason, "stored password hash does not parse");
        HashError::Internal("stored password hash does not parse".into())
    })
}

/// Checks `password` against a stored hash of any supported format: argon2 in the hashing
/// thread's own reused memory, the imported schemes (bcrypt, PBKDF2, scrypt) by their crates.
fn verify_stored(
    space: &mut Workspace,
    password: &[u8],
    stored: &StoredHash,
) -> Result<bool, HashError> {
    match stored {
        StoredHash::Argon2(phc) => check(space, password, phc),
        other => other.verify(password).map_err(|e| {
            tracing::error!(error = %e, "stored password hash cannot be verified");
            HashError::Internal(e)
        }),
    }
}

/// One argon2 verification with the stored hash's own algorithm, version and parameters: a
/// mismatch is `false`; anything that cannot be computed is internal.
fn check(space: &mut Workspace, password: &[u8], stored: &PasswordHash) -> Result<bool, HashError> {
    let refuse = |why: String| {
        tracing::error!(error = %why, "stored password hash cannot be verified");
        HashError::Internal(format!("argon2 verify: {why}"))
    };
    let algorithm =
        Algorithm::try_from(stored.algorithm.as_str()).map_err(|e| refuse(e.to_string()))?;
    let version = match stored.version {
        Some(v) => Version::try_from(v).map_err(|e| refuse(e.to_string()))?,
        None => Version::V0x13,
    };
    let params = Params::try_from(stored).map_err(|e| refuse(e.to_string()))?;
    if params.m_cost() > MAX_STORED_MEMORY_KIB {
        return Err(refuse(format!("m = {} KiB is too large", params.m_cost())));
    }
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return Err(refuse("no salt or no hash".into()));
    };
    let mut out = vec![0u8; expected.len()];
    space.run(algorithm, version, params, password, salt, &mut out)?;
    let computed = Output::new(&out).map_err(|e| refuse(e.to_string()))?;
    // `Output`'s equality is constant-time.
    Ok(&computed == expected)
}

/// Hashes a random password on a hashing thread, so verifying against it costs the same as a
/// real user's hash.
fn dummy_hash(
    workers: &Workers,
    params: &Params,
    slot: OwnedSemaphorePermit,
) -> Result<PasswordHash, String> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| format!("random source failed: {e}"))?;
    let secret = SecretBytes(random.to_vec());
    random.fill(0);
    let params = params.clone();
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move |space| {
        let answer = new_phc(space, &params, secret.as_bytes());
        Box::new(move || {
            let _ = tx.send(answer);
        })
    });
    workers.send(job, slot)?;
    rx.recv()
        .map_err(|_| "the dummy password hash was not computed".to_string())?
        .map_err(|e| format!("cannot compute the dummy password hash: {e}"))
}

/// A private copy of a password that is overwritten with zeros when dropped (best effort:
/// no `unsafe` volatile writes, `black_box` keeps the wipe from being optimised away).
struct SecretBytes(Vec<u8>);

impl SecretBytes {
    fn copy_of(password: &str) -> Self {
        Self(password.as_bytes().to_vec())
    }

    /// 32 random bytes: a password nobody has.
    fn random() -> Result<Self, HashError> {
        let mut bytes = vec![0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| HashError::Internal(format!("random source failed: {e}")))?;
        Ok(Self(bytes))
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Cheap parameters: these tests check behaviour, not cost.
    fn settings() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn hasher(permits: usize, max_wait: Duration) -> PasswordHasher {
        PasswordHasher::new(settings(), permits, max_wait).expect("valid settings")
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_different_one_does_not() {
        let h = hasher(2, Duration::from_secs(5));
        let phc = h.hash("correct horse").await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert!(h.verify("correct horse", Some(&phc)).await.expect("verify"));
        assert!(!h.verify("correct horsE", Some(&phc)).await.expect("verify"));
        assert!(!h.verify("", Some(&phc)).await.expect("verify"));
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_use_different_salts() {
        let h = hasher(1, Duration::from_secs(5));
        let a = h.hash("same password").await.expect("hash");
        let b = h.hash("same password").await.expect("hash");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn unknown_user_is_false_and_still_runs_argon2() {
        let h = hasher(1, Duration::from_secs(5));
        let before = h.hashes_started();
        assert!(!h.verify("whatever", None).await.expect("verify"));
        assert_eq!(h.hashes_started(), before + 1);
    }

    #[tokio::test]
    async fn every_hash_and_verify_counts_as_one_argon2_run() {
        let h = hasher(1, Duration::from_secs(5));
        assert_eq!(
            h.hashes_started(),
            0,
            "the dummy hash at start-up is not counted"
        );
        let phc = h.hash("pw-pw-pw-pw").await.expect("hash");
        h.verify("pw-pw-pw-pw", Some(&phc)).await.expect("verify");
        assert_eq!(h.hashes_started(), 2);
    }

    #[tokio::test]
    async fn a_full_pool_answers_busy_without_running_argon2() {
        let h = hasher(1, Duration::from_millis(20));
        let _held = h.take_permit_for_test().expect("the only permit is free");
        assert_eq!(h.hash("pw").await, Err(HashError::Busy));
        assert_eq!(h.verify("pw", None).await, Err(HashError::Busy));
        assert_eq!(h.hashes_started(), 0);
    }

    #[tokio::test]
    async fn a_freed_permit_lets_the_next_hash_through() {
        let h = hasher(1, Duration::from_millis(20));
        let held = h.take_permit_for_test().expect("free");
        assert_eq!(h.hash("pw").await, Err(HashError::Busy));
        drop(held);
        assert!(h.hash("pw").await.is_ok());
    }

    #[tokio::test]
    async fn an_unparsable_stored_hash_is_internal_and_skips_argon2() {
        let h = hasher(1, Duration::from_secs(5));
        let got = h.verify("pw", Some("not a phc string")).await;
        assert!(matches!(got, Err(HashError::Internal(_))), "{got:?}");
        assert_eq!(h.hashes_started(), 0);
    }

    #[tokio::test]
    async fn a_hash_of_another_algorithm_is_internal() {
        let h = hasher(1, Duration::from_secs(5));
        let phc = "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let got = h.verify("pw", Some(phc)).await;
        assert!(matches!(got, Err(HashError::Internal(_))), "{got:?}");
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_still_verify() {
        let old = PasswordHasher::new(
            Argon2Settings {
                memory_kib: 512,
                iterations: 2,
                parallelism: 1,
            },
            1,
            Duration::from_secs(5),
        )
        .expect("valid");
        let phc = old.hash("migrating").await.expect("hash");
        let h = hasher(1, Duration::from_secs(5));
        assert!(h.verify("migrating", Some(&phc)).await.expect("verify"));
    }

    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crates_own_api_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let h = hasher(1, Duration::from_secs(5));
        let crate_argon2 = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).expect("params"),
        );
        let theirs: PasswordHash = crate_argon2.hash_password(b"stored before").expect("hash");
        assert!(h
            .verify("stored before", Some(&theirs.to_string()))
            .await
            .expect("verify"));
        assert!(!h
            .verify("stored befor", Some(&theirs.to_string()))
            .await
            .expect("verify"));
        let ours = h.hash("stored after").await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        assert!(crate_argon2
            .verify_password(b"stored after", &parsed)
            .is_ok());
    }

    #[tokio::test]
    async fn a_stored_hash_asking_for_more_memory_verifies_and_the_block_shrinks_back() {
        let big = PasswordHasher::new(
            Argon2Settings {
                memory_kib: 4096,
                iterations: 1,
                parallelism: 1,
            },
            1,
            Duration::from_secs(5),
        )
        .expect("valid");
        let phc = big.hash("bigger cost").await.expect("hash");
        let h = hasher(1, Duration::from_secs(5));
        assert!(h.verify("bigger cost", Some(&phc)).await.expect("verify"));
        let mut space = Workspace::new(1024);
        let stored = PasswordHash::new(&phc).expect("phc");
        assert!(check(&mut space, b"bigger cost", &stored).expect("check"));
        assert_eq!(space.blocks.len(), 1024);
    }

    #[tokio::test]
    async fn sequential_hashes_reuse_one_thread_so_one_block() {
        let h = hasher(4, Duration::from_secs(5));
        for _ in 0..8 {
            h.hash("one at a time").await.expect("hash");
        }
        // The most recently idle thread takes the next job: thread 0 did them all, and the
        // others never allocated. All four are idle again, 0 on top.
        assert_eq!(*lock(&h.inner.workers.idle), [3, 2, 1, 0]);
    }

    /// A werkzeug scrypt hash of `password` with N = 2^log_n, r = 8 (N·r·128 bytes).
    fn scrypt_hash(password: &str, log_n: u8) -> String {
        let params = scrypt::Params::new(log_n, 8, 1).expect("params");
        let mut out = [0u8; 64];
        scrypt::scrypt(password.as_bytes(), b"salt", &params, &mut out).expect("scrypt");
        format!("scrypt:{}:8:1$salt${}", 1u32 << log_n, hex::encode(out))
    }

    #[tokio::test]
    async fn a_legacy_hash_verifies_and_asks_for_a_rehash() {
        let h = hasher(2, Duration::from_secs(5));
        let stored = scrypt_hash("migrating", 10);
        let checked = h.check("migrating", Some(&stored)).await.expect("check");
        assert_eq!(
            checked,
            Checked {
                matched: true,
                rehash: true
            }
        );
        let wrong = h.check("migrating!", Some(&stored)).await.expect("check");
        assert_eq!(
            wrong,
            Checked {
                matched: false,
                rehash: false
            }
        );
        let ours = h.hash("migrating").await.expect("hash");
        let checked = h.check("migrating", Some(&ours)).await.expect("check");
        assert!(checked.matched && !checked.rehash);
    }

    #[tokio::test]
    async fn scrypt_takes_as_many_hashing_slots_as_its_memory_needs() {
        // argon2 here takes 1 MiB; scrypt with N = 2^11, r = 8 takes 2 MiB: two slots.
        let h = hasher(2, Duration::from_millis(20));
        let stored = scrypt_hash("pw", 11);
        let held = h.take_permit_for_test().expect("a free slot");
        assert_eq!(h.check("pw", Some(&stored)).await, Err(HashError::Busy));
        assert!(
            h.verify("pw", None).await.is_ok(),
            "argon2 fits in one slot"
        );
        drop(held);
        assert!(h.check("pw", Some(&stored)).await.expect("check").matched);
    }

    #[tokio::test]
    async fn a_failed_check_lasts_at_least_the_floor_measured_from_the_slowest_sample() {
        let h = hasher(1, Duration::from_secs(5));
        let ours = h.hash("pw").await.expect("hash");
        // Only hashes of the configured argon2id: no floor.
        assert_eq!(
            h.measure_floor(&[ours]).await.expect("floor"),
            Duration::ZERO
        );
        let slow = scrypt_hash("pw", 14);
        let floor = h.measure_floor(&[slow]).await.expect("floor");
        assert!(floor > Duration::ZERO);
        let started = Instant::now();
        assert!(!h.verify("wrong", None).await.expect("verify"));
        assert!(
            started.elapsed() >= floor,
            "{:?} < {floor:?}",
            started.elapsed()
        );
    }

    #[test]
    fn invalid_settings_and_zero_permits_are_refused() {
        let bad = Argon2Settings {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1,
        };
        assert!(PasswordHasher::new(bad, 1, Duration::from_secs(1)).is_err());
        assert!(PasswordHasher::new(settings(), 0, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn debug_output_does_not_include_the_dummy_hash() {
        let h = hasher(1, Duration::from_secs(1));
        let shown = format!("{h:?}");
        assert!(!shown.contains("$argon2"), "{shown}");
    }
}
