//! `merge cleanup`: tidies what the merges leave, so the kernels see one form of each thing.
//!
//! On the selected layers:
//! - Identity and inference Dropout are removed (their readers read the operand);
//! - a Reshape or Flatten that does not change the shape is removed;
//! - a Reshape or Flatten that reads another one (read nowhere else) reads that one's input
//!   instead, when its result depends only on the element count (a Reshape to a constant
//!   shape without `0` entries) or the leading axes it keeps are the same;
//! - a Reshape that keeps the first axis and merges the rest (`[N, C, H, W] → [N, C·H·W]`) is
//!   written as `Flatten(axis = 1)`, the one canonical "flatten" (no shape operand, any batch).
//!
//! Then, on the whole graph: constant subgraphs are evaluated and nodes nothing reads are
//! removed (these are garbage, not layers anyone selects).
//!
//! Keeps: graph outputs bit-identical (only shapes are rewritten; no arithmetic changes). A
//! graph output keeps its name.
//!
//! Leaves alone: Identity/Dropout between a graph input and a graph output (removing it would
//! rename the interface), a Dropout whose mask is read, reshapes whose shapes are not known.

use mcc_ir::{Dim, Graph, NodeId, Op, Origin, StepId};

use crate::PassError;
use crate::merge::MergePass;
use crate::merge::{LeftAlone, Merged, OrSkip, Reason, Skip, leave};
use mcc_plan::registry::{Applies, Status, VariantSchema, no_param_check};

fn fail(node: &str, message: impl ToString) -> PassError {
    PassError::Node {
        pass: "merge-cleanup",
        node: node.to_string(),
        op: "",
        message: message.to_string(),
    }
}

fn dims(graph: &Graph, v: mcc_ir::ValueId) -> Option<&[Dim]> {
    let s = graph.value(v).ty.shape.as_deref()?;
    s.iter().all(|d| *d != Dim::Unknown).then_some(s)
}

/// Whether `n` just passes its operand through, and if not, why.
fn pass_through(graph: &Graph, n: NodeId) -> Result<bool, Skip> {
    let node = graph.node(n).or_bug("no such layer")?;
    let (Some(&Some(src)), Some(&out)) = (node.inputs.first(), node.outputs.first()) else {
        return Ok(false);
    };
    let is = match &node.op {
        Op::Identity(_) => true,
        Op::Dropout(_) => {
            if node.inputs.get(2).is_some_and(Option::is_some) {
                return Err(leave(
                    Reason::UnsupportedAttribute,
                    "it is given a training_mode operand",
                ));
            }
            if node.outputs.get(1).is_some_and(|&m| graph.is_used(m)) {
                return Err(leave(Reason::SharedOutput, "its mask is read"));
            }
            true
        }
        Op::Reshape(_) | Op::Flatten(_) => {
            matches!((dims(graph, src), dims(graph, out)), (Some(a), Some(b)) if a == b)
        }
        _ => false,
    };
    if is && graph.outputs().contains(&out) && graph.inputs().contains(&src) {
        return Err(leave(
            Reason::GraphInterface,
            "it joins a graph input to a graph output; removing it would rename the model's interface",
        ));
    }
    Ok(is)
}

/// Rewires a Reshape/Flatten that reads another one to that one's input; `true` if done.
fn skip_inner(graph: &mut Graph, n: NodeId) -> Result<bool, mcc_ir::GraphError> {
    let Some(node) = graph.node(n) else {
        return Ok(false);
    };
    let Some(y) = node.inputs.first().copied().flatten() else {
        return Ok(false);
    };
    let Some(p) = graph.producer(y) else {
        return Ok(false);
    };
    let Some(inner) = graph.node(p) else {
        return Ok(false);
    };
    if !matches!(inner.op, Op::Reshape(_) | Op::Flatten(_))
        || graph.users(y).len() != 1
        || graph.outputs().contains(&y)
    {
        return Ok(false);
    }
    let Some(x) = inner.inputs.first().copied().flatten() else {
        return Ok(false);
    };
    let ok = match &node.op {
        Op::Reshape(r) => node
            .inputs
            .get(1)
            .copied()
            .flatten()
            .and_then(|s| graph.const_data(s))
            .is_some_and(|s| r.allowzero != 0 || !s.to_i64_vec().contains(&0)),
        Op::Flatten(f) => match (dims(graph, x), dims(graph, y)) {
            (Some(a), Some(b)) => {
                let axis = if f.axis < 0 {
                    f.axis + b.len() as i64
                } else {
                    f.axis
                };
                usize::try_from(axis)
                    .is_ok_and(|k| k <= a.len() && k <= b.len() && a[..k] == b[..k])
            }
            _ => false,
        },
        _ => false,
    };
    if ok {
        graph.set_input(n, 0, Some(x))?;
    }
    Ok(ok)
}

/// Rewrites `Reshape(x) → [x₀, rest]` as `Flatten(x, axis = 1)`; `true` if done.
fn as_flatten(graph: &mut Graph, n: NodeId) -> bool {
    let Some(node) = graph.node(n) else {
        return false;
    };
    if !matches!(node.op, Op::Reshape(_)) {
        return false;
    }
    let (Some(x), Some(&out)) = (node.inputs.first().copied().flatten(), node.outputs.first())
    else {
        return false;
    };
    let (Some(a), Some(b)) = (dims(graph, x), dims(graph, out)) else {
        return false;
    };
    let rest: Option<usize> = a.iter().skip(1).map(Dim::fixed).product();
    let flattens =
        a.len() >= 2 && b.len() == 2 && a[0] == b[0] && rest.is_some() && b[1].fixed() == rest;
    if flattens && let Some(node) = graph.node_mut(n) {
        node.op = Op::Flatten(mcc_ir::op::Flatten { axis: 1 });
        node.inputs.truncate(1);
        let _ = graph.set_input(n, 0, Some(x));
    }
    flattens
}

/// Tidies the named layers, then the whole graph's constant and dead nodes.
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    let (mut merged, mut left) = (vec![], vec![]);
    for name in nodes {
        // Earlier rewrites may have removed it.
        let Some(n) = graph.find_node(name) else {
            continue;
        };
        match pass_through(graph, n) {
            Err(skip) => left.extend(skip.report(name, "merge-cleanup")?),
            Ok(true) => {
                let node = graph.node(n).ok_or_else(|| fail(name, "vanished"))?;
                let (src, out) = match (node.inputs.first(), node.outputs.first()) {
                    (Some(&Some(s)), Some(&o)) => (s, o),
                    _ => return Err(fail(name, "lost its operand")),
                };
                let reader = graph
                    .producer(src)
                    .and_then(|p| graph.node(p))
                    .map_or_else(|| graph.value(src).name.clone(), |p| p.name.clone());
                graph.replace_all_uses(out, src);
                graph.remove_node(n).map_err(|e| fail(name, e))?;
                merged.push(Merged {
                    removed: name.clone(),
                    stands_for: reader.clone(),
                    into: reader,
                });
            }
            Ok(false) => {
                let skipped = skip_inner(graph, n).map_err(|e| fail(name, e))?;
                let flattened = as_flatten(graph, n);
                if skipped || flattened {
                    if let Some(node) = graph.node_mut(n) {
                        node.origin = Origin::Step(step);
                    }
                    mcc_ir::infer_all(graph).map_err(|(node, _, e)| fail(&node, e.0))?;
                    // The rewrite may have made it a no-op.
                    if matches!(pass_through(graph, n), Ok(true)) {
                        let src = graph
                            .node(n)
                            .and_then(|x| x.inputs.first().copied().flatten());
                        let out = graph.node(n).and_then(|x| x.outputs.first().copied());
                        if let (Some(src), Some(out)) = (src, out) {
                            graph.replace_all_uses(out, src);
                            graph.remove_node(n).map_err(|e| fail(name, e))?;
                            let into = graph
                                .producer(src)
                                .and_then(|p| graph.node(p))
                                .map_or_else(|| graph.value(src).name.clone(), |p| p.name.clone());
                            merged.push(Merged {
                                removed: name.clone(),
                                stands_for: into.clone(),
                                into,
                            });
                        }
                    }
                }
            }
        }
    }
    crate::run_pipeline(
        graph,
        &[crate::fold_constants::INFO, crate::remove_dead_nodes::INFO],
    )?;
    Ok((merged, left))
}

/// `merge cleanup`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "cleanup",
    summary: "remove identities and no-op reshapes, collapse reshape chains, write flattens as Flatten; fold constants, drop dead nodes",
    params: &[],
    applies: Applies::Ops(&["Identity", "Dropout", "Reshape", "Flatten"]),
    status: Status::Ready(&MergePass(run)),
    check_params: no_param_check,
    sweep: None,
};
