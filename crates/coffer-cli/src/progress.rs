//! Progress on stderr when it is a terminal; nothing otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar (or a silent stand-in) counting bytes.
#[derive(Debug, Clone)]
pub struct Bar(pub ProgressBar);

impl Bar {
    /// `total` bytes if known; a spinner with rate otherwise.
    pub fn new(quiet: bool, total: Option<u64>, what: &str) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(ProgressBar::hidden());
        }
        let pb = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{prefix} {spinner} {bytes} {binary_bytes_per_sec} {elapsed} {wide_msg}")
                    .expect("valid template"),
            ),
        };
        pb.set_prefix(what.to_owned());
        Self(pb)
    }
}
