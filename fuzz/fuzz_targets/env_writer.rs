//! The env-file writer: whatever it accepts reads back as exactly the same variables,
//! one line each (a valid GitLab dotenv report); the GitHub heredoc never contains its
//! delimiter inside the value.
#![no_main]

use aiven_ephemeral::delivery::values::Value;
use aiven_ephemeral::delivery::{env, github};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let values: Vec<Value> = text
        .split('\u{1}')
        .enumerate()
        .map(|(i, v)| Value {
            name: format!("V{i}"),
            value: v.to_string(),
            secret: i % 2 == 0,
            file: false,
        })
        .collect();
    for v in &values {
        let doc = github::heredoc(&v.name, &v.value);
        let delimiter = doc.lines().next().unwrap().split_once("<<").unwrap().1.to_string();
        assert_eq!(doc.matches(delimiter.as_str()).count(), 2);
    }
    if env::check(&values).is_err() {
        return;
    }
    let rendered = env::render(&values, env::Format::Dotenv);
    let back: Vec<(String, String)> = rendered
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("NAME=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(back.len(), values.len(), "one line per variable");
    for (v, (k, val)) in values.iter().zip(&back) {
        assert_eq!(&v.name, k);
        assert_eq!(&v.value, val);
    }
});
