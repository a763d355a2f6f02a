//! The kit against real Postgres, real Redis, SQLite and the in-process cache: the same suites
//! run on each backend.

mod cache_suite;
mod server;
mod store_suite;
