//! The memory soak in a test process of its own: it measures the process's heap, so no other test may allocate
//! beside it (cargo runs test binaries one after another). `SOAK_PARTS=100000 cargo test --test soak --
//! --nocapture` for the long soak.

#[allow(dead_code)]
#[path = "../it/common.rs"]
mod common;
mod soak;
