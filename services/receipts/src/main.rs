//! The `fiscus-receipts` process: ReceiptService on its own port, against Postgres and Redis.
#![forbid(unsafe_code)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    fiscus_kit::app::main(&fiscus_receipts::MODULE)
}
