//! The command line. Parsed once; `settings` turns it into validated settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::outputs::env::Format;
use crate::outputs::github::GithubEnv;

const EXAMPLES: &str = "\
Examples:
  Try a manifest without an Aiven account (a local imitation of the API):
    aiven-ephemeral run --sandbox -- sh -c 'psql \"$DB_URI\" -c \"select 1\"'

  In CI, services for the length of the test command, deleted afterwards:
    export AIVEN_TOKEN=...
    aiven-ephemeral run -- make integration-test

  Separate steps (a CI post step runs `down` even when the job failed):
    aiven-ephemeral up && . .aiven-ephemeral/env && make test
    aiven-ephemeral down

  Sweep services that outlived their ttl (a scheduled job):
    aiven-ephemeral reap --project my-ci-project

Exit codes: 0 ok, 1 provisioning failed, 2 usage or manifest error, 3 authentication,
4 timeout, 5 teardown incomplete, 129/130/143 SIGHUP/SIGINT/SIGTERM; `run` passes the
command's own code through.";

#[derive(Debug, Parser)]
#[command(
    name = "aiven-ephemeral",
    version,
    about = "Real Aiven services for every CI run and laptop, guaranteed to be deleted afterwards",
    after_long_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Read the API token from this file (else AIVEN_TOKEN, then AIVEN_AUTH_TOKEN)
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Aiven API base URL (paths are /v1/...)
    #[arg(long, global = true, env = "AIVEN_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// Aiven project (default: the manifest's `project`)
    #[arg(long, global = true, env = "AIVEN_PROJECT", value_name = "NAME")]
    pub project: Option<String>,
    /// Extra CA bundle (PEM) to trust for the API connection
    #[arg(long, global = true, env = "AIVEN_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// More output (-v info about requests, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only warnings and errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the manifest offline; nothing is sent
    Validate(ManifestArgs),
    /// Show what `up` would create: names, plans, clouds, env keys, and with a token the prices
    Plan(PlanArgs),
    /// Create the manifest's services, wait until usable, write the env file
    Up(UpArgs),
    /// Delete a run's services (idempotent)
    Down(DownArgs),
    /// `up`, run COMMAND with the services' env, then `down`
    Run(RunArgs),
    /// Show a run's services and their states
    Status(StatusArgs),
    /// Delete this tool's services whose ttl has passed
    Reap(ReapArgs),
    /// Move a run's expiry
    Extend(ExtendArgs),
    /// Rebuild a live run's env file and certificates from the API
    Env(EnvArgs),
    /// Connect to every endpoint of a live run with its protocol's TLS handshake
    Check(CheckArgs),
    /// Serve a local imitation of the Aiven API
    Sandbox(SandboxArgs),
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
    /// Price against the in-process sandbox
    #[arg(long)]
    pub sandbox: bool,
}

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Run id (default: AIVEN_EPHEMERAL_RUN_ID, else a fresh random one)
    #[arg(long, env = "AIVEN_EPHEMERAL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    /// Where to write the env file
    #[arg(long, value_name = "PATH")]
    pub env_file: Option<PathBuf>,
    /// Where to keep the run's state
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Give up waiting after this long, counted from the start (e.g. 20m)
    #[arg(long, default_value = "20m", value_name = "DUR")]
    pub timeout: String,
    /// Longest wait between polls (the interval grows to it)
    #[arg(long, default_value = "10s", value_name = "DUR")]
    pub poll_interval: String,
    /// Refuse to create anything that would cost more per hour
    #[arg(long, value_name = "USD")]
    pub max_hourly_usd: Option<f64>,
    /// On failure, keep the services for debugging (and say so loudly)
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Run against an in-process sandbox API: no account needed
    #[arg(long)]
    pub sandbox: bool,
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
    pub teardown: TeardownArgs,
}

#[derive(Debug, Args, Clone)]
pub struct TeardownArgs {
    /// Longest teardown may take; past it, exit 5 naming what is left. The default fits
    /// GitHub's cancel window (SIGINT, 7.5s, SIGTERM, 2.5s, SIGKILL)
    #[arg(long, default_value = "8s", value_name = "DUR")]
    pub teardown_timeout: String,
}

#[derive(Debug, Args, Clone)]
pub struct DownArgs {
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Delete every service tagged with this run id (when there is no state file)
    #[arg(long, env = "AIVEN_EPHEMERAL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    /// Exit 0 when there is neither a state file nor a run id
    #[arg(long)]
    pub missing_ok: bool,
    /// Also delete a kept run, and clear termination protection on this run's services
    #[arg(long)]
    pub force: bool,
    /// The run is in the in-process sandbox
    #[arg(long)]
    pub sandbox: bool,
    #[command(flatten)]
    pub teardown: TeardownArgs,
    /// The manifest, for the project name when there is no state file
    #[arg(
        short = 'f',
        long = "file",
        default_value = "aiven-ephemeral.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub up: UpArgs,
    /// Leave AIVEN_TOKEN and friends in the command's environment
    #[arg(long)]
    pub pass_token: bool,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub sandbox: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ReapArgs {
    /// Show what would be deleted; delete nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also select services created more than this long ago, whatever their expiry
    #[arg(long, value_name = "DUR")]
    pub older_than: Option<String>,
    /// Clear termination protection on this tool's services before deleting
    #[arg(long)]
    pub force: bool,
    /// Machine-readable output on stdout
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub teardown: TeardownArgs,
}

#[derive(Debug, Args, Clone)]
pub struct ExtendArgs {
    /// The run (default: the state file's)
    #[arg(long, env = "AIVEN_EPHEMERAL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    /// New time to live, from now (the API's clock)
    #[arg(long, value_name = "DUR")]
    pub ttl: String,
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    #[arg(
        short = 'f',
        long = "file",
        default_value = "aiven-ephemeral.yaml",
        value_name = "FILE"
    )]
    pub file: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct EnvArgs {
    /// The run (default: the state file's)
    #[arg(long, env = "AIVEN_EPHEMERAL_RUN_ID", value_name = "ID")]
    pub run_id: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Dotenv)]
    pub format: Format,
    /// Write `env` (or env.sh / env.json) and `certs/` here (default: the state directory)
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the values, secrets included, on stdout instead (CI logs are not masked)
    #[arg(long, conflicts_with = "out")]
    pub stdout: bool,
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    #[command(flatten)]
    pub manifest: ManifestArgs,
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
