//! Property tests of the compiled kernels: hundreds of random single-layer models (Conv with
//! every padding/stride/dilation/group/epilogue mix, pools, Gemm/MatMul, broadcast
//! arithmetic, norms, softmax, concatenations of one or two operands, transposes), each lowered and run by the runtime with every GEMM
//! tile this CPU has and 1 or 2 threads, against the reference evaluator; and hundreds of
//! random sequence-model layers (LayerNormalization, reductions, Gather, Slice, Split,
//! Expand, products of two tensors, Erf, GELU) on a fixed batch.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_ir::op::{self, Op};
use mcc_ir::{DType, Dim, Graph, Tensor, TensorType};
use mcc_runtime::testing::{diff, suite_isas};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() as usize) % (hi - lo + 1)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.range(0, xs.len() - 1)]
    }
    fn data(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }
}

fn input(g: &mut Graph, dims: &[usize]) -> mcc_ir::ValueId {
    let mut shape = vec![Dim::Sym("N".into())];
    shape.extend(dims.iter().map(|&d| Dim::Fixed(d)));
    g.add_input(
        "x",
        TensorType {
            dtype: DType::F32,
            shape: Some(shape),
        },
    )
}

fn konst(g: &mut Graph, name: &str, dims: &[usize], r: &mut Rng) -> mcc_ir::ValueId {
    let n = dims.iter().product();
    g.add_const(name, Tensor::from_vec(dims, r.data(n)).unwrap())
}

/// A constant with 2 to 8% of its elements nonzero (the sparse kernel's weights).
fn sparse_konst(g: &mut Graph, dims: &[usize], r: &mut Rng) -> mcc_ir::ValueId {
    let n = dims.iter().product();
    let keep = r.range(2, 8) as u64;
    let v: Vec<f32> = r
        .data(n)
        .into_iter()
        .map(|v| if r.next() % 100 < keep { v } else { 0.0 })
        .collect();
    g.add_const("w", Tensor::from_vec(dims, v).unwrap())
}

fn node(g: &mut Graph, op: Op, ins: Vec<Option<mcc_ir::ValueId>>) -> Option<mcc_ir::ValueId> {
    let n = g.add_node(
        "layer",
        op,
        ins,
        vec![("y".into(), TensorType::unknown(DType::F32))],
    );
    let y = g.node(n).unwrap().outputs[0];
    g.set_outputs(vec![y]);
    mcc_ir::infer_all(g).ok()?;
    mcc_ir::verify(g).ok()?;
    // Skip degenerate shapes (an empty output).
    let dims = g.value(y).ty.fixed_dims();
    if g.value(y)
        .ty
        .shape
        .as_ref()?
        .iter()
        .skip(1)
        .any(|d| d.fixed() == Some(0))
        || dims.is_some_and(|d| d.contains(&0))
    {
        return None;
    }
    Some(y)
}

fn act(r: &mut Rng) -> (String, Vec<f32>) {
    match r.range(0, 4) {
        0 => (String::new(), vec![]),
        1 => ("Relu".into(), vec![]),
        2 => ("Clip".into(), vec![-0.5, 0.5]),
        3 => ("LeakyRelu".into(), vec![0.1]),
        _ => ("Sigmoid".into(), vec![]),
    }
}

/// The model's input, or (for whole blocks of 16 channels, half the time) a pointwise
/// convolution of it: its output is channel-blocked, so the layer after it runs on blocks.
fn source(
    g: &mut Graph,
    c: usize,
    h: usize,
    w: usize,
    r: &mut Rng,
) -> (mcc_ir::ValueId, &'static str) {
    let x = input(g, &[c, h, w]);
    if !c.is_multiple_of(16) || r.range(0, 1) == 0 {
        return (x, "");
    }
    let wv = konst(g, "pre_w", &[c, c, 1, 1], r);
    let n = g.add_node(
        "pre",
        Op::Conv(op::Conv::default()),
        vec![Some(x), Some(wv), None],
        vec![("pre_y".into(), TensorType::unknown(DType::F32))],
    );
    (g.node(n).unwrap().outputs[0], " after a pointwise conv")
}

/// One random single-layer model, or None when the draw is not a valid layer.
fn model(r: &mut Rng) -> Option<(String, Graph)> {
    let mut g = Graph::new("case");
    let kind = r.range(0, 14);
    // Some whole blocks of 16 channels (the channel-blocked kernels).
    let c = if r.range(0, 3) == 0 {
        r.pick(&[16, 32])
    } else {
        r.range(1, 9)
    };
    // Mostly small images; some wide enough for several 16-column vectors and 32-column
    // tiles per row.
    let side = if r.range(0, 3) == 0 { 40 } else { 13 };
    let (h, w) = (r.range(3, side), r.range(3, side));
    let desc;
    match kind {
        0..=2 => {
            let groups = r.pick(&[1, 1, 1, c, if c.is_multiple_of(2) { 2 } else { 1 }]);
            // Up to 19 output channels per group: full 6-row tiles and a partial one.
            let m = if groups == 1 && r.range(0, 2) == 0 {
                r.pick(&[16, 32, 48, 64, 80])
            } else {
                groups * r.range(1, if groups == 1 { 19 } else { 5 })
            };
            let (kh, kw) = (r.pick(&[1, 2, 3, 3, 5]), r.pick(&[1, 3, 3, 4]));
            let s = [r.pick(&[1, 1, 2, 3]), r.pick(&[1, 1, 2])];
            let d = [r.pick(&[1, 1, 1, 2]), r.pick(&[1, 1, 2])];
            let pads = vec![
                r.range(0, kh - 1),
                r.range(0, kw - 1),
                r.range(0, kh - 1),
                r.range(0, kw - 1),
            ];
            let (x, pre) = source(&mut g, c, h, w, r);
            let wv = konst(&mut g, "w", &[m, c / groups, kh, kw], r);
            let b = (r.range(0, 1) == 1).then(|| konst(&mut g, "b", &[m], r));
            let (a, ap) = act(r);
            desc = format!(
                "Conv c{c} m{m} g{groups} {h}x{w} k{kh}x{kw} s{s:?} d{d:?} p{pads:?} {a}{pre}"
            );
            let op = Op::Conv(op::Conv {
                group: groups as i64,
                strides: s.iter().map(|&v| v as i64).collect(),
                dilations: d.iter().map(|&v| v as i64).collect(),
                pads: pads.iter().map(|&v| v as i64).collect(),
                activation: a,
                activation_params: ap,
                ..Default::default()
            });
            node(&mut g, op, vec![Some(x), Some(wv), b])?;
        }
        3 => {
            let k = [r.range(1, 3), r.range(1, 3)];
            let s = [r.range(1, 3), r.range(1, 3)];
            let pads: Vec<i64> = (0..4).map(|i| r.range(0, k[i % 2] - 1) as i64).collect();
            let ceil = r.range(0, 3) == 0;
            // Sometimes big enough for one sample's pooling to split its channels.
            let (c, h, w, s) = if r.range(0, 3) == 0 {
                (r.pick(&[48, 64]), 40, 40, [1, 1])
            } else {
                (c, h, w, s)
            };
            let (x, pre) = source(&mut g, c, h, w, r);
            let max = r.range(0, 1) == 0;
            let cip = r.range(0, 1) as i64;
            desc = format!(
                "{} c{c} {h}x{w} k{k:?} s{s:?} p{pads:?} ceil {ceil} cip {cip}{pre}",
                if max { "MaxPool" } else { "AveragePool" }
            );
            let (ks, ss) = (
                k.iter().map(|&v| v as i64).collect(),
                s.iter().map(|&v| v as i64).collect(),
            );
            let op = if max {
                Op::MaxPool(op::MaxPool {
                    kernel_shape: ks,
                    strides: ss,
                    pads,
                    ceil_mode: ceil as i64,
                    ..Default::default()
                })
            } else {
                Op::AveragePool(op::AveragePool {
                    kernel_shape: ks,
                    strides: ss,
                    pads,
                    ceil_mode: ceil as i64,
                    count_include_pad: cip,
                    ..Default::default()
                })
            };
            node(&mut g, op, vec![Some(x)])?;
        }
        4 => {
            // Half of them deep and mostly zero: the sparse kernel's layers.
            let sparse = r.range(0, 1) == 1;
            let k = if sparse {
                r.range(150, 400)
            } else {
                r.range(1, 70)
            };
            let n = r.range(1, 70);
            let trans = r.range(0, 1) == 1;
            let x = input(&mut g, &[k]);
            let wv = if sparse {
                sparse_konst(&mut g, &if trans { [n, k] } else { [k, n] }, r)
            } else {
                konst(&mut g, "w", &if trans { [n, k] } else { [k, n] }, r)
            };
            let bias = (r.range(0, 1) == 1).then(|| konst(&mut g, "b", &[n], r));
            let (a, ap) = act(r);
            desc = format!(
                "Gemm k{k} n{n} transB {trans} bias {} {a} sparse {sparse}",
                bias.is_some()
            );
            let op = Op::Gemm(op::Gemm {
                transB: trans as i64,
                alpha: 0.5,
                beta: 2.0,
                activation: a,
                activation_params: ap,
                ..Default::default()
            });
            node(&mut g, op, vec![Some(x), Some(wv), bias])?;
        }
        5 => {
            let x = input(&mut g, &[c, h, w]);
            let shapes = [vec![c, 1, 1], vec![1], vec![w], vec![1, h, 1]];
            let shape = shapes[r.range(0, 3)].clone();
            let k = konst(&mut g, "k", &shape, r);
            let which = r.range(0, 3);
            desc = format!("binary {which} with {shape:?} on c{c} {h}x{w}");
            let op = match which {
                0 => Op::Add(op::Add {}),
                1 => Op::Mul(op::Mul {}),
                2 => Op::Sub(op::Sub {}),
                _ => Op::Div(op::Div {}),
            };
            node(&mut g, op, vec![Some(x), Some(k)])?;
        }
        6 => {
            let (x, pre) = source(&mut g, c, h, w, r);
            let stats: Vec<_> = ["s", "b", "m", "v"]
                .iter()
                .map(|n| konst(&mut g, n, &[c], r))
                .collect();
            // A positive variance.
            let v = g.const_data(stats[3]).unwrap().to_f64_vec();
            g.make_const(
                stats[3],
                Tensor::from_vec(&[c], v.iter().map(|x| (x.abs() + 0.1) as f32).collect()).unwrap(),
            );
            desc = format!("BatchNormalization c{c} {h}x{w}{pre}");
            let mut ins = vec![Some(x)];
            ins.extend(stats.into_iter().map(Some));
            node(
                &mut g,
                Op::BatchNormalization(op::BatchNormalization::default()),
                ins,
            )?;
        }
        9 => {
            // A residual block: Add(conv(x), x) or Add(conv(x), proj(x)), maybe then an
            // activation: the Add (and the activation) fuse into the later convolution.
            let (x, pre) = source(&mut g, c, h, w, r);
            let proj = r.range(0, 1) == 1;
            let m = if proj { r.range(1, 19) } else { c };
            let conv = |g: &mut Graph, name: &str, k: usize, r: &mut Rng| {
                let wv = konst(g, &format!("{name}_w"), &[m, c, k, k], r);
                let b = konst(g, &format!("{name}_b"), &[m], r);
                let op = Op::Conv(op::Conv {
                    pads: vec![(k / 2) as i64; 4],
                    ..Default::default()
                });
                let n = g.add_node(
                    name,
                    op,
                    vec![Some(x), Some(wv), Some(b)],
                    vec![(format!("{name}_y"), TensorType::unknown(DType::F32))],
                );
                g.node(n).unwrap().outputs[0]
            };
            let skip = if proj { conv(&mut g, "proj", 1, r) } else { x };
            let y = conv(&mut g, "conv", 3, r);
            let ins = if r.range(0, 1) == 1 {
                [y, skip]
            } else {
                [skip, y]
            };
            let n = g.add_node(
                "add",
                Op::Add(op::Add {}),
                ins.iter().map(|&v| Some(v)).collect(),
                vec![("sum".into(), TensorType::unknown(DType::F32))],
            );
            let sum = g.node(n).unwrap().outputs[0];
            g.set_outputs(vec![sum]);
            let act = r.range(0, 2);
            desc = format!("residual block c{c} m{m} {h}x{w} proj {proj} act {act}{pre}");
            match act {
                0 => {
                    mcc_ir::infer_all(&mut g).ok()?;
                    mcc_ir::verify(&g).ok()?;
                }
                1 => {
                    node(&mut g, Op::Relu(op::Relu {}), vec![Some(sum)])?;
                }
                _ => {
                    node(&mut g, Op::Sigmoid(op::Sigmoid {}), vec![Some(sum)])?;
                }
            }
        }
        8 => {
            // Several rows per sample: full 6-row tiles of the packed-B (dense) kernels.
            // Half of them deep and mostly zero, with up to 120 rows a batch: the sparse
            // kernel's 8-, 16- and 64-row tiles.
            let sparse = r.range(0, 1) == 1;
            let (rows, k, n) = if sparse {
                (r.range(1, 40), r.range(150, 400), r.range(1, 40))
            } else {
                (r.range(1, 14), r.range(1, 40), r.range(1, 140))
            };
            let x = input(&mut g, &[rows, k]);
            let wv = if sparse {
                sparse_konst(&mut g, &[k, n], r)
            } else {
                konst(&mut g, "w", &[k, n], r)
            };
            desc = format!("MatMul rows{rows} k{k} n{n} sparse {sparse}");
            node(
                &mut g,
                Op::MatMul(op::MatMul::default()),
                vec![Some(x), Some(wv)],
            )?;
        }
        7 => {
            let (x, pre) = source(&mut g, c, h, w, r);
            let size = r.range(1, 7) as i64;
            // β = 0.75 takes the square-root path; others the general power.
            let beta = r.pick(&[0.75, 0.75, 0.5, 1.3]);
            let (alpha, bias) = (r.pick(&[1e-4, 0.1, 2.0]), r.pick(&[1.0, 2.0, 0.5]));
            desc = format!("LRN size {size} α {alpha} β {beta} bias {bias} on c{c} {h}x{w}{pre}");
            let op = Op::Lrn(op::Lrn {
                alpha,
                beta,
                bias,
                size,
            });
            node(&mut g, op, vec![Some(x)])?;
        }
        11 => {
            // Layout-generic steps on (maybe) blocked channels; concatenations big enough
            // for one sample's copy to split its pixels over the threads.
            let which = r.range(0, 2);
            let (c, h, w) = if which == 1 {
                (r.pick(&[16, 32]), r.range(24, 40), r.range(24, 40))
            } else {
                (c, h, w)
            };
            let (x, pre) = source(&mut g, c, h, w, r);
            desc = format!(
                "{} c{c} {h}x{w}{pre}",
                ["GlobalAveragePool", "Concat", "Add"][which]
            );
            match which {
                0 => node(
                    &mut g,
                    Op::GlobalAveragePool(op::GlobalAveragePool {}),
                    vec![Some(x)],
                )?,
                1 => node(
                    &mut g,
                    Op::Concat(op::Concat { axis: 1 }),
                    vec![Some(x), Some(x)],
                )?,
                _ => node(&mut g, Op::Add(op::Add {}), vec![Some(x), Some(x)])?,
            };
        }
        12 => {
            // A permutation of the axes after the batch (rank 3 or 4 per sample); its input
            // maybe channel-blocked, so the reorder out of blocks comes first.
            let (x, pre) = source(&mut g, c, h, w, r);
            let perm: Vec<i64> = r
                .pick(&[
                    [0, 1, 3, 2],
                    [0, 2, 1, 3],
                    [0, 2, 3, 1],
                    [0, 3, 1, 2],
                    [0, 3, 2, 1],
                    [0, 1, 2, 3],
                ])
                .to_vec();
            desc = format!("Transpose {perm:?} of c{c} {h}x{w}{pre}");
            node(&mut g, Op::Transpose(op::Transpose { perm }), vec![Some(x)])?;
        }
        13 => {
            // Two different operands joined (their order matters, unlike Concat(x, x)): the
            // input (maybe blocked) and a convolution of it, along channels (any count, so
            // blocked and plain parts mix) or along a spatial axis (same channels).
            let (x, pre) = source(&mut g, c, h, w, r);
            let axis = r.pick(&[1, 1, 1, 2, 3, -1]);
            let m = if axis == 1 {
                r.pick(&[1, 5, 16, 32, c])
            } else {
                c
            };
            let wv = konst(&mut g, "w2", &[m, c, 1, 1], r);
            let n = g.add_node(
                "other",
                Op::Conv(op::Conv::default()),
                vec![Some(x), Some(wv), None],
                vec![("other_y".into(), TensorType::unknown(DType::F32))],
            );
            let other = g.node(n).unwrap().outputs[0];
            let first = r.range(0, 1) == 0;
            let ins = if first { [x, other] } else { [other, x] };
            desc = format!(
                "Concat axis {axis} of c{c} {h}x{w} and a conv to m{m} ({} first){pre}",
                if first { "input" } else { "conv" }
            );
            node(
                &mut g,
                Op::Concat(op::Concat { axis }),
                ins.iter().map(|&v| Some(v)).collect(),
            )?;
        }
        _ => {
            let x = input(&mut g, &[c * w]);
            desc = format!("Softmax {}", c * w);
            node(&mut g, Op::Softmax(op::Softmax::default()), vec![Some(x)])?;
        }
    }
    Some((desc, g))
}

#[test]
fn random_layers_match_the_reference_evaluator() {
    let isas = suite_isas("random layers").unwrap();
    let mut r = Rng(2026);
    let (mut tested, mut sparse) = (0, 0);
    while tested < 1000 {
        let Some((desc, g)) = model(&mut r) else {
            continue;
        };
        let prog = mcc_codegen::lower(&g).unwrap_or_else(|e| panic!("{desc}: {e}"));
        if prog
            .steps
            .iter()
            .any(|s| matches!(s, mcc_runtime::program::Step::SparseDense { .. }))
        {
            sparse += 1;
        }
        let xv = g.inputs()[0];
        let per: usize = g.value(xv).ty.shape.as_ref().unwrap()[1..]
            .iter()
            .map(|d| d.fixed().unwrap())
            .product();
        let batch = r.range(1, 3);
        let data = r.data(per * batch);
        let mut dims = vec![batch];
        dims.extend(
            g.value(xv).ty.shape.as_ref().unwrap()[1..]
                .iter()
                .map(|d| d.fixed().unwrap()),
        );
        let want = mcc_ir::run(&g, &[Tensor::from_vec(&dims, data.clone()).unwrap()])
            .unwrap()
            .remove(0);
        let want = want.to_f64_vec();
        // A NaN in the reference would let a NaN in the kernel's output pass as equal.
        assert!(
            want.iter().all(|v| v.is_finite()),
            "{desc}: the reference evaluator's output is not finite"
        );
        for &isa in &isas {
            for threads in [1, 2] {
                let mut runner = mcc_runtime::exec::Runner::new(&prog, threads).unwrap();
                runner.set_isa(isa).unwrap();
                runner.set_poison(true);
                let got = runner
                    .run(&[&data])
                    .unwrap_or_else(|e| panic!("{desc}: {e}"))
                    .remove(0);
                // Relative to the output's scale (at least 1e-3); NaN anywhere fails.
                let d = diff(&got, &want, 0.0, f64::INFINITY);
                let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                assert!(
                    d.max_abs <= 1e-4 * scale,
                    "{desc} ({}, {threads} threads, batch {batch}): error {:e} of {scale:e} at element {}",
                    isa.name(),
                    d.max_abs,
                    d.worst
                );
            }
        }
        tested += 1;
    }
    // The deep, mostly-zero Gemm and MatMul cases must reach the sparse kernel.
    assert!(
        sparse >= 20,
        "only {sparse} of the cases ran the sparse kernel"
    );
    println!("{sparse} of {tested} cases ran the sparse kernel");
}

/// A graph input of fixed dims (the batch `batch` first), named `name`.
fn fixed_input(g: &mut Graph, name: &str, batch: usize, dims: &[usize]) -> mcc_ir::ValueId {
    let mut shape = vec![Dim::Fixed(batch)];
    shape.extend(dims.iter().map(|&d| Dim::Fixed(d)));
    g.add_input(
        name,
        TensorType {
            dtype: DType::F32,
            shape: Some(shape),
        },
    )
}

/// An i64 constant.
fn ints(g: &mut Graph, name: &str, v: &[i64]) -> mcc_ir::ValueId {
    g.add_const(name, Tensor::from_vec(&[v.len()], v.to_vec()).unwrap())
}

/// Random per-sample dims: rank 1 to 3 (plus the batch), each 1 to 7, the last up to 40.
fn dims(r: &mut Rng) -> Vec<usize> {
    let rank = r.range(1, 3);
    let mut d: Vec<usize> = (0..rank).map(|_| r.range(1, 7)).collect();
    if r.range(0, 2) == 0 {
        d[rank - 1] = r.range(8, 40);
    }
    d
}

/// One random sequence-model layer on a fixed batch (LayerNormalization, a reduction,
/// Gather, Slice, Split, Expand, a product of two tensors, Erf or GELU), or None when the
/// draw is not a valid layer.
fn sequence_model(r: &mut Rng) -> Option<(String, Graph)> {
    let mut g = Graph::new("case");
    let batch = r.range(1, 3);
    let d = dims(r);
    let rank = d.len() + 1;
    let desc;
    match r.range(0, 7) {
        0 => {
            let x = fixed_input(&mut g, "x", batch, &d);
            let axis =
                r.range(1, rank - 1) as i64 - if r.range(0, 1) == 0 { rank as i64 } else { 0 };
            let ax = axis.rem_euclid(rank as i64) as usize;
            // The scale over the normalized axes, sometimes only the last (broadcast).
            let inner = &d[ax - 1..];
            let sdims = if r.range(0, 1) == 0 {
                inner.to_vec()
            } else {
                vec![inner[inner.len() - 1]]
            };
            let s = konst(&mut g, "s", &sdims, r);
            let b = (r.range(0, 1) == 1).then(|| konst(&mut g, "b", &sdims, r));
            desc = format!(
                "LayerNormalization axis {axis} of {d:?}, scale {sdims:?}, bias {}",
                b.is_some()
            );
            let op = Op::LayerNormalization(op::LayerNormalization {
                axis,
                epsilon: r.pick(&[1e-5, 1e-3, 0.5]),
                ..Default::default()
            });
            node(&mut g, op, vec![Some(x), Some(s), b])?;
        }
        1 => {
            let x = fixed_input(&mut g, "x", batch, &d);
            let lo = r.range(1, rank - 1);
            let hi = r.range(lo, rank - 1);
            let axes: Vec<i64> = (lo..=hi).map(|a| a as i64).collect();
            let keep = r.range(0, 1) as i64;
            let which = r.range(0, 3);
            let ax = ints(&mut g, "axes", &axes);
            desc = format!(
                "{} axes {axes:?} keepdims {keep} of {d:?}",
                ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin"][which]
            );
            let op = match which {
                0 => Op::ReduceSum(op::ReduceSum {
                    keepdims: keep,
                    ..Default::default()
                }),
                1 => Op::ReduceMean(op::ReduceMean {
                    keepdims: keep,
                    ..Default::default()
                }),
                2 => Op::ReduceMax(op::ReduceMax {
                    keepdims: keep,
                    ..Default::default()
                }),
                _ => Op::ReduceMin(op::ReduceMin {
                    keepdims: keep,
                    ..Default::default()
                }),
            };
            node(&mut g, op, vec![Some(x), Some(ax)])?;
        }
        2 => {
            let x = fixed_input(&mut g, "x", batch, &d);
            let ax = r.range(1, rank - 1);
            let size = d[ax - 1] as i64;
            let count = r.range(0, 4);
            let picks: Vec<i64> = (0..count.max(1))
                .map(|_| {
                    r.range(0, size as usize - 1) as i64 - if r.range(0, 1) == 0 { size } else { 0 }
                })
                .collect();
            let idx = if count == 0 {
                g.add_const("i", Tensor::from_vec(&[], vec![picks[0]]).unwrap())
            } else {
                ints(&mut g, "i", &picks)
            };
            desc = format!(
                "Gather axis {ax} of {d:?} at {picks:?} (scalar {})",
                count == 0
            );
            node(
                &mut g,
                Op::Gather(op::Gather { axis: ax as i64 }),
                vec![Some(x), Some(idx)],
            )?;
        }
        3 => {
            let x = fixed_input(&mut g, "x", batch, &d);
            let ax = r.range(1, rank - 1);
            let size = d[ax - 1] as i64;
            let step = r.pick(&[1, 1, 2, 3, -1, -2]);
            let start =
                r.range(0, size as usize) as i64 - if r.range(0, 2) == 0 { size } else { 0 };
            let end = r.pick(&[0, 1, size, -1, i64::MAX, i64::MIN, size - 1]);
            let (st, en, axs, sp) = (
                ints(&mut g, "st", &[start]),
                ints(&mut g, "en", &[end]),
                ints(&mut g, "ax", &[ax as i64]),
                ints(&mut g, "sp", &[step]),
            );
            desc = format!("Slice axis {ax} of {d:?}: {start}..{end} step {step}");
            node(
                &mut g,
                Op::Slice(op::Slice {}),
                vec![Some(x), Some(st), Some(en), Some(axs), Some(sp)],
            )?;
        }
        4 => {
            // Split into 1 to 3 parts, every part an output.
            let x = fixed_input(&mut g, "x", batch, &d);
            let ax = r.range(1, rank - 1);
            let len = d[ax - 1];
            let parts = r.range(1, 3);
            let sizes: Option<Vec<i64>> = (r.range(0, 1) == 1).then(|| {
                let mut left = len as i64;
                let mut v: Vec<i64> = (0..parts - 1)
                    .map(|_| {
                        let s = r.range(0, left as usize) as i64;
                        left -= s;
                        s
                    })
                    .collect();
                v.push(left);
                v
            });
            let sz = sizes.as_ref().map(|s| ints(&mut g, "sizes", s));
            desc = format!("Split axis {ax} of {d:?} into {parts} ({sizes:?})");
            let outs = (0..parts)
                .map(|i| (format!("y{i}"), TensorType::unknown(DType::F32)))
                .collect();
            let n = g.add_node(
                "layer",
                Op::Split(op::Split {
                    axis: ax as i64,
                    num_outputs: if sizes.is_none() { parts as i64 } else { 0 },
                }),
                vec![Some(x), sz],
                outs,
            );
            let ys = g.node(n).unwrap().outputs.clone();
            g.set_outputs(ys.clone());
            mcc_ir::infer_all(&mut g).ok()?;
            mcc_ir::verify(&g).ok()?;
            // Parts of size 0 have no data to compare.
            if ys
                .iter()
                .any(|&y| g.value(y).ty.fixed_dims().is_none_or(|d| d.contains(&0)))
            {
                return None;
            }
        }
        5 => {
            // Expand the 1s of a tensor to the dims.
            let small: Vec<usize> = d
                .iter()
                .map(|&x| if r.range(0, 1) == 0 { 1 } else { x })
                .collect();
            let x = fixed_input(&mut g, "x", batch, &small);
            let mut target = vec![1i64];
            target.extend(d.iter().map(|&x| x as i64));
            let s = ints(&mut g, "shape", &target);
            desc = format!("Expand {small:?} to {d:?}");
            node(&mut g, Op::Expand(op::Expand {}), vec![Some(x), Some(s)])?;
        }
        6 => {
            // A product of two tensors (or of a tensor and a constant of rank 3) with
            // broadcast leading axes.
            let (m, k, n) = (r.range(1, 20), r.range(1, 40), r.range(1, 40));
            let lead = r.range(1, 5);
            let (la, lb) = match r.range(0, 2) {
                0 => (lead, lead),
                1 => (lead, 1),
                _ => (1, lead),
            };
            let a = fixed_input(&mut g, "a", batch, &[la, m, k]);
            let b = if r.range(0, 3) == 0 {
                konst(&mut g, "b", &[lb, k, n], r)
            } else {
                fixed_input(&mut g, "b", batch, &[lb, k, n])
            };
            desc = format!(
                "MatMul [{la},{m},{k}] × [{lb},{k},{n}] (b constant {})",
                g.const_data(b).is_some()
            );
            node(
                &mut g,
                Op::MatMul(op::MatMul::default()),
                vec![Some(a), Some(b)],
            )?;
        }
        _ => {
            let x = fixed_input(&mut g, "x", batch, &d);
            let which = r.range(0, 2);
            desc = format!("{} of {d:?}", ["Erf", "Gelu", "Gelu tanh"][which]);
            let op = match which {
                0 => Op::Erf(op::Erf {}),
                1 => Op::Gelu(op::Gelu::default()),
                _ => Op::Gelu(op::Gelu {
                    approximate: "tanh".into(),
                }),
            };
            node(&mut g, op, vec![Some(x)])?;
        }
    }
    Some((desc, g))
}

/// Random sequence-model layers (each of the steps for LayerNorm, the reductions, Gather,
/// Slice, Split, Expand, products of two tensors, Erf and GELU), lowered and run on 1 and 2
/// threads against the reference evaluator (1e-5 of each output's scale), every output.
#[test]
fn random_sequence_layers_match_the_reference_evaluator() {
    let mut r = Rng(2027);
    let mut tested = 0;
    while tested < 400 {
        let Some((desc, g)) = sequence_model(&mut r) else {
            continue;
        };
        let prog = mcc_codegen::lower(&g).unwrap_or_else(|e| panic!("{desc}: {e}"));
        let mut inputs = vec![];
        let mut data = vec![];
        for &v in g.inputs() {
            let dims = g.value(v).ty.fixed_dims().unwrap();
            let x: Vec<f32> = r
                .data(dims.iter().product())
                .iter()
                .map(|v| v * 3.0)
                .collect();
            inputs.push(Tensor::from_vec(&dims, x.clone()).unwrap());
            data.push(x);
        }
        let want = mcc_ir::run(&g, &inputs).unwrap_or_else(|e| panic!("{desc}: {e}"));
        let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        for threads in [1, 2] {
            let mut runner = mcc_runtime::exec::Runner::new(&prog, threads).unwrap();
            runner.set_poison(true);
            let got = runner.run(&refs).unwrap_or_else(|e| panic!("{desc}: {e}"));
            assert_eq!(got.len(), want.len(), "{desc}");
            for (o, (got, want)) in got.iter().zip(&want).enumerate() {
                let want = want.to_f64_vec();
                let d = diff(got, &want, 0.0, f64::INFINITY);
                let scale = want.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
                assert!(
                    d.max_abs <= 1e-5 * scale,
                    "{desc} ({threads} threads), output {o}: error {:e} of {scale:e} at element {}",
                    d.max_abs,
                    d.worst
                );
            }
        }
        tested += 1;
    }
}

/// A `dims` constant whose zeros are whole blocks of `r` consecutive outputs × 1 input (the
/// outputs are the last axis, or the first when `trans`), about `keep`% of the blocks kept:
/// what `prune block` leaves.
fn block_konst(
    g: &mut Graph,
    k: usize,
    n: usize,
    r: usize,
    trans: bool,
    keep: u64,
    rng: &mut Rng,
) -> mcc_ir::ValueId {
    let kept: Vec<bool> = (0..k * n.div_ceil(r))
        .map(|_| rng.next() % 100 < keep)
        .collect();
    let v = rng.data(k * n);
    let w: Vec<f32> = (0..k * n)
        .map(|i| {
            // Element i of the stored matrix is B[kk, j].
            let (kk, j) = if trans {
                (i % k, i / k)
            } else {
                (i / n, i % n)
            };
            if kept[kk * n.div_ceil(r) + j / r] {
                v[i]
            } else {
                0.0
            }
        })
        .collect();
    let dims = if trans { [n, k] } else { [k, n] };
    g.add_const("w", Tensor::from_vec(&dims, w).unwrap())
}

/// Block-pruned fully connected layers (4×1, 8×1 and 16×1 blocks, either weight layout, n a
/// multiple of the block or not, bias and activation or not) lower to the block-sparse
/// kernel with the block the zeros form, and compute the reference evaluator's outputs on
/// every ISA, on 1 and 2 threads, at batches on both sides of its row/batched threshold and
/// of its 64-row tiles.
#[test]
fn block_pruned_layers_take_the_block_kernel_and_match_the_evaluator() {
    use mcc_runtime::program::Step;
    let isas = suite_isas("block-pruned layers").unwrap();
    let mut rng = Rng(15);
    let mut cases = 0;
    for (r, k, n) in [
        (4, 784, 300),
        (8, 300, 100),
        (16, 256, 48),
        (4, 400, 42),
        (8, 320, 60),
    ] {
        for trans in [false, true] {
            let mut g = Graph::new("block");
            let x = input(&mut g, &[k]);
            let w = block_konst(&mut g, k, n, r, trans, 8, &mut rng);
            let bias = trans.then(|| konst(&mut g, "b", &[n], &mut rng));
            let op = Op::Gemm(op::Gemm {
                transB: trans as i64,
                activation: if trans { "Relu".into() } else { String::new() },
                ..Default::default()
            });
            node(&mut g, op, vec![Some(x), Some(w), bias]).unwrap();
            let desc = format!("Gemm {k}×{n} transB {trans}, {r}×1 blocks");
            let prog = mcc_codegen::lower(&g).unwrap_or_else(|e| panic!("{desc}: {e}"));
            let step = prog
                .steps
                .iter()
                .find(|s| matches!(s, Step::BlockDense { .. }))
                .unwrap_or_else(|| panic!("{desc}: no block step in {:?}", prog.steps));
            let Step::BlockDense { r: got, c, .. } = step else {
                unreachable!()
            };
            assert_eq!((*got, *c), (r, 1), "{desc}");
            for batch in [1, 3, 7, 64, 130] {
                let data = rng.data(k * batch);
                let want = mcc_ir::run(&g, &[Tensor::from_vec(&[batch, k], data.clone()).unwrap()])
                    .unwrap()
                    .remove(0)
                    .to_f64_vec();
                for &isa in &isas {
                    for threads in [1, 2] {
                        let mut runner = mcc_runtime::exec::Runner::new(&prog, threads).unwrap();
                        runner.set_isa(isa).unwrap();
                        runner.set_poison(true);
                        let got = runner.run(&[&data]).unwrap().remove(0);
                        let d = diff(&got, &want, 1e-5, 1e-5 * (k as f64).sqrt());
                        assert!(
                            d.allclose,
                            "{desc} ({}, {threads} threads, batch {batch}): {d:?}",
                            isa.name()
                        );
                        cases += 1;
                    }
                }
            }
        }
    }
    assert!(cases > 0);
}
