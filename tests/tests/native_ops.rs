//! The operators compiled natively beyond the corpus's convolutions, as small graphs
//! written as IR text: for sequence models LayerNormalization, Erf and Gelu, MatMul of two
//! tensors (broadcast, constant on either side), Gather, Slice, Split, Expand, the
//! reductions, transposes of rank 5 and 6 and a whole attention block; for images
//! DepthToSpace, SpaceToDepth, Resize in every mode, InstanceNormalization and ConvTranspose
//! on seeded random geometries. Each is merged, lowered and run by the runtime's interpreter
//! and by the JIT (bit for bit the same) at batch 1 and 3, against the reference evaluator
//! (rtol 1e-5), once on plain inputs and once with a NaN and infinities planted in one
//! sample. What the lowering must refuse (anything that would mix samples) is an error
//! naming the node.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use mcc_ir::{Dim, Graph, Tensor};
use mcc_runtime::testing::{diff, uniform};

/// Parses IR text, panicking with the parser's message.
fn parse(src: &str) -> Graph {
    mcc_ir::text::parse(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// Seeded inputs for `g` at `batch`; with `special`, the first sample holds a NaN and both
/// infinities.
fn inputs(g: &Graph, batch: usize, special: bool) -> Vec<Tensor> {
    g.inputs()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let shape: Vec<usize> = g
                .value(v)
                .ty
                .shape
                .as_ref()
                .unwrap()
                .iter()
                .map(|d| match d {
                    Dim::Sym(_) => batch,
                    d => d.fixed().unwrap(),
                })
                .collect();
            let n: usize = shape.iter().product();
            let mut data = uniform(100 + i as u64 + 10 * batch as u64, n);
            if special {
                let per = n / batch;
                data[per / 3] = f32::NAN;
                data[per / 2] = f32::INFINITY;
                data[per - 1] = f32::NEG_INFINITY;
            }
            Tensor::from_vec(&shape, data).unwrap()
        })
        .collect()
}

/// Lowers `g` (after the exact merges) and checks the program against the evaluator at
/// batch 1 and 3, interpreter and JIT bit for bit. `special` also plants NaN and infinities.
fn check(name: &str, g: &Graph, special: bool) -> mcc_runtime::program::Program {
    let mut merged = g.clone();
    mcc_passes::merge_everything(&mut merged).unwrap();
    check_lowered(name, g, &merged, special)
}

/// Like [`check`], lowering `lowered` (which computes what `g` does).
fn check_lowered(
    name: &str,
    g: &Graph,
    lowered: &Graph,
    special: bool,
) -> mcc_runtime::program::Program {
    let p = mcc_codegen::lower(lowered).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut runner = mcc_runtime::exec::Runner::new(&p, 2).unwrap();
    runner.set_poison(true);
    let mut jit = mcc_codegen::jit::Jit::new(p.clone(), 2).unwrap();
    for batch in [1, 3] {
        for plant in [false, true] {
            if plant && !special {
                continue;
            }
            let xs = inputs(g, batch, plant);
            let want = mcc_ir::run(g, &xs).unwrap_or_else(|e| panic!("{name}: {e}"));
            let data: Vec<Vec<f32>> = xs
                .iter()
                .map(|x| x.as_f32().unwrap().iter().copied().collect())
                .collect();
            let refs: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
            let interpreted = runner.run(&refs).unwrap();
            let compiled = jit.run(&refs).unwrap();
            assert_eq!(interpreted.len(), want.len(), "{name}");
            for (o, ((i, c), w)) in interpreted.iter().zip(&compiled).zip(&want).enumerate() {
                assert!(
                    i.len() == c.len() && i.iter().zip(c).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{name}: the JIT and the interpreter disagree on output {o}"
                );
                // Relative to the tensor's scale (sums of many terms cancel to small
                // elements whose rounding error is the large terms').
                let want = w.to_f64_vec();
                let scale = want
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold(1f64, |m, v| m.max(v.abs()));
                let d = diff(i, &want, 1e-5, 1e-6 * scale);
                assert!(
                    d.allclose && d.max_rel <= 1e-5,
                    "{name}, batch {batch}{}, output {o}: {d:?}",
                    if plant { ", NaN and ±inf planted" } else { "" },
                );
            }
        }
    }
    p
}

/// `check` on IR text.
fn check_text(name: &str, src: &str, special: bool) -> mcc_runtime::program::Program {
    check(name, &parse(src), special)
}

/// The step kinds of a program, in order.
fn kinds(p: &mcc_runtime::program::Program) -> Vec<&'static str> {
    p.steps.iter().map(|s| s.name()).collect()
}

#[test]
fn layer_normalization() {
    let p = check_text(
        "layer norm, last axis",
        r#"graph "ln" {
  input %x: f32[N,17,64]
  const %s: f32[64] = seeded(1)
  const %b: f32[64] = seeded(2)
  node ln = LayerNormalization(%x, %s, %b) -> %y: f32[N,17,64]
  output %y
}"#,
        true,
    );
    assert_eq!(kinds(&p), ["LayerNorm"]);
    check_text(
        "layer norm over two axes, no bias, broadcast scale",
        r#"graph "ln2" {
  input %x: f32[N,3,5,6]
  const %s: f32[6] = seeded(3)
  node ln = LayerNormalization(%x, %s) {axis=-2, epsilon=0.001} -> %y: f32[N,3,5,6]
  output %y
}"#,
        true,
    );
    check_text(
        "layer norm from axis 1, scale over all normalized axes",
        r#"graph "ln3" {
  input %x: f32[N,4,5]
  const %s: f32[4,5] = seeded(4)
  const %b: f32[1,5] = seeded(5)
  node ln = LayerNormalization(%x, %s, %b) {axis=1} -> %y: f32[N,4,5]
  output %y
}"#,
        false,
    );
}

#[test]
fn erf_and_gelu() {
    check_text(
        "erf",
        r#"graph "erf" {
  input %x: f32[N,4,33]
  const %k: f32[] = [3.0]
  node m = Mul(%x, %k) -> %m: f32[N,4,33]
  node e = Erf(%m) -> %y: f32[N,4,33]
  output %y
}"#,
        true,
    );
    // GELU as the exporters write it: x · (erf(x/√2) + 1) · 0.5.
    check_text(
        "decomposed gelu",
        r#"graph "gelu" {
  input %x: f32[N,17,128]
  const %r2: f32[] = [1.4142135]
  const %one: f32[] = [1.0]
  const %half: f32[] = [0.5]
  node d = Div(%x, %r2) -> %d: f32[N,17,128]
  node e = Erf(%d) -> %e: f32[N,17,128]
  node a = Add(%e, %one) -> %a: f32[N,17,128]
  node m = Mul(%x, %a) -> %m: f32[N,17,128]
  node h = Mul(%m, %half) -> %y: f32[N,17,128]
  output %y
}"#,
        true,
    );
    for approx in ["none", "tanh"] {
        check_text(
            &format!("gelu {approx}"),
            &format!(
                r#"graph "g" {{
  input %x: f32[N,9,7]
  node g = Gelu(%x) {{approximate="{approx}"}} -> %y: f32[N,9,7]
  output %y
}}"#
            ),
            false,
        );
    }
}

/// GELU as exporters spell it, every form mcc fuses (√2 divided or 1/√2 multiplied, the
/// halving last, of the sum or of x, operands either way round), compiled as one step —
/// alone, or as the epilogue of the dense layer before it — and checked three ways: against
/// the evaluator on the chain (`check`: rtol 1e-5, which a NaN where a number belongs fails;
/// not bits, since the evaluator's erf is its own series, as for a lone `Erf`), and bit for
/// bit (NaN as NaN) against the same chain lowered step by step, which the lowering does
/// when erf's result is also read elsewhere (here: a second output).
#[test]
fn exporters_gelu_is_one_step_with_the_chains_bits() {
    let forms = [
        // TorchScript: ((x · (erf(x / √2) + 1)) · 0.5).
        (
            "div, half last",
            "node d = Div(%x, %r2) -> %d: T",
            "node a = Add(%e, %one) -> %a: T\n  node m = Mul(%x, %a) -> %m: T\n  node h = Mul(%m, %half) -> %y: T",
        ),
        // dynamo: x · (0.5 · (erf(x / √2) + 1)).
        (
            "div, half of the sum",
            "node d = Div(%x, %r2) -> %d: T",
            "node a = Add(%e, %one) -> %a: T\n  node m = Mul(%half, %a) -> %m: T\n  node h = Mul(%x, %m) -> %y: T",
        ),
        // (x · 0.5) · (1 + erf(x · 1/√2)), operands the other way round.
        (
            "mul, half of x",
            "node d = Mul(%r2inv, %x) -> %d: T",
            "node a = Add(%one, %e) -> %a: T\n  node m = Mul(%x, %half) -> %m: T\n  node h = Mul(%a, %m) -> %y: T",
        ),
        (
            "mul, half last, swapped",
            "node d = Mul(%x, %r2inv) -> %d: T",
            "node a = Add(%e, %one) -> %a: T\n  node m = Mul(%a, %x) -> %m: T\n  node h = Mul(%half, %m) -> %y: T",
        ),
    ];
    for (what, scale, tail) in forms {
        for dense in [false, true] {
            let (head, x) = if dense {
                (
                    "input %in: f32[N,5,6]\n  const %w: f32[6,37] = seeded(7)\n  const %b: f32[37] = seeded(8)\n  node mm = MatMul(%in, %w) -> %p: T\n  node bias = Add(%p, %b) -> %x: T\n",
                    "dense",
                )
            } else {
                ("input %x: T\n", "input")
            };
            let body = format!(
                "  {head}  const %r2: f32[] = [1.4142135]\n  const %r2inv: f32[] = [0.70710677]\n  const %one: f32[] = [1.0]\n  const %half: f32[] = [0.5]\n  {scale}\n  node e = Erf(%d) -> %e: T\n  {tail}\n  output %y\n"
            );
            let t = if dense { "f32[N,5,37]" } else { "f32[N,17,37]" };
            let fused_src = format!(
                "graph \"gelu\" {{\n{}}}",
                body.replace(": T", &format!(": {t}"))
            );
            let name = format!("{what}, after {x}");
            let fused = check_text(&name, &fused_src, true);
            assert_eq!(
                kinds(&fused),
                if dense { ["Dense"] } else { ["Unary"] },
                "{name}"
            );
            // The chain step by step: erf's result is also an output.
            let plain_src = fused_src.replace("output %y", "output %y\n  output %e");
            let plain = check_text(&format!("{name}, unfused"), &plain_src, true);
            assert!(plain.steps.len() >= 4, "{name}: {:?}", kinds(&plain));
            let g = parse(&fused_src);
            for batch in [1, 3] {
                let xs = inputs(&g, batch, true);
                let data: Vec<f32> = xs[0].as_f32().unwrap().iter().copied().collect();
                let run = |p: &mcc_runtime::program::Program| {
                    let mut r = mcc_runtime::exec::Runner::new(p, 2).unwrap();
                    r.set_poison(true);
                    r.run(&[&data]).unwrap().swap_remove(0)
                };
                let (a, b) = (run(&fused), run(&plain));
                assert_eq!(a.len(), b.len());
                for (i, (u, v)) in a.iter().zip(&b).enumerate() {
                    assert!(
                        u.to_bits() == v.to_bits() || (u.is_nan() && v.is_nan()),
                        "{name}, batch {batch}, element {i}: fused {u} vs step by step {v}"
                    );
                }
            }
        }
    }
    // A constant off by one bit is not √2: the chain is lowered step by step.
    let off = check_text(
        "gelu with a constant one bit off",
        r#"graph "gelu" {
  input %x: f32[N,4,8]
  const %r2: f32[] = [1.4142134]
  const %one: f32[] = [1.0]
  const %half: f32[] = [0.5]
  node d = Div(%x, %r2) -> %d: f32[N,4,8]
  node e = Erf(%d) -> %e: f32[N,4,8]
  node a = Add(%e, %one) -> %a: f32[N,4,8]
  node m = Mul(%x, %a) -> %m: f32[N,4,8]
  node h = Mul(%m, %half) -> %y: f32[N,4,8]
  output %y
}"#,
        true,
    );
    assert!(off.steps.len() > 1, "{:?}", kinds(&off));
}

#[test]
fn matmul_of_two_tensors() {
    let p = check_text(
        "heads × heads",
        r#"graph "bmm" {
  input %a: f32[N,4,17,16]
  input %b: f32[N,4,16,17]
  node mm = MatMul(%a, %b) -> %y: f32[N,4,17,17]
  output %y
}"#,
        true,
    );
    assert_eq!(kinds(&p), ["BatchMatMul"]);
    check_text(
        "right operand broadcast over the heads",
        r#"graph "bmm" {
  input %a: f32[N,4,5,6]
  input %b: f32[N,1,6,3]
  node mm = MatMul(%a, %b) -> %y: f32[N,4,5,3]
  output %y
}"#,
        false,
    );
    check_text(
        "a constant left operand",
        r#"graph "bmm" {
  input %b: f32[N,4,16,9]
  const %a: f32[7,16] = seeded(6)
  node mm = MatMul(%a, %b) -> %y: f32[N,4,7,9]
  output %y
}"#,
        false,
    );
    check_text(
        "a constant right operand of rank 3",
        r#"graph "bmm" {
  input %a: f32[N,4,5,16]
  const %b: f32[4,16,8] = seeded(7)
  node mm = MatMul(%a, %b) -> %y: f32[N,4,5,8]
  output %y
}"#,
        false,
    );
    check_text(
        "a constant vector on the right",
        r#"graph "mv" {
  input %a: f32[N,5,16]
  const %b: f32[16] = seeded(8)
  node mm = MatMul(%a, %b) -> %y: f32[N,5]
  output %y
}"#,
        false,
    );
    // The dense path stays for a 2-D constant.
    let p = check_text(
        "a 2-D constant stays dense",
        r#"graph "d" {
  input %a: f32[N,5,16]
  const %b: f32[16,8] = seeded(9)
  node mm = MatMul(%a, %b) -> %y: f32[N,5,8]
  output %y
}"#,
        false,
    );
    assert_eq!(kinds(&p), ["Dense"]);
}

#[test]
fn gather_slice_split() {
    check_text(
        "gather of the class token",
        r#"graph "g" {
  input %x: f32[N,17,64]
  const %i: i64[] = [0]
  node g = Gather(%x, %i) {axis=1} -> %y: f32[N,64]
  output %y
}"#,
        true,
    );
    check_text(
        "gather of a list with a negative index",
        r#"graph "g" {
  input %x: f32[N,3,5,4]
  const %i: i64[4] = [2, -1, 0, 2]
  node g = Gather(%x, %i) {axis=-2} -> %y: f32[N,3,4,4]
  output %y
}"#,
        true,
    );
    check_text(
        "gather with a 2-D index",
        r#"graph "g" {
  input %x: f32[N,6,3]
  const %i: i64[2,2] = [5, 0, 1, 1]
  node g = Gather(%x, %i) {axis=1} -> %y: f32[N,2,2,3]
  output %y
}"#,
        false,
    );
    check_text(
        "slice with steps of both signs",
        r#"graph "s" {
  input %x: f32[N,8,10]
  const %st: i64[2] = [1, -1]
  const %en: i64[2] = [7, -100]
  const %ax: i64[2] = [1, 2]
  const %sp: i64[2] = [2, -3]
  node s = Slice(%x, %st, %en, %ax, %sp) -> %y: f32[N,3,4]
  output %y
}"#,
        true,
    );
    check_text(
        "slice keeping the whole batch",
        r#"graph "s" {
  input %x: f32[N,8,10]
  const %st: i64[2] = [0, 2]
  const %en: i64[2] = [9223372036854775807, 5]
  const %ax: i64[2] = [0, -1]
  node s = Slice(%x, %st, %en, %ax) -> %y: f32[N,8,3]
  output %y
}"#,
        false,
    );
    let p = check_text(
        "split with sizes, every part read",
        r#"graph "sp" {
  input %x: f32[N,6,4]
  const %sz: i64[3] = [1, 2, 3]
  node sp = Split(%x, %sz) {axis=1} -> %a: f32[N,1,4], %b: f32[N,2,4], %c: f32[N,3,4]
  node t = Transpose(%b) {perm=[0, 2, 1]} -> %bt: f32[N,4,2]
  output %a
  output %bt
  output %c
}"#,
        true,
    );
    assert_eq!(kinds(&p).iter().filter(|&&k| k == "Gather").count(), 3);
    let p = check_text(
        "split in equal parts, one unread",
        r#"graph "sp" {
  input %x: f32[N,3,6]
  node sp = Split(%x) {axis=-1, num_outputs=3} -> %a: f32[N,3,2], %b: f32[N,3,2], %c: f32[N,3,2]
  node m = Mul(%a, %c) -> %y: f32[N,3,2]
  output %y
}"#,
        false,
    );
    assert_eq!(kinds(&p).iter().filter(|&&k| k == "Gather").count(), 2);
}

/// Replaces node `node` (a shape computation) by a constant, as lowering sees shape
/// operands once they are folded: the Expand reads only its result's type.
fn pin(g: &mut Graph, node: &str, t: Tensor) {
    let n = g.find_node(node).unwrap();
    let inputs: Vec<_> = g
        .node(n)
        .unwrap()
        .inputs
        .iter()
        .flatten()
        .copied()
        .collect();
    g.replace_node_by_consts(n, vec![t]).unwrap();
    // The producers that only fed it.
    for v in inputs {
        if let Some(p) = g.producer(v)
            && !g.is_used(v)
        {
            g.remove_node(p).unwrap();
        }
    }
}

#[test]
fn expand() {
    // The class token of a ViT: a constant [1,1,64] expanded to the batch, then joined to
    // the patches.
    let mut g = parse(
        r#"graph "cls" {
  input %x: f32[N,16,64]
  const %cls: f32[1,1,64] = seeded(10)
  const %tail: i64[2] = [1, 64]
  node sh = Shape(%x) {end=1} -> %n: i64[1]
  node shape = Concat(%n, %tail) -> %s: i64[3]
  node e = Expand(%cls, %s) -> %c: f32[N,1,64]
  node cat = Concat(%c, %x) {axis=1} -> %y: f32[N,17,64]
  output %y
}"#,
    );
    let want_graph = g.clone();
    pin(
        &mut g,
        "shape",
        Tensor::from_vec(&[3], vec![1i64, 1, 64]).unwrap(),
    );
    // The evaluator runs the original (its shape computed from the batch); the lowering, the
    // graph with the shape pinned (unmerged: folding would make the token a constant).
    let p = mcc_codegen::lower(&g).unwrap();
    assert_eq!(kinds(&p), ["Gather", "Concat"]);
    let mut runner = mcc_runtime::exec::Runner::new(&p, 2).unwrap();
    runner.set_poison(true);
    for batch in [1, 3] {
        let xs = inputs(&want_graph, batch, false);
        let want = mcc_ir::run(&want_graph, &xs).unwrap();
        let x: Vec<f32> = xs[0].as_f32().unwrap().iter().copied().collect();
        let got = runner.run(&[&x]).unwrap();
        let d = diff(&got[0], &want[0].to_f64_vec(), 0.0, 0.0);
        assert!(d.allclose, "batch {batch}: {d:?}");
    }
    check_text(
        "expand of a tensor",
        r#"graph "e" {
  input %x: f32[N,1,5]
  const %s: i64[3] = [1, 4, 5]
  node e = Expand(%x, %s) -> %y: f32[N,4,5]
  output %y
}"#,
        true,
    );
}

#[test]
fn reductions() {
    for (op, axes, keep, x, y) in [
        ("ReduceSum", "[1]", 0, "[N,4,6]", "[N,6]"),
        ("ReduceMax", "[-1]", 1, "[N,3,7]", "[N,3,1]"),
        ("ReduceMin", "[1, 2]", 0, "[N,3,4,5]", "[N,5]"),
        ("ReduceMean", "[2]", 1, "[N,3,4,5]", "[N,3,1,5]"),
        ("ReduceMean", "[2, 3]", 1, "[N,8,5,5]", "[N,8,1,1]"),
        // Axes of size 1 between reduced ones do not break the run.
        ("ReduceSum", "[1, 3]", 0, "[N,4,1,6,2]", "[N,1,2]"),
    ] {
        let rank = axes.matches(',').count() + 1;
        check_text(
            &format!("{op} {axes} of {x}"),
            &format!(
                r#"graph "r" {{
  input %x: f32{x}
  const %ax: i64[{rank}] = {axes}
  node r = {op}(%x, %ax) {{keepdims={keep}}} -> %y: f32{y}
  output %y
}}"#
            ),
            true,
        );
    }
    // A mean over the spatial axes of a convolution's channel blocks: global pooling,
    // reading the blocks as they are.
    let p = check_text(
        "pooling as ReduceMean",
        r#"graph "pool" {
  input %x: f32[N,3,6,6]
  const %w: f32[16,3,3,3] = seeded(12)
  const %ax: i64[2] = [-1, -2]
  node c = Conv(%x, %w) {pads=[1, 1, 1, 1]} -> %c: f32[N,16,6,6]
  node r = ReduceMean(%c, %ax) -> %y: f32[N,16,1,1]
  output %y
}"#,
        false,
    );
    assert_eq!(kinds(&p), ["Conv", "GlobalAvgPool"]);
}

#[test]
fn transposes_concat_softmax_and_scalar_arithmetic() {
    check_text(
        "patches: rank-6 transpose",
        r#"graph "t6" {
  input %x: f32[N,1,4,7,4,7]
  node t = Transpose(%x) {perm=[0, 2, 4, 1, 3, 5]} -> %y: f32[N,4,4,1,7,7]
  output %y
}"#,
        true,
    );
    check_text(
        "heads: rank-5 transpose",
        r#"graph "t5" {
  input %x: f32[N,17,3,4,16]
  node t = Transpose(%x) {perm=[0, 2, 3, 1, 4]} -> %y: f32[N,3,4,17,16]
  output %y
}"#,
        true,
    );
    check_text(
        "concat of sequences, softmax of scores, scalar arithmetic",
        r#"graph "misc" {
  input %a: f32[N,1,8]
  input %b: f32[N,16,8]
  input %s: f32[N,2,5,5]
  const %k: f32[] = [4.0]
  const %h: f32[] = [0.5]
  const %one: f32[] = [1.0]
  node cat = Concat(%a, %b) {axis=1} -> %c: f32[N,17,8]
  node d = Div(%s, %k) -> %d: f32[N,2,5,5]
  node sm = Softmax(%d) -> %p: f32[N,2,5,5]
  node m = Mul(%c, %h) -> %m: f32[N,17,8]
  node ad = Add(%m, %one) -> %y: f32[N,17,8]
  output %y
  output %p
}"#,
        true,
    );
}

/// A pre-norm encoder's attention: MatMul to q, k, v; heads split with Reshape, Gather and
/// Transpose; scores, softmax, weighted sum, heads joined, projection.
#[test]
fn an_attention_block() {
    let p = check_text(
        "attention",
        r#"graph "attn" {
  input %x: f32[N,17,64]
  const %s: f32[64] = positive(20)
  const %b: f32[64] = seeded(21)
  const %wqkv: f32[64,192] = seeded(22)
  const %bqkv: f32[192] = seeded(23)
  const %shape5: i64[5] = [0, 17, 3, 4, 16]
  const %i0: i64[] = [0]
  const %i1: i64[] = [1]
  const %i2: i64[] = [2]
  const %scale: f32[] = [4.0]
  const %shape3: i64[3] = [0, 17, 64]
  const %wo: f32[64,64] = seeded(24)
  node ln = LayerNormalization(%x, %s, %b) -> %h: f32[N,17,64]
  node qkv = MatMul(%h, %wqkv) -> %qkv0: f32[N,17,192]
  node qkvb = Add(%qkv0, %bqkv) -> %qkv: f32[N,17,192]
  node r = Reshape(%qkv, %shape5) -> %r: f32[N,17,3,4,16]
  node gq = Gather(%r, %i0) {axis=2} -> %q: f32[N,17,4,16]
  node gk = Gather(%r, %i1) {axis=2} -> %k: f32[N,17,4,16]
  node gv = Gather(%r, %i2) {axis=2} -> %v: f32[N,17,4,16]
  node tq = Transpose(%q) {perm=[0, 2, 1, 3]} -> %qt: f32[N,4,17,16]
  node tk = Transpose(%k) {perm=[0, 2, 1, 3]} -> %kh: f32[N,4,17,16]
  node tkt = Transpose(%kh) {perm=[0, 1, 3, 2]} -> %kt: f32[N,4,16,17]
  node tv = Transpose(%v) {perm=[0, 2, 1, 3]} -> %vt: f32[N,4,17,16]
  node sc = MatMul(%qt, %kt) -> %sc: f32[N,4,17,17]
  node d = Div(%sc, %scale) -> %sd: f32[N,4,17,17]
  node sm = Softmax(%sd) -> %p: f32[N,4,17,17]
  node o = MatMul(%p, %vt) -> %o: f32[N,4,17,16]
  node to = Transpose(%o) {perm=[0, 2, 1, 3]} -> %ot: f32[N,17,4,16]
  node r2 = Reshape(%ot, %shape3) -> %j: f32[N,17,64]
  node proj = MatMul(%j, %wo) -> %pr: f32[N,17,64]
  node res = Add(%x, %pr) -> %y: f32[N,17,64]
  output %y
}"#,
        true,
    );
    // The bias joins its product; each head's transposes join the Gather that picks it.
    assert_eq!(
        kinds(&p),
        [
            "LayerNorm",
            "Dense",
            "Gather",
            "Gather",
            "Gather",
            "BatchMatMul",
            "Binary",
            "Softmax",
            "BatchMatMul",
            "Transpose",
            "Dense",
            "Binary"
        ]
    );
}

/// The fusions of the attention block must not fire where another node reads what they
/// would skip: a product read by its bias Add and by another node, a picked head read by its
/// transpose and by another node.
#[test]
fn fusions_leave_shared_values_alone() {
    let p = check_text(
        "shared product and head",
        r#"graph "shared" {
  input %x: f32[N,6,8]
  const %w: f32[8,12] = seeded(30)
  const %b: f32[12] = seeded(31)
  const %shape: i64[4] = [0, 6, 3, 4]
  const %i: i64[] = [1]
  node mm = MatMul(%x, %w) -> %h: f32[N,6,12]
  node bias = Add(%h, %b) -> %hb: f32[N,6,12]
  node twice = Mul(%h, %h) -> %sq: f32[N,6,12]
  node r = Reshape(%hb, %shape) -> %r: f32[N,6,3,4]
  node g = Gather(%r, %i) {axis=2} -> %k: f32[N,6,4]
  node t = Transpose(%k) {perm=[0, 2, 1]} -> %kt: f32[N,4,6]
  output %sq
  output %kt
  output %k
}"#,
        false,
    );
    assert_eq!(
        kinds(&p),
        ["Dense", "Binary", "Gather", "Transpose", "Binary"]
    );
}

/// An activation must not fuse into the step that wrote a value another node (or the
/// graph's outputs) still reads, also when the activation reads it through a view (a Reshape
/// shares its input's buffer): a norm of the input and a bias Add, each read through a
/// Reshape by a Relu and also read as themselves.
#[test]
fn activations_do_not_fuse_through_a_view_of_a_shared_value() {
    check_text(
        "norm read through a view and as an output",
        r#"graph "norm_view" {
  input %x: f32[N,4,6,6]
  const %s: f32[4] = seeded(40)
  const %b: f32[4] = seeded(41)
  const %v: f32[4] = [1.0, 2.0, 0.5, 3.0]
  const %shape: i64[2] = [0, 144]
  node bn = BatchNormalization(%x, %s, %b, %b, %v) -> %n: f32[N,4,6,6]
  node r = Reshape(%n, %shape) -> %r: f32[N,144]
  node relu = Relu(%r) -> %y: f32[N,144]
  output %y
  output %n
}"#,
        true,
    );
    check_text(
        "bias add read through a view and by a sigmoid",
        r#"graph "add_view" {
  input %x: f32[N,6,8]
  const %k: f32[8] = seeded(42)
  const %shape: i64[2] = [0, 48]
  node add = Add(%x, %k) -> %a: f32[N,6,8]
  node r = Reshape(%a, %shape) -> %r: f32[N,48]
  node relu = Relu(%r) -> %y: f32[N,48]
  node sig = Sigmoid(%a) -> %z: f32[N,6,8]
  output %y
  output %z
}"#,
        true,
    );
}

/// What would mix samples, or is not a constant where the kernels need one, is an error
/// naming the node — never a program.
#[test]
fn what_must_be_refused_is_refused() {
    for (what, body, node, why) in [
        (
            "a reduction over the batch",
            "const %ax: i64[1] = [0]\n  node r = ReduceSum(%x, %ax) -> %y: f32[1,4,6,2]",
            "r",
            "batch",
        ),
        (
            "a reduction over every axis",
            "node r = ReduceSum(%x) {keepdims=0} -> %y: f32[]",
            "r",
            "batch",
        ),
        (
            "a reduction over axes that are not one run",
            "const %ax: i64[2] = [1, 3]\n  node r = ReduceMax(%x, %ax) -> %y: f32[N,1,6,1]",
            "r",
            "contiguous",
        ),
        (
            "a gather along the batch",
            "const %i: i64[] = [0]\n  node g = Gather(%x, %i) -> %y: f32[4,6,2]",
            "g",
            "batch",
        ),
        (
            "a slice of the batch",
            "const %st: i64[1] = [1]\n  const %en: i64[1] = [2]\n  node s = Slice(%x, %st, %en) -> %y: f32[1,4,6,2]",
            "s",
            "batch",
        ),
        (
            "a layer norm over the batch",
            "const %s: f32[1] = [1.0]\n  node ln = LayerNormalization(%x, %s) {axis=0} -> %y: f32[N,4,6,2]",
            "ln",
            "batch",
        ),
        (
            "a split along the batch",
            "node sp = Split(%x) {num_outputs=2} -> %y: f32[?,4,6,2], %z: f32[?,4,6,2]",
            "sp",
            "batch",
        ),
        (
            "a norm whose statistics are read",
            "const %s: f32[2] = [1.0, 2.0]\n  node ln = LayerNormalization(%x, %s) -> %y: f32[N,4,6,2], %m: f32[N,4,6,1]\n  output %m",
            "ln",
            "second output",
        ),
    ] {
        let src = format!("graph \"bad\" {{\n  input %x: f32[N,4,6,2]\n  {body}\n  output %y\n}}");
        let mut g = parse(&src);
        mcc_passes::merge_everything(&mut g).unwrap();
        match mcc_codegen::lower(&g) {
            Ok(_) => panic!("{what}: lowered"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("`{node}`")) && msg.contains(why),
                    "{what}: {msg}"
                );
            }
        }
    }
    // An index out of range is a compile error (the graph, as the importer would take it,
    // is built by hand: inference refuses it in text).
    let mut g = parse(
        r#"graph "g" {
  input %x: f32[N,3,5]
  const %i: i64[] = [1]
  node g = Gather(%x, %i) {axis=1} -> %y: f32[N,5]
  output %y
}"#,
    );
    let i = g.find_value("i").unwrap();
    g.make_const(i, Tensor::from_vec(&[], vec![3i64]).unwrap());
    let e = mcc_codegen::lower(&g).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
}

/// A little seeded generator for random geometries (xorshift).
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Parses `src` (its node outputs' types as placeholders) and derives the real types.
fn parse_inferred(src: &str) -> Graph {
    let mut g = parse(src);
    mcc_ir::infer_all(&mut g).unwrap_or_else(|e| panic!("{e:?}\n{src}"));
    g
}

#[test]
fn depth_to_space_and_space_to_depth() {
    let mut dice = Dice(17);
    for case in 0..24 {
        let b = 1 + dice.below(3);
        let c = 1 + dice.below(4);
        let (h, w) = (1 + dice.below(4), 1 + dice.below(5));
        let mode = *dice.pick(&["DCR", "CRD"]);
        let (op, shape) = if case % 2 == 0 {
            ("DepthToSpace", [c * b * b, h, w])
        } else {
            ("SpaceToDepth", [c, h * b, w * b])
        };
        let src = format!(
            "graph \"ds\" {{\n  input %x: f32[N,{},{},{}]\n  node d = {op}(%x) {{blocksize={b}, mode=\"{mode}\"}} -> %y: f32[N,1,1,1]\n  output %y\n}}",
            shape[0], shape[1], shape[2]
        );
        let name = format!("{op} {mode} b={b} {shape:?}");
        let p = check(&name, &parse_inferred(&src), case % 3 == 0);
        assert!(
            kinds(&p).iter().all(|&k| k == "Gather"),
            "{name}: {:?}",
            kinds(&p)
        );
    }
}

/// A Resize of an `(N, C, H, W)` input on its last two axes by `how` (`scales` or `sizes`
/// operands as IR text constants, `roi` for `tf_crop_and_resize`), with `attrs`.
fn resize_graph(shape: [usize; 3], attrs: &str, target: &str, roi: Option<[f32; 4]>) -> Graph {
    let roi_const = roi.map_or(String::new(), |r| {
        format!(
            "  const %roi: f32[4] = [{}, {}, {}, {}]\n",
            r[0], r[1], r[2], r[3]
        )
    });
    let roi_arg = if roi.is_some() { "%roi" } else { "_" };
    let (const_line, args) = if let Some(s) = target.strip_prefix("scales ") {
        (format!("const %t: f32[2] = {s}"), format!("{roi_arg}, %t"))
    } else {
        let s = target.strip_prefix("sizes ").unwrap();
        (
            format!("const %t: i64[2] = {s}"),
            format!("{roi_arg}, _, %t"),
        )
    };
    parse_inferred(&format!(
        "graph \"resize\" {{\n  input %x: f32[N,{},{},{}]\n{roi_const}  {const_line}\n  node r = Resize(%x, {args}) {{axes=[2, 3], {attrs}}} -> %y: f32[N,1,1,1]\n  output %y\n}}",
        shape[0], shape[1], shape[2]
    ))
}

/// Checks `p` (which computes `g`) gives the evaluator's very numbers at batch 2, NaN and
/// infinities planted: its sums are the evaluator's, in the same order (a zero may differ in
/// sign: a tap of weight 1 passes its value through where the evaluator adds it to +0).
fn same_numbers(name: &str, g: &Graph, p: &mcc_runtime::program::Program) {
    let mut runner = mcc_runtime::exec::Runner::new(p, 1).unwrap();
    runner.set_poison(true);
    let xs = inputs(g, 2, true);
    let want = mcc_ir::run(g, &xs).unwrap();
    let data: Vec<f32> = xs[0].as_f32().unwrap().iter().copied().collect();
    let got = runner.run(&[&data]).unwrap();
    let want: Vec<f32> = want[0].as_f32().unwrap().iter().copied().collect();
    assert_eq!(got[0].len(), want.len(), "{name}");
    for (i, (a, b)) in got[0].iter().zip(&want).enumerate() {
        assert!(
            a == b || (a.is_nan() && b.is_nan()),
            "{name}: element {i}: {a} vs {b}"
        );
    }
}

#[test]
fn resize_nearest_every_rounding_and_coordinate_mode() {
    let coords = [
        "half_pixel",
        "half_pixel_symmetric",
        "pytorch_half_pixel",
        "align_corners",
        "asymmetric",
        "tf_crop_and_resize",
    ];
    let roundings = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"];
    let targets = [
        "scales [2, 1.5]",
        "scales [0.5, 0.75]",
        "scales [1.7, 0.6]",
        "sizes [7, 1]",
        "sizes [3, 8]",
    ];
    let mut dice = Dice(29);
    let mut filled = 0;
    for coord in coords {
        for rounding in roundings {
            let target = *dice.pick(&targets);
            let shape = [1 + dice.below(3), 2 + dice.below(5), 2 + dice.below(6)];
            let crop = coord == "tf_crop_and_resize";
            let roi = crop.then_some([0.1, -0.3, 0.8, 1.2]);
            let attrs = format!(
                "coordinate_transformation_mode=\"{coord}\", nearest_mode=\"{rounding}\", extrapolation_value=-7.5"
            );
            let name = format!("nearest {coord} {rounding} {target} {shape:?}");
            let p = check(&name, &resize_graph(shape, &attrs, target, roi), true);
            // Values outside a crop need the resampling step's fill; the rest is a copy.
            if kinds(&p) == ["Resample"] {
                assert!(crop, "{name}");
                filled += 1;
            } else {
                assert_eq!(kinds(&p), ["Gather"], "{name}");
            }
        }
    }
    assert!(filled > 0, "no crop reached outside the input");
}

#[test]
fn resize_linear_cubic_and_antialiased() {
    let coords = [
        "half_pixel",
        "half_pixel_symmetric",
        "pytorch_half_pixel",
        "align_corners",
        "asymmetric",
        "tf_crop_and_resize",
    ];
    let targets = [
        "scales [2, 1.5]",
        "scales [0.5, 0.75]",
        "scales [1.7, 0.6]",
        "scales [1, 2.5]",
        "sizes [7, 1]",
        "sizes [3, 8]",
    ];
    let mut dice = Dice(31);
    let mut n = 0;
    for mode in ["linear", "cubic"] {
        for coord in coords {
            for extra in [
                "",
                ", exclude_outside=1",
                ", antialias=1",
                ", keep_aspect_ratio_policy=\"not_smaller\"",
            ] {
                let target = *dice.pick(&targets);
                if extra.contains("keep") && target.starts_with("scales") {
                    continue;
                }
                let shape = [1 + dice.below(3), 2 + dice.below(6), 2 + dice.below(7)];
                let roi = (coord == "tf_crop_and_resize").then_some([0.2, -0.1, 0.9, 1.1]);
                let attrs = format!(
                    "mode=\"{mode}\", coordinate_transformation_mode=\"{coord}\", extrapolation_value=3.25{extra}"
                );
                let name = format!("{mode} {coord}{extra} {target} {shape:?}");
                let g = resize_graph(shape, &attrs, target, roi);
                let p = check(&name, &g, true);
                assert_eq!(kinds(&p), ["Resample"], "{name}");
                same_numbers(&name, &g, &p);
                n += 1;
            }
        }
    }
    assert!(n > 30, "{n} cases");
    // A Resize that interpolates along the batch axis (keeping its size) is refused, naming
    // the node.
    let g = parse_inferred(
        "graph \"rb\" {\n  input %x: f32[2,3,4]\n  const %s: f32[3] = [1.2, 1, 1]\n  node r = Resize(%x, _, %s) {mode=\"linear\"} -> %y: f32[2,1,1]\n  output %y\n}",
    );
    let e = mcc_codegen::lower(&g).unwrap_err().to_string();
    assert!(e.contains("`r`") && e.contains("batch"), "{e}");
}

#[test]
fn instance_normalization() {
    let mut dice = Dice(37);
    for case in 0..8 {
        let c = 1 + dice.below(6);
        let spatial: Vec<usize> = (0..1 + case % 3).map(|_| 1 + dice.below(9)).collect();
        let dims = spatial
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let src = format!(
            "graph \"in\" {{\n  input %x: f32[N,{c},{dims}]\n  const %s: f32[{c}] = seeded({})\n  const %b: f32[{c}] = seeded({})\n  node i = InstanceNormalization(%x, %s, %b) {{epsilon=0.01}} -> %y: f32[N,{c},{dims}]\n  output %y\n}}",
            40 + case,
            50 + case
        );
        let name = format!("instance norm c={c} {spatial:?}");
        let p = check(&name, &parse(&src), case % 2 == 0);
        assert_eq!(kinds(&p), ["InstanceNorm"], "{name}");
    }
}

#[test]
fn conv_transpose() {
    let mut dice = Dice(41);
    for case in 0..30 {
        let groups = *dice.pick(&[1, 1, 2, 3]);
        let (cg, mg) = (1 + dice.below(3), 1 + dice.below(3));
        let (c, m) = (cg * groups, mg * groups);
        let (h, w) = (1 + dice.below(6), 1 + dice.below(6));
        let (kh, kw) = (1 + dice.below(3), 1 + dice.below(4));
        let (sh, sw) = (1 + dice.below(3), 1 + dice.below(3));
        let (dh, dw) = (1 + dice.below(2), 1 + dice.below(2));
        // output_padding below the stride or the dilation.
        let op_h = dice.below(sh.max(dh));
        let op_w = dice.below(sw.max(dw));
        // The full output; pads cut at most all but one cell of it.
        let full_h = sh * (h - 1) + op_h + (kh - 1) * dh + 1;
        let full_w = sw * (w - 1) + op_w + (kw - 1) * dw + 1;
        let window = match case % 5 {
            0 => {
                let t = dice.below(kh).min(full_h - 1);
                let b = dice.below(kh).min(full_h - 1 - t);
                let l = dice.below(kw).min(full_w - 1);
                let r = dice.below(kw).min(full_w - 1 - l);
                format!("pads=[{t}, {l}, {b}, {r}], output_padding=[{op_h}, {op_w}]")
            }
            1 => "auto_pad=\"SAME_UPPER\"".to_string(),
            2 => "auto_pad=\"SAME_LOWER\"".to_string(),
            // Smaller or larger than the full output.
            3 => format!(
                "output_shape=[{}, {}]",
                (full_h + dice.below(3)).saturating_sub(1).max(1),
                (full_w + dice.below(3)).saturating_sub(1).max(1)
            ),
            _ => format!("output_padding=[{op_h}, {op_w}]"),
        };
        let bias = case % 3 != 0;
        let (b_const, b_arg) = if bias {
            (
                format!("  const %b: f32[{m}] = seeded({})\n", 70 + case),
                ", %b",
            )
        } else {
            (String::new(), "")
        };
        let src = format!(
            "graph \"ct\" {{\n  input %x: f32[N,{c},{h},{w}]\n  const %w: f32[{c},{mg},{kh},{kw}] = seeded({})\n{b_const}  node ct = ConvTranspose(%x, %w{b_arg}) {{group={groups}, strides=[{sh}, {sw}], dilations=[{dh}, {dw}], {window}}} -> %y: f32[N,1,1,1]\n  output %y\n}}",
            60 + case
        );
        let name = format!(
            "conv transpose c={c} m={m} g={groups} {h}x{w} k={kh}x{kw} s={sh}x{sw} d={dh}x{dw} {window} bias={bias}"
        );
        let p = check(&name, &parse_inferred(&src), case % 2 == 0);
        assert_eq!(kinds(&p), ["ConvTranspose"], "{name}");
    }
    // 1-D: a 2-D window of one row.
    for (attrs, seed) in [
        ("strides=[2], pads=[1, 0]", 90),
        ("group=2, dilations=[2], output_padding=[1]", 91),
        ("strides=[3], output_shape=[17]", 92),
    ] {
        let src = format!(
            "graph \"ct1\" {{\n  input %x: f32[N,4,5]\n  const %w: f32[4,3,3] = seeded({seed})\n  const %b: f32[{}] = seeded(93)\n  node ct = ConvTranspose(%x, %w, %b) {{{attrs}}} -> %y: f32[N,1,1]\n  output %y\n}}",
            if attrs.contains("group=2") { 6 } else { 3 }
        );
        let name = format!("1-D conv transpose {attrs}");
        let p = check(&name, &parse_inferred(&src), true);
        assert_eq!(kinds(&p), ["ConvTranspose"], "{name}");
    }
}
