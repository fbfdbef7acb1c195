//! Fault injection: request-level rules (rate limits, server errors, dropped connections,
//! lost responses, latency) and service-level behaviour (never ready, power-off, rejected
//! create, unreachable endpoints).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::durations::{duration, opt_duration};

/// One request-level rule. A request matches when its method (if given) and path glob
/// match; the rule then fires on the listed occurrences (`nth`, 1-based), or with
/// `probability` (seeded), or on every match, at most `times` times.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    #[serde(default)]
    pub method: Option<String>,
    /// Path glob: `*` matches within one segment, `**` across segments.
    pub path: String,
    #[serde(default)]
    pub nth: Vec<u64>,
    #[serde(default)]
    pub probability: Option<f64>,
    #[serde(default)]
    pub times: Option<u64>,
    pub fault: Fault,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// 429 "Rate limit 120 exceeded - try again in Ns", with or without `Retry-After`.
    RateLimit {
        seconds: u64,
        #[serde(default)]
        retry_after_header: bool,
    },
    /// Any status with the API's error body.
    Status {
        status: u16,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        error_code: Option<String>,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// The connection is closed before the request is applied or answered.
    Drop,
    /// The request is applied, then the connection is closed: the client never learns.
    LostResponse,
    /// The answer is delayed; the request is applied after the delay.
    Latency {
        #[serde(with = "duration")]
        delay: Duration,
    },
    /// The request waits until the rule has matched `until` requests in all (another
    /// client's request arrived), at most a minute, then is applied: two clients that
    /// race, each sending its write before either is applied, deterministically.
    Hold { until: u64 },
    /// The request is applied; its answer keeps its status and gets this JSON body
    /// instead (an API whose field changed type, or wrote a value no client may trust).
    Body { body: serde_json::Value },
    /// The request is applied at once; its answer comes after the delay (a client
    /// that dies meanwhile never learns of what it did).
    SlowAnswer {
        #[serde(with = "duration")]
        delay: Duration,
    },
}

impl FaultRule {
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') {
            return Err(format!("path `{}` must start with `/`", self.path));
        }
        if let Some(p) = self.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("probability {p} is not between 0 and 1"));
        }
        if self.nth.contains(&0) {
            return Err("nth counts from 1".into());
        }
        if let Some(m) = &self.method
            && !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.to_ascii_uppercase().as_str())
        {
            return Err(format!("unknown method `{m}`"));
        }
        if let Fault::Status { status, .. } = &self.fault
            && !(400..=599).contains(status)
        {
            return Err(format!("status {status} is not an error status (400-599)"));
        }
        Ok(())
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && glob_match(&self.path, path)
    }
}

/// Service-level behaviour, matched on the service name (glob).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFault {
    pub name: String,
    /// Stays `REBUILDING` for ever (from its create, or from its next rebuild: a plan
    /// change or a power-on).
    #[serde(default)]
    pub never_ready: bool,
    /// Overrides the provisioning delay.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ready_after: Option<Duration>,
    /// Falls to `POWEROFF` this long after reaching `RUNNING`.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub poweroff_after: Option<Duration>,
    /// The create is refused with this status and message.
    #[serde(default)]
    pub reject: Option<Reject>,
    /// `RUNNING` according to the API, but nothing listens on its ports.
    #[serde(default)]
    pub unreachable: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    pub status: u16,
    pub message: String,
}

impl ServiceFault {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("`name` (a glob on service names) is required".into());
        }
        if let Some(r) = &self.reject
            && !(400..=599).contains(&r.status)
        {
            return Err(format!("reject.status {} is not 400-599", r.status));
        }
        Ok(())
    }

    pub fn matches(&self, service_name: &str) -> bool {
        glob_match(&self.name, service_name)
    }
}

/// Rules plus their counters and the seeded generator for probabilistic rules.
#[derive(Debug)]
pub struct FaultBook {
    rules: Vec<(FaultRule, Counter)>,
    rng: StdRng,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    seen: u64,
    fired: u64,
}

impl FaultBook {
    pub fn new(rules: Vec<FaultRule>, seed: u64) -> Self {
        Self {
            rules: rules.into_iter().map(|r| (r, Counter::default())).collect(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push((rule, Counter::default()));
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn rules(&self) -> impl Iterator<Item = &FaultRule> {
        self.rules.iter().map(|(r, _)| r)
    }

    /// The faults that fire for this request, in rule order. Every matching rule counts
    /// the request, fired or not, so `nth` means "the nth matching request".
    pub fn on_request(&mut self, method: &str, path: &str) -> Vec<Fault> {
        let mut fired = Vec::new();
        for (rule, counter) in &mut self.rules {
            if !rule.matches(method, path) {
                continue;
            }
            counter.seen += 1;
            if rule.times.is_some_and(|t| counter.fired >= t) {
                continue;
            }
            let selected = if !rule.nth.is_empty() {
                rule.nth.contains(&counter.seen)
            } else if let Some(p) = rule.probability {
                self.rng.random_bool(p)
            } else {
                true
            };
            if selected {
                counter.fired += 1;
                fired.push(rule.fault.clone());
            }
        }
        fired
    }
}

impl FaultBook {
    /// Whether a `hold` rule matching this request has seen `until` requests.
    pub fn released(&self, method: &str, path: &str, until: u64) -> bool {
        self.rules.iter().any(|(rule, counter)| {
            rule.fault == Fault::Hold { until }
                && rule.matches(method, path)
                && counter.seen >= until
        })
    }
}

/// Glob match where `*` stays within a path segment and `**` crosses segments.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p {
            [] => t.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=t.len()).any(|i| go(rest, &t[i..])),
            [b'*', rest @ ..] => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != b'/')
                .any(|i| go(rest, &t[i..])),
            [c, rest @ ..] => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("/v1/project/*/service", "/v1/project/p/service"));
        assert!(!glob_match(
            "/v1/project/*/service",
            "/v1/project/p/x/service"
        ));
        assert!(glob_match("/v1/**", "/v1/project/p/service/s"));
        assert!(glob_match("ci-db-*", "ci-db-abc123"));
        assert!(!glob_match("ci-db-*", "ci-kafka-abc123"));
    }

    #[test]
    fn nth_counts_matching_requests_only() {
        let rule = FaultRule {
            method: Some("POST".into()),
            path: "/v1/project/*/service".into(),
            nth: vec![2],
            probability: None,
            times: None,
            fault: Fault::Drop,
        };
        let mut book = FaultBook::new(vec![rule], 1);
        assert!(book.on_request("GET", "/v1/project/p/service").is_empty());
        assert!(book.on_request("POST", "/v1/project/p/service").is_empty());
        assert_eq!(
            book.on_request("POST", "/v1/project/p/service"),
            vec![Fault::Drop]
        );
        assert!(book.on_request("POST", "/v1/project/p/service").is_empty());
    }

    #[test]
    fn times_bounds_injections() {
        let rule = FaultRule {
            method: None,
            path: "/v1/**".into(),
            nth: vec![],
            probability: None,
            times: Some(2),
            fault: Fault::Drop,
        };
        let mut book = FaultBook::new(vec![rule], 1);
        let fired: usize = (0..5).map(|_| book.on_request("GET", "/v1/x").len()).sum();
        assert_eq!(fired, 2);
    }
}
