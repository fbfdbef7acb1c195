//! Local ports for the services' endpoints.

/// A free local port: bound, read, released. The service listens on it once running.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
