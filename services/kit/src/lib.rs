//! Shared plumbing of every fiscus service: configuration, telemetry, the gRPC server,
//! error mapping, the journal database and the cache.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod deadline;
pub mod error;
pub mod health;
pub mod idempotency;
pub mod metrics;
pub mod peers;
pub mod server;
pub mod telemetry;

pub use app::{ServiceContext, ServiceModule};
pub use config::{Config, ServiceKind};
pub use db::{Database, Migrations};
pub use error::{ApiError, Violation, Violations};
