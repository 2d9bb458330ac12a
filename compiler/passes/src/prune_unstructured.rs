//! `prune unstructured`: magnitude pruning. In each selected layer, the `amount` fraction of
//! weights with the smallest absolute value is set to zero (Han et al., "Learning both
//! weights and connections").
//!
//! Keeps: the graph's structure and every shape; only weight values change. Exactly
//! `floor(amount · n)` weights of each layer are zero afterwards (ties in magnitude are
//! broken by position, so the result is deterministic). A weight tensor shared with a
//! layer that is not selected is copied first, so that layer is unchanged.
//!
//! Leaves alone: biases, layers whose weights are not an f32 constant, and layers an earlier
//! step merged away (all reported).
//!
//! Stores: the pruned weights in their smallest f32 form — dense, bitmask or CSR (at 78%
//! zeros a bitmask takes about a quarter of the dense bytes).

use mcc_ir::{Graph, Origin, StepId, Tensor};
use mcc_plan::plan::{Severity, Step};
use mcc_plan::registry::{
    Applies, Default, ParamIssue, Params, RATIO, Status, Sweep, VariantSchema, num, p,
};
use mcc_plan::{LeftAlone, Outcome, Reason, Stats, Technique, TechniqueError};

use crate::PassError;

/// `prune unstructured`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "unstructured",
    summary: "zero the smallest-magnitude weights of each layer",
    params: &[p(
        "amount",
        RATIO,
        Default::Required,
        "fraction of each layer's weights set to zero",
    )],
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

/// Magnitude pruning as a technique: data-free.
pub struct PruneUnstructured;

impl Technique for PruneUnstructured {
    fn check(
        &self,
        _graph: &Graph,
        _step: &Step,
    ) -> Result<Vec<mcc_plan::LeftAlone>, TechniqueError> {
        // Every layer the planner admits (Conv/Gemm/MatMul with constant weights) is pruned.
        Ok(Vec::new())
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        _stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let amount = num(&step.params, "amount").unwrap_or(0.0);
        let (pruned, left_alone) = run(graph, &step.nodes, amount, id)?;
        Ok(Outcome {
            changed: pruned.into_iter().map(|p| p.node).collect(),
            left_alone,
            ..Outcome::default()
        })
    }
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
    let mut leave = |node: &str, reason: Reason, detail: &str| {
        left.push(LeftAlone {
            node: node.to_string(),
            reason,
            detail: detail.to_string(),
        })
    };
    for name in nodes {
        let Some((n, node)) = graph
            .find_node(name)
            .and_then(|n| graph.node(n).map(|x| (n, x)))
        else {
            leave(
                name,
                Reason::MergedAway,
                "an earlier step merged it into another layer",
            );
            continue;
        };
        let Some(w) = node.inputs.get(1).copied().flatten() else {
            leave(name, Reason::MissingOperand, "it has no weight operand");
            continue;
        };
        let Some(data) = graph.const_data(w).and_then(Tensor::as_f32) else {
            leave(
                name,
                Reason::NotConstant,
                "its weights are not an f32 constant",
            );
            continue;
        };
        let mut pruned = data.clone();
        let total = pruned.len();
        let k = ((amount * total as f64).floor() as usize).min(total);
        let mut order: Vec<usize> = (0..total).collect();
        {
            let flat: Vec<f32> = pruned.iter().copied().collect();
            order.sort_by(|&a, &b| flat[a].abs().total_cmp(&flat[b].abs()).then(a.cmp(&b)));
        }
        if let Some(slice) = pruned.as_slice_mut() {
            // `as_slice_mut` is the row-major order `order` indexes (None otherwise).
            for &i in &order[..k] {
                slice[i] = 0.0;
            }
        } else {
            return Err(fail(name, "non-contiguous weights".into()));
        }
        let zeros = pruned.iter().filter(|&&x| x == 0.0).count();
        // Copy-on-write when another (unselected) layer shares this weight tensor.
        let shared = graph
            .users(w)
            .iter()
            .any(|&(u, _)| graph.node(u).is_some_and(|x| !nodes.contains(&x.name)));
        let stored = if shared {
            let base = format!("{}.pruned", graph.value(w).name);
            let fresh = graph.fresh_value_name(&base);
            let nw = graph.add_const(fresh, Tensor::F32(pruned));
            graph
                .set_input(n, 1, Some(nw))
                .map_err(|e| fail(name, e.to_string()))?;
            nw
        } else {
            graph.make_const(w, Tensor::F32(pruned));
            w
        };
        crate::merge::store_smallest(graph, stored);
        if let Some(node) = graph.node_mut(n) {
            node.origin = Origin::Step(step);
        }
        out.push(Pruned {
            node: name.clone(),
            weights: total,
            zeros,
        });
    }
    Ok((out, left))
}
