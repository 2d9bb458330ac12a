//! `auto` parameters: per-layer amounts chosen under the recipe's budget.
//!
//! For every step with a parameter written `auto` (the one its variant sweeps, like `prune
//! unstructured`'s `amount`), each of its layers is measured alone at every value of the
//! variant's sweep — the plan as written, except that the `auto` steps apply only to that
//! layer at that value — on the **calibration** data: top-1 accuracy when the calibration set
//! has labels, else the relative error of the outputs against the original model's. The
//! evaluation set, which reports the accuracy, never chooses. Each measurement also records
//! the model's stored bytes and MACs.
//!
//! The allocation is greedy on those curves: every layer starts untouched, and the move that
//! saves the most of what the budget counts (bytes for `size`, MACs for `flops`, bytes under
//! `accuracy_drop` and `output_error`) per unit of output error added — over every larger
//! setting of every layer; output error because accuracy on a few hundred samples moves in
//! steps — is taken, until a `size` or `flops` bound is met (the last move being, of those that meet
//! it, the one that loses least), or while an `accuracy_drop` or `output_error` bound still
//! holds. The build then runs the plan with each layer at its
//! value and measures it as usual: the budget verdict is the measured one, not the estimate.
//!
//! **Invariant:** the expanded plan is the recipe's plan with each `auto` step replaced by one
//! step per chosen layer, in the layers' order, with its value; nothing else changes, and the
//! same model, data and recipe give the same allocation (no timing enters a decision).

use std::time::Instant;

use mcc_ir::Graph;
use mcc_plan::plan::{BudgetItem, Metric, Step};

use crate::Error;
use crate::build::{load_data, run_plan_with};
use crate::recipe::Session;
use crate::report::{AllocatedLayer, Allocation, CurvePoint, Uniform};
use crate::sensitivity::Meter;

/// A step with an `auto` parameter: its place in the plan, its parameter and sweep values.
struct AutoStep {
    /// 1-based index in plan order.
    index: usize,
    step: Step,
    param: &'static str,
    values: &'static [f64],
}

/// Runs `s`'s plan with every `auto` step applied to `only` = (its index, layer, value), or to
/// nothing; the other steps as written.
fn apply(
    s: &Session,
    calibration: &Option<mcc_ir::Tensor>,
    threads: usize,
    only: Option<(usize, &str, f64)>,
) -> Result<Graph, Error> {
    run_plan_with(s, calibration, threads, |index, step| {
        let mut step = step.clone();
        if let Some(param) = step.auto_param() {
            let (_, layer, value) = only.filter(|o| o.0 == index)?;
            step.nodes = vec![layer.to_string()];
            step.set_num(param, value);
        }
        Some(step)
    })
}

/// Stored bytes of the float constants the model uses, and its MACs per sample.
fn size_and_macs(graph: &Graph) -> (f64, f64) {
    (
        crate::build::totals(graph).2 as f64,
        crate::inspect::table(graph).macs as f64,
    )
}

/// The budget the allocation works under: the first `size` or `flops` bound, else the first
/// `accuracy_drop` or `output_error` bound.
fn budget(s: &Session) -> Option<&BudgetItem> {
    let b = &s.checked.plan.budget;
    b.iter()
        .find(|b| matches!(b.metric, Metric::Size | Metric::Flops))
        .or_else(|| {
            b.iter()
                .find(|b| matches!(b.metric, Metric::AccuracyDrop | Metric::OutputError))
        })
}

/// Chooses every `auto` parameter of `s`: the session with the expanded plan, and what was
/// chosen and why. `None` when the plan has no `auto` parameter.
pub fn resolve(s: &Session, threads: usize) -> Result<Option<(Session, Allocation)>, Error> {
    let t0 = Instant::now();
    let mut autos = vec![];
    let mut index = 0;
    for stage in &s.checked.plan.stages {
        for step in &stage.steps {
            index += 1;
            let Some(param) = step.auto_param() else {
                continue;
            };
            let sweep = s
                .registry
                .variant(step.technique, step.variant)
                .and_then(|v| v.sweep)
                .filter(|sw| sw.param == param)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "`{param}: auto` on `{} {}` has no sweep to choose from (a bug in mcc's check)",
                        step.technique, step.variant
                    ))
                })?;
            autos.push(AutoStep {
                index,
                step: step.clone(),
                param,
                values: sweep.values,
            });
        }
    }
    if autos.is_empty() {
        return Ok(None);
    }
    // Each layer's curve is measured with the other `auto` steps off, so two of them choosing
    // for one layer would count savings that do not add up.
    for (i, a) in autos.iter().enumerate() {
        for b in &autos[i + 1..] {
            if let Some(layer) = a.step.nodes.iter().find(|n| b.step.nodes.contains(n)) {
                return Err(Error::Usage(format!(
                    "`{layer}` has two `auto` parameters (`{} {}` on line {}, `{} {}` on line {}): mcc chooses one per layer; give the other a value",
                    a.step.technique,
                    a.step.variant,
                    a.step.origin.line,
                    b.step.technique,
                    b.step.variant,
                    b.step.origin.line
                )));
            }
        }
    }
    let budget = budget(s).ok_or_else(|| {
        Error::Usage("`auto` needs a size, flops, accuracy_drop or output_error budget".into())
    })?;
    let data = load_data(s)?;
    let Some(x) = data.calibration.clone() else {
        return Err(Error::Usage(
            "`auto` measures each layer on calibration data: add `calibrate with \"x.npy\"`".into(),
        ));
    };
    let labels = s
        .checked
        .plan
        .calibrate
        .as_ref()
        .and_then(|d| d.labels.as_deref())
        .map(|l| crate::tensor_io::read_npy(l).map(|t| t.to_i64_vec()))
        .transpose()?;
    let samples = x.shape().first().copied().unwrap_or(0);
    if let Some(l) = &labels
        && l.len() != samples
    {
        return Err(Error::Usage(format!(
            "the calibration labels hold {} entries for {samples} samples",
            l.len()
        )));
    }
    if budget.metric == Metric::AccuracyDrop && labels.is_none() {
        return Err(Error::Usage(
            "`auto` under an accuracy_drop budget measures accuracy on the calibration set: \
             give it labels (`calibrate with \"x.npy\" labels \"y.npy\"`)"
                .into(),
        ));
    }
    let accuracy = labels.is_some();
    let meter = Meter::new(s, x, labels.as_deref(), threads, true)?;
    let base_graph = apply(s, &data.calibration, threads, None)?;
    let (base_acc, base_err) = meter.measure_both(&base_graph)?;
    let (base_bytes, base_macs) = size_and_macs(&base_graph);

    // Every layer's curve.
    let points: usize = autos
        .iter()
        .map(|a| a.step.nodes.len() * a.values.len())
        .sum();
    let bar = crate::progress::bar(points as u64, "allocating");
    let mut layers: Vec<(usize, String, Vec<CurvePoint>)> = vec![];
    for (a, auto) in autos.iter().enumerate() {
        for layer in &auto.step.nodes {
            let mut curve = vec![];
            for &value in auto.values {
                let g = apply(
                    s,
                    &data.calibration,
                    threads,
                    Some((auto.index, layer, value)),
                )?;
                let (acc, error) = meter.measure_both(&g)?;
                let (bytes, macs) = size_and_macs(&g);
                curve.push(CurvePoint {
                    value,
                    accuracy: acc,
                    error,
                    bytes: bytes as u64,
                    macs: macs as u64,
                });
                bar.inc(1);
            }
            layers.push((a, layer.clone(), curve));
        }
    }
    bar.finish_and_clear();

    // Moves are ranked by output error (continuous, where accuracy on a few hundred samples
    // moves in steps) per unit saved in the budget's quantity.
    // A setting whose error is not a number costs everything (`f64::max` would make it free).
    let loss = |p: &CurvePoint| {
        let l = p.error - base_err;
        if l.is_nan() {
            f64::INFINITY
        } else {
            l.max(0.0)
        }
    };
    let save = |p: &CurvePoint| match budget.metric {
        Metric::Flops => base_macs - p.macs as f64,
        _ => base_bytes - p.bytes as f64,
    };
    let base_total = match budget.metric {
        Metric::Flops => base_macs,
        _ => base_bytes,
    };
    let bounds_total = matches!(budget.metric, Metric::Size | Metric::Flops);
    // Whether the model with these choices holds an accuracy or error bound, measured jointly
    // on the calibration set (losses do not add up: the layers' errors compound).
    let holds = |chosen: &[Option<usize>]| -> Result<(bool, f64), Error> {
        let plan = expand(
            s,
            &autos,
            &layers,
            chosen,
            (base_bytes as u64, base_macs as u64),
        );
        let g = run_plan_with(&plan, &data.calibration, threads, |_, step| {
            Some(step.clone())
        })?;
        let (acc, err) = meter.measure_both(&g)?;
        Ok(match (budget.metric, acc) {
            (Metric::AccuracyDrop, Some(acc)) => {
                let drop = crate::sensitivity::accuracy_drop(base_acc.unwrap_or(acc), acc);
                (budget.cmp.holds(drop, budget.bound), acc)
            }
            _ => (budget.cmp.holds(err, budget.bound), acc.unwrap_or(err)),
        })
    };
    let mut chosen: Vec<Option<usize>> = vec![None; layers.len()];
    // Per layer, the first option a joint measurement refused (it and those after are out).
    let mut refused: Vec<usize> = layers.iter().map(|(_, _, c)| c.len()).collect();
    let mut total_save = 0.0f64;
    let mut joint = None;
    loop {
        if bounds_total && budget.cmp.holds(base_total - total_save, budget.bound) {
            break;
        }
        let mut best: Option<(f64, f64, usize, usize)> = None;
        // A move that meets a size or flops bound ends the search: of those, the one that
        // loses least (then saves least), so the last step does not overshoot.
        let mut last: Option<(f64, f64, usize, usize)> = None;
        for (l, (_, _, curve)) in layers.iter().enumerate() {
            let (cl, cs) = chosen[l].map_or((0.0, 0.0), |j| (loss(&curve[j]), save(&curve[j])));
            let from = chosen[l].map_or(0, |j| j + 1);
            for (j, p) in curve.iter().enumerate().take(refused[l]).skip(from) {
                let (dl, ds) = ((loss(p) - cl).max(0.0), save(p) - cs);
                // Nothing saved, or a setting whose measurement is not a number: never taken.
                if ds.is_nan() || ds <= 0.0 || !dl.is_finite() {
                    continue;
                }
                if bounds_total
                    && budget.cmp.holds(base_total - total_save - ds, budget.bound)
                    && last.is_none_or(|(x, y, _, _)| dl < x || (dl == x && ds < y))
                {
                    last = Some((dl, ds, l, j));
                }
                let ratio = dl / ds;
                let better = best.is_none_or(|(r, s, _, _)| ratio < r || (ratio == r && ds > s));
                if better {
                    best = Some((ratio, ds, l, j));
                }
            }
        }
        let Some((_, ds, l, j)) = last.or(best) else {
            break;
        };
        let before = chosen[l];
        chosen[l] = Some(j);
        if !bounds_total {
            let (ok, metric) = holds(&chosen)?;
            if !ok {
                chosen[l] = before;
                refused[l] = j;
                continue;
            }
            joint = Some(metric);
        }
        total_save += ds;
    }
    if bounds_total && !budget.cmp.holds(base_total - total_save, budget.bound) {
        return Err(Error::Usage(format!(
            "`{}` cannot be met by the `auto` rules: at the largest setting of every layer the \
             model is estimated at {:.0} ({} before)",
            budget.text,
            base_total - total_save,
            base_total
        )));
    }
    let joint = match joint {
        Some(m) => m,
        None => holds(&chosen)?.1,
    };
    let expanded = expand(
        s,
        &autos,
        &layers,
        &chosen,
        (base_bytes as u64, base_macs as u64),
    );

    // The uniform alternative: for `amount` (a fraction of weights removed), the one value
    // that removes as many weights in all the auto layers together; for any other swept
    // parameter (`bits`), the weakest sweep value whose uniform setting is estimated (from
    // the curves, each layer's saving alone) to meet the same size or flops bound — or,
    // under an accuracy or error bound, to save at least as much as the allocation.
    // Measured on the evaluation set when it has labels.
    let weights = |name: &str| -> usize {
        let g = &s.model.graph;
        g.find_node(name)
            .and_then(|n| g.node(n))
            .and_then(|n| n.inputs.get(1).copied().flatten())
            .and_then(|w| g.const_data(w))
            .map_or(0, |t| t.len())
    };
    let uniform_value = if autos.iter().all(|a| a.param == "amount") {
        let (mut removed, mut total) = (0.0, 0.0);
        for (l, (_, layer, curve)) in layers.iter().enumerate() {
            let n = weights(layer) as f64;
            total += n;
            removed += chosen[l].map_or(0.0, |j| curve[j].value) * n;
        }
        Some(if total > 0.0 { removed / total } else { 0.0 })
    } else if autos
        .iter()
        .all(|a| a.param == autos[0].param && a.values == autos[0].values)
    {
        let values = autos[0].values;
        let saves = |j: usize| -> f64 {
            layers
                .iter()
                .map(|(_, _, curve)| curve.get(j).map_or(0.0, |p| save(p).max(0.0)))
                .sum()
        };
        let enough = |j: usize| {
            if bounds_total {
                budget.cmp.holds(base_total - saves(j), budget.bound)
            } else {
                saves(j) >= total_save
            }
        };
        (0..values.len())
            .find(|&j| enough(j))
            .or(values.len().checked_sub(1))
            .map(|j| values[j])
    } else {
        None
    };
    let uniform = match uniform_value {
        Some(u) => {
            let mut plan = s.clone();
            for step in plan
                .checked
                .plan
                .stages
                .iter_mut()
                .flat_map(|st| st.steps.iter_mut())
            {
                if let Some(param) = step.auto_param() {
                    step.set_num(param, u);
                }
            }
            let g = run_plan_with(&plan, &data.calibration, threads, |_, step| {
                Some(step.clone())
            })?;
            let evaluation = match (&data.evaluation, &data.labels) {
                (Some(x), Some(l)) => Some(
                    Meter::new(s, x.clone(), Some(l.as_slice()), threads, false)?
                        .measure(&g)?
                        .0,
                ),
                _ => None,
            };
            let (acc, err) = meter.measure_both(&g)?;
            let calibration = acc.unwrap_or(err);
            let (bytes, macs) = size_and_macs(&g);
            Some(Uniform {
                value: u,
                calibration_metric: calibration,
                evaluation_accuracy: evaluation,
                bytes: bytes as u64,
                macs: macs as u64,
            })
        }
        None => None,
    };

    let rows = layers
        .into_iter()
        .enumerate()
        .map(|(l, (a, layer, curve))| {
            let auto = &autos[a];
            AllocatedLayer {
                layer,
                technique: format!("{} {}", auto.step.technique, auto.step.variant),
                recipe_line: auto.step.origin.line,
                param: auto.param.to_string(),
                value: chosen[l].map(|j| curve[j].value),
                uniform: uniform_value,
                curve,
            }
        })
        .collect();
    Ok(Some((
        expanded,
        Allocation {
            budget: budget.text.clone(),
            metric: if accuracy {
                format!(
                    "the calibration set ({samples} samples): output error ranks the moves, top-1 accuracy is `baseline` and `chosen_metric`"
                )
            } else {
                format!(
                    "the calibration set ({samples} samples): output error (relative L2 against the original's) ranks the moves and is `baseline` and `chosen_metric`"
                )
            },
            baseline: base_acc.unwrap_or(base_err),
            chosen_metric: joint,
            estimated_total: base_total - total_save,
            layers: rows,
            uniform,
            seconds: (t0.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        },
    )))
}

/// `s`'s plan with each `auto` step replaced by one step per chosen layer at its value.
fn expand(
    s: &Session,
    autos: &[AutoStep],
    layers: &[(usize, String, Vec<CurvePoint>)],
    chosen: &[Option<usize>],
    base: (u64, u64),
) -> Session {
    let mut expanded = s.clone();
    let mut index = 0;
    for stage in &mut expanded.checked.plan.stages {
        let mut steps = vec![];
        for step in std::mem::take(&mut stage.steps) {
            index += 1;
            let Some(a) = autos.iter().position(|a| a.index == index) else {
                steps.push(step);
                continue;
            };
            for (l, (which, layer, curve)) in layers.iter().enumerate() {
                if *which != a {
                    continue;
                }
                // A layer no setting changes (the technique leaves it alone) keeps a step at
                // the weakest value, so the report says why.
                let unchanged = curve.iter().all(|p| p.bytes == base.0 && p.macs == base.1);
                let j = chosen[l].or(if unchanged && !curve.is_empty() {
                    Some(0)
                } else {
                    None
                });
                if let Some(j) = j {
                    let mut one = step.clone();
                    one.nodes = vec![layer.clone()];
                    one.set_num(autos[a].param, curve[j].value);
                    steps.push(one);
                }
            }
        }
        stage.steps = steps;
    }
    expanded
}
