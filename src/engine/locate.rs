//! Finding a run, and its services, for the commands that act on one: `down`, `env`,
//! `extend`, `status`. One place, with the rules that differ by purpose named:
//!
//! | rule | env, extend | down | status |
//! |---|---|---|---|
//! | state file counted | live only | any status | any; required |
//! | `--run-id` = the state's | the state | the state | (no flag) |
//! | `--run-id` ≠ the state's | by tags, even over a live state | by tags if the state is torn down, else an error | — |
//! | neither | [`Found::Nothing`]: an error | [`Found::Nothing`] | error |
//! | project when found by tags | `--project`, else the manifest | same | — |

use std::path::PathBuf;

use crate::api::Service;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::settings::{Api, RunSelector};
use crate::state::{self, RunStatus, State, StatePaths};
use crate::{identity, tags};

/// Which command looks, for the rules that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `env`, `extend`: a live run to use.
    Live,
    Down,
}

/// Where a run was found.
pub enum Found {
    /// The state file records it.
    Recorded(Box<State>),
    /// By its tags: `--run-id` (checked), with no state file of its own.
    Tagged(String),
    /// Neither a (live) state file nor a run id.
    Nothing,
}

/// Finds the run `sel` names, by `purpose`'s rules.
pub fn find(sel: &RunSelector, purpose: Purpose) -> Result<Found> {
    let file = &sel.state.file;
    let recorded = state::read(file)?;
    let run_id = match &sel.run_id {
        Some(given) => Some(identity::run_id(given).map_err(Error::usage)?),
        None => None,
    };
    if purpose == Purpose::Down {
        return match (recorded, run_id) {
            // A finished run's state file says nothing about another run: go by its tags.
            (Some(s), Some(id)) if s.run_id != id && s.status == RunStatus::TornDown => {
                Ok(Found::Tagged(id))
            }
            // The file is another run's, which is live: never to be thrown away.
            (Some(s), Some(id)) if s.run_id != id => Err(Error::usage_hint(
                format!(
                    "{} holds run {} ({}), not {id}",
                    file.display(),
                    s.run_id,
                    serde_json::to_value(s.status)
                        .ok()
                        .and_then(|v| v.as_str().map(|v| v.replace('_', " ")))
                        .unwrap_or_default()
                ),
                format!(
                    "pass the --state-file run {id} was made with, or `--state-file` naming a file that does not exist to find it by its tags; keep this file: it is run {}'s",
                    s.run_id
                ),
            )),
            (Some(s), _) => Ok(Found::Recorded(Box::new(s))),
            (None, Some(id)) => Ok(Found::Tagged(id)),
            (None, None) => Ok(Found::Nothing),
        };
    }
    match (recorded.filter(State::live), run_id) {
        (Some(s), id) if id.as_ref().is_none_or(|id| *id == s.run_id) => {
            Ok(Found::Recorded(Box::new(s)))
        }
        (_, Some(id)) => Ok(Found::Tagged(id)),
        (_, None) => Ok(Found::Nothing),
    }
}

/// `status`: the state file's run, whatever its status; there must be one.
pub fn recorded(sel: &RunSelector) -> Result<State> {
    let file = &sel.state.file;
    state::read(file)?.ok_or_else(|| {
        Error::usage_hint(
            format!("no state file at {}", file.display()),
            "`aiven-ephemeral up` writes it; pass --state-file for another",
        )
    })
}

/// A run's identity in tags: its id, and its owner when a state file says it.
#[derive(Debug, Clone)]
pub struct RunKey {
    pub run_id: String,
    /// Known from the state file; tag lookups then also require it.
    pub owner: Option<String>,
}

impl RunKey {
    /// A service the run created: this tool's tags, the run's id, and its owner if known.
    pub fn owns(&self, s: &Service) -> bool {
        tags::is_ours(&s.tags)
            && s.tag(tags::TAG_RUN) == Some(self.run_id.as_str())
            && self
                .owner
                .as_deref()
                .is_none_or(|o| s.tag(tags::TAG_OWNER) == Some(o))
    }

    /// The run's lease on a shared service (its owner's, if known).
    pub fn lease_on(&self, s: &Service) -> Option<tags::Lease> {
        tags::leases(&s.tags)
            .into_iter()
            .find(|l| l.run_id == self.run_id && self.owner.as_deref().is_none_or(|o| o == l.owner))
    }
}

/// A run found, with the API it is in: for `env` and `extend` (later CI jobs, where the
/// state file may not be).
pub struct RunRef {
    pub conn: Connection,
    pub project: String,
    pub key: RunKey,
    /// Whether the state file records the run (its holder writes it, not a reader).
    pub recorded: bool,
    pub manifest: Option<PathBuf>,
    pub state: StatePaths,
}

impl RunRef {
    /// Finds the live run `sel` names and connects to its API.
    pub async fn open(sel: &RunSelector, api: &Api) -> Result<Self> {
        let state = sel.state.clone();
        match find(sel, Purpose::Live)? {
            Found::Recorded(s) => Ok(Self {
                conn: Connection::for_state(api, &s, sel.backend, &state.dir).await?,
                project: s.project.clone(),
                key: RunKey {
                    run_id: s.run_id.clone(),
                    owner: Some(s.owner.clone()),
                },
                manifest: s.manifest.clone().filter(|p| p.exists()),
                recorded: true,
                state,
            }),
            Found::Tagged(run_id) => {
                let m = crate::manifest::load_if_present(&sel.manifest)?;
                Ok(Self {
                    project: api.project(m.as_ref())?,
                    key: RunKey {
                        run_id,
                        owner: None,
                    },
                    recorded: false,
                    manifest: None,
                    conn: Connection::open(api, sel.backend, &state.dir).await?,
                    state,
                })
            }
            Found::Nothing => Err(Error::usage_hint(
                format!("no live run in {} and no --run-id", state.file.display()),
                "pass --run-id (AIVEN_EPHEMERAL_RUN_ID), e.g. from the `up` job's dotenv report",
            )),
        }
    }

    /// The run's services, by their tags: its own and the shared ones it leases.
    pub async fn services(&self) -> Result<Vec<Service>> {
        let listed = self.conn.list_services(&self.project).await?;
        Ok(listed
            .into_iter()
            .filter(|s| self.key.owns(s) || self.key.lease_on(s).is_some())
            .collect())
    }
}
