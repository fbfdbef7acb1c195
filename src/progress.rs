//! What the user sees while a run goes: on a terminal a live row per service saying
//! what it waits on right now (creating, REBUILDING, nodes 2/3, probing, databases 1/2,
//! topics 0/3 ACTIVE, ACLs), pinned when done, under them one overall row (n/N ready,
//! elapsed, time left before `--timeout`); elsewhere plain timestamped lines, one per
//! state change; in GitHub Actions the same lines with `::group::` sections and
//! `::error::` annotations; with `--log-format json`, JSON events. All of it on stderr:
//! stdout is for data. Log lines take the same shape as the reporter's own.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, format::Writer};
use tracing_subscriber::registry::LookupSpan;

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
        } else if crate::ci::github() {
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
    view: Mutex<View>,
}

/// The live view's rows.
#[derive(Default)]
struct View {
    bars: HashMap<String, (ProgressBar, Instant)>,
    /// The widest service name of the phase, so that columns line up.
    name_width: usize,
    /// n/N ready, elapsed, time left.
    overall: Option<(ProgressBar, usize)>,
    /// The terminal's settings before the view changed them.
    #[cfg(unix)]
    terminal: Option<nix::sys::termios::Termios>,
}

/// The longest name the live view shows whole: what the terminal's width leaves after
/// a row's spinner, age and 29 columns for what the service waits on (40 at 80
/// columns), and never cut below 20 nor above 64, the longest service name.
fn max_name_width() -> usize {
    let columns = console::Term::stderr()
        .size_checked()
        .map_or(80, |(_, columns)| usize::from(columns));
    columns.saturating_sub(2 + 1 + 6 + 2 + 29).clamp(20, 64)
}

/// `14s`, `3m05s`, `1h02m`: short enough for a column.
pub fn compact(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

impl Reporter {
    pub fn new(mode: Mode) -> Self {
        let multi = (mode == Mode::Live)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            mode,
            multi,
            view: Mutex::new(View::default()),
        }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rows that follow are these services': their names take one width.
    pub fn align(&self, names: &[String]) {
        self.view().name_width = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .min(max_name_width());
    }

    /// A phase over these services begins; `deadline` is when `--timeout` ends it. On a
    /// terminal this adds the overall row.
    pub fn begin(&self, names: &[String], deadline: Instant) {
        let Some(multi) = &self.multi else { return };
        self.align(names);
        let mut view = self.view();
        #[cfg(unix)]
        if view.terminal.is_none() {
            view.terminal = quiet_control_characters();
        }
        let style = ProgressStyle::with_template("  {pos}/{len} ready, {age} elapsed, {left} left")
            .map(|s| {
                s.with_key("age", |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&compact(st.elapsed()));
                })
                .with_key(
                    "left",
                    move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&compact(
                            deadline.saturating_duration_since(Instant::now()),
                        ));
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = multi.add(ProgressBar::new(names.len() as u64).with_style(style));
        bar.enable_steady_tick(Duration::from_millis(500));
        if let Some((old, _)) = view.overall.replace((bar, names.len())) {
            old.finish_and_clear();
            multi.remove(&old);
        }
    }

    /// The row of a service: `⠋ name  14s  what it waits on`.
    fn row_style(width: usize) -> ProgressStyle {
        let template = format!("{{spinner:.cyan}} {{prefix:<{width}}} {{age:>6}}  {{wide_msg}}");
        ProgressStyle::with_template(&template)
            .map(|s| {
                s.with_key("age", |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&compact(st.elapsed()));
                })
            })
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
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
                    live_println(m, text);
                }
            }
            Mode::Github => say!("{text}"),
            Mode::Plain => {
                let now = time::OffsetDateTime::now_utc();
                say!(
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
            Mode::Github => say!("::warning::{}", crate::ci::escape_annotation(text)),
            Mode::Quiet => say!("warning: {text}"),
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
            say!(out "::error{place}::{}", crate::ci::escape_annotation(text));
        }
    }

    pub fn group(&self, title: &str) {
        if self.mode == Mode::Github {
            say!("::group::{title}");
        } else {
            self.line(title);
        }
    }

    pub fn end_group(&self) {
        if self.mode == Mode::Github {
            say!("::endgroup::");
        }
    }

    /// A service's state changed (or it started being tracked).
    pub fn service(&self, name: &str, state: &str) {
        if self.mode == Mode::Json {
            tracing::info!(target: "progress", service = name, state, "{name}: {state}");
            return;
        }
        let Some(multi) = &self.multi else {
            self.line(&format!("{name}: {state}"));
            return;
        };
        let mut view = self.view();
        let width = view
            .name_width
            .max(name.chars().count().min(max_name_width()));
        let overall = view.overall.as_ref().map(|(b, _)| b.clone());
        let (bar, _) = view.bars.entry(name.to_string()).or_insert_with(|| {
            let bar = ProgressBar::new_spinner().with_style(Self::row_style(width));
            // Rows stay above the overall row.
            let bar = match &overall {
                Some(o) => multi.insert_before(o, bar),
                None => multi.add(bar),
            };
            bar.set_prefix(cut(name, width));
            bar.enable_steady_tick(Duration::from_millis(120));
            (bar, Instant::now())
        });
        bar.set_message(state.to_string());
    }

    /// A service reached a final state for this phase. On a terminal its live row
    /// becomes a permanent line above the others.
    pub fn service_done(&self, name: &str, text: &str) {
        if self.mode == Mode::Json {
            tracing::info!(target: "progress", service = name, state = text, done = true, "{name}: {text}");
            return;
        }
        let Some(multi) = &self.multi else {
            self.line(&format!("{name}: {text}"));
            return;
        };
        let mut view = self.view();
        let width = view
            .name_width
            .max(name.chars().count().min(max_name_width()));
        let took = match view.bars.remove(name) {
            Some((bar, started)) => {
                bar.finish_and_clear();
                multi.remove(&bar);
                compact(started.elapsed())
            }
            None => String::new(),
        };
        if let Some((overall, _)) = &view.overall {
            overall.inc(1);
        }
        live_println(
            multi,
            &format!("✓ {:<width$} {took:>6}  {text}", cut(name, width)),
        );
    }

    /// Stops the live view so that later output is not overdrawn, and gives the
    /// terminal its settings back.
    pub fn finish(&self) {
        let mut view = self.view();
        // Rows still live belong to a phase that was cut short; what happened to
        // those services is reported next (teardown).
        let overall = view.overall.take().map(|(b, _)| b);
        for bar in view.bars.drain().map(|(_, (b, _))| b).chain(overall) {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
            if let Some(m) = &self.multi {
                m.remove(&bar);
            }
        }
        #[cfg(unix)]
        if let Some(saved) = view.terminal.take() {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stderr(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
        let _ = std::io::stderr().flush();
    }

    /// Log events shaped like the reporter's own lines.
    pub fn log_format(&self) -> LineFormat {
        LineFormat(self.mode)
    }
}

/// A name cut to `width` characters, marked with `…` when cut.
fn cut(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        return name.to_string();
    }
    let mut out: String = name.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// While the live view runs, the terminal does not echo `^C`: the echo would land in
/// the middle of a row that is redrawn next, and stay half-erased on the screen.
#[cfg(unix)]
fn quiet_control_characters() -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let saved = tcgetattr(std::io::stderr()).ok()?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHOCTL);
    tcsetattr(std::io::stderr(), SetArg::TCSANOW, &quiet).ok()?;
    Some(saved)
}

/// `warning: text` (with the time of day when lines are timestamped): a log event looks
/// like every other line the reporter writes, the signal's announcement included.
pub struct LineFormat(Mode);

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing::Level;
        let level = *event.metadata().level();
        match self.0 {
            Mode::Github if level == Level::WARN => write!(writer, "::warning::")?,
            Mode::Github if level == Level::ERROR => write!(writer, "::error::")?,
            Mode::Plain => {
                let now = time::OffsetDateTime::now_utc();
                write!(
                    writer,
                    "[{:02}:{:02}:{:02}] ",
                    now.hour(),
                    now.minute(),
                    now.second()
                )?;
            }
            _ => {}
        }
        let label = match level {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
        };
        if self.0 != Mode::Github || !matches!(level, Level::WARN | Level::ERROR) {
            write!(writer, "{label}")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Writes to stderr, above the live view's rows when there is one. It never fails: a
/// terminal or pipe that went away (EIO after a hangup, EPIPE) must not stop a run
/// halfway through creating or deleting, and the log's own complaint about a failed
/// write would be one more failed write.
pub struct LogWriter(Option<MultiProgress>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            // Not `suspend`: it panics when the terminal cannot be written to.
            Some(multi) => live_println(multi, String::from_utf8_lossy(buf).trim_end()),
            None => {
                let _ = std::io::stderr().write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// A line above the live view's rows. When the terminal is gone the view stops drawing
/// (it would keep every failed frame to draw again).
fn live_println(multi: &MultiProgress, text: &str) {
    if multi.println(text).is_err() {
        multi.set_draw_target(ProgressDrawTarget::hidden());
    }
}
