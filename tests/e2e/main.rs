//! End-to-end tests: the real binaries, real Postgres, real Redis, over gRPC.

mod auth;
mod foundation;
mod metrics;
mod payments;
mod receipts;
mod shifts;
mod telemetry;
mod tokens;
