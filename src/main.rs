//! The `authgate` binary.

fn main() {}
