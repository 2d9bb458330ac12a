//! Per-layer attribution (`mcc build --attribution`), the regains a missed budget names, and
//! the accuracy-against-size curve over a recipe's stages: what each compressed layer costs,
//! measured on compiled code.
//!
//! A *lossy step* is a step of the plan that changed a layer's computation in the build and
//! merged nothing; the merges, exact rewrites, always run as planned. The *attributed layers*
//! are the layers a lossy step both selected and changed. For such a layer `L` two variants
//! of the plan are built, the lossy steps' layer lists edited:
//!
//! - **alone**: the lossy steps apply to `L` only (if they selected it) — the original with
//!   only `L` compressed, its cost on its own;
//! - **restored**: the lossy steps apply to every layer they selected except `L` — what
//!   restoring `L` alone would regain.
//!
//! A step whose treatment of a layer depends on the others it selects (one magnitude
//! threshold over all of them) is first split into one step a layer, each pinned to what the
//! whole step would give it ([`mcc_plan::Technique::per_layer`], decided on the model as the
//! edited plan reaches it). A step that changes layers it does not select (filter pruning's
//! channel groups) changes them in both variants too: the row says so.
//!
//! Both are measured like the build's own numbers: top-1 accuracy on the labelled evaluation
//! set, else (or for a missed `output_error` budget) the relative L2 error of the outputs
//! against the original's on the evaluation, else calibration, data. The suggestion restores
//! the layers that regain most, one more at a time (at most [`MAX_RESTORED`]), each set
//! built and measured, until half the loss is regained (for a missed budget: until the bound
//! holds).
//!
//! **Invariant:** every number here is a measurement of a built and compiled model (or the
//! reference evaluator's where a model does not compile), on the same samples as the
//! build's; nothing is estimated, and no timing enters (the same inputs give the same report
//! bytes).

use std::collections::BTreeSet;

use mcc_ir::{Graph, Tensor};

use crate::Error;
use crate::build::{Data, Ran, run_plan_as};
use crate::recipe::Session;
use crate::report::{AttributedLayer, Attribution, Restore, RuleRef, StagePoint, Stages};
use crate::sensitivity::{Meter, Metric};

/// The suggestion restores at most this many layers.
pub const MAX_RESTORED: usize = 5;
/// A missed budget's diagnostic names this many layers.
pub const REGAINS_SHOWN: usize = 3;
/// Without an attribution, a missed budget's diagnostic measures restoring this many layers.
pub const REGAINS_TRIED: usize = 8;

/// The build's own metric, on its own samples, for the measurements here.
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
    /// The measure of the build of `s` on `data`: top-1 accuracy when the evaluation set has
    /// labels (unless `metric` asks for the output error), else output error. `None` without
    /// data to measure on.
    pub fn new(
        s: &Session,
        data: &'d Data,
        threads: usize,
        metric: Option<Metric>,
    ) -> Result<Option<Measure<'d>>, Error> {
        let x = match (&data.evaluation, &data.calibration) {
            (Some(x), _) | (None, Some(x)) => x,
            (None, None) => return Ok(None),
        };
        let labels = data
            .labels
            .as_deref()
            .filter(|_| data.evaluation.is_some() && metric != Some(Metric::OutputError));
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

    /// The metric and stored bytes of `s`'s plan run with every lossy step's layers filtered
    /// by `keep`.
    fn restricted(
        &self,
        s: &Session,
        lossy: &BTreeSet<usize>,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<(f64, u64), Error> {
        let g = run_plan_as(s, self.calibration, self.threads, |index, step, graph| {
            if !lossy.contains(&index) {
                return vec![step.clone()];
            }
            let steps = s
                .registry
                .implementation(step.technique, step.variant)
                .and_then(|t| t.per_layer(graph, step))
                .unwrap_or_else(|| vec![step.clone()]);
            steps
                .into_iter()
                .filter_map(|mut st| {
                    st.nodes.retain(|n| keep(n));
                    (!st.nodes.is_empty()).then_some(st)
                })
                .collect()
        })?;
        Ok((self.of(&g)?, crate::build::totals(&g).2))
    }

    /// The metric and stored bytes with every lossy step applied to all its layers except
    /// `layers`.
    fn restoring(
        &self,
        s: &Session,
        lossy: &BTreeSet<usize>,
        layers: &[String],
    ) -> Result<(f64, u64), Error> {
        self.restricted(s, lossy, &|n: &str| !layers.iter().any(|l| l == n))
    }
}

/// The 1-based plan indices of the lossy steps.
fn lossy_steps(ran: &[Ran<'_>]) -> BTreeSet<usize> {
    ran.iter()
        .filter(|r| r.outcome.merged.is_empty() && !r.outcome.changed.is_empty())
        .map(|r| r.id.0 as usize)
        .collect()
}

/// The attributed layers, in first-change order: each with the rules that selected and
/// changed it, and a note when one of them also changed layers it did not select.
fn attributed(s: &Session, ran: &[Ran<'_>]) -> Vec<(String, Vec<RuleRef>, Option<String>)> {
    let lossy = lossy_steps(ran);
    let mut out: Vec<(String, Vec<RuleRef>, Option<String>)> = vec![];
    for r in ran.iter().filter(|r| lossy.contains(&(r.id.0 as usize))) {
        let rule = RuleRef {
            technique: format!("{} {}", r.step.technique, r.step.variant),
            file: s.checked.files[r.step.origin.file].name.clone(),
            line: r.step.origin.line,
        };
        let coupled = r.outcome.changed.iter().any(|n| !r.step.nodes.contains(n));
        let note = coupled.then(|| {
            format!(
                "`{}` ({}:{}) also changes layers it does not select (those coupled to the \
                 ones it does, like a channel group): they change with this layer in both \
                 numbers",
                rule.technique, rule.file, rule.line
            )
        });
        for n in r
            .outcome
            .changed
            .iter()
            .filter(|n| r.step.nodes.contains(n))
        {
            match out.iter_mut().find(|(l, _, _)| l == n) {
                Some((_, rules, old)) => {
                    if !rules.contains(&rule) {
                        rules.push(rule.clone());
                    }
                    if old.is_none() {
                        old.clone_from(&note);
                    }
                }
                None => out.push((n.clone(), vec![rule.clone()], note.clone())),
            }
        }
    }
    out
}

/// Restores `candidates` (best first) one more at a time, each set built and measured, until
/// `enough` says the metric suffices; the last set built when none does. `None` without
/// candidates, or when the first set cannot be built.
fn suggest(
    s: &Session,
    m: &Measure<'_>,
    lossy: &BTreeSet<usize>,
    candidates: &[String],
    enough: &dyn Fn(f64) -> bool,
) -> Option<Restore> {
    let mut best = None;
    for k in 1..=candidates.len().min(MAX_RESTORED) {
        let layers = candidates[..k].to_vec();
        // A set that cannot be built (a group split) ends the search at the last that could.
        let Ok((metric, bytes)) = m.restoring(s, lossy, &layers) else {
            break;
        };
        let done = enough(metric);
        best = Some(Restore {
            layers,
            metric,
            bytes,
            enough: done,
        });
        if done {
            break;
        }
    }
    best
}

/// Sorts by `key`, largest first; NaN and missing last, ties by name.
fn by_gain<T>(v: &mut [T], key: impl Fn(&T) -> Option<f64>, name: impl Fn(&T) -> &str) {
    let k = |x: &T| key(x).filter(|g| !g.is_nan()).unwrap_or(f64::NEG_INFINITY);
    v.sort_by(|a, b| k(b).total_cmp(&k(a)).then_with(|| name(a).cmp(name(b))));
}

/// Attributes the build's loss to its layers. `original`, `compressed`: the metric of the
/// original model and of the build, on the same samples.
pub fn attribute(
    s: &Session,
    ran: &[Ran<'_>],
    m: &Measure<'_>,
    original: f64,
    compressed: f64,
) -> Result<Attribution, Error> {
    let lossy = lossy_steps(ran);
    let layers = attributed(s, ran);
    let bar = crate::progress::bar(2 * layers.len() as u64, "attributing");
    let mut rows = vec![];
    for (layer, rules, mut note) in layers {
        // An edited plan can be infeasible (a dependency group split): the row says why
        // instead of failing the build.
        let mut measure = |keep: &dyn Fn(&str) -> bool| match m.restricted(s, &lossy, keep) {
            Ok(v) => Some(v),
            Err(e) => {
                note = Some(format!("could not be built: {e}"));
                None
            }
        };
        let alone = measure(&|n: &str| n == layer).map(|v| v.0);
        bar.inc(1);
        let restored = measure(&|n: &str| n != layer);
        bar.inc(1);
        rows.push(AttributedLayer {
            layer,
            rules,
            alone,
            restored: restored.map(|v| v.0),
            restored_bytes: restored.map(|v| v.1),
            note,
        });
    }
    bar.finish_and_clear();
    let regain = |r: &AttributedLayer| r.restored.map(|v| m.metric.gain(compressed, v));
    by_gain(&mut rows, regain, |r| &r.layer);
    let loss = m.metric.gain(compressed, original);
    let candidates: Vec<String> = rows
        .iter()
        .filter(|r| regain(r).is_some_and(|g| g > 0.0))
        .map(|r| r.layer.clone())
        .collect();
    let restore = if loss > 0.0 {
        suggest(s, m, &lossy, &candidates, &|v| {
            m.metric.gain(compressed, v) >= loss / 2.0
        })
    } else {
        None
    };
    Ok(Attribution {
        metric: m.metric,
        samples: m.samples,
        original,
        compressed,
        layers: rows,
        restore,
    })
}

/// What restoring single layers would regain, for a missed accuracy or output-error budget:
/// the layers that regain most (at most [`REGAINS_SHOWN`], only those that regain
/// something) and the fewest of them that, restored together, meet the budget.
#[derive(Clone, Debug)]
pub struct Regains {
    /// What the numbers are.
    pub metric: Metric,
    /// The compressed model's metric.
    pub compressed: f64,
    /// (layer, metric with it restored, stored bytes then), the largest regain first.
    pub layers: Vec<(String, f64, u64)>,
    /// The layers to restore together, and what that measured.
    pub together: Option<Restore>,
}

/// [`Regains`] for a missed budget of `m`'s metric whose bound `holds`: from the attribution
/// when the build made one in that metric, else measured for up to [`REGAINS_TRIED`]
/// attributed layers — those whose outputs moved most (calibration data) first.
pub fn regains(
    s: &Session,
    ran: &[Ran<'_>],
    m: &Measure<'_>,
    report: &crate::report::Report,
    compressed: f64,
    holds: &dyn Fn(f64) -> bool,
) -> Regains {
    let lossy = lossy_steps(ran);
    let mut measured: Vec<(String, f64, u64)> = match &report.attribution {
        Some(a) if a.metric == m.metric => a
            .layers
            .iter()
            .filter_map(|r| Some((r.layer.clone(), r.restored?, r.restored_bytes?)))
            .collect(),
        _ => {
            let layers: Vec<String> = attributed(s, ran).into_iter().map(|l| l.0).collect();
            let mut names: Vec<String> = crate::report::costliest_layers(report, usize::MAX)
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| layers.contains(n))
                .collect();
            for n in layers {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            names.truncate(REGAINS_TRIED);
            let bar = crate::progress::bar(names.len() as u64, "measuring what restoring regains");
            let mut out = vec![];
            for n in names {
                // A layer whose restoring cannot be built (a group split) is left out.
                if let Ok((v, bytes)) = m.restoring(s, &lossy, std::slice::from_ref(&n)) {
                    out.push((n, v, bytes));
                }
                bar.inc(1);
            }
            bar.finish_and_clear();
            out
        }
    };
    measured.retain(|(_, v, _)| m.metric.gain(compressed, *v) > 0.0);
    by_gain(
        &mut measured,
        |x| Some(m.metric.gain(compressed, x.1)),
        |x| &x.0,
    );
    let candidates: Vec<String> = measured.iter().map(|x| x.0.clone()).collect();
    let together = suggest(s, m, &lossy, &candidates, holds);
    measured.truncate(REGAINS_SHOWN);
    Regains {
        metric: m.metric,
        compressed,
        layers: measured,
        together,
    }
}

/// The model's stored bytes, MACs and metric after each stage of a recipe of several stages
/// (the first point is the original; the last is the build's result, whose metric the caller
/// gives). `ends`: the graph after each stage but the last. A stage whose steps were all
/// exact (merges) is not measured: its point has no metric.
pub fn stages(
    s: &Session,
    ran: &[Ran<'_>],
    m: &Measure<'_>,
    ends: &[(String, Graph)],
    last: (&str, &Graph),
    original: f64,
    compressed: f64,
) -> Result<Stages, Error> {
    let lossy = lossy_steps(ran);
    let point = |stage: &str, g: &Graph, metric: Option<f64>| StagePoint {
        stage: stage.to_string(),
        bytes: crate::build::totals(g).2,
        macs: crate::inspect::table(g).macs,
        metric,
    };
    let mut points = vec![point("original", &s.model.graph, Some(original))];
    for (stage, g) in ends {
        let measured = ran
            .iter()
            .any(|r| r.stage == *stage && lossy.contains(&(r.id.0 as usize)));
        let metric = if measured { Some(m.of(g)?) } else { None };
        points.push(point(stage, g, metric));
    }
    points.push(point(last.0, last.1, Some(compressed)));
    Ok(Stages {
        metric: m.metric,
        points,
    })
}
