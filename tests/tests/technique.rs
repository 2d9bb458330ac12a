//! The technique framework from outside: a toy technique written against the interface runs
//! end to end through the unchanged driver; the calibration context serves statistics that
//! match the reference evaluator's; builds are the same bits on 1 and 2 threads; every report
//! validates against the committed JSON Schema, which is the one the types generate.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mcc_ir::{Graph, Origin, StepId, Tensor};
use mcc_plan::plan::Step;
use mcc_plan::registry::{Applies, Status, TechniqueSchema, VariantSchema, no_param_check};
use mcc_plan::{Outcome, Stat, StatRequest, Stats, Technique, TechniqueError};
use mcc_tests::workspace;

/// `halve weights`: multiplies each selected layer's weights and bias by ½ (so its output
/// halves). It asks for the per-channel
/// ranges of each layer's input, so the calibration path runs too, and records how many it saw.
struct Halve;

impl Technique for Halve {
    fn needs(&self, graph: &Graph, step: &Step) -> Vec<StatRequest> {
        step.nodes
            .iter()
            .filter_map(|n| {
                let node = graph.node(graph.find_node(n)?)?;
                let x = node.inputs.first().copied().flatten()?;
                Some(StatRequest::Ranges {
                    value: graph.value(x).name.clone(),
                })
            })
            .collect()
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let mut changed = vec![];
        for req in self.needs(graph, step) {
            let stat: Arc<Stat> = stats.get(graph, &req)?;
            let Stat::Ranges { min, max } = &*stat else {
                return Err(TechniqueError {
                    node: String::new(),
                    message: "ranges expected".into(),
                });
            };
            assert!(!min.is_empty() && min.iter().zip(max).all(|(a, b)| a <= b));
        }
        for name in &step.nodes {
            let fail = |m: &str| TechniqueError {
                node: name.clone(),
                message: m.into(),
            };
            let n = graph.find_node(name).ok_or_else(|| fail("no such layer"))?;
            let operands: Vec<_> = graph
                .node(n)
                .map(|node| node.inputs.iter().skip(1).flatten().copied().collect())
                .unwrap_or_default();
            for w in operands {
                let half = graph
                    .const_data(w)
                    .and_then(Tensor::as_f32)
                    .ok_or_else(|| fail("weights are not f32"))?
                    .mapv(|x| x * 0.5);
                graph.make_const(w, Tensor::F32(half));
            }
            if let Some(node) = graph.node_mut(n) {
                node.origin = Origin::Step(id);
            }
            changed.push(name.clone());
        }
        Ok(Outcome {
            changed,
            ..Outcome::default()
        })
    }
}

const HALVE: TechniqueSchema = TechniqueSchema {
    name: "halve",
    summary: "a toy: halve the weights",
    default_variant: Some("weights"),
    exclusive: true,
    variants: &[VariantSchema {
        name: "weights",
        summary: "multiply the weights by ½",
        params: &[],
        applies: Applies::Weighted,
        status: Status::Ready(&Halve),
        check_params: no_param_check,
        sweep: None,
    }],
};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn data(name: &str) -> String {
    workspace()
        .join("corpus/data")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn a_technique_from_outside_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(
        dir.path(),
        "halve.mcr",
        &format!(
            "calibrate with \"{}\"\nevaluate with \"{}\" labels \"{}\"\n\nhalve weights on \"/fc2/Gemm\"\n",
            data("mnist_calib_x.npy"),
            data("mnist_test_x.npy"),
            data("mnist_test_y.npy"),
        ),
    );
    let model = workspace().join("corpus/lenet5.onnx");
    // Without the toy, the standard registry does not know the keyword.
    let plain = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(plain.checked.has_errors());
    let registry = mcc_passes::registry().with(HALVE);
    let s = mcc::recipe::check_with(&recipe, &model, registry).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    assert!(mcc::recipe::explain(&s).contains("halve weights"));
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    let layer = r
        .report
        .layers
        .iter()
        .find(|l| l.name == "/fc2/Gemm")
        .expect("the changed layer has a report row");
    assert_eq!(layer.techniques[0].technique, "halve");
    // Halving a layer's weights and bias halves its output: relative error ½, cosine 1.
    let e = layer.output_error.expect("measured on calibration data");
    assert!((e.relative_l2 - 0.5).abs() < 1e-6, "{e:?}");
    assert!((e.cosine - 1.0).abs() < 1e-6, "{e:?}");
    // The weights in the result are halved.
    let w = |g: &Graph| {
        let n = g.node(g.find_node("/fc2/Gemm").unwrap()).unwrap();
        g.const_data(n.inputs[1].unwrap()).unwrap().to_f64_vec()
    };
    let (before, after) = (w(&s.model.graph), w(&r.graph));
    assert!(before.iter().zip(&after).all(|(b, a)| *a == b * 0.5));
    // And it goes all the way to native code.
    let native = mcc::native::compile(&r.graph, &[], "lenet5", "lenet5.onnx").unwrap();
    let out = dir.path().join("out");
    mcc::recipe::write_outputs(&out, &r, false, Some(&native)).unwrap();
    assert!(out.join("report.json").exists() && out.join("timings.json").exists());
}

/// XᵀX of a Gemm's input from the calibration context against one computed from the
/// reference evaluator's tensors, and the same bits on 1 and 2 threads.
#[test]
fn calibration_statistics_match_the_evaluator() {
    let g = mcc::load(&workspace().join("corpus/lenet300.onnx"))
        .unwrap()
        .graph;
    let x = mcc_tests::npy(&workspace().join("corpus/data/mnist_calib_x784.npy"));
    let x = mcc::tensor_io::slice_batch(&x, 0, 64);
    let layer = g
        .node_ids()
        .into_iter()
        .filter_map(|n| g.node(n))
        .find(|n| n.op.name() == "Gemm")
        .map(|n| n.name.clone())
        .unwrap();
    let second = g
        .node_ids()
        .into_iter()
        .filter_map(|n| g.node(n))
        .filter(|n| n.op.name() == "Gemm")
        .nth(1)
        .map(|n| n.name.clone())
        .unwrap();
    let reqs = [
        StatRequest::Gram {
            layer: second.clone(),
        },
        StatRequest::Inputs {
            layer: layer.clone(),
            samples: 3,
        },
        StatRequest::Histogram {
            value: g
                .value(g.node(g.find_node(&second).unwrap()).unwrap().inputs[0].unwrap())
                .name
                .clone(),
            bins: 64,
        },
    ];
    let collect = |threads| {
        let mut c = mcc::calibration::Calibration::new(Some(x.clone()), threads);
        c.collect(&g, &reqs).unwrap();
        reqs.iter()
            .map(|r| c.get(&g, r).unwrap())
            .collect::<Vec<_>>()
    };
    let (one, two) = (collect(1), collect(2));
    assert_eq!(one, two, "statistics depend on the thread count");
    // The reference: the second Gemm's input from the evaluator, in f64.
    let node = g.node(g.find_node(&second).unwrap()).unwrap();
    let input = node.inputs[0].unwrap();
    let mut rows: Vec<f64> = vec![];
    mcc_ir::run_observed(&g, std::slice::from_ref(&x), &mut |v, t| {
        if v == input {
            rows = t.to_f64_vec();
        }
    })
    .unwrap();
    let Stat::Gram { k, rows: n, data } = &*one[0] else {
        panic!("not a Gram matrix")
    };
    assert_eq!(*n, 64);
    assert_eq!(rows.len(), 64 * k);
    let mut worst = 0.0f64;
    // f64::max skips NaN: every value must be finite for the maxima below to mean anything.
    assert!(
        data.iter().chain(&rows).all(|v| v.is_finite()),
        "non-finite statistics"
    );
    let scale = data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 0.0 && scale.is_finite());
    for i in 0..*k {
        for j in 0..*k {
            let want: f64 = (0..64).map(|r| rows[r * k + i] * rows[r * k + j]).sum();
            worst = worst.max((data[i * k + j] - want).abs() / scale);
        }
    }
    assert!(
        worst < 1e-5,
        "XᵀX differs from the evaluator's by {worst:e}"
    );
    // The histogram holds every value once, within a power-of-two bound ≥ max |x|.
    let Stat::Histogram { bound, counts } = &*one[2] else {
        panic!("not a histogram")
    };
    assert_eq!(counts.len(), 64);
    assert_eq!(counts.iter().sum::<u64>(), rows.len() as u64);
    let max = rows.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        *bound >= max && *bound < 2.0 * max + 1e-30,
        "{bound} for max {max}"
    );
    let Stat::Inputs(t) = &*one[1] else {
        panic!("not samples")
    };
    assert_eq!(t.shape()[0], 3);
    let want = mcc::tensor_io::slice_batch(&x, 0, 3).to_f64_vec();
    let got = t.to_f64_vec();
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
}

fn build_to(recipe: &Path, model: &Path, threads: usize, out: &Path) -> mcc::build::BuildResult {
    let s = mcc::recipe::check(recipe, model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let opts = mcc::build::Options {
        threads,
        ..mcc::build::Options::default()
    };
    let r = mcc::build::build(&s, &opts).unwrap();
    let native = mcc::native::compile(&r.graph, &[], "m", "m.onnx").unwrap();
    mcc::recipe::write_outputs(out, &r, false, Some(&native)).unwrap();
    r
}

#[test]
fn builds_are_the_same_on_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    // lenet5-prune-obs: layer-by-layer statistics, OBS and least-squares refits.
    for name in ["lenet5", "resnet_bn", "lenet5-prune-obs"] {
        let recipe = workspace().join(format!("recipes/{name}.mcr"));
        let model_name = name.split('-').next().unwrap();
        let model = workspace().join(format!("corpus/{model_name}.onnx"));
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        build_to(&recipe, &model, 1, &a);
        build_to(&recipe, &model, 2, &b);
        for file in [
            "report.json",
            "report.html",
            "model.onnx",
            "model.mcir",
            "m.o",
        ] {
            let (x, y) = (
                std::fs::read(a.join(file)).unwrap(),
                std::fs::read(b.join(file)).unwrap(),
            );
            assert!(x == y, "{name}: {file} differs between 1 and 2 threads");
        }
        let t: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("timings.json")).unwrap()).unwrap();
        assert_eq!(t["threads"], 2);
    }
}

fn schema_path() -> PathBuf {
    workspace().join("docs/report.schema.json")
}

/// The committed schema is the one the report types generate (`MCC_BLESS=1` rewrites it).
#[test]
fn the_committed_schema_is_the_generated_one() {
    let now = serde_json::to_string_pretty(&mcc::report::schema()).unwrap() + "\n";
    if std::env::var("MCC_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(schema_path(), &now).unwrap();
    }
    let then = std::fs::read_to_string(schema_path()).unwrap_or_default();
    assert!(
        then == now,
        "docs/report.schema.json is stale: run `MCC_BLESS=1 cargo test -p mcc-tests --test technique` and review the diff (and docs/report.md)"
    );
}

/// Every shipped recipe's report validates against the committed schema, and the schema
/// rejects a report with a field missing.
#[test]
fn reports_validate_against_the_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for name in ["lenet5", "mobilenet_dw", "inception_mini"] {
        let out = dir.path().join(name);
        build_to(
            &workspace().join(format!("recipes/{name}.mcr")),
            &workspace().join(format!("corpus/{name}.onnx")),
            0,
            &out,
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&report)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        assert_eq!(report["schema_version"], mcc::report::SCHEMA_VERSION);
        assert!(report["native"].is_object(), "{name}: no native section");
        let mut broken = report.clone();
        broken.as_object_mut().unwrap().remove("model_totals");
        assert!(
            !validator.is_valid(&broken),
            "the schema accepts a report without totals"
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

/// Calibration-driven pruning (`by: obs`, `refit: on`) on lenet300 at 80% of every layer:
/// each layer keeps exactly its quota of nonzero weights, and the repaired models are far
/// more accurate than magnitude pruning's (measured on the compiled code, as reported).
/// `scope: global`: one magnitude threshold over all the rule's layers — exactly
/// `floor(amount · total)` weights go, every removed |w| is at most every kept one across the
/// layers, the large layer gives more than the classifier, and the refit runs on the amounts
/// the threshold chose.
#[test]
fn global_magnitude_pruning_uses_one_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/lenet300.onnx");
    let original = mcc_tests::load(&model);
    let layers = ["/fc1/Gemm", "/fc2/Gemm", "/fc3/Gemm"];
    let weights = |g: &mcc_ir::Graph, name: &str| {
        let node = g.node(g.find_node(name).unwrap()).unwrap();
        g.const_data(node.inputs[1].unwrap()).unwrap().to_f64_vec()
    };
    for refit in ["off", "on"] {
        let recipe = write(
            dir.path(),
            "g.mcr",
            &format!(
                "calibrate with \"{}\"\nprune unstructured on Gemm {{ amount: 90%, scope: global, refit: {refit} }}\n",
                data("mnist_calib_x784.npy"),
            ),
        );
        let s = mcc::recipe::check(&recipe, &model).unwrap();
        assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
        let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        let total: usize = layers.iter().map(|l| weights(&original, l).len()).sum();
        let mut zeros = vec![];
        let (mut max_removed, mut min_kept) = (0f64, f64::INFINITY);
        for l in layers {
            let (before, after) = (weights(&original, l), weights(&r.graph, l));
            let z = after.iter().filter(|&&x| x == 0.0).count();
            zeros.push(z as f64 / after.len() as f64);
            for (b, a) in before.iter().zip(&after) {
                assert!(a.is_finite(), "{l}: {a}");
                if *a == 0.0 {
                    max_removed = max_removed.max(b.abs());
                } else {
                    min_kept = min_kept.min(b.abs());
                }
            }
        }
        let removed: f64 = layers
            .iter()
            .zip(&zeros)
            .map(|(l, z)| z * weights(&original, l).len() as f64)
            .sum();
        assert_eq!(
            removed.round() as usize,
            (0.9 * total as f64).floor() as usize,
            "refit {refit}"
        );
        assert!(
            max_removed <= min_kept,
            "refit {refit}: removed |w| {max_removed} > kept {min_kept}"
        );
        assert!(zeros[0] > 0.9 && zeros[2] < 0.9, "refit {refit}: {zeros:?}");
    }
}

/// `amount: auto` under a size budget: each layer gets a value of the sweep (or is left as it
/// is), the model meets the bound, the plan that ran is the allocation (each layer's zeros are
/// its chosen amount), the same inputs give the same allocation, and the uniform alternative
/// removes as many weights.
#[test]
fn auto_amounts_meet_a_size_budget() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/lenet300.onnx");
    let recipe = write(
        dir.path(),
        "a.mcr",
        &format!(
            "calibrate with \"{}\" labels \"{}\"\nevaluate with \"{}\" labels \"{}\"\n\
             budget {{\n  size <= 200 KB\n}}\nprune unstructured on Gemm {{ amount: auto }}\n",
            data("mnist_calib_x784.npy"),
            data("mnist_calib_y.npy"),
            data("mnist_test_x784.npy"),
            data("mnist_test_y.npy")
        ),
    );
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let sweep = [0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95];
    let mut seen = vec![];
    for _ in 0..2 {
        let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert!(r.report.model_totals.bytes.after <= 200_000);
        let a = r
            .report
            .allocation
            .as_ref()
            .expect("an allocation in the report");
        assert_eq!(a.layers.len(), 3);
        let (mut removed, mut total) = (0.0, 0.0);
        for l in &a.layers {
            assert_eq!(l.curve.len(), sweep.len(), "{}", l.layer);
            assert!(
                l.curve
                    .iter()
                    .all(|p| p.error.is_finite() && p.accuracy.is_some())
            );
            let node = r.graph.node(r.graph.find_node(&l.layer).unwrap()).unwrap();
            let w = r
                .graph
                .const_data(node.inputs[1].unwrap())
                .unwrap()
                .to_f64_vec();
            let zeros = w.iter().filter(|&&x| x == 0.0).count();
            let want = l.value.map_or(0, |v| {
                assert!(sweep.contains(&v), "{}: {v} is not a sweep value", l.layer);
                (v * w.len() as f64).floor() as usize
            });
            assert_eq!(zeros, want, "{}", l.layer);
            removed += zeros as f64;
            total += w.len() as f64;
        }
        let u = a.uniform.as_ref().expect("the uniform alternative");
        assert!(
            (u.value - removed / total).abs() < 1e-3,
            "{} vs {}",
            u.value,
            removed / total
        );
        assert!(
            u.evaluation_accuracy
                .is_some_and(|x| (0.0..=1.0).contains(&x))
        );
        seen.push(a.layers.iter().map(|l| l.value).collect::<Vec<_>>());
    }
    assert_eq!(seen[0], seen[1], "the allocation is not deterministic");
}

#[test]
fn calibration_driven_pruning_repairs_what_magnitude_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/lenet300.onnx");
    let mut acc = std::collections::BTreeMap::new();
    for (by, refit) in [
        ("magnitude", "off"),
        ("magnitude", "on"),
        ("obs", "off"),
        ("obs", "on"),
    ] {
        let recipe = write(
            dir.path(),
            "p.mcr",
            &format!(
                "calibrate with \"{}\"\nevaluate with \"{}\" labels \"{}\"\n\
                 prune unstructured on Gemm {{ amount: 80%, by: {by}, refit: {refit} }}\n",
                data("mnist_calib_x784.npy"),
                data("mnist_test_x784.npy"),
                data("mnist_test_y.npy")
            ),
        );
        let s = mcc::recipe::check(&recipe, &model).unwrap();
        assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
        let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        for name in ["/fc1/Gemm", "/fc2/Gemm", "/fc3/Gemm"] {
            let g = &r.graph;
            let node = g.node(g.find_node(name).unwrap()).unwrap();
            let w = g.const_data(node.inputs[1].unwrap()).unwrap().to_f64_vec();
            let zeros = w.iter().filter(|&&x| x == 0.0).count();
            assert_eq!(
                zeros,
                (0.8 * w.len() as f64).floor() as usize,
                "{by}/{refit} {name}"
            );
            assert!(w.iter().all(|x| x.is_finite()), "{by}/{refit} {name}");
        }
        let a = r.report.model_totals.accuracy.as_ref().unwrap();
        println!(
            "{by} refit {refit}: {:.1}% → {:.1}%",
            a.before * 100.0,
            a.after * 100.0
        );
        acc.insert((by, refit), a.after);
    }
    // Measured 78.7%, 96.5%, 92.3% and 96.1% of 97.2% (1000 samples).
    let plain = acc[&("magnitude", "off")];
    assert!(acc[&("magnitude", "on")] >= 0.95, "{acc:?}");
    assert!(acc[&("obs", "on")] >= 0.95, "{acc:?}");
    assert!(acc[&("obs", "off")] >= plain + 0.05, "{acc:?}");
}

/// `prune nm` on vgg_bn: every Conv and Gemm whose reduction divides by 4 keeps at most 2 of
/// every 4 consecutive weights along it (exactly 2 when none was zero), stored `nm(2:4)`; the
/// one-channel stem (9 per filter) is left alone with its reason.
#[test]
fn n_m_pruning_keeps_n_of_every_m_along_the_reduction() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(
        dir.path(),
        "nm.mcr",
        "prune nm on Conv | Gemm { n: 2, m: 4 }\n",
    );
    let model = workspace().join("corpus/vgg_bn.onnx");
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    let g = &r.graph;
    let mut pruned = 0;
    for n in g.node_ids() {
        let node = g.node(n).unwrap();
        if !matches!(node.op, mcc_ir::Op::Conv(_) | mcc_ir::Op::Gemm(_)) {
            continue;
        }
        let w = node.inputs[1].unwrap();
        let t = g.const_data(w).unwrap();
        let k: usize = t.shape()[1..].iter().product();
        if !k.is_multiple_of(4) {
            let left = r
                .report
                .left_alone
                .iter()
                .find(|l| l.node == node.name)
                .unwrap();
            assert_eq!(left.reason, mcc_plan::Reason::ShapeMismatch, "{left:?}");
            continue;
        }
        pruned += 1;
        for group in t.to_f64_vec().chunks(4) {
            assert_eq!(
                group.iter().filter(|&&x| x != 0.0).count(),
                2,
                "{}",
                node.name
            );
        }
        let stored = g.stored(w).map(|s| s.encoding().to_string());
        assert_eq!(stored.as_deref(), Some("f32 nm(2:4)"), "{}", node.name);
    }
    assert!(pruned >= 5, "{pruned} layers pruned");
}

/// `factorize svd` on lenet300's hidden layers and resnet_bn's strided 1×1 shortcut
/// projections — each becomes a `.lowrank` layer of rank r followed by the original layer
/// reading it — `factorize tucker` on a vgg_bn 3×3 conv (1×1, core, 1×1) and `factorize
/// separable` on lenet5's 5×5 conv2 (5×1, then 1×5): the exported ONNX models run in ONNX
/// Runtime to the evaluator's outputs.
#[test]
fn factorized_layers_are_chains_that_onnx_runtime_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (model, rule, input, layer, a_shape, b_shape) in [
        (
            "lenet300",
            "factorize svd on \"/fc1/Gemm\" | \"/fc2/Gemm\" { rank: 16 }",
            "mnist_test_x784.npy",
            "/fc1/Gemm",
            vec![16, 784],
            vec![300, 16],
        ),
        (
            "vgg_bn",
            "factorize tucker on \"/features/features.3/features.3.0/Conv\" { rank: 12 }",
            "mnist_test_x.npy",
            "/features/features.3/features.3.0/Conv",
            // The core, 12 → 12 channels, 3×3 (after `.tucker_in`, 32 → 12, 1×1); the layer
            // itself is now 12 → 64, 1×1.
            vec![12, 12, 3, 3],
            vec![64, 12, 1, 1],
        ),
        (
            "lenet5",
            "factorize separable on \"/conv2/Conv\" { rank: 12 }",
            "mnist_test_x.npy",
            "/conv2/Conv",
            // 20 → 12 channels 5×1, then 12 → 50 channels 1×5.
            vec![12, 20, 5, 1],
            vec![50, 12, 1, 5],
        ),
        (
            "resnet_bn",
            "factorize svd on Conv[kernel == 1] { size: 30% }",
            "mnist_test_x.npy",
            "/layers/layers.4/proj/proj.0/Conv",
            // rank floor(0.3 · 32 · 64 / 96) = 6
            vec![6, 32, 1, 1],
            vec![64, 6, 1, 1],
        ),
    ] {
        let recipe = write(dir.path(), "f.mcr", &format!("{rule}\n"));
        let s =
            mcc::recipe::check(&recipe, &workspace().join(format!("corpus/{model}.onnx"))).unwrap();
        assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
        let b = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        let g = &b.graph;
        let shape_of = |name: &str| {
            let n = g.node(g.find_node(name).unwrap()).unwrap();
            g.const_data(n.inputs[1].unwrap()).unwrap().shape().to_vec()
        };
        let first = if rule.contains("tucker") {
            assert_eq!(shape_of(&format!("{layer}.tucker_in")), [12, 32, 1, 1]);
            format!("{layer}.tucker_core")
        } else if rule.contains("separable") {
            format!("{layer}.vertical")
        } else {
            format!("{layer}.lowrank")
        };
        assert_eq!(shape_of(&first), a_shape, "{model}");
        assert_eq!(shape_of(layer), b_shape, "{model}");
        if mcc_tests::skip_ort() {
            continue;
        }
        let x = mcc::tensor_io::read_npy(&workspace().join("corpus/data").join(input)).unwrap();
        let x = mcc::tensor_io::slice_batch(&x, 0, 64);
        let xp = dir.path().join("x.npy");
        mcc::tensor_io::write_npy(&xp, &x).unwrap();
        let path = dir.path().join(format!("{model}.onnx"));
        mcc_onnx::export_file(g, &path).unwrap();
        let want = mcc_ir::run(g, std::slice::from_ref(&x)).unwrap().remove(0);
        let got = mcc_tests::run_ort(&path, std::slice::from_ref(&xp), dir.path());
        let d = mcc_tests::compare(&got, &want, 1e-4, 1e-5);
        assert!(d.allclose, "{model}: ONNX Runtime differs: {d:?}");
    }
}

/// `prune filters` on resnet_bn (no refit, so it is quick): every residual group keeps half
/// its channels in all its producers at once, the graph re-types, the MACs fall, and the
/// exported model runs in ONNX Runtime to the evaluator's outputs.
#[test]
fn filter_pruning_shrinks_residual_groups_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "f.mcr", "prune filters on Conv { keep: 50% }\n");
    let model = workspace().join("corpus/resnet_bn.onnx");
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    // `explain` names each layer's group: the block's conv, its shortcut and the next block's.
    let explained = mcc::recipe::explain(&s);
    let line = explained
        .lines()
        .find(|l| l.starts_with("/layers/layers.2/proj/proj.0/Conv "))
        .unwrap();
    assert!(
        line.contains(
            "group of 32 channels: /layers/layers.2/proj/proj.0/Conv, /layers/layers.2/conv2/Conv, /layers/layers.3/conv2/Conv"
        ),
        "{line}"
    );
    let b = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    let g = &b.graph;
    mcc_ir::verify(g).unwrap();
    let orig = mcc_tests::load(&model);
    let out_channels = |g: &mcc_ir::Graph, name: &str| {
        let n = g.node(g.find_node(name).unwrap()).unwrap();
        g.const_data(n.inputs[1].unwrap()).unwrap().shape()[0]
    };
    // A residual block's second conv and its shortcut projection meet in an Add: one group.
    let (a, p) = (
        "/layers/layers.2/conv2/Conv",
        "/layers/layers.2/proj/proj.0/Conv",
    );
    assert_eq!(out_channels(g, a), out_channels(&orig, a) / 2);
    assert_eq!(out_channels(g, a), out_channels(g, p));
    let macs = &b.report.model_totals.macs;
    assert!(macs.after * 2 < macs.before, "{macs:?}");
    if mcc_tests::skip_ort() {
        return;
    }
    let x = mcc::tensor_io::read_npy(&workspace().join("corpus/data/mnist_test_x.npy")).unwrap();
    let x = mcc::tensor_io::slice_batch(&x, 0, 64);
    let xp = dir.path().join("x.npy");
    mcc::tensor_io::write_npy(&xp, &x).unwrap();
    let path = dir.path().join("pruned.onnx");
    mcc_onnx::export_file(g, &path).unwrap();
    let want = mcc_ir::run(g, std::slice::from_ref(&x)).unwrap().remove(0);
    let got = mcc_tests::run_ort(&path, std::slice::from_ref(&xp), dir.path());
    let d = mcc_tests::compare(&got, &want, 1e-4, 1e-5);
    assert!(d.allclose, "ONNX Runtime differs: {d:?}");
}

/// `prune filters` through inception_mini's Concats (no refit, so the pruned model is exact):
/// each branch is its own group, read by the next block at its offset of the joined tensor
/// and by the classifier at its features after the pool. The pruned model computes exactly
/// what the original does with the removed filters zeroed (their ReLU outputs are then zero,
/// so no reader sees them) — which holds only if every reader lost the right columns at the
/// right offset — and ONNX Runtime runs its export to the evaluator's outputs.
#[test]
fn filter_pruning_through_concats_removes_each_operands_channels_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(
        dir.path(),
        "f.mcr",
        "prune filters on Conv { keep: 50%, align: exact }\n",
    );
    let model = workspace().join("corpus/inception_mini.onnx");
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let explained = mcc::recipe::explain(&s);
    let line = explained
        .lines()
        .find(|l| l.starts_with("/inc_a/b3/b3.1/b3.1.0/Conv "))
        .unwrap();
    assert!(
        line.contains("through /inc_a/Concat; read by /inc_b/b1/b1.0/Conv"),
        "{line}"
    );
    let b = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    let g = &b.graph;
    mcc_ir::verify(g).unwrap();
    assert!(b.report.left_alone.is_empty(), "{:?}", b.report.left_alone);
    let orig = mcc_tests::load(&model);
    // Which filters each Conv kept: its biases are a subsequence of the original's (no two
    // biases of a layer are equal in this model).
    let mut zeroed = orig.clone();
    let mut pruned_layers = 0;
    for n in orig.node_ids() {
        let node = orig.node(n).unwrap();
        if !matches!(node.op, mcc_ir::Op::Conv(_)) {
            continue;
        }
        let bias = |g: &Graph| -> Vec<f32> {
            let n = g.node(g.find_node(&node.name).unwrap()).unwrap();
            g.const_data(n.inputs[2].unwrap())
                .unwrap()
                .as_f32()
                .unwrap()
                .iter()
                .copied()
                .collect()
        };
        let (before, after) = (bias(&orig), bias(g));
        let mut kept = vec![false; before.len()];
        let mut at = 0;
        for v in &after {
            while before[at].to_bits() != v.to_bits() {
                at += 1;
            }
            kept[at] = true;
            at += 1;
        }
        if after.len() == before.len() {
            continue;
        }
        assert_eq!(after.len(), before.len() / 2, "{}", node.name);
        pruned_layers += 1;
        for slot in [1, 2] {
            let v = node.inputs[slot].unwrap();
            let mut t = orig.const_data(v).unwrap().as_f32().unwrap().clone();
            for (c, &k) in kept.iter().enumerate() {
                if !k {
                    t.index_axis_mut(ndarray::Axis(0), c).fill(0.0);
                }
            }
            let z = zeroed.add_const(format!("zeroed_{slot}_{}", node.name), Tensor::F32(t));
            zeroed.set_input(n, slot, Some(z)).unwrap();
        }
    }
    assert_eq!(
        pruned_layers, 15,
        "each of the 15 Convs loses half its filters"
    );
    let macs = &b.report.model_totals.macs;
    assert!(macs.after * 3 < macs.before, "{macs:?}");
    let x = mcc::tensor_io::read_npy(&workspace().join("corpus/data/mnist_test_x.npy")).unwrap();
    let x = mcc::tensor_io::slice_batch(&x, 0, 64);
    let want = mcc_ir::run(&zeroed, std::slice::from_ref(&x))
        .unwrap()
        .remove(0);
    let got = mcc_ir::run(g, std::slice::from_ref(&x)).unwrap().remove(0);
    let d = mcc_tests::compare(&got, &want, 1e-4, 1e-5);
    assert!(
        d.allclose,
        "the pruned model is not the zeroed original: {d:?}"
    );
    if mcc_tests::skip_ort() {
        return;
    }
    let xp = dir.path().join("x.npy");
    mcc::tensor_io::write_npy(&xp, &x).unwrap();
    let path = dir.path().join("pruned.onnx");
    mcc_onnx::export_file(g, &path).unwrap();
    let ort = mcc_tests::run_ort(&path, std::slice::from_ref(&xp), dir.path());
    let d = mcc_tests::compare(&ort, &got, 1e-4, 1e-5);
    assert!(d.allclose, "ONNX Runtime differs: {d:?}");
}

/// `mcc sensitivity` runs steps that read calibration statistics: each swept setting of
/// `recipes/lenet300-prune-refit.mcr` is refit on the calibration data, as in a build, so
/// fc1 at 91% keeps far more accuracy than magnitude pruning alone would (78.7% at 80% of
/// every layer, 45.7% at 90%).
#[test]
fn sensitivity_sweeps_steps_that_read_statistics() {
    let s = mcc::recipe::check(
        &workspace().join("recipes/lenet300-prune-refit.mcr"),
        &workspace().join("corpus/lenet300.onnx"),
    )
    .unwrap();
    let r = mcc::sensitivity::run(&s, 2, Some(500)).unwrap();
    assert_eq!(r.rows.len(), 3, "{r:?}");
    let fc1 = r.rows.iter().find(|row| row.layer == "/fc1/Gemm").unwrap();
    assert!((fc1.setting.value - 0.91).abs() < 1e-9);
    assert!(fc1.setting.metric >= 0.93, "{fc1:?}");
    assert!(
        fc1.sweep
            .iter()
            .all(|p| p.metric.is_finite() && p.metric > 0.5),
        "{fc1:?}"
    );
}

/// Deep Compression's stages on lenet300, after 80% magnitude pruning: `quantize kmeans`
/// leaves every pruned weight zero and gives each layer at most 2^bits distinct nonzero
/// values (per output channel with `per: channel`), stored as a codebook; `encode huffman`
/// changes no weight by a single bit and stores fewer bytes; the refit of the centroids on
/// calibration data keeps the accuracy of the pruned model within a point.
#[test]
fn weight_sharing_and_huffman_coding_compose() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/lenet300.onnx");
    let head = format!(
        "calibrate with \"{}\"\nevaluate with \"{}\" labels \"{}\"\n\
         stage prune {{\n  prune unstructured on Gemm {{ amount: 80%, refit: on }}\n}}\n",
        data("mnist_calib_x784.npy"),
        data("mnist_test_x784.npy"),
        data("mnist_test_y.npy")
    );
    let build = |tail: &str| {
        let recipe = write(dir.path(), "dc.mcr", &format!("{head}{tail}"));
        let s = mcc::recipe::check(&recipe, &model).unwrap();
        assert!(!s.checked.has_errors(), "{tail}: {:#?}", s.checked.diags);
        mcc::build::build(&s, &mcc::build::Options::default()).unwrap()
    };
    let weights = |r: &mcc::build::BuildResult, name: &str| -> (Vec<f32>, Vec<usize>, String) {
        let g = &r.graph;
        let w = g.node(g.find_node(name).unwrap()).unwrap().inputs[1].unwrap();
        let t = g.const_data(w).unwrap();
        let enc = g
            .stored(w)
            .map(|s| s.encoding().to_string())
            .unwrap_or_default();
        (
            t.as_f32().unwrap().iter().copied().collect(),
            t.shape().to_vec(),
            enc,
        )
    };
    let layers = ["/fc1/Gemm", "/fc2/Gemm", "/fc3/Gemm"];
    let pruned = build("");
    let accuracy =
        |r: &mcc::build::BuildResult| r.report.model_totals.accuracy.as_ref().unwrap().after;
    for (per, refit) in [("tensor", "off"), ("tensor", "on"), ("channel", "on")] {
        let cluster = format!(
            "stage cluster {{\n  quantize kmeans on Gemm {{ bits: 4, per: {per}, refit: {refit} }}\n}}\n"
        );
        let shared = build(&cluster);
        for name in layers {
            let (w0, shape, _) = weights(&pruned, name);
            let (w, _, enc) = weights(&shared, name);
            assert!(
                enc.starts_with(&format!("codebook4 per {per}")),
                "{per}/{refit} {name}: {enc}"
            );
            for (a, b) in w0.iter().zip(&w) {
                assert_eq!(*a == 0.0, *b == 0.0, "{per}/{refit} {name}: zeros moved");
                assert!(b.is_finite(), "{per}/{refit} {name}");
            }
            // lenet300's Gemms are transB: a row of the tensor is an output channel.
            let rows: Vec<&[f32]> = if per == "channel" {
                w.chunks(shape[1]).collect()
            } else {
                vec![&w[..]]
            };
            for row in rows {
                let mut distinct: Vec<u32> = row
                    .iter()
                    .filter(|x| **x != 0.0)
                    .map(|x| x.to_bits())
                    .collect();
                distinct.sort_unstable();
                distinct.dedup();
                assert!(
                    distinct.len() <= 16,
                    "{per}/{refit} {name}: {}",
                    distinct.len()
                );
            }
        }
        println!(
            "kmeans 4 bits per {per} refit {refit}: {:.1}%",
            accuracy(&shared) * 100.0
        );
        if refit == "on" {
            assert!(
                accuracy(&shared) >= accuracy(&pruned) - 0.01,
                "{per}: {} after clustering, {} pruned",
                accuracy(&shared),
                accuracy(&pruned)
            );
        }
        // Huffman coding changes no bit and stores less.
        let coded = build(&format!(
            "{cluster}stage encode {{\n  encode huffman on Gemm\n}}\n"
        ));
        for name in layers {
            let (a, _, _) = weights(&shared, name);
            let (b, _, enc) = weights(&coded, name);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&a),
                bits(&b),
                "{per}/{refit} {name}: Huffman changed a weight"
            );
            if name == "/fc1/Gemm" {
                assert!(enc.ends_with("huffman"), "{name}: {enc}");
            }
        }
        let bytes = |r: &mcc::build::BuildResult| r.report.model_totals.bytes.after;
        assert!(
            bytes(&coded) < bytes(&shared) && bytes(&shared) < bytes(&pruned),
            "{} coded, {} clustered, {} pruned",
            bytes(&coded),
            bytes(&shared),
            bytes(&pruned)
        );
    }
    // Dense f32 weights have nothing to code: left alone, with the reason.
    let recipe = write(dir.path(), "h.mcr", "encode huffman on Gemm\n");
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    assert_eq!(r.report.left_alone.len(), 3, "{:#?}", r.report.left_alone);
    assert!(
        r.report
            .left_alone
            .iter()
            .all(|l| l.reason == mcc_plan::Reason::NotSmaller),
        "{:#?}",
        r.report.left_alone
    );
}

/// `quantize int` on lenet300 at 3 bits: every weight is its code times its channel's scale
/// (codes in [−4, 3]); GPTQ's compensation gives outputs closer to the original's than
/// rounding to nearest; `per: group` leaves alone, with the reason, the layers whose rows do
/// not divide into groups. `quantize ternary` and `binary` on lenet5 leave each output
/// channel at most two nonzero values, ternary's zeros including every weight below its
/// threshold.
#[test]
fn integer_binary_and_ternary_weights_take_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let lenet300 = workspace().join("corpus/lenet300.onnx");
    let build = |model: &Path, calib: &str, rule: &str| {
        let recipe = write(
            dir.path(),
            "q.mcr",
            &format!("calibrate with \"{}\"\n{rule}\n", data(calib)),
        );
        let s = mcc::recipe::check(&recipe, model).unwrap();
        assert!(!s.checked.has_errors(), "{rule}: {:#?}", s.checked.diags);
        let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        (s, r)
    };
    let mut error = vec![];
    for rounding in ["nearest", "gptq"] {
        let (s, r) = build(
            &lenet300,
            "mnist_calib_x784.npy",
            &format!("quantize int on Gemm {{ bits: 3, rounding: {rounding} }}"),
        );
        let g = &r.graph;
        for name in ["/fc1/Gemm", "/fc2/Gemm", "/fc3/Gemm"] {
            let w = g.node(g.find_node(name).unwrap()).unwrap().inputs[1].unwrap();
            let stored = g.stored(w).unwrap();
            assert_eq!(
                stored.encoding().to_string(),
                "int3 per channel(0) dense",
                "{rounding} {name}"
            );
            let parts = stored.parts().unwrap();
            assert!(parts.codes.iter().all(|c| (-4..=3).contains(c)), "{name}");
            assert!(parts.zero_points.iter().all(|&z| z == 0), "{name}");
            let t = g.const_data(w).unwrap();
            let cols = t.shape()[1];
            for (i, v) in t.as_f32().unwrap().iter().enumerate() {
                assert_eq!(
                    *v,
                    parts.codes[i] as f32 * parts.scales[i / cols],
                    "{name}[{i}]"
                );
            }
        }
        // Output error against the original on the calibration data.
        let x = mcc_tests::npy(&workspace().join("corpus/data/mnist_calib_x784.npy"));
        let a = mcc_ir::run(&s.model.graph, std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        let b = mcc_ir::run(g, &[x]).unwrap().remove(0);
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        let num: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
        let den: f64 = a.iter().map(|x| x * x).sum();
        error.push((num / den).sqrt());
    }
    assert!(error.iter().all(|e| e.is_finite()), "{error:?}");
    assert!(
        error[1] < 0.7 * error[0],
        "GPTQ {} vs nearest {}",
        error[1],
        error[0]
    );
    let (_, r) = build(
        &lenet300,
        "mnist_calib_x784.npy",
        "quantize int on Gemm { bits: 4, per: group, group: 16 }",
    );
    let left: Vec<&str> = r
        .report
        .left_alone
        .iter()
        .map(|l| l.node.as_str())
        .collect();
    assert_eq!(
        left,
        ["/fc2/Gemm", "/fc3/Gemm"],
        "{:#?}",
        r.report.left_alone
    );
    let g = &r.graph;
    let w = g.node(g.find_node("/fc1/Gemm").unwrap()).unwrap().inputs[1].unwrap();
    assert_eq!(
        g.stored(w).unwrap().encoding().to_string(),
        "int4 per group(16) dense"
    );

    let lenet5 = workspace().join("corpus/lenet5.onnx");
    for (rule, ternary) in [
        ("quantize ternary on Conv | Gemm { refit: on }", true),
        ("quantize binary on Gemm", false),
    ] {
        let (s, r) = build(&lenet5, "mnist_calib_x.npy", rule);
        for name in ["/conv2/Conv", "/fc1/Gemm", "/fc2/Gemm"] {
            let weights = |g: &mcc_ir::Graph| -> (Vec<f32>, usize) {
                let w = g.node(g.find_node(name).unwrap()).unwrap().inputs[1].unwrap();
                let t = g.const_data(w).unwrap();
                (t.as_f32().unwrap().iter().copied().collect(), t.shape()[0])
            };
            let (before, rows) = weights(&s.model.graph);
            let (after, _) = weights(&r.graph);
            if !ternary && name.contains("Conv") {
                assert_eq!(before, after, "{rule}: {name} is not selected");
                continue;
            }
            let k = after.len() / rows;
            for (row0, row) in before.chunks(k).zip(after.chunks(k)) {
                let mut values: Vec<u32> = row
                    .iter()
                    .filter(|v| **v != 0.0)
                    .map(|v| v.to_bits())
                    .collect();
                values.sort_unstable();
                values.dedup();
                assert!(values.len() <= 2, "{rule}: {name}: {} values", values.len());
                let mean = row0.iter().map(|v| f64::from(v.abs())).sum::<f64>() / k as f64;
                for (a, b) in row0.iter().zip(row) {
                    if ternary && f64::from(a.abs()) <= 0.7 * mean {
                        assert_eq!(*b, 0.0, "{rule}: {name}: {a} under the threshold");
                    } else if *b != 0.0 {
                        assert_eq!(a.signum(), b.signum(), "{rule}: {name}: sign of {a}");
                    }
                }
            }
        }
    }
}

/// `bits: auto` (mixed precision) on lenet300 under the size of uniform 3-bit weights: every
/// layer gets a width of the sweep (or stays f32), the measured size meets the budget, and
/// the uniform alternative the report names is 3 bits, no more accurate than the allocation
/// by more than a point.
#[test]
fn mixed_precision_spends_a_size_budget_unevenly() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/lenet300.onnx");
    let recipe = write(
        dir.path(),
        "mixed.mcr",
        &format!(
            "calibrate with \"{}\" labels \"{}\"\nevaluate with \"{}\" labels \"{}\"\n\
             budget {{ size <= 103515 B }}\nquantize int on Gemm {{ bits: auto }}\n",
            data("mnist_calib_x784.npy"),
            data("mnist_calib_y.npy"),
            data("mnist_test_x784.npy"),
            data("mnist_test_y.npy")
        ),
    );
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.report.model_totals.bytes.after <= 103_515);
    let a = r.report.allocation.as_ref().expect("an allocation");
    for l in &a.layers {
        assert_eq!(l.param, "bits");
        assert!(
            l.value
                .is_none_or(|v| [8.0, 6.0, 5.0, 4.0, 3.0, 2.0].contains(&v)),
            "{l:?}"
        );
        assert_eq!(l.curve.len(), 6, "{}", l.layer);
    }
    let u = a.uniform.as_ref().expect("the uniform alternative");
    assert_eq!(u.value, 3.0);
    let chosen = r.report.model_totals.accuracy.as_ref().unwrap().after;
    let uniform = u.evaluation_accuracy.unwrap();
    println!("mixed {chosen}, uniform 3-bit {uniform}");
    assert!(
        chosen >= uniform - 0.01,
        "mixed {chosen}, uniform {uniform}"
    );
}

/// `factorize separable` is the best rank-r split: on lenet5's conv2, the layer's output
/// error against the original falls as the rank grows, and at the largest rank that still
/// stores fewer weights it is small.
#[test]
fn separable_factorization_error_falls_with_rank() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/lenet5.onnx");
    let x = mcc_tests::npy(&workspace().join("corpus/data/mnist_test_x.npy"));
    let x = mcc::tensor_io::slice_batch(&x, 0, 100);
    let mut errors = vec![];
    for rank in [2, 6, 12, 20, 30] {
        let recipe = write(
            dir.path(),
            "s.mcr",
            &format!("factorize separable on \"/conv2/Conv\" {{ rank: {rank} }}\n"),
        );
        let s = mcc::recipe::check(&recipe, &model).unwrap();
        let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        assert!(
            r.report.left_alone.is_empty(),
            "rank {rank}: {:?}",
            r.report.left_alone
        );
        let a = mcc_ir::run(&s.model.graph, std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        let b = mcc_ir::run(&r.graph, std::slice::from_ref(&x))
            .unwrap()
            .remove(0);
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        let num: f64 = a.iter().zip(&b).map(|(p, q)| (p - q).powi(2)).sum();
        let den: f64 = a.iter().map(|p| p * p).sum();
        errors.push((num / den).sqrt());
    }
    println!("separable conv2, ranks 2 6 12 20 30: {errors:?}");
    assert!(errors.iter().all(|e| e.is_finite()), "{errors:?}");
    assert!(errors.windows(2).all(|w| w[1] < w[0]), "{errors:?}");
    assert!(errors[4] < 0.05, "{errors:?}");
}

/// `prune filters … by: apoz` on vgg_bn's first conv keeps exactly the channels with the
/// fewest zeros where the next conv reads them (after the norm and ReLU), measured here with
/// the evaluator on the calibration data.
#[test]
fn apoz_keeps_the_channels_least_often_zero() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/vgg_bn.onnx");
    let layer = "/features/features.0/features.0.0/Conv";
    let recipe = write(
        dir.path(),
        "apoz.mcr",
        &format!(
            "calibrate with \"{}\"\nprune filters on \"{layer}\" {{ keep: 50%, by: apoz }}\n",
            data("mnist_calib_x.npy")
        ),
    );
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    let (g0, g1) = (&s.model.graph, &r.graph);
    let weights = |g: &mcc_ir::Graph, name: &str| {
        let n = g.node(g.find_node(name).unwrap()).unwrap();
        g.const_data(n.inputs[1].unwrap()).unwrap().clone()
    };
    // The reader: the Conv whose input channels shrank.
    let reader = g1
        .node_ids()
        .into_iter()
        .filter_map(|n| g1.node(n))
        .find(|n| {
            matches!(n.op, mcc_ir::Op::Conv(_))
                && n.name != layer
                && weights(g1, &n.name).shape()[1] != weights(g0, &n.name).shape()[1]
        })
        .expect("a reader lost input channels")
        .name
        .clone();
    let read = g0.node(g0.find_node(&reader).unwrap()).unwrap().inputs[0].unwrap();
    let x = mcc_tests::npy(&workspace().join("corpus/data/mnist_calib_x.npy"));
    let mut zeros: Vec<f64> = vec![];
    mcc_ir::eval::run_observed(g0, &[x], &mut |v, t| {
        if v == read {
            let (n, c) = (t.shape()[0], t.shape()[1]);
            let hw: usize = t.shape()[2..].iter().product();
            let d = t.to_f64_vec();
            zeros = (0..c)
                .map(|ch| {
                    let z = (0..n)
                        .flat_map(|i| &d[(i * c + ch) * hw..(i * c + ch + 1) * hw])
                        .filter(|v| **v == 0.0)
                        .count();
                    z as f64 / (n * hw) as f64
                })
                .collect();
        }
    })
    .unwrap();
    let c = zeros.len();
    assert!(c > 0, "the read value was not observed");
    let mut order: Vec<usize> = (0..c).collect();
    order.sort_by(|&a, &b| zeros[a].total_cmp(&zeros[b]).then(a.cmp(&b)));
    let mut want: Vec<usize> = order[..c / 2].to_vec();
    want.sort_unstable();
    // Which original filters survived: each kept row equals one original row.
    let (w0, w1) = (weights(g0, layer), weights(g1, layer));
    let k = w0.len() / c;
    let (a, b) = (w0.to_f64_vec(), w1.to_f64_vec());
    let got: Vec<usize> = b
        .chunks(k)
        .map(|row| (0..c).find(|&i| &a[i * k..(i + 1) * k] == row).unwrap())
        .collect();
    assert_eq!(got, want, "zero fractions {zeros:?}");
}

/// `prune filters … by: thinet` chooses the channels whose removal moves the next layer's
/// outputs least: pruning vgg_bn's first conv to half, without a refit, the reading conv's
/// outputs on the calibration data move less than with the L1 choice.
#[test]
fn thinet_moves_the_next_layer_less_than_l1() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/vgg_bn.onnx");
    let layer = "/features/features.0/features.0.0/Conv";
    let x = mcc_tests::npy(&workspace().join("corpus/data/mnist_calib_x.npy"));
    let mut errors = vec![];
    for by in ["l1", "thinet"] {
        let recipe = write(
            dir.path(),
            "t.mcr",
            &format!(
                "calibrate with \"{}\"\nprune filters on \"{layer}\" {{ keep: 50%, by: {by} }}\n",
                data("mnist_calib_x.npy")
            ),
        );
        let s = mcc::recipe::check(&recipe, &model).unwrap();
        assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
        let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        // The reader's output: the one Conv after `layer` whose input channels shrank.
        let (g0, g1) = (&s.model.graph, &r.graph);
        let channels_in = |g: &mcc_ir::Graph, n: &mcc_ir::Node| {
            g.const_data(n.inputs[1].unwrap()).unwrap().shape()[1]
        };
        let reader = g1
            .node_ids()
            .into_iter()
            .filter_map(|n| g1.node(n))
            .find(|n| {
                matches!(n.op, mcc_ir::Op::Conv(_))
                    && n.name != layer
                    && channels_in(g1, n)
                        != channels_in(g0, g0.node(g0.find_node(&n.name).unwrap()).unwrap())
            })
            .expect("a reader")
            .name
            .clone();
        let observe = |g: &mcc_ir::Graph| -> Vec<f64> {
            let out = g.node(g.find_node(&reader).unwrap()).unwrap().outputs[0];
            let mut got = vec![];
            mcc_ir::eval::run_observed(g, std::slice::from_ref(&x), &mut |v, t| {
                if v == out {
                    got = t.to_f64_vec();
                }
            })
            .unwrap();
            got
        };
        let (a, b) = (observe(g0), observe(g1));
        assert_eq!(a.len(), b.len());
        let num: f64 = a.iter().zip(&b).map(|(p, q)| (p - q).powi(2)).sum();
        let den: f64 = a.iter().map(|p| p * p).sum();
        errors.push((num / den).sqrt());
    }
    println!("reader output error, l1 then thinet: {errors:?}");
    assert!(errors.iter().all(|e| e.is_finite()), "{errors:?}");
    assert!(
        errors[1] < errors[0],
        "thinet {} vs l1 {}",
        errors[1],
        errors[0]
    );
}

/// `prune channels` names the layers that read the channels: on vgg_bn, the second conv keeps
/// the half of its input channels whose weights have the largest L1 norm, and the conv that
/// makes them loses the same filters. On resnet_bn, where several selected convs read one
/// residual group, each group is pruned once (no channel count falls to a quarter).
#[test]
fn prune_channels_shrinks_the_group_a_layer_reads() {
    let dir = tempfile::tempdir().unwrap();
    let model = workspace().join("corpus/vgg_bn.onnx");
    let reader = "/features/features.3/features.3.0/Conv";
    let recipe = write(
        dir.path(),
        "c.mcr",
        &format!("prune channels on \"{reader}\" {{ keep: 50% }}\n"),
    );
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    let (g0, g1) = (&s.model.graph, &r.graph);
    let weights = |g: &mcc_ir::Graph, name: &str| {
        let n = g.node(g.find_node(name).unwrap()).unwrap();
        g.const_data(n.inputs[1].unwrap()).unwrap().clone()
    };
    let (w0, w1) = (weights(g0, reader), weights(g1, reader));
    let (o, c) = (w0.shape()[0], w0.shape()[1]);
    let kk: usize = w0.shape()[2..].iter().product();
    assert_eq!(w1.shape()[1], c / 2);
    let a = w0.to_f64_vec();
    let norm = |ch: usize| -> f64 {
        (0..o)
            .map(|oo| {
                a[(oo * c + ch) * kk..(oo * c + ch + 1) * kk]
                    .iter()
                    .map(|v| v.abs())
                    .sum::<f64>()
            })
            .sum()
    };
    let mut order: Vec<usize> = (0..c).collect();
    order.sort_by(|&x, &y| norm(y).total_cmp(&norm(x)).then(x.cmp(&y)));
    let mut want: Vec<usize> = order[..c / 2].to_vec();
    want.sort_unstable();
    // Which input channels survived: each kept slice equals one original slice.
    let b = w1.to_f64_vec();
    let slice = |d: &[f64], cc: usize, ch: usize| -> Vec<f64> {
        (0..o)
            .flat_map(|oo| d[(oo * cc + ch) * kk..(oo * cc + ch + 1) * kk].to_vec())
            .collect()
    };
    let got: Vec<usize> = (0..c / 2)
        .map(|j| {
            let sj = slice(&b, c / 2, j);
            (0..c).find(|&ch| slice(&a, c, ch) == sj).unwrap()
        })
        .collect();
    assert_eq!(got, want);
    // The conv that makes them (before a norm, a ReLU and a pool) lost those filters.
    let producer = "/features/features.1/features.1.0/Conv";
    assert_eq!(weights(g1, producer).shape()[0], c / 2);

    let model = workspace().join("corpus/resnet_bn.onnx");
    let recipe = write(
        dir.path(),
        "r.mcr",
        "prune channels on Conv { keep: 50% }\n",
    );
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    let g0 = &s.model.graph;
    let mut shrunk = 0;
    for n in r.graph.node_ids() {
        let node = r.graph.node(n).unwrap();
        if !matches!(node.op, mcc_ir::Op::Conv(_)) {
            continue;
        }
        let before = weights(g0, &node.name).shape()[1];
        let after = weights(&r.graph, &node.name).shape()[1];
        if after < before {
            shrunk += 1;
        }
        assert!(
            4 * after > before,
            "{}: {before} → {after} input channels",
            node.name
        );
    }
    assert!(shrunk >= 3, "{shrunk} convs lost input channels");
    let x = mcc_tests::npy(&workspace().join("corpus/data/mnist_one_x.npy"));
    let y = mcc_ir::run(&r.graph, &[x]).unwrap();
    assert!(y[0].to_f64_vec().iter().all(|v| v.is_finite()));
}
