//! The `fiscus` command: the whole cluster in one process for development (`fiscus dev`), the
//! benchmark (`fiscus bench`), and the migrations of every service (`fiscus migrate`).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_ebarimt;
mod bench_fiskaltrust;
mod bench_payments;
mod bench_shifts;
mod dev;
mod migrate;
mod sandboxes;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "fiscus: gRPC fiscal middleware")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all four services in one process on embedded storage (SQLite + in-process cache).
    Dev(dev::DevArgs),
    /// Measure SignReceipt against Postgres + Redis beside the storage floor.
    Bench(bench::BenchArgs),
    /// Run every service's database migrations (each in its own schema) and exit.
    Migrate(migrate::MigrateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("fiscus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Dev(args) => runtime.block_on(dev::run(args)),
        Command::Bench(args) => runtime.block_on(bench::run(args)),
        Command::Migrate(args) => runtime.block_on(migrate::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fiscus: {}", fiscus_kit::app::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
