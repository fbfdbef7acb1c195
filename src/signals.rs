//! SIGINT, SIGTERM and SIGHUP. Handlers are installed before the first API call; the
//! first signal cancels the run (the engine tears down and says so), every signal is
//! broadcast so that `run` can forward it to its child and teardown can say what it is
//! still doing. No signal ever aborts a teardown: tokio keeps the handlers installed for
//! good. While `run`'s command shares the terminal with this tool, a SIGINT is the
//! terminal's Ctrl-C, meant for the command first: it is broadcast only, and cancels the
//! run when `run` escalates.

use std::sync::{Arc, OnceLock};

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

    #[cfg(unix)]
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
    announced: Arc<std::sync::atomic::AtomicBool>,
    deferred: Arc<std::sync::atomic::AtomicBool>,
    events: broadcast::Sender<Signal>,
}

impl Signals {
    /// Installs the handlers. Call before anything is created.
    pub fn install() -> std::io::Result<Self> {
        let mut listener = Listener::new()?;
        let (events, _) = broadcast::channel(16);
        let signals = Self {
            cancel: CancellationToken::new(),
            first: Arc::new(OnceLock::new()),
            announced: Arc::default(),
            deferred: Arc::default(),
            events,
        };
        let s = signals.clone();
        tokio::spawn(async move {
            loop {
                let got = listener.recv().await;
                let deferred =
                    got == Signal::Int && s.deferred.load(std::sync::atomic::Ordering::SeqCst);
                // Told before acted on: the teardown that acting starts subscribes for
                // later signals, and must not hear this one again as one of them.
                let _ = s.events.send(got);
                if !deferred {
                    s.act(got);
                }
            }
        });
        Ok(signals)
    }

    /// Records `sig` as the run's signal (unless one came before) and cancels the run.
    pub fn act(&self, sig: Signal) {
        if self.first.set(sig).is_ok() {
            self.cancel.cancel();
        }
    }

    /// While `on`, a SIGINT is only broadcast: it does not cancel the run.
    pub fn defer_interrupts(&self, on: bool) {
        self.deferred.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cancelled on the first signal.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<Signal> {
        self.first.get().copied()
    }

    /// The first signal, announced once as acted on: for the one that tears down.
    pub fn acted_on(&self) -> Option<Signal> {
        let got = self.received()?;
        if !self
            .announced
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::warn!("received {got}: tearing down");
        }
        Some(got)
    }

    /// The caller has said why the run tears down: `acted_on` says nothing more.
    pub fn announced(&self) {
        self.announced
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every signal from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Signal> {
        self.events.subscribe()
    }
}

#[cfg(unix)]
struct Listener {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Listener {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Int,
            _ = self.term.recv() => Signal::Term,
            _ = self.hup.recv() => Signal::Hup,
        }
    }
}

/// Windows: Ctrl-C, Ctrl-Break and closing the console stand in for the three.
#[cfg(windows)]
struct Listener {
    c: tokio::signal::windows::CtrlC,
    brk: tokio::signal::windows::CtrlBreak,
    close: tokio::signal::windows::CtrlClose,
}

#[cfg(windows)]
impl Listener {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
        Ok(Self {
            c: ctrl_c()?,
            brk: ctrl_break()?,
            close: ctrl_close()?,
        })
    }

    async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.c.recv() => Signal::Int,
            _ = self.brk.recv() => Signal::Term,
            _ = self.close.recv() => Signal::Hup,
        }
    }
}
