//! The manifest parser and its offline checks never panic, and whatever they accept
//! yields valid, distinct service names and env names.
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use aiven_ephemeral::manifest::{self, exports};
use aiven_ephemeral::identity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Parsing includes every offline check, the env names' too.
    let Ok(m) = manifest::parse(text, Path::new("fuzz.yaml")) else { return };
    let mut names = BTreeSet::new();
    for spec in &m.services {
        let Ok(name) = identity::service_name(&m.name_prefix, &spec.key, "fuzz1234") else { continue };
        assert!(manifest::is_service_name(&name) && !name.ends_with('-'), "invalid name {name:?}");
        assert!(names.insert(name.clone()), "duplicate name {name:?}");
    }
    let mut env = BTreeSet::new();
    for spec in &m.services {
        for e in exports::exports(spec, true) {
            assert!(!exports::is_reserved(&e.name), "reserved {}", e.name);
            assert!(env.insert(e.name.clone()), "duplicate env name {}", e.name);
        }
    }
});
