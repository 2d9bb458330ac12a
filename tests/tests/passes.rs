//! Pass fixtures: small IR-text models under `tests/fixtures/passes/<pass>/`, each headed by
//! `; run: <rule>`. For each, the rule is built as a one-line recipe; the IR diff (and what
//! the pass left alone, and why) is an insta snapshot; and the outputs before and after are
//! compared on seeded inputs (max |Δ| / max |before| ≤ 1e-5 for exact passes). The rewritten
//! model exported to ONNX passes `onnx.checker` (full check) and runs in ONNX Runtime to the
//! evaluator's outputs.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_ir::text::parse::pseudo_random;
use mcc_ir::{DType, Dim, Tensor};

fn seeded_inputs(g: &mcc_ir::Graph) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ty = &g.value(v).ty;
            assert_eq!(ty.dtype, DType::F32);
            let dims: Vec<usize> = ty
                .shape
                .as_ref()
                .unwrap()
                .iter()
                .map(|d| if let Dim::Fixed(n) = d { *n } else { 2 })
                .collect();
            let n = dims.iter().product();
            Tensor::from_vec(
                &dims,
                pseudo_random(1000 + i as u64, n, -2.0, 2.0)
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn pass_fixtures() {
    insta::glob!("../fixtures", "passes/*/*.mcir", |path| {
        let src = std::fs::read_to_string(path).unwrap();
        let rule = src
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("; run: "))
            .expect("fixtures start with `; run: <rule>`");
        let dir = tempfile::tempdir().unwrap();
        let recipe = dir.path().join("fixture.mcr");
        std::fs::write(&recipe, format!("{rule}\n")).unwrap();
        let s = mcc::recipe::check(&recipe, path).unwrap();
        assert!(
            !s.checked.has_errors(),
            "{}: {:#?}",
            path.display(),
            s.checked.diags
        );
        let r = mcc::build::build(&s, &mcc::build::Options::default()).unwrap();
        let before = mcc_ir::text::print(&s.model.graph);
        let after = mcc_ir::text::print(&r.graph);
        // What a pass produces (epilogues included) is valid IR text that round-trips.
        let full = mcc_ir::text::print_with(&r.graph, mcc_ir::text::PrintOptions { weights: true });
        let back =
            mcc_ir::text::parse(&full).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        mcc_ir::verify(&back).unwrap();
        assert_eq!(
            mcc_ir::text::print(&back),
            after,
            "{}: the rewritten IR does not round-trip",
            path.display()
        );
        let mut snap =
            mcc_ir::text::diff::unified(&before, &after, "before", &format!("after {rule}"));
        if snap.is_empty() {
            snap.push_str("(no change)\n");
        }
        for l in &r.report.left_alone {
            snap.push_str(&format!(
                "left alone ({}): {}: {}\n",
                l.reason.code(),
                l.node,
                l.why
            ));
        }
        insta::assert_snapshot!(snap);
        let x = seeded_inputs(&s.model.graph);
        let want = mcc_ir::run(&s.model.graph, &x).unwrap();
        let got = mcc_ir::run(&r.graph, &x).unwrap();
        for (g, w) in got.iter().zip(&want) {
            let d = mcc_tests::compare(g, w, 0.0, 0.0);
            assert!(
                d.max_rel <= 1e-5,
                "{}: outputs moved by {d:?}",
                path.display()
            );
        }
        if mcc_tests::skip_ort() {
            return;
        }
        let model = dir.path().join("model.onnx");
        mcc_onnx::export_file(&r.graph, &model)
            .unwrap_or_else(|e| panic!("{}: export: {e}", path.display()));
        let inputs: Vec<std::path::PathBuf> = x
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let p = dir.path().join(format!("x{i}.npy"));
                mcc::tensor_io::write_npy(&p, t).unwrap();
                p
            })
            .collect();
        let ort = mcc_tests::run_ort(&model, &inputs, dir.path());
        let d = mcc_tests::compare(&ort, &got[0], 0.0, 0.0);
        assert!(
            d.max_rel <= 1e-5,
            "{}: ONNX Runtime on the export differs from the evaluator: {d:?}",
            path.display()
        );
    });
}
