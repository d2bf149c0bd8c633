//! The `lensmae` binary: parse arguments, call the library, map errors to exit codes.

use std::process::ExitCode;

/// mimalloc, told never to hand freed memory back to the OS: training allocates
/// and frees the same large activation buffers every step, and returning them made
/// every step fault its pages in again (a quarter of a step on glibc's defaults).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's option enum (15 in v2 and in v3, which
/// libmimalloc-sys builds by default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // SAFETY: sets a process-wide allocator option before any thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    match lensmae::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`lensmae ... | head`) is not a failure.
            if err.chain().any(|cause| {
                cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            // 3: the output is written but rows failed (`predict --max-failed-fraction`).
            if err.downcast_ref::<lensmae::cli::RowsFailed>().is_some() {
                return ExitCode::from(3);
            }
            // 130: stopped by Ctrl-C / SIGTERM (the shells' code for SIGINT).
            if matches!(err.downcast_ref::<lensmae::Error>(), Some(lensmae::Error::Interrupted(_))) {
                return ExitCode::from(130);
            }
            ExitCode::from(2)
        }
    }
}
