//! The sandbox's clock: the machine's, shifted by `clock_offset_secs` (the API's clock
//! need not agree with the client's) and by how far `POST /_sandbox/clock` moved it
//! forward (time passing, for tests of timer-driven states that do not wait for it).
//!
//! One value shared by everything that tells the time: the world's transitions and
//! timestamps, the `Date` header and the request log. Moving it moves them all at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

#[derive(Clone, Debug)]
pub struct Clock {
    offset_secs: i64,
    /// Milliseconds moved forward so far; kept with the world between processes.
    advanced_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn new(offset_secs: i64, advanced: Duration) -> Self {
        let clock = Self {
            offset_secs,
            advanced_ms: Arc::default(),
        };
        clock.advance(advanced);
        clock
    }

    pub fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
            + time::Duration::seconds(self.offset_secs)
            + time::Duration::milliseconds(self.advanced_ms.load(Ordering::Relaxed))
    }

    /// Moves the clock forward (never back: no timestamp the API gave goes back).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.advanced_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| {
                Some(a.saturating_add(ms))
            })
            .ok();
    }

    /// How far it was moved forward.
    pub fn advanced(&self) -> Duration {
        Duration::from_millis(self.advanced_ms.load(Ordering::Relaxed).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_copy_reads_one_time_and_an_advance_moves_them_all() {
        let clock = Clock::new(-3600, Duration::from_secs(60));
        let copy = clock.clone();
        let behind = OffsetDateTime::now_utc() - copy.now();
        assert!((3539..=3541).contains(&behind.whole_seconds()), "{behind}");
        clock.advance(Duration::from_secs(7200));
        let ahead = copy.now() - OffsetDateTime::now_utc();
        assert!((3659..=3661).contains(&ahead.whole_seconds()), "{ahead}");
        assert_eq!(copy.advanced(), Duration::from_secs(7260));
    }
}
