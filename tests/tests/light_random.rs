//! The light models with seeded random weights (`mcc_tests::light_random`, made by
//! `tests/light_random.py`) compute ONNX Runtime's outputs on every path: the reference
//! evaluator, the merged and lowered schedule (Cranelift JIT and the runtime's interpreter,
//! bit for bit the same), and the executable `mcc build recipes/merge.mcr` links.
//!
//! With constant weights every channel of a layer is equal, so the corpus's light models
//! cannot show a permuted channel, a wrong group or a wrong concat order; with random ones
//! they do. Compared: the pre-softmax logits (DenseNet, which has no Softmax: its output;
//! the evaluator and the JIT also the softmax output), at max |a − b| ≤ 1e-4 · max |b| and
//! elementwise within rtol 1e-4 + atol 5e-5 · max |b|; NaN or infinity anywhere fails.
//! Each test prints one line with its errors and time.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use mcc_ir::{Graph, Op, Tensor};
use mcc_tests::light_random::{self, RandomLight};
use mcc_tests::{compare, corpus, load, npy, skip_ort, workspace};

/// The tolerance relative to the reference's largest magnitude, and elementwise.
const RTOL: f64 = 1e-4;
/// allclose's atol, as a fraction of the reference's largest magnitude. Rounding noise
/// grows with depth: ONNX Runtime without its graph optimizations differs from itself with
/// them by up to 1.2e-5 of the scale on ResNet-50's logits, and mcc by 1.4e-5 there.
const ATOL_OF_SCALE: f64 = 5e-5;

fn input() -> PathBuf {
    corpus("light/light_input_seed0.npy")
}

/// The random model and its references, or `None` when ONNX Runtime checks are off.
fn random(name: &str) -> Option<RandomLight> {
    (!skip_ort()).then(|| light_random::model(name))
}

/// Makes the operand of the graph's Softmax an output too: the last one, or with `first`
/// the first one. Returns whether the graph has a Softmax.
fn expose_presoftmax(g: &mut Graph, first: bool) -> bool {
    let Some(sm) = g
        .node_ids()
        .into_iter()
        .find(|&n| matches!(g.node(n).unwrap().op, Op::Softmax(_)))
    else {
        return false;
    };
    let pre = g.node(sm).unwrap().inputs[0].unwrap();
    let mut outs = g.outputs().to_vec();
    if first {
        outs.insert(0, pre);
    } else {
        outs.push(pre);
    }
    g.set_outputs(outs);
    true
}

/// How far `got` is from the reference `want` (reshaped to its shape, which may differ in
/// unit dimensions), and whether that passes: every value finite, the error at most
/// `RTOL` of the reference's scale, and elementwise allclose.
struct Checked {
    what: String,
    max_abs: f64,
    max_rel: f64,
    problem: Option<String>,
}

fn check(what: String, got: &Tensor, want: &Tensor) -> Checked {
    let got = if got.shape() == want.shape() {
        got.clone()
    } else {
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: {:?} against the reference's {:?}",
            got.shape(),
            want.shape()
        );
        mcc_ir::map_tensor!(got, a => a.clone().into_shape_with_order(want.shape()).unwrap())
    };
    let scale = want.to_f64_vec().iter().fold(0f64, |m, v| m.max(v.abs()));
    let d = compare(&got, want, RTOL, ATOL_OF_SCALE * scale);
    let bad = got.to_f64_vec().iter().filter(|v| !v.is_finite()).count();
    let problem = if bad > 0 || !d.max_abs.is_finite() {
        Some(format!("{bad} values are NaN or infinite ({d:?})"))
    } else if d.max_rel > RTOL {
        Some(format!("max rel {:.3e} > {RTOL:e} ({d:?})", d.max_rel))
    } else if !d.allclose {
        Some(format!(
            "not allclose (rtol {RTOL:e}, atol {:.2e}): {d:?}",
            ATOL_OF_SCALE * scale
        ))
    } else {
        None
    };
    Checked {
        what,
        max_abs: d.max_abs,
        max_rel: d.max_rel,
        problem,
    }
}

/// Prints one line for `name` on `path`, then fails on the first check that did not pass.
fn report(name: &str, path: &str, checks: &[Checked], seconds: f64, extra: &str) {
    let errors: Vec<String> = checks
        .iter()
        .map(|c| format!("{} max abs {:.2e} rel {:.2e}", c.what, c.max_abs, c.max_rel))
        .collect();
    println!(
        "light_{name}_random [{path}]: {}; {seconds:.1} s{extra}",
        errors.join(", ")
    );
    for c in checks {
        if let Some(p) = &c.problem {
            panic!(
                "light_{name}_random [{path}]: {} differs from ONNX Runtime: {p}",
                c.what
            );
        }
    }
}

/// The reference evaluator on the canonicalized model.
fn evaluator(name: &str) {
    let Some(r) = random(name) else { return };
    let mut g = load(&r.model);
    let has_softmax = expose_presoftmax(&mut g, false);
    assert_eq!(has_softmax, r.presoftmax.is_some(), "light_{name}_random");
    let t0 = Instant::now();
    let outs = mcc_ir::run(&g, &[npy(&input())])
        .unwrap_or_else(|e| panic!("light_{name}_random: the evaluator failed: {e}"));
    let dt = t0.elapsed().as_secs_f64();
    drop(g);
    let mut checks = vec![check("output".into(), &outs[0], &npy(&r.output))];
    if let Some(pre) = &r.presoftmax {
        checks.push(check("pre-softmax".into(), &outs[1], &npy(pre)));
    }
    report(name, "evaluator", &checks, dt, "");
}

/// Merged and lowered: the Cranelift JIT and the runtime's interpreter on 2 threads, which
/// must agree bit for bit.
fn compiled(name: &str) {
    let Some(r) = random(name) else { return };
    let mut g = load(&r.model);
    let has_softmax = expose_presoftmax(&mut g, false);
    assert_eq!(has_softmax, r.presoftmax.is_some(), "light_{name}_random");
    let t0 = Instant::now();
    mcc_passes::merge_everything(&mut g).unwrap();
    let p = mcc_codegen::lower(&g).unwrap_or_else(|e| panic!("light_{name}_random: {e}"));
    drop(g);
    let x = npy(&input());
    let data: Vec<f32> = x.as_f32().unwrap().iter().copied().collect();
    let mut runner = mcc_runtime::exec::Runner::new(&p, 2).unwrap();
    runner.set_poison(true);
    let interpreted = runner.run(&[&data]).unwrap();
    let (steps, arena) = (p.steps.len(), p.arena);
    let jitted = mcc_codegen::jit::Jit::new(p, 2)
        .unwrap()
        .run(&[&data])
        .unwrap();
    let dt = t0.elapsed().as_secs_f64();
    let mut checks = vec![];
    for (label, outs) in [("jit", &jitted), ("interpreter", &interpreted)] {
        let want = npy(&r.output);
        let got = Tensor::from_vec(want.shape(), outs[0].clone()).unwrap();
        checks.push(check(format!("{label} output"), &got, &want));
        if let Some(pre) = &r.presoftmax {
            let want = npy(pre);
            let got = Tensor::from_vec(want.shape(), outs[1].clone()).unwrap();
            checks.push(check(format!("{label} pre-softmax"), &got, &want));
        }
    }
    let extra = format!(
        " (merge, lower, compile, run both; {steps} steps, arena {:.1} MiB)",
        arena as f64 * 4.0 / f64::from(1 << 20)
    );
    report(name, "jit + interpreter", &checks, dt, &extra);
    assert_eq!(jitted.len(), interpreted.len());
    for (c, i) in jitted.iter().zip(&interpreted) {
        assert!(
            c.iter().zip(i).all(|(a, b)| a.to_bits() == b.to_bits()),
            "light_{name}_random: the JIT and the interpreter disagree"
        );
    }
}

/// `mcc build recipes/merge.mcr MODEL -o DIR` through the library (as the command line
/// does it), with the logits made the first output (the one the executable writes), then
/// the executable on 1 and 2 threads.
fn executable(name: &str) {
    let Some(r) = random(name) else { return };
    let t0 = Instant::now();
    let s = mcc::recipe::check(&workspace().join("recipes/merge.mcr"), &r.model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let mut built = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    drop(s);
    let has_softmax = expose_presoftmax(&mut built.graph, true);
    assert_eq!(has_softmax, r.presoftmax.is_some(), "light_{name}_random");
    let stem = format!("light_{name}_random");
    let native = mcc::native::compile(&built.graph, &[], &stem, &r.model.display().to_string())
        .unwrap_or_else(|e| panic!("{stem}: {:?}", miette::Report::new(e)));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(&stem);
    let written = mcc::recipe::write_outputs(&out, &built, false, Some(&native))
        .unwrap()
        .unwrap();
    drop((built, native));
    let exe = out.join(
        written
            .executable
            .unwrap_or_else(|| panic!("{stem}: no executable: {:?}", written.no_executable)),
    );
    let build_time = t0.elapsed().as_secs_f64();
    let want = npy(r.presoftmax.as_ref().unwrap_or(&r.output));
    let what = if has_softmax { "pre-softmax" } else { "output" };
    let y = dir.path().join("y.npy");
    let mut checks = vec![];
    let t0 = Instant::now();
    for threads in ["1", "2"] {
        // A stale result from the previous run must not pass for this one.
        let _ = std::fs::remove_file(&y);
        let run = Command::new(&exe)
            .arg(input())
            .arg("-o")
            .arg(&y)
            .args(["--threads", threads])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{stem}: the executable failed on {threads} thread(s): {}",
            String::from_utf8_lossy(&run.stderr)
        );
        checks.push(check(
            format!("{what} ({threads} thread(s))"),
            &npy(&y),
            &want,
        ));
    }
    let runs = t0.elapsed().as_secs_f64();
    let extra = format!(" (build {build_time:.1} s, 2 runs {runs:.1} s)");
    report(name, "executable", &checks, build_time + runs, &extra);
}

/// One test per light model for each path; the one list of names, checked against
/// `mcc_tests::LIGHT` (which `corpus.rs` checks against the files).
macro_rules! per_model {
    ($($name:ident)*) => {
        mod evaluator {
            $( #[test] fn $name() { super::evaluator(stringify!($name)) } )*
        }
        mod compiled {
            $( #[test] fn $name() { super::compiled(stringify!($name)) } )*
        }
        mod executable {
            $( #[test] fn $name() { super::executable(stringify!($name)) } )*
        }
        #[test]
        fn every_light_model_has_its_tests() {
            assert_eq!([$(stringify!($name)),*].as_slice(), mcc_tests::LIGHT);
        }
    };
}

per_model!(bvlc_alexnet densenet121 inception_v1 inception_v2 resnet50 shufflenet squeezenet vgg19 zfnet512);

/// The light ImageNet architectures (random weights) accept filter-pruning, factorization and
/// 4-bit weight recipes: each build gives a valid, smaller model whose ONNX export (int4 codes
/// through `DequantizeLinear`) ONNX Runtime runs to the
/// reference evaluator's outputs. Structure and agreement are checked, not accuracy (the
/// weights are synthetic). Factorization is bounded to layers of at most 512 channels here,
/// to keep the suite's time in check (wider ones work; ResNet-50 whole takes about a minute).
#[test]
fn compressed_light_models_run_in_onnx_runtime() {
    if skip_ort() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let recipes = [
        ("filters", "prune filters on Conv { keep: 50% }\n"),
        (
            "factorize",
            "factorize tucker on Conv[kernel == 3, in_channels >= 16, out_channels <= 256]? { size: 50% }\n\
             factorize svd on Conv[kernel == 1, out_channels <= 512]? | Gemm[params <= 1100000]? { size: 50% }\n",
        ),
        ("int4", "quantize int on Conv? | Gemm? { bits: 4 }\n"),
    ];
    let x = npy(&input());
    for name in [
        "resnet50",
        "vgg19",
        "squeezenet",
        "shufflenet",
        "inception_v1",
    ] {
        let r = light_random::model(name);
        for (what, text) in recipes {
            // VGG-19's 144 M weights take half a minute to quantize and as long again in ONNX
            // Runtime: the other four keep the suite's time in check.
            if name == "vgg19" && what == "int4" {
                continue;
            }
            let t0 = Instant::now();
            let recipe = dir.path().join(format!("{what}.mcr"));
            // SqueezeNet's last conv makes its 1000 classes: pruning its filters is an error.
            let text = if name == "squeezenet" && what == "filters" {
                text.replace("on Conv", "on Conv - \"n62\"")
            } else {
                text.to_string()
            };
            std::fs::write(&recipe, text).unwrap();
            let s = mcc::recipe::check(&recipe, &r.model).unwrap();
            assert!(
                !s.checked.has_errors(),
                "{name} {what}: {:#?}",
                s.checked.diags
            );
            let b = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
            mcc_ir::verify(&b.graph).unwrap();
            let p = &b.report.model_totals.params;
            // ShuffleNet's channel shuffles stop filter pruning (every group is left alone);
            // its only one-group layers with a row-wise input are the stem and the classifier.
            if what == "int4" {
                // 4-bit codes and a scale per channel: about an eighth of the f32 bytes (less
                // for ShuffleNet's depthwise convs, 9 weights a scale: 5.8×).
                let bytes = &b.report.model_totals.bytes;
                assert!(bytes.after * 5 < bytes.before, "{name} {what}: {bytes:?}");
            } else if !(name == "shufflenet" && what == "filters") {
                assert!(p.after < p.before, "{name} {what}: {p:?}");
            }
            let path = dir.path().join(format!("{name}-{what}.onnx"));
            mcc_onnx::export_file(&b.graph, &path).unwrap();
            let want = mcc_ir::run(&b.graph, std::slice::from_ref(&x))
                .unwrap()
                .remove(0);
            let got = mcc_tests::run_ort(&path, &[input()], dir.path());
            let c = check(format!("{name} {what}"), &got, &want);
            println!(
                "{name} {what}: weights {} → {}, ORT vs evaluator max rel {:.1e}, {:.1} s",
                p.before,
                p.after,
                c.max_rel,
                t0.elapsed().as_secs_f64()
            );
            assert!(c.problem.is_none(), "{name} {what}: {:?}", c.problem);
            std::fs::remove_file(&path).unwrap();
        }
    }
}
