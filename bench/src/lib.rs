//! `parlor-bench`: a load generator for Parlor, the raw fan-out floor and Socket.IO, built on
//! the same protocol crate as `parlor-client`. See BENCHMARKS.md for what it measures and how.

pub mod procfs;
pub mod report;
pub mod scenario;
pub mod wire;
