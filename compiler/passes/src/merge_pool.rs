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

use mcc_ir::{AutoPad, Graph, NodeId, Op, Origin, StepId, Tensor};

use crate::PassError;
use crate::merge_activations::a_or_an;
pub use crate::merge_batchnorm::{LeftAlone, Merged};

fn ones(v: &[i64]) -> bool {
    v.iter().all(|&x| x == 1)
}

/// The spatial sizes (all dims after N and C) of a value, if known.
fn spatial_dims(graph: &Graph, v: mcc_ir::ValueId) -> Option<Vec<usize>> {
    graph
        .value(v)
        .ty
        .shape
        .as_ref()?
        .get(2..)?
        .iter()
        .map(mcc_ir::Dim::fixed)
        .collect()
}

/// Whether `pool` can be folded: `Ok(conv)` or `Err(why not)`.
pub fn check(graph: &Graph, pool: NodeId) -> Result<NodeId, String> {
    let n = graph.node(pool).ok_or("no such layer")?;
    let Op::AveragePool(p) = &n.op else {
        return Err(format!(
            "it is {}, not an AveragePool",
            a_or_an(n.op.name())
        ));
    };
    if p.pads.iter().any(|&x| x != 0) || !matches!(p.auto_pad, AutoPad::NotSet | AutoPad::Valid) {
        return Err("the pool pads its input, so its border windows average fewer values".into());
    }
    if p.ceil_mode != 0 || !ones(&p.dilations) {
        return Err("the pool uses ceil_mode or dilation".into());
    }
    let x = n
        .inputs
        .first()
        .copied()
        .flatten()
        .ok_or("it has no input")?;
    let c = graph
        .producer(x)
        .ok_or("its input is not a layer's output")?;
    let cn = graph.node(c).ok_or("no producer")?;
    let Op::Conv(conv) = &cn.op else {
        return Err(format!("it reads {}, not a Conv", a_or_an(cn.op.name())));
    };
    if !ones(&conv.dilations)
        || !conv.activation.is_empty()
        || !matches!(conv.auto_pad, AutoPad::NotSet)
    {
        return Err(format!(
            "`{}` uses dilation, auto_pad or an activation epilogue",
            cn.name
        ));
    }
    if graph.users(x).len() != 1 || graph.outputs().contains(&x) {
        return Err(format!("`{}`'s output is also read elsewhere", cn.name));
    }
    let w = cn
        .inputs
        .get(1)
        .copied()
        .flatten()
        .and_then(|w| graph.const_data(w))
        .and_then(Tensor::as_f32)
        .ok_or(format!("`{}`'s weights are not an f32 constant", cn.name))?;
    let spatial = w.ndim() - 2;
    if p.kernel_shape.len() != spatial {
        return Err("the pool's window does not match the Conv's spatial rank".into());
    }
    if spatial_dims(graph, x).is_none() || spatial_dims(graph, n.outputs[0]).is_none() {
        return Err("the spatial sizes are not known".into());
    }
    Ok(c)
}

/// Folds each named AveragePool it can; reports the others.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    let fail = |node: &str, message: String| PassError::Node {
        pass: "merge-pool",
        node: node.to_string(),
        op: "AveragePool",
        message,
    };
    let (mut merged, mut left) = (vec![], vec![]);
    for name in nodes {
        let pool = graph
            .find_node(name)
            .ok_or_else(|| fail(name, "no such layer".into()))?;
        let c = match check(graph, pool) {
            Ok(c) => c,
            Err(why) => {
                left.push(LeftAlone {
                    node: name.clone(),
                    why,
                });
                continue;
            }
        };
        let (pn, cn) = match (graph.node(pool).cloned(), graph.node(c).cloned()) {
            (Some(p), Some(c)) => (p, c),
            _ => return Err(fail(name, "vanished".into())),
        };
        let (Op::AveragePool(p), Op::Conv(conv)) = (&pn.op, &cn.op) else {
            return Err(fail(name, "ops changed".into()));
        };
        let wv = cn.inputs[1].ok_or_else(|| fail(name, "no weights".into()))?;
        let w = graph
            .const_data(wv)
            .and_then(Tensor::as_f32)
            .cloned()
            .ok_or_else(|| fail(name, "weights vanished".into()))?;
        let shape = w.shape().to_vec();
        let nd = shape.len() - 2;
        let kern: Vec<usize> = shape[2..].to_vec();
        let cs: Vec<usize> = if conv.strides.is_empty() {
            vec![1; nd]
        } else {
            conv.strides.iter().map(|&s| s as usize).collect()
        };
        let pk: Vec<usize> = p.kernel_shape.iter().map(|&k| k as usize).collect();
        let ps: Vec<usize> = if p.strides.is_empty() {
            vec![1; nd]
        } else {
            p.strides.iter().map(|&s| s as usize).collect()
        };
        let new_k: Vec<usize> = (0..nd).map(|d| kern[d] + cs[d] * (pk[d] - 1)).collect();
        let window: usize = pk.iter().product();
        // W'[m, c, u] = (1/|P|) Σ_v W[m, c, u − s·v].
        let per_kernel: usize = kern.iter().product();
        let per_new: usize = new_k.iter().product();
        let outer = shape[0] * shape[1];
        let flat: Vec<f32> = w.iter().copied().collect();
        let mut acc = vec![0f64; outer * per_new];
        let (mut ki, mut vi, mut ui) = (vec![0; nd], vec![0; nd], vec![0; nd]);
        for o in 0..outer {
            for kf in 0..per_kernel {
                mcc_ir::geometry::unravel(kf, &kern, &mut ki);
                let wv = f64::from(flat[o * per_kernel + kf]);
                for vf in 0..window {
                    mcc_ir::geometry::unravel(vf, &pk, &mut vi);
                    let mut uf = 0;
                    for d in 0..nd {
                        ui[d] = ki[d] + cs[d] * vi[d];
                        uf = uf * new_k[d] + ui[d];
                    }
                    acc[o * per_new + uf] += wv;
                }
            }
        }
        let new_w: Vec<f32> = acc.iter().map(|&x| (x / window as f64) as f32).collect();
        let mut new_shape = shape[..2].to_vec();
        new_shape.extend(&new_k);
        // Pads: keep the begin pads; end pads just large enough for the pool's output count.
        let input = cn.inputs[0].ok_or_else(|| fail(name, "no input".into()))?;
        let (in_dims, out_dims) = match (
            spatial_dims(graph, input),
            spatial_dims(graph, pn.outputs[0]),
        ) {
            (Some(i), Some(o)) if i.len() == nd && o.len() == nd => (i, o),
            _ => {
                return Err(fail(
                    name,
                    "the spatial sizes changed under the pass".into(),
                ));
            }
        };
        let pads_b: Vec<i64> = (0..nd)
            .map(|d| conv.pads.get(d).copied().unwrap_or(0))
            .collect();
        let pads_e: Vec<i64> = (0..nd)
            .map(|d| {
                ((out_dims[d] as i64 - 1) * (cs[d] * ps[d]) as i64 + new_k[d] as i64
                    - in_dims[d] as i64
                    - pads_b[d])
                    .max(0)
            })
            .collect();
        let mut new_conv = conv.clone();
        new_conv.kernel_shape = new_k.iter().map(|&k| k as i64).collect();
        new_conv.strides = (0..nd).map(|d| (cs[d] * ps[d]) as i64).collect();
        new_conv.pads = pads_b.iter().chain(&pads_e).copied().collect();
        let io = |e: mcc_ir::GraphError| fail(name, e.to_string());
        let t = Tensor::from_vec(&new_shape, new_w).map_err(|e| fail(name, e.to_string()))?;
        if graph.users(wv).len() == 1 && !graph.outputs().contains(&wv) {
            graph.make_const(wv, t);
        } else {
            let fresh = graph.fresh_value_name(&format!("{}.pooled", graph.value(wv).name));
            let nv = graph.add_const(fresh, t);
            graph.set_input(c, 1, Some(nv)).map_err(io)?;
        }
        if let Some(node) = graph.node_mut(c) {
            node.op = Op::Conv(new_conv);
            node.origin = Origin::Step(step);
        }
        let (x, y) = (cn.outputs[0], pn.outputs[0]);
        graph.replace_all_uses(y, x);
        graph.remove_node(pool).map_err(io)?;
        // The Conv's output now has the pool's shape.
        graph.value_mut(x).ty = graph.value(y).ty.clone();
        merged.push(Merged {
            removed: name.clone(),
            into: cn.name.clone(),
        });
    }
    graph.remove_unused_consts();
    Ok((merged, left))
}
