//! `merge scale`: fold a Mul or Add by a per-channel constant into the Conv, Gemm, MatMul or
//! BatchNormalization that feeds it (normalization written as arithmetic, as Inception-v2
//! and DenseNet do).
//!
//! For output channel m with constant c: Mul: W'[m] = c·W[m], b'[m] = c·b[m]; Add: b'[m] =
//! b[m] + c (a Conv without bias gets one; a Gemm's C becomes β·C + c with β = 1). A norm's
//! scale and shift play W and b (DenseNet's norm that no Conv precedes, after a Concat). A
//! scalar constant counts as the same value for every channel. A Mul/Add that does not
//! combine a layer's output with a constant (a residual Add) is not this pattern: skipped.
//!
//! Keeps: every graph output, up to float rounding. The layer keeps its name and records the
//! step; the Mul/Add is removed and its readers read the layer.
//!
//! Leaves alone (reported with the reason): an operand computed at run time, a constant that
//! varies along another axis than the channels, a producer that is not a Conv/Gemm/MatMul,
//! that already ends in an activation, whose output is also read elsewhere, an Add after a
//! MatMul (which has no bias to absorb it), and a Gemm whose C is not a vector.

use mcc_ir::{Dim, Graph, NodeId, Op, StepId, Tensor, ValueId};

use crate::PassError;
use crate::merge::MergePass;
use crate::merge::{self, a_or_an, leave, output_channel, set_bias, store_const};
use crate::merge::{LeftAlone, Merged, OrSkip, Reason, Skip};
use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};

/// What a foldable Mul/Add was found to be.
pub struct Fold {
    /// The Conv/Gemm/MatMul.
    pub producer: NodeId,
    /// Per-channel factors or offsets (length = channels).
    pub values: Vec<f64>,
    /// Mul (true) or Add (false).
    pub mul: bool,
}

fn f32_vec(graph: &Graph, v: ValueId) -> Option<Vec<f64>> {
    Some(
        graph
            .const_data(v)?
            .as_f32()?
            .iter()
            .map(|&x| f64::from(x))
            .collect(),
    )
}

/// Whether `node` can be folded, and how.
pub fn check(graph: &Graph, node: NodeId) -> Result<Fold, Skip> {
    let n = graph.node(node).or_bug("no such layer")?;
    let mul = match n.op {
        Op::Mul(_) => true,
        Op::Add(_) => false,
        ref other => {
            return Err(leave(
                Reason::UnsupportedOp,
                format!("it is {}, not a Mul or Add", a_or_an(other.name())),
            ));
        }
    };
    let (a, b) = match (
        n.inputs.first().copied().flatten(),
        n.inputs.get(1).copied().flatten(),
    ) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(leave(Reason::MissingOperand, "it lacks an operand")),
    };
    let (x, c) = match (graph.const_data(a).is_some(), graph.const_data(b).is_some()) {
        (false, true) => (a, b),
        (true, false) => (b, a),
        // A residual connection or a computed scale: not this pattern.
        _ => return Err(Skip::NotACandidate),
    };
    let p = graph
        .producer(x)
        .or_leave(Reason::UnsupportedOp, "its input is not a layer's output")?;
    let pn = graph.node(p).or_bug("no producer")?;
    let norm = matches!(pn.op, Op::BatchNormalization(_));
    if !norm && !matches!(pn.op, Op::Conv(_) | Op::Gemm(_) | Op::MatMul(_)) {
        return Err(leave(
            Reason::UnsupportedOp,
            format!(
                "it reads {}, not a Conv, Gemm, MatMul or BatchNormalization",
                a_or_an(pn.op.name())
            ),
        ));
    }
    if let Ok(Some(e)) = pn.op.epilogue() {
        return Err(leave(
            Reason::HasActivation,
            format!("`{}` already ends in a {e}", pn.name),
        ));
    }
    if !mul && matches!(pn.op, Op::MatMul(_)) {
        return Err(leave(
            Reason::UnsupportedOp,
            format!(
                "`{}` is a MatMul, which has no bias to absorb an Add",
                pn.name
            ),
        ));
    }
    if graph.users(x).len() != 1 || graph.outputs().contains(&x) {
        return Err(leave(
            Reason::SharedOutput,
            format!("`{}`'s output is also read elsewhere", pn.name),
        ));
    }
    let out = graph
        .value(x)
        .ty
        .shape
        .clone()
        .or_leave(Reason::UnknownShape, "the layer's output shape is unknown")?;
    let axis = if matches!(pn.op, Op::Conv(_) | Op::BatchNormalization(_)) {
        1
    } else {
        out.len().saturating_sub(1)
    };
    let channels = out
        .get(axis)
        .and_then(Dim::fixed)
        .or_leave(Reason::UnknownShape, "the channel count is unknown")?;
    let values = f32_vec(graph, c).or_leave(Reason::NotConstant, "the constant is not f32")?;
    let cshape = graph.value(c).ty.fixed_dims().unwrap_or_default();
    if cshape.len() > out.len() {
        return Err(leave(
            Reason::ShapeMismatch,
            "the constant has more dimensions than the layer's output",
        ));
    }
    // Right-align the constant's shape with the output's: only the channel axis may be > 1.
    let offset = out.len() - cshape.len();
    let per_channel = cshape
        .iter()
        .enumerate()
        .all(|(i, &d)| d == 1 || (i + offset == axis && d == channels));
    if !per_channel {
        return Err(leave(
            Reason::ShapeMismatch,
            format!(
                "the constant of shape {cshape:?} varies along other axes than the {channels} channels"
            ),
        ));
    }
    let values = if values.len() == 1 {
        vec![values[0]; channels]
    } else {
        values
    };
    if let Op::Gemm(_) = pn.op
        && let Some(cv) = pn.inputs.get(2).copied().flatten()
    {
        let constant = f32_vec(graph, cv).is_some();
        if !constant || graph.value(cv).ty.rank() != Some(1) {
            return Err(leave(
                if constant {
                    Reason::ShapeMismatch
                } else {
                    Reason::NotConstant
                },
                format!("`{}`'s C operand is not a constant vector", pn.name),
            ));
        }
    }
    let constant = |slot: usize| {
        pn.inputs
            .get(slot)
            .copied()
            .flatten()
            .and_then(|w| f32_vec(graph, w))
            .is_some()
    };
    if norm && !(constant(1) && constant(2)) {
        return Err(leave(
            Reason::NotConstant,
            format!("`{}`'s scale and shift are not f32 constants", pn.name),
        ));
    }
    if !norm && !constant(1) {
        return Err(leave(
            Reason::NotConstant,
            format!("`{}`'s weights are not an f32 constant", pn.name),
        ));
    }
    Ok(Fold {
        producer: p,
        values,
        mul,
    })
}

/// Rewrites the Conv/Gemm/MatMul `p` to absorb `· values` (mul) or `+ values` (add) per
/// output channel.
fn fold_into(graph: &mut Graph, p: NodeId, values: &[f64], mul: bool) -> Result<(), String> {
    let pn = graph.node(p).cloned().ok_or("the layer vanished")?;
    let c = values.len();
    let err = |e: mcc_ir::GraphError| e.to_string();
    if let Op::BatchNormalization(_) = pn.op {
        // y = scale·x̂ + B: a Mul scales both, an Add shifts B.
        let operand = |slot: usize| {
            pn.inputs
                .get(slot)
                .copied()
                .flatten()
                .and_then(|v| f32_vec(graph, v))
                .filter(|v| v.len() == c)
                .ok_or("the norm's scale or shift is not a per-channel vector")
        };
        let (scale, shift) = (operand(1)?, operand(2)?);
        let f32s = |v: Vec<f64>| Tensor::from_vec(&[c], v.into_iter().map(|x| x as f32).collect());
        if mul {
            let s = scale.iter().zip(values).map(|(a, b)| a * b).collect();
            let name = format!("{}.scale", pn.name);
            store_const(graph, p, 1, &name, f32s(s).map_err(|e| e.to_string())?).map_err(err)?;
        }
        let b = shift
            .iter()
            .zip(values)
            .map(|(a, b)| if mul { a * b } else { a + b })
            .collect();
        let name = format!("{}.shift", pn.name);
        store_const(graph, p, 2, &name, f32s(b).map_err(|e| e.to_string())?).map_err(err)?;
        return Ok(());
    }
    if mul {
        let wv = pn.inputs.get(1).copied().flatten().ok_or("no weights")?;
        let w = graph
            .const_data(wv)
            .and_then(Tensor::as_f32)
            .cloned()
            .ok_or("the weights vanished")?;
        let shape = w.shape().to_vec();
        let flat: Vec<f32> = w.iter().copied().collect();
        // The output channel each weight feeds.
        let channel = |i: usize| output_channel(&pn.op, &shape, c, i);
        let new_w: Vec<f32> = flat
            .iter()
            .enumerate()
            .map(|(i, &x)| (f64::from(x) * values[channel(i)]) as f32)
            .collect();
        let base = format!("{}.scaled", graph.value(wv).name);
        store_const(
            graph,
            p,
            1,
            &base,
            Tensor::from_vec(&shape, new_w).map_err(|e| e.to_string())?,
        )
        .map_err(err)?;
        if let Some(bv) = pn.inputs.get(2).copied().flatten() {
            let b = f32_vec(graph, bv).unwrap_or_default();
            let nb: Vec<f32> = b
                .iter()
                .enumerate()
                .map(|(i, &x)| (x * values[i % c]) as f32)
                .collect();
            store_const(
                graph,
                p,
                2,
                &format!("{}.bias", pn.name),
                Tensor::from_vec(&[c], nb).map_err(|e| e.to_string())?,
            )
            .map_err(err)?;
        }
    } else {
        let beta = if let Op::Gemm(g) = &pn.op {
            f64::from(g.beta)
        } else {
            1.0
        };
        let b = pn
            .inputs
            .get(2)
            .copied()
            .flatten()
            .and_then(|bv| f32_vec(graph, bv))
            .unwrap_or_else(|| vec![0.0; c]);
        let nb: Vec<f32> = (0..c).map(|i| (beta * b[i] + values[i]) as f32).collect();
        set_bias(graph, p, nb)?;
    }
    Ok(())
}

/// Folds each named Mul/Add it can; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    merge::each(
        graph,
        nodes,
        step,
        "merge-scale",
        |g, id| check(g, id).map(|f| (f.producer, (f.values, f.mul))),
        |g, p, (values, mul)| fold_into(g, p, &values, mul),
    )
}

/// `merge scale`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "scale",
    summary: "fold a Mul or Add by a per-channel constant into the Conv/Gemm/MatMul before it",
    params: &[],
    applies: Applies::Ops(&["Mul", "Add"]),
    status: Status::Ready(&MergePass(run)),
    check_params: no_param_check,
    sweep: None,
};
