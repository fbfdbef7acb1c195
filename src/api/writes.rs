//! Writes that may still change the API's state. A request whose caller gave up (a
//! signal dropped it) can still be applied by the API; one whose answer was lost may
//! have been. Whoever undoes the caller's work must not call it finished while such a
//! write can still land: it waits for the answer, or for [`REQUEST_TIMEOUT`] after a
//! lost one.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::REQUEST_TIMEOUT;

/// Told, after each change, until when a write may still land (`None`: none can).
pub type OnChange = Arc<dyn Fn(Option<Instant>) + Send + Sync>;

/// The writes of a tracking client ([`super::Client::tracking`]).
#[derive(Clone)]
pub struct Writes {
    pending: Arc<watch::Sender<Pending>>,
    on_change: Option<OnChange>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pending {
    /// Sent and not answered yet. Such a request runs on even when its caller is
    /// dropped, so its answer still comes.
    in_flight: usize,
    /// A write without an answer may land until then.
    lost_until: Option<Instant>,
}

impl Pending {
    fn may_land_until(&self) -> Option<Instant> {
        let in_flight = (self.in_flight > 0).then(|| Instant::now() + REQUEST_TIMEOUT);
        self.lost_until
            .max(in_flight)
            .filter(|until| *until > Instant::now())
    }
}

impl Default for Writes {
    fn default() -> Self {
        Self {
            pending: Arc::new(watch::Sender::new(Pending::default())),
            on_change: None,
        }
    }
}

impl fmt::Debug for Writes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Writes({:?})", *self.pending.borrow())
    }
}

impl Writes {
    /// Writes that tell `on_change` (a record another process reads) of each change.
    pub fn recorded(on_change: OnChange) -> Self {
        Self {
            on_change: Some(on_change),
            ..Self::default()
        }
    }

    /// Writes of another process, which may land until `until`.
    pub fn lost_until(until: Instant) -> Self {
        let writes = Self::default();
        writes.change(|p| p.lost_until = Some(until));
        writes
    }

    fn change(&self, f: impl FnOnce(&mut Pending)) {
        // Told under the lock: the record never goes back to an older state.
        self.pending.send_modify(|p| {
            f(p);
            if let Some(on_change) = &self.on_change {
                on_change(p.may_land_until());
            }
        });
    }

    pub(super) fn sent(&self) {
        self.change(|p| p.in_flight += 1);
    }

    /// `lost`: no answer came (a timeout, a connection closed after sending).
    pub(super) fn done(&self, lost: bool) {
        self.change(|p| {
            p.in_flight -= 1;
            if lost {
                p.lost_until = p.lost_until.max(Some(Instant::now() + REQUEST_TIMEOUT));
            }
        });
    }

    /// Until when a write may still land: `None` when every write was answered (and
    /// no lost one can land any more). A write still in flight counts as lost now.
    pub fn may_land_until(&self) -> Option<Instant> {
        self.pending.borrow().may_land_until()
    }

    /// Why the writer's work is not finished yet, if a write can still land.
    pub fn unsettled(&self) -> Option<String> {
        let until = self.may_land_until()?;
        Some(if self.in_flight() {
            "a write of the run has not been answered yet".to_string()
        } else {
            format!(
                "a write of the run went unanswered and may still land for {}s",
                until.saturating_duration_since(Instant::now()).as_secs() + 1
            )
        })
    }

    /// Whether a write is sent and not answered yet.
    pub fn in_flight(&self) -> bool {
        self.pending.borrow().in_flight > 0
    }

    /// Returns once no write is in flight.
    pub async fn answered(&self) {
        let mut rx = self.pending.subscribe();
        let _ = rx.wait_for(|p| p.in_flight == 0).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_write_may_land_until_answered_or_its_lost_window_closes() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let record = told.clone();
        let writes = Writes::recorded(Arc::new(move |until: Option<Instant>| {
            record.lock().unwrap().push(until.is_some())
        }));
        assert_eq!(writes.unsettled(), None);
        writes.sent();
        assert!(writes.in_flight());
        assert_eq!(
            writes.unsettled().as_deref(),
            Some("a write of the run has not been answered yet")
        );
        writes.done(false);
        assert_eq!(writes.may_land_until(), None);
        writes.sent();
        writes.done(true);
        let until = writes.may_land_until().expect("a lost write may land");
        assert!(until > Instant::now() + REQUEST_TIMEOUT - Duration::from_secs(1));
        assert!(
            writes
                .unsettled()
                .unwrap()
                .contains("may still land for 30s")
        );
        // The record follows every change, in order.
        assert_eq!(*told.lock().unwrap(), [true, false, true, true]);
        // Another process's window that has closed holds nothing back.
        assert_eq!(Writes::lost_until(Instant::now()).may_land_until(), None);
    }
}
