//! What the user sees while a run goes: on a terminal a live line per service (state,
//! elapsed time, spinner); elsewhere plain timestamped lines, one per state change; in
//! GitHub Actions the same lines with `::group::` sections and `::error::` annotations;
//! with `--log-format json`, JSON events. All of it on stderr: stdout is for data.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live view on a terminal.
    Live,
    /// One timestamped line per event.
    Plain,
    /// Plain lines (the runner timestamps them) with workflow commands.
    Github,
    /// JSON events through the log.
    Json,
    /// Warnings and errors only.
    Quiet,
}

impl Mode {
    pub fn detect(quiet: bool, verbose: bool, json: bool) -> Self {
        if quiet {
            Mode::Quiet
        } else if json {
            Mode::Json
        } else if crate::outputs::github::active() {
            Mode::Github
        } else if std::io::stderr().is_terminal()
            && !verbose
            && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(false)
            && std::env::var_os("CI").is_none()
        {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

pub struct Reporter {
    mode: Mode,
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, (ProgressBar, Instant)>>,
}

impl Reporter {
    pub fn new(mode: Mode) -> Self {
        let multi = (mode == Mode::Live)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            mode,
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where logs go: stderr, through the live view when there is one, so that a log
    /// line does not tear the service lines apart.
    pub fn log_writer(&self) -> impl Fn() -> LogWriter + Send + Sync + 'static {
        let multi = self.multi.clone();
        move || LogWriter(multi.clone())
    }

    fn line(&self, text: &str) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Json => tracing::info!(target: "progress", "{text}"),
            Mode::Live => {
                if let Some(m) = &self.multi {
                    let _ = m.println(text);
                }
            }
            Mode::Github => eprintln!("{text}"),
            Mode::Plain => {
                let now = time::OffsetDateTime::now_utc();
                eprintln!(
                    "[{:02}:{:02}:{:02}] {text}",
                    now.hour(),
                    now.minute(),
                    now.second()
                );
            }
        }
    }

    pub fn info(&self, text: impl AsRef<str>) {
        self.line(text.as_ref());
    }

    pub fn warn(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        match self.mode {
            Mode::Github => eprintln!("::warning::{}", crate::outputs::github::escape(text)),
            Mode::Quiet => eprintln!("warning: {text}"),
            Mode::Json => tracing::warn!(target: "progress", "{text}"),
            _ => self.line(&format!("warning: {text}")),
        }
    }

    /// An error annotation in GitHub; elsewhere the error is printed once by `main`.
    pub fn annotate_error(&self, text: &str, file: Option<(&str, u64, u64)>) {
        if self.mode == Mode::Github {
            let place = file
                .map(|(f, l, c)| format!(" file={f},line={l},col={c}"))
                .unwrap_or_default();
            println!("::error{place}::{}", crate::outputs::github::escape(text));
        }
    }

    pub fn group(&self, title: &str) {
        if self.mode == Mode::Github {
            eprintln!("::group::{title}");
        } else {
            self.line(title);
        }
    }

    pub fn end_group(&self) {
        if self.mode == Mode::Github {
            eprintln!("::endgroup::");
        }
    }

    /// A service's state changed (or it started being tracked).
    pub fn service(&self, name: &str, state: &str) {
        if self.mode == Mode::Json {
            tracing::info!(target: "progress", service = name, state, "{name}: {state}");
            return;
        }
        if let Some(multi) = &self.multi {
            let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
            let (bar, _) = bars.entry(name.to_string()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner:.cyan} {prefix:<40} {msg:<14} {elapsed:>5}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(name.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                (bar, Instant::now())
            });
            bar.set_message(state.to_string());
        } else {
            self.line(&format!("{name}: {state}"));
        }
    }

    /// A service reached a final state for this phase. On a terminal its live line
    /// becomes a permanent one above the others.
    pub fn service_done(&self, name: &str, text: &str) {
        if self.mode == Mode::Json {
            tracing::info!(target: "progress", service = name, state = text, done = true, "{name}: {text}");
            return;
        }
        if let Some(multi) = &self.multi {
            let finished = self
                .bars
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            let line = match finished {
                Some((bar, started)) => {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                    format!("  {name:<40} {text} after {}s", started.elapsed().as_secs())
                }
                None => format!("  {name:<40} {text}"),
            };
            let _ = multi.println(line);
        } else {
            self.line(&format!("{name}: {text}"));
        }
    }

    /// Stops the live view so that later output is not overdrawn.
    pub fn finish(&self) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        // Lines still live belong to a phase that was cut short; what happened to
        // those services is reported next (teardown).
        for (_, (bar, _)) in bars.drain() {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
            if let Some(m) = &self.multi {
                m.remove(&bar);
            }
        }
        let _ = std::io::stderr().flush();
    }
}

/// Writes to stderr, suspending the live view while it does.
pub struct LogWriter(Option<MultiProgress>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(multi) => multi.suspend(|| std::io::stderr().write(buf)),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
