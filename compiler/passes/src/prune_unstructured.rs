//! `prune unstructured`: remove single weights. In each selected layer, `floor(amount · n)`
//! of its `n` weights become zero, chosen by a criterion (`by`):
//!
//! - `magnitude` (default, data-free): the smallest |w| (Han et al., "Learning both weights
//!   and connections");
//! - `obs`: Optimal Brain Surgeon from the layer's calibration XᵀX, with compensating updates
//!   of the weights kept (OBC/SparseGPT's column-by-column solver; `reconstruct::obs`).
//!
//! `refit: on` then sets the kept weights of each output to the least-squares fit of the
//! original layer's outputs on the calibration data (`reconstruct::refit`). With `obs` or
//! `refit`, layers are pruned one at a time in graph order and each one's XᵀX is collected on
//! the model as the layers before it left it, so later layers repair what earlier ones broke.
//!
//! Keeps: the graph's structure and every shape; only weight values change. Exactly
//! `floor(amount · n)` weights of each layer are zero afterwards (ties broken by position, so
//! the result is deterministic). A weight tensor shared with a layer that is not selected is
//! copied first, so that layer is unchanged.
//!
//! Leaves alone: biases, layers whose weights are not an f32 constant, layers an earlier step
//! merged away, and — with `obs` or `refit` — layers without a row-wise input to reconstruct
//! against (grouped convolutions, Gemm with transA) (all reported).
//!
//! Stores: the pruned weights in their smallest f32 form — dense, bitmask or CSR (at 78%
//! zeros a bitmask takes about a quarter of the dense bytes).

use mcc_ir::{Graph, NodeId, Origin, StepId, Tensor, ValueId};
use mcc_plan::plan::{ParamValue, Severity, Step};
use mcc_plan::registry::{
    Applies, Default, ParamIssue, ParamType, Params, RATIO, Status, Sweep, VariantSchema, num, p,
};
use mcc_plan::{LeftAlone, Outcome, Reason, Stat, StatRequest, Stats, Technique, TechniqueError};

use crate::PassError;
use crate::reconstruct::{self, View};

/// `prune unstructured`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "unstructured",
    summary: "zero the smallest-magnitude weights of each layer",
    params: &[
        p(
            "amount",
            RATIO,
            Default::Required,
            "fraction of each layer's weights set to zero",
        ),
        p(
            "by",
            ParamType::Choice(&["magnitude", "obs"]),
            Default::Word("magnitude"),
            "which weights go: the smallest |w|, or OBS from calibration XᵀX with compensation",
        ),
        p(
            "refit",
            ParamType::Choice(&["off", "on"]),
            Default::Word("off"),
            "refit the kept weights by least squares on calibration data",
        ),
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&PruneUnstructured),
    check_params,
    sweep: Some(Sweep {
        param: "amount",
        values: &[0.3, 0.5, 0.7, 0.8, 0.9, 0.95],
    }),
};

/// Pruning everything would remove the layers; pruning nothing is a no-op.
fn check_params(params: &Params) -> Vec<ParamIssue> {
    match num(params, "amount") {
        Some(a) if a >= 1.0 => vec![ParamIssue {
            severity: Severity::Error,
            param: "amount",
            message: "pruning every weight would remove the layers".into(),
            label: "amount must be below 100%".into(),
            help: None,
        }],
        Some(0.0) => vec![ParamIssue {
            severity: Severity::Warning,
            param: "amount",
            message: "pruning 0% of the weights changes nothing".into(),
            label: "no effect".into(),
            help: Some("remove the rule, or give a positive amount".into()),
        }],
        _ => vec![],
    }
}

/// Unstructured pruning as a technique: data-free by magnitude; with `by: obs` or
/// `refit: on`, layer by layer on calibration statistics.
pub struct PruneUnstructured;

/// What a step asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Settings {
    amount: f64,
    obs: bool,
    refit: bool,
}

impl Settings {
    fn of(step: &Step) -> Settings {
        let word =
            |name: &str, on: &str| matches!(step.param(name), Some(ParamValue::Word(w)) if w == on);
        Settings {
            amount: num(&step.params, "amount").unwrap_or(0.0),
            obs: word("by", "obs"),
            refit: word("refit", "on"),
        }
    }

    fn uses_data(self) -> bool {
        self.obs || self.refit
    }
}

impl Technique for PruneUnstructured {
    fn needs(&self, _graph: &Graph, step: &Step) -> Vec<StatRequest> {
        // Layer by layer: the first layer's XᵀX before the rewrite starts; each later one is
        // asked for (and collected) after the layers before it changed.
        if !Settings::of(step).uses_data() {
            return Vec::new();
        }
        step.nodes
            .first()
            .map(|layer| StatRequest::Gram {
                layer: layer.clone(),
            })
            .into_iter()
            .collect()
    }

    fn collects_upfront(&self) -> bool {
        false
    }

    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        let s = Settings::of(step);
        let mut left = vec![];
        for name in &step.nodes {
            match layer(graph, name, s) {
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

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let s = Settings::of(step);
        if !s.uses_data() {
            let (pruned, left_alone) = run(graph, &step.nodes, s.amount, id)?;
            return Ok(Outcome {
                changed: pruned.into_iter().map(|p| p.node).collect(),
                left_alone,
                ..Outcome::default()
            });
        }
        let mut out = Outcome::default();
        for name in &step.nodes {
            let l = match layer(graph, name, s) {
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
            let stat = stats.get(
                graph,
                &StatRequest::Gram {
                    layer: name.clone(),
                },
            )?;
            let Stat::Gram { k, rows, data } = &*stat else {
                return Err(fail("the calibration context returned no XᵀX".into()));
            };
            let w0 = graph
                .const_data(l.weights)
                .and_then(|t| reconstruct::to_rows(t, l.view))
                .ok_or_else(|| fail("its weights are not an f32 constant".into()))?;
            if *k != w0.k {
                return Err(fail(format!(
                    "XᵀX is {k} wide, the layer has {} inputs per output",
                    w0.k
                )));
            }
            let h = reconstruct::hessian(data, *k, *rows).map_err(fail)?;
            let mut w = w0.clone();
            let mask = if s.obs {
                reconstruct::obs(&mut w, &h, s.amount).map_err(fail)?
            } else {
                let mask = reconstruct::magnitude_mask(&w0, s.amount);
                for (x, &gone) in w.data.iter_mut().zip(&mask) {
                    if gone {
                        *x = 0.0;
                    }
                }
                mask
            };
            if s.refit {
                reconstruct::refit(&mut w, &w0, &h, &mask).map_err(fail)?;
            }
            let t = reconstruct::from_rows(&w, l.view, &l.shape).map_err(fail)?;
            replace_weights(graph, l.node, l.weights, t, &step.nodes, id)
                .map_err(|e| fail(e.to_string()))?;
            out.changed.push(name.clone());
            // The layers after this one see it pruned.
            stats.invalidate();
        }
        Ok(out)
    }
}

/// A layer the data-driven criteria can prune: its node, weights, their shape and view.
struct Layer {
    node: NodeId,
    weights: ValueId,
    shape: Vec<usize>,
    view: View,
}

enum Skip {
    Left(LeftAlone),
    Fail(String),
}

fn layer(graph: &Graph, name: &str, s: Settings) -> Result<Layer, Skip> {
    let leave = |reason: Reason, detail: String| {
        Skip::Left(LeftAlone {
            node: name.to_string(),
            reason,
            detail,
        })
    };
    let Some((n, node)) = graph
        .find_node(name)
        .and_then(|n| graph.node(n).map(|x| (n, x)))
    else {
        return Err(leave(
            Reason::MergedAway,
            "an earlier step merged it into another layer".into(),
        ));
    };
    let Some(w) = node.inputs.get(1).copied().flatten() else {
        return Err(leave(
            Reason::MissingOperand,
            "it has no weight operand".into(),
        ));
    };
    let Some(data) = graph.const_data(w).and_then(Tensor::as_f32) else {
        return Err(leave(
            Reason::NotConstant,
            "its weights are not an f32 constant".into(),
        ));
    };
    let shape = data.shape().to_vec();
    let view = if s.uses_data() {
        reconstruct::view(&node.op, &shape).map_err(|why| {
            leave(
                Reason::UnsupportedAttribute,
                format!("{why}; prune it `by: magnitude` with `refit: off`"),
            )
        })?
    } else {
        View::Direct
    };
    if data.as_slice().is_none() {
        return Err(Skip::Fail("non-contiguous weights".into()));
    }
    Ok(Layer {
        node: n,
        weights: w,
        shape,
        view,
    })
}

/// Gives layer `n` the weights `t` in place of its constant `w` (a copy when a layer outside
/// `step_nodes` also reads `w`), stored in their smallest form, and records `id` as its
/// origin.
fn replace_weights(
    graph: &mut Graph,
    n: NodeId,
    w: ValueId,
    t: Tensor,
    step_nodes: &[String],
    id: StepId,
) -> Result<(), mcc_ir::GraphError> {
    let shared = graph
        .users(w)
        .iter()
        .any(|&(u, _)| graph.node(u).is_some_and(|x| !step_nodes.contains(&x.name)));
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
    if let Some(node) = graph.node_mut(n) {
        node.origin = Origin::Step(id);
    }
    Ok(())
}

/// What pruning did to one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Pruned {
    /// The layer.
    pub node: String,
    /// Weights in the layer.
    pub weights: usize,
    /// Weights that are zero afterwards.
    pub zeros: usize,
}

/// Prunes `amount` of the weights of each named node; returns what it pruned and the layers
/// it left alone (gone — an earlier step merged them into another layer — or without f32
/// constant weights).
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    amount: f64,
    step: StepId,
) -> Result<(Vec<Pruned>, Vec<LeftAlone>), PassError> {
    let fail = |node: &str, message: String| PassError::Node {
        pass: "prune-unstructured",
        node: node.to_string(),
        op: "",
        message,
    };
    let mut out = vec![];
    let mut left = vec![];
    let data_free = Settings {
        amount,
        obs: false,
        refit: false,
    };
    for name in nodes {
        let l = match layer(graph, name, data_free) {
            Ok(l) => l,
            Err(Skip::Left(l)) => {
                left.push(l);
                continue;
            }
            Err(Skip::Fail(message)) => return Err(fail(name, message)),
        };
        let Some(data) = graph.const_data(l.weights).and_then(Tensor::as_f32) else {
            return Err(fail(name, "its weights are not an f32 constant".into()));
        };
        let mut pruned = data.clone();
        let total = pruned.len();
        let k = ((amount * total as f64).floor() as usize).min(total);
        let mut order: Vec<usize> = (0..total).collect();
        {
            let flat: Vec<f32> = pruned.iter().copied().collect();
            order.sort_by(|&a, &b| flat[a].abs().total_cmp(&flat[b].abs()).then(a.cmp(&b)));
        }
        let Some(slice) = pruned.as_slice_mut() else {
            return Err(fail(name, "non-contiguous weights".into()));
        };
        // `as_slice_mut` is the row-major order `order` indexes.
        for &i in &order[..k] {
            slice[i] = 0.0;
        }
        let zeros = pruned.iter().filter(|&&x| x == 0.0).count();
        replace_weights(graph, l.node, l.weights, Tensor::F32(pruned), nodes, step)
            .map_err(|e| fail(name, e.to_string()))?;
        out.push(Pruned {
            node: name.clone(),
            weights: total,
            zeros,
        });
    }
    Ok((out, left))
}
