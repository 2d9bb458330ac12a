//! `mcc sensitivity`: for every layer a sweepable rule selects, the model's metric when only
//! that layer is compressed — at the rule's setting and over the variant's sweep — measured on
//! compiled code. The allocation of per-layer ratios and bit widths under a budget reads it.
//!
//! "Only that layer": the plan runs as written, except that every step whose variant has a
//! sweep ([`mcc_plan::registry::Sweep`]) applies to no layer, and the step under study applies
//! to its one layer with the swept value. Exact steps (the merges) run as planned.
//!
//! The metric is top-1 accuracy on the labelled evaluation set; without labels, the relative
//! L2 error of the model's outputs against the original's on the calibration (else
//! evaluation) data. A layer that rules of two stages select gets a row per rule, each
//! measured with the other switched off.

use std::time::Instant;

use mcc_ir::{Graph, Tensor};
use mcc_plan::plan::ParamValue;
use serde::Serialize;

use crate::Error;
use crate::build::{Data, load_data, run_plan_with};
use crate::measure::{Agreement, Compiled, top1_hits};
use crate::recipe::Session;
use crate::report::Engine;

/// What is measured.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Top-1 accuracy on the evaluation set (higher is better).
    Accuracy,
    /// Relative L2 error of the outputs against the original's (lower is better).
    OutputError,
}

impl Metric {
    /// How much better `to` is than `from` (accuracy: higher is better; error: lower), in
    /// the metric's units; NaN when either is.
    pub fn gain(self, from: f64, to: f64) -> f64 {
        match self {
            Metric::Accuracy => to - from,
            Metric::OutputError => from - to,
        }
    }

    /// A value as people read it: `97.30%`, `1.234e-2`.
    pub fn show(self, v: f64) -> String {
        match self {
            _ if v.is_nan() => "NaN".into(),
            Metric::Accuracy => format!("{:.2}%", v * 100.0),
            Metric::OutputError if v == 0.0 => "0".into(),
            Metric::OutputError => format!("{v:.3e}"),
        }
    }

    /// Going from `from` to `to`, as people read it: `+0.70 points`, `error 3.100e-2 →
    /// 1.200e-2`.
    pub fn change(self, from: f64, to: f64) -> String {
        match self {
            Metric::Accuracy => format!("{} points", signed_points(to - from)),
            Metric::OutputError => format!("error {} → {}", self.show(from), self.show(to)),
        }
    }
}

/// A change of accuracy (a fraction) in points, signed: `+0.70`, `−1.20`, `±0.00`; NaN and
/// infinities named.
pub fn signed_points(d: f64) -> String {
    let p = d * 100.0;
    if p.is_nan() {
        "NaN".into()
    } else if p.is_infinite() {
        if p > 0.0 { "inf" } else { "-inf" }.into()
    } else if p.abs() < 0.005 {
        "±0.00".into()
    } else if p < 0.0 {
        format!("−{:.2}", -p)
    } else {
        format!("+{p:.2}")
    }
}

/// The accuracy lost from `before` to `after` (fractions). Both are counts over the same
/// samples, so the drop is a multiple of 1/n; rounding off the subtraction's last bits keeps a
/// drop of exactly a bound (97.2% → 96.2% against `<= 1%`) from failing on 1e-17.
pub fn accuracy_drop(before: f64, after: f64) -> f64 {
    ((before - after) * 1e12).round() / 1e12
}

/// One measurement.
#[derive(Copy, Clone, Debug, Serialize)]
pub struct Point {
    /// The swept parameter's value.
    pub value: f64,
    /// The metric with only this layer compressed at that value.
    pub metric: f64,
}

/// One layer of one step.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The layer.
    pub layer: String,
    /// `technique variant`.
    pub technique: String,
    /// The recipe line of the rule.
    pub recipe_line: usize,
    /// The swept parameter.
    pub param: String,
    /// Whether it is a ratio (shown as a percentage).
    pub ratio: bool,
    /// At the rule's own setting.
    pub setting: Point,
    /// Over the sweep.
    pub sweep: Vec<Point>,
}

/// The analysis.
#[derive(Clone, Debug, Serialize)]
pub struct Sensitivity {
    /// What the numbers are.
    pub metric: Metric,
    /// The metric of the model with no swept step applied (the recipe's other steps only:
    /// merges, and steps that are not swept).
    pub baseline: f64,
    /// The original model's metric (accuracy; 0 for output error).
    pub original: f64,
    /// Samples each measurement used.
    pub samples: usize,
    /// What ran the model.
    pub engine: Engine,
    /// One row per layer and step.
    pub rows: Vec<Row>,
    /// Steps that were not swept (exact, or no sweep defined): `technique variant` and line.
    pub not_swept: Vec<String>,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// Runs the plan with sweepable steps restricted: step `only` (if any) to `layer` with `param`
/// set to `value`, the other sweepable steps to nothing. Steps that read statistics get them
/// from `calibration` (collected on the model as each such step finds it, as in a build).
fn apply(
    s: &Session,
    calibration: &Option<Tensor>,
    threads: usize,
    only: Option<(usize, &str, &str, f64)>,
) -> Result<Graph, Error> {
    run_plan_with(s, calibration, threads, |index, step| {
        let sweepable = s
            .registry
            .variant(step.technique, step.variant)
            .is_some_and(|v| v.sweep.is_some());
        let mut step = step.clone();
        if sweepable {
            let (_, layer, param, value) = only.filter(|o| o.0 == index)?;
            step.nodes = vec![layer.to_string()];
            step.set_num(param, value);
        }
        Some(step)
    })
}

/// Measures a model: accuracy with labels, else output error against `reference` outputs.
pub(crate) struct Meter<'a> {
    x: Tensor,
    labels: Option<&'a [i64]>,
    /// Per batch, the original's outputs.
    reference: Vec<Vec<Vec<f32>>>,
    /// Runs every model it measures.
    pool: crate::measure::Pool,
}

impl<'a> Meter<'a> {
    /// A meter on `x`: top-1 accuracy against `labels`, or without them the relative output
    /// error against the original model of `s` (whose outputs it computes once; with
    /// `both`, also when there are labels, for [`Meter::measure_both`]).
    pub(crate) fn new(
        s: &Session,
        x: Tensor,
        labels: Option<&'a [i64]>,
        threads: usize,
        both: bool,
    ) -> Result<Meter<'a>, Error> {
        let mut reference = vec![];
        let pool = crate::measure::pool(threads)?;
        if labels.is_none() || both {
            let original = Compiled::for_data(&s.model.graph, &[], Some(&x))?;
            let mut feed = original.feed(&x, 64, &pool)?;
            while let Some(b) = feed.next_batch()? {
                reference.push(
                    (0..b.model_outputs())
                        .map(|o| b.output(o).to_vec())
                        .collect(),
                );
            }
        }
        Ok(Meter {
            x,
            labels,
            reference,
            pool,
        })
    }

    /// The metric of `graph` (compiled), and what ran it.
    pub(crate) fn measure(&self, graph: &Graph) -> Result<(f64, Engine), Error> {
        let (accuracy, error, engine) = self.run(graph)?;
        Ok((accuracy.unwrap_or(error), engine))
    }

    /// Top-1 accuracy (with labels) and the relative output error (made with `both`).
    pub(crate) fn measure_both(&self, graph: &Graph) -> Result<(Option<f64>, f64), Error> {
        let (accuracy, error, _) = self.run(graph)?;
        Ok((accuracy, error))
    }

    fn run(&self, graph: &Graph) -> Result<(Option<f64>, f64, Engine), Error> {
        let model = Compiled::for_data(graph, &[], Some(&self.x))?;
        let mut right = 0usize;
        let mut agreement = Agreement::default();
        let mut feed = model.feed(&self.x, 64, &self.pool)?;
        let mut batch = 0;
        while let Some(b) = feed.next_batch()? {
            if let Some(labels) = self.labels {
                right += top1_hits(&b, labels);
            }
            if let Some(want) = self.reference.get(batch) {
                for (o, w) in want.iter().enumerate() {
                    agreement.add(b.output(o), w);
                }
            }
            batch += 1;
        }
        let samples = self.x.shape().first().copied().unwrap_or(0).max(1);
        let accuracy = self.labels.map(|_| right as f64 / samples as f64);
        let error = if self.reference.is_empty() {
            0.0
        } else {
            agreement.result().relative_l2
        };
        Ok((accuracy, error, model.engine))
    }
}

/// The analysis of `s`'s plan, on at most `samples` samples (all when `None`).
pub fn run(s: &Session, threads: usize, samples: Option<usize>) -> Result<Sensitivity, Error> {
    let t0 = Instant::now();
    let threads = crate::measure::threads(threads);
    let Data {
        calibration,
        evaluation,
        labels,
    } = load_data(s)?;
    let (metric, x) = match (&evaluation, &labels, &calibration) {
        (Some(x), Some(_), _) => (Metric::Accuracy, x.clone()),
        (_, _, Some(x)) | (Some(x), None, None) => (Metric::OutputError, x.clone()),
        _ => {
            return Err(Error::Usage(
                "sensitivity needs data: `evaluate with \"X.npy\" labels \"Y.npy\"` or `calibrate with \"X.npy\"`".into(),
            ));
        }
    };
    let total = x.shape().first().copied().unwrap_or(0);
    let n = samples.unwrap_or(total).min(total);
    let x = crate::tensor_io::slice_batch(&x, 0, n);
    let labels = labels.as_deref().map(|l| &l[..n.min(l.len())]);
    let meter = Meter::new(
        s,
        x,
        if metric == Metric::Accuracy {
            labels
        } else {
            None
        },
        threads,
        false,
    )?;
    let original = match metric {
        Metric::Accuracy => meter.measure(&s.model.graph)?.0,
        Metric::OutputError => 0.0,
    };
    let (baseline, engine) = meter.measure(&apply(s, &calibration, threads, None)?)?;
    // The work list.
    let mut work = vec![];
    let mut not_swept = vec![];
    let mut index = 0;
    for stage in &s.checked.plan.stages {
        for step in &stage.steps {
            index += 1;
            let sweep = s
                .registry
                .variant(step.technique, step.variant)
                .and_then(|v| v.sweep);
            let Some(sweep) = sweep else {
                not_swept.push(format!(
                    "{} {} (line {})",
                    step.technique, step.variant, step.origin.line
                ));
                continue;
            };
            for layer in &step.nodes {
                work.push((index, step, layer.clone(), sweep));
            }
        }
    }
    let points: usize = work.iter().map(|w| 1 + w.3.values.len()).sum();
    let bar = crate::progress::bar(points as u64, "measuring");
    let mut rows = vec![];
    for (index, step, layer, sweep) in work {
        let setting = match step.param(sweep.param) {
            Some(ParamValue::Num(v)) => *v,
            // `auto`: the allocation chooses it; the sweep's first value stands in.
            Some(ParamValue::Word(_)) => sweep.values.first().copied().unwrap_or(0.0),
            _ => continue,
        };
        let at = |value: f64| -> Result<Point, Error> {
            let g = apply(
                s,
                &calibration,
                threads,
                Some((index, &layer, sweep.param, value)),
            )?;
            let metric = meter.measure(&g)?.0;
            bar.inc(1);
            Ok(Point { value, metric })
        };
        let setting = at(setting)?;
        let sweep_points = sweep
            .values
            .iter()
            .map(|&v| at(v))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(Row {
            layer,
            technique: format!("{} {}", step.technique, step.variant),
            recipe_line: step.origin.line,
            param: sweep.param.to_string(),
            ratio: s
                .registry
                .variant(step.technique, step.variant)
                .and_then(|v| v.params.iter().find(|p| p.name == sweep.param))
                .is_some_and(|p| p.ty == mcc_plan::registry::ParamType::Ratio),
            setting,
            sweep: sweep_points,
        });
    }
    bar.finish_and_clear();
    Ok(Sensitivity {
        metric,
        baseline,
        original,
        samples: n,
        engine,
        rows,
        not_swept,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The table people read.
pub fn table(r: &Sensitivity) -> String {
    let show = |v: f64| match r.metric {
        Metric::Accuracy => format!("{:.2}%", v * 100.0),
        Metric::OutputError => format!("{v:.2e}"),
    };
    let mut out = match r.metric {
        Metric::Accuracy => format!(
            "top-1 accuracy on {} samples with only that layer compressed ({}); original {}, without the swept steps {}\n\n",
            r.samples,
            match r.engine {
                Engine::Compiled => "compiled code",
                Engine::Evaluator => "reference evaluator",
            },
            show(r.original),
            show(r.baseline)
        ),
        Metric::OutputError => format!(
            "relative L2 error of the outputs on {} samples with only that layer compressed; without the swept steps {}\n\n",
            r.samples,
            show(r.baseline)
        ),
    };
    let w = r
        .rows
        .iter()
        .map(|x| x.layer.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let Some(first) = r.rows.first() else {
        out.push_str("no rule with a sweepable technique selects a layer\n");
        return out;
    };
    out.push_str(&format!(
        "{:<w$}  {:<20}  {:>16}",
        "layer", "technique", "setting"
    ));
    // A ratio other than `amount` (filter pruning's `keep`) says what it is a ratio of.
    let value = |v: f64| match (first.ratio, first.param.as_str()) {
        (true, "amount") => format!("{:.0}%", v * 100.0),
        (true, param) => format!("{param}={:.0}%", v * 100.0),
        (false, param) => format!("{param}={v}"),
    };
    // A row's own setting, in its own parameter's terms (rows may sweep different ones).
    let setting = |row: &Row| match (row.ratio, row.param.as_str()) {
        (true, "amount") => format!("{:.0}%", row.setting.value * 100.0),
        (true, param) => format!("{param}={:.0}%", row.setting.value * 100.0),
        (false, param) => format!("{param}={}", row.setting.value),
    };
    for p in &first.sweep {
        out.push_str(&format!("  {:>9}", value(p.value)));
    }
    out.push('\n');
    for row in &r.rows {
        out.push_str(&format!(
            "{:<w$}  {:<20}  {:>16}",
            row.layer,
            row.technique,
            format!("{}: {}", setting(row), show(row.setting.metric))
        ));
        for p in &row.sweep {
            out.push_str(&format!("  {:>9}", show(p.metric)));
        }
        out.push('\n');
    }
    if !r.not_swept.is_empty() {
        out.push_str(&format!(
            "\nnot swept (exact or no sweep): {}\n",
            r.not_swept.join(", ")
        ));
    }
    out.push_str(&format!(
        "\n{} measurements in {:.1} s\n",
        r.rows.iter().map(|x| 1 + x.sweep.len()).sum::<usize>() + 1,
        r.seconds
    ));
    out
}
