//! Draining state for graceful shutdown: a flag every request reads, and a count of the
//! requests still being handled so shutdown can wait for them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Shared drain state of one gateway.
#[derive(Debug, Default)]
pub struct Drain {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Held while a request is being handled; dropping it ends the request's count.
#[derive(Debug)]
pub struct InFlightGuard<'a> {
    drain: &'a Drain,
}

impl Drain {
    /// True once shutdown has begun: new requests get `503` and `/readyz` fails.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Starts draining.
    pub fn start(&self) {
        self.draining.store(true, Ordering::Release);
        self.idle.notify_waiters();
    }

    /// Counts a request as in flight until the guard drops.
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlightGuard { drain: self }
    }

    /// Requests being handled right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no request is in flight, or `limit` passes; true when idle was reached.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                // Register interest before checking, so a decrement in between is not missed.
                let notified = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.drain.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drain.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_idle_returns_once_the_last_request_ends() {
        let drain = std::sync::Arc::new(Drain::default());
        let d2 = drain.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _g = d2.enter();
            let _ = rx.await;
        });
        while drain.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let waiter = {
            let d = drain.clone();
            tokio::spawn(async move { d.wait_idle(Duration::from_secs(30)).await })
        };
        let _ = tx.send(());
        assert!(waiter.await.unwrap_or(false));
        let _ = task.await;
    }

    #[tokio::test]
    async fn wait_idle_gives_up_after_the_limit() {
        let drain = Drain::default();
        let _g = drain.enter();
        assert!(!drain.wait_idle(Duration::from_millis(10)).await);
    }
}
