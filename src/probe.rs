//! Readiness beyond the API: once the API says a service is ready, its primary endpoint
//! must accept a TCP connection (`probe: tcp`, the default), or complete a TLS
//! handshake verified against the project CA and the system's roots (`probe: tls`).
//! Terraform does the same for Grafana: RUNNING can come before the service is
//! reachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

use crate::manifest::Probe;

/// A probe failing this long after the API reported ready is a failure (exit 4).
pub const PATIENCE: Duration = Duration::from_secs(180);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// TLS material for `probe: tls`.
#[derive(Default, Clone)]
pub struct TlsMaterial {
    /// The project CA, trusted besides the system roots.
    pub ca_pem: Option<String>,
    /// A client certificate and key, for listeners that require one (Kafka).
    pub client: Option<(String, String)>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca", &self.ca_pem.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

/// Probes until success, `PATIENCE` or `deadline`, whichever comes first.
pub async fn wait_reachable(
    kind: Probe,
    host: &str,
    port: u16,
    tls: &TlsMaterial,
    deadline: Instant,
) -> Result<(), String> {
    if kind == Probe::None {
        return Ok(());
    }
    let give_up = deadline.min(Instant::now() + PATIENCE);
    let connector = match kind {
        Probe::Tls => Some(connector(tls)?),
        _ => None,
    };
    loop {
        let last =
            match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(host, port, connector.as_ref()))
                .await
            {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()),
            };
        if Instant::now() + RETRY_EVERY >= give_up {
            return Err(last);
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

async fn attempt(
    host: &str,
    port: u16,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<(), String> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("TCP connect to {host}:{port}: {e}"))?;
    if let Some(connector) = tls {
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
    }
    Ok(())
}

fn connector(tls: &TlsMaterial) -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let extra: Vec<CertificateDer<'static>> = match &tls.ca_pem {
        Some(pem) => CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("project CA is not PEM: {e}"))?,
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| format!("cannot load trusted roots: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match &tls.client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("access certificate is not PEM: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("access key is not PEM: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("access certificate and key do not match: {e}"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
