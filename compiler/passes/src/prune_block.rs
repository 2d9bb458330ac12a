//! `prune block`: block sparsity. Each selected layer's weight matrix (outputs × inputs, a
//! Conv's inputs being `in_channels × kh × kw` in that order) is tiled by blocks of
//! `outputs` consecutive outputs × `inputs` consecutive inputs (4×1, 1×4, 8×1…), and
//! `floor(amount · blocks)` whole blocks become zero, chosen by `by` — the smallest sum of
//! squares, or OBS from the layer's calibration XᵀX with compensating updates (summed
//! saliency per block) — and optionally refit by least squares (`refit: on`), as for
//! `prune unstructured` (`crate::prune`).
//!
//! Keeps: the graph's structure and every shape; only weight values change. Exactly
//! `floor(amount · blocks)` blocks of each layer are zero afterwards.
//!
//! Refuses (a compile-time error at the rule): a layer the blocks do not tile. Leaves alone
//! (reported): layers without a row-wise input (grouped Conv, Gemm with transA), layers
//! without f32 constant weights, layers merged away.
//!
//! Stores: `f32 blocks(RxC)` (a bit per block, the kept blocks' values contiguous) when no
//! larger than bitmask or CSR; else the smallest of those.

use mcc_ir::{Graph, StepId};
use mcc_plan::plan::{Severity, Step};
use mcc_plan::registry::{
    Applies, Default, ParamIssue, ParamType, Params, RATIO, Status, Sweep, VariantSchema, num, p,
};
use mcc_plan::{Infeasible, LeftAlone, Outcome, StatRequest, Stats, Technique, TechniqueError};

use crate::prune::{self, Settings, Skip};
use crate::reconstruct::Pattern;

/// `prune block`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "block",
    summary: "zero whole blocks of outputs × inputs (4×1, 1×4, 8×1)",
    params: &[
        p(
            "amount",
            RATIO,
            Default::Required,
            "fraction of each layer's blocks set to zero",
        ),
        p(
            "outputs",
            ParamType::Int { min: 1, max: 16 },
            Default::Num(4.0),
            "consecutive outputs per block",
        ),
        p(
            "inputs",
            ParamType::Int { min: 1, max: 16 },
            Default::Num(1.0),
            "consecutive inputs per block (a divisor of 128)",
        ),
        prune::BY,
        prune::REFIT,
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&PruneBlock),
    check_params,
    sweep: Some(Sweep {
        param: "amount",
        values: &[0.3, 0.5, 0.7, 0.8, 0.9],
    }),
};

/// A block holds at least two weights, its inputs divide OBS's column blocks, and the amount
/// is a fraction below one.
fn check_params(params: &Params) -> Vec<ParamIssue> {
    let mut out = vec![];
    let (o, i) = (num(params, "outputs"), num(params, "inputs"));
    if o.unwrap_or(4.0) * i.unwrap_or(1.0) < 2.0 {
        out.push(ParamIssue {
            severity: Severity::Error,
            param: "outputs",
            message: "a 1×1 block is a single weight".into(),
            label: "a block needs at least two weights".into(),
            help: Some("use `prune unstructured` for single weights, or a 4×1 block".into()),
        });
    }
    if let Some(i) = i.filter(|i| 128 % (*i as usize).max(1) != 0) {
        out.push(ParamIssue {
            severity: Severity::Error,
            param: "inputs",
            message: format!("{i} inputs per block do not divide 128"),
            label: "use 1, 2, 4, 8 or 16".into(),
            help: None,
        });
    }
    match num(params, "amount") {
        Some(a) if a >= 1.0 => out.push(ParamIssue {
            severity: Severity::Error,
            param: "amount",
            message: "pruning every block would remove the layers".into(),
            label: "amount must be below 100%".into(),
            help: None,
        }),
        _ => {}
    }
    out
}

/// Block pruning as a technique.
pub struct PruneBlock;

fn pattern(step: &Step) -> Pattern {
    let int = |name, default: f64| num(&step.params, name).unwrap_or(default) as usize;
    Pattern::Block {
        amount: num(&step.params, "amount").unwrap_or(0.0),
        r: int("outputs", 4.0).max(1),
        c: int("inputs", 1.0).max(1),
    }
}

impl Technique for PruneBlock {
    fn needs(&self, _graph: &Graph, step: &Step) -> Vec<StatRequest> {
        prune::needs(step, Settings::of(step))
    }

    fn collects_upfront(&self) -> bool {
        false
    }

    fn infeasible(&self, graph: &Graph, step: &Step) -> Vec<Infeasible> {
        let pat = pattern(step);
        let Pattern::Block { r, c, .. } = pat else {
            return vec![];
        };
        step.nodes
            .iter()
            .filter_map(|name| match prune::layer(graph, name, Some(pat)) {
                Err(Skip::Left(l)) if l.reason == mcc_plan::Reason::ShapeMismatch => {
                    Some(Infeasible {
                        node: name.clone(),
                        message: l.detail,
                        help: Some(format!(
                            "pick a block of {r}×{c} (outputs × inputs) that divides the layer's \
                             outputs and inputs, or leave this layer out of the rule"
                        )),
                    })
                }
                _ => None,
            })
            .collect()
    }

    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        prune::check(graph, step, Some(pattern(step)))
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let pattern = pattern(step);
        prune::rewrite(graph, step, id, stats, Settings::of(step), &|_| pattern)
    }
}
