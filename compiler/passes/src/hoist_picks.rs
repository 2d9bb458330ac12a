//! `hoist-picks`: one index taken along the first axis of a Transpose's output — the
//! `unbind` of a transformer's stacked query, key and value, written as Split + Squeeze,
//! Slice + Squeeze or Gather — is taken from the Transpose's input instead, along the axis
//! the Transpose moved there, and the rest is transposed after:
//! `Squeeze(Split(Transpose(x, p))[i], 0)` becomes `Transpose(Gather(x, i, axis = p[0]), p')`
//! with `p'` the rest of `p` renumbered.
//!
//! Keeps: outputs bit-identical (both forms move the same elements, computing nothing). The
//! batch axis, first in the input, stays first: compiled code works a sample at a time.
//! The picked values keep their names.
//!
//! Leaves alone: a Transpose that keeps its first axis, whose output is a graph output or
//! has any reader other than such picks, or whose picked axis has no fixed size.

use mcc_ir::{Dim, Graph, NodeId, Op, Tensor, TensorType, ValueId, op};

use crate::{PassError, PassInfo};

pub(crate) const INFO: PassInfo = PassInfo {
    name: "hoist-picks",
    summary: "Take single indices before a Transpose, so the batch stays first",
    run,
};

/// One index picked: the value that holds it (first axis dropped) and the nodes that
/// computed it from the Transpose's output.
struct Pick {
    index: usize,
    value: ValueId,
    nodes: Vec<NodeId>,
}

fn run(graph: &mut Graph) -> Result<usize, PassError> {
    let mut changed = 0;
    for n in graph.node_ids() {
        let Some(plan) = plan(graph, n) else { continue };
        rewrite(graph, n, plan)?;
        changed += 1;
    }
    Ok(changed)
}

/// The permutation of `perm` over `rank` axes, if valid.
fn permutation(perm: &[i64], rank: usize) -> Option<Vec<usize>> {
    if perm.is_empty() {
        return Some((0..rank).rev().collect());
    }
    let p: Vec<usize> = perm
        .iter()
        .map(|&a| usize::try_from(if a < 0 { a + rank as i64 } else { a }).ok())
        .collect::<Option<_>>()?;
    let mut seen = vec![false; rank];
    for &a in &p {
        if a >= rank || std::mem::replace(&mut seen[a], true) {
            return None;
        }
    }
    (p.len() == rank).then_some(p)
}

/// The constant integers of operand `slot` of `n`.
fn ints(g: &Graph, n: NodeId, slot: usize) -> Option<Vec<i64>> {
    let v = g.node(n)?.inputs.get(slot).copied().flatten()?;
    Some(g.const_data(v)?.to_i64_vec())
}

/// The value of `v` with its first axis squeezed away: `v`'s only reader is
/// `Squeeze(v, [0])` (and `v` is no graph output).
fn squeezed(g: &Graph, v: ValueId, rank: usize) -> Option<(ValueId, NodeId)> {
    if g.outputs().contains(&v) {
        return None;
    }
    let [(s, 0)] = g.users(v)[..] else {
        return None;
    };
    let node = g.node(s)?;
    let axes = ints(g, s, 1)?;
    let first = matches!(axes[..], [a] if a == 0 || a == -(rank as i64));
    if !matches!(node.op, Op::Squeeze(_)) || !first {
        return None;
    }
    Some((*node.outputs.first()?, s))
}

/// The picks that read the output of Transpose `n`, if they are all it feeds.
fn plan(g: &Graph, n: NodeId) -> Option<(Vec<usize>, Vec<Pick>)> {
    let node = g.node(n)?;
    let Op::Transpose(t) = &node.op else {
        return None;
    };
    let (x, y) = (
        node.inputs.first().copied().flatten()?,
        *node.outputs.first()?,
    );
    let rank = g.value(x).ty.rank()?;
    let perm = permutation(&t.perm, rank)?;
    if perm.first() == Some(&0) || rank < 2 || g.outputs().contains(&y) {
        return None;
    }
    let Some(Dim::Fixed(size)) = g.value(x).ty.shape.as_ref()?.get(perm[0]).cloned() else {
        return None;
    };
    let norm = |i: i64| -> Option<usize> {
        let j = if i < 0 { i + size as i64 } else { i };
        usize::try_from(j).ok().filter(|&j| j < size)
    };
    let mut picks = vec![];
    for (u, slot) in g.users(y) {
        let user = g.node(u)?;
        if slot != 0 {
            return None;
        }
        match &user.op {
            Op::Gather(ga) if ga.axis == 0 || ga.axis == -(rank as i64) => {
                let idx = user.inputs.get(1).copied().flatten()?;
                let data = g.const_data(idx)?;
                if !data.shape().is_empty() {
                    return None;
                }
                picks.push(Pick {
                    index: norm(*data.to_i64_vec().first()?)?,
                    value: *user.outputs.first()?,
                    nodes: vec![u],
                });
            }
            Op::Split(sp) if sp.axis == 0 || sp.axis == -(rank as i64) => {
                for (at, &o) in user.outputs.iter().enumerate() {
                    let part = g.value(o).ty.shape.as_ref()?.first()?.fixed()?;
                    if part != 1 {
                        return None;
                    }
                    if g.is_used(o) {
                        let (value, s) = squeezed(g, o, rank)?;
                        picks.push(Pick {
                            index: at,
                            value,
                            nodes: vec![s, u],
                        });
                    }
                }
            }
            Op::Slice(_) => {
                let (starts, ends) = (ints(g, u, 1)?, ints(g, u, 2)?);
                let axes_ok = match user.inputs.get(3).copied().flatten() {
                    None => true,
                    Some(_) => matches!(ints(g, u, 3)?[..], [a] if a == 0 || a == -(rank as i64)),
                };
                let steps_ok = match user.inputs.get(4).copied().flatten() {
                    None => true,
                    Some(_) => ints(g, u, 4)? == [1],
                };
                let ([s], [e]) = (&starts[..], &ends[..]) else {
                    return None;
                };
                let clamp = |v: i64| {
                    let v = if v < 0 {
                        v.saturating_add(size as i64)
                    } else {
                        v
                    };
                    v.clamp(0, size as i64)
                };
                let (s, e) = (clamp(*s), clamp(*e));
                if !axes_ok || !steps_ok || e - s != 1 {
                    return None;
                }
                let (value, sq) = squeezed(g, *user.outputs.first()?, rank)?;
                picks.push(Pick {
                    index: s as usize,
                    value,
                    nodes: vec![sq, u],
                });
            }
            _ => return None,
        }
    }
    (!picks.is_empty()).then_some((perm, picks))
}

fn rewrite(
    g: &mut Graph,
    n: NodeId,
    (perm, picks): (Vec<usize>, Vec<Pick>),
) -> Result<(), PassError> {
    let fail = |node: &str, message: String| PassError::Node {
        pass: INFO.name,
        node: node.to_string(),
        op: "Transpose",
        message,
    };
    let Some(node) = g.node(n) else {
        return Ok(());
    };
    let name = node.name.clone();
    let Some(x) = node.inputs.first().copied().flatten() else {
        return Ok(());
    };
    let dtype = g.value(x).ty.dtype;
    let axis = perm[0];
    let rest: Vec<i64> = perm[1..]
        .iter()
        .map(|&a| if a > axis { a - 1 } else { a } as i64)
        .collect();
    let mut old = vec![];
    for p in picks {
        let base = g.value(p.value).name.clone();
        let idx = g.add_const(
            g.fresh_value_name(&format!("{base}.index")),
            Tensor::scalar(p.index as i64),
        );
        let picked = g.fresh_value_name(&format!("{base}.picked"));
        let gather = g.add_node(
            format!("{name}/pick{}", p.index),
            Op::Gather(op::Gather { axis: axis as i64 }),
            vec![Some(x), Some(idx)],
            vec![(picked, TensorType::unknown(dtype))],
        );
        let picked = g.node(gather).and_then(|x| x.outputs.first().copied());
        let out = g.fresh_value_name(&format!("{base}.hoisted"));
        let tr = g.add_node(
            format!("{name}/pick{}/transpose", p.index),
            Op::Transpose(op::Transpose { perm: rest.clone() }),
            vec![picked],
            vec![(out, TensorType::unknown(dtype))],
        );
        let Some(y) = g.node(tr).and_then(|x| x.outputs.first().copied()) else {
            return Err(fail(&name, "the new Transpose has no output".into()));
        };
        g.replace_all_uses(p.value, y);
        old.push((p, y, base));
    }
    // The old readers go, readers first; each pick's value name passes to its new value.
    for (p, y, base) in old {
        for m in p.nodes {
            if g.node(m)
                .is_some_and(|x| x.outputs.iter().all(|&o| !g.is_used(o)))
            {
                g.remove_node(m).map_err(|e| fail(&name, e.to_string()))?;
            }
        }
        if g.find_value(&base).is_none() {
            g.value_mut(y).name = base;
        }
    }
    Ok(())
}
