//! Native outputs of `mcc build`, end to end: the standalone executable computes the ONNX
//! Runtime reference outputs; the object file + header link into a C program (the Make and
//! CMake examples) and into a Rust program (the build.rs example), each built and run here
//! and then found up to date by its build system; a missing system linker leaves the object
//! and header, says why, and still exits 0.
//!
//! The CMake example needs `cmake` (Debian package cmake, which scripts/test installs):
//! without it that test says NOT RUN on standard error, and fails where `MCC_REQUIRE_CMAKE`
//! is set (CI).

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::{Path, PathBuf};

mod common;
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus(rel: &str) -> PathBuf {
    root().join("corpus").join(rel)
}

fn npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = mcc_runtime::npy::NpyArray::read(path).unwrap();
    let v = a
        .data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (a.shape, v)
}

fn build(model: &Path, out: &Path, cc: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcc"));
    cmd.env("NO_COLOR", "1")
        .arg("build")
        .arg(root().join("recipes/merge.mcr"))
        .arg(model)
        .arg("-o")
        .arg(out);
    if let Some(cc) = cc {
        cmd.env("CC", cc);
    }
    cmd.output().unwrap()
}

#[test]
fn the_executable_computes_the_reference_outputs() {
    let dir = tempfile::tempdir().unwrap();
    for (m, input) in [
        ("lenet5", "data/mnist_test_x.npy"),
        ("mobilenet_dw", "data/mnist_test_x.npy"),
        ("inception_mini", "data/mnist_test_x.npy"),
    ] {
        let out = dir.path().join(m);
        let b = build(&corpus(&format!("{m}.onnx")), &out, None);
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
        let y = out.join("y.npy");
        for threads in ["1", "2"] {
            // A stale result from the previous run must not pass for this one.
            let _ = std::fs::remove_file(&y);
            let run = Command::new(out.join(m))
                .arg(corpus(input))
                .args(["-o"])
                .arg(&y)
                .args(["--threads", threads])
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
            let (shape, got) = npy_f32(&y);
            let (want_shape, want) = npy_f32(&corpus(&format!("ref/{m}_test_out.npy")));
            assert_eq!(shape, want_shape);
            // NaN or infinity anywhere fails (the executable starts its outputs as NaN, so an
            // element it never writes shows too).
            let d = mcc_runtime::testing::diff(&got, &want, 1e-4, 1e-5);
            println!(
                "{m} ({threads} thread(s)): max abs error {:.2e}, max rel {:.2e}",
                d.max_abs, d.max_rel
            );
            assert!(d.within(1e-4), "{m}: {d:?}");
        }
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["native"]["executable"], m);
    }
}

#[test]
fn the_executable_rejects_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lenet5");
    assert!(
        build(&root().join("examples/lenet5/lenet5.onnx"), &out, None)
            .status
            .success()
    );
    let exe = out.join("lenet5");
    for (args, want) in [
        (vec![], "usage"),
        (vec!["/nonexistent.npy".to_string()], "No such file"),
        (
            vec![
                root()
                    .join("examples/lenet5/mnist_test_y.npy")
                    .display()
                    .to_string(),
            ],
            "takes float32",
        ),
        (
            vec![corpus("data/mnist_test_x784.npy").display().to_string()],
            "does not fit input",
        ),
        (vec!["--bogus".to_string()], "unknown option"),
    ] {
        let r = Command::new(&exe).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn without_a_linker_the_object_and_header_remain() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lenet5");
    let b = build(
        &root().join("examples/lenet5/lenet5.onnx"),
        &out,
        Some("/nonexistent/cc"),
    );
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(b.status.success(), "{err}");
    assert!(err.contains("no C linker"), "{err}");
    assert!(out.join("lenet5.o").exists() && out.join("lenet5.h").exists());
    assert!(!out.join("lenet5").exists());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert!(report["native"]["executable"].is_null());
    assert!(
        report["native"]["no_executable"]
            .as_str()
            .unwrap()
            .contains("no C linker")
    );
}

#[test]
fn the_c_example_links_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let r = Command::new("make")
        .arg("-C")
        .arg(root().join("examples/c"))
        .arg("run")
        .arg(format!("MCC={}", env!("CARGO_BIN_EXE_mcc")))
        .arg(format!("OUT={}", dir.path().display()))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        out.contains("lenet5 from C: 1000 samples, accuracy 98.0%"),
        "{out}"
    );
    // Nothing changed, so nothing to do: `make -q` (its exit status says whether every
    // target is up to date) — the depfile mcc wrote names the model's inputs.
    let make_q = |what: &str| {
        Command::new("make")
            .arg("-q")
            .arg("-C")
            .arg(root().join("examples/c"))
            .arg(what)
            .arg(format!("MCC={}", env!("CARGO_BIN_EXE_mcc")))
            .arg(format!("OUT={}", dir.path().display()))
            .status()
            .unwrap()
    };
    assert!(
        make_q("all").success(),
        "make rebuilds an unchanged project"
    );
    let dep = std::fs::read_to_string(dir.path().join("lenet5.d")).unwrap();
    assert!(
        dep.contains("lenet5.onnx") && dep.contains("merge.mcr"),
        "{dep}"
    );
}

#[test]
fn the_rust_example_links_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let r = Command::new(cargo)
        .args(["run", "--release", "--offline", "--manifest-path"])
        .arg(root().join("examples/rust/Cargo.toml"))
        .env("CARGO_TARGET_DIR", dir.path())
        .env("MCC", env!("CARGO_BIN_EXE_mcc"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert!(
        out.contains("lenet5 from Rust: 1000 samples, accuracy 98.0%"),
        "{out}"
    );
    // build.rs names the inputs mcc's depfile lists, for cargo to rerun it when one changes
    // (its output is kept beside OUT_DIR).
    let build = dir.path().join("release/build");
    let script_dir = std::fs::read_dir(&build)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("out/model/lenet5.o").is_file())
        .unwrap_or_else(|| panic!("no build-script output with the model in {build:?}"));
    let said = std::fs::read_to_string(script_dir.join("output")).unwrap();
    for input in ["recipes/merge.mcr", "examples/lenet5/lenet5.onnx"] {
        assert!(
            said.lines()
                .any(|l| l.starts_with("cargo:rerun-if-changed=") && l.ends_with(input)),
            "{input} is not among the build script's rerun-if-changed:\n{said}"
        );
    }
    // Nothing changed, so nothing to do: the build script does not run again (mcc would
    // rewrite the object) and the program is not recompiled.
    let object = script_dir.join("out/model/lenet5.o");
    let before = mtime(&object);
    let again = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--offline", "--manifest-path"])
        .arg(root().join("examples/rust/Cargo.toml"))
        .env("CARGO_TARGET_DIR", dir.path())
        .env("MCC", env!("CARGO_BIN_EXE_mcc"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(!err.contains("Compiling"), "cargo rebuilt:\n{err}");
    assert_eq!(mtime(&object), before, "the build script ran again:\n{err}");
}

fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// `cmake`, or why the CMake example cannot be tested (then it says NOT RUN, and fails where
/// `MCC_REQUIRE_CMAKE` is set: CI).
fn cmake() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("cmake"))
            .find(|p| p.is_file())
    });
    if found.is_some() {
        return found;
    }
    let why = "NOT RUN: the CMake example's test needs cmake (Debian package cmake)";
    assert!(
        std::env::var_os("MCC_REQUIRE_CMAKE").is_none(),
        "{why}: MCC_REQUIRE_CMAKE is set"
    );
    // Past the harness's capture, so every run's log (and scripts/test's summary) shows it.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{why}");
    None
}

/// examples/cmake: configured, built and run; then built again with nothing changed, which
/// runs nothing; then, the recipe changed (a copy here, so the repository is left alone),
/// which builds the model again. The recipe is not among the custom command's DEPENDS:
/// only mcc's depfile names it, so the last step shows CMake reads the depfile.
#[test]
fn the_cmake_example_links_runs_and_rebuilds_only_on_change() {
    let Some(cmake) = cmake() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("merge.mcr");
    std::fs::copy(root().join("recipes/merge.mcr"), &recipe).unwrap();
    let build_dir = tmp.path().join("build");
    let run = |args: &[&str]| -> String {
        let r = Command::new(&cmake).args(args).output().unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(r.status.success(), "cmake {args:?}:\n{out}");
        out
    };
    let b = build_dir.to_str().unwrap();
    // The Makefile generator, whatever CMAKE_GENERATOR says: the one the messages below are
    // from (make is installed wherever the C example's test runs).
    run(&[
        "-G",
        "Unix Makefiles",
        "-S",
        root().join("examples/cmake").to_str().unwrap(),
        "-B",
        b,
        &format!("-DMCC={}", env!("CARGO_BIN_EXE_mcc")),
        &format!("-DRECIPE={}", recipe.display()),
    ]);
    let compiling = "mcc: compiling LeNet-5"; // the custom command's COMMENT
    let out = run(&["--build", b, "--target", "run"]);
    assert!(out.contains(compiling), "{out}");
    assert!(
        out.contains("lenet5 from C: 1000 samples, accuracy 98.0%"),
        "{out}"
    );
    // mcc was asked for the object alone (--emit obj), and warned of nothing.
    assert!(!out.contains("warning"), "{out}");
    let dep = std::fs::read_to_string(build_dir.join("lenet5.d")).unwrap();
    assert!(
        dep.contains(recipe.to_str().unwrap()) && dep.contains("lenet5.onnx"),
        "{dep}"
    );
    let object = build_dir.join("model/lenet5.o");
    let program = build_dir.join("lenet5_demo");
    let (object_time, program_time) = (mtime(&object), mtime(&program));

    // Nothing changed: mcc does not run, nothing is compiled or linked.
    let out = run(&["--build", b]);
    assert!(!out.contains(compiling), "mcc ran again:\n{out}");
    assert!(
        !out.contains("Building") && !out.contains("Linking"),
        "{out}"
    );
    assert_eq!(mtime(&object), object_time, "{out}");
    assert_eq!(mtime(&program), program_time, "{out}");

    // The recipe changed (same text, newer time): the model is built again.
    std::fs::File::options()
        .write(true)
        .open(&recipe)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let out = run(&["--build", b]);
    assert!(
        out.contains(compiling),
        "a changed recipe did not rebuild:\n{out}"
    );
    assert!(mtime(&object) > object_time, "{out}");
}

/// `recipes/lenet5.mcr` (78% of the weights pruned): the object file carries the weights in
/// stored form, at least 3.5× smaller than dense, and so does the report; the executable
/// (which expands them when it loads) computes on the whole test set what the reference
/// evaluator computes from `model.full.mcir` (the weights in their stored form, read back).
#[test]
fn pruned_weights_are_stored_compressed_and_compute_the_same() {
    stored_weights_compute_the_same("recipes/lenet5.mcr", "lenet5", 3.5, 3.5);
}

/// `recipes/lenet5-deep-compression.mcr` (pruned, 4-bit codebooks, Huffman-coded): the report
/// counts at least 30× fewer bytes than dense (the Deep Compression issue's bar), the object
/// file's weight data (the coded form) is at least 30× smaller too, and the executable gives
/// the accuracy the report states.
#[test]
fn deep_compression_weights_are_that_small_in_the_executable() {
    stored_weights_compute_the_same("recipes/lenet5-deep-compression.mcr", "lenet5", 30.0, 30.0);
}

/// Per-channel low-bit weights: `recipes/lenet300-int4.mcr` (4 bits, a scale per output
/// channel) and `recipes/lenet5-ternary.mcr` ({−α₁, 0, +α₂} per channel). The object's
/// coded form gives each output channel a table of its own values (the integer ones held as
/// integers times the channel's scale), so the weight data is about as small as the report
/// counts — one table of every channel's values made it 2.7× and 4.3× smaller than dense,
/// where the report counts 7.8× and 18.5×.
#[test]
fn per_channel_low_bit_weights_are_that_small_in_the_executable() {
    stored_weights_compute_the_same("recipes/lenet300-int4.mcr", "lenet300", 7.5, 7.5);
    stored_weights_compute_the_same("recipes/lenet5-ternary.mcr", "lenet5", 18.0, 15.0);
}

/// `recipes/resnet_bn.mcr` (its 3×3 convolutions 40% pruned, run as Winograd F(2×2, 3×3)):
/// the object stores those layers' 3×3 kernels, not their dense transformed weights, so its
/// weight data stays below the original's; the executable transforms them when it loads, to
/// the bits the build measured: it gives the accuracy the report states, and the evaluator's
/// outputs.
#[test]
fn winograd_layers_are_stored_as_their_kernels_and_compute_the_same() {
    stored_weights_compute_the_same("recipes/resnet_bn.mcr", "resnet_bn", 1.4, 1.4);
}

fn stored_weights_compute_the_same(recipe: &str, model: &str, ir_ratio: f64, object_ratio: f64) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(model);
    let b = Command::new(env!("CARGO_BIN_EXE_mcc"))
        .env("NO_COLOR", "1")
        .arg("build")
        .arg(root().join(recipe))
        .arg(corpus(&format!("{model}.onnx")))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let bytes = &report["model_totals"]["bytes"];
    let (before, after) = (
        bytes["before"].as_f64().unwrap(),
        bytes["after"].as_f64().unwrap(),
    );
    assert!(
        before / after >= ir_ratio,
        "{recipe}: stored weights {after} of {before} bytes"
    );
    let native = &report["native"];
    assert_eq!(native["weights_stored"], true);
    let object_weights = native["weight_bytes"].as_f64().unwrap();
    // Dense, the object held every weight as an f32 (packing only adds padding).
    assert!(
        before / object_weights >= object_ratio,
        "{recipe}: object weight data {object_weights} bytes for {before} dense"
    );
    let object = std::fs::metadata(out.join(format!("{model}.o")))
        .unwrap()
        .len() as f64;
    // Its code, schedule and symbols besides: lenet5's weights are most of the file.
    let object_file_ratio = object_ratio.min(3.0);
    assert!(
        object * object_file_ratio < before,
        "{model}.o is {object} bytes"
    );
    // The executable against the evaluator on the compressed model read back (lenet300
    // reads flat images).
    let input = corpus(if model == "lenet300" {
        "data/mnist_test_x784.npy"
    } else {
        "data/mnist_test_x.npy"
    });
    let y = out.join("y.npy");
    let run = Command::new(out.join(model))
        .arg(&input)
        .arg("-o")
        .arg(&y)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (shape, got) = npy_f32(&y);
    let model = mcc::load(&out.join("model.full.mcir")).unwrap();
    let x = mcc::tensor_io::read_npy(&input).unwrap();
    let want = mcc_ir::run(&model.graph, &[x]).unwrap().remove(0);
    assert_eq!(shape, want.shape());
    let want: Vec<f64> = want.to_f64_vec();
    let got: Vec<f64> = got.iter().map(|&v| f64::from(v)).collect();
    let d = mcc_runtime::testing::diff(&got, &want, 1e-4, 1e-5);
    assert!(d.within(1e-4), "executable vs evaluator: {d:?}");
    let classes = shape[1];
    let top = |v: &[f64]| -> Vec<usize> {
        v.chunks(classes)
            .map(|r| (0..classes).fold(0, |b, i| if r[i] > r[b] { i } else { b }))
            .collect()
    };
    assert_eq!(top(&got), top(&want), "{recipe}: top-1 differs");
    assert_eq!(top(&got).len(), 1000);
    // The accuracy the report states is the executable's.
    let labels = mcc::tensor_io::read_npy(&corpus("data/mnist_test_y.npy"))
        .unwrap()
        .to_f64_vec();
    let right = top(&got)
        .iter()
        .zip(&labels)
        .filter(|(p, l)| **p as f64 == **l)
        .count();
    let stated = report["model_totals"]["accuracy"]["after"]
        .as_f64()
        .unwrap();
    assert!(
        (right as f64 / 1000.0 - stated).abs() < 1e-9,
        "{recipe}: the executable gets {right} of 1000 right, the report says {stated}"
    );
}

/// A model whose height and width are free (`f32[N,1,h,w]`, like a text recognizer's).
const FREE_SIZES: &str = r#"graph "free" {
  input %x: f32[N,1,h,w]
  const %w1: f32[4,1,3,3] = seeded(1)
  const %b1: f32[4] = seeded(2)
  const %w2: f32[3,4] = seeded(3)
  const %b2: f32[3] = seeded(4)
  node /conv1/Conv = Conv(%x, %w1, %b1) {kernel_shape=[3, 3], pads=[1, 1, 1, 1]} -> %c1: f32[N,4,?,?]
  node /relu/Relu = Relu(%c1) -> %r1: f32[N,4,?,?]
  node /gap/GlobalAveragePool = GlobalAveragePool(%r1) -> %p1: f32[N,4,1,1]
  node /flatten/Flatten = Flatten(%p1) -> %f1: f32[N,4]
  node /fc/Gemm = Gemm(%f1, %w2, %b2) {transB=1} -> %y: f32[N,3]
  output %y
}"#;

/// Writes `shape`'s worth of seeded floats to `path`.
fn write_npy(path: &Path, shape: &[usize], seed: u64) {
    let n: usize = shape.iter().product();
    let data = (0..n as u64)
        .flat_map(|i| {
            let h = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed.wrapping_mul(0xbf58_476d);
            (((h >> 40) as f32) / (1u64 << 24) as f32 * 2.0 - 1.0).to_le_bytes()
        })
        .collect();
    mcc_runtime::npy::NpyArray {
        dtype: mcc_runtime::npy::NpyType::F32,
        shape: shape.to_vec(),
        data,
    }
    .write(path)
    .unwrap();
}

/// `mcc build` of the free-size model with `args`, in `d`; the output folder.
fn build_free(d: &Path, out: &str, args: &[&str]) -> PathBuf {
    std::fs::write(d.join("free.mcir"), FREE_SIZES).unwrap();
    write_npy(&d.join("cal.npy"), &[16, 1, 12, 20], 1);
    std::fs::write(
        d.join("r.mcr"),
        "calibrate with \"cal.npy\"\nstage s {\n  prune unstructured on Gemm { amount: 50% }\n}\n",
    )
    .unwrap();
    let b = Command::new(env!("CARGO_BIN_EXE_mcc"))
        .current_dir(d)
        .env("NO_COLOR", "1")
        .args(["build", "r.mcr", "free.mcir", "-o", out])
        .args(args)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    d.join(out)
}

/// Runs the executable `exe` on `x`: (exit status success, its output array, stderr).
fn run_exe(exe: &Path, x: &Path) -> (bool, Option<Vec<f32>>, String) {
    let y = x.with_extension("out.npy");
    let _ = std::fs::remove_file(&y);
    let r = Command::new(exe).arg(x).arg("-o").arg(&y).output().unwrap();
    let out = r.status.success().then(|| npy_f32(&y).1);
    (
        r.status.success(),
        out,
        String::from_utf8_lossy(&r.stderr).into(),
    )
}

/// The reference evaluator's output of the built model on `x`.
fn evaluated(d: &Path, model: &Path, x: &Path) -> Vec<f32> {
    let y = d.join("ref.npy");
    let r = Command::new(env!("CARGO_BIN_EXE_mcc"))
        .args(["run", "-q"])
        .arg(model)
        .arg("-i")
        .arg(x)
        .arg("-o")
        .arg(&y)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    npy_f32(&y).1
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        // NaN fails this comparison.
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{got:?} vs {want:?}"
        );
    }
}

#[test]
fn a_model_with_free_sizes_is_compiled_for_its_calibration_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = build_free(d, "out", &[]);
    write_npy(&d.join("a.npy"), &[2, 1, 12, 20], 7);
    write_npy(&d.join("b.npy"), &[3, 1, 8, 8], 8);
    let (ok, y, err) = run_exe(&out.join("free"), &d.join("a.npy"));
    assert!(ok, "{err}");
    assert_close(
        &y.unwrap(),
        &evaluated(d, &out.join("model.onnx"), &d.join("a.npy")),
    );
    let (ok, _, err) = run_exe(&out.join("free"), &d.join("b.npy"));
    assert!(!ok);
    assert!(
        err.contains("does not fit input `x` [batch, 1, 12, 20]"),
        "{err}"
    );
    // Measured on compiled code, not the evaluator.
    let report = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(report.contains("\"engine\": \"compiled\""), "{report}");
    assert!(
        report.contains(
            "\"input_sizes\": [\n      [\n        [\n          1,\n          12,\n          20"
        ),
        "{report}"
    );
}

/// `mcc bench --report` times a model with free sizes at the size the build compiled, and,
/// for a build without native code, at its data's.
#[test]
fn bench_report_times_free_sizes_at_the_built_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (out, args) in [("out", &[][..]), ("plain", &["--no-native"][..])] {
        build_free(d, out, args);
        let b = Command::new(env!("CARGO_BIN_EXE_mcc"))
            .current_dir(d)
            .args(["bench", "--report", out, "--runs", "2"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&b.stdout);
        assert!(
            b.status.success() && text.contains("input size 1×12×20"),
            "{out}: {text}{}",
            String::from_utf8_lossy(&b.stderr)
        );
    }
}

/// From C: the header's `NAME_new_size` loads each compiled size (NULL past the last) and
/// `NAME_run` runs each at its own size; prints the outputs.
const SIZES_FROM_C: &str = r#"
#include <stdio.h>
#include "free.h"

static int one(int size, int h, int w, const float *x) {
    free_model *m = free_new_size(size, 1);
    if (!m) { printf("free_new_size(%d) failed\n", size); return 1; }
    const float *in[1] = {x};
    float y[3];
    float *out[1] = {y};
    if (free_run(m, in, out, 1) != 0) { printf("run failed\n"); return 1; }
    printf("%d %.9g %.9g %.9g\n", h * w, y[0], y[1], y[2]);
    free_free(m);
    return 0;
}

int main(void) {
    static float x[12 * 20];
    for (int i = 0; i < 12 * 20; i++) x[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    if (FREE_SIZES != 2 || FREE_S0_INPUT0_FLOATS_PER_SAMPLE != 240
        || FREE_S1_INPUT0_FLOATS_PER_SAMPLE != 64) {
        printf("wrong size macros\n");
        return 1;
    }
    if (free_new_size(2, 1) != NULL || free_new_size(-1, 1) != NULL) {
        printf("a size past the last loaded\n");
        return 1;
    }
    return one(0, 12, 20, x) || one(1, 8, 8, x);
}
"#;

#[test]
fn several_input_shapes_make_one_executable_and_object_for_each_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = build_free(
        d,
        "out",
        &["--input-shape", "1x1x12x20", "--input-shape", "1x1x8x8"],
    );
    write_npy(&d.join("a.npy"), &[2, 1, 12, 20], 7);
    write_npy(&d.join("b.npy"), &[3, 1, 8, 8], 8);
    write_npy(&d.join("c.npy"), &[1, 1, 9, 9], 9);
    for x in ["a.npy", "b.npy"] {
        let (ok, y, err) = run_exe(&out.join("free"), &d.join(x));
        assert!(ok, "{x}: {err}");
        assert_close(
            &y.unwrap(),
            &evaluated(d, &out.join("model.onnx"), &d.join(x)),
        );
    }
    let (ok, _, err) = run_exe(&out.join("free"), &d.join("c.npy"));
    assert!(!ok);
    assert!(
        err.contains("none of the sizes this executable was compiled for")
            && err.contains("batch×1×12×20")
            && err.contains("batch×1×8×8"),
        "{err}"
    );
    // A shape the model cannot take is a diagnostic naming the axis, and writes nothing.
    let b = Command::new(env!("CARGO_BIN_EXE_mcc"))
        .current_dir(d)
        .env("NO_COLOR", "1")
        .args([
            "build",
            "r.mcr",
            "free.mcir",
            "-o",
            "bad",
            "--input-shape",
            "1x2x8x8",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(
        !b.status.success() && err.contains("axis 1 is 1 in the model, not 2"),
        "{err}"
    );
    assert!(!d.join("bad").exists());
    // The C interface: each size from its own loader, one run function.
    std::fs::write(d.join("main.c"), SIZES_FROM_C).unwrap();
    common::link_c(&out, "free", &d.join("main.c"), &d.join("main"));
    let run = Command::new(d.join("main")).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("240 ") && lines[1].starts_with("64 "),
        "{stdout}"
    );
    for l in lines {
        assert!(
            l.split(' ')
                .skip(1)
                .all(|v| v.parse::<f32>().is_ok_and(f32::is_finite)),
            "{l}"
        );
    }
}
