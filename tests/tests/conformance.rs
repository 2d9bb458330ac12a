//! ONNX's own node conformance tests (`../shared/onnx-node`): every test is imported,
//! canonicalized and evaluated, and its outputs compared with the expected ones
//! (rtol 1e-3, atol 1e-7, as ONNX's harness does; integers and bools exactly).
//!
//! The per-operator table (passed / failed / unsupported, with reasons) is an insta
//! snapshot, so any change in coverage shows up in review. Every operator used by the
//! corpus must pass all of its tests except the out-of-scope cases listed below; a panic
//! in any test fails the suite.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::BTreeMap;
use std::fmt::Write;
use std::io::Write as _;
use std::path::Path;

use mcc_tests::{compare, corpus, shared};

/// Tests of corpus operators that are out of scope for an inference compiler, and why.
const OUT_OF_SCOPE: &[(&str, &str)] = &[
    (
        "test_batchnorm_epsilon_training_mode",
        "training-mode BatchNormalization updates running statistics; mcc compiles trained models for inference",
    ),
    (
        "test_batchnorm_example_training_mode",
        "training-mode BatchNormalization updates running statistics; mcc compiles trained models for inference",
    ),
    (
        "test_training_dropout",
        "training-mode Dropout draws random masks",
    ),
    (
        "test_training_dropout_default",
        "training-mode Dropout draws random masks",
    ),
    (
        "test_training_dropout_default_mask",
        "training-mode Dropout draws random masks",
    ),
    (
        "test_training_dropout_mask",
        "training-mode Dropout draws random masks",
    ),
];

/// The operator a test is about, from its name (longest known prefix).
fn operator_of(test: &str) -> String {
    const PREFIXES: &[(&str, &str)] = &[
        ("abs", "Abs"),
        ("add", "Add"),
        ("averagepool", "AveragePool"),
        ("basic_conv", "Conv"),
        ("batchnorm", "BatchNormalization"),
        ("cast", "Cast"),
        ("castlike", "CastLike"),
        ("causal_conv", "CausalConvWithState"),
        ("center_crop_pad", "CenterCropPad"),
        ("clip", "Clip"),
        ("concat", "Concat"),
        ("constant", "Constant"),
        ("constant_pad", "Pad"),
        ("constantofshape", "ConstantOfShape"),
        ("conv_with", "Conv"),
        ("convinteger", "ConvInteger"),
        ("convtranspose", "ConvTranspose"),
        ("depthtospace", "DepthToSpace"),
        ("dequantizelinear", "DequantizeLinear"),
        ("div", "Div"),
        ("dropout", "Dropout"),
        ("edge_pad", "Pad"),
        ("einsum", "Einsum"),
        ("elu", "Elu"),
        ("equal", "Equal"),
        ("erf", "Erf"),
        ("exp", "Exp"),
        ("expand", "Expand"),
        ("flatten", "Flatten"),
        ("flexattention", "FlexAttention"),
        ("gather", "Gather"),
        ("gelu", "Gelu"),
        ("gemm", "Gemm"),
        ("globalaveragepool", "GlobalAveragePool"),
        ("globalmaxpool", "GlobalMaxPool"),
        ("group_normalization", "GroupNormalization"),
        ("hardsigmoid", "HardSigmoid"),
        ("hardswish", "HardSwish"),
        ("identity", "Identity"),
        ("instancenorm", "InstanceNormalization"),
        ("layer_normalization", "LayerNormalization"),
        ("leakyrelu", "LeakyRelu"),
        ("log", "Log"),
        ("logsoftmax", "LogSoftmax"),
        ("lrn", "LRN"),
        ("matmul", "MatMul"),
        ("matmulinteger", "MatMulInteger"),
        ("max", "Max"),
        ("maxpool", "MaxPool"),
        ("mean", "Mean"),
        ("min", "Min"),
        ("mish", "Mish"),
        ("mul", "Mul"),
        ("mvn", "MeanVarianceNormalization"),
        ("neg", "Neg"),
        ("pow", "Pow"),
        ("prelu", "PRelu"),
        ("qlinearconv", "QLinearConv"),
        ("qlinearmatmul", "QLinearMatMul"),
        ("quantizelinear", "QuantizeLinear"),
        ("range", "Range"),
        ("reduce_l1", "ReduceL1"),
        ("reduce_log_sum", "ReduceLogSum"),
        ("reduce_max", "ReduceMax"),
        ("reduce_mean", "ReduceMean"),
        ("reduce_sum", "ReduceSum"),
        ("reduce_sum_square", "ReduceSumSquare"),
        ("reflect_pad", "Pad"),
        ("relu", "Relu"),
        ("reshape", "Reshape"),
        ("resize", "Resize"),
        ("rotary_embedding", "RotaryEmbedding"),
        ("selu", "Selu"),
        ("shape", "Shape"),
        ("sigmoid", "Sigmoid"),
        ("slice", "Slice"),
        ("softmax", "Softmax"),
        ("softplus", "Softplus"),
        ("spacetodepth", "SpaceToDepth"),
        ("split", "Split"),
        ("sqrt", "Sqrt"),
        ("squeeze", "Squeeze"),
        ("sub", "Sub"),
        ("sum", "Sum"),
        ("tanh", "Tanh"),
        ("tile", "Tile"),
        ("training_dropout", "Dropout"),
        ("transpose", "Transpose"),
        ("unsqueeze", "Unsqueeze"),
        ("upsample", "Upsample"),
        ("where", "Where"),
        ("wrap_pad", "Pad"),
    ];
    let name = test.trim_start_matches("test_");
    PREFIXES
        .iter()
        .filter(|(p, _)| name == *p || name.starts_with(&format!("{p}_")))
        .max_by_key(|(p, _)| p.len())
        .map_or_else(|| format!("?{name}"), |(_, op)| (*op).to_string())
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Pass,
    Fail(String),
    Unsupported(String),
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(160).collect()
}

fn run_one(dir: &Path) -> Outcome {
    let model = dir.join("model.onnx");
    let mut graph = match mcc_onnx::import(&model) {
        Ok(m) => m.graph,
        // Name the file relative to the test folder, so the table is the same on every machine.
        Err(e) => {
            return Outcome::Unsupported(first_line(
                &e.to_string()
                    .replace(&model.display().to_string(), "model.onnx"),
            ));
        }
    };
    if let Err(e) = mcc_passes::canonicalize(&mut graph) {
        return Outcome::Unsupported(first_line(&e.to_string()));
    }
    let data = dir.join("test_data_set_0");
    let read = |prefix: &str, n: usize| -> Result<Vec<mcc_ir::Tensor>, String> {
        (0..n)
            .map(|i| {
                let p = data.join(format!("{prefix}_{i}.pb"));
                let bytes = std::fs::read(&p).map_err(|e| e.to_string())?;
                mcc_onnx::tensor_from_bytes(&bytes, &format!("{prefix}_{i}"))
                    .map_err(|e| first_line(&e.to_string()))
            })
            .collect()
    };
    let n_in = std::fs::read_dir(&data)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("input_"))
            })
            .count()
        })
        .unwrap_or(0);
    let n_out = graph.outputs().len();
    // Graph inputs may have been folded away only if constant; inputs stay inputs, so the
    // counts match unless the test feeds fewer inputs (optional ones).
    let inputs = match read("input", n_in) {
        Ok(v) => v,
        Err(e) => return Outcome::Unsupported(e),
    };
    let expected = match read("output", n_out) {
        Ok(v) => v,
        Err(e) => return Outcome::Unsupported(e),
    };
    let got = match mcc_ir::run(&graph, &inputs) {
        Ok(v) => v,
        Err(mcc_ir::EvalError::Op {
            source: mcc_ir::OpError::Unsupported(m),
            node,
            ..
        }) => return Outcome::Unsupported(format!("node `{node}`: {m}")),
        Err(e) => return Outcome::Fail(first_line(&e.to_string())),
    };
    for (i, (g, w)) in got.iter().zip(&expected).enumerate() {
        if g.dtype() != w.dtype() || g.shape() != w.shape() {
            return Outcome::Fail(format!(
                "output {i}: got {}{:?}, expected {}{:?}",
                g.dtype(),
                g.shape(),
                w.dtype(),
                w.shape()
            ));
        }
        let (rtol, atol) = if w.dtype().is_float() {
            (1e-3, 1e-7)
        } else {
            (0.0, 0.0)
        };
        let d = compare(g, w, rtol, atol);
        if !d.allclose {
            return Outcome::Fail(format!("output {i}: max abs error {:.3e}", d.max_abs));
        }
    }
    Outcome::Pass
}

#[test]
fn onnx_node_conformance() {
    // The node tests live beside the repository, not in it (20 MB): without them this suite
    // cannot run. `scripts/test` says so in its summary; CI (MCC_REQUIRE_SHARED=1) fails.
    let Some(shared) = shared() else {
        assert!(
            std::env::var_os("MCC_REQUIRE_SHARED").is_none(),
            "MCC_REQUIRE_SHARED is set but ../shared is missing: the ONNX node conformance suite cannot run"
        );
        // Past the harness's capture, so every run's log (and scripts/test's summary) shows it.
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: the ONNX node conformance suite (it needs ../shared/onnx-node beside the repository)"
        );
        return;
    };
    let root = shared.join("onnx-node");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() > 700,
        "expected the 711 ONNX node tests under {}",
        root.display()
    );
    let corpus_ops: Vec<String> = std::fs::read_to_string(corpus("ops.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split('\t').next().map(str::to_string))
        .collect();
    // op -> (pass, fail, unsupported, notes)
    let mut table: BTreeMap<String, (usize, usize, usize, Vec<String>)> = BTreeMap::new();
    let mut problems = vec![];
    for dir in &dirs {
        let test = dir.file_name().unwrap().to_string_lossy().to_string();
        let op = operator_of(&test);
        let outcome = std::panic::catch_unwind(|| run_one(dir))
            .unwrap_or_else(|_| Outcome::Fail("CRASH: the runner panicked".into()));
        let row = table.entry(op.clone()).or_default();
        let scope = OUT_OF_SCOPE
            .iter()
            .find(|(t, _)| *t == test)
            .map(|(_, why)| *why);
        match (&outcome, scope) {
            (Outcome::Pass, _) => row.0 += 1,
            (Outcome::Fail(m), _) => {
                row.1 += 1;
                row.3.push(format!("{test}: FAILED: {m}"));
            }
            (Outcome::Unsupported(_), Some(why)) => {
                row.2 += 1;
                row.3.push(format!("{test}: out of scope: {why}"));
            }
            (Outcome::Unsupported(m), None) => {
                row.2 += 1;
                row.3.push(format!("{test}: unsupported: {m}"));
            }
        }
        let must_pass = corpus_ops.contains(&op) && scope.is_none();
        if must_pass && outcome != Outcome::Pass
            || matches!(&outcome, Outcome::Fail(m) if m.starts_with("CRASH"))
        {
            problems.push(format!("{test} ({op}): {outcome:?}"));
        }
    }
    let (mut p, mut f, mut u) = (0, 0, 0);
    let mut md = String::from(
        "| operator | corpus | passed | failed | unsupported |\n|---|---|---|---|---|\n",
    );
    for (op, (a, b, c, _)) in &table {
        let _ = writeln!(
            md,
            "| {op} | {} | {a} | {b} | {c} |",
            if corpus_ops.contains(op) { "yes" } else { "" }
        );
        p += a;
        f += b;
        u += c;
    }
    let _ = writeln!(
        md,
        "\n{p} passed, {f} failed, {u} unsupported (of {} tests)\n\nNot passing:\n",
        dirs.len()
    );
    for (op, (_, _, _, notes)) in &table {
        for n in notes {
            let _ = writeln!(md, "- [{op}] {n}");
        }
    }
    std::fs::write(mcc_tests::workspace().join("target/conformance.md"), &md).ok();
    println!(
        "{p} passed, {f} failed, {u} unsupported (of {} tests)",
        dirs.len()
    );
    insta::assert_snapshot!("conformance_table", md);
    assert!(
        problems.is_empty(),
        "corpus operators must pass all their node tests:\n{}",
        problems.join("\n")
    );
    assert_eq!(f, 0, "some node tests fail (see target/conformance.md)");
}
