//! Exact GELU as exporters write it — `x / √2` (or `x · (1/√2)`), `Erf`, `+ 1`, and two
//! products with x and 0.5 — found in the graph and lowered as ONE step (or as the epilogue
//! of the step that computes x) with [`Act::GeluChain`], whose kernel does the chain's f32
//! operations in the chain's order: the same bits as the five steps, one pass over memory.
//!
//! The graph is not rewritten (the evaluator still runs the chain); the lowering skips the
//! chain's inner nodes and lowers its last one. A chain is taken only when every value
//! inside it is f32, has x's type, is read by the next node of the chain alone and is no
//! graph output, and its constants are single f32 values with exactly the bits of √2, 1/√2
//! (rounded to f32), 1 and 0.5. Anything else is lowered node by node, as before.

use std::collections::{HashMap, HashSet};

use mcc_ir::{DType, Graph, NodeId, Op, ValueId};
use mcc_runtime::kernels::epilogue::{GeluChain, GeluHalf, GeluScale};

/// The GELU chains of a graph.
#[derive(Default)]
pub(super) struct Gelus {
    /// The last node of each chain: the chain's input x and its form.
    pub(super) ends: HashMap<NodeId, (ValueId, GeluChain)>,
    /// The chains' other nodes, which lower to nothing.
    pub(super) absorbed: HashSet<NodeId>,
}

impl Gelus {
    pub(super) fn find(g: &Graph) -> Gelus {
        let mut out = Gelus::default();
        for e in g.node_ids() {
            if let Some((x, form, end, inner)) = chain(g, e) {
                out.absorbed.extend(inner);
                out.ends.insert(end, (x, form));
            }
        }
        out
    }
}

/// The chain around the `Erf` node `e`: its input x, its form, its last node and the others.
fn chain(g: &Graph, e: NodeId) -> Option<(ValueId, GeluChain, NodeId, Vec<NodeId>)> {
    let node = g.node(e)?;
    if !matches!(node.op, Op::Erf(_)) {
        return None;
    }
    // Scale: Div(x, √2) or Mul(x, 1/√2) in either order.
    let s = node.inputs.first().copied().flatten()?;
    let scale_node = g.producer(s)?;
    let (scale, x) = match &g.node(scale_node)?.op {
        Op::Div(_) => {
            let [x, c] = operands(g, scale_node)?;
            is(g, c, std::f32::consts::SQRT_2)?;
            (GeluScale::DivSqrt2, x)
        }
        Op::Mul(_) => {
            let x = with_constant(g, scale_node, std::f32::consts::FRAC_1_SQRT_2)?;
            (GeluScale::MulFrac1Sqrt2, x)
        }
        _ => return None,
    };
    let ty = &g.value(x).ty;
    if ty.dtype != DType::F32 || g.const_data(x).is_some() {
        return None;
    }
    // Every value inside: x's type, read once by the chain's next node, no output.
    let inside = |v: ValueId| -> Option<NodeId> {
        let users = g.users(v);
        (g.value(v).ty == *ty && users.len() == 1 && !g.outputs().contains(&v))
            .then_some(users[0].0)
    };
    (inside(s)? == e).then_some(())?;
    let erf = single_output(g, e)?;
    let add = inside(erf)?;
    matches!(g.node(add)?.op, Op::Add(_)).then_some(())?;
    let sum = with_constant(g, add, 1.0)?;
    (sum == erf).then_some(())?;
    let a = single_output(g, add)?;
    let next = inside(a)?;
    matches!(g.node(next)?.op, Op::Mul(_)).then_some(())?;
    let ops = operands(g, next)?;
    let (half, end, inner) = if let Some(other) = with_constant(g, next, 0.5) {
        // x · (0.5 · a).
        (other == a).then_some(())?;
        let m = single_output(g, next)?;
        let end = inside(m)?;
        let [p, q] = mul_operands(g, end)?;
        ((p, q) == (x, m) || (p, q) == (m, x)).then_some(())?;
        (GeluHalf::OfSum, end, vec![scale_node, e, add, next])
    } else if ops.contains(&x) {
        // (x · a) · 0.5.
        (ops == [x, a] || ops == [a, x]).then_some(())?;
        let m = single_output(g, next)?;
        let end = inside(m)?;
        matches!(g.node(end)?.op, Op::Mul(_)).then_some(())?;
        let other = with_constant(g, end, 0.5)?;
        (other == m).then_some(())?;
        (GeluHalf::Last, end, vec![scale_node, e, add, next])
    } else {
        // (x · 0.5) · a: the other operand is x halved, computed for this alone.
        let h = if ops[0] == a { ops[1] } else { ops[0] };
        ((ops == [h, a] || ops == [a, h]) && h != a).then_some(())?;
        (inside(h)? == next).then_some(())?;
        let halve = g.producer(h)?;
        matches!(g.node(halve)?.op, Op::Mul(_)).then_some(())?;
        let other = with_constant(g, halve, 0.5)?;
        (other == x).then_some(())?;
        (GeluHalf::OfX, next, vec![scale_node, e, add, halve])
    };
    // The result has x's type too (no broadcast widened it).
    (g.value(single_output(g, end)?).ty == *ty).then_some(())?;
    Some((x, GeluChain { scale, half }, end, inner))
}

/// A node's one output.
fn single_output(g: &Graph, n: NodeId) -> Option<ValueId> {
    match g.node(n)?.outputs.as_slice() {
        [v] => Some(*v),
        _ => None,
    }
}

/// A binary node's two operands.
fn operands(g: &Graph, n: NodeId) -> Option<[ValueId; 2]> {
    match g.node(n)?.inputs.as_slice() {
        [Some(a), Some(b)] => Some([*a, *b]),
        _ => None,
    }
}

/// A `Mul` node's two operands.
fn mul_operands(g: &Graph, n: NodeId) -> Option<[ValueId; 2]> {
    matches!(g.node(n)?.op, Op::Mul(_)).then_some(())?;
    operands(g, n)
}

/// The operand of a commutative binary node beside the constant `c` (on either side).
fn with_constant(g: &Graph, n: NodeId, c: f32) -> Option<ValueId> {
    let [a, b] = operands(g, n)?;
    if is(g, b, c).is_some() {
        Some(a)
    } else if is(g, a, c).is_some() {
        Some(b)
    } else {
        None
    }
}

/// Whether `v` is a constant of one f32 value with exactly `c`'s bits (of any rank: the
/// callers check that no result's type changed, so it broadcast as a scalar).
fn is(g: &Graph, v: ValueId, c: f32) -> Option<()> {
    let t = g.const_data(v)?;
    let a = t.as_f32()?;
    (a.len() == 1 && a.iter().all(|x| x.to_bits() == c.to_bits())).then_some(())
}
