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

/// Compiles the C program `main_c` against the model `name` that `mcc build` wrote into
/// `out` (its header, object and runtime library, with the libraries the header names) into
/// the executable `exe`, with the system's `cc` (or $CC); asserts it linked.
pub fn link_c(out: &Path, name: &str, main_c: &Path, exe: &Path) {
    let header = std::fs::read_to_string(out.join(format!("{name}.h"))).unwrap();
    let key = format!("#define {}_LIBS ", name.to_ascii_uppercase());
    let libs = header
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .unwrap()
        .trim_matches('"');
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let c = Command::new(&cc)
        .arg("-O1")
        .arg("-I")
        .arg(out)
        .arg(main_c)
        .arg(out.join(format!("{name}.o")))
        .arg(out.join("libmcc_runtime.a"))
        .args(libs.split_whitespace())
        .arg("-o")
        .arg(exe)
        .output()
        .unwrap();
    assert!(
        c.status.success(),
        "{cc}: {}",
        String::from_utf8_lossy(&c.stderr)
    );
}
