//! Cancellation passed down explicitly: a caller (the CLI's Ctrl-C / SIGTERM
//! handler, a Python thread, a test) asks a long run to stop; the run stops at its
//! next batch, removes what it had not finished and returns
//! [`Error::Interrupted`](crate::Error::Interrupted). No process-wide flag: two
//! runs in one process can be stopped one at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared stop request; clones see the same request.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token nobody has cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks every holder to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Interrupted)` once cancelled; `what` says what stops and what is kept.
    pub fn check(&self, what: &str) -> crate::Result<()> {
        if self.is_cancelled() {
            return Err(crate::Error::Interrupted(what.to_string()));
        }
        Ok(())
    }
}
