//! `merge batchnorm`: fold an inference-mode BatchNormalization into the Conv or Gemm that
//! feeds it (DeepRebirth's cheapest merge).
//!
//! Per output channel c, with k = scale / √(var + ε):
//! Conv: W'[c] = k·W[c], b'[c] = k·(b[c] − mean) + B. Gemm (`y = α·A·W + β·C`): the output
//! columns of W scale by k, and C' = k·β·C + (B − k·mean) with β' = 1.
//!
//! Keeps: every graph output, up to float rounding (the fold is computed in f64, stored in
//! f32). The Conv/Gemm keeps its name and records the step as its origin; the norm is
//! removed and its readers read the Conv/Gemm. If the norm's output was a graph output, the
//! merged layer's output takes over its name. Weights shared with another layer are copied.
//!
//! A norm that cannot fold into the layer before it (a norm of the input, or of a Concat)
//! folds into the layers after it when every reader is a Conv that does not pad (padded
//! zeros would not be normalized) or a Gemm reading it as A: input channel c's weights scale
//! by k[c], and the bias gains Σ W·shift. The readers keep their names and record the step.
//!
//! Leaves alone (reported as "left alone: why", not as an error): a norm that fits neither
//! way: its input is not a Conv or Gemm, or that layer's output is also read elsewhere (or
//! is a graph output), and some reader is not a non-padding Conv or a Gemm; statistics or
//! weights that are not f32 constants; channels that do not line up. Its reason is the one
//! for the layer before it; the sentence gives both.

use mcc_ir::{Graph, NodeId, Op, StepId, Tensor, ValueId};

use crate::PassError;
use crate::merge::MergePass;
use crate::merge::{self, a_or_an, leave, output_channel, set_bias, store_const};
use crate::merge::{LeftAlone, Merged, OrSkip, Reason, Skip};
use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};

fn f32_const(graph: &Graph, v: Option<ValueId>) -> Option<Vec<f64>> {
    let t = graph.const_data(v?)?.as_f32()?;
    Some(t.iter().map(|&x| f64::from(x)).collect())
}

/// Whether `norm` can be folded: `Ok(producer)` or `Err(why not)`.
pub fn check(graph: &Graph, norm: NodeId) -> Result<NodeId, Skip> {
    let n = graph.node(norm).or_bug("no such layer")?;
    let Op::BatchNormalization(_) = n.op else {
        return Err(leave(
            Reason::UnsupportedOp,
            format!("it is {}, not a BatchNormalization", a_or_an(n.op.name())),
        ));
    };
    if n.outputs.len() != 1 {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "it has training-mode outputs",
        ));
    }
    let x = n
        .inputs
        .first()
        .copied()
        .flatten()
        .or_leave(Reason::MissingOperand, "it has no input")?;
    let channels = match graph.value(x).ty.shape.as_deref() {
        Some([_, c, ..]) => c
            .fixed()
            .or_leave(Reason::UnknownShape, "its channel count is not known")?,
        None => {
            return Err(leave(
                Reason::UnknownShape,
                "its input rank is unknown or below 2",
            ));
        }
        Some(_) => {
            return Err(leave(
                Reason::ShapeMismatch,
                "its input rank is unknown or below 2",
            ));
        }
    };
    for slot in 1..5 {
        let v = f32_const(graph, n.inputs.get(slot).copied().flatten()).or_leave(
            Reason::NotConstant,
            "its scale, bias, mean and variance are not all f32 constants",
        )?;
        if v.len() != channels {
            return Err(leave(
                Reason::ShapeMismatch,
                format!(
                    "its parameters have {} entries for {channels} channels",
                    v.len()
                ),
            ));
        }
    }
    let p = graph.producer(x).or_leave(
        Reason::UnsupportedOp,
        "its input is a graph input, not a layer",
    )?;
    let pn = graph.node(p).or_bug("no producer")?;
    if graph.users(x).len() != 1 || graph.outputs().contains(&x) {
        return Err(leave(
            Reason::SharedOutput,
            format!(
                "`{}`'s output is also read elsewhere, so it must stay unnormalized",
                pn.name
            ),
        ));
    }
    let w = f32_const(graph, pn.inputs.get(1).copied().flatten());
    // Weights that are not constant, or constant with the wrong shape: one sentence, the kind
    // says which.
    let unless = |constant: bool, shaped: bool, detail: String| match (constant, shaped) {
        (false, _) => Err(leave(Reason::NotConstant, detail)),
        (true, false) => Err(leave(Reason::ShapeMismatch, detail)),
        (true, true) => Ok(()),
    };
    match &pn.op {
        Op::Conv(_) => {
            let shape = pn
                .inputs
                .get(1)
                .copied()
                .flatten()
                .and_then(|v| graph.value(v).ty.fixed_dims())
                .unwrap_or_default();
            unless(
                w.is_some(),
                shape.first() == Some(&channels),
                format!(
                    "`{}`'s weights are not an f32 constant with {channels} output channels",
                    pn.name
                ),
            )?;
        }
        Op::Gemm(g) => {
            let shape = pn
                .inputs
                .get(1)
                .copied()
                .flatten()
                .and_then(|v| graph.value(v).ty.fixed_dims())
                .unwrap_or_default();
            let out = if g.transB != 0 {
                shape.first()
            } else {
                shape.get(1)
            };
            unless(
                w.is_some(),
                shape.len() == 2 && out == Some(&channels),
                format!(
                    "`{}`'s weights are not an f32 matrix with {channels} outputs",
                    pn.name
                ),
            )?;
            if let Some(c) = pn.inputs.get(2).copied().flatten() {
                let cv = f32_const(graph, Some(c));
                unless(
                    cv.is_some(),
                    cv.as_ref().is_some_and(|v| v.len() == channels)
                        && graph.value(c).ty.rank() == Some(1),
                    format!(
                        "`{}`'s C operand is not a constant vector of {channels}",
                        pn.name
                    ),
                )?;
            }
        }
        other => {
            return Err(leave(
                Reason::UnsupportedOp,
                format!("it reads {}, not a Conv or Gemm", a_or_an(other.name())),
            ));
        }
    }
    if let Some(b) = pn.inputs.get(2).copied().flatten()
        && f32_const(graph, Some(b)).is_none()
    {
        return Err(leave(
            Reason::NotConstant,
            format!("`{}`'s bias is not an f32 constant", pn.name),
        ));
    }
    Ok(p)
}

/// Per channel: the factor k = scale / √(var + ε) and the shift B − k·mean of a norm (both
/// empty unless its statistics are f32 vectors of one length).
fn factors(graph: &Graph, norm: NodeId) -> (Vec<f64>, Vec<f64>) {
    let Some(bn) = graph.node(norm) else {
        return (vec![], vec![]);
    };
    let eps = match &bn.op {
        Op::BatchNormalization(b) => f64::from(b.epsilon),
        _ => 0.0,
    };
    let get =
        |slot: usize| f32_const(graph, bn.inputs.get(slot).copied().flatten()).unwrap_or_default();
    let (scale, beta, mean, var) = (get(1), get(2), get(3), get(4));
    if [&beta, &mean, &var].iter().any(|v| v.len() != scale.len()) {
        return (vec![], vec![]);
    }
    let k: Vec<f64> = scale
        .iter()
        .zip(&var)
        .map(|(s, v)| s / (v + eps).sqrt())
        .collect();
    let shift = (0..k.len()).map(|c| beta[c] - k[c] * mean[c]).collect();
    (k, shift)
}

/// Rewrites the Conv/Gemm `p` so that it computes `k·y + shift` per output channel.
/// A layer, its weights' name, shape and values.
type Weights = (mcc_ir::Node, String, Vec<usize>, Vec<f32>);

fn weights(graph: &Graph, node: NodeId) -> Result<Weights, String> {
    let n = graph.node(node).cloned().ok_or("the layer vanished")?;
    let wv = n.inputs.get(1).copied().flatten().ok_or("no weights")?;
    let name = graph.value(wv).name.clone();
    let wt = graph
        .const_data(wv)
        .and_then(Tensor::as_f32)
        .ok_or("the weights vanished")?;
    let (shape, flat) = (wt.shape().to_vec(), wt.iter().copied().collect());
    Ok((n, name, shape, flat))
}

fn fold_into(graph: &mut Graph, p: NodeId, k: &[f64], shift: &[f64]) -> Result<(), String> {
    let (pn, wname, shape, flat) = weights(graph, p)?;
    let c = k.len();
    // y' = k·y + shift, with the Gemm's β folded into its new C (β' = 1).
    let beta = match &pn.op {
        Op::Conv(_) => 1.0,
        Op::Gemm(g) => f64::from(g.beta),
        _ => return Err("the producer is no longer a Conv or Gemm".into()),
    };
    let new_w: Vec<f32> = flat
        .iter()
        .enumerate()
        .map(|(i, &x)| (f64::from(x) * k[output_channel(&pn.op, &shape, c, i)]) as f32)
        .collect();
    let b0 = f32_const(graph, pn.inputs.get(2).copied().flatten()).unwrap_or_else(|| vec![0.0; c]);
    let new_b: Vec<f32> = (0..c)
        .map(|i| (k[i] * beta * b0[i] + shift[i]) as f32)
        .collect();
    store_layer(graph, p, &wname, &shape, new_w, new_b)
}

/// Gives `node` its folded weights (named after the old ones) and bias.
fn store_layer(
    graph: &mut Graph,
    node: NodeId,
    wname: &str,
    shape: &[usize],
    weights: Vec<f32>,
    bias: Vec<f32>,
) -> Result<(), String> {
    let w = Tensor::from_vec(shape, weights).map_err(|e| e.to_string())?;
    store_const(graph, node, 1, &format!("{wname}.merged"), w).map_err(|e| e.to_string())?;
    set_bias(graph, node, bias)
}

/// Whether `norm` can be folded into the layers that read it: `Ok(readers)` or `Err(why not)`.
/// Each must be a Conv without padding (padded zeros would not be normalized) or a Gemm
/// reading it as A, untransposed.
pub fn check_following(graph: &Graph, norm: NodeId) -> Result<Vec<NodeId>, Skip> {
    let n = graph.node(norm).or_bug("no such layer")?;
    let y = *n.outputs.first().or_bug("it has no output")?;
    let (k, _) = factors(graph, norm);
    let channels = graph
        .value(y)
        .ty
        .shape
        .as_deref()
        .and_then(|s| s.get(1))
        .and_then(mcc_ir::Dim::fixed);
    let not_per_channel = |reason| {
        Err(leave(
            reason,
            "its parameters are not per-channel f32 constants",
        ))
    };
    if n.outputs.len() != 1 {
        return not_per_channel(Reason::UnsupportedAttribute);
    }
    if k.is_empty() {
        return not_per_channel(Reason::NotConstant);
    }
    match channels {
        None => return not_per_channel(Reason::UnknownShape),
        Some(c) if c != k.len() => return not_per_channel(Reason::ShapeMismatch),
        Some(_) => {}
    }
    if graph.outputs().contains(&y) {
        return Err(leave(
            Reason::GraphInterface,
            "its output is a graph output",
        ));
    }
    let users = graph.users(y);
    if users.is_empty() {
        return Err(leave(Reason::UnsupportedOp, "nothing reads it"));
    }
    for &(u, slot) in &users {
        let un = graph.node(u).or_bug("a reader vanished")?;
        let why = |reason: Reason, what: &str| Err(leave(reason, format!("`{}` {what}", un.name)));
        let w = un.inputs.get(1).copied().flatten();
        let wshape = w
            .and_then(|w| graph.const_data(w))
            .map(|t| t.shape().to_vec());
        if !matches!(un.op, Op::Conv(_) | Op::Gemm(_)) {
            return why(
                Reason::UnsupportedOp,
                &format!("is {}, not a Conv or Gemm", a_or_an(un.op.name())),
            );
        }
        const AS_INPUT: &str = "does not read it as the input of constant f32 weights";
        if slot != 0 {
            return why(Reason::UnsupportedAttribute, AS_INPUT);
        }
        if f32_const(graph, w).is_none() {
            return why(Reason::NotConstant, AS_INPUT);
        }
        if un
            .inputs
            .get(2)
            .copied()
            .flatten()
            .is_some_and(|b| f32_const(graph, Some(b)).is_none())
        {
            return why(
                Reason::NotConstant,
                "has a bias that is not an f32 constant",
            );
        }
        let outputs = match (&un.op, wshape.as_deref()) {
            (Op::Gemm(g), Some([r, c])) => Some(if g.transB != 0 { *r } else { *c }),
            (Op::Conv(_), Some([m, ..])) => Some(*m),
            _ => None,
        };
        let bias_len = f32_const(graph, un.inputs.get(2).copied().flatten()).map(|b| b.len());
        if bias_len.is_some_and(|l| l != 1 && Some(l) != outputs) {
            return why(
                Reason::ShapeMismatch,
                "has a bias that is not one value per output",
            );
        }
        match &un.op {
            Op::Conv(c) => {
                if c.pads.iter().any(|&p| p != 0)
                    || matches!(
                        c.auto_pad,
                        mcc_ir::AutoPad::SameUpper | mcc_ir::AutoPad::SameLower
                    )
                {
                    return why(
                        Reason::NotExact,
                        "pads its input, and the padding would not be normalized",
                    );
                }
                let g = c.group.max(1) as usize;
                if wshape.as_ref().and_then(|s| s.get(1)).map(|&cg| cg * g) != Some(k.len()) {
                    return why(Reason::ShapeMismatch, "does not read the norm's channels");
                }
            }
            Op::Gemm(g) => {
                let rows = wshape
                    .as_ref()
                    .and_then(|s| s.get(usize::from(g.transB != 0)));
                const AS_ROWS: &str = "does not read the norm's channels as its rows";
                if g.transA != 0 {
                    return why(Reason::UnsupportedAttribute, AS_ROWS);
                }
                if rows != Some(&k.len()) {
                    return why(Reason::ShapeMismatch, AS_ROWS);
                }
                if graph.value(y).ty.rank() != Some(2) {
                    return why(Reason::ShapeMismatch, "reads a tensor that is not 2-D");
                }
            }
            _ => return why(Reason::UnsupportedOp, "is not a Conv or Gemm"),
        }
    }
    Ok(users.into_iter().map(|(u, _)| u).collect())
}

/// Rewrites the reader `r` (Conv or Gemm) so that it reads the norm's input directly:
/// x̂ = k·x + shift per input channel, so the weights of input channel c scale by k[c] and
/// the bias gains Σ W·shift.
fn fold_following(graph: &mut Graph, r: NodeId, k: &[f64], shift: &[f64]) -> Result<(), String> {
    let (rn, wname, shape, flat) = weights(graph, r)?;
    let flat: Vec<f64> = flat.iter().map(|&x| f64::from(x)).collect();
    // For each weight: the input channel it reads, and the output it feeds.
    let (m, scale_out) = match &rn.op {
        Op::Conv(_) => (shape[0], 1.0),
        Op::Gemm(g) if g.transB != 0 => (shape[0], f64::from(g.alpha)),
        Op::Gemm(g) => (shape[1], f64::from(g.alpha)),
        _ => return Err("the reader is no longer a Conv or Gemm".into()),
    };
    let input_of = |i: usize| -> (usize, usize) {
        match &rn.op {
            Op::Conv(c) => {
                let cg = shape[1];
                let spatial: usize = shape[2..].iter().product::<usize>().max(1);
                let per = spatial * cg;
                let mg = (m / c.group.max(1) as usize).max(1);
                let out = i / per;
                ((out / mg) * cg + (i % per) / spatial, out)
            }
            Op::Gemm(g) => {
                let (a, b) = (i / shape[1], i % shape[1]);
                if g.transB != 0 { (b, a) } else { (a, b) }
            }
            _ => (0, 0),
        }
    };
    let beta = match &rn.op {
        Op::Gemm(g) => f64::from(g.beta),
        _ => 1.0,
    };
    let b0 = f32_const(graph, rn.inputs.get(2).copied().flatten());
    let mut bias: Vec<f64> = match b0 {
        Some(b) if b.len() == m => b.iter().map(|x| beta * x).collect(),
        Some(b) if b.len() == 1 => vec![beta * b[0]; m],
        None => vec![0.0; m],
        Some(_) => return Err("the reader's bias is not per output".into()),
    };
    let mut new_w = Vec::with_capacity(flat.len());
    for (i, &w) in flat.iter().enumerate() {
        let (c, out) = input_of(i);
        new_w.push((w * k[c]) as f32);
        bias[out] += scale_out * w * shift[c];
    }
    let bias = bias.into_iter().map(|x| x as f32).collect();
    store_layer(graph, r, &wname, &shape, new_w, bias)
}

/// Folds each named BatchNormalization it can into the layer before it, else into the
/// layers after it; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    let (mut merged, mut left) = (vec![], vec![]);
    for name in nodes {
        let (m, l) = merge::each(
            graph,
            std::slice::from_ref(name),
            step,
            "merge-batchnorm",
            |g, id| check(g, id).map(|p| (p, factors(g, id))),
            |g, p, (k, shift)| fold_into(g, p, &k, &shift),
        )?;
        merged.extend(m);
        let Some(refused) = l.into_iter().next() else {
            continue;
        };
        let Some(norm) = graph.find_node(name) else {
            continue;
        };
        let readers = match check_following(graph, norm) {
            Ok(r) => r,
            Err(skip) => {
                // The kind is the first way's; the sentence gives both.
                left.push(match skip.report(name, "merge-batchnorm")? {
                    Some(why) => LeftAlone {
                        node: name.clone(),
                        reason: refused.reason,
                        detail: format!(
                            "{}; nor into what reads it: {}",
                            refused.detail, why.detail
                        ),
                    },
                    None => refused,
                });
                continue;
            }
        };
        let fail = |message: String| PassError::Node {
            pass: "merge-batchnorm",
            node: name.clone(),
            op: "BatchNormalization",
            message,
        };
        let (k, shift) = factors(graph, norm);
        let x = graph
            .node(norm)
            .and_then(|n| n.inputs.first().copied().flatten())
            .ok_or_else(|| fail("it lost its input".into()))?;
        for r in readers {
            fold_following(graph, r, &k, &shift).map_err(fail)?;
            graph
                .set_input(r, 0, Some(x))
                .map_err(|e| fail(e.to_string()))?;
            if let Some(n) = graph.node_mut(r) {
                n.origin = mcc_ir::Origin::Step(step);
                merged.push(Merged {
                    removed: name.clone(),
                    into: n.name.clone(),
                    stands_for: n.name.clone(),
                });
            }
        }
        graph.remove_node(norm).map_err(|e| fail(e.to_string()))?;
        graph.remove_unused_consts();
    }
    Ok((merged, left))
}

/// `merge batchnorm`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "batchnorm",
    summary: "fold BatchNormalization into the adjacent Conv/Gemm",
    params: &[],
    applies: Applies::Ops(&["BatchNormalization"]),
    status: Status::Ready(&MergePass(run)),
    check_params: no_param_check,
    sweep: None,
};
