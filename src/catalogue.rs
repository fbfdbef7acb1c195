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
    /// Runs can share one service of the type, each with its own tenancy inside it
    /// (`shared:`): a database and role, an ACL user on a key prefix, or a user with
    /// ACLs on a topic prefix.
    pub shareable: bool,
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
        shareable: false,
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
        shareable: true,
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
        shareable: true,
        ..POSTGRES
    },
    ServiceType {
        versioned: false,
        scheme: Scheme::Api,
        ..ty("thanos")
    },
    ServiceType {
        also_called: &["redis"],
        admin_user: "default",
        forkable: true,
        scheme: Scheme::Rediss,
        shareable: true,
        ..ty("valkey")
    },
];

/// The types runs can share, for messages.
pub fn shareable() -> String {
    let names: Vec<&str> = TYPES
        .iter()
        .filter(|t| t.shareable)
        .map(|t| t.name)
        .collect();
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
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
