//! The service types this tool knows, in one table: what each has inside (databases,
//! Kafka topics and ACLs), its admin user, what its URIs look like and how its protocol
//! enters TLS. The manifest's checks, the exports, provisioning and `plan` all read it,
//! so a new service type is one entry here.
//!
//! This is the client's own belief about the API; the sandbox keeps its own (its
//! `data/catalogue.json`), so a mistake in one is caught by tests against the other.

/// How a type's connection URI is built from its primary endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `postgres://user:password@host:port/db?sslmode=require`
    Postgres,
    /// `mysql://user:password@host:port/db?ssl-mode=REQUIRED`
    Mysql,
    /// `rediss://user:password@host:port`
    Rediss,
    /// `https://user:password@host:port`
    Https,
    /// No URI of our making: Kafka exports its bootstrap servers, the rest the API's URI.
    Api,
}

/// How runs share one service of the type, each with a tenancy of its own inside it
/// (`shared:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// A role owning its databases, made over SQL; seeds cloned from template databases.
    Postgres,
    /// An ACL user on a key and channel prefix.
    Valkey,
    /// A user with Kafka-native ACLs on a topic prefix.
    Kafka,
}

/// What a type has again after a power-off and a power-on, unless its entry says.
const AFTER_POWER_ON: &str = "what comes back on power-on depends on its backups";

/// How a service's protocol enters TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// TLS from the first byte (HTTPS, Valkey, Kafka).
    Direct,
    /// PostgreSQL: an SSLRequest, answered `S`, then TLS.
    Postgres,
    /// MySQL: the server's greeting, the client's SSL request, then TLS.
    Mysql,
}

impl Handshake {
    /// What a successful check of this handshake proved, for people.
    pub fn describe(self, client_cert: bool) -> &'static str {
        match (self, client_cert) {
            (Handshake::Postgres, _) => "PostgreSQL SSLRequest, TLS verified",
            (Handshake::Mysql, _) => "MySQL SSL request, TLS verified",
            (Handshake::Direct, true) => "TLS verified, client certificate accepted",
            (Handshake::Direct, false) => "TLS verified",
        }
    }

    /// A recorded type's handshake; TLS from the first byte for a type this tool
    /// does not know.
    pub fn for_type(service_type: &str) -> Self {
        get(service_type).map_or(Handshake::Direct, |t| t.handshake)
    }
}

#[derive(Debug)]
pub struct ServiceType {
    pub name: &'static str,
    /// What people write for it by mistake (did-you-mean, before spelling distance).
    pub also_called: &'static [&'static str],
    /// The user every service of the type starts with.
    pub admin_user: &'static str,
    /// Its `user_config` has `<type>_version`, which `version:` sets.
    pub versioned: bool,
    /// Logical databases (`databases:`).
    pub databases: bool,
    /// Kafka's topics, ACLs and default ACL, and its listener exports.
    pub kafka: bool,
    /// `fork_from` works, and with point-in-time recovery.
    pub forkable: bool,
    pub point_in_time: bool,
    pub scheme: Scheme,
    /// Its certificates come from the project CA (others use publicly trusted ones).
    pub project_ca: bool,
    pub handshake: Handshake,
    /// How runs share one service of the type; `None`: they cannot.
    pub sharing: Option<Sharing>,
    /// What a service has again after a power-off and a power-on (`reap` says it).
    pub after_power_on: &'static str,
    /// The component clients connect to, where it is not named as the type is.
    pub primary_component: Option<&'static str>,
}

const fn ty(name: &'static str) -> ServiceType {
    ServiceType {
        name,
        also_called: &[],
        admin_user: "avnadmin",
        versioned: true,
        databases: false,
        kafka: false,
        forkable: false,
        point_in_time: false,
        scheme: Scheme::Https,
        project_ca: false,
        handshake: Handshake::Direct,
        sharing: None,
        after_power_on: AFTER_POWER_ON,
        primary_component: None,
    }
}

const POSTGRES: ServiceType = ServiceType {
    databases: true,
    forkable: true,
    point_in_time: true,
    scheme: Scheme::Postgres,
    project_ca: true,
    handshake: Handshake::Postgres,
    ..ty("pg")
};

pub const TYPES: &[ServiceType] = &[
    ServiceType {
        also_called: &["alloydb"],
        primary_component: Some("pg"),
        ..ServiceType {
            name: "alloydbomni",
            ..POSTGRES
        }
    },
    ServiceType {
        project_ca: true,
        ..ty("cassandra")
    },
    ServiceType {
        forkable: true,
        primary_component: Some("clickhouse_https"),
        ..ty("clickhouse")
    },
    ServiceType {
        admin_user: "default",
        scheme: Scheme::Rediss,
        ..ty("dragonfly")
    },
    ServiceType {
        scheme: Scheme::Api,
        ..ty("flink")
    },
    ty("grafana"),
    ServiceType {
        kafka: true,
        scheme: Scheme::Api,
        project_ca: true,
        sharing: Some(Sharing::Kafka),
        after_power_on: "its topics' messages are lost; configuration, users and ACLs come back from configuration backups",
        ..ty("kafka")
    },
    ServiceType {
        also_called: &["connect", "kafka-connect"],
        versioned: false,
        scheme: Scheme::Api,
        ..ty("kafka_connect")
    },
    ServiceType {
        also_called: &["mirrormaker", "kafka-mirrormaker"],
        versioned: false,
        scheme: Scheme::Api,
        ..ty("kafka_mirrormaker")
    },
    ServiceType {
        also_called: &["mariadb"],
        databases: true,
        forkable: true,
        point_in_time: true,
        scheme: Scheme::Mysql,
        project_ca: true,
        handshake: Handshake::Mysql,
        ..ty("mysql")
    },
    ServiceType {
        also_called: &["elasticsearch", "elastic"],
        forkable: true,
        ..ty("opensearch")
    },
    ServiceType {
        also_called: &["postgres", "postgresql", "psql"],
        sharing: Some(Sharing::Postgres),
        after_power_on: "its data comes back from backups when the next run powers it on",
        ..POSTGRES
    },
    ServiceType {
        versioned: false,
        scheme: Scheme::Api,
        primary_component: Some("query_frontend"),
        ..ty("thanos")
    },
    ServiceType {
        also_called: &["redis"],
        admin_user: "default",
        forkable: true,
        scheme: Scheme::Rediss,
        sharing: Some(Sharing::Valkey),
        after_power_on: "its data comes back only if a backup exists",
        ..ty("valkey")
    },
];

/// The types runs can share, for messages.
pub fn shareable() -> String {
    let names: Vec<&str> = TYPES
        .iter()
        .filter(|t| t.sharing.is_some())
        .map(|t| t.name)
        .collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// What a service of this type has again after a power-off and a power-on.
pub fn after_power_on(service_type: &str) -> &'static str {
    get(service_type).map_or(AFTER_POWER_ON, |t| t.after_power_on)
}

/// The component clients connect to, where the type names it (see
/// [`ServiceType::primary_component`]).
pub fn primary_component(service_type: &str) -> Option<&'static str> {
    get(service_type).and_then(|t| t.primary_component)
}

/// The entry for a type name, if it is one this tool knows.
pub fn get(name: &str) -> Option<&'static ServiceType> {
    TYPES.iter().find(|t| t.name == name)
}

/// Every type's name, for messages.
pub fn names() -> Vec<&'static str> {
    TYPES.iter().map(|t| t.name).collect()
}

/// The type someone most likely meant by an unknown name.
pub fn did_you_mean(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    TYPES
        .iter()
        .find(|t| t.name == lower || t.also_called.contains(&lower.as_str()))
        .map(|t| t.name)
        .or_else(|| closest(name, TYPES.iter().map(|t| t.name)))
}

/// The candidate nearest in spelling, when it is near enough to be a slip.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn common_slips_find_their_type() {
        assert_eq!(did_you_mean("postgres"), Some("pg"));
        assert_eq!(did_you_mean("Postgresql"), Some("pg"));
        assert_eq!(did_you_mean("redis"), Some("valkey"));
        assert_eq!(did_you_mean("kafak"), Some("kafka"));
        assert_eq!(did_you_mean("opensearh"), Some("opensearch"));
        assert_eq!(did_you_mean("mongodb"), None);
    }

    #[test]
    fn every_alias_belongs_to_one_type() {
        let mut seen = std::collections::BTreeSet::new();
        for t in TYPES {
            for a in t.also_called {
                assert!(get(a).is_none(), "{a} is a type's own name");
                assert!(seen.insert(*a), "{a} is listed twice");
            }
        }
    }
}
