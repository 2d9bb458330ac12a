//! `prune nm`: N:M structured sparsity. In each selected layer, of every `m` consecutive
//! weights along the reduction (a Gemm's or MatMul's input features, a Conv's
//! `in_channels × kh × kw` in that order) `n` are kept and `m − n` set to zero, chosen by
//! `by` — the smallest |w|, or OBS from the layer's calibration XᵀX with compensating updates
//! — and optionally refit by least squares (`refit: on`), as for `prune unstructured`
//! (`crate::prune`).
//!
//! Keeps: the graph's structure and every shape; only weight values change. Every group of
//! `m` holds at most `n` nonzeros afterwards (exactly `m − n` weights are set to zero).
//!
//! Leaves alone (reported): layers whose reduction length is not a multiple of `m` (a
//! one-channel 5×5 stem: 25), layers without a row-wise input (grouped Conv, Gemm with
//! transA), layers without f32 constant weights, layers merged away.
//!
//! Stores: `f32 nm(n:m)` (values and ⌈log2 m⌉-bit positions) when the weights are laid out
//! output-major (Conv, Gemm with transB) and that is no larger than bitmask or CSR; else
//! the smallest of those.

use mcc_ir::{Graph, StepId};
use mcc_plan::plan::{Severity, Step};
use mcc_plan::registry::{
    Applies, Default, ParamIssue, ParamType, Params, Status, VariantSchema, num, p,
};
use mcc_plan::{LeftAlone, Outcome, StatRequest, Stats, Technique, TechniqueError};

use crate::prune::{self, Settings};
use crate::reconstruct::Pattern;

/// `prune nm`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "nm",
    summary: "N:M structured sparsity: keep n of every m consecutive weights",
    params: &[
        p(
            "n",
            ParamType::Int { min: 1, max: 16 },
            Default::Required,
            "weights kept per group",
        ),
        p(
            "m",
            ParamType::Int { min: 2, max: 16 },
            Default::Required,
            "group size",
        ),
        prune::BY,
        prune::REFIT,
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&PruneNm),
    check_params,
    sweep: None,
};

/// `n` must be below `m`.
fn check_params(params: &Params) -> Vec<ParamIssue> {
    match (num(params, "n"), num(params, "m")) {
        (Some(n), Some(m)) if n >= m => vec![ParamIssue {
            severity: Severity::Error,
            param: "n",
            message: format!(
                "N:M sparsity keeps n of every m weights, so n must be below m ({n} ≥ {m})"
            ),
            label: "n must be below m".into(),
            help: Some(format!("{n}:{m} would keep every weight; 2:4 keeps half")),
        }],
        _ => vec![],
    }
}

/// N:M pruning as a technique.
pub struct PruneNm;

fn pattern(step: &Step) -> Pattern {
    let int = |name| num(&step.params, name).unwrap_or(0.0) as usize;
    Pattern::NM {
        n: int("n"),
        m: int("m").max(1),
    }
}

impl Technique for PruneNm {
    fn needs(&self, _graph: &Graph, step: &Step) -> Vec<StatRequest> {
        prune::needs(step, Settings::of(step))
    }

    fn collects_upfront(&self) -> bool {
        false
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
