//! SQL over the lake that `sightline-local` writes, the way an analyst queries
//! the deployed lake in Athena. A crate of its own so that the local pipeline
//! does not wait for DataFusion to build: `sightline-local` (the run path, at
//! `opt-level = 3`) compiles beside DataFusion instead of after it.

pub mod query;
pub mod rollup;
pub mod trino;

pub use query::Lake;
