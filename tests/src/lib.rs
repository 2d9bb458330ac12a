//! Shared helpers for mcc's integration suites: where the corpus is, loading models and
//! arrays, comparing tensors, and running ONNX Runtime for cross-checks.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod light_random;

use mcc_ir::{Graph, Tensor};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `../shared` beside the workspace, where the optional heavy suites find their data (the
/// ONNX node conformance tests); `None` on a clone with nothing beside it. The suites that
/// use it say once, loudly, what they did not run.
pub fn shared() -> Option<PathBuf> {
    let p = workspace().join("../shared");
    p.join("onnx-node").is_dir().then_some(p)
}

/// A path inside the repository's `corpus/` (the trained MNIST models, their data and ONNX
/// Runtime references, and the light models: everything the regular suites need).
pub fn corpus(rel: &str) -> PathBuf {
    workspace().join("corpus").join(rel)
}

/// The Python interpreter with numpy and onnxruntime: `$MCC_PYTHON` (set by
/// `scripts/test`, which makes a virtual environment with them), else `python3`.
pub fn python() -> Command {
    Command::new(std::env::var_os("MCC_PYTHON").unwrap_or_else(|| "python3".into()))
}

/// The six trained MNIST models, with the input file each takes.
pub const TRAINED: &[(&str, &str)] = &[
    ("lenet300", "data/mnist_test_x784.npy"),
    ("lenet5", "data/mnist_test_x.npy"),
    ("vgg_bn", "data/mnist_test_x.npy"),
    ("resnet_bn", "data/mnist_test_x.npy"),
    ("mobilenet_dw", "data/mnist_test_x.npy"),
    ("inception_mini", "data/mnist_test_x.npy"),
];

/// The trained transformer (`vit_mini`, MNIST like the others), with its input file: its
/// attention multiplies two activations, its shape arithmetic depends on the batch. The
/// suites of convolutional techniques (int8 convolutions, merges of BatchNormalization)
/// iterate [`TRAINED`]; the evaluator, native code and export suites [`every_trained`].
pub const TRANSFORMERS: &[(&str, &str)] = &[("vit_mini", "data/mnist_test_x.npy")];

/// Models from PyTorch's newer exporter (`torch.onnx.export(dynamo=True)`: opset 18, weights
/// in an external `.onnx.data` file, BatchNormalization already folded, pooling as
/// ReduceMean, the class token's batch from `Shape`).
pub const DYNAMO: &[(&str, &str)] = &[
    ("vit_mini_dynamo", "data/mnist_test_x.npy"),
    ("resnet_bn_dynamo", "data/mnist_test_x.npy"),
];

/// [`TRAINED`], [`TRANSFORMERS`] and [`DYNAMO`]: every trained corpus model.
pub fn every_trained() -> impl Iterator<Item = &'static (&'static str, &'static str)> {
    TRAINED.iter().chain(TRANSFORMERS).chain(DYNAMO)
}

/// The nine light ImageNet-architecture models (file stem after `light_`).
pub const LIGHT: &[&str] = &[
    "bvlc_alexnet",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
];

/// Every corpus model file.
pub fn all_models() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = every_trained()
        .map(|(m, _)| corpus(&format!("{m}.onnx")))
        .collect();
    v.extend(
        LIGHT
            .iter()
            .map(|m| corpus(&format!("light/light_{m}.onnx"))),
    );
    v
}

/// Reads an `.npy` file as a tensor.
pub fn npy(path: &Path) -> Tensor {
    mcc::tensor_io::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads and canonicalizes a model.
pub fn load(path: &Path) -> Graph {
    mcc::load(path)
        .unwrap_or_else(|e| panic!("{}: {:?}", path.display(), miette::Report::new(e)))
        .graph
}

pub use mcc_runtime::testing::Diff;

/// Compares `got` with `want` under numpy's `allclose(rtol, atol)`, with the one comparison
/// every numeric test uses ([`mcc_runtime::testing::diff`]: NaN or infinity where the
/// reference has a number is an infinite error, never a skipped element).
pub fn compare(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Diff {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    mcc_runtime::testing::diff(&got.to_f64_vec(), &want.to_f64_vec(), rtol, atol)
}

/// Whether the user opted out of ONNX Runtime cross-checks (`MCC_SKIP_ORT=1`). Tests that
/// honour it say so on stderr; without it, a missing onnxruntime is a test failure.
pub fn skip_ort() -> bool {
    let skip = std::env::var("MCC_SKIP_ORT").is_ok_and(|v| v == "1");
    if skip {
        // Past the harness's capture: a skipped check must show in every run's log.
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: an ONNX Runtime cross-check (MCC_SKIP_ORT=1)"
        );
    }
    skip
}

/// Whether `tests/ort_run.py` runs quantized models unfused on this machine: an x86-64 CPU
/// with AVX2 but no VNNI, where ORT's fused u8 × s8 kernels saturate (the same rule as the
/// script's `saturating_int8_kernels`). Unfused, ORT computes each layer in f32, which
/// rounds a product's sum differently now and then, and a transformer's float layers between
/// its integer ones carry such a flipped code on.
pub fn ort_int8_unfused() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return false;
    };
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    flags.contains(&"avx2") && !flags.contains(&"avx512_vnni") && !flags.contains(&"avx_vnni")
}

/// Runs a model in ONNX Runtime (Python) on `.npy` inputs and returns its first output.
pub fn run_ort(model: &Path, inputs: &[PathBuf], dir: &Path) -> Tensor {
    let out = dir.join("ort_out.npy");
    let script = workspace().join("tests/ort_run.py");
    let mut cmd = python();
    cmd.arg(&script).arg(model).arg(&out).args(inputs);
    let res = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start python3 for the ONNX Runtime check: {e}"));
    assert!(
        res.status.success(),
        "ONNX Runtime failed on {} (run the tests with `scripts/test`, which installs it; or set MCC_SKIP_ORT=1 to skip):\n{}",
        model.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    npy(&out)
}

/// The ```mcr blocks of a Markdown text: (the info after `mcr`, e.g. `planned`; the body with
/// a final newline), in order.
pub fn mcr_blocks(md: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut lines = md.lines();
    while let Some(l) = lines.next() {
        if let Some(info) = l.strip_prefix("```mcr") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            out.push((info.trim().to_string(), body.join("\n") + "\n"));
        }
    }
    out
}
