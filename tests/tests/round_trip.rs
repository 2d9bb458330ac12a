//! Round trips over every corpus model:
//! * IR text: `print(parse(print(g))) == print(g)`, in the review form (weights by
//!   fingerprint) and the full form (weights as hex), and the full form evaluates exactly
//!   like the original;
//! * ONNX: `import(export(g))` prints the same IR, and ONNX Runtime runs the exported file
//!   to the same outputs as the ONNX Runtime reference of the original model.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_ir::text::{PrintOptions, parse, print, print_with};
use mcc_tests::{LIGHT, TRAINED, compare, corpus, load, npy, run_ort, skip_ort};

fn text_round_trip(path: &std::path::Path) {
    let g = load(path);
    let review = print(&g);
    let back = parse(&review).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    mcc_ir::verify(&back).unwrap();
    assert_eq!(
        print(&back),
        review,
        "{}: review text does not round-trip",
        path.display()
    );

    let full = print_with(&g, PrintOptions { weights: true });
    let back = parse(&full).unwrap();
    mcc_ir::verify(&back).unwrap();
    assert_eq!(
        print_with(&back, PrintOptions { weights: true }),
        full,
        "{}: full text does not round-trip",
        path.display()
    );
    assert_eq!(print(&back), review);
}

fn onnx_round_trip(path: &std::path::Path, input: &str, reference: &str) {
    let g = load(path);
    let bytes = mcc_onnx::export(&g).unwrap();
    let mut again = mcc_onnx::import_bytes(&bytes, path, None).unwrap().graph;
    mcc_passes::canonicalize(&mut again).unwrap();
    assert_eq!(
        print(&again),
        print(&g),
        "{}: import(export(g)) differs",
        path.display()
    );
    if skip_ort() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exported.onnx");
    std::fs::write(&file, &bytes).unwrap();
    let got = run_ort(&file, &[corpus(input)], dir.path());
    let want = npy(&corpus(reference));
    let d = compare(&got, &want, 1e-4, 1e-5);
    assert!(
        d.allclose,
        "{}: ONNX Runtime on the exported model differs from the reference: {d:?}",
        path.display()
    );
}

#[test]
fn text_round_trips_for_every_corpus_model() {
    for p in mcc_tests::all_models() {
        text_round_trip(&p);
    }
}

#[test]
fn full_text_evaluates_like_the_model() {
    for (m, input) in TRAINED {
        let g = load(&corpus(&format!("{m}.onnx")));
        let back = parse(&print_with(&g, PrintOptions { weights: true })).unwrap();
        let x = npy(&corpus(input));
        let x = mcc::tensor_io::split_batch(&x, 16).remove(0);
        assert_eq!(
            mcc_ir::run(&g, std::slice::from_ref(&x)).unwrap(),
            mcc_ir::run(&back, &[x]).unwrap(),
            "{m}"
        );
    }
}

macro_rules! onnx_trained {
    ($($m:ident)*) => { $( #[test] fn $m() {
        let (name, input) = TRAINED.iter().find(|(n, _)| *n == stringify!($m)).unwrap();
        onnx_round_trip(&corpus(&format!("{name}.onnx")), input, &format!("ref/{name}_test_out.npy"));
    } )* };
}

macro_rules! onnx_light {
    ($($m:ident)*) => { $( #[test] fn $m() {
        let name = stringify!($m);
        assert!(LIGHT.contains(&name));
        onnx_round_trip(&corpus(&format!("light/light_{name}.onnx")), "light/light_input_seed0.npy", &format!("light/light_{name}_seed0_out.npy"));
    } )* };
}

mod onnx_export {
    use super::*;
    onnx_trained!(lenet300 lenet5 vgg_bn resnet_bn mobilenet_dw inception_mini);
    onnx_light!(bvlc_alexnet densenet121 inception_v1 inception_v2 resnet50 shufflenet squeezenet vgg19 zfnet512);
}
