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
    std::fs::write(
        &recipe,
        format!(
            "calibrate with {:?}\nuse std.int8(calibration: {calibration})\n",
            corpus(calib).display().to_string()
        ),
    )
    .unwrap();
    let s = mcc::recipe::check(&recipe, &corpus(&format!("{m}.onnx"))).unwrap();
    assert!(!s.checked.has_errors(), "{m}: {:#?}", s.checked.diags);
    let b = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    mcc_ir::verify(&b.graph).unwrap();
    b.graph
}

/// The number of integer layers.
fn integer_layers(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter(|&n| {
            g.node(n)
                .is_some_and(|x| matches!(x.op, Op::QLinearConv(_) | Op::QLinearMatMul(_)))
        })
        .count()
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
            let argmax = |row: &[f32]| {
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    )
                    .0
            };
            let (ws, os) = (w.as_slice().unwrap(), o.as_slice().unwrap());
            let rows = ws.len() / classes;
            let agree = (0..rows)
                .filter(|&r| {
                    argmax(&ws[r * classes..(r + 1) * classes])
                        == argmax(&os[r * classes..(r + 1) * classes])
                })
                .count();
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
