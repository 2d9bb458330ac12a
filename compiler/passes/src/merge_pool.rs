//! `merge pool`: fold an AveragePool into the Conv that feeds it, giving one strided Conv
//! (DeepRebirth's "streamline" merge). The new kernel is the old one averaged over the pool
//! window: with conv stride s and pool window P,
//! W'[m, c, u] = (1/|P|) · Σ_{v ∈ P} W[m, c, u − s·v], kernel K + s·(|P|−1) per axis, stride
//! s·(pool stride). It reads exactly the inputs the Conv + pool read, so it is exact, and it
//! does fewer multiply-accumulates whenever the pool stride exceeds 1.
//!
//! Keeps: every graph output, up to float rounding. The Conv keeps its name and bias (the
//! average of a constant is that constant) and records the step; the pool is removed.
//!
//! Leaves alone (reported with the reason): a pool with padding, `ceil_mode`, or dilation; a
//! Conv with dilation or an activation epilogue; a Conv whose output is also read
//! elsewhere; a pool that does not read a Conv.

use mcc_ir::{AutoPad, Graph, NodeId, Op, StepId, Tensor};

use crate::PassError;
use crate::merge::MergePass;
use crate::merge::{self, a_or_an, leave, spatial_dims, store_const};
use crate::merge::{LeftAlone, Merged, OrSkip, Reason, Skip};
use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};

fn ones(v: &[i64]) -> bool {
    v.iter().all(|&x| x == 1)
}

/// Whether `pool` can be folded: `Ok(conv)` or `Err(why not)`.
pub fn check(graph: &Graph, pool: NodeId) -> Result<NodeId, Skip> {
    let n = graph.node(pool).or_bug("no such layer")?;
    let Op::AveragePool(p) = &n.op else {
        return Err(leave(
            Reason::UnsupportedOp,
            format!("it is {}, not an AveragePool", a_or_an(n.op.name())),
        ));
    };
    if p.pads.iter().any(|&x| x != 0) || !matches!(p.auto_pad, AutoPad::NotSet | AutoPad::Valid) {
        return Err(leave(
            Reason::NotExact,
            "the pool pads its input, so its border windows average fewer values",
        ));
    }
    if p.ceil_mode != 0 || !ones(&p.dilations) {
        return Err(leave(
            Reason::UnsupportedAttribute,
            "the pool uses ceil_mode or dilation",
        ));
    }
    let x = n
        .inputs
        .first()
        .copied()
        .flatten()
        .or_leave(Reason::MissingOperand, "it has no input")?;
    let c = graph
        .producer(x)
        .or_leave(Reason::UnsupportedOp, "its input is not a layer's output")?;
    let cn = graph.node(c).or_bug("no producer")?;
    let Op::Conv(conv) = &cn.op else {
        return Err(leave(
            Reason::UnsupportedOp,
            format!("it reads {}, not a Conv", a_or_an(cn.op.name())),
        ));
    };
    // One sentence for three causes; the kind says whether an epilogue is among them.
    let uses = |reason| {
        Err(leave(
            reason,
            format!(
                "`{}` uses dilation, auto_pad or an activation epilogue",
                cn.name
            ),
        ))
    };
    if !conv.activation.is_empty() {
        return uses(Reason::HasActivation);
    }
    if !ones(&conv.dilations) || !matches!(conv.auto_pad, AutoPad::NotSet) {
        return uses(Reason::UnsupportedAttribute);
    }
    if graph.users(x).len() != 1 || graph.outputs().contains(&x) {
        return Err(leave(
            Reason::SharedOutput,
            format!("`{}`'s output is also read elsewhere", cn.name),
        ));
    }
    let w = cn
        .inputs
        .get(1)
        .copied()
        .flatten()
        .and_then(|w| graph.const_data(w))
        .and_then(Tensor::as_f32)
        .ok_or_else(|| {
            leave(
                Reason::NotConstant,
                format!("`{}`'s weights are not an f32 constant", cn.name),
            )
        })?;
    let spatial = w.ndim().saturating_sub(2);
    if p.kernel_shape.len() != spatial {
        return Err(leave(
            Reason::ShapeMismatch,
            "the pool's window does not match the Conv's spatial rank",
        ));
    }
    let out = *n.outputs.first().or_bug("it has no output")?;
    if spatial_dims(graph, x).is_none() || spatial_dims(graph, out).is_none() {
        return Err(leave(
            Reason::UnknownShape,
            "the spatial sizes are not known",
        ));
    }
    Ok(c)
}

/// What folding needs from the pool: window, strides, and its output's spatial sizes.
struct PoolShape {
    window: Vec<usize>,
    strides: Vec<usize>,
    out: Vec<usize>,
}

fn pool_shape(graph: &Graph, pool: NodeId) -> Option<PoolShape> {
    let n = graph.node(pool)?;
    let Op::AveragePool(p) = &n.op else {
        return None;
    };
    let window: Vec<usize> = p.kernel_shape.iter().map(|&k| k as usize).collect();
    let strides = if p.strides.is_empty() {
        vec![1; window.len()]
    } else {
        p.strides.iter().map(|&s| s as usize).collect()
    };
    Some(PoolShape {
        window,
        strides,
        out: spatial_dims(graph, n.outputs[0])?,
    })
}

/// Rewrites the Conv `c` into the strided Conv that also does the pool.
fn fold_into(graph: &mut Graph, c: NodeId, pool: PoolShape) -> Result<(), String> {
    let cn = graph.node(c).cloned().ok_or("the Conv vanished")?;
    let Op::Conv(conv) = &cn.op else {
        return Err("the producer is no longer a Conv".into());
    };
    let wv = cn.inputs.get(1).copied().flatten().ok_or("no weights")?;
    let w = graph
        .const_data(wv)
        .and_then(Tensor::as_f32)
        .cloned()
        .ok_or("the weights vanished")?;
    let shape = w.shape().to_vec();
    let nd = shape.len() - 2;
    let kern: Vec<usize> = shape[2..].to_vec();
    let cs: Vec<usize> = if conv.strides.is_empty() {
        vec![1; nd]
    } else {
        conv.strides.iter().map(|&s| s as usize).collect()
    };
    let (pk, ps) = (&pool.window, &pool.strides);
    let input = cn.inputs.first().copied().flatten().ok_or("no input")?;
    let in_dims = spatial_dims(graph, input).ok_or("the input's sizes are unknown")?;
    if pk.len() != nd || ps.len() != nd || in_dims.len() != nd || pool.out.len() != nd {
        return Err("the pool and the Conv disagree on the spatial rank".into());
    }
    let new_k: Vec<usize> = (0..nd).map(|d| kern[d] + cs[d] * (pk[d] - 1)).collect();
    // W'[m, c, u] = (1/|P|) Σ_v W[m, c, u − s·v].
    let window: usize = pk.iter().product();
    let per_kernel: usize = kern.iter().product();
    let per_new: usize = new_k.iter().product();
    let flat: Vec<f32> = w.iter().copied().collect();
    let mut acc = vec![0f64; shape[0] * shape[1] * per_new];
    let (mut ki, mut vi) = (vec![0; nd], vec![0; nd]);
    for o in 0..shape[0] * shape[1] {
        for kf in 0..per_kernel {
            mcc_ir::geometry::unravel(kf, &kern, &mut ki);
            let x = f64::from(flat[o * per_kernel + kf]);
            for vf in 0..window {
                mcc_ir::geometry::unravel(vf, pk, &mut vi);
                let uf = (0..nd).fold(0, |uf, d| uf * new_k[d] + ki[d] + cs[d] * vi[d]);
                acc[o * per_new + uf] += x;
            }
        }
    }
    let new_w: Vec<f32> = acc.iter().map(|&x| (x / window as f64) as f32).collect();
    let mut new_shape = shape[..2].to_vec();
    new_shape.extend(&new_k);
    // Keep the begin pads; end pads just large enough for the pool's output count.
    let pads_b: Vec<i64> = (0..nd)
        .map(|d| conv.pads.get(d).copied().unwrap_or(0))
        .collect();
    let pads_e: Vec<i64> = (0..nd)
        .map(|d| {
            ((pool.out[d] as i64 - 1) * (cs[d] * ps[d]) as i64 + new_k[d] as i64
                - in_dims[d] as i64
                - pads_b[d])
                .max(0)
        })
        .collect();
    let mut new_conv = conv.clone();
    new_conv.kernel_shape = new_k.iter().map(|&k| k as i64).collect();
    new_conv.strides = (0..nd).map(|d| (cs[d] * ps[d]) as i64).collect();
    new_conv.pads = pads_b.iter().chain(&pads_e).copied().collect();
    let base = format!("{}.pooled", graph.value(wv).name);
    store_const(
        graph,
        c,
        1,
        &base,
        Tensor::from_vec(&new_shape, new_w).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    if let Some(n) = graph.node_mut(c) {
        n.op = Op::Conv(new_conv);
    }
    Ok(())
}

/// Folds each named AveragePool it can; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    merge::each(
        graph,
        nodes,
        step,
        "merge-pool",
        |g, id| {
            let c = check(g, id)?;
            Ok((
                c,
                pool_shape(g, id)
                    .or_leave(Reason::UnknownShape, "the pool's shape is not known")?,
            ))
        },
        fold_into,
    )
}

/// `merge pool`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "pool",
    summary: "fold an AveragePool into the Conv before it: one strided Conv",
    params: &[],
    applies: Applies::Ops(&["AveragePool"]),
    status: Status::Ready(&MergePass(run)),
    check_params: no_param_check,
    sweep: None,
};
