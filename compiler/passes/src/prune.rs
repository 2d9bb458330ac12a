//! What the weight-pruning techniques (`prune unstructured`, `prune nm`, `prune block`) share: their
//! criteria (`by`) and repair (`refit`) parameters, finding a layer's weights, the
//! layer-by-layer loop on calibration statistics, and writing pruned weights back.
//!
//! **Invariant:** a layer is changed only through [`replace_weights`]: its weight operand is
//! replaced by a tensor of the same shape (a copy when a layer outside the step reads the
//! same constant), stored in its smallest form, and the layer's origin is the step. With a
//! data-driven criterion or a refit, each layer's statistics are collected after the layers
//! before it changed ([`Stats::invalidate`] after each), so the result depends on the order of
//! the step's layers — IR order, fixed — and on nothing else.

use mcc_ir::stored::Layout;
use mcc_ir::{Graph, NodeId, Origin, StepId, Stored, Tensor, ValueId};
use mcc_plan::plan::{ParamValue, Step};
use mcc_plan::registry::{Default, ParamSchema, ParamType, p};
use mcc_plan::{LeftAlone, Outcome, Reason, StatRequest, Stats, TechniqueError};

use crate::layers;
use crate::reconstruct::{self, Pattern, View};

/// The `by` parameter: which weights go.
pub const BY: ParamSchema = p(
    "by",
    ParamType::Choice(&["magnitude", "obs"]),
    Default::Word("magnitude"),
    "which weights go: the smallest |w|, or OBS from calibration XᵀX with compensation",
);

/// The `refit` parameter: repair the kept weights.
pub const REFIT: ParamSchema = p(
    "refit",
    ParamType::Choice(&["off", "on"]),
    Default::Word("off"),
    "refit the kept weights by least squares on calibration data",
);

/// A step's `by` and `refit`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// `by: obs`.
    pub obs: bool,
    /// `refit: on`.
    pub refit: bool,
}

impl Settings {
    /// The step's settings.
    pub fn of(step: &Step) -> Settings {
        let word =
            |name: &str, on: &str| matches!(step.param(name), Some(ParamValue::Word(w)) if w == on);
        Settings {
            obs: word("by", "obs"),
            refit: word("refit", "on"),
        }
    }

    /// Whether the step reads calibration statistics.
    pub fn uses_data(self) -> bool {
        self.obs || self.refit
    }
}

/// The statistics a pruning step asks for before it starts: the first layer's XᵀX when it
/// uses data (the others are asked for as the loop reaches them).
pub fn needs(step: &Step, s: Settings) -> Vec<StatRequest> {
    if !s.uses_data() {
        return Vec::new();
    }
    layers::first_gram(step)
}

/// A layer a pruning step can change: its node, weights, their shape and how they map to
/// rows × k.
pub struct Layer {
    /// The node.
    pub node: NodeId,
    /// Its weight constant.
    pub weights: ValueId,
    /// The weights' shape.
    pub shape: Vec<usize>,
    /// Rows × k, when the step needs it (`None`: any f32 constant will do).
    pub view: Option<View>,
}

/// Why a layer is not pruned.
pub enum Skip {
    /// Left alone, reported.
    Left(LeftAlone),
    /// The technique cannot go on.
    Fail(String),
}

/// The layer `name` with f32 constant weights; `pattern` (when given) needs them as rows × k
/// and must fit them.
pub fn layer(graph: &Graph, name: &str, pattern: Option<Pattern>) -> Result<Layer, Skip> {
    let leave = |reason: Reason, detail: String| Skip::Left(layers::leave(name, reason, detail));
    let w = layers::weighted(graph, name).map_err(Skip::Left)?;
    let (n, node) = (w.id, w.node);
    let Some(data) = w.tensor.as_f32() else {
        return Err(leave(
            Reason::NotConstant,
            "its weights are not an f32 constant".into(),
        ));
    };
    let w = w.weights;
    if data.as_slice().is_none() {
        return Err(Skip::Fail("non-contiguous weights".into()));
    }
    let shape = data.shape().to_vec();
    let view = match pattern {
        None => None,
        Some(pattern) => {
            let view = reconstruct::view(&node.op, &shape)
                .map_err(|why| leave(Reason::UnsupportedAttribute, why))?;
            let (rows, k) = match view {
                View::Direct => (shape[0], shape.iter().skip(1).product::<usize>()),
                View::Transposed => (shape.iter().skip(1).product::<usize>(), shape[0]),
            };
            pattern
                .fits(rows, k)
                .map_err(|why| leave(Reason::ShapeMismatch, why))?;
            Some(view)
        }
    };
    Ok(Layer {
        node: n,
        weights: w,
        shape,
        view,
    })
}

/// The layers of `step` that would be left alone, and why, without changing anything.
pub fn check(
    graph: &Graph,
    step: &Step,
    pattern: Option<Pattern>,
) -> Result<Vec<LeftAlone>, TechniqueError> {
    let mut left = vec![];
    for name in &step.nodes {
        match layer(graph, name, pattern) {
            Ok(_) => {}
            Err(Skip::Left(l)) => left.push(l),
            Err(Skip::Fail(message)) => {
                return Err(TechniqueError {
                    node: name.clone(),
                    message,
                });
            }
        }
    }
    Ok(left)
}

/// Prunes each layer of `step` to its pattern (`patterns` of its name) by `s`'s criterion,
/// refits when asked, one layer at a time in step order.
pub fn rewrite(
    graph: &mut Graph,
    step: &Step,
    id: StepId,
    stats: &mut dyn Stats,
    s: Settings,
    patterns: &dyn Fn(&str) -> Pattern,
) -> Result<Outcome, TechniqueError> {
    let mut out = Outcome::default();
    for name in &step.nodes {
        let pattern = patterns(name);
        let l = match layer(graph, name, Some(pattern)) {
            Ok(l) => l,
            Err(Skip::Left(l)) => {
                out.left_alone.push(l);
                continue;
            }
            Err(Skip::Fail(message)) => {
                return Err(TechniqueError {
                    node: name.clone(),
                    message,
                });
            }
        };
        let fail = |message: String| TechniqueError {
            node: name.clone(),
            message,
        };
        let view = l.view.unwrap_or(View::Direct);
        let w0 = graph
            .const_data(l.weights)
            .and_then(|t| reconstruct::to_rows(t, view))
            .ok_or_else(|| fail("its weights are not an f32 constant".into()))?;
        let h = if s.uses_data() {
            Some(layers::hessian(graph, stats, name, w0.k).map_err(fail)?)
        } else {
            None
        };
        let mut w = w0.clone();
        let mask = match (&h, s.obs) {
            (Some(h), true) => reconstruct::obs(&mut w, h, pattern).map_err(fail)?,
            _ => {
                let mask = reconstruct::magnitude_mask(&w0, pattern);
                for (x, &gone) in w.data.iter_mut().zip(&mask) {
                    if gone {
                        *x = 0.0;
                    }
                }
                mask
            }
        };
        if let (Some(h), true) = (&h, s.refit) {
            reconstruct::refit(&mut w, &w0, h, &mask).map_err(fail)?;
        }
        let t = reconstruct::from_rows(&w, view, &l.shape).map_err(fail)?;
        let layout = match (pattern, view) {
            (Pattern::NM { n, m }, View::Direct) => Some(Layout::NM {
                n: n as u8,
                m: m as u8,
            }),
            // The stored view is [first axis, rest]: outputs × inputs when direct, inputs ×
            // outputs when transposed.
            (Pattern::Block { r, c, .. }, View::Direct) => Some(Layout::Blocks {
                rows: r as u8,
                cols: c as u8,
            }),
            (Pattern::Block { r, c, .. }, View::Transposed) => Some(Layout::Blocks {
                rows: c as u8,
                cols: r as u8,
            }),
            _ => None,
        };
        replace_weights(graph, l.node, l.weights, t, layout, &step.nodes, id)
            .map_err(|e| fail(e.to_string()))?;
        out.changed.push(name.clone());
        if s.uses_data() {
            // The layers after this one see it pruned.
            stats.invalidate();
        }
    }
    Ok(out)
}

/// Gives layer `n` the weights `t` in place of its constant `w` (a copy when a layer outside
/// `step_nodes` also reads `w`), stored in `layout` when given and no larger than the
/// smallest other form, else in the smallest form, and records `id` as its origin.
pub fn replace_weights(
    graph: &mut Graph,
    n: NodeId,
    w: ValueId,
    t: Tensor,
    layout: Option<Layout>,
    step_nodes: &[String],
    id: StepId,
) -> Result<(), mcc_ir::GraphError> {
    let shared = graph
        .users(w)
        .iter()
        .any(|&(u, _)| graph.node(u).is_some_and(|x| !step_nodes.contains(&x.name)));
    let preferred = layout.and_then(|l| Stored::f32(&t, l).ok());
    let stored = if shared {
        let base = format!("{}.pruned", graph.value(w).name);
        let fresh = graph.fresh_value_name(&base);
        let nw = graph.add_const(fresh, t);
        graph.set_input(n, 1, Some(nw))?;
        nw
    } else {
        graph.make_const(w, t);
        w
    };
    crate::merge::store_smallest(graph, stored);
    if let Some(p) = preferred {
        let smallest = graph.stored(stored).map_or(usize::MAX, Stored::bytes);
        let dense = graph.const_data(stored).map_or(usize::MAX, |t| t.len() * 4);
        if p.bytes() <= smallest.min(dense) {
            graph.store_const(stored, p);
        }
    }
    if let Some(node) = graph.node_mut(n) {
        node.origin = Origin::Step(id);
    }
    Ok(())
}
