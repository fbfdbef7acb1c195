//! One integration-test binary: every test runs the real `aiven-ephemeral` binary
//! against a sandbox started on 127.0.0.1:0.

// First, so that its macros (`pinned!`) reach every module after it.
#[macro_use]
mod common;
mod action;
mod api_rules;
mod attacks;
mod avn;
mod backends;
mod cancel;
mod chaos;
mod commands;
mod conformance;
mod crowd;
mod faults;
mod gitlab;
mod inside;
mod lifecycle;
mod manual;
mod preview;
mod release;
mod sandbox;
mod secrets;
mod shared;
mod signals;
mod tenancy_sandbox;
mod terminal;
