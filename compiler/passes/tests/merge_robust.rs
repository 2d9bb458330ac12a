//! The merge passes never panic: every graph under `tests/robust/` (inputs the `merge` fuzz
//! target once crashed on) is either rejected by the verifier (the passes never see it) or
//! goes through every `merge` variant, which must return and leave a graph that types and
//! verifies.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

use mcc_plan::plan::Step;
use mcc_plan::technique::NoStats;

#[test]
fn merges_survive_the_fuzzers_finds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/robust");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let mut g = mcc_ir::text::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        seen += 1;
        if mcc_ir::verify(&g).is_err() {
            continue;
        }
        let registry = mcc_passes::registry();
        for variant in registry.technique("merge").unwrap().variants {
            let nodes = g
                .node_ids()
                .into_iter()
                .map(|n| g.node(n).unwrap().name.clone())
                .collect();
            let step = Step::merge(variant.name, nodes, "pad");
            let technique = registry.implementation("merge", variant.name).unwrap();
            technique
                .rewrite(&mut g, &step, mcc_ir::StepId(1), &mut NoStats)
                .unwrap_or_else(|e| panic!("{}: merge {}: {e}", path.display(), variant.name));
            mcc_ir::infer_all(&mut g).unwrap();
            mcc_ir::verify(&g).unwrap();
        }
    }
    assert!(seen > 0, "no regression inputs found in {}", dir.display());
}
