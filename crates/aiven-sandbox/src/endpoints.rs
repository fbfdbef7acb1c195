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

use crate::backends::{Backend, Backends};
use crate::pki::Pki;
use crate::world::{Serve, Service};

/// Idle connections to simulated endpoints are closed after this long.
const IDLE: Duration = Duration::from_secs(120);

#[derive(Default)]
pub struct Endpoints {
    running: HashMap<(String, String), Running>,
    /// Real servers still shutting down.
    stopping: Vec<std::thread::JoinHandle<()>>,
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

    pub fn stop(&mut self, project: &str, service: &str) {
        if let Some(r) = self
            .running
            .remove(&(project.to_string(), service.to_string()))
        {
            self.stopping.extend(r.stop());
        }
    }

    /// Stops everything and waits until every real server is gone with its data.
    pub fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            self.stopping.extend(r.stop());
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
pub async fn start(svc: &Service, pki: &Pki, backends: &Backends) -> Result<Started, String> {
    let mut ports = Vec::new();
    let mut tasks = Vec::new();
    let mut backend = None;
    for (i, component) in svc.components.iter().enumerate() {
        if svc.unreachable {
            ports.push(component.port);
            continue;
        }
        if i == 0
            && let Some(b) = backends.start(svc, component.port, pki).await?
        {
            ports.push(b.port());
            backend = Some(b);
            continue;
        }
        let config = match component.serve {
            Serve::Tcp | Serve::Backend => None,
            Serve::Tls => Some(pki.server_config(false)?),
            Serve::MutualTls => Some(pki.server_config(true)?),
        };
        let (port, listeners) = bind(component.port).await?;
        ports.push(port);
        for listener in listeners {
            tasks.push(tokio::spawn(accept_loop(listener, config.clone())));
        }
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

async fn accept_loop(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(IDLE, hold(stream, acceptor)).await;
        });
    }
}

/// Keeps a connection open, discarding what the client sends, until it hangs up.
async fn hold(stream: TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>) {
    let mut buf = [0u8; 4096];
    match acceptor {
        None => {
            let mut stream = stream;
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        }
        Some(acceptor) => {
            if let Ok(mut tls) = acceptor.accept(stream).await {
                while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
            }
        }
    }
}
