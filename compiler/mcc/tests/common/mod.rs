//! What the CLI test suites share: running `mcc` in a folder, the corpus, and the checks that
//! a command succeeded or failed cleanly.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `mcc ARGS` in `dir` (no color).
pub fn mcc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcc"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap()
}

/// A file of the repository's corpus.
pub fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../corpus")
        .join(rel)
}

/// Runs a command that must succeed; returns its output.
pub fn succeeds(dir: &Path, args: &[&str]) -> Output {
    let out = mcc(dir, args);
    assert!(
        out.status.success(),
        "mcc {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts a finished process failed cleanly (exit 1, no panic, nothing on stdout); returns
/// its stderr.
pub fn failed_cleanly(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1 from {what}, stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{what} panicked:\n{err}");
    assert!(
        out.stdout.is_empty(),
        "{what} failed but printed results: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// Runs an `mcc` command that must fail cleanly; returns its stderr.
pub fn fails(dir: &Path, args: &[&str]) -> String {
    failed_cleanly(&mcc(dir, args), &format!("mcc {}", args.join(" ")))
}
