//! What the factorizations (`factorize svd`, `factorize tucker`) share: rewriting one layer as
//! a chain of layers.
//!
//! **Invariant:** the original node stays the last of the chain and keeps its name, output
//! value (so its readers and the graph's outputs are untouched), bias and activation epilogue;
//! the layers inserted before it read the layer's input in turn, are named `<layer>.<part>`
//! (the report counts them in the layer's row) and, like it, record the step as their origin.
//! Weights that nothing reads afterwards are removed.

use mcc_ir::{Dim, Graph, NodeId, Op, Origin, StepId, Tensor};
use mcc_plan::registry::{Default, ParamSchema, ParamType, RATIO, Sweep, p};

/// The `rank` parameter of the factorizations.
pub const RANK: ParamSchema = p(
    "rank",
    ParamType::Int {
        min: 0,
        max: 1 << 20,
    },
    Default::Num(0.0),
    "rank kept, for every factor (0: from size, else energy)",
);

/// The `energy` parameter of the factorizations.
pub const ENERGY: ParamSchema = p(
    "energy",
    RATIO,
    Default::Num(0.95),
    "per factor, the fraction of squared singular values kept when neither rank nor size is given",
);

/// The `size` parameter of the factorizations.
pub const SIZE: ParamSchema = p(
    "size",
    RATIO,
    Default::Num(0.0),
    "the factors keep at most this fraction of the layer's weights (0: unused)",
);

/// What `mcc sensitivity` sweeps for a factorization.
pub const SWEEP: Sweep = Sweep {
    param: "energy",
    values: &[0.99, 0.95, 0.9, 0.8, 0.6],
};

/// A layer inserted before the original one.
pub struct Part {
    /// Its name is `<layer>.<suffix>`.
    pub suffix: &'static str,
    /// Its operator (no bias operand is given it).
    pub op: Op,
    /// Its weights.
    pub weights: Tensor,
    /// Its output's channels (axis 1 of a Conv's output, the last axis of a Gemm's or
    /// MatMul's).
    pub channels: usize,
    /// Its output's spatial size.
    pub size: Size,
}

/// The spatial size of a part's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// The layer input's (a 1×1 Conv before a strided one).
    Input,
    /// The layer output's.
    Output,
    /// The output's height and the input's width (a k×1 Conv before a 1×k one).
    OutputRows,
}

/// Rewrites layer `n` as `parts`, in order, followed by the layer itself with `last_op` and
/// `last_weights` (its other operands — the bias — stay).
pub fn chain(
    graph: &mut Graph,
    n: NodeId,
    parts: Vec<Part>,
    last_op: Op,
    last_weights: Tensor,
    id: StepId,
) -> Result<(), String> {
    let node = graph.node(n).ok_or("the layer vanished")?.clone();
    let mut x = node.inputs.first().copied().flatten().ok_or("no input")?;
    let input_ty = graph.value(x).ty.clone();
    let output_ty = graph
        .value(*node.outputs.first().ok_or("no output")?)
        .ty
        .clone();
    let conv = matches!(node.op, Op::Conv(_));
    let mut added = vec![];
    for part in parts {
        let base = format!("{}.{}", node.name, part.suffix);
        let name = (0..)
            .map(|i| {
                if i == 0 {
                    base.clone()
                } else {
                    format!("{base}{i}")
                }
            })
            .find(|c| graph.find_node(c).is_none())
            .unwrap_or(base);
        let mut ty = match part.size {
            Size::Input => input_ty.clone(),
            Size::Output | Size::OutputRows => output_ty.clone(),
        };
        if part.size == Size::OutputRows
            && let (Some(shape), Some(input)) = (ty.shape.as_mut(), input_ty.shape.as_ref())
            && let (Some(w), Some(iw)) = (shape.get_mut(3), input.get(3))
        {
            *w = iw.clone();
        }
        if let Some(shape) = ty.shape.as_mut() {
            let axis = if conv {
                1
            } else {
                shape.len().saturating_sub(1)
            };
            if let Some(d) = shape.get_mut(axis) {
                *d = Dim::Fixed(part.channels);
            }
        }
        let w = graph.add_const(
            graph.fresh_value_name(&format!("{name}.weight")),
            part.weights,
        );
        let out = graph.fresh_value_name(&name);
        let p = graph.add_node(name, part.op, vec![Some(x), Some(w)], vec![(out, ty)]);
        x = *graph
            .node(p)
            .and_then(|m| m.outputs.first())
            .ok_or("the new layer has no output")?;
        added.push(p);
    }
    let w = graph.add_const(
        graph.fresh_value_name(&format!("{}.weight", node.name)),
        last_weights,
    );
    let mut inputs = node.inputs.clone();
    inputs[0] = Some(x);
    inputs[1] = Some(w);
    graph.set_inputs(n, inputs).map_err(|e| e.to_string())?;
    if let Some(m) = graph.node_mut(n) {
        m.op = last_op;
    }
    for p in added.into_iter().chain([n]) {
        if let Some(m) = graph.node_mut(p) {
            m.origin = Origin::Step(id);
        }
    }
    graph.remove_unused_consts();
    Ok(())
}

/// A Conv like `c` without its activation epilogue (for a layer that is not last).
pub fn plain(c: &mcc_ir::op::Conv) -> mcc_ir::op::Conv {
    let mut c = c.clone();
    c.activation = String::new();
    c.activation_params = vec![];
    c
}

/// A 1×1 Conv with stride 1, no padding and no epilogue.
pub fn pointwise() -> Op {
    Op::Conv(mcc_ir::op::Conv {
        kernel_shape: vec![1, 1],
        ..std::default::Default::default()
    })
}

/// The kernels' vector width in f32 lanes (AVX-512).
const LANES: usize = 16;

/// A rank chosen from a size or energy bound, rounded to a multiple of the kernels' vector
/// width so the pair's inner dimension fills whole vectors — up (`up`, to keep at least the
/// energy) or down (to stay within the size) — once it is at least two vectors (below, the
/// rounding would change the rank by too large a part).
pub fn align_rank(r: usize, up: bool) -> usize {
    if r < 2 * LANES {
        r
    } else if up {
        r.div_ceil(LANES) * LANES
    } else {
        r / LANES * LANES
    }
}

/// The widest eigenproblem a factorization solves (about 20 s for 2048 on one core); a layer
/// needing more is left alone (`too_large`).
pub const MAX_EIG: usize = 2048;
