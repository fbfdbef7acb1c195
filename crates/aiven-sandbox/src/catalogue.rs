//! The catalogue shipped with the sandbox: clouds, service types, plans and hourly prices
//! (`data/catalogue.json`), and the per-type `user_config` JSON Schema.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
pub struct Catalogue {
    pub clouds: Vec<Cloud>,
    pub service_types: std::collections::BTreeMap<String, ServiceType>,
}

#[derive(Debug, Deserialize)]
pub struct Cloud {
    pub cloud_name: String,
    pub cloud_description: String,
    pub geo_region: String,
    pub geo_latitude: f64,
    pub geo_longitude: f64,
    pub provider: String,
    pub provider_description: String,
    /// Multiplier on the base price; not part of the API's cloud object.
    pub price_factor: f64,
}

#[derive(Debug, Deserialize)]
pub struct ServiceType {
    pub description: String,
    pub versions: Vec<String>,
    pub default_version: Option<String>,
    pub plans: Vec<Plan>,
}

#[derive(Debug, Deserialize)]
pub struct Plan {
    pub service_plan: String,
    pub node_count: u32,
    pub node_cpu_count: u32,
    pub node_memory_mb: u64,
    pub disk_space_mb: u64,
    pub disk_space_cap_mb: u64,
    pub monthly_usd: f64,
    pub backup_config: Value,
}

/// Aiven bills by the hour; its monthly figures are 730 hours.
const HOURS_PER_MONTH: f64 = 730.0;

pub fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        serde_json::from_str(include_str!("../data/catalogue.json"))
            .expect("the shipped catalogue is valid JSON")
    })
}

impl Catalogue {
    pub fn cloud(&self, name: &str) -> Option<&Cloud> {
        self.clouds.iter().find(|c| c.cloud_name == name)
    }

    pub fn cloud_names(&self) -> Vec<&str> {
        self.clouds.iter().map(|c| c.cloud_name.as_str()).collect()
    }

    pub fn service_type(&self, name: &str) -> Option<&ServiceType> {
        self.service_types.get(name)
    }

    /// The hourly price as the API writes it: a decimal string.
    pub fn hourly_price(&self, plan: &Plan, cloud: &Cloud) -> String {
        format!(
            "{:.3}",
            plan.monthly_usd * cloud.price_factor / HOURS_PER_MONTH
        )
    }

    /// The `service_plans[]` item of the plan list, with a `regions` entry per cloud.
    pub fn plan_json(&self, service_type: &str, plan: &Plan) -> Value {
        let regions: serde_json::Map<String, Value> = self
            .clouds
            .iter()
            .map(|cloud| {
                (
                    cloud.cloud_name.clone(),
                    json!({
                        "price_usd": self.hourly_price(plan, cloud),
                        "node_cpu_count": plan.node_cpu_count,
                        "node_memory_mb": plan.node_memory_mb,
                        "disk_space_mb": plan.disk_space_mb,
                        "disk_space_cap_mb": plan.disk_space_cap_mb,
                    }),
                )
            })
            .collect();
        json!({
            "service_plan": plan.service_plan,
            "service_type": service_type,
            "node_count": plan.node_count,
            "backup_config": plan.backup_config,
            "max_memory_percent": 80,
            "regions": regions,
        })
    }
}

impl ServiceType {
    pub fn plan(&self, name: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.service_plan == name)
    }

    pub fn plan_names(&self) -> Vec<&str> {
        self.plans.iter().map(|p| p.service_plan.as_str()).collect()
    }

    pub fn latest_version(&self) -> Option<&String> {
        self.versions.last()
    }

    /// A JSON Schema for `user_config`: the subset of Aiven's real schema the sandbox
    /// understands. Like the real ones, it rejects unknown keys.
    pub fn user_config_schema(&self, service_type: &str) -> Value {
        let mut props = serde_json::Map::new();
        let fork_name = json!({
            "type": "string", "maxLength": 64, "pattern": "^[a-z][-a-z0-9]{0,63}$|^$",
            "title": "Name of another service to fork from. This has effect only when a new service is being created."
        });
        props.insert(
            "ip_filter".into(),
            json!({"type": "array", "maxItems": 8000, "items": {"type": "string"},
                   "title": "IP filter", "default": ["0.0.0.0/0"]}),
        );
        props.insert(
            "static_ips".into(),
            json!({"type": "boolean", "title": "Use static public IP addresses"}),
        );
        if !self.versions.is_empty() {
            props.insert(
                format!("{service_type}_version"),
                json!({"type": ["string", "null"], "enum": self.versions, "title": format!("{service_type} major version")}),
            );
        }
        if matches!(
            service_type,
            "pg" | "mysql" | "opensearch" | "valkey" | "clickhouse" | "alloydbomni"
        ) {
            props.insert("service_to_fork_from".into(), fork_name.clone());
            props.insert(
                "project_to_fork_from".into(),
                json!({"type": ["string", "null"], "maxLength": 63, "pattern": "^[a-z][-a-z0-9]{0,63}$|^$"}),
            );
        }
        if matches!(service_type, "pg" | "mysql" | "alloydbomni") {
            props.insert(
                "recovery_target_time".into(),
                json!({"type": ["string", "null"], "maxLength": 32, "format": "date-time",
                       "title": "Recovery target time when forking a service. This has effect only when a new service is being created."}),
            );
        }
        if service_type == "pg" {
            props.insert(
                "pg_read_replica".into(),
                json!({"type": ["boolean", "null"]}),
            );
        }
        if service_type == "kafka" {
            for flag in [
                "kafka_rest",
                "schema_registry",
                "kafka_connect",
                "letsencrypt_sasl",
            ] {
                props.insert(flag.into(), json!({"type": "boolean", "default": false}));
            }
            props.insert(
                "kafka_authentication_methods".into(),
                json!({"type": "object", "additionalProperties": false, "properties": {
                    "certificate": {"type": "boolean", "default": true},
                    "sasl": {"type": "boolean", "default": false}}}),
            );
        }
        if service_type == "opensearch" {
            props.insert(
                "opensearch_dashboards".into(),
                json!({"type": "object", "additionalProperties": false, "properties": {
                    "enabled": {"type": "boolean", "default": true}}}),
            );
        }
        json!({"type": "object", "additionalProperties": false, "properties": props})
    }
}

/// Checks a `user_config` against the schema the way the API does, answering its 400
/// message on the first problem.
pub fn check_user_config(schema: &Value, config: &Value, path: &str) -> Result<(), String> {
    let Some(config_map) = config.as_object() else {
        return Err(format!(
            "Invalid input for {path}: {config} is not of type 'object'"
        ));
    };
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (key, value) in config_map {
        let Some(prop) = props.get(key) else {
            return Err(format!(
                "Invalid input for {path}: Additional properties are not allowed ('{key}' was unexpected)"
            ));
        };
        let types: Vec<&str> = match &prop["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let type_ok = types.iter().any(|t| match *t {
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "null" => value.is_null(),
            _ => true,
        });
        if !type_ok {
            return Err(format!(
                "Invalid input for {path}.{key}: {value} is not of type {}",
                types
                    .iter()
                    .map(|t| format!("'{t}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(choices) = prop["enum"].as_array()
            && !value.is_null()
            && !choices.contains(value)
        {
            return Err(format!(
                "Invalid input for {path}.{key}: {value} is not one of {}",
                Value::Array(choices.clone())
            ));
        }
        if prop["type"] == "object" {
            check_user_config(prop, value, &format!("{path}.{key}"))?;
        }
    }
    Ok(())
}
