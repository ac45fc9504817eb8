//! PlainPB (placeholder while the crate is written).
