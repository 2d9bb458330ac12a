//! int8 models end to end: `std.int8` on every trained CNN builds a model whose compiled code
//! (interpreted schedule and Cranelift JIT, 1 and 2 threads) gives the reference evaluator's
//! outputs bit for bit, and whose QDQ export ONNX Runtime runs to the same outputs within one
//! output quantization step, with at least 99.5% of top-1 predictions agreeing. (The kernels'
//! three paths — VNNI, AVX2, portable — are checked against each other bit for bit on random
//! shapes in `runtime/src/kernels/int8.rs`.)

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::Path;

use mcc_ir::{Graph, Op, Tensor};
use mcc_tests::{TRAINED, corpus, npy, skip_ort};

/// Builds `std.int8` (with `calibration`) on corpus model `m`.
fn build(m: &str, calibration: &str, dir: &Path) -> Graph {
    let recipe = dir.join(format!("{m}-{calibration}.mcr"));
    let calib = if m == "lenet300" {
        "data/mnist_calib_x784.npy"
    } else {
        "data/mnist_calib_x.npy"
    };
    let text = format!(
        "calibrate with {:?}\nuse std.int8(calibration: {calibration})\n",
        corpus(calib).display().to_string()
    );
    build_recipe(m, &recipe, &text)
}

/// Builds the recipe `text` (written at `recipe`) on corpus model `m`.
fn build_recipe(m: &str, recipe: &Path, text: &str) -> Graph {
    std::fs::write(recipe, text).unwrap();
    let s = mcc::recipe::check(recipe, &corpus(&format!("{m}.onnx"))).unwrap();
    assert!(!s.checked.has_errors(), "{m}: {:#?}", s.checked.diags);
    let b = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    mcc_ir::verify(&b.graph).unwrap();
    b.graph
}

/// The number of nodes whose op `is`.
fn count(g: &Graph, is: impl Fn(&Op) -> bool) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&n| g.node(n).is_some_and(|x| is(&x.op)))
        .count()
}

/// The number of integer layers.
fn integer_layers(g: &Graph) -> usize {
    count(g, |op| {
        matches!(op, Op::QLinearConv(_) | Op::QLinearMatMul(_))
    })
}

fn first_rows(x: &Tensor, n: usize) -> Tensor {
    let a = x.as_f32().unwrap();
    let mut shape = a.shape().to_vec();
    shape[0] = n.min(shape[0]);
    let data: Vec<f32> = a.iter().copied().take(shape.iter().product()).collect();
    Tensor::from_vec(&shape, data).unwrap()
}

#[test]
fn int8_models_compute_the_evaluators_bits_when_compiled() {
    let dir = tempfile::tempdir().unwrap();
    for (m, input) in TRAINED {
        let g = build(m, "minmax", dir.path());
        let layers = integer_layers(&g);
        assert!(layers >= 2, "{m}: only {layers} integer layers");
        let x = first_rows(&npy(&corpus(input)), 64);
        let want = mcc_ir::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
        let want: Vec<f32> = want.as_f32().unwrap().iter().copied().collect();
        assert!(
            want.iter().all(|v| v.is_finite()),
            "{m}: non-finite outputs"
        );
        let p = mcc::native::program(&g).unwrap();
        let data: Vec<f32> = x.as_f32().unwrap().iter().copied().collect();
        for threads in [1, 2] {
            let mut r = mcc_runtime::exec::Runner::new(&p, threads).unwrap();
            r.set_poison(true);
            let got = r.run(&[&data]).unwrap().remove(0);
            let mut jit = mcc_codegen::jit::Jit::new(p.clone(), threads).unwrap();
            let jitted = jit.run(&[&data]).unwrap().remove(0);
            for (what, out) in [("interpreted", &got), ("compiled", &jitted)] {
                assert_eq!(out.len(), want.len(), "{m}");
                let same = out
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{m} ({what}, {threads} threads): not the evaluator's bits"
                );
            }
        }
        println!("{m}: {layers} integer layers, 64 samples bit for bit on 1 and 2 threads");
    }
}

/// The index of a row's largest value (the first on ties).
fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

/// Rows of `classes` values whose top-1 class agrees between `a` and `b`, and the rows.
fn agreement(a: &[f32], b: &[f32], classes: usize) -> (usize, usize) {
    let rows = a.len() / classes;
    let agree = a
        .chunks(classes)
        .zip(b.chunks(classes))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    (agree, rows)
}

/// The last layer's output scale: one step of the model's (dequantized) outputs.
fn output_step(g: &Graph) -> f32 {
    let out = g.outputs()[0];
    let dq = g.producer(out).and_then(|p| g.node(p)).unwrap();
    assert!(matches!(dq.op, Op::DequantizeLinear(_)), "{}", dq.op.name());
    let s = dq.inputs[1].and_then(|v| g.const_data(v)).unwrap();
    s.as_f32().unwrap().iter().copied().next().unwrap()
}

#[test]
fn int8_exports_run_in_onnx_runtime_within_one_step() {
    if skip_ort() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (m, input) in TRAINED {
        for calibration in ["minmax", "percentile", "entropy", "mse"] {
            // Each calibrator on the smallest and the largest CNN; minmax on all.
            if calibration != "minmax" && !matches!(*m, "lenet5" | "vgg_bn") {
                continue;
            }
            let g = build(m, calibration, dir.path());
            let path = dir.path().join(format!("{m}-{calibration}.onnx"));
            mcc_onnx::export_file(&g, &path).unwrap();
            let x = npy(&corpus(input));
            let want = mcc_ir::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
            let got = mcc_tests::run_ort(&path, &[corpus(input)], dir.path());
            let (w, o) = (want.as_f32().unwrap(), got.as_f32().unwrap());
            assert_eq!(w.shape(), o.shape(), "{m}");
            let step = output_step(&g);
            let worst = w
                .iter()
                .zip(o.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, |acc, d| {
                    if d.is_nan() || acc.is_nan() {
                        f32::NAN
                    } else {
                        acc.max(d)
                    }
                });
            let classes = w.shape()[1];
            let (ws, os) = (w.as_slice().unwrap(), o.as_slice().unwrap());
            let (agree, rows) = agreement(ws, os, classes);
            println!(
                "{m} {calibration}: ORT vs mcc max |Δ| {worst:.3e} ({:.2} steps), top-1 agreement {agree}/{rows}",
                worst / step
            );
            assert!(
                worst <= step * 1.01,
                "{m} {calibration}: {worst} > one step {step}"
            );
            assert!(
                agree * 1000 >= rows * 995,
                "{m} {calibration}: {agree}/{rows} agree"
            );
        }
    }
}

/// The light ImageNet architectures with random weights (the `light_random` suite's) build in
/// int8 — calibrated on the seeded input itself — and their compiled code gives the
/// evaluator's outputs (the integer regions' codes exactly, the f32 layers after them to f32
/// rounding); the outputs stay within the quantization error the README states of the f32
/// model's (relative L2 of the final outputs, printed).
#[test]
fn light_models_run_in_int8() {
    if skip_ort() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = corpus("light/light_input_seed0.npy");
    let x = npy(&input);
    for name in ["squeezenet", "shufflenet", "inception_v1", "resnet50"] {
        let r = mcc_tests::light_random::model(name);
        let recipe = dir.path().join(format!("{name}.mcr"));
        std::fs::write(
            &recipe,
            format!(
                "calibrate with {:?}\nuse std.int8\n",
                input.display().to_string()
            ),
        )
        .unwrap();
        let s = mcc::recipe::check(&recipe, &r.model).unwrap();
        assert!(!s.checked.has_errors(), "{name}: {:#?}", s.checked.diags);
        let b = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        let g = b.graph;
        let layers = integer_layers(&g);
        assert!(layers >= 2, "{name}: only {layers} integer layers");
        let want = mcc_ir::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
        let want: Vec<f32> = want.as_f32().unwrap().iter().copied().collect();
        let p = mcc::native::program(&g).unwrap();
        let data: Vec<f32> = x.as_f32().unwrap().iter().copied().collect();
        let got = mcc_runtime::exec::Runner::new(&p, 2)
            .unwrap()
            .run(&[&data])
            .unwrap()
            .remove(0);
        // The integer regions give the same codes; f32 layers after them (SqueezeNet's
        // global pooling and softmax) round as mcc's f32 kernels do, to f32 accuracy.
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        // NaN anywhere stays NaN (f32::max would skip it) and fails the comparison below.
        let worst = got.iter().zip(&want).fold(0f32, |m, (a, b)| {
            if m.is_nan() || (a - b).is_nan() {
                f32::NAN
            } else {
                m.max((a - b).abs())
            }
        });
        assert!(
            worst <= 1e-5 * scale,
            "{name}: compiled int8 code differs from the evaluator by {worst} of {scale}"
        );
        let f32_model = s.model.graph.clone();
        let reference = mcc_ir::run(&f32_model, std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        let reference: Vec<f32> = reference.as_f32().unwrap().iter().copied().collect();
        let (mut num, mut den) = (0f64, 0f64);
        for (a, b) in want.iter().zip(&reference) {
            num += f64::from(a - b).powi(2);
            den += f64::from(*b).powi(2);
        }
        let rel = (num / den.max(1e-30)).sqrt();
        println!("{name}: {layers} integer layers, outputs vs f32 relative L2 {rel:.3e}");
        assert!(
            rel.is_finite() && rel <= LIGHT_INT8_ERROR,
            "{name}: relative L2 {rel}"
        );
    }
}

/// The bound on [`light_models_run_in_int8`]'s error (README, "int8").
const LIGHT_INT8_ERROR: f64 = 0.3;

/// `bias_correction: on` subtracts the mean output shift that quantization causes (measured
/// on the calibration data) from each bias: on test data that the calibration never saw,
/// the outputs' mean error per class and their relative L2 error against the f32 model both
/// shrink. (Measured: mobilenet_dw relative L2 4.4e-2 → 1.3e-2 and worst mean error 0.30 → 0.008;
/// resnet_bn 2.2e-2 → 1.4e-2 and 0.13 → 0.007.)
#[test]
fn bias_correction_removes_the_mean_output_error() {
    let dir = tempfile::tempdir().unwrap();
    let x = first_rows(&npy(&corpus("data/mnist_test_x.npy")), 300);
    for m in ["mobilenet_dw", "resnet_bn"] {
        // (relative L2, largest |mean error| over the classes) with correction off and on.
        let mut errors = vec![];
        let mut reference = vec![];
        for correction in ["off", "on"] {
            let recipe = dir.path().join(format!("{m}-{correction}.mcr"));
            std::fs::write(
                &recipe,
                format!(
                    "calibrate with {:?}\nuse std.merge\nstage q {{ quantize int8 on Conv | Gemm {{ bias_correction: {correction} }} }}\n",
                    corpus("data/mnist_calib_x.npy").display().to_string()
                ),
            )
            .unwrap();
            let s = mcc::recipe::check(&recipe, &corpus(&format!("{m}.onnx"))).unwrap();
            assert!(!s.checked.has_errors(), "{m}: {:#?}", s.checked.diags);
            let b = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
            mcc_ir::verify(&b.graph).unwrap();
            if reference.is_empty() {
                reference = mcc_ir::run(&s.model.graph, std::slice::from_ref(&x))
                    .unwrap()
                    .remove(0)
                    .to_f64_vec();
            }
            let got = mcc_ir::run(&b.graph, std::slice::from_ref(&x))
                .unwrap()
                .remove(0)
                .to_f64_vec();
            assert_eq!(got.len(), reference.len());
            let classes = got.len() / 300;
            let (mut num, mut den) = (0f64, 0f64);
            let mut mean = vec![0f64; classes];
            for (i, (a, b)) in got.iter().zip(&reference).enumerate() {
                num += (a - b).powi(2);
                den += b.powi(2);
                mean[i % classes] += (a - b) / 300.0;
            }
            // A NaN anywhere makes both NaN, and the comparisons below fail.
            let worst = mean.iter().fold(0f64, |m, v| {
                if m.is_nan() || v.is_nan() {
                    f64::NAN
                } else {
                    m.max(v.abs())
                }
            });
            errors.push(((num / den).sqrt(), worst));
        }
        let [(l2_off, mean_off), (l2_on, mean_on)] = errors[..] else {
            unreachable!()
        };
        println!(
            "{m}: relative L2 {l2_off:.2e} → {l2_on:.2e}, worst class mean error {mean_off:.2e} → {mean_on:.2e}"
        );
        assert!(l2_on < 0.8 * l2_off, "{m}: relative L2 {l2_off} → {l2_on}");
        assert!(mean_on < mean_off, "{m}: mean error {mean_off} → {mean_on}");
    }
}

/// Builds `quantize int8 … { mode: dynamic }` on the linear layers of corpus model `m`.
fn build_dynamic(m: &str, dir: &Path) -> Graph {
    build_recipe(
        m,
        &dir.join(format!("{m}-dynamic.mcr")),
        "stage q {\n  quantize int8 on MatMul? | Gemm? { mode: dynamic }\n}\n",
    )
}

fn dynamic_layers(g: &Graph) -> usize {
    count(g, |op| matches!(op, Op::DynamicQuantMatMul(_)))
}

/// Dynamic int8 (each input row quantized at run time by its own range) on every trained
/// model's linear layers: the compiled code (interpreted and JIT, 1 and 2 threads) gives the
/// evaluator's bits where every layer is dynamic (lenet300), and elsewhere its outputs within
/// f32 rounding of the float layers before (which may move a code by one) with the same
/// top-1 predictions; a sample's outputs do not depend on the batch it runs in (lenet300's
/// first sample alone gives the same bits as in a batch of 64); a row holding NaN gives NaN outputs
/// on both; and the export — standard ONNX operators — runs in ONNX Runtime to the same
/// outputs within f32 rounding, with at least 99.5% of top-1 predictions agreeing.
#[test]
fn dynamic_int8_is_the_evaluators_bits_compiled_and_onnx_runtimes_values() {
    let dir = tempfile::tempdir().unwrap();
    for (m, input) in TRAINED {
        let g = build_dynamic(m, dir.path());
        let layers = dynamic_layers(&g);
        assert!(layers >= 1, "{m}: no dynamic layer");
        let x = first_rows(&npy(&corpus(input)), 64);
        let mut data: Vec<f32> = x.as_f32().unwrap().iter().copied().collect();
        let per = data.len() / 64;
        // Sample 5 holds a NaN: its outputs must be NaN, the others untouched.
        data[5 * per + per / 2] = f32::NAN;
        let xt = Tensor::from_vec(x.shape(), data.clone()).unwrap();
        let want = mcc_ir::run(&g, std::slice::from_ref(&xt))
            .unwrap()
            .remove(0);
        let classes = want.shape()[1];
        let want: Vec<f32> = want.as_f32().unwrap().iter().copied().collect();
        for (i, v) in want.iter().enumerate() {
            assert_eq!(v.is_nan(), i / classes == 5, "{m}: output {i} is {v}");
        }
        let same = |a: &[f32], b: &[f32]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
        };
        let exact = *m == "lenet300";
        let close = |a: &[f32], b: &[f32]| {
            let (mut err, mut norm, mut agree) = (0f64, 0f64, true);
            for (ra, rb) in a
                .chunks(classes)
                .zip(b.chunks(classes))
                .filter(|(r, _)| !r[0].is_nan())
            {
                for (x, y) in ra.iter().zip(rb) {
                    err += f64::from(x - y).powi(2);
                    norm += f64::from(*x).powi(2);
                }
                agree &= argmax(ra) == argmax(rb);
            }
            let rel = (err / norm).sqrt();
            rel <= 1e-3 && agree
        };
        let p = mcc::native::program(&g).unwrap();
        for threads in [1, 2] {
            let mut r = mcc_runtime::exec::Runner::new(&p, threads).unwrap();
            r.set_poison(true);
            let got = r.run(&[&data]).unwrap().remove(0);
            let mut jit = mcc_codegen::jit::Jit::new(p.clone(), threads).unwrap();
            let jitted = jit.run(&[&data]).unwrap().remove(0);
            for (what, out) in [("interpreted", &got), ("compiled", &jitted)] {
                for (i, v) in out.iter().enumerate() {
                    assert_eq!(
                        v.is_nan(),
                        i / classes == 5,
                        "{m} ({what}): output {i} is {v}"
                    );
                }
                assert!(
                    if exact {
                        same(out, &want)
                    } else {
                        close(out, &want)
                    },
                    "{m} ({what}, {threads} threads): not the evaluator's {}",
                    if exact { "bits" } else { "values" }
                );
            }
        }
        if exact {
            let mut r = mcc_runtime::exec::Runner::new(&p, 1).unwrap();
            let alone = r.run(&[&data[..per]]).unwrap().remove(0);
            assert!(
                same(&alone, &want[..classes]),
                "{m}: the first sample alone is not what it is in a batch"
            );
        }
        if !skip_ort() {
            let path = dir.path().join(format!("{m}-dynamic.onnx"));
            mcc_onnx::export_file(&g, &path).unwrap();
            let full = npy(&corpus(input));
            let want = mcc_ir::run(&g, std::slice::from_ref(&full))
                .unwrap()
                .remove(0);
            let got = mcc_tests::run_ort(&path, &[corpus(input)], dir.path());
            let (w, o) = (want.as_f32().unwrap(), got.as_f32().unwrap());
            assert_eq!(w.shape(), o.shape(), "{m}");
            let (mut err, mut norm) = (0f64, 0f64);
            for (a, b) in w.iter().zip(o.iter()) {
                err += f64::from(a - b).powi(2);
                norm += f64::from(*a).powi(2);
            }
            let rel = (err / norm).sqrt();
            let (ws, os) = (w.as_slice().unwrap(), o.as_slice().unwrap());
            let (agree, rows) = agreement(ws, os, classes);
            println!(
                "{m}: {layers} dynamic layers; ORT vs mcc relative L2 {rel:.2e}, top-1 agreement {agree}/{rows}"
            );
            // A NaN fails the comparison.
            assert!(rel <= 1e-3, "{m}: relative L2 {rel}");
            assert!(agree * 1000 >= rows * 995, "{m}: {agree}/{rows} agree");
        }
    }
}
