//! gradstream: a gRPC service that trains neural networks on libtorch and streams loss,
//! metrics and confusion matrices. See ARCHITECTURE.md for the code map.
//!
//! The layers below the service are crates of the workspace (`crates/`), re-exported here
//! under their short names so that tests, benchmarks and the binary share one path.

pub use gradstream_data as data;
pub use gradstream_domain as domain;
pub use gradstream_engine as engine;
pub use gradstream_metrics as metrics;
pub use gradstream_store as store;

pub mod cli;
pub mod config;
pub mod http;
pub mod jobs;
pub mod observability;
pub mod server;
pub mod transport;
