use std::process::ExitCode;

use aiven_ephemeral::cli::{self, Cli, LogFormat};
use aiven_ephemeral::error::Report;
use aiven_ephemeral::progress::{Mode, Reporter};

fn main() -> ExitCode {
    let cli = cli::parse();
    #[cfg(unix)]
    if cli.command.only_reports() {
        // SAFETY: the default disposition installs no handler code.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
    // One per process, shared by every task that reports.
    let reporter: &'static Reporter = Box::leak(Box::new(Reporter::new(Mode::detect(
        cli.output.quiet,
        cli.output.verbose > 0,
        cli.output.log_format == LogFormat::Json,
    ))));
    init_logging(&cli, reporter);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            aiven_ephemeral::say!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(aiven_ephemeral::commands::dispatch(cli, reporter));
    reporter.finish();
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(status) => ExitCode::from(status.code()),
        Err(e) => {
            aiven_ephemeral::say!("{}", Report(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Logs go to stderr. `RUST_LOG` wins; else warnings, `-v` info, `-vv` debug.
fn init_logging(cli: &Cli, reporter: &Reporter) {
    use tracing_subscriber::EnvFilter;
    // The certificate verifier logs each failed handshake as an error of its own; the
    // request's error says it once, with a hint.
    let default = match (cli.output.quiet, cli.output.verbose) {
        (true, _) => "error,rustls_platform_verifier=off",
        (false, 0) => "warn,rustls_platform_verifier=off",
        (false, 1) => "info,aiven_sandbox=warn",
        (false, _) => "debug,hyper=info,reqwest=info,rustls=info,h2=info",
    };
    // In JSON mode progress events are log events too.
    let default = match cli.output.log_format {
        LogFormat::Json if !cli.output.quiet => format!("{default},progress=info"),
        _ => default.to_string(),
    };
    // The PostgreSQL driver logs every statement at debug, and the statements that set
    // a role's password carry its SCRAM verifier: never shown, whatever RUST_LOG says.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default))
        .add_directive("tokio_postgres=info".parse().expect("a valid directive"));
    // The writer never fails, and a failed write is not to be reported with a panicking
    // `eprintln!`.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(reporter.log_writer())
        .with_target(false);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    match cli.output.log_format {
        LogFormat::Json => builder.json().init(),
        // Asked-for logs (-v, RUST_LOG) keep their timestamps and levels; the few
        // lines otherwise logged take the shape of the reporter's own.
        LogFormat::Text if cli.output.verbose > 0 || std::env::var_os("RUST_LOG").is_some() => {
            builder.with_ansi(ansi).init()
        }
        LogFormat::Text => builder
            .with_ansi(false)
            .event_format(reporter.log_format())
            .init(),
    }
}
