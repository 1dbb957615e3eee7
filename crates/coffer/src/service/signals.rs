//! A long-running job stopped by a signal: SIGTERM or SIGINT asks it to end well.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGTERM or SIGINT once [`stop_on_signals`] is called.
static STOP: AtomicBool = AtomicBool::new(false);

/// Whether SIGTERM or SIGINT has asked the job to stop (only after [`stop_on_signals`]).
pub(super) fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Makes SIGINT and SIGTERM set the flag this returns, for a job's `stop` option (such as
/// [`crate::binlog::ArchiveSpec::stop`]): the job stores what it received and ends well. A
/// second signal ends the process at once. The handlers are the process's: call this only if
/// the program lets coffer have these signals.
pub fn stop_on_signals() -> &'static AtomicBool {
    extern "C" fn on_signal(_: nix::libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
    }
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // No SA_RESTART: a wait is cut short. SA_RESETHAND: a second signal ends the process.
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESETHAND, SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
    &STOP
}
