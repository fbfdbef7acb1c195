//! Real servers behind sandbox services. Until a backend kind is available for a
//! service type, its endpoints are simulated listeners (see `endpoints`).

use crate::config::BackendMode;
use crate::pki::Pki;
use crate::world::Service;

/// Which real servers this machine can run, decided once at start.
pub struct Backends {
    mode: BackendMode,
}

/// A running real server. Dropping it does not stop it; call `stop`.
pub struct Backend {
    port: u16,
}

impl Backends {
    pub fn detect(mode: BackendMode) -> Result<Self, String> {
        if mode == BackendMode::Required {
            return Err("`backends: required`, but this sandbox build has no real backends".into());
        }
        Ok(Self { mode })
    }

    pub fn describe(&self) -> String {
        match self.mode {
            BackendMode::Simulated => "simulated endpoints (backends: simulated)".into(),
            _ => "simulated endpoints".into(),
        }
    }

    pub async fn start(
        &self,
        _service: &Service,
        _port: u16,
        _pki: &Pki,
    ) -> Result<Option<Backend>, String> {
        Ok(None)
    }
}

impl Backend {
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stop(self) {}
}

/// Creates a database created through the API in the real server behind the service.
pub(crate) async fn sync_database(
    _shared: &crate::Shared,
    _project: &str,
    _service: &str,
    _database: &str,
) -> crate::world::ApiResult<()> {
    Ok(())
}

/// Creates a user created through the API in the real server behind the service.
pub(crate) async fn sync_user(
    _shared: &crate::Shared,
    _project: &str,
    _service: &str,
    _user: &crate::world::User,
) -> crate::world::ApiResult<()> {
    Ok(())
}
