//! Progress bars for long work (hidden when stderr is not a terminal, as indicatif does, and
//! when diagnostics are JSON: [`hide`]).

use std::sync::atomic::{AtomicBool, Ordering};

static HIDDEN: AtomicBool = AtomicBool::new(false);

/// Hides every bar made from now on (stderr carries only JSON).
pub fn hide() {
    HIDDEN.store(true, Ordering::Relaxed);
}

/// A bar of `len` units labelled `msg`.
pub fn bar(len: u64, msg: &'static str) -> indicatif::ProgressBar {
    if HIDDEN.load(Ordering::Relaxed) {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg:>22} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(msg);
    b
}

/// A spinner labelled `msg`, for work of unknown length.
pub fn spinner(msg: &'static str) -> indicatif::ProgressBar {
    if HIDDEN.load(Ordering::Relaxed) {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new_spinner();
    b.set_message(msg);
    b.enable_steady_tick(std::time::Duration::from_millis(100));
    b
}
