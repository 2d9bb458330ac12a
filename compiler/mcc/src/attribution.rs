//! Per-layer attribution (`mcc build --attribution`) and the accuracy-against-size curve over
//! a recipe's stages: what each compressed layer costs, measured on compiled code.
//!
//! A *lossy step* is a step of the plan that changed a layer's computation in the build (its
//! outcome's `changed` list is not empty); the merges, which change nothing the model
//! computes, are not. For a layer `L` the build measures two variants of the plan, each step
//! run as in a build but with the lossy steps' layer lists edited:
//!
//! - **alone**: the lossy steps apply to `L` only (if they selected it), so the model is the
//!   original with only `L` compressed — its cost on its own;
//! - **restored**: the lossy steps apply to every layer they selected except `L` — what
//!   restoring `L` alone would regain.
//!
//! Both are measured like the build's own accuracy: top-1 accuracy on the labelled
//! evaluation set, else the relative L2 error of the outputs against the original's on the
//! evaluation (else calibration) data. The suggestion restores the layers that regain most,
//! one more at a time (at most [`MAX_RESTORED`]), and measures each set, until half of the
//! loss is regained. A step that reads a global statistic over its layers (a global pruning
//! threshold) sees fewer layers in a restricted run: the numbers are those of the plan as
//! edited, which is what a user restoring a layer in the recipe would get.
//!
//! **Invariant:** every number here is a measurement of a compiled model (or the reference
//! evaluator where a model does not compile), on the same samples as the build's own; no
//! number is estimated or interpolated, and no timing enters (the same inputs give the same
//! report bytes).

use std::collections::BTreeSet;

use mcc_ir::{Graph, Tensor};
use mcc_plan::plan::Step;

use crate::Error;
use crate::build::{Data, Ran, run_plan_with};
use crate::recipe::Session;
use crate::report::{AttributedLayer, Attribution, Restore, StagePoint, Stages};
use crate::sensitivity::{Meter, Metric};

/// The suggestion restores at most this many layers.
pub const MAX_RESTORED: usize = 5;

/// What the attribution and stage curves measure: the build's own metric, on its own samples.
pub struct Measure<'d> {
    meter: Meter<'d>,
    /// Accuracy (with labels) or output error.
    pub metric: Metric,
    /// Samples measured.
    pub samples: usize,
    calibration: &'d Option<Tensor>,
    threads: usize,
}

impl<'d> Measure<'d> {
    /// The measure of the build of `s` on `data` (`None` without data to measure on).
    pub fn new(s: &Session, data: &'d Data, threads: usize) -> Result<Option<Measure<'d>>, Error> {
        let (x, labels) = match (&data.evaluation, &data.labels, &data.calibration) {
            (Some(x), Some(l), _) => (x, Some(l.as_slice())),
            (Some(x), None, _) | (None, _, Some(x)) => (x, None),
            (None, _, None) => return Ok(None),
        };
        let metric = if labels.is_some() {
            Metric::Accuracy
        } else {
            Metric::OutputError
        };
        Ok(Some(Measure {
            meter: Meter::new(s, x.clone(), labels, threads, false)?,
            metric,
            samples: x.shape().first().copied().unwrap_or(0),
            calibration: &data.calibration,
            threads,
        }))
    }

    /// The metric of `graph`.
    pub fn of(&self, graph: &Graph) -> Result<f64, Error> {
        Ok(self.meter.measure(graph)?.0)
    }

    /// How much better `a` is than `b` (accuracy: higher is better; error: lower).
    pub fn gain(&self, a: f64, b: f64) -> f64 {
        match self.metric {
            Metric::Accuracy => a - b,
            Metric::OutputError => b - a,
        }
    }

    /// The metric of `s`'s plan run with every lossy step's layers filtered by `keep`.
    fn restricted(
        &self,
        s: &Session,
        lossy: &BTreeSet<usize>,
        keep: impl Fn(&str) -> bool,
    ) -> Result<f64, Error> {
        let g = run_plan_with(s, self.calibration, self.threads, |index, step| {
            restrict(lossy, index, step, &keep)
        })?;
        self.of(&g)
    }

    /// The metric with every lossy step applied to all its layers except `layers`.
    pub fn restoring(&self, s: &Session, ran: &[Ran<'_>], layers: &[String]) -> Result<f64, Error> {
        self.restricted(s, &lossy_steps(ran), |n| !layers.iter().any(|l| l == n))
    }
}

/// `step` (number `index` in plan order) with its layers filtered by `keep` when it is lossy;
/// `None` (skip it) when no layer is left.
fn restrict(
    lossy: &BTreeSet<usize>,
    index: usize,
    step: &Step,
    keep: &impl Fn(&str) -> bool,
) -> Option<Step> {
    let mut step = step.clone();
    if lossy.contains(&index) {
        step.nodes.retain(|n| keep(n));
        if step.nodes.is_empty() {
            return None;
        }
    }
    Some(step)
}

/// The 1-based plan indices of the steps that changed a layer's computation.
fn lossy_steps(ran: &[Ran<'_>]) -> BTreeSet<usize> {
    ran.iter()
        .filter(|r| !r.outcome.changed.is_empty())
        .map(|r| r.id.0 as usize)
        .collect()
}

/// Every layer a lossy step changed, with the recipe lines of the rules that changed it, in
/// first-change order.
fn lossy_layers(ran: &[Ran<'_>]) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = vec![];
    for r in ran {
        for n in &r.outcome.changed {
            let line = r.step.origin.line;
            match out.iter_mut().find(|(l, _)| l == n) {
                Some((_, lines)) if !lines.contains(&line) => lines.push(line),
                Some(_) => {}
                None => out.push((n.clone(), vec![line])),
            }
        }
    }
    out
}

/// Attributes the build's loss to its layers. `compressed`: the build's own metric on the
/// same samples (the plan as written). `original`: the original model's.
pub fn attribute(
    s: &Session,
    ran: &[Ran<'_>],
    m: &Measure<'_>,
    original: f64,
    compressed: f64,
) -> Result<Attribution, Error> {
    let lossy = lossy_steps(ran);
    let layers = lossy_layers(ran);
    let bar = crate::progress::bar(2 * layers.len() as u64, "attributing");
    let mut rows = vec![];
    for (layer, recipe_lines) in layers {
        // A restricted plan can be infeasible (a dependency group split); that layer's row
        // says why instead of failing the build.
        let mut note = None;
        let mut measure = |keep: &dyn Fn(&str) -> bool| match m.restricted(s, &lossy, keep) {
            Ok(v) => Some(v),
            Err(e) => {
                note.get_or_insert_with(|| e.to_string());
                None
            }
        };
        let alone = measure(&|n: &str| n == layer);
        bar.inc(1);
        let restored = measure(&|n: &str| n != layer);
        bar.inc(1);
        rows.push(AttributedLayer {
            layer,
            recipe_lines,
            alone,
            restored,
            note,
        });
    }
    bar.finish_and_clear();
    // Largest regain first; ties (and unmeasured rows, last) by name.
    let regain = |r: &AttributedLayer| r.restored.map(|v| m.gain(v, compressed));
    rows.sort_by(|a, b| {
        let key = |r: &AttributedLayer| regain(r).unwrap_or(f64::NEG_INFINITY);
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.layer.cmp(&b.layer))
    });
    let loss = m.gain(original, compressed);
    let mut restore = None;
    if loss > 0.0 {
        let candidates: Vec<String> = rows
            .iter()
            .filter(|r| regain(r).is_some_and(|g| g > 0.0))
            .map(|r| r.layer.clone())
            .take(MAX_RESTORED)
            .collect();
        for k in 1..=candidates.len() {
            let layers = candidates[..k].to_vec();
            let metric = m.restoring(s, ran, &layers)?;
            let done = m.gain(metric, compressed) >= loss / 2.0;
            restore = Some(Restore { layers, metric });
            if done {
                break;
            }
        }
    }
    Ok(Attribution {
        metric: m.metric,
        samples: m.samples,
        original,
        compressed,
        layers: rows,
        restore,
    })
}

/// The model's stored bytes, MACs and metric after each stage of a recipe of several stages
/// (the first point is the original; the last is the build's result, whose metric the caller
/// gives). `ends`: the graph after each stage but the last.
pub fn stages(
    s: &Session,
    m: &Measure<'_>,
    ends: &[(String, Graph)],
    last: (&str, &Graph),
    original: f64,
    compressed: f64,
) -> Result<Stages, Error> {
    let point = |stage: &str, g: &Graph, metric: f64| StagePoint {
        stage: stage.to_string(),
        bytes: crate::build::totals(g).2,
        macs: crate::inspect::table(g).macs,
        metric,
    };
    let mut points = vec![point("original", &s.model.graph, original)];
    for (stage, g) in ends {
        points.push(point(stage, g, m.of(g)?));
    }
    points.push(point(last.0, last.1, compressed));
    Ok(Stages {
        metric: m.metric,
        points,
    })
}

/// What restoring one layer regains, measured: for the diagnostic of a missed accuracy or
/// output-error budget.
#[derive(Clone, Debug, PartialEq)]
pub struct Regain {
    /// The layer.
    pub layer: String,
    /// What the numbers are.
    pub metric: Metric,
    /// The compressed model's metric.
    pub compressed: f64,
    /// The metric with every layer compressed but this one.
    pub restored: f64,
}

/// The diagnostic names this many layers.
pub const REGAINS_SHOWN: usize = 3;
/// Without an attribution, the diagnostic measures restoring this many layers.
pub const REGAINS_TRIED: usize = 8;

/// What restoring each of the layers that cost most would regain, the largest regain first,
/// at most [`REGAINS_SHOWN`]: from the attribution when the build made one, else measured for
/// up to [`REGAINS_TRIED`] layers — those whose outputs moved most (calibration data) first,
/// then the others in the order they were changed.
pub fn regains(
    s: &Session,
    ran: &[Ran<'_>],
    m: &Measure<'_>,
    report: &crate::report::Report,
    compressed: f64,
) -> Result<Vec<Regain>, Error> {
    let regain = |layer: String, restored: f64| Regain {
        layer,
        metric: m.metric,
        compressed,
        restored,
    };
    let mut out: Vec<Regain> = match &report.attribution {
        Some(a) => a
            .layers
            .iter()
            .filter_map(|r| Some(regain(r.layer.clone(), r.restored?)))
            .take(REGAINS_SHOWN)
            .collect(),
        None => {
            // The layers whose outputs moved most first (a layer's own error does not say
            // what it costs at the output, so several are measured), then the others.
            let mut names: Vec<String> = crate::report::costliest_layers(report, REGAINS_TRIED)
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            for (n, _) in lossy_layers(ran) {
                if names.len() < REGAINS_TRIED && !names.contains(&n) {
                    names.push(n);
                }
            }
            let mut out = vec![];
            for n in names {
                // A layer whose restoring cannot be built (a dependency group split) is
                // left out of the hint.
                if let Ok(v) = m.restoring(s, ran, std::slice::from_ref(&n)) {
                    out.push(regain(n, v));
                }
            }
            out
        }
    };
    out.sort_by(|a, b| {
        m.gain(b.restored, compressed)
            .total_cmp(&m.gain(a.restored, compressed))
            .then_with(|| a.layer.cmp(&b.layer))
    });
    out.truncate(REGAINS_SHOWN);
    Ok(out)
}
