//! `recipes/merge.mcr` on every corpus model: the merged model still matches the ONNX
//! Runtime references within the foundation's tolerance, and (for the trained models) the
//! exported merged ONNX file runs in ONNX Runtime to the same outputs.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_tests::{LIGHT, TRAINED, compare, corpus, npy, run_ort, skip_ort, workspace};

fn merged(model: &std::path::Path) -> (mcc::recipe::Session, mcc::build::BuildResult) {
    let s = mcc::recipe::check(&workspace().join("recipes/merge.mcr"), model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    (s, r)
}

/// Which merges fired, as "batchnorm 5, activations 6".
fn fired(report: &mcc::report::Report) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for m in &report.merged {
        let t = m.technique.trim_start_matches("merge ");
        *counts.entry(t.to_string()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn trained_models_after_merging() {
    for (m, input) in TRAINED {
        let (s, r) = merged(&corpus(&format!("{m}.onnx")));
        let x = npy(&corpus(input));
        let t0 = std::time::Instant::now();
        mcc_ir::run(&s.model.graph, std::slice::from_ref(&x)).unwrap();
        let t_before = t0.elapsed();
        let t0 = std::time::Instant::now();
        let got = mcc_ir::run(&r.graph, &[x]).unwrap().remove(0);
        let t_after = t0.elapsed();
        let want = npy(&corpus(&format!("ref/{m}_test_out.npy")));
        let d = compare(&got, &want, 1e-4, 1e-5);
        let (nb, na) = (s.model.graph.node_count(), r.graph.node_count());
        let (mb, ma) = (
            mcc::inspect::table(&s.model.graph).macs,
            mcc::inspect::table(&r.graph).macs,
        );
        assert!(ma <= mb, "{m}: merging added MACs");
        println!(
            "{m}: {nb} → {na} nodes, {mb} → {ma} MACs, max abs {:.2e}, merged: {}; left alone {}, evaluator {:.2} s → {:.2} s (1000 samples)",
            d.max_abs,
            fired(&r.report),
            r.report.left_alone.len(),
            t_before.as_secs_f64(),
            t_after.as_secs_f64()
        );
        assert!(
            d.allclose,
            "{m}: merged outputs differ from ONNX Runtime: {d:?}"
        );
        if m.ends_with("_bn") || *m == "mobilenet_dw" {
            assert!(na < nb, "{m}: nothing was merged");
        }
        if skip_ort() {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("merged.onnx");
        mcc_onnx::export_file(&r.graph, &file).unwrap();
        let ort = run_ort(&file, &[corpus(input)], dir.path());
        let d = compare(&ort, &want, 1e-4, 1e-5);
        assert!(
            d.allclose,
            "{m}: ONNX Runtime on the merged model differs: {d:?}"
        );
    }
}

#[test]
fn light_models_after_merging() {
    for m in LIGHT {
        let (s, mut r) = merged(&corpus(&format!("light/light_{m}.onnx")));
        let exported = r.graph.clone();
        let g = &mut r.graph;
        let softmax = g
            .node_ids()
            .into_iter()
            .find(|&n| matches!(g.node(n).unwrap().op, mcc_ir::Op::Softmax(_)));
        if let Some(sm) = softmax {
            let pre = g.node(sm).unwrap().inputs[0].unwrap();
            let mut outs = g.outputs().to_vec();
            outs.push(pre);
            g.set_outputs(outs);
        }
        let x = npy(&corpus("light/light_input_seed0.npy"));
        let t0 = std::time::Instant::now();
        mcc_ir::run(&s.model.graph, std::slice::from_ref(&x)).unwrap();
        let t_before = t0.elapsed();
        let t0 = std::time::Instant::now();
        let outs = mcc_ir::run(g, &[x]).unwrap();
        let t_after = t0.elapsed();
        let d = compare(
            &outs[0],
            &npy(&corpus(&format!("light/light_{m}_seed0_out.npy"))),
            1e-4,
            1e-7,
        );
        assert!(d.allclose, "light_{m}: output differs after merging: {d:?}");
        if softmax.is_some() {
            let want = npy(&corpus(&format!("light/light_{m}_seed0_presoftmax.npy")));
            let got = mcc_ir::map_tensor!(&outs[1], a => a.clone().into_shape_with_order(want.shape()).unwrap());
            let d = compare(&got, &want, 1e-4, 0.0);
            assert!(
                d.allclose,
                "light_{m}: pre-softmax differs after merging beyond rtol 1e-4: {d:?}"
            );
        }
        if !skip_ort() {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("merged.onnx");
            mcc_onnx::export_file(&exported, &file).unwrap();
            let ort = run_ort(&file, &[corpus("light/light_input_seed0.npy")], dir.path());
            let d = compare(
                &ort,
                &npy(&corpus(&format!("light/light_{m}_seed0_out.npy"))),
                1e-4,
                1e-7,
            );
            assert!(
                d.allclose,
                "light_{m}: ONNX Runtime on the merged model differs: {d:?}"
            );
        }
        println!(
            "light_{m}: {} → {} nodes, {} → {} MACs, merged: {}; left alone {}, evaluator {:.2} s → {:.2} s",
            s.model.graph.node_count(),
            g.node_count(),
            mcc::inspect::table(&s.model.graph).macs,
            mcc::inspect::table(g).macs,
            fired(&r.report),
            r.report.left_alone.len(),
            t_before.as_secs_f64(),
            t_after.as_secs_f64()
        );
    }
}

/// SqueezeNet's "expand" pairs (a 1×1 and a 3×3 conv of one tensor, concatenated) merge with
/// `kernels: pad`: fewer nodes, more MACs (the padded zeros), the same pre-softmax outputs.
#[test]
fn squeezenet_expand_pairs_merge_with_padded_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("wide.mcr");
    std::fs::write(
        &recipe,
        "use std.merge\nstage wide {\n  merge branches on Concat { kernels: pad }\n}\n",
    )
    .unwrap();
    let model = corpus("light/light_squeezenet.onnx");
    let s = mcc::recipe::check(&recipe, &model).unwrap();
    assert!(!s.checked.has_errors(), "{:#?}", s.checked.diags);
    let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
    let concats = |g: &mcc_ir::Graph| {
        g.node_ids()
            .into_iter()
            .filter(|&n| matches!(g.node(n).unwrap().op, mcc_ir::Op::Concat(_)))
            .count()
    };
    assert_eq!(concats(&s.model.graph), 8);
    assert_eq!(concats(&r.graph), 0, "every expand pair should merge");
    let (mb, ma) = (
        mcc::inspect::table(&s.model.graph).macs,
        mcc::inspect::table(&r.graph).macs,
    );
    assert!(ma > mb, "zero-padded kernels compute their zeros");
    let pre_softmax = |g: &mcc_ir::Graph| {
        let mut g = g.clone();
        let sm = g
            .node_ids()
            .into_iter()
            .find(|&n| matches!(g.node(n).unwrap().op, mcc_ir::Op::Softmax(_)))
            .unwrap();
        let pre = g.node(sm).unwrap().inputs[0].unwrap();
        g.set_outputs(vec![pre]);
        mcc_ir::run(&g, &[npy(&corpus("light/light_input_seed0.npy"))])
            .unwrap()
            .remove(0)
    };
    let want = npy(&corpus("light/light_squeezenet_seed0_presoftmax.npy"));
    let got = pre_softmax(&r.graph);
    let got =
        mcc_ir::map_tensor!(&got, a => a.clone().into_shape_with_order(want.shape()).unwrap());
    let d = compare(&got, &want, 1e-4, 0.0);
    assert!(d.allclose, "{d:?}");
    println!(
        "light_squeezenet with kernels: pad: {} → {} nodes, {mb} → {ma} MACs, max rel {:.2e}",
        s.model.graph.node_count(),
        r.graph.node_count(),
        d.max_rel
    );
}
