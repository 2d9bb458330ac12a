//! Canonicalization of what dynamic-batch exports write: `fold-shapes` folds the size
//! arithmetic the declared shapes decide and leaves the batch's as a symbol inference reads;
//! `hoist-picks` takes a transformer's query, key and value before the Transpose that moved
//! the batch, in each of the three ways exporters write the unbind. Every rewrite is
//! checked bit for bit against evaluation of the graph as written.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mcc_ir::text::parse::pseudo_random;
use mcc_ir::{Graph, Op, Tensor};

fn input(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    let data = pseudo_random(seed, n, -2.0, 2.0)
        .into_iter()
        .map(|x| x as f32)
        .collect();
    Tensor::from_vec(shape, data).unwrap()
}

/// Canonicalizes `text` and checks the result computes the same bits at batch 1 and 3.
fn canonical(text: &str, sample: &[usize]) -> Graph {
    let before = mcc_ir::text::parse(text).unwrap_or_else(|e| panic!("{e:?}"));
    let mut after = before.clone();
    mcc_passes::canonicalize(&mut after).unwrap();
    mcc_ir::verify(&after).unwrap();
    for batch in [1, 3] {
        let mut shape = vec![batch];
        shape.extend_from_slice(sample);
        let x = input(&shape, batch as u64);
        let want = mcc_ir::run(&before, std::slice::from_ref(&x)).unwrap();
        let got = mcc_ir::run(&after, std::slice::from_ref(&x)).unwrap();
        assert_eq!(want.len(), got.len());
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w.shape(), g.shape());
            let (w, g) = (w.as_f32().unwrap(), g.as_f32().unwrap());
            assert!(
                w.iter().zip(g).all(|(a, b)| a.to_bits() == b.to_bits()),
                "batch {batch}: canonicalization changed the outputs"
            );
        }
    }
    after
}

fn ops(g: &Graph) -> Vec<String> {
    g.topo_order()
        .unwrap()
        .into_iter()
        .map(|n| g.node(n).unwrap().op.name().to_string())
        .collect()
}

/// Transposes that move the first axis.
fn batch_moving(g: &Graph) -> usize {
    g.node_ids()
        .into_iter()
        .filter(
            |&n| matches!(&g.node(n).unwrap().op, Op::Transpose(t) if t.perm.first() != Some(&0)),
        )
        .count()
}

const HEAD: &str = r#"graph "attention" {
  input %x: f32[N,5,3,2,4]
  const %zero: i64[1] = [0]
  node t = Transpose(%x) {perm=[2, 0, 3, 1, 4]} -> %t: f32[3,N,2,5,4]
"#;

const TAIL: &str = r#"  node kt = Transpose(%k) {perm=[0, 1, 3, 2]} -> %kt: f32[N,2,4,5]
  node a = MatMul(%q, %kt) -> %a: f32[N,2,5,5]
  node o = MatMul(%a, %v) -> %o: f32[N,2,5,4]
  output %o
}"#;

#[test]
fn the_unbind_of_query_key_and_value_keeps_the_batch_first() {
    let split = r#"  const %ones: i64[3] = [1, 1, 1]
  node s = Split(%t, %ones) -> %s0: f32[1,N,2,5,4], %s1: f32[1,N,2,5,4], %s2: f32[1,N,2,5,4]
  node q = Squeeze(%s0, %zero) -> %q: f32[N,2,5,4]
  node k = Squeeze(%s1, %zero) -> %k: f32[N,2,5,4]
  node v = Squeeze(%s2, %zero) -> %v: f32[N,2,5,4]
"#;
    let slice = r#"  const %one: i64[1] = [1]
  const %two: i64[1] = [2]
  const %three: i64[1] = [3]
  node sq = Slice(%t, %zero, %one, %zero) -> %s0: f32[1,N,2,5,4]
  node sk = Slice(%t, %one, %two, %zero, %one) -> %s1: f32[1,N,2,5,4]
  node sv = Slice(%t, %two, %three) -> %s2: f32[1,N,2,5,4]
  node q = Squeeze(%s0, %zero) -> %q: f32[N,2,5,4]
  node k = Squeeze(%s1, %zero) -> %k: f32[N,2,5,4]
  node v = Squeeze(%s2, %zero) -> %v: f32[N,2,5,4]
"#;
    let gather = r#"  const %i0: i64[] = [0]
  const %i1: i64[] = [-2]
  const %i2: i64[] = [2]
  node q = Gather(%t, %i0) -> %q: f32[N,2,5,4]
  node k = Gather(%t, %i1) -> %k: f32[N,2,5,4]
  node v = Gather(%t, %i2) -> %v: f32[N,2,5,4]
"#;
    for (form, body) in [("Split", split), ("Slice", slice), ("Gather", gather)] {
        let g = canonical(&format!("{HEAD}{body}{TAIL}"), &[5, 3, 2, 4]);
        assert_eq!(batch_moving(&g), 0, "{form}: {:?}", ops(&g));
        let ops = ops(&g);
        assert_eq!(
            ops.iter().filter(|o| *o == "Gather").count(),
            3,
            "{form}: {ops:?}"
        );
        assert!(
            !ops.iter()
                .any(|o| ["Split", "Slice", "Squeeze"].contains(&o.as_str())),
            "{form}: {ops:?}"
        );
        // The picked values keep their names.
        for name in ["q", "k", "v"] {
            assert!(g.find_value(name).is_some(), "{form}: {name} was renamed");
        }
    }
}

#[test]
fn a_transpose_with_another_reader_is_left_alone() {
    let body = r#"  const %i0: i64[] = [0]
  node q = Gather(%t, %i0) -> %q: f32[N,2,5,4]
  node r = Relu(%t) -> %r: f32[3,N,2,5,4]
  output %q
  output %r
}"#;
    let g = canonical(&format!("{HEAD}{body}"), &[5, 3, 2, 4]);
    assert_eq!(batch_moving(&g), 1, "{:?}", ops(&g));
}

#[test]
fn size_arithmetic_folds_and_the_batch_stays_a_symbol() {
    let text = r#"graph "sizes" {
  input %x: f32[N,4,16]
  const %two: i64[] = [2]
  const %half: f32[] = [0.5]
  const %zero: i64[] = [0]
  const %axes: i64[1] = [0]
  const %rest: i64[1] = [64]
  node s = Shape(%x) -> %s: i64[3]
  node d = Gather(%s, %two) -> %d: i64[]
  node c = Cast(%d) -> %c: f32[]
  node p = Pow(%c, %half) -> %p: f32[]
  node y = Div(%x, %p) -> %y: f32[N,4,16]
  node b = Gather(%s, %zero) -> %b: i64[]
  node u = Unsqueeze(%b, %axes) -> %u: i64[1]
  node t = Concat(%u, %rest) {axis=0} -> %t: i64[2]
  node r = Reshape(%y, %t) -> %r: f32[?,?]
  output %r
}"#;
    let g = canonical(text, &[4, 16]);
    // √16 is a constant now; the batch's arithmetic stays, and the Reshape is typed by it.
    let p = g.find_value("p").unwrap();
    assert_eq!(
        g.const_data(p).map(|t| t.to_f64_vec()),
        Some(vec![4.0]),
        "{:?}",
        ops(&g)
    );
    assert_eq!(
        ops(&g),
        ["Shape", "Gather", "Unsqueeze", "Concat", "Div", "Reshape"]
    );
    let r = g.find_value("r").unwrap();
    assert_eq!(g.value(r).ty.to_string(), "f32[N,64]");
}
