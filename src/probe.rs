//! Readiness beyond the API: once the API says a service is ready, its primary endpoint
//! must accept a TCP connection (`probe: tcp`, the default), or complete a TLS
//! handshake verified against the project CA and the system's roots (`probe: tls`).
//! Terraform does the same for Grafana: RUNNING can come before the service is
//! reachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::catalogue::Handshake;
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
    handshake: Handshake,
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
        let last = match tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            attempt(host, port, handshake, connector.as_ref()),
        )
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
    handshake: Handshake,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("TCP connect to {host}:{port}: {e}"))?;
    if let Some(connector) = tls {
        match handshake {
            Handshake::Direct => Ok(()),
            Handshake::Postgres => postgres_ssl_request(&mut stream).await,
            Handshake::Mysql => mysql_ssl_request(&mut stream).await,
        }
        .map_err(|e| format!("asking {host}:{port} for TLS: {e}"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
        connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port}: {e}"))?;
    }
    Ok(())
}

/// PostgreSQL's SSLRequest (length 8, code 80877103); the server answers `S` to go on.
async fn postgres_ssl_request(stream: &mut TcpStream) -> std::io::Result<()> {
    stream
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match &answer {
        b"S" => Ok(()),
        _ => Err(std::io::Error::other("the server does not offer TLS")),
    }
}

/// MySQL: read the server's greeting, then send the SSL request packet (capabilities
/// PROTOCOL_41 | SSL | SECURE_CONNECTION, utf8mb4), after which TLS starts.
async fn mysql_ssl_request(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize;
    let mut greeting = vec![0u8; len];
    stream.read_exact(&mut greeting).await?;
    // Protocol 10: version string, connection id, 8 bytes of salt, a filler, then the
    // lower capability flags.
    let version_end = greeting.iter().skip(1).position(|b| *b == 0).map(|p| p + 2);
    let flags_at = version_end.map(|v| v + 4 + 8 + 1);
    let offers_ssl = greeting.first() == Some(&10)
        && flags_at.is_some_and(|at| greeting.get(at + 1).is_some_and(|hi| hi & 0x08 != 0));
    if !offers_ssl {
        return Err(std::io::Error::other("the server does not offer TLS"));
    }
    let capabilities: u32 = 0x0000_0200 | 0x0000_0800 | 0x0000_8000;
    let mut packet = vec![32, 0, 0, 1];
    packet.extend_from_slice(&capabilities.to_le_bytes());
    packet.extend_from_slice(&(16u32 << 20).to_le_bytes());
    packet.push(255);
    packet.extend_from_slice(&[0; 23]);
    stream.write_all(&packet).await
}

fn connector(tls: &TlsMaterial) -> Result<tokio_rustls::TlsConnector, String> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client_config(
        tls,
    )?)))
}

/// TLS that trusts the system's roots plus the project CA, with the client certificate
/// when there is one.
pub fn client_config(tls: &TlsMaterial) -> Result<rustls::ClientConfig, String> {
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
    Ok(config)
}
