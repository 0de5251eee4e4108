//! gradstream: a gRPC service that trains neural networks on libtorch and streams loss,
//! metrics and confusion matrices. See ARCHITECTURE.md for the code map.

pub mod cli;
pub mod config;
pub mod data;
pub mod domain;
pub mod engine;
pub mod jobs;
pub mod metrics;
pub mod server;
pub mod store;
pub mod transport;
