//! Progress of long runs on stderr: a bar on a terminal, one line at most every
//! 30 seconds (and one at the end) in batch logs (Slurm, Dask, CI), where a bar
//! would print nothing useful, or nothing at all when the caller asked for quiet.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Nothing (libraries, tests, `--quiet`).
    #[default]
    Hidden,
    /// A bar redrawn in place (stderr is a terminal).
    Bar,
    /// A line now and then (stderr is a file or a pipe).
    Lines,
}

impl ProgressMode {
    /// A bar on a terminal, lines elsewhere; hidden when `quiet`.
    pub fn for_stderr(quiet: bool) -> ProgressMode {
        use std::io::IsTerminal;
        match (quiet, std::io::stderr().is_terminal()) {
            (true, _) => ProgressMode::Hidden,
            (false, true) => ProgressMode::Bar,
            (false, false) => ProgressMode::Lines,
        }
    }
}

/// Between two progress lines in a batch log.
const LINE_EVERY: Duration = Duration::from_secs(30);

/// The progress of `total` units of work.
pub struct Progress {
    mode: ProgressMode,
    bar: ProgressBar,
    what: &'static str,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// `what` names the run and its units in lines ("predict: rows").
    pub fn new(mode: ProgressMode, total: u64, what: &'static str) -> Progress {
        let bar = match mode {
            ProgressMode::Bar => ProgressBar::new(total),
            _ => ProgressBar::hidden(),
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} {msg}, {per_sec}, eta {eta}")
                .expect("valid template"),
        );
        bar.set_message(what.rsplit(": ").next().unwrap_or(what).to_string());
        let now = Instant::now();
        Progress { mode, bar, what, total, done: 0, started: now, last_line: now }
    }

    /// `n` more units done.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        self.bar.inc(n);
        if self.mode == ProgressMode::Lines && self.last_line.elapsed() >= LINE_EVERY {
            self.line();
        }
    }

    /// The end: the bar cleared, a last line in a log.
    pub fn finish(&mut self) {
        self.bar.finish_and_clear();
        if self.mode == ProgressMode::Lines {
            self.line();
        }
    }

    fn line(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = self.done as f64 / seconds.max(1e-9);
        let eta = (self.total.saturating_sub(self.done)) as f64 / rate.max(1e-9);
        eprintln!(
            "{} {} of {} ({:.1}%), {}/s, {:.0} s elapsed, eta {:.0} s",
            self.what,
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total.max(1) as f64,
            rate_text(rate),
            seconds,
            eta
        );
        self.last_line = Instant::now();
    }
}

/// A [`Progress`] that many threads move, a unit at a time, without waiting on each
/// other: each counts atomically, and whoever finds the display free brings it up to
/// date (the others go on). Rows that take a second each (smooth-lens fits) move it
/// by the row; rows rendered 30,000 a second do not queue on a lock.
pub struct SharedProgress {
    done: AtomicU64,
    shown: Mutex<Progress>,
}

impl SharedProgress {
    /// Shares `progress`.
    pub fn new(progress: Progress) -> SharedProgress {
        SharedProgress { done: AtomicU64::new(0), shown: Mutex::new(progress) }
    }

    /// `n` more units done, from any thread.
    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Ok(mut shown) = self.shown.try_lock() {
            if done > shown.done {
                let behind = done - shown.done;
                shown.inc(behind);
            }
        }
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// The display brought up to date, and ended.
    pub fn finish(self) {
        let mut progress = self.shown.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        let behind = self.done.into_inner().saturating_sub(progress.done);
        progress.inc(behind);
        progress.finish();
    }
}

/// A rate per second as a person reads it: a decimal below 10 (a fitted survey
/// cutout takes most of a second), whole numbers above.
pub fn rate_text(per_second: f64) -> String {
    if per_second < 10.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.0}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slow_rates_keep_a_decimal() {
        assert_eq!(super::rate_text(1.354), "1.4");
        assert_eq!(super::rate_text(0.04), "0.0");
        assert_eq!(super::rate_text(812.6), "813");
    }
}
