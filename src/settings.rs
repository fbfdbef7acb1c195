//! Each command's flags resolved once, before any work, into typed settings: the engine
//! and the commands read these, never clap's types. Resolving reads no file: the token
//! is read where it is needed (`up --sandbox` reads none), and a bad one is an error
//! there, as before.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{self, ApiArgs, Command};
use crate::delivery::env::Format;
use crate::delivery::github::GithubEnv;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::state::StatePaths;

/// `reap`'s default `--shared-idle`; `status` says by it when a shared service goes off.
pub const DEFAULT_SHARED_IDLE: Duration = Duration::from_secs(24 * 3600);

/// Where the API is and who calls it.
#[derive(Debug, Clone, Default)]
pub struct Api {
    token_file: Option<PathBuf>,
    /// `--api-url`/`AIVEN_API_URL`.
    pub url: Option<String>,
    /// `--project`/`AIVEN_PROJECT`.
    pub project: Option<String>,
    /// `--ca-cert`/`AIVEN_CA_CERT`.
    pub ca_cert: Option<PathBuf>,
}

impl Api {
    fn of(a: &ApiArgs) -> Self {
        Self {
            token_file: a.token_file.clone(),
            url: a.api_url.clone(),
            project: a.project.clone(),
            ca_cert: a.ca_cert.clone(),
        }
    }

    /// The token: `--token-file`, else `AIVEN_TOKEN`, else `AIVEN_AUTH_TOKEN`. Never
    /// taken as a plain command-line value.
    pub fn token(&self) -> Result<Option<Secret>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::usage(format!("cannot read --token-file {}: {e}", path.display()))
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(Error::usage(format!(
                    "--token-file {} is empty",
                    path.display()
                )));
            }
            return Ok(Some(Secret::new(token)));
        }
        Ok(["AIVEN_TOKEN", "AIVEN_AUTH_TOKEN"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .map(|t| t.trim().to_string())
            .find(|t| !t.is_empty())
            .map(Secret::new))
    }

    pub fn require_token(&self) -> Result<Secret> {
        self.token()?.ok_or_else(|| {
            Error::usage_hint(
                "no Aiven API token: set AIVEN_TOKEN (or AIVEN_AUTH_TOKEN, or pass --token-file)",
                "create a token in the Aiven console (User profile > Tokens), or try the manifest with --sandbox, which needs none",
            )
        })
    }

    /// The project: `--project`/`AIVEN_PROJECT`, else the manifest's.
    pub fn project(&self, manifest: Option<&crate::manifest::Manifest>) -> Result<String> {
        self.project
            .clone()
            .or_else(|| manifest.and_then(|m| m.project.clone()))
            .ok_or_else(|| {
                Error::usage_hint(
                    "no Aiven project given",
                    "set `project:` in the manifest, or pass --project / AIVEN_PROJECT",
                )
            })
    }
}

/// Which API a command talks to: `--sandbox` or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Api,
    Sandbox,
}

impl Backend {
    fn of(a: cli::SandboxArg) -> Self {
        if a.sandbox { Self::Sandbox } else { Self::Api }
    }

    pub fn is_sandbox(self) -> bool {
        self == Self::Sandbox
    }
}

/// How long a teardown may take, by what started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeardownBudget {
    /// Nothing interrupted the run: `down`, a post step, `after_script`, `run` after its
    /// command, `up` after a failure.
    pub plain: Duration,
    /// A signal started it (or came during it): sized to GitHub's cancel window (SIGINT,
    /// 7.5 s, SIGTERM, 2.5 s, SIGKILL), so that the report is out before the kill.
    pub interrupted: Duration,
}

impl TeardownBudget {
    /// At least `at_least` when nothing interrupts (a lost write's window, say).
    pub fn plain_at_least(self, at_least: Duration) -> Self {
        Self {
            plain: self.plain.max(at_least),
            ..self
        }
    }
}

impl TeardownBudget {
    fn of(args: &cli::TeardownArgs) -> Self {
        Self {
            plain: args.teardown_timeout,
            interrupted: args.signal_teardown_timeout,
        }
    }
}

/// A run to act on: the state file's, or the one `--run-id` names (later CI jobs).
#[derive(Debug, Clone)]
pub struct RunSelector {
    pub state: StatePaths,
    /// As given; each command checks it where it did (after reading the manifest).
    pub run_id: Option<String>,
    pub backend: Backend,
    pub manifest: PathBuf,
}

impl RunSelector {
    /// `extend`'s and `env`'s: a live run, by its state file or `--run-id`.
    fn of_run(r: &cli::RunRefArgs) -> Self {
        Self::of(r.run_id.as_ref(), &r.state, r.sandbox, &r.manifest)
    }

    fn of(
        run_id: Option<&String>,
        state: &cli::StateArgs,
        sandbox: cli::SandboxArg,
        manifest: &cli::ManifestArgs,
    ) -> Self {
        Self {
            state: StatePaths::of(state.state_file.as_deref()),
            run_id: run_id.cloned(),
            backend: Backend::of(sandbox),
            manifest: manifest.file.clone(),
        }
    }
}

/// `up --reuse`, `--reset`, `--comment`: an environment that lives for a pull request.
#[derive(Debug, Clone, Copy)]
pub struct Preview {
    pub reuse: bool,
    pub reset: bool,
    pub comment: bool,
}

pub struct Up {
    pub manifest: PathBuf,
    /// As given: `resumable` needs to know whether it was.
    pub run_id: Option<String>,
    pub env_file: Option<PathBuf>,
    pub state: StatePaths,
    pub timeout: Duration,
    pub poll_interval: Duration,
    pub max_hourly_usd: Option<f64>,
    pub keep_on_failure: bool,
    pub backend: Backend,
    pub github_env: GithubEnv,
    /// `--dotenv-report` and `--dotenv-max-vars`.
    pub dotenv_report: Option<(PathBuf, usize)>,
    pub preview: Preview,
    pub budget: TeardownBudget,
    pub api: Api,
}

impl Up {
    fn of(a: &cli::UpArgs) -> Self {
        Self {
            manifest: a.manifest.file.clone(),
            run_id: a.run_id.clone(),
            env_file: a.env_file.clone(),
            state: StatePaths::of(a.state_file.as_deref()),
            timeout: a.timeout,
            poll_interval: a.poll_interval,
            max_hourly_usd: a.max_hourly_usd,
            keep_on_failure: a.keep_on_failure,
            backend: Backend::of(a.sandbox),
            github_env: a.github_env,
            dotenv_report: a.dotenv_report.clone().map(|p| (p, a.dotenv_max_vars)),
            preview: Preview {
                reuse: a.preview.reuse,
                reset: a.preview.reset,
                comment: a.preview.comment,
            },
            budget: TeardownBudget::of(&a.teardown),
            api: Api::of(&a.api),
        }
    }
}

pub struct Run {
    pub up: Up,
    pub pass_token: bool,
    pub refresh_every: Option<Duration>,
    pub command: Vec<String>,
}

pub struct Down {
    pub run: RunSelector,
    pub missing_ok: bool,
    pub force: bool,
    /// `--shared`, with the `--service`s named (none: the manifest's).
    pub shared: Option<Vec<String>>,
    pub comment: bool,
    pub budget: TeardownBudget,
    pub api: Api,
}

pub struct Plan {
    pub manifest: PathBuf,
    pub run_id: Option<String>,
    pub json: bool,
    pub backend: Backend,
    pub reuse: bool,
    pub api: Api,
}

pub struct Status {
    pub run: RunSelector,
    pub all: bool,
    pub json: bool,
    pub api: Api,
}

pub struct Reap {
    pub dry_run: bool,
    pub older_than: Option<Duration>,
    pub force: bool,
    pub json: bool,
    pub backend: Backend,
    pub shared_idle: Duration,
    pub delete_idle_shared: bool,
    pub templates_unused_for: Duration,
    pub manifest: PathBuf,
    pub state: StatePaths,
    pub budget: TeardownBudget,
    pub api: Api,
}

pub struct Extend {
    pub run: RunSelector,
    pub ttl: Duration,
    pub api: Api,
}

pub struct Env {
    pub run: RunSelector,
    pub format: Format,
    pub out: Option<PathBuf>,
    pub stdout: bool,
    pub api: Api,
}

/// A command's settings.
pub enum Settings {
    Init(cli::InitArgs),
    Validate(cli::ValidateArgs),
    Plan(Plan),
    Up(Up),
    Down(Down),
    Run(Run),
    Status(Status),
    Reap(Reap),
    Extend(Extend),
    Env(Env),
    Check(cli::CheckArgs),
    Sandbox(cli::SandboxArgs),
    Completions(clap_complete::Shell),
}

impl Settings {
    pub fn resolve(command: &Command) -> Self {
        match command {
            Command::Init(a) => Self::Init(a.clone()),
            Command::Validate(a) => Self::Validate(a.clone()),
            Command::Plan(a) => Self::Plan(Plan {
                manifest: a.manifest.file.clone(),
                run_id: a.run_id.clone(),
                json: a.json,
                backend: Backend::of(a.sandbox),
                reuse: a.reuse,
                api: Api::of(&a.api),
            }),
            Command::Up(a) => Self::Up(Up::of(a)),
            Command::Down(a) => Self::Down(Down {
                run: RunSelector::of(a.run_id.as_ref(), &a.state, a.sandbox, &a.manifest),
                missing_ok: a.missing_ok,
                force: a.force,
                shared: a.shared.then(|| a.services.clone()),
                comment: a.comment,
                budget: TeardownBudget::of(&a.teardown),
                api: Api::of(&a.api),
            }),
            Command::Run(a) => Self::Run(Run {
                up: Up::of(&a.up),
                pass_token: a.pass_token,
                refresh_every: a.refresh_every,
                command: a.command.clone(),
            }),
            Command::Status(a) => Self::Status(Status {
                run: RunSelector::of(None, &a.state, a.sandbox, &a.manifest),
                all: a.all,
                json: a.json,
                api: Api::of(&a.api),
            }),
            Command::Reap(a) => Self::Reap(Reap {
                dry_run: a.dry_run,
                older_than: a.older_than,
                force: a.force,
                json: a.json,
                backend: Backend::of(a.sandbox),
                shared_idle: a.shared_idle,
                delete_idle_shared: a.delete_idle_shared,
                templates_unused_for: a.templates_unused_for,
                manifest: a.manifest.file.clone(),
                state: StatePaths::of(a.state.state_file.as_deref()),
                budget: TeardownBudget::of(&a.teardown),
                api: Api::of(&a.api),
            }),
            Command::Extend(a) => Self::Extend(Extend {
                run: RunSelector::of_run(&a.run),
                ttl: a.ttl,
                api: Api::of(&a.api),
            }),
            Command::Env(a) => Self::Env(Env {
                run: RunSelector::of_run(&a.run),
                format: a.format,
                out: a.out.clone(),
                stdout: a.stdout,
                api: Api::of(&a.api),
            }),
            Command::Check(a) => Self::Check(a.clone()),
            Command::Sandbox(a) => Self::Sandbox(a.clone()),
            Command::Completions { shell } => Self::Completions(*shell),
        }
    }
}
