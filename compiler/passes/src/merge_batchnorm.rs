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
//! Leaves alone (reported as "left alone: why", not as an error): a norm whose input is not
//! a Conv or Gemm, whose producer's output is also read elsewhere (or is a graph output),
//! whose statistics or the producer's weights are not f32 constants, or whose channels do
//! not line up with the producer's outputs.

use mcc_ir::{Graph, NodeId, Op, StepId, Tensor, ValueId};

use crate::PassError;
use crate::merge::{self, a_or_an, output_channel, set_bias, store_const};
pub use crate::merge::{LeftAlone, Merged};

fn f32_const(graph: &Graph, v: Option<ValueId>) -> Option<Vec<f64>> {
    let t = graph.const_data(v?)?.as_f32()?;
    Some(t.iter().map(|&x| f64::from(x)).collect())
}

/// Whether `norm` can be folded: `Ok(producer)` or `Err(why not)`.
pub fn check(graph: &Graph, norm: NodeId) -> Result<NodeId, String> {
    let n = graph.node(norm).ok_or("no such layer")?;
    let Op::BatchNormalization(_) = n.op else {
        return Err(format!(
            "it is {}, not a BatchNormalization",
            a_or_an(n.op.name())
        ));
    };
    if n.outputs.len() != 1 {
        return Err("it has training-mode outputs".into());
    }
    let x = n
        .inputs
        .first()
        .copied()
        .flatten()
        .ok_or("it has no input")?;
    let channels = match graph.value(x).ty.shape.as_deref() {
        Some([_, c, ..]) => c.fixed().ok_or("its channel count is not known")?,
        _ => return Err("its input rank is unknown or below 2".into()),
    };
    for slot in 1..5 {
        let v = f32_const(graph, n.inputs.get(slot).copied().flatten())
            .ok_or("its scale, bias, mean and variance are not all f32 constants")?;
        if v.len() != channels {
            return Err(format!(
                "its parameters have {} entries for {channels} channels",
                v.len()
            ));
        }
    }
    let p = graph
        .producer(x)
        .ok_or("its input is a graph input, not a layer")?;
    let pn = graph.node(p).ok_or("no producer")?;
    if graph.users(x).len() != 1 || graph.outputs().contains(&x) {
        return Err(format!(
            "`{}`'s output is also read elsewhere, so it must stay unnormalized",
            pn.name
        ));
    }
    let w = f32_const(graph, pn.inputs.get(1).copied().flatten());
    match &pn.op {
        Op::Conv(_) => {
            let shape = pn
                .inputs
                .get(1)
                .copied()
                .flatten()
                .and_then(|v| graph.value(v).ty.fixed_dims())
                .unwrap_or_default();
            if w.is_none() || shape.first() != Some(&channels) {
                return Err(format!(
                    "`{}`'s weights are not an f32 constant with {channels} output channels",
                    pn.name
                ));
            }
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
            if w.is_none() || shape.len() != 2 || out != Some(&channels) {
                return Err(format!(
                    "`{}`'s weights are not an f32 matrix with {channels} outputs",
                    pn.name
                ));
            }
            if let Some(c) = pn.inputs.get(2).copied().flatten()
                && (f32_const(graph, Some(c)).is_none_or(|v| v.len() != channels)
                    || graph.value(c).ty.rank() != Some(1))
            {
                return Err(format!(
                    "`{}`'s C operand is not a constant vector of {channels}",
                    pn.name
                ));
            }
        }
        other => {
            return Err(format!(
                "it reads {}, not a Conv or Gemm",
                a_or_an(other.name())
            ));
        }
    }
    if let Some(b) = pn.inputs.get(2).copied().flatten()
        && f32_const(graph, Some(b)).is_none()
    {
        return Err(format!("`{}`'s bias is not an f32 constant", pn.name));
    }
    Ok(p)
}

/// Per channel: the factor k = scale / √(var + ε) and the shift B − k·mean of a norm.
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
    let k: Vec<f64> = scale
        .iter()
        .zip(&var)
        .map(|(s, v)| s / (v + eps).sqrt())
        .collect();
    let shift = (0..k.len()).map(|c| beta[c] - k[c] * mean[c]).collect();
    (k, shift)
}

/// Rewrites the Conv/Gemm `p` so that it computes `k·y + shift` per output channel.
fn fold_into(graph: &mut Graph, p: NodeId, k: &[f64], shift: &[f64]) -> Result<(), String> {
    let pn = graph.node(p).cloned().ok_or("the layer vanished")?;
    let wv = pn.inputs.get(1).copied().flatten().ok_or("no weights")?;
    let wname = graph.value(wv).name.clone();
    let wt = graph
        .const_data(wv)
        .and_then(Tensor::as_f32)
        .cloned()
        .ok_or("the weights vanished")?;
    let shape = wt.shape().to_vec();
    let flat: Vec<f32> = wt.iter().copied().collect();
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
    let err = |e: mcc_ir::GraphError| e.to_string();
    store_const(
        graph,
        p,
        1,
        &format!("{wname}.merged"),
        Tensor::from_vec(&shape, new_w).map_err(|e| e.to_string())?,
    )
    .map_err(err)?;
    set_bias(graph, p, new_b)
}

/// Folds each named BatchNormalization it can; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    merge::each(
        graph,
        nodes,
        step,
        "merge-batchnorm",
        |g, id| check(g, id).map(|p| (p, factors(g, id))),
        |g, p, (k, shift)| fold_into(g, p, &k, &shift),
    )
}
