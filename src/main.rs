//! The `archiver` binary.
fn main() {}
