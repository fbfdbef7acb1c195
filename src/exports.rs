//! What each service exports to the environment. The names are computed offline from
//! the manifest (so collisions and overrides are manifest errors before any API call);
//! the values are filled in from the API once a service is ready.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::api::{Component, Service};
use crate::catalogue::Scheme;
use crate::manifest::{ServiceSpec, env_name};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    ServiceName,
    Uri,
    Host,
    Port,
    User,
    Password,
    Database,
    Sslmode,
    CaCert,
    UriVerify,
    BootstrapServers,
    AccessCert,
    AccessKey,
    SecurityProtocol,
    SaslBootstrapServers,
    SaslMechanism,
    SchemaRegistryUri,
    RestUri,
    /// A run's key prefix in a shared Valkey service.
    KeyPrefix,
    /// A run's topic prefix in a shared Kafka service.
    TopicPrefix,
    UserPassword(String),
    UserUri(String),
    UserAccessCert(String),
    UserAccessKey(String),
}

impl Field {
    /// The part after the prefix: `URI`, `USER_APP_USER_PASSWORD`.
    pub fn suffix(&self) -> String {
        let user = |name: &str, what: &str| format!("USER_{}_{what}", env_name(name));
        match self {
            Field::ServiceName => "SERVICE_NAME".into(),
            Field::Uri => "URI".into(),
            Field::Host => "HOST".into(),
            Field::Port => "PORT".into(),
            Field::User => "USER".into(),
            Field::Password => "PASSWORD".into(),
            Field::Database => "DATABASE".into(),
            Field::Sslmode => "SSLMODE".into(),
            Field::CaCert => "CA_CERT".into(),
            Field::UriVerify => "URI_VERIFY".into(),
            Field::BootstrapServers => "BOOTSTRAP_SERVERS".into(),
            Field::AccessCert => "ACCESS_CERT".into(),
            Field::AccessKey => "ACCESS_KEY".into(),
            Field::SecurityProtocol => "SECURITY_PROTOCOL".into(),
            Field::SaslBootstrapServers => "SASL_BOOTSTRAP_SERVERS".into(),
            Field::SaslMechanism => "SASL_MECHANISM".into(),
            Field::SchemaRegistryUri => "SCHEMA_REGISTRY_URI".into(),
            Field::RestUri => "REST_URI".into(),
            Field::KeyPrefix => "KEY_PREFIX".into(),
            Field::TopicPrefix => "TOPIC_PREFIX".into(),
            Field::UserPassword(u) => user(u, "PASSWORD"),
            Field::UserUri(u) => user(u, "URI"),
            Field::UserAccessCert(u) => user(u, "ACCESS_CERT"),
            Field::UserAccessKey(u) => user(u, "ACCESS_KEY"),
        }
    }

    /// The name used in the manifest's `env:` map: the suffix in lower case.
    pub fn alias(&self) -> String {
        self.suffix().to_ascii_lowercase()
    }

    /// A path to a file this run wrote (certificates, keys).
    pub fn is_file(&self) -> bool {
        matches!(
            self,
            Field::CaCert
                | Field::AccessCert
                | Field::AccessKey
                | Field::UserAccessCert(_)
                | Field::UserAccessKey(_)
        )
    }

    /// Carries a password (directly or inside a URI). File paths are not secrets: the
    /// files are 0600.
    pub fn is_secret(&self) -> bool {
        matches!(
            self,
            Field::Uri
                | Field::Password
                | Field::UriVerify
                | Field::SchemaRegistryUri
                | Field::RestUri
                | Field::UserPassword(_)
                | Field::UserUri(_)
        )
    }
}

/// One exported variable, before its value is known.
#[derive(Debug, Clone)]
pub struct Export {
    pub name: String,
    pub field: Field,
    /// `env:` alias, not a standard name.
    pub alias: bool,
}

/// Whether the type's certificates come from the project CA; others use publicly
/// trusted certificates. In the sandbox every endpoint is signed by the sandbox's
/// project CA.
pub fn uses_project_ca(spec: &ServiceSpec, sandbox: bool) -> bool {
    sandbox || spec.kind.project_ca
}

/// The fields a service exports, in order. `all_ca` includes `CA_CERT` for every type
/// (used by the offline name check, which must hold in sandbox mode too).
pub fn fields(spec: &ServiceSpec, all_ca: bool) -> Vec<Field> {
    let kind = spec.kind;
    let mut f = vec![Field::ServiceName, Field::Uri, Field::Host, Field::Port];
    if kind.kafka {
        f.push(Field::BootstrapServers);
        f.push(Field::AccessCert);
        f.push(Field::AccessKey);
        f.push(Field::CaCert);
        f.push(Field::SecurityProtocol);
        if spec.sasl() {
            f.extend([
                Field::SaslBootstrapServers,
                Field::SaslMechanism,
                Field::User,
                Field::Password,
            ]);
        }
        if spec.flag("schema_registry") {
            f.push(Field::SchemaRegistryUri);
        }
        if spec.flag("kafka_rest") {
            f.push(Field::RestUri);
        }
    } else {
        f.push(Field::User);
        f.push(Field::Password);
        if kind.databases {
            f.push(Field::Database);
            f.push(Field::Sslmode);
        }
        if uses_project_ca(spec, all_ca) {
            f.push(Field::CaCert);
        }
        if kind.scheme == Scheme::Postgres {
            f.push(Field::UriVerify);
        }
    }
    if spec.shared.is_some() {
        if kind.kafka {
            f.push(Field::TopicPrefix);
        } else if kind.scheme == Scheme::Rediss {
            f.push(Field::KeyPrefix);
        }
    }
    for user in &spec.users {
        f.push(Field::UserPassword(user.clone()));
        if kind.kafka {
            f.push(Field::UserAccessCert(user.clone()));
            f.push(Field::UserAccessKey(user.clone()));
        } else if kind.scheme != Scheme::Api {
            f.push(Field::UserUri(user.clone()));
        }
    }
    f
}

/// Every variable a service exports, aliases included.
pub fn exports(spec: &ServiceSpec, sandbox: bool) -> Vec<Export> {
    let fields = fields(spec, sandbox);
    let mut out: Vec<Export> = fields
        .iter()
        .map(|field| Export {
            name: format!("{}_{}", spec.env_prefix, field.suffix()),
            field: field.clone(),
            alias: false,
        })
        .collect();
    for (name, alias, _) in &spec.aliases {
        if let Some(field) = fields.iter().find(|f| f.alias() == *alias) {
            out.push(Export {
                name: name.clone(),
                field: field.clone(),
                alias: true,
            });
        }
    }
    out
}

/// Names a run must never set: they would change the environment of the commands that
/// follow, or of the CI runner itself.
pub fn is_reserved(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "SHELL",
        "ENV",
        "BASH_ENV",
        "NODE_OPTIONS",
        "CI",
    ];
    const PREFIXES: &[&str] = &[
        "LD_", "DYLD_", "GITHUB_", "RUNNER_", "ACTIONS_", "CI_", "GITLAB_", "AIVEN_",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

// ---------------------------------------------------------------------------------------
// Values

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
    let kind = spec.kind;
    let primary = svc
        .primary_component()
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
    let kafka_bootstrap = |c: &Component| format!("{}:{}", c.host, c.port);
    let sasl = svc.sasl_component();
    let cert_listener = kind.kafka
        && spec
            .user_config
            .pointer("/kafka_authentication_methods/certificate")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
    let main_uri = uri(
        kind.scheme,
        &admin_name,
        &admin_password,
        primary,
        &database,
    )
    .or_else(|| {
        if kind.kafka {
            Some(kafka_bootstrap(if cert_listener {
                primary
            } else {
                sasl.unwrap_or(primary)
            }))
        } else {
            svc.service_uri.as_ref().map(|u| u.expose().to_string())
        }
    });
    let path_str = |p: &Option<PathBuf>, what: &str| -> Result<String, String> {
        p.as_ref()
            .map(|p| p.display().to_string())
            .ok_or_else(|| format!("{what} file missing for {}", svc.service_name))
    };
    let https_component = |name: &str| -> Option<String> {
        svc.component(name).map(|c| {
            format!(
                "https://{}:{}@{}:{}",
                enc(&admin_name),
                enc(&admin_password),
                c.host,
                c.port
            )
        })
    };
    let mut out = Vec::new();
    for export in exports(spec, sandbox) {
        let value = match &export.field {
            Field::ServiceName => svc.service_name.clone(),
            Field::Uri => main_uri.clone().unwrap_or_default(),
            Field::Host => primary.host.clone(),
            Field::Port => primary.port.to_string(),
            Field::User => admin_name.clone(),
            Field::Password => admin_password.clone(),
            Field::Database => database.clone(),
            Field::Sslmode => match kind.scheme {
                Scheme::Mysql => "REQUIRED",
                _ => "require",
            }
            .to_string(),
            Field::CaCert => path_str(&files.ca, "CA certificate")?,
            Field::UriVerify => {
                let ca = path_str(&files.ca, "CA certificate")?;
                let base = main_uri.clone().unwrap_or_default();
                let base = base.trim_end_matches("?sslmode=require");
                format!(
                    "{base}?sslmode=verify-full&sslrootcert={}",
                    utf8_percent_encode(&ca, QUERY)
                )
            }
            Field::BootstrapServers => kafka_bootstrap(if cert_listener {
                primary
            } else {
                sasl.unwrap_or(primary)
            }),
            Field::AccessCert => path_str(&files.access_cert, "access certificate")?,
            Field::AccessKey => path_str(&files.access_key, "access key")?,
            Field::SecurityProtocol => if cert_listener { "SSL" } else { "SASL_SSL" }.to_string(),
            Field::SaslBootstrapServers => sasl
                .map(kafka_bootstrap)
                .ok_or_else(|| format!("service {} has no SASL listener", svc.service_name))?,
            Field::SaslMechanism => "SCRAM-SHA-256".to_string(),
            // On a shared service the run's user is the service's only user here.
            Field::KeyPrefix => crate::naming::key_prefix(&admin_name),
            Field::TopicPrefix => crate::naming::topic_prefix(&admin_name),
            Field::SchemaRegistryUri => connection_info(svc, "schema_registry_uri")
                .or_else(|| https_component("schema_registry"))
                .unwrap_or_default(),
            Field::RestUri => connection_info(svc, "kafka_rest_uri")
                .or_else(|| https_component("kafka_rest"))
                .unwrap_or_default(),
            Field::UserPassword(u) => users
                .get(u)
                .map(|p| p.expose().to_string())
                .ok_or_else(|| format!("no credentials for user {u} of {}", svc.service_name))?,
            Field::UserUri(u) => {
                let password = users.get(u).map(|p| p.expose()).unwrap_or_default();
                uri(kind.scheme, u, password, primary, &database).unwrap_or_default()
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
        };
        out.push(Value {
            name: export.name,
            secret: export.field.is_secret(),
            file: export.field.is_file(),
            value,
        });
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(text: &str) -> crate::manifest::Manifest {
        crate::manifest::parse(text, Path::new("m.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pg_exports_as_designed() {
        let m = manifest(
            "services:\n  db: {type: pg, plan: hobbyist, users: [app_user], env: {DATABASE_URL: uri}}\n",
        );
        let names: Vec<String> = exports(&m.services[0], false)
            .into_iter()
            .map(|e| e.name)
            .collect();
        for expected in [
            "DB_SERVICE_NAME",
            "DB_URI",
            "DB_HOST",
            "DB_PORT",
            "DB_USER",
            "DB_PASSWORD",
            "DB_DATABASE",
            "DB_SSLMODE",
            "DB_CA_CERT",
            "DB_URI_VERIFY",
            "DB_USER_APP_USER_PASSWORD",
            "DB_USER_APP_USER_URI",
            "DATABASE_URL",
        ] {
            assert!(
                names.contains(&expected.to_string()),
                "{expected} missing from {names:?}"
            );
        }
    }

    #[test]
    fn kafka_exports_as_designed() {
        let m = manifest(
            "services:\n  events:\n    type: kafka\n    plan: startup-2\n    users: [app]\n    user_config: {kafka_authentication_methods: {sasl: true}, schema_registry: true}\n",
        );
        let names: Vec<String> = exports(&m.services[0], false)
            .into_iter()
            .map(|e| e.name)
            .collect();
        for expected in [
            "EVENTS_BOOTSTRAP_SERVERS",
            "EVENTS_ACCESS_CERT",
            "EVENTS_ACCESS_KEY",
            "EVENTS_CA_CERT",
            "EVENTS_SECURITY_PROTOCOL",
            "EVENTS_SASL_BOOTSTRAP_SERVERS",
            "EVENTS_SASL_MECHANISM",
            "EVENTS_SCHEMA_REGISTRY_URI",
            "EVENTS_USER_APP_ACCESS_CERT",
            "EVENTS_USER_APP_ACCESS_KEY",
        ] {
            assert!(
                names.contains(&expected.to_string()),
                "{expected} missing from {names:?}"
            );
        }
        assert!(!names.contains(&"EVENTS_REST_URI".to_string()));
    }
}
