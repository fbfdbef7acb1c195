//! The connection to the API a command works with: the real one, or the sandbox process
//! of a state directory, which lives while a run there is live.

use std::path::{Path, PathBuf};

use crate::api::{CaCert, Client, ClientConfig};
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::settings::{Api, Backend};

pub const DEFAULT_API_URL: &str = "https://api.aiven.io";
/// Recorded as the API URL of runs against the sandbox (its process may change).
pub const SANDBOX_API_URL: &str = "sandbox";

/// The API as a command talks to it: the real one, or the state directory's sandbox
/// process.
pub struct Connection {
    pub client: Client,
    /// What the state file records: the URL, or `sandbox`.
    pub api_url: String,
    /// The sandbox process and the state directory it serves.
    sandbox: Option<(crate::sandbox_process::Server, PathBuf)>,
    /// This command's use of the sandbox process: it is not stopped while held.
    using: Option<crate::sandbox_process::Use>,
}

impl Connection {
    /// The project's services; a failure names the project.
    pub async fn list_services(&self, project: &str) -> Result<Vec<crate::api::Service>> {
        self.client
            .list_services(project)
            .await
            .map_err(|e| Error::api(format!("listing the services of project {project}"), e))
    }

    /// The sandbox of `state_dir` with `--sandbox`, else the real API.
    pub async fn open(api: &Api, backend: Backend, state_dir: &Path) -> Result<Self> {
        match backend {
            Backend::Sandbox => Self::sandbox(api, state_dir).await,
            Backend::Api => Self::real(api, None).await,
        }
    }

    /// Connects to the API given by `--api-url`/`AIVEN_API_URL` (or the default).
    pub async fn real(api: &Api, api_url: Option<&str>) -> Result<Self> {
        let token = api.require_token()?;
        let api_url = api_url
            .map(str::to_string)
            .or_else(|| api.url.clone())
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(Error::usage(format!(
                "--api-url `{api_url}` must start with https:// or http://"
            )));
        }
        let ca_cert = match &api.ca_cert {
            Some(path) => Some(CaCert {
                pem: tokio::fs::read(path).await.map_err(|e| {
                    Error::usage(format!("cannot read --ca-cert {}: {e}", path.display()))
                })?,
                path: path.clone(),
            }),
            None => None,
        };
        let client = Client::new(ClientConfig {
            api_url: api_url.clone(),
            token,
            ca_cert,
        })
        .map_err(Error::usage)?;
        Ok(Self {
            client,
            api_url,
            sandbox: None,
            using: None,
        })
    }

    /// Connects to the sandbox process of `state_dir`, starting it if need be; its
    /// world persists in `state_dir/sandbox.json` and it lives until `down`.
    pub async fn sandbox(api: &Api, state_dir: &Path) -> Result<Self> {
        if api.url.is_some() {
            return Err(Error::usage(
                "--sandbox and --api-url (or AIVEN_API_URL) conflict: choose one",
            ));
        }
        let (server, using) = crate::sandbox_process::ensure(state_dir).await?;
        let client = match Client::new(ClientConfig {
            api_url: server.url.clone(),
            token: Secret::new(server.token.clone()),
            ca_cert: None,
        }) {
            Ok(client) => client,
            Err(e) => {
                drop(using);
                if !crate::state::any_live(state_dir) {
                    crate::sandbox_process::stop_soon(state_dir);
                }
                return Err(Error::usage(e));
            }
        };
        tracing::info!(
            "sandbox API at {} (process {}; {})",
            server.url,
            server.pid,
            server.backends
        );
        Ok(Self {
            client,
            api_url: SANDBOX_API_URL.to_string(),
            sandbox: Some((server, state_dir.to_path_buf())),
            using: Some(using),
        })
    }

    /// Opens what a run recorded (`sandbox` or a URL), refusing a conflicting flag.
    pub async fn for_state(
        api: &Api,
        state: &crate::state::State,
        backend: Backend,
        state_dir: &Path,
    ) -> Result<Self> {
        if state.sandbox {
            if api.url.is_some() {
                return Err(Error::usage(
                    "the state file's run is in the sandbox; --api-url (or AIVEN_API_URL) conflicts with it",
                ));
            }
            return Self::sandbox(api, state_dir).await;
        }
        if backend.is_sandbox() {
            return Err(Error::usage(format!(
                "--sandbox conflicts with the state file, whose run is at {}",
                state.api_url
            )));
        }
        if let Some(url) = &api.url
            && url.trim_end_matches('/') != state.api_url.trim_end_matches('/')
        {
            return Err(Error::usage(format!(
                "--api-url {url} conflicts with the state file's API URL {}",
                state.api_url
            )));
        }
        Self::real(api, Some(&state.api_url)).await
    }

    pub fn is_sandbox(&self) -> bool {
        self.sandbox.is_some()
    }

    /// For the sandbox: what serves its services' ports.
    pub fn sandbox_backends(&self) -> Option<String> {
        self.sandbox.as_ref().map(|(s, _)| s.backends.clone())
    }

    /// The sandbox process, if this is the sandbox.
    pub fn sandbox_server(&self) -> Option<&crate::sandbox_process::Server> {
        self.sandbox.as_ref().map(|(s, _)| s)
    }

    /// Done with the API. The sandbox process stays while a run in its directory is
    /// live (its URIs must keep working) or another command uses it, and stops with the
    /// last one.
    pub async fn close(mut self) {
        self.using = None;
        if let Some((_, dir)) = self.sandbox.take()
            && !crate::state::any_live(&dir)
        {
            crate::sandbox_process::stop(&dir).await;
        }
    }
}

/// A command that ends without `close` (an error, a signal before anything existed)
/// must not strand a sandbox process that serves no live run.
impl Drop for Connection {
    fn drop(&mut self) {
        self.using = None;
        if let Some((_, dir)) = self.sandbox.take()
            && !crate::state::any_live(&dir)
        {
            crate::sandbox_process::stop_soon(&dir);
        }
    }
}
