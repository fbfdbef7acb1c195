//! The ports services listen on while `RUNNING`: plain TCP, TLS with the project CA's
//! server certificate, or mutual TLS (Kafka's certificate listener), on 127.0.0.1 and,
//! where the machine has it, ::1 (so `localhost` works whichever address a client tries).
//! Pg and valkey services can instead be backed by real servers (`backends`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::backends::{Backend, Backends, Parked};
use crate::pki::Pki;
use crate::world::{Serve, Service};

/// Idle connections to simulated endpoints are closed after this long.
const IDLE: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Endpoints {
    running: HashMap<(String, String), Running>,
    /// Real servers still shutting down.
    stopping: Vec<std::thread::JoinHandle<()>>,
    /// Data of powered-off services kept for their power-on (PostgreSQL's).
    parked: HashMap<(String, String), Parked>,
    /// The sandbox is stopping: what finishes starting now is stopped at once.
    closed: bool,
}

struct Running {
    tasks: Vec<JoinHandle<()>>,
    backend: Option<Backend>,
}

pub struct Started {
    pub ports: Vec<u16>,
    tasks: Vec<JoinHandle<()>>,
    backend: Option<Backend>,
}

impl Endpoints {
    pub fn insert(&mut self, project: &str, service: &str, started: Started) {
        if self.closed {
            let late = Running {
                tasks: started.tasks,
                backend: started.backend,
            };
            if let Some(handle) = late.stop() {
                let _ = handle.join();
            }
            return;
        }
        let old = self.running.insert(
            (project.to_string(), service.to_string()),
            Running {
                tasks: started.tasks,
                backend: started.backend,
            },
        );
        if let Some(old) = old {
            self.stopping.extend(old.stop());
        }
    }

    /// Stops a deleted service's endpoints and removes its data, kept or not.
    pub fn stop(&mut self, project: &str, service: &str) {
        let key = (project.to_string(), service.to_string());
        if let Some(r) = self.running.remove(&key) {
            self.stopping.extend(r.stop());
        }
        if let Some(parked) = self.parked.remove(&key) {
            self.stopping.push(parked.discard());
        }
    }

    /// Stops a service that powered off (or is rebuilt): what a power-on restores
    /// stays (PostgreSQL's data directory).
    pub fn park(&mut self, project: &str, service: &str) {
        let key = (project.to_string(), service.to_string());
        if let Some(r) = self.running.remove(&key) {
            for t in r.tasks {
                t.abort();
            }
            if let Some(parked) = r.backend.and_then(Backend::park)
                && let Some(old) = self.parked.insert(key, parked)
            {
                self.stopping.push(old.discard());
            }
        }
    }

    /// The data a service's next start restores, if it has some.
    pub fn take_parked(&mut self, project: &str, service: &str) -> Option<Parked> {
        self.parked
            .remove(&(project.to_string(), service.to_string()))
    }

    /// Stops everything and waits until every real server is gone with its data.
    pub fn stop_all(&mut self) {
        self.closed = true;
        for (_, r) in self.running.drain() {
            self.stopping.extend(r.stop());
        }
        for (_, parked) in self.parked.drain() {
            self.stopping.push(parked.discard());
        }
        for handle in self.stopping.drain(..) {
            let _ = handle.join();
        }
    }

    /// Admin access to the real server behind a service, if it has one.
    pub fn admin(&self, project: &str, service: &str) -> Option<crate::backends::Admin> {
        self.running
            .get(&(project.to_string(), service.to_string()))
            .and_then(|r| r.backend.as_ref())
            .map(Backend::admin)
    }
}

impl Running {
    fn stop(self) -> Option<std::thread::JoinHandle<()>> {
        for t in self.tasks {
            t.abort();
        }
        self.backend.map(Backend::stop)
    }
}

/// Starts what a service serves. Ports are kept where possible; a port taken meanwhile
/// by someone else moves, as hosts and ports move in real maintenance.
pub async fn start(
    svc: &Service,
    pki: &Pki,
    backends: &Backends,
    mut parked: Option<Parked>,
) -> Result<Started, String> {
    let mut ports = Vec::new();
    let mut tasks = Vec::new();
    let mut backend = None;
    for (i, component) in svc.components.iter().enumerate() {
        if svc.unreachable {
            ports.push(component.port);
            continue;
        }
        if i == 0
            && let Some(b) = backends
                .start(svc, component.port, pki, parked.take())
                .await?
        {
            ports.push(b.port());
            backend = Some(b);
            continue;
        }
        let config = pki.server_config(component.serve == Serve::MutualTls)?;
        let (port, listeners) = bind(component.port).await?;
        ports.push(port);
        for listener in listeners {
            tasks.push(tokio::spawn(accept_loop(
                listener,
                component.serve,
                config.clone(),
            )));
        }
    }
    if let Some(p) = parked {
        drop(p.discard());
    }
    Ok(Started {
        ports,
        tasks,
        backend,
    })
}

/// Binds the port on IPv4 loopback (required) and IPv6 loopback (if available).
async fn bind(port: u16) -> Result<(u16, Vec<TcpListener>), String> {
    let v4 = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?,
    };
    let port = v4.local_addr().map_err(|e| e.to_string())?.port();
    let mut listeners = vec![v4];
    if let Ok(v6) = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await {
        listeners.push(v6);
    }
    Ok((port, listeners))
}

async fn accept_loop(listener: TcpListener, serve: Serve, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(IDLE, hold(stream, serve, acceptor)).await;
        });
    }
}

/// The protocol's way into TLS, then the connection is kept open (what the client sends
/// is discarded) until it hangs up.
async fn hold(mut stream: TcpStream, serve: Serve, acceptor: tokio_rustls::TlsAcceptor) {
    let ready = match serve {
        Serve::Tls | Serve::MutualTls => Ok(()),
        Serve::PgTls => pg_ssl_request(&mut stream).await,
        Serve::MysqlTls => mysql_ssl_request(&mut stream).await,
    };
    if ready.is_err() {
        return;
    }
    if let Ok(mut tls) = acceptor.accept(stream).await {
        let mut buf = [0u8; 4096];
        while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
    }
}

/// PostgreSQL: the client asks for TLS with an SSLRequest (length 8, code 80877103) and
/// the server answers `S`. A GSSAPI request is declined with `N` first, as servers do.
async fn pg_ssl_request(stream: &mut TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    loop {
        let mut request = [0u8; 8];
        stream.read_exact(&mut request).await?;
        match u32::from_be_bytes([request[4], request[5], request[6], request[7]]) {
            80_877_103 => return stream.write_all(b"S").await,
            80_877_104 => stream.write_all(b"N").await?,
            _ => return Err(std::io::ErrorKind::InvalidData.into()),
        }
    }
}

/// MySQL: the server greets first (protocol 10, advertising CLIENT_SSL); the client
/// answers with a 32-byte SSL request, then both switch to TLS.
async fn mysql_ssl_request(stream: &mut TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    const CAPABILITIES: u32 = 0x0000_0200 | 0x0000_0800 | 0x0000_8000 | 0x0008_0000; // PROTOCOL_41 | SSL | SECURE_CONNECTION | PLUGIN_AUTH
    let mut payload = vec![10u8];
    payload.extend_from_slice(b"8.0.35\0");
    payload.extend_from_slice(&1u32.to_le_bytes());
    payload.extend_from_slice(b"sandbox1\0");
    payload.extend_from_slice(&(CAPABILITIES as u16).to_le_bytes());
    payload.push(255); // utf8mb4_0900_ai_ci
    payload.extend_from_slice(&2u16.to_le_bytes()); // SERVER_STATUS_AUTOCOMMIT
    payload.extend_from_slice(&((CAPABILITIES >> 16) as u16).to_le_bytes());
    payload.push(21);
    payload.extend_from_slice(&[0; 10]);
    payload.extend_from_slice(b"sandbox-salt\0");
    payload.extend_from_slice(b"caching_sha2_password\0");
    let mut packet = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    packet.push(0);
    packet.extend_from_slice(&payload);
    stream.write_all(&packet).await?;
    let mut request = [0u8; 36];
    stream.read_exact(&mut request).await?;
    let flags = u32::from_le_bytes([request[4], request[5], request[6], request[7]]);
    if flags & 0x0000_0800 == 0 {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    Ok(())
}
