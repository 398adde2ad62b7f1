//! The `fleetform` binary: everything but the allocator is in [`cli`].

mod cli;

use std::process::ExitCode;

// Twins are parsed into many small JSON values across threads; glibc malloc fragments and
// serialises there (plan over 1M devices was 3x slower with it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}
