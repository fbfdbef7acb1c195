//! The command line. Parsed once; `settings` turns it into validated settings.
//!
//! Every example in the help is a line starting with `$ `: `tests/it/manual.rs` runs
//! each one in bash against the sandbox, so they stay true.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::delivery::env::Format;
use crate::delivery::github::GithubEnv;

/// `up`'s default `--timeout`; `validate` checks the ttl against the same.
pub const DEFAULT_TIMEOUT: &str = "20m";

/// [`crate::settings::DEFAULT_SHARED_IDLE`] as the help shows it (a test keeps the two
/// equal).
const DEFAULT_SHARED_IDLE_TEXT: &str = "24h";

const EXAMPLES: &str = "\
Examples:
  Start: a commented manifest, then a try without an Aiven account (a local
  imitation of the API, with real PostgreSQL behind it where it is installed):
    $ aiven-ephemeral init
    $ aiven-ephemeral run --sandbox -- sh -c 'psql \"$DB_URI\" -c \"select 1\"'

  Separate steps, the services' values in the shell (a CI post step runs `down`
  even when the job failed):
    $ aiven-ephemeral up --sandbox && . .aiven-ephemeral/env.sh
    $ psql \"$DB_URI_VERIFY\" -c 'select 1'
    $ aiven-ephemeral down

  In CI, with AIVEN_TOKEN set, the same without --sandbox.

Exit codes: 0 ok, 1 provisioning failed, 2 usage or manifest error, 3
authentication, 4 timeout, 5 teardown incomplete, 129/130/143
SIGHUP/SIGINT/SIGTERM; `run` passes the command's own code through (127: not
found, 126: cannot be run).";

const GLOBAL: &str = "Global options";
/// `--sandbox` of the commands that find a run by its id (down, extend, env).
const RUN_IN_SANDBOX: &str =
    "The run is in the sandbox (needed only with --run-id and no state file)";
/// `-f` of extend and env.
const RUN_MANIFEST: &str =
    "The manifest (for the project and the services, when there is no state file)";
const API: &str = "API options";

#[derive(Debug, Parser)]
#[command(
    name = "aiven-ephemeral",
    bin_name = "aiven-ephemeral",
    version = crate::VERSION,
    about = "Real Aiven services for every CI run and laptop, guaranteed to be deleted afterwards",
    after_long_help = EXAMPLES,
    propagate_version = true,
    next_help_heading = GLOBAL
)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How much is said, and how: every command takes these.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// More output (-v info about requests, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet", help_heading = GLOBAL)]
    pub verbose: u8,
    /// Only warnings and errors
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, help_heading = GLOBAL)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people
    Text,
    /// One JSON object per line
    Json,
}

/// Where the API is and who calls it: the commands that talk to it take these.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = API)]
pub struct ApiArgs {
    /// Read the API token from this file (else AIVEN_TOKEN, then AIVEN_AUTH_TOKEN)
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Aiven API base URL (paths are /v1/...)
    #[arg(long, env = "AIVEN_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// Aiven project (default: the manifest's `project`)
    #[arg(long, env = "AIVEN_PROJECT", value_name = "NAME")]
    pub project: Option<String>,
    /// Extra CA bundle (PEM) to trust for the API connection
    #[arg(long, env = "AIVEN_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter manifest (and a CI snippet)
    #[command(after_help = "Examples:
    $ aiven-ephemeral init
    $ aiven-ephemeral init -f ci/services.yaml --ci github")]
    Init(InitArgs),
    /// Check the manifest offline, as `up` would; nothing is sent
    #[command(after_help = "Examples:
    $ aiven-ephemeral validate
    $ aiven-ephemeral validate -f aiven-ephemeral.yaml --timeout 30m")]
    Validate(ValidateArgs),
    /// Show what `up` would create: names, plans, clouds, env keys, and with a token the prices
    #[command(after_help = "Examples:
    $ aiven-ephemeral plan
    $ aiven-ephemeral plan --sandbox --json",
        mut_arg("sandbox", |a| a.help("Price against the sandbox: no account needed")))]
    Plan(PlanArgs),
    /// Create the manifest's services, wait until usable, write the env file
    #[command(after_help = "Examples:
    $ aiven-ephemeral up --sandbox && aiven-ephemeral down
    $ aiven-ephemeral up --sandbox --timeout 10m --env-file services.env
    $ aiven-ephemeral down")]
    Up(UpArgs),
    /// Delete a run's services (idempotent)
    #[command(after_help = "Examples:
    $ aiven-ephemeral down
    $ aiven-ephemeral down --missing-ok --teardown-timeout 30s",
        mut_arg("sandbox", |a| a.help(RUN_IN_SANDBOX)),
        mut_arg("file", |a| a.help("The manifest, for the project name when there is no state file")))]
    Down(DownArgs),
    /// `up`, run COMMAND with the services' env, then `down`
    #[command(after_help = "Examples:
    $ aiven-ephemeral run --sandbox -- aiven-ephemeral check
    $ aiven-ephemeral run --sandbox -- sh -c 'psql \"$DB_URI\" -c \"select 1\"'

The command's exit code is passed through (127: not found, 126: cannot be run).")]
    Run(RunArgs),
    /// Show a run's services and their states
    #[command(after_help = "Examples:
    $ aiven-ephemeral status
    $ aiven-ephemeral status --json",
        mut_arg("sandbox", |a| a.help("The run is in the sandbox (the state file says so already; this only checks it)")),
        mut_arg("file", |a| a.help("The manifest, for the project with --all")))]
    Status(StatusArgs),
    /// Delete this tool's services whose ttl has passed; release expired leases on shared
    /// services, power off idle ones, drop unused seed templates
    #[command(after_help = "Examples:
    $ aiven-ephemeral reap --sandbox --dry-run
    $ aiven-ephemeral reap --sandbox --older-than 6h
    $ aiven-ephemeral reap --sandbox --shared-idle 12h --templates-unused-for 3d",
        mut_arg("sandbox", |a| a.help("Sweep the sandbox of the state file's directory (project: its run's, unless --project)")),
        mut_arg("file", |a| a.help("The manifest, read (when it exists) only for its project")))]
    Reap(ReapArgs),
    /// Move a run's expiry
    #[command(after_help = "Examples:
    $ aiven-ephemeral extend --ttl 2h",
        mut_arg("sandbox", |a| a.help(RUN_IN_SANDBOX)),
        mut_arg("file", |a| a.help(RUN_MANIFEST)))]
    Extend(ExtendArgs),
    /// Rebuild a live run's env file and certificates from the API
    #[command(after_help = "Examples:
    $ aiven-ephemeral env --format shell && . .aiven-ephemeral/env.sh
    $ aiven-ephemeral env --out services --format json",
        mut_arg("sandbox", |a| a.help(RUN_IN_SANDBOX)),
        mut_arg("file", |a| a.help(RUN_MANIFEST)))]
    Env(EnvArgs),
    /// Connect to every endpoint of a live run with its protocol's TLS handshake
    #[command(after_help = "Examples:
    $ aiven-ephemeral check")]
    Check(CheckArgs),
    /// Serve a local imitation of the Aiven API
    #[command(
        after_help = "It prints AIVEN_API_URL, AIVEN_TOKEN and AIVEN_PROJECT for other programs, and
serves until Ctrl-C. `--sandbox` on the other commands needs none of this.

Examples:
    $ aiven-ephemeral sandbox"
    )]
    Sandbox(SandboxArgs),
    /// Print shell completions
    #[command(after_help = "Examples:
    $ source <(aiven-ephemeral completions bash)
    $ aiven-ephemeral completions zsh > _aiven-ephemeral  # in a dir on $fpath")]
    Completions {
        /// The shell to complete in
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// Commands that only print or write what they read: like any Unix filter they may
    /// end quietly when their reader goes away (`status | head`). The others must never
    /// die of a closed pipe halfway through creating or deleting.
    pub fn only_reports(&self) -> bool {
        matches!(
            self,
            Command::Validate(_)
                | Command::Plan(_)
                | Command::Status(_)
                | Command::Check(_)
                | Command::Env(_)
                | Command::Completions { .. }
        )
    }
}

#[derive(Debug, Args, Clone)]
pub struct ManifestArgs {
    /// The manifest
    #[arg(
        short = 'f',
        long = "file",
        default_value = "aiven-ephemeral.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
}

/// `--sandbox`, declared once; each command words its help (`mut_arg`).
#[derive(Debug, Args, Clone, Copy)]
pub struct SandboxArg {
    /// Run against the sandbox, a local imitation of the API: no account needed
    #[arg(long)]
    pub sandbox: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Ci {
    /// A GitHub Actions workflow: .github/workflows/aiven-ephemeral.yml
    Github,
    /// A GitLab CI job: aiven-ephemeral.gitlab-ci.yml, to include
    Gitlab,
}

#[derive(Debug, Args, Clone)]
pub struct InitArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Also write a CI snippet that runs the tests with the manifest's services
    #[arg(long, value_enum, value_name = "CI")]
    pub ci: Option<Ci>,
}

#[derive(Debug, Args, Clone)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The `--timeout` `up` will be given: the ttl must exceed it by 10m
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_name = "DUR", value_parser = duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Run id to show names for (default: a placeholder)
    #[arg(long, env = "AIVEN_EPHEMERAL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sandbox: SandboxArg,
    /// What `up --reuse` would do to the run's services now (needs --run-id and the API)
    #[arg(long, requires = "run_id")]
    pub reuse: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Run id (default: AIVEN_EPHEMERAL_RUN_ID, else a fresh random one)
    #[arg(long, env = "AIVEN_EPHEMERAL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    /// Where to write the env file (default: env beside the state file; b.env beside b.json)
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Where to keep the run's state (default: .aiven-ephemeral/state.json)
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Give up waiting after this long, counted from the start (e.g. 20m)
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_name = "DUR", value_parser = duration)]
    pub timeout: Duration,
    /// Longest wait between polls (the interval grows to it)
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = duration)]
    pub poll_interval: Duration,
    /// Refuse to create anything that would cost more per hour
    #[arg(long, value_name = "USD", value_parser = usd)]
    pub max_hourly_usd: Option<f64>,
    /// On failure, keep the services for debugging (and say so loudly)
    #[arg(long)]
    pub keep_on_failure: bool,
    #[command(flatten)]
    pub sandbox: SandboxArg,
    /// What goes to $GITHUB_ENV in GitHub Actions
    #[arg(long, value_enum, default_value_t = GithubEnv::All)]
    pub github_env: GithubEnv,
    /// Also write a GitLab dotenv report of the non-secret values here
    #[arg(long, value_name = "PATH")]
    pub dotenv_report: Option<PathBuf>,
    /// Most variables allowed in the dotenv report
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub dotenv_max_vars: usize,
    #[command(flatten)]
    pub preview: PreviewArgs,
    #[command(flatten)]
    pub teardown: TeardownArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// An environment that lives for a pull request: `up --reuse`.
#[derive(Debug, Args, Clone, Default)]
pub struct PreviewArgs {
    /// Keep the run for later pushes: adopt its services where they exist (from any
    /// machine, with or without a state file), create the missing ones, apply manifest
    /// changes, move its expiry to now + ttl, and leave it up on failure. Needs a run id
    /// stable for the pull request (pr-<number>, mr-<iid>)
    #[arg(long, requires = "run_id")]
    pub reuse: bool,
    /// With --reuse: recreate the manifest's databases (then run its seed) and Kafka
    /// topics, empty; the services stay
    #[arg(long, requires = "reuse")]
    pub reset: bool,
    /// Post or update the run's one comment on its pull request (GitHub Actions, with
    /// GITHUB_TOKEN) or merge request (GitLab CI, with AIVEN_EPHEMERAL_GITLAB_TOKEN); a
    /// refusal is a warning
    #[arg(long, env = "AIVEN_EPHEMERAL_COMMENT")]
    pub comment: bool,
}

#[derive(Debug, Args, Clone)]
pub struct TeardownArgs {
    /// Longest teardown may take when no signal started it (it waits through the API's
    /// own waits); past it, exit 5 naming what is left
    #[arg(
        long,
        env = "AIVEN_EPHEMERAL_TEARDOWN_TIMEOUT",
        default_value = "10m",
        value_name = "DUR",
        value_parser = duration_or("AIVEN_EPHEMERAL_TEARDOWN_TIMEOUT")
    )]
    pub teardown_timeout: Duration,
    /// Longest teardown may take after SIGINT, SIGTERM or SIGHUP. The default fits GitHub's
    /// cancel window (SIGINT, 7.5s, SIGTERM, 2.5s, SIGKILL)
    #[arg(
        long,
        env = "AIVEN_EPHEMERAL_SIGNAL_TEARDOWN_TIMEOUT",
        default_value = "8s",
        value_name = "DUR",
        value_parser = duration_or("AIVEN_EPHEMERAL_SIGNAL_TEARDOWN_TIMEOUT")
    )]
    pub signal_teardown_timeout: Duration,
}

/// The run's state file, for the commands that act on a run.
#[derive(Debug, Args, Clone)]
pub struct StateArgs {
    /// The run's state file (default: .aiven-ephemeral/state.json)
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct DownArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Delete every service tagged with this run id (when there is no state file)
    #[arg(long, env = "AIVEN_EPHEMERAL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    /// Exit 0 when there is neither a state file nor a run id
    #[arg(long)]
    pub missing_ok: bool,
    /// Also delete a kept run, and clear termination protection on this run's services;
    /// for shared services (--shared), delete them even while runs hold a lease
    #[arg(long)]
    pub force: bool,
    /// Delete shared services instead of a run: the manifest's `shared: true` services,
    /// or those named by --service. Refused while a run holds a live lease on one
    #[arg(long, conflicts_with_all = ["run_id", "comment"])]
    pub shared: bool,
    /// With --shared: this shared service only (repeatable)
    #[arg(long = "service", value_name = "NAME", requires = "shared")]
    pub services: Vec<String>,
    #[command(flatten)]
    pub sandbox: SandboxArg,
    /// Update the run's comment on its pull request or merge request: deleted, total cost
    #[arg(long, env = "AIVEN_EPHEMERAL_COMMENT")]
    pub comment: bool,
    #[command(flatten)]
    pub teardown: TeardownArgs,
    #[command(flatten)]
    pub manifest: ManifestArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub up: UpArgs,
    /// Leave AIVEN_TOKEN and friends in the command's environment
    #[arg(long)]
    pub pass_token: bool,
    /// How often the expiry moves forward (default: a third of the ttl, at least 1m).
    /// For tests, hence hidden
    #[arg(long, env = "AIVEN_EPHEMERAL_REFRESH_EVERY", hide = true, value_name = "DUR", value_parser = refresh_every)]
    pub refresh_every: Option<Duration>,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Every run of this tool in the project, with its age, expiry and cost so far (no
    /// state file needed; the project comes from --project or the manifest)
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sandbox: SandboxArg,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ReapArgs {
    /// Show what would be deleted; delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also select services created more than this long ago, whatever their expiry
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub older_than: Option<Duration>,
    /// Clear termination protection on this tool's services before deleting
    #[arg(long)]
    pub force: bool,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub sandbox: SandboxArg,
    /// Power off a shared service this tool created once it has had no live lease for
    /// this long (Aiven bills only while powered on; the next run powers it on again)
    #[arg(long, default_value = DEFAULT_SHARED_IDLE_TEXT, value_name = "DUR", value_parser = duration)]
    pub shared_idle: Duration,
    /// Delete idle shared services instead of powering them off
    #[arg(long)]
    pub delete_idle_shared: bool,
    /// Drop seed templates of shared PostgreSQL services not cloned for this long (the
    /// most recently used one stays)
    #[arg(long, default_value = "24h", value_name = "DUR", value_parser = duration)]
    pub templates_unused_for: Duration,
    #[command(flatten)]
    pub manifest: ManifestArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub teardown: TeardownArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// A live run: from its state file, or by its run id (later CI jobs).
#[derive(Debug, Args, Clone)]
pub struct RunRefArgs {
    /// The run (default: the state file's)
    #[arg(long, env = "AIVEN_EPHEMERAL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub sandbox: SandboxArg,
    #[command(flatten)]
    pub manifest: ManifestArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ExtendArgs {
    #[command(flatten)]
    pub run: RunRefArgs,
    /// New time to live, from now (the API's clock)
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args, Clone)]
pub struct EnvArgs {
    #[command(flatten)]
    pub run: RunRefArgs,
    /// What to write: dotenv (`env`), shell (`env.sh`, to source) or JSON (`env.json`)
    #[arg(long, value_enum, default_value_t = Format::Dotenv)]
    pub format: Format,
    /// Write the file and `certs/` here (default: beside the state file, as `up` does)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the values, secrets included, on stdout instead (CI logs are not masked)
    #[arg(long, conflicts_with = "out")]
    pub stdout: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// The run's env file (default: $AIVEN_EPHEMERAL_ENV_FILE, else the state file's)
    #[arg(long, env = "AIVEN_EPHEMERAL_ENV_FILE", value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// The run's state file (default: $AIVEN_EPHEMERAL_STATE_FILE, else .aiven-ephemeral/state.json)
    #[arg(long, env = "AIVEN_EPHEMERAL_STATE_FILE", value_name = "PATH")]
    pub state_file: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct SandboxArgs {
    /// Port to listen on (0: any free port)
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Sandbox configuration (YAML): token, projects, delays, faults
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve a state directory's sandbox as its detached process (what `--sandbox` starts)
    #[arg(long, value_name = "DIR", hide = true)]
    pub detach_for: Option<PathBuf>,
}

/// Parses the command line, adding the advice clap cannot know to its errors.
/// A price limit: `NaN` and `inf` parse as numbers, and no total is over them.
fn usd(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "`{text}` is not a positive number of US dollars; write e.g. `2.5`"
        )),
    }
}

/// Durations are parsed with the command line, as the manifest's are: a bad one is
/// refused before anything runs.
fn duration(text: &str) -> Result<Duration, String> {
    crate::manifest::parse_duration(text)
}

/// Each round re-tags every service of the run: a round a moment long would be a loop
/// spending the project's request budget.
fn refresh_every(text: &str) -> Result<Duration, String> {
    const SHORTEST: Duration = Duration::from_secs(1);
    let every = duration_or("AIVEN_EPHEMERAL_REFRESH_EVERY")(text)?;
    if every < SHORTEST {
        return Err(format!(
            "`{text}` is shorter than 1s; each round re-tags every service of the run (set by the flag or AIVEN_EPHEMERAL_REFRESH_EVERY)"
        ));
    }
    Ok(every)
}

/// [`duration`] for a flag that a variable may set: clap names only the flag, so the
/// error names the variable too.
fn duration_or(
    variable: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| duration(text).map_err(|e| format!("{e} (set by the flag or {variable})"))
}

pub fn parse() -> Cli {
    Cli::try_parse().unwrap_or_else(|e| {
        let e = with_tip(e, std::env::args().skip(1));
        e.exit()
    })
}

/// `run --sandbox echo hi`: the command goes after `--`.
fn with_tip(mut e: clap::Error, args: impl Iterator<Item = String>) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let args: Vec<String> = args.collect();
    let is_run = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str)
        == Some("run");
    if e.kind() == ErrorKind::UnknownArgument
        && is_run
        && !args.iter().any(|a| a == "--")
        && let Some(ContextValue::String(word)) = e.get(ContextKind::InvalidArg).cloned()
        && !word.starts_with('-')
    {
        let at = args.iter().position(|a| *a == word).unwrap_or(args.len());
        let (before, command) = args.split_at(at);
        e.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![
                format!(
                    "the command goes after `--`: aiven-ephemeral {} -- {}",
                    before.join(" "),
                    command.join(" ")
                )
                .into(),
            ]),
        );
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        assert_eq!(
            duration(DEFAULT_SHARED_IDLE_TEXT),
            Ok(crate::settings::DEFAULT_SHARED_IDLE)
        );
    }
}
