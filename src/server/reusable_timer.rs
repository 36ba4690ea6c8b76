//! One timer per connection that its requests borrow in turn, so a proxied request's route
//! timeout costs a reset of a timer already armed — a compare-and-swap when the new deadline is
//! later, as it is for each next request — instead of arming a new timer in the runtime's
//! timer wheel and disarming it again (two locked wheel updates; about 500 instructions a
//! request under callgrind).
//!
//! It is also hyper's timer for a plain HTTP/1 connection's request heads ([`hyper::rt::Timer`]):
//! hyper arms a new header timer for every head it waits for and drops it when the head has
//! arrived, so with hyper-util's timer each request allocated a timer, read the clock and
//! updated the wheel twice. Here each head borrows the connection's timer in turn, so the
//! deadline for the next head is the same reset of a timer already armed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep};

/// A connection's reusable timer; clones share it.
#[derive(Clone, Default)]
pub struct ReusableTimer(Arc<Mutex<Option<Pin<Box<Sleep>>>>>);

impl std::fmt::Debug for ReusableTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReusableTimer")
    }
}

impl ReusableTimer {
    /// A timer that goes off at `deadline`: the connection's own when it is free, else a new
    /// one (none made yet, or another request holds it, as HTTP/2's concurrent streams may).
    pub fn take(&self, deadline: Instant) -> Pin<Box<Sleep>> {
        let kept = self.0.lock().ok().and_then(|mut slot| slot.take());
        match kept {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Drops the kept timer, if any (a connection that parks holds none).
    pub fn clear(&self) {
        if let Ok(mut slot) = self.0.lock() {
            slot.take();
        }
    }

    /// Keeps `timer` for the connection's next request. It stays armed: should it go off
    /// before it is taken again, it wakes the task that polled it last, which finds nothing
    /// to do.
    pub fn give_back(&self, timer: Pin<Box<Sleep>>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(timer);
        }
    }
}

impl hyper::rt::Timer for ReusableTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let now = hyper::rt::Timer::now(self);
        // As tokio's own `sleep`: a duration past the clock's range means "never", not a panic.
        let deadline = now
            .checked_add(duration)
            .unwrap_or_else(|| now + std::time::Duration::from_secs(86_400 * 365 * 30));
        self.sleep_until(deadline)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Borrowed {
            timer: Some(self.take(deadline.into())),
            home: self.clone(),
        })
    }

    /// Tokio's clock, so that tests with paused time pause hyper's deadlines too.
    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: std::time::Instant) {
        match sleep.as_mut().downcast_mut_pin::<Borrowed>() {
            Some(borrowed) => borrowed.reset(new_deadline.into()),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A connection's timer as hyper holds it; given back when hyper drops it.
struct Borrowed {
    /// Always `Some` until the drop takes it.
    timer: Option<Pin<Box<Sleep>>>,
    /// Where it goes back to.
    home: ReusableTimer,
}

impl Borrowed {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        if let Some(timer) = self.get_mut().timer.as_mut() {
            timer.as_mut().reset(deadline);
        }
    }
}

impl Future for Borrowed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut().timer.as_mut() {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for Borrowed {}

impl Drop for Borrowed {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            self.home.give_back(timer);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_timer_given_back_is_the_next_one_taken_and_goes_off_at_its_new_deadline() {
        let timers = ReusableTimer::default();
        let start = Instant::now();
        let mut first = timers.take(start + Duration::from_secs(30));
        // Armed as a request would: polled once, still pending.
        assert!(futures_poll(first.as_mut()).is_pending());
        let first_at: *const Sleep = &*first;
        timers.give_back(first);
        let mut second = timers.take(start + Duration::from_secs(60));
        assert_eq!(&*second as *const Sleep, first_at, "the same timer again");
        assert_eq!(second.deadline(), start + Duration::from_secs(60));
        // Held by one request, a second one gets a timer of its own.
        let other = timers.take(start + Duration::from_secs(5));
        assert_ne!(&*other as *const Sleep, first_at);
        // The extended deadline rules: not at 30 s, at 60 s.
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert!(futures_poll(second.as_mut()).is_pending());
        second.as_mut().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn as_hyper_timer_each_head_borrows_the_connection_timer_and_gives_it_back() {
        use hyper::rt::Timer;
        let timers = ReusableTimer::default();
        let start = Timer::now(&timers);
        let mut head = timers.sleep_until(start + Duration::from_secs(10));
        assert!(futures_poll_dyn(head.as_mut()).is_pending());
        assert!(timers.0.lock().unwrap().is_none(), "the head holds it");
        // hyper drops the timer once the head has arrived: it goes back to the connection.
        drop(head);
        let kept_at: *const Sleep = {
            let slot = timers.0.lock().unwrap();
            &**slot.as_ref().expect("given back when hyper dropped it")
        };
        let kept = timers.take(Instant::now() + Duration::from_secs(1));
        assert_eq!(
            &*kept as *const Sleep, kept_at,
            "the given-back timer is reused"
        );
        timers.give_back(kept);
        let mut next = timers.sleep(Duration::from_secs(2));
        let taken = timers.take(Instant::now() + Duration::from_secs(1));
        assert_ne!(
            &*taken as *const Sleep, kept_at,
            "the head holds the kept timer"
        );
        // hyper's reset moves the borrowed timer's deadline; it goes off then, not before.
        timers.reset(&mut next, start + Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(futures_poll_dyn(next.as_mut()).is_pending());
        next.as_mut().await;
        assert_eq!(Timer::now(&timers), start + Duration::from_secs(5));
        drop(next);
        timers.clear();
        assert!(
            timers.0.lock().unwrap().is_none(),
            "a parked connection holds none"
        );
    }

    /// One poll of one of hyper's timers with a waker that does nothing.
    fn futures_poll_dyn(sleep: Pin<&mut dyn hyper::rt::Sleep>) -> std::task::Poll<()> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        sleep.poll(&mut cx)
    }

    /// One poll of `sleep` with a waker that does nothing.
    fn futures_poll(sleep: Pin<&mut Sleep>) -> std::task::Poll<()> {
        use std::future::Future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        sleep.poll(&mut cx)
    }
}
