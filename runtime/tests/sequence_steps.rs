//! The steps of sequence models (LayerNorm, Gather, BatchMatMul, Reduce) and of the image
//! operators beyond convolution (Resample, InstanceNorm, ConvTranspose): malformed ones —
//! tables or strides that reach past their operand, sizes that wrap, weights outside the
//! blob, too little scratch — are refused when the runner is made; well-formed ones run through the runner
//! (batch 2: each sample reads only itself) and compute what their kernels compute.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcc_runtime::exec::Runner;
use mcc_runtime::kernels::conv::Geometry;
use mcc_runtime::kernels::epilogue::Act;
use mcc_runtime::kernels::reduce::ReduceOp;
use mcc_runtime::kernels::{conv_transpose, gather, matmul, reduce, resample};
use mcc_runtime::program::{Buf, Src, Step};
use mcc_runtime::testing::{one_step, uniform};

/// The input and output of [`one_step`]'s program.
const X: Buf = Buf { off: 64, len: 64 };
const Y: Buf = Buf { off: 0, len: 64 };

#[test]
fn malformed_steps_are_refused() {
    let cases = [
        (
            "a table past the input",
            Step::Gather {
                x: Src::Arena(X),
                y: Y,
                dims: vec![2, 2],
                offsets: vec![vec![0, 60], vec![0, 4]],
            },
        ),
        (
            "a table shorter than its axis",
            Step::Gather {
                x: Src::Arena(X),
                y: Y,
                dims: vec![2, 3],
                offsets: vec![vec![0, 8], vec![0, 1]],
            },
        ),
        (
            "tables that overflow",
            Step::Gather {
                x: Src::Arena(X),
                y: Y,
                dims: vec![2],
                offsets: vec![vec![usize::MAX, 0]],
            },
        ),
        (
            "a constant shorter than its table",
            Step::Gather {
                x: Src::Weight { off: 0, len: 4 },
                y: Y,
                dims: vec![8],
                offsets: vec![(0..8).collect()],
            },
        ),
        (
            "a constant outside the weights",
            Step::Gather {
                x: Src::Weight { off: 250, len: 8 },
                y: Y,
                dims: vec![8],
                offsets: vec![vec![0; 8]],
            },
        ),
        (
            "dims whose product wraps",
            Step::Gather {
                x: Src::Arena(X),
                y: Y,
                dims: vec![1 << 40, 1 << 40],
                offsets: vec![vec![], vec![]],
            },
        ),
        (
            "strides past an operand",
            Step::BatchMatMul {
                a: Src::Arena(X),
                a_strides: vec![17],
                b: Src::Weight { off: 0, len: 16 },
                b_strides: vec![0],
                dims: vec![4],
                m: 4,
                k: 4,
                n: 4,
                act: Act::None,
                y: Y,
            },
        ),
        (
            "strides that do not match the dims",
            Step::BatchMatMul {
                a: Src::Arena(X),
                a_strides: vec![16, 0],
                b: Src::Arena(X),
                b_strides: vec![0],
                dims: vec![2],
                m: 2,
                k: 2,
                n: 2,
                act: Act::None,
                y: Y,
            },
        ),
        (
            "a product larger than its output",
            Step::BatchMatMul {
                a: Src::Arena(X),
                a_strides: vec![],
                b: Src::Arena(X),
                b_strides: vec![],
                dims: vec![],
                m: 8,
                k: 8,
                n: 9,
                act: Act::None,
                y: Y,
            },
        ),
        (
            "m × k wraps",
            Step::BatchMatMul {
                a: Src::Arena(X),
                a_strides: vec![],
                b: Src::Arena(X),
                b_strides: vec![],
                dims: vec![],
                m: usize::MAX / 2,
                k: 4,
                n: 0,
                act: Act::None,
                y: Y,
            },
        ),
        (
            "rows longer than the input",
            Step::LayerNorm {
                x: X,
                y: Y,
                rows: 5,
                cols: 16,
                eps: 1e-5,
                scale: 0,
                bias: None,
            },
        ),
        (
            "a scale outside the weights",
            Step::LayerNorm {
                x: X,
                y: Y,
                rows: 4,
                cols: 16,
                eps: 1e-5,
                scale: 0,
                bias: Some(250),
            },
        ),
        (
            "a reduction of more than the input",
            Step::Reduce {
                x: X,
                y: Y,
                outer: 2,
                len: 33,
                inner: 1,
                op: ReduceOp::Sum,
            },
        ),
        (
            "a reduction whose sizes wrap",
            Step::Reduce {
                x: X,
                y: Y,
                outer: usize::MAX / 2,
                len: 4,
                inner: 0,
                op: ReduceOp::Max,
            },
        ),
        (
            "taps past the input",
            Step::Resample {
                x: X,
                y: Y,
                dims: vec![2],
                taps: vec![vec![vec![(0, 0.5), (64, 0.5)], vec![]]],
                order: vec![0],
                fill: 0.0,
            },
        ),
        (
            "an order that is no permutation",
            Step::Resample {
                x: X,
                y: Y,
                dims: vec![1, 1],
                taps: vec![vec![vec![(0, 1.0)]], vec![vec![(0, 1.0)]]],
                order: vec![1, 1],
                fill: 0.0,
            },
        ),
        (
            "tap tables shorter than their axis",
            Step::Resample {
                x: X,
                y: Y,
                dims: vec![3],
                taps: vec![vec![vec![(0, 1.0)]]],
                order: vec![0],
                fill: 0.0,
            },
        ),
        (
            "planes longer than the input",
            Step::InstanceNorm {
                x: X,
                y: Y,
                c: 4,
                hw: 17,
                eps: 1e-5,
                scale: 0,
                bias: 4,
            },
        ),
        (
            "a bias outside the weights",
            Step::InstanceNorm {
                x: X,
                y: Y,
                c: 4,
                hw: 16,
                eps: 1e-5,
                scale: 0,
                bias: 253,
            },
        ),
        (
            "a transposed convolution without scratch",
            Step::ConvTranspose {
                x: X,
                y: Y,
                g: CT,
                lead_h: 0,
                lead_w: 0,
                m: 4,
                groups: 2,
                w: 0,
                bias: None,
            },
        ),
        (
            "groups that do not divide",
            Step::ConvTranspose {
                x: X,
                y: Y,
                g: CT,
                lead_h: 0,
                lead_w: 0,
                m: 3,
                groups: 2,
                w: 0,
                bias: None,
            },
        ),
    ];
    for (what, s) in cases {
        let p = one_step(s, 256);
        if let Ok(mut r) = Runner::new(&p, 1) {
            let x = vec![0.5f32; 64];
            panic!(
                "{what}: the runner accepted it (a run gives {:?})",
                r.run(&[&x]).map(|_| ())
            );
        }
    }
}

/// A transposed convolution of 4 channels of 4×4 into 4 channels of 4×4 (stride 1, a
/// 2×2 kernel, pad 1 at the start): 64 floats in, 64 out.
const CT: Geometry = Geometry {
    c: 4,
    h: 4,
    w: 4,
    oh: 4,
    ow: 4,
    kh: 2,
    kw: 2,
    sh: 1,
    sw: 1,
    dh: 1,
    dw: 1,
    pt: 1,
    pl: 1,
};

/// Runs `step` (reading `X`, writing the first `n` floats of `Y`, weights `w`) on a batch of
/// two samples and checks each sample's output equals `kernel` run on that sample alone.
fn runs_per_sample(step: Step, n: usize, w: &[f32], kernel: impl Fn(&[f32], &mut [f32])) {
    let mut p = one_step(step.clone(), 0);
    p.weights = w.to_vec();
    p.scratch = 256;
    let mut r = Runner::new(&p, 2).unwrap();
    r.set_poison(true);
    let x = uniform(21, 128);
    let out = r.run(&[&x]).unwrap().remove(0);
    for s in 0..2 {
        let mut want = vec![f32::NAN; 64];
        kernel(&x[s * 64..(s + 1) * 64], &mut want);
        // Compared by bits over what the step writes (a NaN where it wrote nothing fails).
        let same = out[s * 64..s * 64 + n]
            .iter()
            .zip(&want[..n])
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{}: sample {s}", step.name());
    }
}

#[test]
fn well_formed_steps_run_per_sample() {
    let w = uniform(22, 64);
    // A transpose of [4][16] to [16][4] through tables.
    let offsets = vec![
        (0..16).collect::<Vec<_>>(),
        (0..4).map(|i| i * 16).collect(),
    ];
    let dims = vec![16, 4];
    runs_per_sample(
        Step::Gather {
            x: Src::Arena(X),
            y: Y,
            dims: dims.clone(),
            offsets: offsets.clone(),
        },
        64,
        &w,
        |x, y| gather::gather(x, &dims, &offsets, y).unwrap(),
    );
    // Four 4×4 products of the sample by the same constant, GELU after.
    runs_per_sample(
        Step::BatchMatMul {
            a: Src::Arena(X),
            a_strides: vec![16],
            b: Src::Weight { off: 16, len: 16 },
            b_strides: vec![0],
            dims: vec![4],
            m: 4,
            k: 4,
            n: 4,
            act: Act::Gelu,
            y: Y,
        },
        64,
        &w,
        |x, y| {
            let b = &w[16..32];
            matmul::batch_matmul(x, &[16], b, &[0], &[4], (4, 4, 4), Act::Gelu, y).unwrap();
        },
    );
    runs_per_sample(
        Step::LayerNorm {
            x: X,
            y: Y,
            rows: 4,
            cols: 16,
            eps: 1e-5,
            scale: 0,
            bias: Some(16),
        },
        64,
        &w,
        |x, y| {
            reduce::layer_norm(x, 4, 16, 1e-5, &w[..16], Some(&w[16..32]), y).unwrap();
        },
    );
    // A bilinear resize of a 4×16 sample to 8×8, the rows nesting inside the columns.
    let taps: Vec<Vec<Vec<(usize, f64)>>> = vec![
        (0..8)
            .map(|i| vec![(i / 2 * 16, 0.75), ((i / 2 + 1).min(3) * 16, 0.25)])
            .collect(),
        (0..8)
            .map(|j| {
                vec![
                    (2 * j, 0.5),
                    (2 * j + 1, 0.375),
                    ((2 * j + 2).min(15), 0.125),
                ]
            })
            .collect(),
    ];
    runs_per_sample(
        Step::Resample {
            x: X,
            y: Y,
            dims: vec![8, 8],
            taps: taps.clone(),
            order: vec![1, 0],
            fill: 0.0,
        },
        64,
        &w,
        |x, y| resample::resample(x, &[8, 8], &taps, &[1, 0], 0.0, y).unwrap(),
    );
    runs_per_sample(
        Step::InstanceNorm {
            x: X,
            y: Y,
            c: 4,
            hw: 16,
            eps: 1e-5,
            scale: 0,
            bias: 4,
        },
        64,
        &w,
        |x, y| reduce::instance_norm(x, 4, 16, 1e-5, &w[..4], &w[4..8], y).unwrap(),
    );
    let packed = conv_transpose::pack_weights(&w[..32], &CT, 4, 2).unwrap();
    let mut wct = packed.clone();
    let bias_at = wct.len();
    wct.extend_from_slice(&w[..4]);
    runs_per_sample(
        Step::ConvTranspose {
            x: X,
            y: Y,
            g: CT,
            lead_h: 0,
            lead_w: 0,
            m: 4,
            groups: 2,
            w: 0,
            bias: Some(bias_at),
        },
        64,
        &wct,
        |x, y| {
            let mut scratch = vec![0.0; conv_transpose::scratch_len(&CT, 4, 2)];
            conv_transpose::conv_transpose(
                mcc_runtime::kernels::gemm::Isa::cached(),
                x,
                &CT,
                (0, 0),
                4,
                2,
                &packed,
                Some(&w[..4]),
                y,
                &mut scratch,
            )
            .unwrap();
        },
    );
    runs_per_sample(
        Step::Reduce {
            x: X,
            y: Y,
            outer: 2,
            len: 4,
            inner: 8,
            op: ReduceOp::Min,
        },
        16,
        &w,
        |x, y| reduce::reduce(x, 2, 4, 8, ReduceOp::Min, y).unwrap(),
    );
}
