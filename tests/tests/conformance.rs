//! ONNX's own node conformance tests (`../shared/onnx-node`): every test is imported,
//! canonicalized and evaluated, and its outputs compared with the expected ones
//! (rtol 1e-3, atol 1e-7, as ONNX's harness does; integers and bools exactly).
//!
//! Every test the evaluator passes is also compiled natively where the lowering takes it —
//! the first axis as the batch, the inputs that are not f32 data (shapes, indices, axes) as
//! constants, or failing that every input but the first (weights fed as inputs) — and run
//! by the runtime's interpreter and the JIT (bit for bit the same), its outputs compared with
//! the evaluator's (rtol 1e-4, atol 1e-6 of the output's scale). A lowering error counts as
//! "no kernel" (its reason in `target/conformance.md`); a wrong native result fails.
//!
//! The per-operator table (passed / failed / unsupported, with reasons, and natively
//! passed / no kernel) is an insta snapshot, so any change in coverage shows up in review.
//! Every operator used by the corpus must pass all of its tests except the out-of-scope
//! cases listed below; a panic in any test fails the suite.

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

/// How a test the evaluator passes fares compiled natively.
#[derive(Debug, Clone, PartialEq)]
enum Native {
    /// Computes the evaluator's outputs.
    Pass,
    /// The lowering (or the merges before it) does not take it: why.
    NoKernel(String),
    /// It lowers but computes something else (or the runtime refuses its program).
    Fail(String),
}

/// Which inputs (by position and test tensor) a native form makes constants.
type Consts<'a> = &'a dyn Fn(usize, &mcc_ir::Tensor) -> bool;

/// Lowers `graph` with `consts` of its inputs made constants (the rest fed `inputs` at run
/// time) and runs it natively; compares with `want`. `Err` is a reason for "no kernel".
fn native_form(
    graph: &mcc_ir::Graph,
    inputs: &[mcc_ir::Tensor],
    want: &[mcc_ir::Tensor],
    consts: Consts<'_>,
) -> Result<Result<(), String>, String> {
    let mut g = graph.clone();
    let mut fed = vec![];
    for (i, (&v, t)) in graph.inputs().iter().zip(inputs).enumerate() {
        if consts(i, t) {
            g.input_to_const(v, t.clone());
        } else if t.dtype() != mcc_ir::DType::F32 {
            return Err(format!("input {i} is {} data", t.dtype().name()));
        } else {
            fed.push(t.as_f32().map(|a| a.iter().copied().collect::<Vec<f32>>()));
        }
    }
    let fed: Vec<Vec<f32>> = fed.into_iter().collect::<Option<_>>().ok_or("an input")?;
    if fed.is_empty() {
        return Err("no input left to feed".into());
    }
    if want.iter().any(|w| w.dtype() != mcc_ir::DType::F32) {
        return Err("an output is not f32".into());
    }
    mcc_passes::merge_everything(&mut g)
        .map_err(|e| format!("merge: {}", first_line(&e.to_string())))?;
    let p = mcc_codegen::lower(&g).map_err(|e| first_line(&e.to_string()))?;
    let refs: Vec<&[f32]> = fed.iter().map(Vec::as_slice).collect();
    let run = || -> Result<(), String> {
        let mut r = mcc_runtime::exec::Runner::new(&p, 1)?;
        r.set_poison(true);
        let interpreted = r.run(&refs)?;
        let compiled = mcc_codegen::jit::Jit::new(p.clone(), 1)?.run(&refs)?;
        if interpreted.len() != want.len() {
            return Err(format!(
                "{} outputs, {} expected",
                interpreted.len(),
                want.len()
            ));
        }
        for (o, ((i, c), w)) in interpreted.iter().zip(&compiled).zip(want).enumerate() {
            if i.len() != c.len() || i.iter().zip(c).any(|(a, b)| a.to_bits() != b.to_bits()) {
                return Err(format!("output {o}: the JIT and the interpreter disagree"));
            }
            let w = w.to_f64_vec();
            let scale = w
                .iter()
                .filter(|v| v.is_finite())
                .fold(1f64, |m, v| m.max(v.abs()));
            let d = mcc_runtime::testing::diff(i, &w, 1e-4, 1e-6 * scale);
            if !d.allclose {
                return Err(format!(
                    "output {o}: max abs error {:.3e} (element {}: {} vs {})",
                    d.max_abs,
                    d.worst,
                    i.get(d.worst).copied().unwrap_or(f32::NAN),
                    w.get(d.worst).copied().unwrap_or(f64::NAN)
                ));
            }
        }
        Ok(())
    };
    Ok(run())
}

/// The test compiled natively (see the module doc): first with the inputs that are not f32
/// made constants, then, if that does not lower, with every input but the first f32 one.
fn native(graph: &mcc_ir::Graph, inputs: &[mcc_ir::Tensor], want: &[mcc_ir::Tensor]) -> Native {
    if inputs.len() != graph.inputs().len() {
        return Native::NoKernel("the test feeds fewer inputs than the graph has".into());
    }
    let data = inputs.iter().position(|t| t.dtype() == mcc_ir::DType::F32);
    let forms: [Consts<'_>; 2] = [&|_, t| t.dtype() != mcc_ir::DType::F32, &|i, _| {
        Some(i) != data
    }];
    let mut why = String::new();
    for (f, consts) in forms.iter().enumerate() {
        if f == 1
            && inputs
                .iter()
                .enumerate()
                .all(|(i, t)| consts(i, t) == forms[0](i, t))
        {
            break; // The same form again.
        }
        match native_form(graph, inputs, want, consts) {
            Ok(Ok(())) => return Native::Pass,
            Ok(Err(e)) => return Native::Fail(e),
            Err(e) => why = e,
        }
    }
    Native::NoKernel(why)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(160).collect()
}

fn run_one(dir: &Path) -> (Outcome, Option<Native>) {
    let mut native_outcome = None;
    let outcome = evaluate(dir, &mut native_outcome);
    (outcome, native_outcome)
}

/// The evaluator's outcome; when it passes, `native` is set to the native outcome.
fn evaluate(dir: &Path, native_outcome: &mut Option<Native>) -> Outcome {
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
    *native_outcome = Some(
        std::panic::catch_unwind(|| native(&graph, &inputs, &got))
            .unwrap_or_else(|_| Native::Fail("CRASH: the native run panicked".into())),
    );
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
    // op -> (natively passed, no kernel, native failures, why no kernel)
    let mut natively: BTreeMap<String, (usize, usize, Vec<String>, Vec<String>)> = BTreeMap::new();
    let mut problems = vec![];
    for dir in &dirs {
        let test = dir.file_name().unwrap().to_string_lossy().to_string();
        let op = operator_of(&test);
        let (outcome, native_outcome) = std::panic::catch_unwind(|| run_one(dir))
            .unwrap_or_else(|_| (Outcome::Fail("CRASH: the runner panicked".into()), None));
        let nrow = natively.entry(op.clone()).or_default();
        match native_outcome {
            Some(Native::Pass) => nrow.0 += 1,
            Some(Native::NoKernel(why)) => {
                nrow.1 += 1;
                nrow.3.push(format!("{test}: {why}"));
            }
            Some(Native::Fail(e)) => nrow.2.push(format!("{test}: NATIVE FAILED: {e}")),
            None => {}
        }
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
    let (mut p, mut f, mut u, mut np, mut nk) = (0, 0, 0, 0, 0);
    let mut md = String::from(
        "| operator | corpus | passed | failed | unsupported | native | no kernel |\n|---|---|---|---|---|---|---|\n",
    );
    let mut native_failures = vec![];
    for (op, (a, b, c, _)) in &table {
        let (d, e, fails, _) = &natively[op];
        let _ = writeln!(
            md,
            "| {op} | {} | {a} | {b} | {c} | {d} | {e} |",
            if corpus_ops.contains(op) { "yes" } else { "" }
        );
        p += a;
        f += b;
        u += c;
        np += d;
        nk += e;
        native_failures.extend(fails.iter().map(|n| format!("- [{op}] {n}")));
    }
    let _ = writeln!(
        md,
        "\n{p} passed, {f} failed, {u} unsupported (of {} tests); natively {np} passed, {nk} no kernel\n\nNot passing:\n",
        dirs.len()
    );
    for (op, (_, _, _, notes)) in &table {
        for n in notes {
            let _ = writeln!(md, "- [{op}] {n}");
        }
    }
    for n in &native_failures {
        let _ = writeln!(md, "{n}");
    }
    // Why each test has no native kernel: in the file only (a long list that changes with
    // every lowering message).
    let mut full = md.clone();
    let _ = writeln!(full, "\nNo native kernel:\n");
    for (op, (_, _, _, why)) in &natively {
        for n in why {
            let _ = writeln!(full, "- [{op}] {n}");
        }
    }
    std::fs::write(mcc_tests::workspace().join("target/conformance.md"), &full).ok();
    println!(
        "{p} passed, {f} failed, {u} unsupported (of {} tests); natively {np} passed, {nk} no kernel",
        dirs.len()
    );
    insta::assert_snapshot!("conformance_table", md);
    assert!(
        problems.is_empty(),
        "corpus operators must pass all their node tests:\n{}",
        problems.join("\n")
    );
    assert_eq!(f, 0, "some node tests fail (see target/conformance.md)");
    assert!(
        native_failures.is_empty(),
        "compiled natively, some node tests compute wrong outputs:\n{}",
        native_failures.join("\n")
    );
}
