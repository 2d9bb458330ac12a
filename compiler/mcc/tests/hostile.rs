//! Hostile inputs (issue #14, "Crashes"): each gives a clear diagnostic and a non-zero exit,
//! or the correct result — never a panic or an abort — and leaves no partial output behind.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn mcc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcc"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .unwrap()
}

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../corpus")
        .join(rel)
}

/// Asserts a finished process failed cleanly (exit 1, no panic, nothing on stdout); returns
/// its stderr.
fn failed_cleanly(out: &Output, what: &str) -> String {
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

/// Builds lenet5 (merged, no compression) into `dir/lenet5/`; returns the executable.
fn built_lenet5(dir: &Path) -> PathBuf {
    let out = dir.join("lenet5");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let b = Command::new(env!("CARGO_BIN_EXE_mcc"))
        .env("NO_COLOR", "1")
        .arg("build")
        .arg(root.join("recipes/merge.mcr"))
        .arg(corpus("lenet5.onnx"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    out.join("lenet5")
}

/// `.npy` bytes (format 1.0) with this header text and data.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// Runs an `mcc` command that must fail cleanly; returns its stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    failed_cleanly(&mcc(dir, args), &format!("mcc {}", args.join(" ")))
}

#[test]
fn a_recipe_span_past_column_65535_renders_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(corpus("lenet5.onnx"), d.join("lenet5.onnx")).unwrap();
    let pad = " ".repeat(70_000);
    std::fs::write(
        d.join("long.mcr"),
        format!("stage s {{\n  prune unstructured on Conv{pad}Nope {{ amount: 50% }}\n}}\n"),
    )
    .unwrap();
    let err = fails(d, &["check", "long.mcr", "lenet5.onnx"]);
    // The header names the true place; the shown line is short.
    assert!(err.contains("[long.mcr:2:70034]"), "{err}");
    assert!(err.lines().all(|l| l.len() < 1000), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn an_ir_weight_line_with_a_bad_hex_digit_renders_clipped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = mcc(
        d,
        &["ir", "--weights", corpus("lenet5.onnx").to_str().unwrap()],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // Flip one hex digit near the end of the longest line (fc1's weights, millions of bytes).
    let (n, longest) = text
        .lines()
        .enumerate()
        .max_by_key(|(_, l)| l.len())
        .unwrap();
    assert!(longest.len() > 1_000_000, "{}", longest.len());
    let at = longest.len() - 1000;
    let bad: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == n {
                format!("{}g{}", &l[..at], &l[at + 1..])
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(d.join("bad.mcir"), bad.join("\n")).unwrap();
    let err = fails(d, &["ir", "bad.mcir"]);
    assert!(err.contains("not a hex digit"), "{err}");
    assert!(
        err.contains(&format!("[bad.mcir:{}:", n + 1)),
        "the header names the line: {err}"
    );
    assert!(err.lines().all(|l| l.len() < 1000), "{err}");
}

#[test]
fn deep_selectors_are_a_diagnostic_and_long_unions_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(corpus("lenet5.onnx"), d.join("lenet5.onnx")).unwrap();
    let rule =
        |sel: String| format!("stage s {{\n  prune unstructured on {sel} {{ amount: 50% }}\n}}\n");
    let nest = |n: usize, open: &str| format!("{}Conv{}", open.repeat(n), ")".repeat(n));
    std::fs::write(d.join("parens.mcr"), rule(nest(5_000, "("))).unwrap();
    std::fs::write(d.join("after.mcr"), rule(nest(10_000, "after("))).unwrap();
    for f in ["parens.mcr", "after.mcr"] {
        for cmd in ["check", "explain"] {
            let err = fails(d, &[cmd, f, "lenet5.onnx"]);
            assert!(err.contains("nest deeper than 64 levels"), "{err}");
            assert!(err.contains(&format!("[{f}:2:")), "{err}");
        }
    }
    // At the limit, selection, planning and explaining work; so does a flat union of
    // 10,000 terms (70 KB), which must not recurse per term.
    let at_limit = format!("{}? | Gemm", nest(mcc_recipe::MAX_NESTING, "after("));
    std::fs::write(d.join("limit.mcr"), rule(at_limit)).unwrap();
    std::fs::write(d.join("union.mcr"), rule(vec!["Conv"; 10_000].join(" | "))).unwrap();
    for f in ["limit.mcr", "union.mcr"] {
        for cmd in ["check", "explain"] {
            let out = mcc(d, &[cmd, f, "lenet5.onnx"]);
            assert!(
                out.status.success(),
                "{cmd} {f}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn an_npy_dtype_starting_with_a_multibyte_character_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(corpus("lenet5.onnx"), d.join("lenet5.onnx")).unwrap();
    let header = "{'descr': 'éf4', 'fortran_order': False, 'shape': (1, 1, 28, 28), }";
    std::fs::write(d.join("bad.npy"), npy(header, &[0; 28 * 28 * 4])).unwrap();
    // `mcc run`.
    let err = fails(d, &["run", "lenet5.onnx", "-i", "bad.npy", "-o", "out.npy"]);
    assert!(err.contains("éf4"), "{err}");
    assert!(!d.join("out.npy").exists());
    // The recipe's data check.
    std::fs::write(
        d.join("r.mcr"),
        "calibrate with \"bad.npy\"\nprune unstructured on Conv { amount: 50% }\n",
    )
    .unwrap();
    let err = fails(d, &["check", "r.mcr", "lenet5.onnx"]);
    assert!(err.contains("éf4"), "{err}");
    // A built executable.
    let exe = built_lenet5(d);
    let out = Command::new(&exe)
        .arg(d.join("bad.npy"))
        .arg("-o")
        .arg(d.join("y.npy"))
        .output()
        .unwrap();
    let err = failed_cleanly(&out, "the executable");
    assert!(err.contains("éf4"), "{err}");
    assert!(!d.join("y.npy").exists());
}
