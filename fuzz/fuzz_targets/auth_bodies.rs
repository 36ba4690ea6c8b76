//! cargo-fuzz target: `cargo +nightly fuzz run auth_bodies` (body in fuzz/targets.rs).
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::auth_bodies(data));
