//! `prune unstructured`: remove single weights. In each selected layer, `floor(amount · n)`
//! of its `n` weights become zero, chosen by a criterion (`by`):
//!
//! - `magnitude` (default, data-free): the smallest |w| (Han et al., "Learning both weights
//!   and connections");
//! - `obs`: Optimal Brain Surgeon from the layer's calibration XᵀX, with compensating updates
//!   of the weights kept (OBC/SparseGPT's column-by-column solver; `reconstruct::obs`).
//!
//! With `scope: global`, `amount` is of all the step's layers together: one magnitude threshold
//! over them decides how many weights each layer loses (Han et al. prune by one threshold per
//! layer; a global one lets large layers give more), and `by` then chooses which within each.
//!
//! `refit: on` then sets the kept weights of each output to the least-squares fit of the
//! original layer's outputs on the calibration data (`reconstruct::refit`). With `obs` or
//! `refit`, layers are pruned one at a time in graph order and each one's XᵀX is collected on
//! the model as the layers before it left it, so later layers repair what earlier ones broke.
//!
//! Keeps: the graph's structure and every shape; only weight values change. Exactly
//! `floor(amount · n)` weights of each layer are zero afterwards (with `scope: global`,
//! `floor(amount · total)` over the step's layers) (ties broken by position, so
//! the result is deterministic). A weight tensor shared with a layer that is not selected is
//! copied first, so that layer is unchanged.
//!
//! Leaves alone: biases, layers whose weights are not an f32 constant, layers an earlier step
//! merged away, and — with `obs` or `refit` — layers without a row-wise input to reconstruct
//! against (grouped convolutions, Gemm with transA) (all reported).
//!
//! Stores: the pruned weights in their smallest f32 form — dense, bitmask or CSR (at 78%
//! zeros a bitmask takes about a quarter of the dense bytes).

use mcc_ir::{Graph, StepId, Tensor};
use mcc_plan::plan::ParamValue;
use mcc_plan::plan::{Severity, Step};
use mcc_plan::registry::{
    Applies, Default, ParamIssue, ParamType, Params, RATIO, Status, Sweep, VariantSchema, num, p,
};
use mcc_plan::{LeftAlone, Outcome, StatRequest, Stats, Technique, TechniqueError};

use crate::PassError;
use crate::prune::{self, Settings, Skip};
use crate::reconstruct::{self, Pattern, View};

/// `prune unstructured`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "unstructured",
    summary: "zero single weights of each layer: the smallest, or by OBS",
    params: &[
        p(
            "amount",
            RATIO,
            Default::Required,
            "fraction of each layer's weights set to zero",
        ),
        prune::BY,
        prune::REFIT,
        p(
            "scope",
            ParamType::Choice(&["layer", "global"]),
            Default::Word("layer"),
            "`amount` of each layer, or of all the rule's layers together (one magnitude threshold)",
        ),
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&PruneUnstructured),
    check_params,
    sweep: Some(Sweep {
        param: "amount",
        values: &[0.3, 0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.95],
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
/// `refit: on`, layer by layer on calibration statistics (`crate::prune`).
pub struct PruneUnstructured;

fn pattern(step: &Step) -> Pattern {
    Pattern::Unstructured {
        amount: num(&step.params, "amount").unwrap_or(0.0),
    }
}

/// Each layer's amount: the step's, or with `scope: global` the share of the layer's weights
/// among the `floor(amount · total)` smallest |w| of all the step's layers (ties by layer
/// order, then position), so one magnitude threshold prunes them all.
fn amounts(graph: &Graph, step: &Step) -> std::collections::HashMap<String, f64> {
    let amount = num(&step.params, "amount").unwrap_or(0.0);
    let global = matches!(step.param("scope"), Some(ParamValue::Word(w)) if w == "global");
    if !global {
        // Every layer its own amount: nothing to read (layers that cannot be pruned are left
        // alone where they are pruned).
        return step.nodes.iter().map(|n| (n.clone(), amount)).collect();
    }
    let mut weights: Vec<(String, Vec<f64>)> = vec![];
    for name in &step.nodes {
        let Ok(l) = prune::layer(graph, name, None) else {
            continue;
        };
        let Some(rows) = graph
            .const_data(l.weights)
            .and_then(|t| reconstruct::to_rows(t, View::Direct))
        else {
            continue;
        };
        weights.push((name.clone(), rows.data));
    }
    let mut all: Vec<(f64, usize, usize)> = weights
        .iter()
        .enumerate()
        .flat_map(|(l, (_, w))| w.iter().enumerate().map(move |(i, v)| (v.abs(), l, i)))
        .collect();
    let quota = ((amount * all.len() as f64).floor() as usize).min(all.len());
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut count = vec![0usize; weights.len()];
    for &(_, l, _) in &all[..quota] {
        count[l] += 1;
    }
    weights
        .into_iter()
        .zip(count)
        // Half a weight over the count, so `floor(amount · n)` gives the count back exactly.
        .map(|((n, w), c)| {
            (
                n,
                if c == 0 {
                    0.0
                } else {
                    (c as f64 + 0.5) / w.len().max(1) as f64
                },
            )
        })
        .collect()
}

impl Technique for PruneUnstructured {
    fn needs(&self, _graph: &Graph, step: &Step) -> Vec<StatRequest> {
        prune::needs(step, Settings::of(step))
    }

    fn collects_upfront(&self) -> bool {
        false
    }

    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        // Data-free magnitude pruning takes any f32 constant; the data-driven criteria need
        // the weights as rows × k.
        let s = Settings::of(step);
        prune::check(graph, step, s.uses_data().then(|| pattern(step)))
    }

    /// With `scope: global`, each layer at the amount the one threshold gives it.
    fn per_layer(&self, graph: &Graph, step: &Step) -> Option<Vec<Step>> {
        if !matches!(step.param("scope"), Some(ParamValue::Word(w)) if w == "global") {
            return None;
        }
        let amounts = amounts(graph, step);
        Some(
            step.nodes
                .iter()
                .map(|n| {
                    let mut one = step.clone();
                    one.nodes = vec![n.clone()];
                    one.set_num("amount", amounts.get(n).copied().unwrap_or(0.0));
                    one.set("scope", ParamValue::Word("layer".into()));
                    one
                })
                .collect(),
        )
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let s = Settings::of(step);
        // Decided on the weights as they are before any layer of the step changes.
        let amounts = amounts(graph, step);
        let of = |name: &str| amounts.get(name).copied().unwrap_or(0.0);
        if !s.uses_data() {
            let (pruned, left_alone) = run(graph, &step.nodes, &of, id)?;
            return Ok(Outcome {
                changed: pruned.into_iter().map(|p| p.node).collect(),
                left_alone,
                ..Outcome::default()
            });
        }
        prune::rewrite(graph, step, id, stats, s, &|name| Pattern::Unstructured {
            amount: of(name),
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

/// Prunes `amount(node)` of the weights of each named node; returns what it pruned and the
/// layers it left alone (gone — an earlier step merged them into another layer — or without
/// f32 constant weights).
pub fn run(
    graph: &mut Graph,
    nodes: &[String],
    amount: &dyn Fn(&str) -> f64,
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
    for name in nodes {
        let l = match prune::layer(graph, name, None) {
            Ok(l) => l,
            Err(Skip::Left(l)) => {
                left.push(l);
                continue;
            }
            Err(Skip::Fail(message)) => return Err(fail(name, message)),
        };
        let Some(t) = graph.const_data(l.weights) else {
            return Err(fail(name, "its weights are not an f32 constant".into()));
        };
        let (Some(data), Some(rows)) = (t.as_f32(), reconstruct::to_rows(t, View::Direct)) else {
            return Err(fail(name, "its weights are not an f32 constant".into()));
        };
        let pattern = Pattern::Unstructured {
            amount: amount(name),
        };
        let mask = reconstruct::magnitude_mask(&rows, pattern);
        let mut pruned = data.clone();
        let total = pruned.len();
        // Both iterate in row-major order.
        for (x, &gone) in pruned.iter_mut().zip(&mask) {
            if gone {
                *x = 0.0;
            }
        }
        let zeros = pruned.iter().filter(|&&x| x == 0.0).count();
        prune::replace_weights(
            graph,
            l.node,
            l.weights,
            Tensor::F32(pruned),
            None,
            nodes,
            step,
        )
        .map_err(|e| fail(name, e.to_string()))?;
        out.push(Pruned {
            node: name.clone(),
            weights: total,
            zeros,
        });
    }
    Ok((out, left))
}
