//! Unit-level checks of the IR: window geometry, the text form's errors, graph rewiring,
//! the verifier, and a few evaluator identities.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_ir::geometry::window;
use mcc_ir::text::{parse, print};
use mcc_ir::{AutoPad, Tensor, eval_op, op, verify};

#[test]
fn same_upper_pads_put_the_extra_at_the_end() {
    let w = window(&[5], &[2], &[2], &[], &[], AutoPad::SameUpper, false).unwrap();
    assert_eq!(
        (w.pad_begin.clone(), w.pad_end.clone(), w.out.clone()),
        (vec![0], vec![1], vec![3])
    );
    let w = window(&[5], &[2], &[2], &[], &[], AutoPad::SameLower, false).unwrap();
    assert_eq!((w.pad_begin, w.pad_end), (vec![1], vec![0]));
}

#[test]
fn ceil_mode_drops_a_window_starting_in_the_end_padding() {
    // in 4, k 2, s 2, pads 0/1: floor gives 2, ceil would give 3 but window 3 starts at 4.
    let w = window(&[4], &[2], &[2], &[], &[0, 1], AutoPad::NotSet, true).unwrap();
    assert_eq!(w.out, vec![2]);
    let w = window(&[5], &[2], &[2], &[], &[], AutoPad::NotSet, true).unwrap();
    assert_eq!(w.out, vec![3]);
}

#[test]
fn hostile_window_attributes_are_errors_not_overflows() {
    assert!(window(&[4], &[2], &[i64::MAX], &[], &[], AutoPad::NotSet, false).is_err());
    assert!(window(&[4], &[2], &[], &[1 << 40], &[], AutoPad::NotSet, false).is_err());
    assert!(window(&[4], &[9], &[], &[], &[], AutoPad::NotSet, false).is_err());
    assert!(window(&[4], &[2], &[], &[], &[-1, 0], AutoPad::NotSet, false).is_err());
}

const SMALL: &str = "graph \"small net\" {
  input %x: f32[N,3]
  const %w: f32[3,2] = [0.5, -1.0, 2.0, 0.25, 1e-5, -0.0]
  const %b: f32[2] = splat(0.125)
  node mm = MatMul(%x, %w) -> %\"x w\": f32[N,2]
  node add = Add(%\"x w\", %b) -> %y: f32[N,2]
  node act = LeakyRelu(%y) {alpha=0.2} -> %z: f32[N,2]
  output %z
}
";

#[test]
fn text_round_trips_and_evaluates() {
    let g = parse(SMALL).unwrap();
    verify(&g).unwrap();
    let text = print(&g);
    assert_eq!(print(&parse(&text).unwrap()), text);
    assert!(
        text.contains("%\"x w\""),
        "names with spaces are quoted:\n{text}"
    );
    let x = Tensor::from_vec(&[1, 3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let out = mcc_ir::run(&g, &[x]).unwrap();
    // x·w = [0.5 + 4 + 3e-5, -1 + 0.5 - 0] = [4.50003, -0.5]; + 0.125; LeakyRelu(0.2).
    let v = out[0].as_f32().unwrap();
    assert!(
        (v[[0, 0]] - 4.62503).abs() < 1e-5 && (v[[0, 1]] - (-0.075)).abs() < 1e-6,
        "{v:?}"
    );
}

#[test]
fn text_errors_point_at_the_problem() {
    let bad = SMALL.replace("LeakyRelu", "LeakyRelo");
    let e = parse(&bad).unwrap_err();
    assert_eq!((e.line, e.col), (7, 14), "{e:?}");
    assert!(e.message.contains("LeakyRelo"));
    let e = parse(&SMALL.replace("%b)", "%c)")).unwrap_err();
    assert!(e.message.contains("no value named `c`"), "{e:?}");
    let e = parse(&SMALL.replace("splat(0.125)", "[1.0]")).unwrap_err();
    assert!(e.message.contains("2 element(s)"), "{e:?}");
}

#[test]
fn verifier_catches_a_wrong_stored_type() {
    let g = parse(&SMALL.replace("-> %z: f32[N,2]", "-> %z: f32[N,3]")).unwrap();
    let err = verify(&g).unwrap_err();
    assert!(
        err.to_string()
            .contains("typed f32[N,3] but its operands give f32[N,2]"),
        "{err}"
    );
}

#[test]
fn rewiring_keeps_edges_and_output_names() {
    let mut g = parse(SMALL).unwrap();
    let act = g.find_node("act").unwrap();
    let y = g.find_value("y").unwrap();
    let z = g.find_value("z").unwrap();
    g.replace_all_uses(z, y);
    g.remove_node(act).unwrap();
    verify(&g).unwrap();
    assert_eq!(
        g.value(g.outputs()[0]).name,
        "z",
        "the graph output keeps its name"
    );
    assert!(g.topo_order().unwrap().len() == 2);
    // A node whose output is still read cannot be removed.
    let mm = g.find_node("mm").unwrap();
    assert!(g.remove_node(mm).is_err());
}

#[test]
fn evaluator_rejects_oversized_results_instead_of_allocating() {
    let shape = Tensor::from_vec(&[3], vec![1i64 << 20, 1 << 20, 1 << 20]).unwrap();
    let r = eval_op(
        &mcc_ir::Op::ConstantOfShape(op::ConstantOfShape { value: None }),
        &[Some(&shape)],
        1,
    );
    assert!(r.is_err());
    let a = Tensor::zeros(mcc_ir::DType::F32, &[1 << 15, 1]);
    let b = Tensor::zeros(mcc_ir::DType::F32, &[1, 1 << 15]);
    assert!(
        eval_op(&mcc_ir::Op::Add(op::Add {}), &[Some(&a), Some(&b)], 1).is_err(),
        "2^30 elements"
    );
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let a = Tensor::from_vec(&[2], vec![4i32, 5]).unwrap();
    let b = Tensor::from_vec(&[2], vec![2i32, 0]).unwrap();
    assert!(eval_op(&mcc_ir::Op::Div(op::Div {}), &[Some(&a), Some(&b)], 1).is_err());
}

#[test]
fn erf_is_accurate() {
    let x = Tensor::from_vec(&[5], vec![0.0f64, 1e-4, 0.5, 1.0, 3.0]).unwrap();
    let y = eval_op(&mcc_ir::Op::Erf(op::Erf {}), &[Some(&x)], 1)
        .unwrap()
        .remove(0)
        .to_f64_vec();
    let want = [
        0.0,
        1.128_379_163e-4,
        0.520_499_877_8,
        0.842_700_792_9,
        0.999_977_909_5,
    ];
    for (g, w) in y.iter().zip(want) {
        assert!((g - w).abs() <= 2e-7 * w.abs().max(1e-3), "{g} vs {w}");
    }
}

/// Found by the `ir_text` fuzzer: a graph without outputs verified, and printed an empty
/// `output` line that did not parse back.
#[test]
fn a_graph_without_outputs_is_rejected_and_prints_parseably() {
    let g = parse("graph g {\n  input %x: f32[2]\n  node n = Relu(%x) -> %y: f32[2]\n}\n").unwrap();
    assert!(verify(&g).unwrap_err().to_string().contains("no outputs"));
    let text = print(&g);
    assert!(!text.contains("output"), "{text}");
    assert_eq!(print(&parse(&text).unwrap()), text);
}

/// The merge fuzzer found it: a generated constant of absurd size was allocated before its
/// size was checked. It is an error naming the limit now.
#[test]
fn generated_constants_are_bounded() {
    for init in ["seeded(761)", "positive(1)", "splat(0.5)"] {
        let src = format!(
            "graph g {{\n  input %x: f32[N,16]\n  const %w: f32[86666666666,3,3] = {init}\n  output %x\n}}\n"
        );
        let err = mcc_ir::text::parse(&src).unwrap_err();
        assert!(format!("{err:?}").contains("too large"), "{init}: {err:?}");
    }
}

/// A graph whose weights are stored in every values × layout × coding combination: the full
/// text form round-trips to the same blobs, the review form round-trips to the same text and
/// shows the encoding, and the graph computes what its decoded weights say.
#[test]
fn stored_constants_round_trip_and_evaluate_as_decoded() {
    use mcc_ir::stored::{Coding, Encoding, Granularity, Layout, Parts, Stored, Values};
    use mcc_ir::text::{PrintOptions, print_with};
    let shape = [4usize, 6];
    let n = 24;
    // Every third weight zero, the rest small integers times ¼.
    let keep: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
    let k = keep.iter().filter(|&&b| b).count();
    let mut forms = vec![];
    // Every third weight zero is a 2:3 pattern on rows of 6, and drops whole columns (so
    // 2×1 blocks).
    for layout in [
        Layout::Dense,
        Layout::Bitmask,
        Layout::Csr,
        Layout::NM { n: 2, m: 3 },
        Layout::Blocks { rows: 2, cols: 1 },
        Layout::Gaps { bits: 1 },
        Layout::Gaps { bits: 3 },
    ] {
        let kept = |layout: Layout| -> (Vec<bool>, usize) {
            match layout {
                Layout::Dense => (vec![], n),
                _ => (keep.clone(), k),
            }
        };
        let (mask, m) = kept(layout);
        let dense_values: Vec<f32> = (0..n)
            .map(|i| {
                if i % 3 == 0 {
                    0.0
                } else {
                    (i as f32 - 12.0) * 0.25
                }
            })
            .collect();
        let f32_values: Vec<f32> = if mask.is_empty() {
            dense_values.clone()
        } else {
            dense_values
                .iter()
                .zip(&mask)
                .filter(|(_, b)| **b)
                .map(|(v, _)| *v)
                .collect()
        };
        forms.push((
            Encoding::f32(layout),
            Parts {
                keep: mask.clone(),
                values: f32_values.clone(),
                ..Parts::default()
            },
        ));
        if let Layout::Gaps { .. } = layout {
            // Huffman-coded gaps of f32 values.
            forms.push((
                Encoding {
                    values: Values::F32,
                    layout,
                    coding: Coding::Huffman,
                },
                Parts {
                    keep: mask.clone(),
                    values: f32_values,
                    ..Parts::default()
                },
            ));
        }
        for coding in [Coding::None, Coding::Huffman] {
            for per in [
                Granularity::Tensor,
                Granularity::Channel(0),
                Granularity::Group(4),
            ] {
                let groups = match per {
                    Granularity::Tensor => 1,
                    Granularity::Channel(_) => 4,
                    _ => 6,
                };
                forms.push((
                    Encoding {
                        values: Values::Int { bits: 4, per },
                        layout,
                        coding,
                    },
                    Parts {
                        keep: mask.clone(),
                        codes: (0..m as i32).map(|i| (i % 16) - 8).collect(),
                        scales: (0..groups).map(|g| 0.5 + g as f32).collect(),
                        zero_points: (0..groups).map(|g| (g % 3) as i8 - 1).collect(),
                        ..Parts::default()
                    },
                ));
            }
            for per in [Granularity::Tensor, Granularity::Channel(1)] {
                let groups = if per == Granularity::Tensor { 1 } else { 6 };
                forms.push((
                    Encoding {
                        values: Values::Codebook { bits: 3, per },
                        layout,
                        coding,
                    },
                    Parts {
                        keep: mask.clone(),
                        codes: (0..m as i32).map(|i| (i * i) % 8).collect(),
                        centroids: (0..groups * 8).map(|c| c as f32 * 0.125 - 1.0).collect(),
                        ..Parts::default()
                    },
                ));
            }
        }
    }
    assert_eq!(forms.len(), 7 * (1 + 2 * (3 + 2)) + 2);
    let dense_values: Vec<f32> = (0..n)
        .map(|i| {
            if i % 3 == 0 {
                0.0
            } else {
                (i as f32 - 12.0) * 0.25
            }
        })
        .collect();
    for (encoding, parts) in &forms {
        let stored =
            Stored::new(*encoding, &shape, parts).unwrap_or_else(|e| panic!("{encoding}: {e}"));
        // The blob gives back the parts it was made of (values row-major whatever the
        // storage order), and f32 values decode to the weights themselves.
        assert_eq!(&stored.parts().unwrap(), parts, "{encoding}");
        if encoding.values == Values::F32 {
            let got: Vec<f32> = stored.decoded().as_f32().unwrap().iter().copied().collect();
            assert_eq!(got, dense_values, "{encoding}");
        }
        let mut g = parse(
            "graph \"s\" {\n  input %x: f32[N, 6]\n  const %w: f32[4, 6] = splat(0.0)\n  node mm = Gemm(%x, %w) {transB=1} -> %y: f32[N, 4]\n  output %y\n}\n",
        )
        .unwrap();
        let w = g.find_value("w").unwrap();
        g.store_const(w, stored.clone());
        verify(&g).unwrap();
        let full = print_with(&g, PrintOptions { weights: true });
        assert!(full.contains(&format!("stored {encoding} hex\"")), "{full}");
        let back = parse(&full).unwrap_or_else(|e| panic!("{encoding}: {e:?}\n{full}"));
        assert_eq!(
            back.stored(back.find_value("w").unwrap()),
            Some(&stored),
            "{encoding}"
        );
        assert_eq!(print_with(&back, PrintOptions { weights: true }), full);
        let review = print(&g);
        assert!(review.contains(&format!("stored {encoding} #")), "{review}");
        assert_eq!(print(&parse(&review).unwrap()), review, "{encoding}");
        assert_eq!(g.stored_bytes(w), stored.bytes());
        // The graph computes with the decoded weights.
        let x = Tensor::from_vec(&[1, 6], vec![1.0f32, -2.0, 0.5, 3.0, 0.0, 1.5]).unwrap();
        let mut dense = g.clone();
        dense.make_const(w, stored.decoded().clone());
        let a = mcc_ir::run(&g, std::slice::from_ref(&x)).unwrap();
        let b = mcc_ir::run(&dense, &[x]).unwrap();
        assert_eq!(a, b, "{encoding}");
    }
}

#[test]
fn broken_stored_constants_are_parse_errors() {
    for bad in [
        "stored f32 bitmask hex\"00\"",
        "stored f32 lattice #0000000000000000",
        "stored int9 per tensor dense #0000000000000000",
        "stored int4 per axis dense #0000000000000000",
        "stored codebook2 per group(4) dense hex\"\"",
        "stored f32 dense huffman hex\"\"",
        "stored int4 per group(0) dense hex\"\"",
        "stored f32 nm(3:3) hex\"\"",
        "stored f32 nm(2:17) hex\"\"",
        "stored f32 nm(2:4) hex\"\"",
        "stored f32 blocks(1x1) hex\"\"",
        "stored f32 blocks(3x1) hex\"00\"",
        "stored f32 blocks(4) hex\"00\"",
    ] {
        let src = format!(
            "graph \"s\" {{\n  const %w: f32[4, 6] = {bad}\n  node n = Relu(%w) -> %y: f32[4, 6]\n  output %y\n}}\n"
        );
        assert!(parse(&src).is_err(), "accepted: {bad}");
    }
}

/// Found by the `import_external` fuzz target: a Reshape of a symbolic input to sizes whose
/// product overflows panicked in inference. It is a type error now, as is a fixed input
/// whose own size overflows.
#[test]
fn reshape_sizes_that_overflow_are_type_errors() {
    for (input, target) in [
        ("f32[N,4]", "[-1, 4611686018427387904, 8]"),
        ("f32[N,4]", "[0, 4611686018427387904, 4611686018427387904]"),
        ("f32[4611686018427387904,8]", "[-1]"),
    ] {
        let src = format!(
            "graph \"g\" {{\n  input %x: {input}\n  const %s: i64[{}] = {target}\n  \
             node r = Reshape(%x, %s) -> %y: f32[?]\n  output %y\n}}",
            target.split(',').count()
        );
        let res = mcc_ir::text::parse(&src)
            .map_err(|e| e.to_string())
            .and_then(|mut g| mcc_ir::infer_all(&mut g).map_err(|(_, _, e)| e.0));
        let e = res.expect_err(&format!("{input} reshaped to {target} was accepted"));
        assert!(e.contains("overflow"), "{input} → {target}: {e}");
    }
}

/// Found by the `shapes` fuzz target: a Conv whose `group` times the weights' channels
/// overflows panicked in inference; it is a type error now.
#[test]
fn a_conv_group_that_overflows_is_a_type_error() {
    let src = "graph \"g\" {\n  input %x: f32[N,4,8,8]\n  const %w: f32[2,4,3,3] = seeded(1)\n  \
               node c = Conv(%x, %w) {group=4611686018427387904} -> %y: f32[?]\n  output %y\n}";
    let res = mcc_ir::text::parse(src)
        .map_err(|e| e.to_string())
        .and_then(|mut g| mcc_ir::infer_all(&mut g).map_err(|(_, _, e)| e.0));
    let e = res.expect_err("an overflowing group was accepted");
    assert!(e.contains("channels"), "{e}");
}
