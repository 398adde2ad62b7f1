//! The `fleetform` binary: everything but the allocator is in [`cli`].

mod cli;

use std::process::ExitCode;

// Twins are parsed into many small JSON values across threads; glibc malloc fragments and
// serialises there (plan over 1M devices was 3x slower with it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    no_transparent_huge_pages();
    cli::main()
}

/// Asks Linux not to back this process's memory with transparent huge pages. mimalloc
/// advises them for its arenas, and every worker thread's first allocations then fault in
/// and zero a whole 2 MiB page: on a cold machine that was a third of a 100k-device plan's
/// CPU (kernel time 0.2 s → 1 s, `cargo bench --bench plan_scale`). A plan lasts seconds,
/// too short for fewer TLB misses to pay that back; the long-running commands (`hub serve`,
/// `apply --wait`) hold little memory, so they lose nothing by it.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours; on a
    // kernel without it the call fails and nothing changes.
    unsafe {
        // The kernel reads unsigned longs and refuses non-zero unused arguments.
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}
