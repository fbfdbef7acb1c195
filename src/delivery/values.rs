//! The values of a ready service's exports, filled in from the API (the names are
//! [`crate::manifest::exports`], computed offline).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::api::{Component, Service};
use crate::catalogue::Scheme;
use crate::manifest::ServiceSpec;
use crate::manifest::exports::{Field, exports};

const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes a URI's user or password, as avn's `format_uri` does.
pub fn enc(s: &str) -> String {
    utf8_percent_encode(s, USERINFO).to_string()
}

/// Files written for a service, by the outputs.
#[derive(Debug, Default, Clone)]
pub struct Files {
    pub ca: Option<PathBuf>,
    pub access_cert: Option<PathBuf>,
    pub access_key: Option<PathBuf>,
    /// Per created Kafka user: (cert, key).
    pub users: BTreeMap<String, (PathBuf, PathBuf)>,
}

/// The credentials of users the run created (the create answer carries them).
pub type UserPasswords = BTreeMap<String, crate::secret::Secret>;

/// One exported value.
#[derive(Clone)]
pub struct Value {
    pub name: String,
    pub value: String,
    pub secret: bool,
    /// A path to a file of this machine: meaningless to later jobs elsewhere.
    pub file: bool,
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.secret {
            "<redacted>"
        } else {
            &self.value
        };
        write!(f, "{}={shown}", self.name)
    }
}

fn uri(
    scheme: Scheme,
    user: &str,
    password: &str,
    c: &Component,
    database: &str,
) -> Option<String> {
    let (user, password) = (enc(user), enc(password));
    let (host, port) = (&c.host, c.port);
    Some(match scheme {
        Scheme::Postgres => {
            format!("postgres://{user}:{password}@{host}:{port}/{database}?sslmode=require")
        }
        Scheme::Mysql => {
            format!("mysql://{user}:{password}@{host}:{port}/{database}?ssl-mode=REQUIRED")
        }
        Scheme::Rediss => format!("rediss://{user}:{password}@{host}:{port}"),
        Scheme::Https => format!("https://{user}:{password}@{host}:{port}"),
        Scheme::Api => return None,
    })
}

/// Fills in every export of a ready service. `sandbox` widens `CA_CERT` to all types.
pub fn values(
    spec: &ServiceSpec,
    svc: &Service,
    files: &Files,
    users: &UserPasswords,
    sandbox: bool,
) -> Result<Vec<Value>, String> {
    let ep = Endpoint::of(spec, svc)?;
    exports(spec, sandbox)
        .into_iter()
        .map(|export| {
            Ok(Value {
                value: value(&export.field, &ep, spec, svc, files, users)?,
                secret: export.field.is_secret(),
                file: export.field.is_file(),
                name: export.name,
            })
        })
        .collect()
}

/// What a service's values are made of.
struct Endpoint<'a> {
    primary: &'a Component,
    sasl: Option<&'a Component>,
    admin_name: String,
    admin_password: String,
    database: String,
    main_uri: Option<String>,
    /// Kafka clients connect with certificates (else with SASL).
    cert_listener: bool,
}

impl<'a> Endpoint<'a> {
    fn of(spec: &ServiceSpec, svc: &'a Service) -> Result<Self, String> {
        let kind = spec.kind;
        let primary = svc
            .primary_component(kind.primary_component)
            .ok_or_else(|| format!("service {} has no primary component", svc.service_name))?;
        let admin = svc.admin();
        let admin_name = admin.map(|u| u.username.clone()).unwrap_or_default();
        let admin_password = admin
            .and_then(|u| u.password.as_ref())
            .map(|p| p.expose().to_string())
            .unwrap_or_default();
        let database = spec
            .databases
            .first()
            .cloned()
            .unwrap_or_else(|| "defaultdb".into());
        let cert_listener = kind.kafka
            && spec
                .user_config
                .pointer("/kafka_authentication_methods/certificate")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true);
        let mut ep = Self {
            primary,
            sasl: svc.sasl_component(),
            main_uri: uri(
                kind.scheme,
                &admin_name,
                &admin_password,
                primary,
                &database,
            ),
            admin_name,
            admin_password,
            database,
            cert_listener,
        };
        if ep.main_uri.is_none() {
            ep.main_uri = if kind.kafka {
                Some(ep.bootstrap())
            } else {
                svc.service_uri.as_ref().map(|u| u.expose().to_string())
            };
        }
        Ok(ep)
    }

    /// Kafka's bootstrap servers: the certificate listener's, else SASL's.
    fn bootstrap(&self) -> String {
        kafka_bootstrap(if self.cert_listener {
            self.primary
        } else {
            self.sasl.unwrap_or(self.primary)
        })
    }
}

fn kafka_bootstrap(c: &Component) -> String {
    format!("{}:{}", c.host, c.port)
}

fn path_str(p: &Option<PathBuf>, what: &str, svc: &Service) -> Result<String, String> {
    p.as_ref()
        .map(|p| p.display().to_string())
        .ok_or_else(|| format!("{what} file missing for {}", svc.service_name))
}

/// An HTTPS endpoint of a named component, with the admin's credentials.
fn https_component(svc: &Service, ep: &Endpoint, name: &str) -> Option<String> {
    svc.component(name).map(|c| {
        format!(
            "https://{}:{}@{}:{}",
            enc(&ep.admin_name),
            enc(&ep.admin_password),
            c.host,
            c.port
        )
    })
}

/// One export's value.
fn value(
    field: &Field,
    ep: &Endpoint,
    spec: &ServiceSpec,
    svc: &Service,
    files: &Files,
    users: &UserPasswords,
) -> Result<String, String> {
    let kind = spec.kind;
    Ok(match field {
        Field::ServiceName => svc.service_name.clone(),
        Field::Uri => ep.main_uri.clone().unwrap_or_default(),
        Field::Host => ep.primary.host.clone(),
        Field::Port => ep.primary.port.to_string(),
        Field::User => ep.admin_name.clone(),
        Field::Password => ep.admin_password.clone(),
        Field::Database => ep.database.clone(),
        Field::Sslmode => match kind.scheme {
            Scheme::Mysql => "REQUIRED",
            _ => "require",
        }
        .to_string(),
        Field::CaCert => path_str(&files.ca, "CA certificate", svc)?,
        Field::UriVerify => {
            let ca = path_str(&files.ca, "CA certificate", svc)?;
            let base = ep.main_uri.clone().unwrap_or_default();
            let base = base.trim_end_matches("?sslmode=require");
            format!(
                "{base}?sslmode=verify-full&sslrootcert={}",
                utf8_percent_encode(&ca, QUERY)
            )
        }
        Field::BootstrapServers => ep.bootstrap(),
        Field::AccessCert => path_str(&files.access_cert, "access certificate", svc)?,
        Field::AccessKey => path_str(&files.access_key, "access key", svc)?,
        Field::SecurityProtocol => if ep.cert_listener { "SSL" } else { "SASL_SSL" }.to_string(),
        Field::SaslBootstrapServers => ep
            .sasl
            .map(kafka_bootstrap)
            .ok_or_else(|| format!("service {} has no SASL listener", svc.service_name))?,
        Field::SaslMechanism => "SCRAM-SHA-256".to_string(),
        // On a shared service the run's user is the service's only user here.
        Field::KeyPrefix => crate::identity::key_prefix(&ep.admin_name),
        Field::TopicPrefix => crate::identity::topic_prefix(&ep.admin_name),
        Field::SchemaRegistryUri => connection_info(svc, "schema_registry_uri")
            .or_else(|| https_component(svc, ep, "schema_registry"))
            .unwrap_or_default(),
        Field::RestUri => connection_info(svc, "kafka_rest_uri")
            .or_else(|| https_component(svc, ep, "kafka_rest"))
            .unwrap_or_default(),
        Field::UserPassword(u) => users
            .get(u)
            .map(|p| p.expose().to_string())
            .ok_or_else(|| format!("no credentials for user {u} of {}", svc.service_name))?,
        Field::UserUri(u) => {
            let password = users.get(u).map(|p| p.expose()).unwrap_or_default();
            uri(kind.scheme, u, password, ep.primary, &ep.database).unwrap_or_default()
        }
        Field::UserAccessCert(u) => files
            .users
            .get(u)
            .map(|(c, _)| c.display().to_string())
            .ok_or_else(|| format!("no certificate for user {u}"))?,
        Field::UserAccessKey(u) => files
            .users
            .get(u)
            .map(|(_, k)| k.display().to_string())
            .ok_or_else(|| format!("no key for user {u}"))?,
    })
}

fn connection_info(svc: &Service, key: &str) -> Option<String> {
    svc.connection_info
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// The certificate file names of a service under the certs directory.
pub fn cert_paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{key}-access.crt")),
        dir.join(format!("{key}-access.key")),
    )
}

pub fn user_cert_paths(dir: &Path, key: &str, user: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{key}-{user}-access.crt")),
        dir.join(format!("{key}-{user}-access.key")),
    )
}
