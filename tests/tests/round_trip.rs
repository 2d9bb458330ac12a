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

use mcc_ir::Tensor;
use mcc_ir::text::{PrintOptions, parse, print, print_with};
use mcc_tests::{LIGHT, compare, corpus, load, npy, run_ort, skip_ort};

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
    for (m, input) in mcc_tests::every_trained() {
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
        let (name, input) = mcc_tests::every_trained().find(|(n, _)| *n == stringify!($m)).unwrap();
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
    onnx_trained!(lenet300 lenet5 vgg_bn resnet_bn mobilenet_dw inception_mini vit_mini vit_mini_dynamo resnet_bn_dynamo);
    onnx_light!(bvlc_alexnet densenet121 inception_v1 inception_v2 resnet50 shufflenet squeezenet vgg19 zfnet512);
}

/// Stored weights export the way ONNX can say them — int8 and int4 codes through
/// `DequantizeLinear` (per tensor, per channel, blocked along the last axis), every other
/// encoding decoded — and ONNX Runtime computes what the evaluator computes.
#[test]
fn stored_weights_export_to_onnx_that_onnx_runtime_runs() {
    use mcc_ir::stored::{Coding, Encoding, Granularity, Layout, Parts, Stored, Values};
    if mcc_tests::skip_ort() {
        return;
    }
    let (rows, cols) = (6usize, 8usize);
    let n = rows * cols;
    let int = |bits: u8, per: Granularity, layout: Layout, coding: Coding| {
        let groups = match per {
            Granularity::Tensor => 1,
            Granularity::Channel(0) => rows,
            Granularity::Channel(_) => cols,
            Granularity::Group(g) => n / g as usize,
        };
        let keep: Vec<bool> = match layout {
            Layout::Dense => vec![],
            _ => (0..n).map(|i| i % 4 != 1).collect(),
        };
        let k = if keep.is_empty() {
            n
        } else {
            keep.iter().filter(|&&b| b).count()
        };
        let half = 1i32 << (bits - 1);
        (
            Encoding {
                values: Values::Int { bits, per },
                layout,
                coding,
            },
            Parts {
                keep,
                codes: (0..k as i32).map(|i| (i * 7) % (2 * half) - half).collect(),
                scales: (0..groups).map(|g| 0.01 + 0.003 * g as f32).collect(),
                zero_points: (0..groups).map(|g| (g % 3) as i8 - 1).collect(),
                ..Parts::default()
            },
        )
    };
    let cases = [
        (
            int(8, Granularity::Tensor, Layout::Dense, Coding::None),
            mcc_onnx::StoredForm::DequantizeLinear,
        ),
        (
            int(8, Granularity::Channel(0), Layout::Dense, Coding::Huffman),
            mcc_onnx::StoredForm::DequantizeLinear,
        ),
        (
            int(4, Granularity::Channel(1), Layout::Dense, Coding::None),
            mcc_onnx::StoredForm::DequantizeLinear,
        ),
        (
            int(4, Granularity::Group(4), Layout::Dense, Coding::None),
            mcc_onnx::StoredForm::DequantizeLinear,
        ),
        (
            int(4, Granularity::Group(4), Layout::Bitmask, Coding::None),
            mcc_onnx::StoredForm::Dense,
        ),
        (
            int(3, Granularity::Tensor, Layout::Dense, Coding::None),
            mcc_onnx::StoredForm::Dense,
        ),
        // Every fourth weight (from the second) dropped: 3:4 runs, whole columns (2×1 blocks).
        (
            int(
                8,
                Granularity::Tensor,
                Layout::NM { n: 3, m: 4 },
                Coding::None,
            ),
            mcc_onnx::StoredForm::Dense,
        ),
        (
            int(
                4,
                Granularity::Channel(0),
                Layout::Blocks { rows: 2, cols: 1 },
                Coding::Huffman,
            ),
            mcc_onnx::StoredForm::Dense,
        ),
        (
            (
                Encoding {
                    values: Values::Codebook {
                        bits: 2,
                        per: Granularity::Tensor,
                    },
                    layout: Layout::Csr,
                    coding: Coding::Huffman,
                },
                Parts {
                    keep: (0..n).map(|i| i % 3 == 0).collect(),
                    codes: (0..16).map(|i| i % 4).collect(),
                    centroids: vec![-0.5, -0.1, 0.2, 0.7],
                    ..Parts::default()
                },
            ),
            mcc_onnx::StoredForm::Dense,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::from_vec(
        &[3, cols],
        (0..3 * cols)
            .map(|i| (i as f32 * 0.37).sin())
            .collect::<Vec<f32>>(),
    )
    .unwrap();
    let xp = dir.path().join("x.npy");
    mcc::tensor_io::write_npy(&xp, &x).unwrap();
    for (i, ((encoding, parts), form)) in cases.into_iter().enumerate() {
        let stored = Stored::new(encoding, &[rows, cols], &parts)
            .unwrap_or_else(|e| panic!("{encoding}: {e}"));
        assert_eq!(mcc_onnx::stored_form(&stored), form, "{encoding}");
        let mut g = mcc_ir::text::parse(&format!(
            "graph \"s\" {{\n  input %x: f32[N, {cols}]\n  const %w: f32[{rows}, {cols}] = splat(0.0)\n  node mm = Gemm(%x, %w) {{transB=1}} -> %y: f32[N, {rows}]\n  output %y\n}}\n"
        ))
        .unwrap();
        let w = g.find_value("w").unwrap();
        g.store_const(w, stored);
        let path = dir.path().join(format!("m{i}.onnx"));
        mcc_onnx::export_file(&g, &path).unwrap();
        let want = mcc_ir::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
        let got = mcc_tests::run_ort(&path, std::slice::from_ref(&xp), dir.path());
        let d = mcc_tests::compare(&got, &want, 1e-5, 1e-6);
        assert!(
            d.allclose,
            "{encoding} ({form:?}): ONNX Runtime differs: {d:?}"
        );
    }
}

/// `ConvTranspose`, `Resize` (each interpolation mode, a few coordinate transformations,
/// antialiasing, axes with an aspect-ratio policy, crop-and-resize), `SpaceToDepth`,
/// `DepthToSpace` and `InstanceNormalization` export to ONNX that imports back to the same IR and that ONNX
/// Runtime computes as the evaluator does. (The crop changes the size: ONNX Runtime 1.32
/// returns the input unchanged when the sizes equal it, roi or not; ONNX's reference crops.)
#[test]
fn resampling_layers_export_to_onnx_that_onnx_runtime_runs() {
    const CASES: &[(&str, &str)] = &[
        (
            "f32[1,4,6,7]",
            "const %w: f32[2,2,3,3] = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 1.0, 0.5, 0.125, 1.0, -2.0, 0.5, 0.25, 1.0, -1.0, 0.0, 0.75, 1.0, 0.5, -0.5, 2.0, 1.0, 0.25, -1.0, 0.5, 0.5, 1.0, 0.0, -0.25, 0.75, 1.0, 0.5, 0.125, -1.0, 2.0]
  const %b: f32[4] = [0.5, -0.5, 1.0, 0.0]
  node up = ConvTranspose(%x, %w, %b) {group=2, output_padding=[1, 1], pads=[1, 0, 1, 1], strides=[2, 2]} -> %y: f32[1,4,6,7]",
        ),
        (
            "f32[1,1,9,7]",
            "const %w: f32[2,1,3,3] = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 1.0, 0.5, 1.0, 0.5, -0.5, 2.0, 1.0, 0.25, -1.0, 0.5, 0.5]
  node up = ConvTranspose(%x, %w) {dilations=[1, 2], output_shape=[9, 7], strides=[3, 2]} -> %y: f32[1,1,9,7]",
        ),
        (
            "f32[1,1,6,6]",
            "const %w: f32[2,1,3,3] = [0.5, -1.0, 0.25, 2.0, 0.0, 1.5, -0.75, 1.0, 0.5, 1.0, 0.5, -0.5, 2.0, 1.0, 0.25, -1.0, 0.5, 0.5]
  node up = ConvTranspose(%x, %w) {auto_pad=\"SAME_UPPER\", strides=[2, 2]} -> %y: f32[1,1,6,6]",
        ),
        (
            "f32[1,2,6,6]",
            "const %s: f32[4] = [1.0, 1.0, 2.0, 2.0]
  node r = Resize(%x, _, %s) {mode=\"linear\"} -> %y: f32[1,2,6,6]",
        ),
        (
            "f32[1,2,5,4]",
            "const %z: i64[4] = [1, 2, 5, 4]
  node r = Resize(%x, _, _, %z) {coordinate_transformation_mode=\"align_corners\", mode=\"cubic\"} -> %y: f32[1,2,5,4]",
        ),
        (
            "f32[1,2,7,8]",
            "const %z: i64[4] = [1, 2, 7, 8]
  node r = Resize(%x, _, _, %z) {coordinate_transformation_mode=\"asymmetric\", nearest_mode=\"round_prefer_ceil\"} -> %y: f32[1,2,7,8]",
        ),
        (
            "f32[1,2,2,2]",
            "const %s: f32[4] = [1.0, 1.0, 0.7, 0.7]
  node r = Resize(%x, _, %s) {antialias=1, mode=\"cubic\"} -> %y: f32[1,2,2,2]",
        ),
        (
            "f32[1,2,2,2]",
            "const %z: i64[2] = [2, 2]
  node r = Resize(%x, _, _, %z) {axes=[2, 3], keep_aspect_ratio_policy=\"not_larger\", mode=\"linear\", coordinate_transformation_mode=\"half_pixel_symmetric\"} -> %y: f32[1,2,2,2]",
        ),
        (
            "f32[1,2,2,4]",
            "const %roi: f32[4] = [0.2, 0.6, 1.3, 0.9]
  const %z: i64[2] = [4, 2]
  node r = Resize(%x, %roi, _, %z) {axes=[3, 2], coordinate_transformation_mode=\"tf_crop_and_resize\", extrapolation_value=-2.5, mode=\"linear\"} -> %y: f32[1,2,2,4]",
        ),
        (
            "f32[1,2,3,3]",
            "node deep = SpaceToDepth(%x) {blocksize=3} -> %d: f32[1,18,1,1]
  node r = DepthToSpace(%d) {blocksize=3, mode=\"CRD\"} -> %y: f32[1,2,3,3]",
        ),
        (
            "f32[1,2,3,3]",
            "const %g: f32[2] = [1.5, -0.5]
  const %b: f32[2] = [0.25, 1.0]
  node n = InstanceNormalization(%x, %g, %b) {epsilon=0.01} -> %y: f32[1,2,3,3]",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let x = Tensor::from_vec(
        &[1, 2, 3, 3],
        (0..18)
            .map(|i| (i as f32 * 0.7).sin() * 3.0)
            .collect::<Vec<f32>>(),
    )
    .unwrap();
    let xp = dir.path().join("x.npy");
    mcc::tensor_io::write_npy(&xp, &x).unwrap();
    for (i, (out_ty, body)) in CASES.iter().enumerate() {
        let text =
            format!("graph \"case{i}\" {{\n  input %x: f32[1,2,3,3]\n  {body}\n  output %y\n}}\n");
        let g = parse(&text).unwrap_or_else(|e| panic!("case {i}: {e:?}"));
        mcc_ir::verify(&g).unwrap_or_else(|e| panic!("case {i}: {e}"));
        let ty = g.value(g.outputs()[0]).ty.to_string();
        assert_eq!(ty, *out_ty, "case {i}");
        let bytes = mcc_onnx::export(&g).unwrap();
        let back = mcc_onnx::import_bytes(&bytes, std::path::Path::new("case.onnx"), None)
            .unwrap()
            .graph;
        assert_eq!(
            print(&back),
            print(&g),
            "case {i}: import(export(g)) differs"
        );
        if skip_ort() {
            continue;
        }
        let path = dir.path().join(format!("case{i}.onnx"));
        std::fs::write(&path, &bytes).unwrap();
        let want = mcc_ir::run(&g, std::slice::from_ref(&x)).unwrap().remove(0);
        let got = run_ort(&path, std::slice::from_ref(&xp), dir.path());
        let d = compare(&got, &want, 1e-4, 1e-5);
        assert!(d.allclose, "case {i} ({body}): ONNX Runtime differs: {d:?}");
    }
    // SpaceToDepth's CRD order is opset 28's: the export says so rather than write a file
    // its opset cannot read.
    let g = parse("graph \"crd\" {\n  input %x: f32[1,2,3,3]\n  node d = SpaceToDepth(%x) {blocksize=3, mode=\"CRD\"} -> %y: f32[1,18,1,1]\n  output %y\n}\n").unwrap();
    let e = mcc_onnx::export(&g).unwrap_err().to_string();
    assert!(e.contains("opset 28"), "{e}");
}
