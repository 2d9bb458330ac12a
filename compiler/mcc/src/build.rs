//! The build driver: runs a checked plan's steps through their registry entries, then
//! measures the result on compiled code and assembles the typed report.
//!
//! The stage table: [`load_data`] (calibration and evaluation files) → [`run_steps`] (each step:
//! statistics it needs, its rewrite, re-type, verify, invalidate statistics) →
//! [`observe_layers`] (compiled with the changed layers observed, beside the compressed model
//! itself) → [`layer_errors`] (changed layers against the original, on compiled code) →
//! [`evaluate`] (accuracy and output fidelity) → [`assemble`] (the report and budgets).
//!
//! **Invariant:** the driver knows no technique by name: it calls [`mcc_plan::Technique`]s.

use std::path::Path;
use std::time::Instant;

use mcc_ir::{Graph, StepId, Tensor};
use mcc_plan::Merged;
use mcc_plan::plan::{Metric, ParamValue, Step};
use mcc_runtime::program::Program;

use crate::calibration::Calibration;
use crate::measure::{Agreement, Compiled, top1_hits};
use crate::recipe::Session;
use crate::report::{self, BeforeAfter, OutputError, Report, Timings};
use crate::{Error, tensor_io};

/// How to build.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Record the IR diff of every step that changed something.
    pub ir_diffs: bool,
    /// Threads measurements run on (0: all the machine has).
    pub threads: usize,
    /// Measure what each compressed layer costs (`--attribution`; two builds and
    /// evaluations a layer).
    pub attribution: bool,
    /// Where to send the compressed model once it is compiled, before it is measured, so
    /// that native code can be made meanwhile.
    pub ready: Option<std::sync::mpsc::Sender<Ready>>,
}

/// The compressed model as soon as it is compiled, before the build measures it: what native
/// code is made of ([`Options::ready`]).
pub struct Ready {
    /// The compressed graph.
    pub graph: Graph,
    /// Its compiled schedule, when it compiled.
    pub program: Option<Program>,
    /// As [`BuildResult::data_sizes`].
    pub data_sizes: Vec<Vec<Vec<usize>>>,
}

/// What a build made and measured.
pub struct BuildResult {
    /// `report.json`.
    pub report: Report,
    /// `timings.json`.
    pub timings: Timings,
    /// Budget constraints that failed: (constraint text, line, measured value as text).
    pub violations: Vec<Violation>,
    /// The compressed graph.
    pub graph: Graph,
    /// The compressed model's compiled schedule (what the native outputs are made of), when it
    /// compiled.
    pub program: Option<Program>,
    /// For a model whose sizes are free: the shapes of its data (calibration, evaluation;
    /// each once), which native code is compiled for when no size is given. Empty otherwise.
    pub data_sizes: Vec<Vec<Vec<usize>>>,
    /// For every step that changed the IR: a file name (`01-stage-technique-variant.diff`)
    /// and the unified diff of the IR text before and after it.
    pub ir_diffs: Vec<IrDiff>,
    /// When an accuracy or output-error budget failed: what restoring each of the layers
    /// that cost most would regain, measured.
    pub regains: Option<crate::attribution::Regains>,
}

/// The data a recipe names, read and checked.
pub struct Data {
    /// Calibration inputs.
    pub calibration: Option<Tensor>,
    /// Evaluation inputs.
    pub evaluation: Option<Tensor>,
    /// Evaluation labels.
    pub labels: Option<Vec<i64>>,
}

/// A budget constraint that failed: (constraint text, recipe line, measured value as text).
pub type Violation = (String, usize, String);

/// An IR diff: (file name, unified diff).
pub type IrDiff = (String, String);

/// What [`run_steps`] did: the steps, the IR diffs when asked, and the model after each
/// stage but the last when asked (by stage name).
pub type Steps<'s> = (Vec<Ran<'s>>, Vec<IrDiff>, Vec<(String, Graph)>);

/// A step that ran.
pub struct Ran<'s> {
    /// Its number (1-based).
    pub id: StepId,
    /// The planned step.
    pub step: &'s Step,
    /// Its stage.
    pub stage: String,
    /// What it did.
    pub outcome: mcc_plan::Outcome,
}

/// Runs the plan and measures it. The caller writes the outputs.
pub fn build(s: &Session, opts: &Options) -> Result<BuildResult, Error> {
    let start = Instant::now();
    let threads = crate::measure::threads(opts.threads);
    let t = Instant::now();
    let Some((expanded, allocation)) = crate::allocate::resolve(s, threads)? else {
        return build_plan(s, opts, start, None);
    };
    let mut r = build_plan(&expanded, opts, start, Some(t.elapsed()))?;
    r.report.allocation = Some(allocation);
    Ok(r)
}

/// [`build`] of a plan without `auto` parameters (`allocated`: the time choosing them took).
fn build_plan(
    s: &Session,
    opts: &Options,
    start: Instant,
    allocated: Option<std::time::Duration>,
) -> Result<BuildResult, Error> {
    let threads = crate::measure::threads(opts.threads);
    let mut timings = Timings {
        threads,
        ..Timings::default()
    };
    if let Some(d) = allocated {
        timings.phases.push(crate::report::Phase {
            phase: "allocate auto parameters".into(),
            ms: (d.as_secs_f64() * 1e4).round() / 10.0,
        });
    }
    let t = Instant::now();
    let data = load_data(s)?;
    timings.phase("read data", t);

    let t = Instant::now();
    let mut graph = s.model.graph.clone();
    let mut calibration = Calibration::new(data.calibration.clone(), threads);
    // The accuracy-against-size curve needs the model after each stage but the last.
    let stages = s.checked.plan.stages.len();
    let has_data = data.calibration.is_some() || data.evaluation.is_some();
    let keep_stages = stages > 1 && has_data;
    // A model with free sizes is compiled for its data's (when calibration and evaluation
    // data agree on them).
    let like = crate::measure::sized_like(
        data.evaluation.as_ref(),
        data.calibration.as_ref(),
        Tensor::shape,
    );
    // The original model compiles on a thread of its own while the steps run.
    let (steps, original) = std::thread::scope(|scope| {
        let original =
            has_data.then(|| scope.spawn(|| Compiled::for_data(&s.model.graph, &[], like)));
        let steps = run_steps(s, &mut graph, &mut calibration, opts.ir_diffs, keep_stages);
        let original = original
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Native(
                        "compiling the original model panicked".into(),
                    ))
                })
            })
            .transpose();
        (steps, original)
    });
    let (ran, ir_diffs, stage_ends) = steps?;
    let original = original?;
    timings.phase("run steps", t);

    let t = Instant::now();
    let mut data_sizes: Vec<Vec<Vec<usize>>> = vec![];
    if graph.inputs().len() == 1 && crate::measure::free_sizes(&graph) {
        for t in [&data.calibration, &data.evaluation].into_iter().flatten() {
            if !data_sizes
                .iter()
                .any(|d| d[0].get(1..) == t.shape().get(1..))
            {
                data_sizes.push(vec![t.shape().to_vec()]);
            }
        }
    }
    // The compressed model goes to whoever makes native code as soon as it is compiled, so
    // that it is made while this measures — unless a latency budget is to be timed, which it
    // would disturb.
    let latency_budget = s
        .checked
        .plan
        .budget
        .iter()
        .any(|b| b.metric == Metric::Latency);
    let send_ready = |compressed: &Compiled| {
        if let Some(ready) = &opts.ready {
            // A receiver that has gone wants nothing.
            let _ = ready.send(Ready {
                graph: graph.clone(),
                program: compressed.program().cloned(),
                data_sizes: data_sizes.clone(),
            });
        }
    };
    // The models that observe the compared layers compile on a thread of their own
    // meanwhile (native code then starts beside them).
    let (compressed, observed) = std::thread::scope(|scope| {
        let observed = scope.spawn(|| observe_layers(s, &graph, &ran, data.calibration.as_ref()));
        let compressed = Compiled::for_data(&graph, &[], like);
        if let Ok(c) = &compressed
            && !latency_budget
        {
            send_ready(c);
        }
        let observed = observed.join().unwrap_or_else(|_| {
            Err(Error::Native(
                "compiling the observed models panicked".into(),
            ))
        });
        (compressed, observed)
    });
    let (compressed, observed) = (compressed?, observed?);
    timings.phase("compile", t);

    // One pool runs every model measured here (two fed batch for batch share it).
    let pool = crate::measure::pool(threads)?;
    let t = Instant::now();
    let errors = layer_errors(observed.as_ref(), &pool)?;
    timings.phase("compare layers", t);

    let t = Instant::now();
    let measured = match &original {
        Some(original) => evaluate(original, &compressed, &data, &pool)?,
        None => Measured {
            accuracy: None,
            fidelity: None,
            samples: 0,
            predictions: None,
        },
    };
    timings.phase("evaluate", t);

    // A latency budget: measured on this machine, in timings.json; it passes or fails the
    // build and changes nothing built.
    let mut latency = None;
    if latency_budget && let Some(p) = compressed.program() {
        let t = Instant::now();
        const RUNS: usize = 50;
        let after_ms = crate::measure::latency_ms(p, like, threads, RUNS, 1)?;
        let before_ms = match original.as_ref().and_then(Compiled::program) {
            Some(o) => Some(crate::measure::latency_ms(o, like, threads, RUNS, 1)?),
            None => None,
        };
        latency = Some(crate::report::Latency {
            cpu: crate::measure::cpu_name(),
            threads,
            runs: RUNS,
            batch: 1,
            before_ms,
            after_ms,
        });
        timings.phase("measure latency", t);
    }
    if latency_budget {
        send_ready(&compressed);
    }
    let (mut report, violations) = assemble(
        s,
        &graph,
        &ran,
        &errors,
        &measured,
        &data,
        &compressed,
        latency.as_ref(),
    )?;
    // A missed accuracy or output-error budget names what restoring a layer would regain,
    // in the missed budget's metric.
    let missed = s
        .checked
        .plan
        .budget
        .iter()
        .zip(&report.budget)
        .find(|(b, row)| !row.ok && matches!(b.metric, Metric::AccuracyDrop | Metric::OutputError))
        .map(|(b, _)| b);
    let mut regains = None;
    if (keep_stages || opts.attribution || missed.is_some()) && has_data {
        let t = Instant::now();
        let before_after = |m: &crate::attribution::Measure<'_>| match m.metric {
            crate::sensitivity::Metric::Accuracy => measured.accuracy.map(|a| (a.before, a.after)),
            crate::sensitivity::Metric::OutputError => {
                measured.fidelity.map(|f| (0.0, f.relative_l2))
            }
        };
        // One measure (its reference outputs computed once) serves the stages, the
        // attribution and a missed budget in the same metric.
        let first = if keep_stages || opts.attribution {
            crate::attribution::Measure::new(s, &data, threads, None)?
        } else {
            None
        };
        if let Some(m) = &first
            && let Some((before, after)) = before_after(m)
        {
            if keep_stages {
                let last = s
                    .checked
                    .plan
                    .stages
                    .last()
                    .map_or("", |st| st.name.as_str());
                report.stages = Some(crate::attribution::stages(
                    s,
                    &ran,
                    m,
                    &stage_ends,
                    (last, &graph),
                    before,
                    after,
                )?);
            }
            if opts.attribution {
                report.attribution =
                    Some(crate::attribution::attribute(s, &ran, m, before, after)?);
            }
        }
        if let Some(b) = missed {
            let want = match b.metric {
                Metric::OutputError => crate::sensitivity::Metric::OutputError,
                _ => crate::sensitivity::Metric::Accuracy,
            };
            let other;
            let m = match &first {
                Some(m) if m.metric == want => Some(m),
                _ => {
                    other = crate::attribution::Measure::new(s, &data, threads, Some(want))?;
                    other.as_ref()
                }
            };
            if let Some(m) = m
                && let Some((before, after)) = before_after(m)
            {
                // The bound, in the measure's terms: the drop from the original, or the
                // error itself.
                let holds = |v: f64| match b.metric {
                    Metric::AccuracyDrop => b
                        .cmp
                        .holds(crate::sensitivity::accuracy_drop(before, v), b.bound),
                    _ => b.cmp.holds(v, b.bound),
                };
                regains = Some(crate::attribution::regains(
                    s, &ran, m, &report, after, &holds,
                ));
            }
        }
        timings.phase("stages, attribution", t);
    }
    timings.latency = latency;
    timings.total_ms = (start.elapsed().as_secs_f64() * 1e4).round() / 10.0;
    Ok(BuildResult {
        report,
        timings,
        violations,
        program: compressed.program().cloned(),
        data_sizes,
        graph,
        ir_diffs,
        regains,
    })
}

/// Reads the calibration and evaluation files the plan names (their shapes were checked).
/// Refuses NaN or infinity in the data and in the model's weights (measurements would be
/// NaN and budgets could not be judged).
pub fn load_data(s: &Session) -> Result<Data, Error> {
    check_weights(&s.model.graph)?;
    let g = &s.model.graph;
    let input = g.value(g.inputs()[0]);
    let read = |p: &Path| tensor_io::read_input(p, &input.name, &input.ty);
    let plan = &s.checked.plan;
    let calibration = plan
        .calibrate
        .as_ref()
        .map(|d| read(&d.inputs))
        .transpose()?;
    let evaluation = plan
        .evaluate
        .as_ref()
        .map(|d| read(&d.inputs))
        .transpose()?;
    let labels = plan
        .evaluate
        .as_ref()
        .and_then(|d| d.labels.as_deref())
        .map(|l| tensor_io::read_npy(l).map(|t| t.to_i64_vec()))
        .transpose()?;
    let sets = [
        (&plan.calibrate, &calibration, "calibration"),
        (&plan.evaluate, &evaluation, "evaluation"),
    ];
    for (set, data, role) in sets {
        if let (Some(set), Some(t)) = (set, data) {
            let per: usize = t.shape().get(1..).map_or(1, |d| d.iter().product());
            if t.shape().first().is_none_or(|&n| n == 0) {
                return Err(Error::Usage(format!(
                    "`{}` ({role} data) holds no samples; nothing could be measured on it",
                    set.inputs.display()
                )));
            }
            if let Some((i, v)) = first_non_finite(t) {
                return Err(Error::NonFinite {
                    what: format!("`{}` ({role} data)", set.inputs.display()),
                    value: v.to_string(),
                    at: format!("sample {}, element {}", i / per.max(1), i % per.max(1)),
                    help: "accuracy and errors measured on it would be NaN; clean the data or use \
                           other samples"
                        .into(),
                });
            }
        }
    }
    Ok(Data {
        calibration,
        evaluation,
        labels,
    })
}

/// The first NaN or infinity in `t` (row-major index and value), if any.
pub fn first_non_finite(t: &Tensor) -> Option<(usize, f64)> {
    match t.as_f32() {
        Some(a) => a
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
            .map(|(i, &v)| (i, f64::from(v))),
        None => t
            .to_f64_vec()
            .into_iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite()),
    }
}

/// Refuses a model with a NaN or infinite weight: every measurement of it would be NaN, and
/// a budget could not be judged.
pub fn check_weights(graph: &Graph) -> Result<(), Error> {
    for v in graph.value_ids() {
        if !graph.is_used(v) {
            continue;
        }
        if let Some(t) = graph.const_data(v)
            && t.dtype().is_float()
            && let Some((i, x)) = first_non_finite(t)
        {
            return Err(Error::NonFinite {
                what: format!("the model's constant `{}`", graph.value(v).name),
                value: x.to_string(),
                at: format!("element {i} (shape {:?})", t.shape()),
                help: "the model computes NaN or infinity wherever this weight is used; fix \
                       the model (re-export it, or check its training) before compressing it"
                    .into(),
            });
        }
    }
    Ok(())
}

/// Runs every step of the plan in order through its registry entry, verifying after each;
/// returns what each did and, when asked, the IR diffs and the model after each stage but the
/// last (named by its stage).
pub fn run_steps<'s>(
    s: &'s Session,
    graph: &mut Graph,
    calibration: &mut Calibration,
    ir_diffs_wanted: bool,
    keep_stages: bool,
) -> Result<Steps<'s>, Error> {
    let mut ran = vec![];
    let mut ir_diffs = vec![];
    let mut stage_ends = vec![];
    let stages = s.checked.plan.stages.len();
    let mut text = if ir_diffs_wanted {
        mcc_ir::text::print(graph)
    } else {
        String::new()
    };
    let mut number = 0u32;
    for stage in &s.checked.plan.stages {
        for step in &stage.steps {
            number += 1;
            let id = StepId(number);
            let outcome = run_step(s, graph, step, id, calibration)?;
            if ir_diffs_wanted {
                let after = mcc_ir::text::print(graph);
                let origin = format!(
                    "{}:{}",
                    s.checked.files[step.origin.file].name, step.origin.line
                );
                let to = format!(
                    "after step {number}: {} {} ({origin})",
                    step.technique, step.variant
                );
                let diff = mcc_ir::text::diff::unified(&text, &after, "before", &to);
                if !diff.is_empty() {
                    ir_diffs.push((
                        format!(
                            "{number:02}-{}-{}-{}.diff",
                            stage.name, step.technique, step.variant
                        ),
                        diff,
                    ));
                }
                text = after;
            }
            ran.push(Ran {
                id,
                step,
                stage: stage.name.clone(),
                outcome,
            });
        }
        if keep_stages && stage_ends.len() + 1 < stages {
            stage_ends.push((stage.name.clone(), graph.clone()));
        }
    }
    Ok((ran, ir_diffs, stage_ends))
}

/// Runs `s`'s plan on a copy of its model, without native code or measurement: each step as
/// `edit` gives it (by its 1-based number in plan order; `None` skips it), statistics
/// collected on `calibration` as the steps find the model. `mcc sensitivity` and the `auto`
/// allocation run their variants of the plan through it.
pub fn run_plan_with(
    s: &Session,
    calibration: &Option<Tensor>,
    threads: usize,
    mut edit: impl FnMut(usize, &Step) -> Option<Step>,
) -> Result<Graph, Error> {
    run_plan_as(s, calibration, threads, |index, step, _| {
        edit(index, step).into_iter().collect()
    })
}

/// [`run_plan_with`] where each step becomes the steps `edit` gives for it (none, one, or
/// several, all numbered as it), seeing the model as the step finds it.
pub fn run_plan_as(
    s: &Session,
    calibration: &Option<Tensor>,
    threads: usize,
    mut edit: impl FnMut(usize, &Step, &Graph) -> Vec<Step>,
) -> Result<Graph, Error> {
    let mut graph = s.model.graph.clone();
    let mut stats = Calibration::new(calibration.clone(), threads);
    let mut index = 0;
    for stage in &s.checked.plan.stages {
        for step in &stage.steps {
            index += 1;
            for step in edit(index, step, &graph) {
                run_step(s, &mut graph, &step, StepId(index as u32), &mut stats)?;
            }
        }
    }
    Ok(graph)
}

/// Runs one step through its registry entry: the statistics it needs (collected on `graph` as
/// it stands), its rewrite, then re-typing and verification; cached statistics are dropped
/// when the step changed the model.
pub fn run_step(
    s: &Session,
    graph: &mut Graph,
    step: &Step,
    id: StepId,
    calibration: &mut Calibration,
) -> Result<mcc_plan::Outcome, Error> {
    let number = id.0;
    let technique = s
        .registry
        .implementation(step.technique, step.variant)
        .ok_or_else(|| {
            Error::Usage(format!(
                "`{} {}` passed the check but has no implementation (a bug in mcc)",
                step.technique, step.variant
            ))
        })?;
    let failed = |e: mcc_plan::TechniqueError| {
        Error::Usage(format!(
            "step {number} (`{} {}`, line {}): {e}",
            step.technique, step.variant, step.origin.line
        ))
    };
    if technique.collects_upfront() {
        let needs = technique.needs(graph, step);
        calibration.collect(graph, &needs).map_err(failed)?;
    }
    let outcome = technique
        .rewrite(graph, step, id, calibration)
        .map_err(failed)?;
    mcc_ir::infer_all(graph).map_err(|(node, op, e)| {
        Error::Usage(format!("after step {number}: node `{node}` ({op}): {e}"))
    })?;
    mcc_ir::verify(graph)?;
    if outcome.changed_anything() {
        calibration.invalidate();
    }
    Ok(outcome)
}

/// Every layer a step changed or removed, sorted.
fn touched(ran: &[Ran<'_>]) -> Vec<String> {
    let mut v: Vec<String> = ran
        .iter()
        .flat_map(|r| {
            r.outcome
                .changed
                .iter()
                .cloned()
                .chain(r.outcome.merged.iter().map(|m| m.removed.clone()))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

fn merges<'a>(ran: &'a [Ran<'_>]) -> impl Iterator<Item = &'a Merged> {
    ran.iter().flat_map(|r| r.outcome.merged.iter())
}

/// For every layer that absorbed others: the original layer whose output its output now
/// equals, followed through chains of merges in order (BN into B, then B into A: A stands for
/// the BN).
fn stands_for(ran: &[Ran<'_>]) -> std::collections::BTreeMap<String, String> {
    let mut map: std::collections::BTreeMap<String, String> = Default::default();
    for m in merges(ran) {
        let target = map
            .get(&m.stands_for)
            .cloned()
            .unwrap_or_else(|| m.stands_for.clone());
        map.insert(m.into.clone(), target);
    }
    map
}

fn output_name(g: &Graph, node: &str) -> Option<String> {
    let id = g.find_node(node)?;
    let o = *g.node(id)?.outputs.first()?;
    Some(g.value(o).name.clone())
}

/// The layers a build compares ([`layer_errors`]) and both models compiled to observe them,
/// on the calibration data.
pub struct Observed<'d> {
    /// Each compared layer's name in the compressed model.
    layers: Vec<String>,
    original: Compiled,
    compressed: Compiled,
    x: &'d Tensor,
}

/// Compiles the original and the compressed model with every changed layer's output
/// observed (in the original, the tensor it stands for: its own output, or for a layer that
/// absorbed a norm, the norm's output): nothing without calibration data or a compared
/// layer.
pub fn observe_layers<'d>(
    s: &Session,
    graph: &Graph,
    ran: &[Ran<'_>],
    x: Option<&'d Tensor>,
) -> Result<Option<Observed<'d>>, Error> {
    let Some(x) = x else {
        return Ok(None);
    };
    let original = &s.model.graph;
    let stands_for = stands_for(ran);
    let (mut layers, mut refs, mut mine) = (vec![], vec![], vec![]);
    for n in touched(ran) {
        let reference_at = stands_for.get(&n).map_or(n.as_str(), String::as_str);
        if let (Some(r), Some(c)) = (output_name(original, reference_at), output_name(graph, &n)) {
            layers.push(n);
            refs.push(r);
            mine.push(c);
        }
    }
    if layers.is_empty() {
        return Ok(None);
    }
    Ok(Some(Observed {
        layers,
        original: Compiled::for_data(original, &refs, Some(x))?,
        compressed: Compiled::for_data(graph, &mine, Some(x))?,
        x,
    }))
}

/// Each compared layer's output against what the original computed at that point.
pub fn layer_errors(
    observed: Option<&Observed<'_>>,
    pool: &crate::measure::Pool,
) -> Result<Vec<(String, OutputError)>, Error> {
    let Some(Observed {
        layers,
        original: a,
        compressed: b,
        x,
    }) = observed
    else {
        return Ok(vec![]);
    };
    let chunk = batch_in_cache(&[a, b]);
    let mut fa = a.feed(x, chunk, pool)?;
    let mut fb = b.feed(x, chunk, pool)?;
    // A layer's sums are its own, added batch by batch in order: the layers are shared out
    // among the threads without changing a bit.
    let acc: Vec<std::sync::Mutex<Agreement>> = layers
        .iter()
        .map(|_| std::sync::Mutex::new(Agreement::default()))
        .collect();
    let bar = crate::progress::bar(
        x.shape().first().copied().unwrap_or(0) as u64,
        "comparing layers",
    );
    while let (Some(ba), Some(bb)) = (fa.next_batch()?, fb.next_batch()?) {
        pool.run(acc.len(), &|i| {
            // Only this task locks layer i's sums (and nothing panics while they are held).
            if let Ok(mut a) = acc[i].lock() {
                a.add(bb.observed(i), ba.observed(i));
            }
        });
        bar.inc(ba.samples as u64);
    }
    bar.finish_and_clear();
    layers
        .iter()
        .zip(acc)
        .map(|(n, a)| {
            a.into_inner()
                .map(|a| (n.clone(), a.result()))
                .map_err(|_| Error::Native("comparing a layer panicked".into()))
        })
        .collect()
}

/// Samples a batch of `models` holds when their arenas are to stay in cache (the measured
/// tensors are read again right after a batch: vgg_bn's layer comparison, 0.4 MB a sample,
/// took ~180 ms for 256 samples 64 at a time and ~140 ms 16 at a time, its evaluation
/// ~265 ms for 1000 samples 64 at a time and ~245 ms 10 at a time): [`BATCH_BYTES`] of
/// the largest arena, at least 4 samples and at most 64.
fn batch_in_cache(models: &[&Compiled]) -> usize {
    let per_sample = models
        .iter()
        .filter_map(|c| c.program())
        .map(|p| p.arena * 4)
        .max()
        .unwrap_or(0);
    (BATCH_BYTES / per_sample.max(1)).clamp(4, 64)
}

/// Bytes of arena a measured batch may take ([`batch_in_cache`]).
const BATCH_BYTES: usize = 4 << 20;

/// Accuracy and output fidelity, measured.
pub struct Measured {
    /// Accuracy before and after, with labels.
    pub accuracy: Option<BeforeAfter<f64>>,
    /// The outputs against the original's.
    pub fidelity: Option<OutputError>,
    /// Samples evaluated.
    pub samples: usize,
    /// Per-class accuracy and the changed predictions, with labels.
    pub predictions: Option<report::Predictions>,
}

/// Top-1 accuracy of both models on the labelled evaluation set, and the compressed model's
/// outputs against the original's on the evaluation (else calibration) data.
pub fn evaluate(
    original: &Compiled,
    compressed: &Compiled,
    data: &Data,
    pool: &crate::measure::Pool,
) -> Result<Measured, Error> {
    let Some(x) = data.evaluation.as_ref().or(data.calibration.as_ref()) else {
        return Ok(Measured {
            accuracy: None,
            fidelity: None,
            samples: 0,
            predictions: None,
        });
    };
    let labels = data.evaluation.as_ref().and(data.labels.as_ref());
    let total = x.shape().first().copied().unwrap_or(0);
    let bar = crate::progress::bar(total as u64, "evaluating");
    let chunk = batch_in_cache(&[original, compressed]);
    let mut fa = original.feed(x, chunk, pool)?;
    let mut fb = compressed.feed(x, chunk, pool)?;
    let (mut right_a, mut right_b) = (0usize, 0usize);
    let mut agreement = Agreement::default();
    let mut predicted = Predicted::default();
    while let (Some(ba), Some(bb)) = (fa.next_batch()?, fb.next_batch()?) {
        for o in 0..ba.model_outputs() {
            agreement.add(bb.output(o), ba.output(o));
        }
        if let Some(labels) = labels {
            right_a += top1_hits(&ba, labels);
            right_b += top1_hits(&bb, labels);
            predicted.add(&ba, &bb, labels);
        }
        bar.inc(ba.samples as u64);
    }
    bar.finish_and_clear();
    // No samples, no accuracy (an empty set must not meet an accuracy budget).
    let accuracy = labels.filter(|l| !l.is_empty() && total > 0).map(|l| {
        let n = l.len() as f64;
        BeforeAfter {
            before: right_a as f64 / n,
            after: right_b as f64 / n,
        }
    });
    Ok(Measured {
        accuracy,
        fidelity: Some(agreement.result()),
        samples: total,
        predictions: accuracy.map(|_| predicted.result()),
    })
}

/// Both models' top-1 predictions, gathered batch by batch: per-class hits and the samples
/// whose prediction changed.
#[derive(Default)]
struct Predicted {
    /// Per label: samples, hits before, hits after.
    classes: std::collections::BTreeMap<i64, (usize, usize, usize)>,
    changed: Vec<report::ChangedPrediction>,
    changed_total: usize,
}

impl Predicted {
    fn add(
        &mut self,
        before: &crate::measure::Batch<'_>,
        after: &crate::measure::Batch<'_>,
        labels: &[i64],
    ) {
        let rows = |b: &crate::measure::Batch<'_>| {
            let y = b.output(0);
            let c = y.len() / b.samples.max(1);
            (0..b.samples)
                .map(|r| y.get(r * c..(r + 1) * c).and_then(crate::measure::argmax))
                .collect::<Vec<_>>()
        };
        let (pa, pb) = (rows(before), rows(after));
        for (r, (a, b)) in pa.into_iter().zip(pb).enumerate() {
            let sample = before.first + r;
            let Some(&label) = labels.get(sample) else {
                continue;
            };
            let hit = |p: Option<usize>| usize::from(p.is_some_and(|k| k as i64 == label));
            let e = self.classes.entry(label).or_default();
            e.0 += 1;
            e.1 += hit(a);
            e.2 += hit(b);
            if a != b {
                self.changed_total += 1;
                if self.changed.len() < report::CHANGED_LISTED {
                    self.changed.push(report::ChangedPrediction {
                        sample,
                        label,
                        prediction: BeforeAfter {
                            before: a,
                            after: b,
                        },
                    });
                }
            }
        }
    }

    fn result(self) -> report::Predictions {
        report::Predictions {
            per_class: self
                .classes
                .into_iter()
                .map(|(class, (n, a, b))| report::ClassAccuracy {
                    class,
                    samples: n,
                    accuracy: BeforeAfter {
                        before: a as f64 / n.max(1) as f64,
                        after: b as f64 / n.max(1) as f64,
                    },
                })
                .collect(),
            changed: self.changed,
            changed_total: self.changed_total,
        }
    }
}

/// What a constant operand is to the model's size: a parameter (float data; a quantized
/// layer's integer weights and bias), overhead that costs bytes but is no parameter (the
/// integer zero points of quantized ops), or neither (shapes, indices).
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Role {
    Param,
    Overhead,
    None,
}

pub(crate) fn role(op: &mcc_ir::Op, slot: usize, t: &mcc_ir::Tensor) -> Role {
    use mcc_ir::Op;
    match op {
        Op::QLinearConv(_) | Op::QLinearMatMul(_) if slot == 3 || slot == 8 => Role::Param,
        Op::QLinearConv(_) | Op::QLinearMatMul(_) => Role::Overhead,
        Op::DynamicQuantMatMul(_) if slot == 1 || slot == 3 => Role::Param,
        Op::DynamicQuantMatMul(_) => Role::Overhead,
        Op::QuantizeLinear(_) | Op::DequantizeLinear(_) if slot > 0 => Role::Overhead,
        _ if t.dtype().is_float() => Role::Param,
        _ => Role::None,
    }
}

/// Weights a layer reads: (count, nonzero, stored bytes; the bytes include quantization
/// overhead).
fn weight_stats(graph: &Graph, node: mcc_ir::NodeId) -> (u64, u64, u64) {
    constants(graph, [node])
}

/// Constants the model uses: (parameter count, nonzero, stored bytes).
pub(crate) fn totals(graph: &Graph) -> (u64, u64, u64) {
    constants(graph, graph.node_ids())
}

/// The constants `nodes` read, each once (by its first reader's [`Role`] for it): (parameter
/// count, nonzero, stored bytes).
fn constants(graph: &Graph, nodes: impl IntoIterator<Item = mcc_ir::NodeId>) -> (u64, u64, u64) {
    let (mut total, mut nonzero, mut bytes) = (0, 0, 0);
    let mut seen = std::collections::HashSet::new();
    for n in nodes {
        let Some(node) = graph.node(n) else { continue };
        for (slot, v) in node.inputs.iter().enumerate() {
            let Some(v) = *v else { continue };
            let Some(t) = graph.const_data(v) else {
                continue;
            };
            if !seen.insert(v) {
                continue;
            }
            let r = role(&node.op, slot, t);
            if r == Role::Param {
                total += t.len() as u64;
                nonzero += t.count_nonzero() as u64;
            }
            if r != Role::None {
                bytes += graph.stored_bytes(v) as u64;
            }
        }
    }
    (total, nonzero, bytes)
}

/// How a layer's weights (operand 1) are stored, exported and run.
fn storage(graph: &Graph, node: mcc_ir::NodeId) -> Option<report::Storage> {
    let w = graph.node(node)?.inputs.get(1).copied().flatten()?;
    let t = graph.const_data(w)?;
    let stored = graph.stored(w);
    let encoding = match stored {
        Some(s) => s.encoding().to_string(),
        None => format!("{} dense", t.dtype()),
    };
    let onnx = match stored.map(mcc_onnx::stored_form) {
        Some(mcc_onnx::StoredForm::DequantizeLinear) => report::OnnxForm::DequantizeLinear,
        _ => report::OnnxForm::Dense,
    };
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let (kernel, kernel_why) = match fc_kernel(graph, node) {
        Some(mcc_codegen::FcKernel::Sparse { density, max, .. }) => (
            report::KernelForm::Sparse,
            Some(format!(
                "density {} ≤ {}, where the sparse kernel measured faster at this depth",
                pct(density),
                pct(max)
            )),
        ),
        Some(mcc_codegen::FcKernel::Block {
            r, c, density, max, ..
        }) => (
            report::KernelForm::BlockSparse,
            Some(format!(
                "block-sparse ({r}×{c}), density {} ≤ {}, where the block kernel measured \
                 faster at this depth",
                pct(density),
                pct(max)
            )),
        ),
        Some(mcc_codegen::FcKernel::SizeOnly { density, max }) => (
            report::KernelForm::SizeOnly,
            Some(format!(
                "size only, no speedup at this sparsity: density {} > {}, the sparse kernel's \
                 measured crossover at this depth",
                pct(density),
                pct(max)
            )),
        ),
        _ if stored.is_some() => (report::KernelForm::ExpandedAtLoad, None),
        _ => (report::KernelForm::Dense, None),
    };
    Some(report::Storage {
        encoding,
        onnx,
        kernel,
        kernel_why,
    })
}

/// The kernel the native code picks for a fully connected layer (a Gemm or MatMul on a 2-D
/// f32 constant, as the lowering takes them): `mcc_codegen::fc_kernel` on its weights.
fn fc_kernel(graph: &Graph, node: mcc_ir::NodeId) -> Option<mcc_codegen::FcKernel> {
    let n = graph.node(node)?;
    let trans_b = match &n.op {
        mcc_ir::Op::Gemm(g) if g.transA == 0 => g.transB != 0,
        mcc_ir::Op::MatMul(_) => false,
        _ => return None,
    };
    let t = graph.const_data(n.inputs.get(1).copied().flatten()?)?;
    let w = t.as_f32()?;
    let &[r, c] = t.shape() else { return None };
    let (k, cols) = if trans_b { (c, r) } else { (r, c) };
    let w: Vec<f32> = w.iter().copied().collect();
    Some(mcc_codegen::fc_kernel(k, cols, &w, trans_b))
}

/// `path` as given, with the SHA-256 of its bytes (report.json's `inputs`).
pub(crate) fn sha256_file(path: &Path) -> Result<report::FileRef, Error> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(report::FileRef {
        file: path.display().to_string(),
        sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
    })
}

/// The report's layer rows, totals, budgets and tables.
fn assemble(
    s: &Session,
    graph: &Graph,
    ran: &[Ran<'_>],
    errors: &[(String, OutputError)],
    measured: &Measured,
    data: &Data,
    compressed: &Compiled,
    latency: Option<&crate::report::Latency>,
) -> Result<(Report, Vec<Violation>), Error> {
    let original = &s.model.graph;
    let plan = &s.checked.plan;
    let before_table = crate::inspect::table(original);
    let after_table = crate::inspect::table(graph);
    let macs_of = |t: &crate::inspect::Table, name: &str| {
        t.rows.iter().find(|r| r.name == name).map_or(0, |r| r.macs)
    };
    let mut layers = vec![];
    for name in touched(ran) {
        let Some(nb) = original.find_node(&name) else {
            continue;
        };
        let op = original.node(nb).map_or("", |n| n.op.name()).to_string();
        let (pb, nzb, bb) = weight_stats(original, nb);
        let applied: Vec<report::Applied> = ran
            .iter()
            .filter(|r| {
                r.outcome.changed.contains(&name)
                    || r.outcome.merged.iter().any(|m| m.removed == name)
            })
            .map(|r| report::Applied {
                step: r.id.0,
                stage: r.stage.clone(),
                technique: r.step.technique.to_string(),
                variant: r.step.variant.to_string(),
                params: r
                    .step
                    .params
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            ParamValue::Num(x) => report::ParamValue::Num(*x),
                            other => report::ParamValue::Text(other.to_string()),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
                recipe_file: s.checked.files[r.step.origin.file].name.clone(),
                recipe_line: r.step.origin.line,
            })
            .collect();
        let Some(na) = graph.find_node(&name) else {
            let into: Vec<String> = merges(ran)
                .filter(|m| m.removed == name)
                .map(|m| m.into.clone())
                .collect();
            let macs = macs_of(&before_table, &name);
            layers.push(report::Layer {
                name,
                op,
                removed: true,
                merged_into: into,
                techniques: applied,
                params: BeforeAfter {
                    before: pb,
                    after: 0,
                },
                nonzero_params: BeforeAfter {
                    before: nzb,
                    after: 0,
                },
                bytes: BeforeAfter {
                    before: bb,
                    after: 0,
                },
                storage: None,
                macs: BeforeAfter {
                    before: macs,
                    after: 0,
                },
                nonzero_macs: BeforeAfter {
                    before: macs,
                    after: 0,
                },
                output_error: None,
            });
            continue;
        };
        // A layer a technique split (`factorize`) is itself plus the layers it added, which
        // are named `<layer>.<part>` and absent from the original.
        let prefix = format!("{name}.");
        let parts: Vec<(mcc_ir::NodeId, String)> = graph
            .node_ids()
            .into_iter()
            .filter_map(|n| graph.node(n).map(|x| (n, x.name.clone())))
            .filter(|(n, x)| {
                *n == na || (x.starts_with(&prefix) && original.find_node(x).is_none())
            })
            .collect();
        let (mut pa, mut nza, mut ba, mut ma) = (0, 0, 0, 0);
        for (n, part) in &parts {
            let (p, nz, b) = weight_stats(graph, *n);
            (pa, nza, ba) = (pa + p, nza + nz, ba + b);
            ma += macs_of(&after_table, part);
        }
        let mb = macs_of(&before_table, &name);
        layers.push(report::Layer {
            output_error: errors.iter().find(|(n, _)| *n == name).map(|(_, e)| *e),
            name,
            op,
            removed: false,
            merged_into: vec![],
            techniques: applied,
            params: BeforeAfter {
                before: pb,
                after: pa,
            },
            nonzero_params: BeforeAfter {
                before: nzb,
                after: nza,
            },
            bytes: BeforeAfter {
                before: bb,
                after: ba,
            },
            storage: storage(graph, na),
            macs: BeforeAfter {
                before: mb,
                after: ma,
            },
            nonzero_macs: BeforeAfter {
                before: mb,
                after: if pa > 0 {
                    (ma as f64 * nza as f64 / pa as f64).round() as u64
                } else {
                    0
                },
            },
        });
    }
    let (tp_b, nz_b, by_b) = totals(original);
    let (tp_a, nz_a, by_a) = totals(graph);
    let model_totals = report::Totals {
        params: BeforeAfter {
            before: tp_b,
            after: tp_a,
        },
        nonzero_params: BeforeAfter {
            before: nz_b,
            after: nz_a,
        },
        bytes: BeforeAfter {
            before: by_b,
            after: by_a,
        },
        macs: BeforeAfter {
            before: before_table.macs,
            after: after_table.macs,
        },
        accuracy: measured.accuracy,
        output_fidelity: measured.fidelity,
    };
    // Budgets.
    let mut violations = vec![];
    let mut budget = vec![];
    for b in &plan.budget {
        let value = match b.metric {
            Metric::AccuracyDrop => measured
                .accuracy
                .map(|a| crate::sensitivity::accuracy_drop(a.before, a.after)),
            Metric::Size => Some(model_totals.bytes.after as f64),
            Metric::Flops => Some(model_totals.macs.after as f64),
            Metric::OutputError => measured.fidelity.map(|f| f.relative_l2),
            Metric::Latency => latency.map(|l| l.after_ms / 1e3),
        };
        let ok = value.is_some_and(|m| b.cmp.holds(m, b.bound));
        if b.metric == Metric::Latency {
            // Not in report.json, which depends only on the inputs: the time is in
            // timings.json; a build that exists met the budget.
            let measured = match (latency, value) {
                (Some(l), Some(_)) => format!(
                    "{:.3} ms median of {} runs at batch 1 on {} thread(s), {}{}",
                    l.after_ms,
                    l.runs,
                    l.threads,
                    l.cpu,
                    l.before_ms
                        .map(|b| format!(" (original: {b:.3} ms)"))
                        .unwrap_or_default()
                ),
                _ => format!(
                    "not measured: the compressed model has no native code ({})",
                    compressed.note.as_deref().unwrap_or("it did not compile")
                ),
            };
            if !ok {
                violations.push((b.text.clone(), b.line, measured));
            }
            budget.push(report::BudgetRow {
                constraint: b.text.clone(),
                line: b.line,
                value: None,
                measured: "met on the build machine (the time is in timings.json)".into(),
                ok,
            });
            continue;
        }
        let measured = match (b.metric, value) {
            (_, None) => "not measured".to_string(),
            (Metric::AccuracyDrop, Some(m)) => format!("{:.2}%", m * 100.0),
            (Metric::Size, Some(m)) => format!("{m} bytes"),
            (Metric::Flops, Some(m)) => format!("{m} MACs"),
            (Metric::OutputError, Some(m)) => format!("{m:.3e} relative L2"),
            (Metric::Latency, Some(m)) => format!("{:.3} ms", m * 1e3),
        };
        if !ok {
            violations.push((b.text.clone(), b.line, measured.clone()));
        }
        budget.push(report::BudgetRow {
            constraint: b.text.clone(),
            line: b.line,
            value,
            measured,
            ok,
        });
    }
    let mut merged = vec![];
    let mut left_alone = vec![];
    for r in ran {
        let technique = format!("{} {}", r.step.technique, r.step.variant);
        for m in &r.outcome.merged {
            merged.push(report::MergedRow {
                removed: m.removed.clone(),
                into: m.into.clone(),
                step: r.id.0,
                technique: technique.clone(),
                recipe_line: r.step.origin.line,
            });
        }
        for l in &r.outcome.left_alone {
            left_alone.push(report::LeftAloneRow {
                node: l.node.clone(),
                step: r.id.0,
                technique: technique.clone(),
                reason: l.reason,
                why: l.detail.clone(),
                recipe_line: r.step.origin.line,
            });
        }
    }
    let file = |p: &Option<mcc_plan::plan::DataSet>| {
        p.as_ref().map(|d| sha256_file(&d.inputs)).transpose()
    };
    let inputs = report::Inputs {
        recipe: sha256_file(&s.recipe)?,
        model: sha256_file(&s.model.path)?,
        calibration: file(&plan.calibrate)?,
        evaluation: file(&plan.evaluate)?,
        labels: plan
            .evaluate
            .as_ref()
            .and_then(|d| d.labels.as_deref())
            .map(sha256_file)
            .transpose()?,
    };
    let isa = mcc_runtime::kernels::gemm::Isa::detect().name().to_string();
    let measurement = report::Measurement {
        engine: compressed.engine,
        engine_note: compressed.note.clone(),
        isa,
        calibration_samples: data
            .calibration
            .as_ref()
            .map_or(0, |x| x.shape().first().copied().unwrap_or(0)),
        evaluation_samples: measured.samples,
    };
    Ok((
        Report {
            schema_version: report::SCHEMA_VERSION,
            mcc_version: env!("CARGO_PKG_VERSION").to_string(),
            inputs,
            measurement,
            layers,
            model_totals,
            budget,
            merged,
            left_alone,
            native: None,
            allocation: None,
            predictions: measured.predictions.clone(),
            stages: None,
            attribution: None,
        },
        violations,
    ))
}
