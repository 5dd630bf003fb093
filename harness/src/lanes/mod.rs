//! Lanes: where builds run, and who the lane says it is. Today the host; the identity
//! recorded here is what reviewers use to tell one runner class from another.

pub mod gpu;
pub mod host;
pub mod initramfs;
pub mod vm;
