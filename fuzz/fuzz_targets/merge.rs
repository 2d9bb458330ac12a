//! Fuzzes the merge passes: any IR text that parses and verifies goes through every `merge`
//! variant (on all its layers, in the stdlib's order); each must return (merged or left
//! alone), never panic, and leave a graph that re-types and verifies. When the graph's
//! inputs have small fixed shapes, outputs before and after must agree (the merges are exact).
#![no_main]

use mcc_plan::plan::Step;

const VARIANTS: &[&str] = &[
    "pad",
    "batchnorm",
    "scale",
    "linear",
    "pool",
    "branches",
    "activations",
    "cleanup",
];

fn seeded_inputs(g: &mcc_ir::Graph) -> Option<Vec<mcc_ir::Tensor>> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ty = &g.value(v).ty;
            if ty.dtype != mcc_ir::DType::F32 {
                return None;
            }
            let dims: Vec<usize> = ty
                .shape
                .as_ref()?
                .iter()
                .map(|d| d.fixed().or(matches!(d, mcc_ir::Dim::Sym(_)).then_some(2)))
                .collect::<Option<_>>()?;
            let n: usize = dims.iter().product();
            if n > 4096 {
                return None;
            }
            let data = mcc_ir::text::parse::pseudo_random(7 + i as u64, n, -2.0, 2.0)
                .into_iter()
                .map(|x| x as f32)
                .collect();
            mcc_ir::Tensor::from_vec(&dims, data).ok()
        })
        .collect()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(mut graph) = mcc_ir::text::parse(src) else { return };
    if mcc_ir::infer_all(&mut graph).is_err() || mcc_ir::verify(&graph).is_err() {
        return;
    }
    if graph.node_count() > 64 {
        return;
    }
    let inputs = seeded_inputs(&graph);
    let before = inputs.as_ref().and_then(|x| mcc_ir::run(&graph, x).ok());
    for (i, variant) in VARIANTS.iter().enumerate() {
        for pad in ["same", "pad"] {
            let nodes: Vec<String> = graph
                .node_ids()
                .into_iter()
                .filter_map(|n| graph.node(n).map(|n| n.name.clone()))
                .collect();
            let step = Step::merge(variant, nodes, pad);
            let id = mcc_ir::StepId(i as u32 + 1);
            let registry = mcc_passes::registry();
            let technique = registry
                .implementation("merge", variant)
                .expect("every merge variant is built");
            if let Err(e) =
                technique.rewrite(&mut graph, &step, id, &mut mcc_plan::technique::NoStats)
            {
                panic!("merge {variant} failed: {e}");
            }
            if let Err(e) = mcc_ir::infer_all(&mut graph) {
                panic!("merge {variant} left a graph that does not type: {e:?}");
            }
            if let Err(e) = mcc_ir::verify(&graph) {
                panic!("merge {variant} left an invalid graph: {e}");
            }
        }
    }
    if let (Some(x), Some(want)) = (inputs, before) {
        let got = mcc_ir::run(&graph, &x).expect("the merged graph no longer runs");
        for (a, b) in got.iter().zip(&want) {
            let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
            assert_eq!(a.len(), b.len());
            let scale = b
                .iter()
                .filter(|y| y.is_finite())
                .fold(1.0f64, |m, y| m.max(y.abs()));
            // Where the original is finite, the merged graph must be too, and close (a NaN
            // there fails: `NaN <= bound` is false). Where the original overflowed (random
            // weights can), the merged one may round differently.
            for (x, y) in a.iter().zip(&b) {
                if y.is_finite() {
                    assert!((x - y).abs() <= 1e-3 * scale, "merge changed an output: {x} vs {y}");
                }
            }
        }
    }
});
