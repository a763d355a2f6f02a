//! End-to-end tests: the real binaries, real Postgres, real Redis, over gRPC.

/// Runs each named `async fn(Backend)` of the module as two tests: `postgres::name` (separate
/// service processes on Postgres + Redis) and `sqlite::name` (`fiscus dev`). The module defines
/// its own `Backend` with those two variants.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
              async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
    };
}

mod auth;
mod ebarimt;
mod fiskaltrust;
mod foundation;
mod metrics;
mod payments;
mod receipts;
mod shifts;
mod telemetry;
mod tokens;
