//! Progress bars for long work (hidden when stderr is not a terminal, as indicatif does).

/// A bar of `len` units labelled `msg`.
pub fn bar(len: u64, msg: &'static str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg:>22} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(msg);
    b
}
