//! Compiled models: every corpus model (the transformer and the dynamic-batch exports
//! included), merged and lowered to the runtime's kernel schedule, computes the ONNX Runtime
//! reference outputs (trained models on all 1000 test samples in
//! one batch; light models on their seeded image, compared before the softmax).

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_ir::Tensor;
use mcc_tests::{LIGHT, compare, corpus, load, npy};

fn compiled(mut g: mcc_ir::Graph) -> mcc_runtime::program::Program {
    mcc_passes::merge_everything(&mut g).unwrap();
    mcc_codegen::lower(&g).unwrap_or_else(|e| panic!("{}: {e}", g.name))
}

/// Runs the Cranelift-compiled schedule on 2 threads (this machine's cores), and checks it
/// computes bit for bit what the runtime's interpreter of the same program computes.
fn run(p: &mcc_runtime::program::Program, x: &Tensor) -> Vec<Vec<f32>> {
    let data: Vec<f32> = x.as_f32().unwrap().iter().copied().collect();
    let mut r = mcc_runtime::exec::Runner::new(p, 2).unwrap();
    r.set_poison(true);
    let interpreted = r.run(&[&data]).unwrap();
    let mut jit = mcc_codegen::jit::Jit::new(p.clone(), 2).unwrap();
    let compiled = jit.run(&[&data]).unwrap();
    assert_eq!(compiled.len(), interpreted.len());
    for (c, i) in compiled.iter().zip(&interpreted) {
        assert!(
            c.iter().zip(i).all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}: the JIT and the interpreter disagree",
            p.inputs[0].name
        );
    }
    compiled
}

#[test]
fn trained_models_compile_to_the_reference_outputs() {
    for (m, input) in mcc_tests::every_trained() {
        let p = compiled(load(&corpus(&format!("{m}.onnx"))));
        let x = npy(&corpus(input));
        let t0 = std::time::Instant::now();
        let out = run(&p, &x);
        let dt = t0.elapsed();
        let want = npy(&corpus(&format!("ref/{m}_test_out.npy")));
        let got = Tensor::from_vec(want.shape(), out[0].clone()).unwrap();
        let d = compare(&got, &want, 1e-4, 1e-5);
        println!(
            "{m}: {} steps, arena {} KiB/sample, max abs {:.2e}, max rel {:.2e}, {:.1} ms for 1000 samples",
            p.steps.len(),
            p.arena * 4 / 1024,
            d.max_abs,
            d.max_rel,
            dt.as_secs_f64() * 1e3
        );
        assert!(d.max_rel <= 1e-4 && d.allclose, "{m}: {d:?}");
    }
}

#[test]
fn light_models_compile_to_the_reference_outputs() {
    for m in LIGHT {
        let mut g = load(&corpus(&format!("light/light_{m}.onnx")));
        // Expose the pre-softmax logits (the softmax of these models is nearly uniform).
        let sm = g
            .node_ids()
            .into_iter()
            .find(|&n| matches!(g.node(n).unwrap().op, mcc_ir::Op::Softmax(_)));
        if let Some(sm) = sm {
            let pre = g.node(sm).unwrap().inputs[0].unwrap();
            let mut outs = g.outputs().to_vec();
            outs.push(pre);
            g.set_outputs(outs);
        }
        let p = compiled(g);
        let x = npy(&corpus("light/light_input_seed0.npy"));
        let t0 = std::time::Instant::now();
        let out = run(&p, &x);
        let dt = t0.elapsed();
        let want = npy(&corpus(&format!("light/light_{m}_seed0_out.npy")));
        let got = Tensor::from_vec(want.shape(), out[0].clone()).unwrap();
        let d = compare(&got, &want, 1e-4, 1e-7);
        assert!(d.allclose, "light_{m}: {d:?}");
        if sm.is_some() {
            let want = npy(&corpus(&format!("light/light_{m}_seed0_presoftmax.npy")));
            let got = Tensor::from_vec(want.shape(), out[1].clone()).unwrap();
            let d = compare(&got, &want, 1e-4, 0.0);
            assert!(d.max_rel <= 1e-4, "light_{m} pre-softmax: {d:?}");
        }
        println!(
            "light_{m}: {} steps, arena {:.1} MiB, {:.1} ms",
            p.steps.len(),
            p.arena as f64 * 4.0 / (1 << 20) as f64,
            dt.as_secs_f64() * 1e3
        );
    }
}

/// The exporters' GELU (`Div` by √2, `Erf`, `Add` 1, two `Mul`s) in both transformers
/// (TorchScript and dynamo exports) is lowered as the epilogue of the dense layer before it:
/// one step per MLP, no erf step of its own (their outputs are checked against ONNX
/// Runtime by `trained_models_compile_to_the_reference_outputs`).
#[test]
fn the_transformers_gelu_is_fused_into_its_dense_layer() {
    use mcc_runtime::kernels::epilogue::Act;
    use mcc_runtime::program::Step;
    for m in ["vit_mini", "vit_mini_dynamo"] {
        let p = compiled(load(&corpus(&format!("{m}.onnx"))));
        let acts: Vec<(&str, Act)> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Dense { act, .. }
                | Step::Unary { act, .. }
                | Step::Binary { act, .. }
                | Step::BatchMatMul { act, .. } => Some((s.name(), *act)),
                _ => None,
            })
            .collect();
        let fused: Vec<_> = acts
            .iter()
            .filter(|(_, a)| matches!(a, Act::GeluChain(_)))
            .collect();
        assert_eq!(fused.len(), 2, "{m}: one GELU per block: {acts:?}");
        assert!(fused.iter().all(|(k, _)| *k == "Dense"), "{m}: {fused:?}");
        assert!(
            !acts.iter().any(|(_, a)| matches!(a, Act::Erf)),
            "{m}: an erf step is left: {acts:?}"
        );
    }
}

/// NaN follows ONNX semantics everywhere (issue #14): Relu, Clip, MaxPool and Max pass a NaN
/// on instead of turning it into a number. On every trained model, an all-NaN image gives
/// NaN outputs in the reference evaluator, in the compiled schedule (interpreter and JIT, bit
/// for bit) and in ONNX Runtime; an image with one NaN pixel gives NaN exactly where the
/// evaluator does, and the evaluator's numbers elsewhere.
#[test]
fn nan_inputs_propagate_as_onnx_says() {
    let dir = tempfile::tempdir().unwrap();
    for (m, input) in mcc_tests::every_trained() {
        let path = corpus(&format!("{m}.onnx"));
        let g = load(&path);
        let x = npy(&corpus(input));
        let per: usize = x.shape()[1..].iter().product();
        let mut shape = x.shape().to_vec();
        shape[0] = 1;
        let first: Vec<f32> = x.as_f32().unwrap().iter().take(per).copied().collect();
        let all_nan = vec![f32::NAN; per];
        let mut one_nan = first.clone();
        one_nan[per / 2 + 3] = f32::NAN;
        let p = compiled(g.clone());
        for (what, data) in [("all NaN", all_nan), ("one NaN pixel", one_nan)] {
            let t = Tensor::from_vec(&shape, data).unwrap();
            let want = mcc_ir::run(&g, std::slice::from_ref(&t)).unwrap()[0].to_f64_vec();
            let got = run(&p, &t)[0].clone();
            assert_eq!(got.len(), want.len(), "{m}");
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    a.is_nan(),
                    b.is_nan(),
                    "{m}, {what}: output {i} is {a} compiled, {b} in the evaluator"
                );
                if !b.is_nan() {
                    assert!(
                        (f64::from(a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{m} {what}: {a} vs {b}"
                    );
                }
            }
            if what == "all NaN" {
                assert!(
                    want.iter().all(|v| v.is_nan()),
                    "{m}: the evaluator gives {want:?}"
                );
                if !mcc_tests::skip_ort() {
                    let xp = dir.path().join(format!("{m}_nan.npy"));
                    mcc::tensor_io::write_npy(&xp, &t).unwrap();
                    let ort = mcc_tests::run_ort(&path, &[xp], dir.path()).to_f64_vec();
                    assert!(
                        ort.iter().all(|v| v.is_nan()),
                        "{m}: ONNX Runtime gives {ort:?}"
                    );
                }
            }
        }
    }
}

/// `Jit::main` runs the executable's own `main` in process (what the `executable` fuzz target
/// drives): on lenet5 it writes, with `-o`, exactly what the compiled code computes, and a
/// bad command line ends in the executable's exit codes, 2 for usage and 1 for an error.
#[test]
fn the_executables_main_runs_in_process() {
    let p = compiled(load(&corpus("lenet5.onnx")));
    let x = npy(&corpus("data/mnist_test_x.npy"));
    let x = mcc::tensor_io::slice_batch(&x, 0, 8);
    let dir = tempfile::tempdir().unwrap();
    let (xin, yout) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
    mcc::tensor_io::write_npy(&xin, &x).unwrap();
    let mut jit = mcc_codegen::jit::Jit::new(p, 1).unwrap();
    let args = |a: &[&str]| -> Vec<String> {
        std::iter::once("model")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    };
    let (xs, ys) = (xin.to_str().unwrap(), yout.to_str().unwrap());
    assert_eq!(jit.main(&args(&[xs, "-o", ys])), 0);
    let got = mcc::tensor_io::read_npy(&yout).unwrap();
    let data: Vec<f32> = x.as_f32().unwrap().iter().copied().collect();
    let want = jit.run(&[&data]).unwrap();
    assert_eq!(got.shape(), [8, 10]);
    let got: Vec<f32> = got.as_f32().unwrap().iter().copied().collect();
    assert!(
        got.iter()
            .zip(&want[0])
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "main's output differs from the compiled code's"
    );
    assert_eq!(jit.main(&args(&[])), 2, "no input is a usage error");
    assert_eq!(jit.main(&args(&[xs, "--threads", "x"])), 1);
    assert_eq!(
        jit.main(&args(&[ys, ys])),
        1,
        "two inputs for a one-input model"
    );
    let missing = dir.path().join("missing.npy");
    assert_eq!(jit.main(&args(&[missing.to_str().unwrap()])), 1);
}
