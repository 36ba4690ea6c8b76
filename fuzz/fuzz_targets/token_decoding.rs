//! cargo-fuzz target: `cargo +nightly fuzz run token_decoding` (body in fuzz/targets.rs).
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::token_decoding(data));
