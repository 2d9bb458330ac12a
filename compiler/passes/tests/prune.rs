//! `prune unstructured` keeps its promises: exactly floor(amount·n) zeros per layer, the
//! smallest magnitudes first, ties by position, and a weight shared with an unselected
//! layer is copied rather than changed under it.

// Test code: failing loudly, with the value that was wrong, is the point.
#![allow(clippy::unwrap_used, clippy::panic)]

use mcc_ir::text::parse;
use mcc_ir::{Origin, StepId};

const SHARED: &str = "graph g {
  input %x: f32[1,4]
  const %w: f32[3,4] = hex\"0000803f000000c00000403f000080c00000a03f000000410000003f000010c10000e03f00008040000000000000a0c0\"
  node a = Gemm(%x, %w) {transB=1} -> %ya: f32[1,3]
  node b = Gemm(%x, %w) {transB=1} -> %yb: f32[1,3]
  node s = Add(%ya, %yb) -> %y: f32[1,3]
  output %y
}
";

#[test]
fn prunes_the_smallest_weights_and_copies_shared_ones() {
    let mut g = parse(SHARED).unwrap();
    mcc_ir::verify(&g).unwrap();
    let w = g.find_value("w").unwrap();
    let before = g
        .const_data(w)
        .unwrap()
        .as_f32()
        .unwrap()
        .iter()
        .copied()
        .collect::<Vec<f32>>();
    let (out, left) = mcc_passes::prune_unstructured::run(
        &mut g,
        &["a".to_string(), "gone".to_string()],
        &|_| 0.5,
        StepId(7),
    )
    .unwrap();
    assert_eq!((out[0].weights, out[0].zeros), (12, 6));
    // A layer an earlier step merged away is left alone with the reason, not an error.
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].node, "gone");
    mcc_ir::verify(&g).unwrap();
    // `b` still reads the untouched original; `a` reads a pruned copy.
    let a = g.node(g.find_node("a").unwrap()).unwrap();
    let b = g.node(g.find_node("b").unwrap()).unwrap();
    assert_eq!(b.inputs[1], Some(w));
    assert_eq!(
        g.const_data(w)
            .unwrap()
            .as_f32()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<f32>>(),
        before
    );
    let pruned: Vec<f32> = g
        .const_data(a.inputs[1].unwrap())
        .unwrap()
        .as_f32()
        .unwrap()
        .iter()
        .copied()
        .collect();
    // The six smallest |w| of [1,-2,0.75,-4,1.25,8,0.5,-9,1.75,4,0,-5] are 0, 0.5, 0.75, 1, 1.25, 1.75.
    assert_eq!(
        pruned,
        vec![
            0.0, -2.0, 0.0, -4.0, 0.0, 8.0, 0.0, -9.0, 0.0, 4.0, 0.0, -5.0
        ]
    );
    assert_eq!(a.origin, Origin::Step(StepId(7)));
    assert_eq!(b.origin, Origin::Model);
}
