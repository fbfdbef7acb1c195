//! One module per command. `dispatch` maps the parsed command line to them.

pub mod check;
pub mod down;
pub mod env;
pub mod extend;
pub mod init;
pub mod plan;
pub mod reap;
pub mod run;
pub mod sandbox;
pub mod status;
pub mod up;
pub mod validate;

use std::path::PathBuf;

use crate::api::Service;
use crate::cli::Cli;
use crate::connection::Connection;
use crate::error::{Error, Result, Status};
use crate::progress::Reporter;
use crate::settings::{Api, RunSelector, Settings};
use crate::state;
use crate::{identity, tags};

pub async fn dispatch(cli: Cli, reporter: &'static Reporter) -> Result<Status> {
    match Settings::resolve(&cli.command) {
        Settings::Init(args) => init::init(&args, reporter),
        Settings::Validate(args) => validate::validate(&args, reporter),
        Settings::Plan(s) => plan::plan(&s).await,
        Settings::Up(s) => up::up(&s, reporter).await,
        Settings::Down(s) => down::down(&s, reporter).await,
        Settings::Run(s) => run::run(&s, reporter).await,
        Settings::Status(s) => status::status(&s).await,
        Settings::Reap(s) => reap::reap(&s, reporter).await,
        Settings::Extend(s) => extend::extend(&s, reporter).await,
        Settings::Env(s) => env::env(&s).await,
        Settings::Check(args) => check::check(&args).await,
        Settings::Sandbox(args) => sandbox::sandbox(&args).await,
        Settings::Completions(shell) => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            let name = command.get_name().to_string();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, &name, &mut script);
            let mut script = String::from_utf8_lossy(&script).into_owned();
            if shell == clap_complete::Shell::Bash {
                // clap_complete mangles the `-` of the name one way where it tracks the
                // subcommand and another in the labels it matches that against, so
                // nothing past the subcommand's name would complete.
                script = script.replace("aiven__subcmd__ephemeral", "aiven__ephemeral");
            }
            if shell == clap_complete::Shell::Fish {
                // clap_complete gives fish no values for a positional argument, so fish
                // offered files for the shell's name.
                use clap::ValueEnum;
                let shells: Vec<String> = clap_complete::Shell::value_variants()
                    .iter()
                    .filter_map(|s| Some(s.to_possible_value()?.get_name().to_string()))
                    .collect();
                script.push_str(&format!(
                    "complete -c {name} -n \"__fish_{}_using_subcommand completions\" -f -a \"{}\"\n",
                    name.replace('-', "_"),
                    shells.join(" ")
                ));
            }
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(script.as_bytes());
            Ok(Status::Success)
        }
    }
}

/// Left-aligned columns, two spaces apart.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        crate::say!(out "{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A run found by its state file, or by `--run-id` and its tags (later CI jobs, where
/// the state file is not).
pub struct RunRef {
    pub conn: Connection,
    pub project: String,
    pub run_id: String,
    /// Known from the state file; tag lookups then also require it.
    pub owner: Option<String>,
    /// Whether the state file records the run (its holder writes it, not a reader).
    pub recorded: bool,
    pub manifest: Option<PathBuf>,
    pub state_file: PathBuf,
    pub state_dir: PathBuf,
}

impl RunRef {
    pub async fn locate(api: &Api, sel: &RunSelector) -> Result<Self> {
        let state::StatePaths {
            file: state_file,
            dir: state_dir,
        } = sel.state.clone();
        let recorded = state::read(&state_file)?.filter(|s| s.live());
        let run_id = match &sel.run_id {
            Some(given) => Some(identity::run_id(given).map_err(Error::usage)?),
            None => None,
        };
        match (recorded, run_id.as_deref()) {
            (Some(s), id) if id.is_none_or(|id| id == s.run_id) => {
                let conn = Connection::for_state(api, &s, sel.backend, &state_dir).await?;
                Ok(Self {
                    project: s.project.clone(),
                    run_id: s.run_id.clone(),
                    owner: Some(s.owner.clone()),
                    manifest: s.manifest.clone().filter(|p| p.exists()),
                    recorded: true,
                    conn,
                    state_file,
                    state_dir,
                })
            }
            (_, Some(id)) => {
                let m = crate::manifest::load_if_present(&sel.manifest)?;
                Ok(Self {
                    project: api.project(m.as_ref())?,
                    run_id: id.to_string(),
                    owner: None,
                    recorded: false,
                    manifest: None,
                    conn: Connection::open(api, sel.backend, &state_dir).await?,
                    state_file,
                    state_dir,
                })
            }
            (_, None) => Err(Error::usage_hint(
                format!("no live run in {} and no --run-id", state_file.display()),
                "pass --run-id (AIVEN_EPHEMERAL_RUN_ID), e.g. from the `up` job's dotenv report",
            )),
        }
    }

    /// The run's services, by their tags.
    pub async fn services(&self) -> Result<Vec<Service>> {
        let listed = self
            .conn
            .client
            .list_services(&self.project)
            .await
            .map_err(|e| {
                Error::api(
                    format!("listing the services of project {}", self.project),
                    e,
                )
            })?;
        Ok(listed
            .into_iter()
            .filter(|s| {
                let own = tags::is_ours(&s.tags)
                    && s.tag(tags::TAG_RUN) == Some(self.run_id.as_str())
                    && self
                        .owner
                        .as_deref()
                        .is_none_or(|o| s.tag(tags::TAG_OWNER) == Some(o));
                own || self.lease_on(s).is_some()
            })
            .collect())
    }

    /// The run's lease on a shared service: (expiry, owner).
    pub fn lease_on(&self, s: &Service) -> Option<(String, String)> {
        tags::leases(&s.tags)
            .into_iter()
            .find(|(run, _, owner)| {
                run == &self.run_id && self.owner.as_deref().is_none_or(|o| o == owner)
            })
            .map(|(_, expires, owner)| (expires, owner))
    }
}
