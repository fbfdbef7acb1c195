//! `check`: connect to every endpoint a live run exported, with its protocol's way into
//! TLS (PostgreSQL's SSLRequest, MySQL's SSL request, direct TLS elsewhere, Kafka's
//! client certificate), verifying the server certificate against the exported CA and
//! the system's roots. Needs nothing but the env file and the state file: no token, no
//! client tools. It proves the addresses, ports, certificates and firewall paths, not
//! the passwords.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::catalogue::Handshake;
use crate::probe::{self, TlsMaterial};
use crate::state::State;

/// How long one endpoint may take, retries included.
const PATIENCE: Duration = Duration::from_secs(15);

/// One endpoint to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub service: String,
    pub service_type: String,
    /// The exported variable it came from, and that variable's service prefix.
    pub variable: String,
    prefix: String,
    pub host: String,
    pub port: u16,
    pub handshake: Handshake,
    /// Present a client certificate (Kafka's certificate listener).
    pub client_cert: bool,
}

/// The outcome for one endpoint.
pub struct Checked {
    pub endpoint: Endpoint,
    pub result: Result<Duration, String>,
}

/// Reads a dotenv file as this tool writes it: `NAME=value` lines.
pub fn read_env(path: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.trim().rsplit_once(':')?;
    Some((
        host.trim_matches(['[', ']']).to_string(),
        port.parse().ok()?,
    ))
}

/// The `https://host:port/...` of a URI.
fn https_host_port(uri: &str) -> Option<(String, u16)> {
    let rest = uri.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    host_port(authority).or_else(|| Some((authority.to_string(), 443)))
}

/// Every endpoint of every live service of the run, found in its exported values.
pub fn endpoints(state: &State, env: &BTreeMap<String, String>) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for record in &state.services {
        let Some(prefix) = env
            .iter()
            .find(|(k, v)| k.ends_with("_SERVICE_NAME") && **v == record.name)
            .map(|(k, _)| k.trim_end_matches("SERVICE_NAME").to_string())
        else {
            continue;
        };
        let get = |field: &str| env.get(&format!("{prefix}{field}"));
        let mut add = |variable: String, (host, port): (String, u16), handshake, client_cert| {
            let e = Endpoint {
                service: record.name.clone(),
                service_type: record.service_type.clone(),
                variable,
                prefix: prefix.clone(),
                host,
                port,
                handshake,
                client_cert,
            };
            if !out
                .iter()
                .any(|o| o.host == e.host && o.port == e.port && o.client_cert == e.client_cert)
            {
                out.push(e);
            }
        };
        if let (Some(host), Some(port)) = (get("HOST"), get("PORT").and_then(|p| p.parse().ok())) {
            let handshake = Handshake::for_type(&record.service_type);
            let kafka = crate::catalogue::get(&record.service_type).is_some_and(|t| t.kafka);
            let kafka_certs = kafka && get("ACCESS_CERT").is_some();
            add(
                format!("{prefix}HOST"),
                (host.clone(), port),
                handshake,
                kafka_certs,
            );
        }
        for (field, client_cert) in [
            ("BOOTSTRAP_SERVERS", true),
            ("SASL_BOOTSTRAP_SERVERS", false),
        ] {
            for server in get(field).into_iter().flat_map(|v| v.split(',')) {
                if let Some(hp) = host_port(server) {
                    let certs = client_cert && get("ACCESS_CERT").is_some();
                    add(format!("{prefix}{field}"), hp, Handshake::Direct, certs);
                }
            }
        }
        let uris: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix) && k.ends_with("_URI"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in uris {
            if let Some(hp) = https_host_port(&v) {
                add(k, hp, Handshake::Direct, false);
            }
        }
    }
    out
}

/// Checks every endpoint at once.
pub async fn check_all(endpoints: Vec<Endpoint>, env: &BTreeMap<String, String>) -> Vec<Checked> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, endpoint) in endpoints.into_iter().enumerate() {
        let tls = material(&endpoint, env);
        tasks.spawn(async move {
            let started = Instant::now();
            let result = match tls {
                Ok(tls) => probe::wait_reachable(
                    crate::manifest::Probe::Tls,
                    &endpoint.host,
                    endpoint.port,
                    endpoint.handshake,
                    &tls,
                    Instant::now() + PATIENCE,
                )
                .await
                .map(|()| started.elapsed()),
                Err(e) => Err(e),
            };
            (i, Checked { endpoint, result })
        });
    }
    let mut out: Vec<(usize, Checked)> = Vec::new();
    while let Some(Ok(done)) = tasks.join_next().await {
        out.push(done);
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, c)| c).collect()
}

/// The CA and, for Kafka's certificate listener, the client certificate, from the
/// files the env names.
fn material(e: &Endpoint, env: &BTreeMap<String, String>) -> Result<TlsMaterial, String> {
    let read = |field: &str| -> Result<Option<String>, String> {
        let Some(path) = env.get(&format!("{}{field}", e.prefix)) else {
            return Ok(None);
        };
        std::fs::read_to_string(path)
            .map(Some)
            .map_err(|err| format!("cannot read {path}: {err}"))
    };
    let client = if e.client_cert {
        match (read("ACCESS_CERT")?, read("ACCESS_KEY")?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        }
    } else {
        None
    };
    Ok(TlsMaterial {
        ca_pem: read("CA_CERT")?,
        client,
    })
}
