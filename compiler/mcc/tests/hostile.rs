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

mod common;
use common::{corpus, failed_cleanly, fails, mcc};

/// Builds `model` (merged, no compression) into `dir/NAME/`; returns that folder.
fn built(dir: &Path, model: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let b = Command::new(env!("CARGO_BIN_EXE_mcc"))
        .env("NO_COLOR", "1")
        .arg("build")
        .arg(root.join("recipes/merge.mcr"))
        .arg(model)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    out
}

/// Builds lenet5 into `dir/lenet5/`; returns the executable.
fn built_lenet5(dir: &Path) -> PathBuf {
    built(dir, &corpus("lenet5.onnx"), "lenet5").join("lenet5")
}

/// `.npy` bytes (format 1.0) with this header text and data.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
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

#[test]
fn threads_beyond_the_limit_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lenet = corpus("lenet5.onnx");
    let lenet = lenet.to_str().unwrap();
    let x = corpus("data/mnist_one_x.npy");
    let x = x.to_str().unwrap();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes/merge.mcr");
    let recipe = recipe.to_str().unwrap();
    for args in [
        &["bench", lenet, "--threads", "100000"][..],
        &["run", lenet, "-i", x, "--jit", "--threads", "100000"],
        &["build", recipe, lenet, "-o", "out", "--threads", "100000"],
    ] {
        let out = mcc(d, args);
        let err = String::from_utf8_lossy(&out.stderr);
        // A usage error, as clap reports them (exit 2), before any work.
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("at most 1024 threads"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!d.join("out").exists());
    // The limit itself runs.
    let out = mcc(d, &["bench", lenet, "--threads", "1024", "--runs", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = built_lenet5(d);
    let out = Command::new(&exe)
        .args([x, "--threads", "100000"])
        .output()
        .unwrap();
    let err = failed_cleanly(&out, "the executable");
    assert!(err.contains("at most 1024 threads"), "{err}");
}

/// A model whose input and output are one float per sample and whose arena is 64 MiB per
/// sample (a 1×1 convolution padded by 2048 on every side, then a global average): a batch
/// of 2^22 samples has 16 MiB of input and needs 2^48 bytes of arena, past the address space
/// of every machine, so its allocation fails everywhere.
const BIG_ARENA: &str = "graph big {
  input %x: f32[N,1,1,1]
  const %w: f32[1,1,1,1] = seeded(1)
  node conv = Conv(%x, %w) {pads=[2048, 2048, 2048, 2048]} -> %c: f32[N,1,4097,4097]
  node pool = GlobalAveragePool(%c) -> %y: f32[N,1,1,1]
  output %y
}
";
const HUGE_BATCH: usize = 1 << 22;

#[test]
fn a_batch_beyond_memory_is_an_error_in_the_executable_the_jit_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("big.mcir"), BIG_ARENA).unwrap();
    mcc_runtime::npy::NpyArray {
        dtype: mcc_runtime::npy::NpyType::F32,
        shape: vec![HUGE_BATCH, 1, 1, 1],
        data: vec![0; HUGE_BATCH * 4],
    }
    .write(&d.join("x.npy"))
    .unwrap();
    let exe = built(d, &d.join("big.mcir"), "big").join("big");
    let out = Command::new(&exe)
        .arg(d.join("x.npy"))
        .arg("-o")
        .arg(d.join("y.npy"))
        .output()
        .unwrap();
    let err = failed_cleanly(&out, "the executable");
    assert!(
        err.contains("out of memory: the arena for batch 4194304"),
        "{err}"
    );
    assert!(!d.join("y.npy").exists());
    // mcc checks the size before compiling; bench, on lenet5 as in the issue, too.
    for args in [
        &["run", "big.mcir", "-i", "x.npy", "--jit", "-o", "y.npy"][..],
        &["bench", "big.mcir", "--batch", "4194304"],
        &[
            "bench",
            corpus("lenet5.onnx").to_str().unwrap(),
            "--batch",
            "10000000",
        ],
    ] {
        let err = fails(d, args);
        assert!(err.contains("memory"), "{args:?}: {err}");
    }
    assert!(!d.join("y.npy").exists());
    // The JIT itself fails cleanly past the check, and the model runs afterwards.
    let model = mcc::load(&d.join("big.mcir")).unwrap();
    let prog = mcc::native::program(&model.graph).unwrap();
    let mut jit = mcc_codegen::jit::Jit::new(prog, 1).unwrap();
    let x = vec![0.5f32; HUGE_BATCH];
    let e = jit.run(&[&x]).unwrap_err();
    assert!(
        e.contains("out of memory: the arena for batch 4194304"),
        "{e}"
    );
    let y = jit.run(&[&x[..2]]).unwrap();
    assert_eq!(y[0].len(), 2);
    assert!(y[0].iter().all(|v| v.is_finite()), "{y:?}");
}

/// The header's promise, from C: `NAME_run` returns non-zero when the batch does not fit in
/// memory (and the model still runs a batch that fits afterwards); `NAME_new` returns NULL
/// for more threads than the runtime runs.
const OOM_FROM_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include "big.h"

int main(void) {
    if (big_new(100000) != NULL || big_new(-1) != NULL) {
        printf("too many threads were accepted\n");
        return 1;
    }
    big_model *m = big_new(1);
    if (!m) { printf("big_new(1) failed\n"); return 1; }
    size_t huge = (size_t)1 << 22;
    /* Real buffers for the whole batch: the call may read them. */
    float *x = calloc(huge, sizeof(float)), *y = calloc(huge, sizeof(float));
    if (!x || !y) { printf("calloc failed\n"); return 1; }
    const float *in[1] = {x};
    float *out[1] = {y};
    int oom = big_run(m, in, out, huge);
    if (oom == 0) { printf("a batch past memory ran\n"); return 1; }
    if (big_run(m, in, out, 2) != 0) {
        printf("the model failed after running out of memory\n");
        return 1;
    }
    big_free(m);
    free(x);
    free(y);
    printf("ok: out of memory returned %d\n", oom);
    return 0;
}
"#;

#[test]
fn out_of_memory_in_name_run_returns_non_zero_to_c() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("big.mcir"), BIG_ARENA).unwrap();
    let out = built(d, &d.join("big.mcir"), "big");
    std::fs::write(d.join("main.c"), OOM_FROM_C).unwrap();
    common::link_c(&out, "big", &d.join("main.c"), &d.join("main"));
    let run = Command::new(d.join("main")).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("ok: out of memory returned"), "{stdout}");
}

#[test]
fn labels_for_an_output_without_a_batch_axis_are_a_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The output is [4, N]: one row per sample does not exist.
    std::fs::write(
        d.join("transposed.mcir"),
        "graph transposed {
  input %x: f32[N,4]
  const %w: f32[4,4] = seeded(1)
  node mm = MatMul(%x, %w) -> %h: f32[N,4]
  node t = Transpose(%h) {perm=[1, 0]} -> %y: f32[4,N]
  output %y
}
",
    )
    .unwrap();
    let npy =
        |dtype, shape: Vec<usize>, data: Vec<u8>| mcc_runtime::npy::NpyArray { dtype, shape, data };
    npy(mcc_runtime::npy::NpyType::F32, vec![10, 4], vec![0; 160])
        .write(&d.join("x.npy"))
        .unwrap();
    npy(mcc_runtime::npy::NpyType::I64, vec![10], vec![0; 80])
        .write(&d.join("y.npy"))
        .unwrap();
    std::fs::write(
        d.join("r.mcr"),
        "evaluate with \"x.npy\" labels \"y.npy\"\nprune unstructured on MatMul { amount: 50% }\n",
    )
    .unwrap();
    let err = fails(d, &["check", "r.mcr", "transposed.mcir"]);
    assert!(err.contains("mcc::data::unbatched_output"), "{err}");
    insta::assert_snapshot!(err);
    for extra in [&[][..], &["--no-native"]] {
        let mut args = vec!["build", "r.mcr", "transposed.mcir", "-o", "out"];
        args.extend(extra);
        let err = fails(d, &args);
        assert!(err.contains("mcc::data::unbatched_output"), "{err}");
        assert!(!d.join("out").exists());
    }
    // Without labels the outputs are still compared, whatever their shape.
    std::fs::write(
        d.join("r.mcr"),
        "evaluate with \"x.npy\"\nprune unstructured on MatMul { amount: 50% }\n",
    )
    .unwrap();
    let out = mcc(
        d,
        &[
            "build",
            "r.mcr",
            "transposed.mcir",
            "-o",
            "out",
            "--no-native",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `mcc ARGS` in `dir` with its address space capped at 1 GiB (`ulimit -v`): a command
/// that tried to read a multi-gigabyte file into memory would fail its allocation (and abort,
/// exit 134) instead of passing, or exhausting the machine.
fn mcc_capped(dir: &Path, args: &[&str]) -> Output {
    let t0 = std::time::Instant::now();
    let out = Command::new("sh")
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_mcc"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "mcc {args:?} took {:?}",
        t0.elapsed()
    );
    out
}

/// Data files are read header first (issue #14, "Resources"): `/dev/zero` and a sparse
/// multi-gigabyte file that is not `.npy` are a diagnostic at once, in little memory, and
/// `mcc check` reads headers only — a valid 3 GB `.npy` checks in little memory, and one
/// whose size does not match its shape is a diagnostic before anything is read.
#[test]
fn data_files_are_read_header_first_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(corpus("lenet5.onnx"), d.join("lenet5.onnx")).unwrap();
    let recipe = |name: &str, data: &str| {
        std::fs::write(
            d.join(name),
            format!("calibrate with \"{data}\"\nprune unstructured on Conv {{ amount: 50% }}\n"),
        )
        .unwrap();
    };
    let magic = "missing the \\x93NUMPY magic";

    recipe("zero.mcr", "/dev/zero");
    for args in [
        &["check", "zero.mcr", "lenet5.onnx"][..],
        &["build", "zero.mcr", "lenet5.onnx", "-o", "out"],
        &["run", "lenet5.onnx", "-i", "/dev/zero"],
    ] {
        let err = failed_cleanly(&mcc_capped(d, args), &format!("{args:?}"));
        assert!(err.contains(magic), "{args:?}: {err}");
    }

    // 3 GiB of nothing (sparse: no disk, no time).
    let big = std::fs::File::create(d.join("big.bin")).unwrap();
    big.set_len(3 << 30).unwrap();
    recipe("big.mcr", "big.bin");
    let err = failed_cleanly(
        &mcc_capped(d, &["check", "big.mcr", "lenet5.onnx"]),
        "big.bin",
    );
    assert!(
        err.contains("mcc::data::bad_inputs") && err.contains(magic),
        "{err}"
    );

    // A valid header for 1,000,000 images (3.1 GB) and a file of exactly that size: `check`
    // reads its header only.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1, 28, 28), }";
    let bytes = npy(header, &[]);
    let data: u64 = 1_000_000 * 28 * 28 * 4;
    for (name, len, ok) in [
        ("exact.npy", data, true),
        ("short.npy", data - 1, false),
        ("long.npy", data + 1, false),
    ] {
        std::fs::write(d.join(name), &bytes).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join(name))
            .unwrap();
        f.set_len(bytes.len() as u64 + len).unwrap();
        let r = format!("{name}.mcr");
        recipe(&r, name);
        let out = mcc_capped(d, &["check", &r, "lenet5.onnx"]);
        if ok {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            let err = failed_cleanly(&out, name);
            assert!(
                err.contains(if len < data {
                    "data is truncated"
                } else {
                    "extra bytes"
                }),
                "{name}: {err}"
            );
        }
    }
}
