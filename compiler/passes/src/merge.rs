//! What every `merge` pass shares: the result types, the per-layer loop (find, check, fold
//! or leave alone with the reason), the rewiring that removes the merged layer, and
//! copy-on-write storage of rewritten weights.

use mcc_ir::{Graph, GraphError, NodeId, Origin, StepId, Tensor};

use crate::PassError;

use mcc_plan::plan::Step;
pub use mcc_plan::{LeftAlone, Merged, Reason};
use mcc_plan::{Outcome, Stats, Technique, TechniqueError};

/// Why a merge pass's `check` does not fold a layer.
#[derive(Clone, Debug, PartialEq)]
pub enum Skip {
    /// The layer is no instance of the pass's pattern at all (a residual Add for `merge
    /// scale`, a Conv reading a Relu for `merge linear`): it is skipped without a "left alone"
    /// line, which is kept for layers that look mergeable but are not.
    NotACandidate,
    /// The layer looks mergeable but is not: reported as left alone, with the kind and the
    /// sentence that says what stood in the way.
    LeftAlone(Reason, String),
    /// The graph broke an invariant the pass relies on (a node that vanished, an epilogue
    /// `verify` should have refused): a bug in mcc, reported as an error.
    Bug(String),
}

impl Skip {
    /// The "left alone" line for `node`, or the error a bug becomes; `None` for a layer that
    /// is not a candidate.
    pub(crate) fn report(
        self,
        node: &str,
        pass: &'static str,
    ) -> Result<Option<LeftAlone>, PassError> {
        match self {
            Skip::NotACandidate => Ok(None),
            Skip::LeftAlone(reason, detail) => Ok(Some(LeftAlone {
                node: node.to_string(),
                reason,
                detail,
            })),
            Skip::Bug(message) => Err(PassError::Node {
                pass,
                node: node.to_string(),
                op: "",
                message,
            }),
        }
    }
}

/// A layer left alone for `reason`, `detail` saying what stood in the way.
pub(crate) fn leave(reason: Reason, detail: impl Into<String>) -> Skip {
    Skip::LeftAlone(reason, detail.into())
}

/// A broken invariant (see [`Skip::Bug`]).
pub(crate) fn bug(message: impl Into<String>) -> Skip {
    Skip::Bug(message.into())
}

/// `?`-friendly [`Skip`]s from a missing value.
pub(crate) trait OrSkip<T> {
    /// `None` leaves the layer alone for `reason`.
    fn or_leave(self, reason: Reason, detail: &str) -> Result<T, Skip>;
    /// `None` is a broken invariant.
    fn or_bug(self, message: &str) -> Result<T, Skip>;
}

impl<T> OrSkip<T> for Option<T> {
    fn or_leave(self, reason: Reason, detail: &str) -> Result<T, Skip> {
        self.ok_or_else(|| leave(reason, detail))
    }

    fn or_bug(self, message: &str) -> Result<T, Skip> {
        self.ok_or_else(|| bug(message))
    }
}

/// A merge pass's entry point: merges what it can of the named layers, reports the others.
pub type MergeFn =
    fn(&mut Graph, &[String], StepId) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError>;

/// A merge pass as a [`Technique`]: data-free, its `check` is a dry run on a copy.
pub struct MergePass(pub MergeFn);

impl Technique for MergePass {
    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        _stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let (merged, left_alone) = (self.0)(graph, &step.nodes, id)?;
        Ok(outcome(merged, left_alone))
    }
}

/// The outcome of a merge: the layers that absorbed others changed.
pub fn outcome(merged: Vec<Merged>, left_alone: Vec<LeftAlone>) -> Outcome {
    let mut changed: Vec<String> = vec![];
    for m in &merged {
        if !changed.contains(&m.into) {
            changed.push(m.into.clone());
        }
    }
    Outcome {
        changed,
        merged,
        left_alone,
    }
}

/// "a Relu", "an Add": an op name with its article.
pub fn a_or_an(op: &str) -> String {
    let vowel = op.starts_with(['A', 'E', 'I', 'O', 'U']);
    format!("{} {op}", if vowel { "an" } else { "a" })
}

/// The output channel that weight `i` (row-major in a weight tensor of `shape`) feeds, for a
/// layer with `channels` outputs: Conv weights are `[M, C/g, k…]`, Gemm's `[N, K]` (transB) or
/// `[K, N]`, MatMul's `[…, K, N]`.
pub(crate) fn output_channel(op: &mcc_ir::Op, shape: &[usize], channels: usize, i: usize) -> usize {
    let len: usize = shape.iter().product();
    match op {
        mcc_ir::Op::Conv(_) => i / (len / channels.max(1)).max(1),
        mcc_ir::Op::Gemm(g) if g.transB != 0 => i / shape.get(1).copied().unwrap_or(1).max(1),
        _ => i % shape.last().copied().unwrap_or(1).max(1),
    }
}

/// The spatial sizes (all dims after N and C) of a value, if known.
pub(crate) fn spatial_dims(graph: &Graph, v: mcc_ir::ValueId) -> Option<Vec<usize>> {
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

/// Gives the Conv/Gemm `node` the bias `values` (a Gemm's C, with β reset to 1: callers fold
/// the old β into `values`).
pub(crate) fn set_bias(graph: &mut Graph, node: NodeId, values: Vec<f32>) -> Result<(), String> {
    let name = graph
        .node(node)
        .map(|n| format!("{}.bias", n.name))
        .ok_or("the layer vanished")?;
    let n = values.len();
    store_const(
        graph,
        node,
        2,
        &name,
        Tensor::from_vec(&[n], values).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    if let Some(mcc_ir::Op::Gemm(g)) = graph.node_mut(node).map(|n| &mut n.op) {
        g.beta = 1.0;
    }
    Ok(())
}

/// Stores `data` as operand `slot` of `node`: in place when only this node reads the old
/// constant, as a new constant (named from `base`) otherwise, so other readers keep theirs.
pub(crate) fn store_const(
    graph: &mut Graph,
    node: NodeId,
    slot: usize,
    base: &str,
    data: Tensor,
) -> Result<(), GraphError> {
    let old = graph
        .node(node)
        .and_then(|n| n.inputs.get(slot).copied().flatten());
    // Weights that were stored sparse stay stored in their smallest form (a fold keeps their
    // zeros).
    let sparse = old.is_some_and(|v| graph.stored(v).is_some());
    let v = match old {
        Some(v) if graph.users(v).len() == 1 && !graph.outputs().contains(&v) => {
            graph.make_const(v, data);
            v
        }
        _ => {
            let name = graph.fresh_value_name(base);
            let v = graph.add_const(name, data);
            graph.set_input(node, slot, Some(v))?;
            v
        }
    };
    if sparse {
        store_smallest(graph, v);
    }
    Ok(())
}

/// Stores an f32 constant in its smallest f32 form (bitmask or CSR) when that is smaller than
/// dense; otherwise (dense is smallest, or not f32) it stays as it is.
pub fn store_smallest(graph: &mut Graph, v: mcc_ir::ValueId) {
    let Some(t) = graph.const_data(v) else {
        return;
    };
    if let Ok(s) = mcc_ir::Stored::smallest_f32(t)
        && s.encoding().layout != mcc_ir::stored::Layout::Dense
    {
        graph.store_const(v, s);
    }
}

/// For each named layer: `check` says which layer it merges into (with whatever `fold` needs)
/// or why not; `fold` rewrites that layer; then the merged layer is removed, its readers read
/// the absorbing layer (which takes over the merged output's type, and its name when it was a
/// graph output), and the absorbing layer records `step` as its origin.
pub(crate) fn each<T>(
    graph: &mut Graph,
    nodes: &[String],
    step: StepId,
    pass: &'static str,
    check: impl Fn(&Graph, NodeId) -> Result<(NodeId, T), Skip>,
    mut fold: impl FnMut(&mut Graph, NodeId, T) -> Result<(), String>,
) -> Result<(Vec<Merged>, Vec<LeftAlone>), PassError> {
    let fail = |node: &str, message: String| PassError::Node {
        pass,
        node: node.to_string(),
        op: "",
        message,
    };
    let (mut merged, mut left) = (vec![], vec![]);
    for name in nodes {
        // A layer an earlier step merged away is no longer there to merge.
        let Some(layer) = graph.find_node(name) else {
            continue;
        };
        let (into, data) = match check(graph, layer) {
            Ok(x) => x,
            Err(skip) => {
                left.extend(skip.report(name, pass)?);
                continue;
            }
        };
        fold(graph, into, data).map_err(|m| fail(name, m))?;
        let (x, y) = match (graph.node(into), graph.node(layer)) {
            (Some(i), Some(l)) => (i.outputs[0], l.outputs[0]),
            _ => return Err(fail(name, "a layer vanished".into())),
        };
        let ty = graph.value(y).ty.clone();
        graph.value_mut(x).ty = ty;
        graph.replace_all_uses(y, x);
        graph
            .remove_node(layer)
            .map_err(|e| fail(name, e.to_string()))?;
        let into_name = match graph.node_mut(into) {
            Some(n) => {
                n.origin = Origin::Step(step);
                n.name.clone()
            }
            None => String::new(),
        };
        merged.push(Merged {
            removed: name.clone(),
            into: into_name,
            stands_for: name.clone(),
        });
    }
    graph.remove_unused_consts();
    Ok((merged, left))
}
