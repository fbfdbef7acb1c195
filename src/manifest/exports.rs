//! What each service exports to the environment: the names, computed offline from the
//! manifest (so collisions and overrides are manifest errors before any API call). The
//! values are filled in once a service is ready, by [`crate::delivery::values`].

use super::{ServiceSpec, env_name};
use crate::catalogue::Scheme;

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
