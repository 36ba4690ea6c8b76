//! The ticker the gateway's background loops share: fires every period until a stop token
//! fires, and after a stall waits a full period rather than firing a burst.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// A periodic ticker that stops with a [`CancellationToken`].
pub(super) struct Ticker {
    interval: tokio::time::Interval,
    stop: CancellationToken,
}

impl Ticker {
    /// Ticks every `period` (the first tick at once) until `stop` fires.
    pub(super) fn new(period: Duration, stop: CancellationToken) -> Ticker {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker { interval, stop }
    }

    /// Waits for the next tick; false once `stop` fires.
    pub(super) async fn next(&mut self) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            _ = self.interval.tick() => true,
        }
    }
}
