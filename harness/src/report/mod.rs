//! Reports: results in, text out. Pure.

pub mod summary;
