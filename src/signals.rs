//! SIGINT, SIGTERM and SIGHUP. Handlers are installed before the first create; the
//! first signal cancels the run (teardown follows), every signal is broadcast so that
//! `run` can forward it to its child and teardown can say what it is still doing. No
//! signal ever aborts a teardown: tokio keeps the handlers installed for good.

use std::sync::{Arc, OnceLock};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Int,
    Term,
    Hup,
}

impl Signal {
    pub fn number(self) -> i32 {
        match self {
            Signal::Hup => 1,
            Signal::Int => 2,
            Signal::Term => 15,
        }
    }

    /// 128 + the signal number: 130, 143, 129.
    pub fn exit_code(self) -> u8 {
        128 + self.number() as u8
    }

    pub fn nix(self) -> nix::sys::signal::Signal {
        match self {
            Signal::Hup => nix::sys::signal::Signal::SIGHUP,
            Signal::Int => nix::sys::signal::Signal::SIGINT,
            Signal::Term => nix::sys::signal::Signal::SIGTERM,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
        })
    }
}

#[derive(Clone)]
pub struct Signals {
    cancel: CancellationToken,
    first: Arc<OnceLock<Signal>>,
    events: broadcast::Sender<Signal>,
}

impl Signals {
    /// Installs the handlers. Call before anything is created.
    pub fn install() -> std::io::Result<Self> {
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (events, _) = broadcast::channel(16);
        let signals = Self {
            cancel: CancellationToken::new(),
            first: Arc::new(OnceLock::new()),
            events,
        };
        let s = signals.clone();
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    _ = int.recv() => Signal::Int,
                    _ = term.recv() => Signal::Term,
                    _ = hup.recv() => Signal::Hup,
                };
                if s.first.set(got).is_ok() {
                    tracing::warn!("received {got}: tearing down");
                    s.cancel.cancel();
                }
                let _ = s.events.send(got);
            }
        });
        Ok(signals)
    }

    /// Cancelled on the first signal.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        self.first.get().copied()
    }

    /// Every signal from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.events.subscribe()
    }
}
