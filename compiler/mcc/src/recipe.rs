//! Driving a recipe: `check` (recipe + model + data shapes), `explain` (the per-layer plan)
//! and `build` (run the plan, measure, write outputs atomically).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mcc_ir::{Graph, StepId, Tensor, ValueDef};
use mcc_passes::plan::{self, Checked, DataSet, Diag, Metric, ParamValue, Severity, Step};
use mcc_recipe::ast::Span;

use crate::{Error, Model, tensor_io};

/// A checked recipe with its model.
#[derive(Debug, Clone)]
pub struct Session {
    /// The model, canonicalized.
    pub model: Model,
    /// The recipe's path.
    pub recipe: PathBuf,
    /// The recipe's text.
    pub source: String,
    /// The check result (plan and diagnostics).
    pub checked: Checked,
}

/// Reads and checks a recipe against a model, including its data files' shapes.
pub fn check(recipe: &Path, model: &Path) -> Result<Session, Error> {
    let source = std::fs::read_to_string(recipe).map_err(|cause| Error::Io {
        path: recipe.to_path_buf(),
        cause,
    })?;
    let model = crate::load(model)?;
    let base = recipe.parent().unwrap_or(Path::new("."));
    let model_name = model.path.file_name().map_or_else(
        || model.path.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    let name = recipe.file_name().map_or_else(
        || recipe.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    );
    let mut checked = plan::check(&source, &name, base, &model.graph, &model_name);
    let mut extra = vec![];
    for set in [&checked.plan.calibrate, &checked.plan.evaluate]
        .into_iter()
        .flatten()
    {
        // Messages name the files as the recipe writes them, not as resolved.
        let written = |span: Span| {
            source
                .get(span.start as usize + 1..(span.end as usize).saturating_sub(1))
                .unwrap_or("")
                .to_string()
        };
        for mut d in check_data(set, &model.graph) {
            d.message = d
                .message
                .replace(&set.inputs.display().to_string(), &written(set.inputs_span));
            if let (Some(l), Some(sp)) = (&set.labels, set.labels_span) {
                d.message = d.message.replace(&l.display().to_string(), &written(sp));
            }
            extra.push(d);
        }
    }
    checked.diags.extend(extra);
    checked.diags.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(a.file.cmp(&b.file))
            .then(a.span.start.cmp(&b.span.start))
    });
    Ok(Session {
        model,
        recipe: recipe.to_path_buf(),
        source,
        checked,
    })
}

fn data_diag(span: Span, code: &str, message: String, label: &str, help: Option<String>) -> Diag {
    Diag {
        severity: Severity::Error,
        code: format!("mcc::data::{code}"),
        message,
        label: label.into(),
        file: 0,
        span,
        help,
    }
}

/// Checks a data set's files against the model's (single) input: readable `.npy`, the input's
/// dtype and shape, integer labels, one per sample.
fn check_data(set: &DataSet, graph: &Graph) -> Vec<Diag> {
    let mut out = vec![];
    if graph.inputs().len() != 1 {
        out.push(data_diag(
            set.span,
            "multi_input",
            format!(
                "data for a model with {} inputs is not supported yet",
                graph.inputs().len()
            ),
            "one .npy file per model input is planned",
            None,
        ));
        return out;
    }
    let input = graph.value(graph.inputs()[0]);
    let n = match tensor_io::read_input(&set.inputs, &input.name, &input.ty) {
        Ok(t) => t.shape().first().copied(),
        Err(e) => {
            out.push(data_diag(
                set.inputs_span,
                "bad_inputs",
                e.to_string(),
                "cannot be used as the model's input",
                miette::Diagnostic::help(&e).map(|h| h.to_string()),
            ));
            None
        }
    };
    if let (Some(path), Some(span)) = (&set.labels, set.labels_span) {
        match tensor_io::read_npy(path) {
            Err(e) => out.push(data_diag(
                span,
                "bad_labels",
                e.to_string(),
                "cannot read the labels",
                None,
            )),
            Ok(l) if l.dtype().is_float() || l.shape().len() != 1 => out.push(data_diag(
                span,
                "bad_labels",
                format!(
                    "labels must be a 1-D integer array, `{}` holds {}{:?}",
                    path.display(),
                    l.dtype(),
                    l.shape()
                ),
                "not class labels",
                None,
            )),
            Ok(l) if n.is_some_and(|n| n != l.shape()[0]) => out.push(data_diag(
                span,
                "bad_labels",
                format!("{} labels for {} samples", l.shape()[0], n.unwrap_or(0)),
                "one label per sample",
                None,
            )),
            Ok(_) => {}
        }
    }
    out
}

/// Runs the plan's merge steps (exact, cheap, data-free) on a copy of the model, in order, and
/// returns which layers each would leave alone and why, keyed by (step number, layer).
fn dry_run_merges(s: &Session) -> BTreeMap<(usize, String), String> {
    let mut graph = s.model.graph.clone();
    let mut out = BTreeMap::new();
    let mut index = 0;
    for stage in &s.checked.plan.stages {
        for step in &stage.steps {
            index += 1;
            let id = StepId(index as u32);
            let res = match step.technique {
                "merge" => match mcc_passes::run_merge(step, &mut graph, id) {
                    Some(r) => r,
                    None => continue,
                },
                _ => continue,
            };
            if let Ok((_, left)) = res {
                for l in left {
                    out.insert((index, l.node), l.why);
                }
            }
            let _ = mcc_ir::infer_all(&mut graph);
        }
    }
    out
}

/// The per-layer plan: for every node, the techniques it gets and the recipe lines that set them.
pub fn explain(s: &Session) -> String {
    let files = &s.checked.files;
    let mut rows: BTreeMap<&str, Vec<(String, String, String)>> = BTreeMap::new();
    let refused = dry_run_merges(s);
    let mut step_index = 0;
    for stage in &s.checked.plan.stages {
        for step in &stage.steps {
            step_index += 1;
            for n in &step.nodes {
                let params: Vec<String> = step
                    .params
                    .iter()
                    .map(|(k, v)| format!("{k}={}", pretty(v)))
                    .collect();
                let mut from = format!("{}:{}", files[step.origin.file].name, step.origin.line);
                if let Some(via) = step.origin.via {
                    from.push_str(&format!(" (used at {}:{via})", files[0].name));
                }
                let mut what = format!("{} {} {}", step.technique, step.variant, params.join(" "))
                    .trim()
                    .to_string();
                // Merges that will refuse a layer say so now, with the reason.
                if let Some(why) = refused.get(&(step_index, n.clone())) {
                    what = format!("{what} — left alone: {why}");
                }
                rows.entry(n.as_str())
                    .or_default()
                    .push((stage.name.clone(), what, from));
            }
        }
    }
    let facts = mcc_passes::select::facts(&s.model.graph);
    let w = facts.iter().map(|f| f.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<w$}  {:<18}  {:<10}  {:<40}  from\n",
        "node", "op", "stage", "technique"
    );
    for f in &facts {
        match rows.get(f.name.as_str()) {
            None => out.push_str(
                format!(
                    "{:<w$}  {:<18}  {:<10}  {:<40}  \n",
                    f.name, f.op, "-", "(unchanged)"
                )
                .trim_end(),
            ),
            Some(list) => {
                for (i, (stage, tech, from)) in list.iter().enumerate() {
                    let (name, op) = if i == 0 {
                        (f.name.as_str(), f.op)
                    } else {
                        ("", "")
                    };
                    out.push_str(
                        format!("{name:<w$}  {op:<18}  {stage:<10}  {tech:<40}  {from}").trim_end(),
                    );
                    if i + 1 < list.len() {
                        out.push('\n');
                    }
                }
            }
        }
        out.push('\n');
    }
    let steps: usize = s.checked.plan.stages.iter().map(|st| st.steps.len()).sum();
    let touched = rows.len();
    out.push_str(&format!(
        "\n{} stage(s), {steps} step(s), {touched} of {} layers changed\n",
        s.checked
            .plan
            .stages
            .iter()
            .filter(|st| !st.steps.is_empty())
            .count(),
        facts.len()
    ));
    out
}

fn pretty(v: &ParamValue) -> String {
    match v {
        ParamValue::Num(n) => format!("{n}"),
        other => other.to_string(),
    }
}

/// Per-layer output comparison accumulators.
#[derive(Default, Clone, Copy)]
struct Acc {
    dot: f64,
    ref_sq: f64,
    out_sq: f64,
    diff_sq: f64,
}

/// What a build measured.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// `report.json` contents.
    pub report: serde_json::Value,
    /// Budget constraints that failed: (constraint text, line, measured value as text).
    pub violations: Vec<(String, usize, String)>,
    /// The compressed graph.
    pub graph: Graph,
    /// For every step that changed the IR: a file name (`01-stage-technique-variant.diff`)
    /// and the unified diff of the IR text before and after it.
    pub ir_diffs: Vec<(String, String)>,
}

fn weight_stats(graph: &Graph, node: mcc_ir::NodeId) -> (usize, usize) {
    let Some(n) = graph.node(node) else {
        return (0, 0);
    };
    let mut total = 0;
    let mut nonzero = 0;
    for v in n.inputs.iter().flatten() {
        if let Some(t) = graph.const_data(*v).filter(|t| t.dtype().is_float()) {
            total += t.len();
            nonzero += t.count_nonzero();
        }
    }
    (total, nonzero)
}

fn totals(graph: &Graph) -> (usize, usize) {
    let (mut total, mut nonzero) = (0, 0);
    for v in graph.value_ids() {
        if let ValueDef::Const(_) = graph.value(v).def
            && let Some(t) = graph.const_data(v).filter(|t| t.dtype().is_float())
            && graph.is_used(v)
        {
            total += t.len();
            nonzero += t.count_nonzero();
        }
    }
    (total, nonzero)
}

fn accuracy(
    graph: &Graph,
    x: &Tensor,
    labels: &[i64],
    bar: &indicatif::ProgressBar,
) -> Result<f64, Error> {
    let mut correct = 0usize;
    let mut off = 0usize;
    for chunk in tensor_io::split_batch(x, 100) {
        let k = chunk.shape()[0];
        let y = mcc_ir::run(graph, &[chunk])?.remove(0);
        let c = y.shape().get(1).copied().unwrap_or(1);
        let v = y.to_f64_vec();
        for r in 0..k {
            let row = &v[r * c..(r + 1) * c];
            let best = row
                .iter()
                .enumerate()
                .fold(0, |b, (i, &x)| if x > row[b] { i } else { b });
            if labels.get(off + r) == Some(&(best as i64)) {
                correct += 1;
            }
        }
        off += k;
        bar.inc(k as u64);
    }
    Ok(correct as f64 / labels.len().max(1) as f64)
}

fn bar(len: u64, msg: &'static str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(
        indicatif::ProgressStyle::with_template("{msg:>22} [{bar:30}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(msg);
    b
}

/// Compares the compiled IR with a committed snapshot: `Ok` when equal, or when `bless` is
/// set (the snapshot is then written). A difference fails with the readable diff.
pub fn check_snapshot(path: &Path, graph: &Graph, bless: bool) -> Result<(), Error> {
    let now = mcc_ir::text::print(graph);
    if bless {
        return crate::write_atomic(path, now.as_bytes());
    }
    let then = std::fs::read_to_string(path).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let diff = mcc_ir::text::diff::unified(&then, &now, &path.display().to_string(), "compiled");
    if diff.is_empty() {
        Ok(())
    } else {
        Err(Error::Snapshot {
            path: path.to_path_buf(),
            diff,
        })
    }
}

fn fnv1a64(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Runs the plan and measures it. The caller writes the outputs.
pub fn build(s: &Session) -> Result<BuildResult, Error> {
    build_with(s, false)
}

/// Like [`build`]; with `ir_diffs`, also records the IR diff of every step that changed
/// something (printing the IR hashes every weight, so it is only done when asked).
pub fn build_with(s: &Session, ir_diffs_wanted: bool) -> Result<BuildResult, Error> {
    let original = &s.model.graph;
    let mut graph = original.clone();
    let plan = &s.checked.plan;
    // Run the steps, stage by stage.
    let mut step_id = 0u32;
    let mut applied: Vec<(StepId, &Step, String)> = vec![];
    let mut ir_diffs = vec![];
    let mut left_alone: Vec<serde_json::Value> = vec![];
    // (removed norm, layer that absorbed it)
    let mut merges: Vec<mcc_passes::merge::Merged> = vec![];
    let mut merged_rows: Vec<serde_json::Value> = vec![];
    let mut text = if ir_diffs_wanted {
        mcc_ir::text::print(&graph)
    } else {
        String::new()
    };
    for stage in &plan.stages {
        for step in &stage.steps {
            step_id += 1;
            let id = StepId(step_id);
            match (step.technique, step.variant) {
                ("prune", "unstructured") => {
                    let amount = match step.param("amount") {
                        Some(ParamValue::Num(a)) => *a,
                        _ => 0.0,
                    };
                    mcc_passes::prune_unstructured::run(&mut graph, &step.nodes, amount, id)?;
                }
                ("merge", variant) => {
                    let (done, skipped) = mcc_passes::run_merge(step, &mut graph, id)
                        .ok_or_else(|| Error::Usage(format!("`merge {variant}` passed the check but has no implementation (a bug in mcc)")))??;
                    for m in done {
                        merged_rows.push(serde_json::json!({"removed": m.removed, "into": m.into, "step": step_id, "technique": format!("merge {variant}"), "recipe_line": step.origin.line}));
                        merges.push(m);
                    }
                    for l in skipped {
                        left_alone.push(serde_json::json!({"node": l.node, "step": step_id, "technique": format!("merge {variant}"), "why": l.why, "recipe_line": step.origin.line}));
                    }
                }
                (t, v) => {
                    return Err(Error::Usage(format!(
                        "`{t} {v}` passed the check but has no implementation (a bug in mcc)"
                    )));
                }
            }
            mcc_ir::infer_all(&mut graph).map_err(|(node, op, e)| {
                Error::Usage(format!("after step {step_id}: node `{node}` ({op}): {e}"))
            })?;
            mcc_ir::verify(&graph)?;
            if ir_diffs_wanted {
                let after = mcc_ir::text::print(&graph);
                let origin = format!(
                    "{}:{}",
                    s.checked.files[step.origin.file].name, step.origin.line
                );
                let to = format!(
                    "after step {step_id}: {} {} ({origin})",
                    step.technique, step.variant
                );
                let diff = mcc_ir::text::diff::unified(&text, &after, "before", &to);
                if !diff.is_empty() {
                    ir_diffs.push((
                        format!(
                            "{step_id:02}-{}-{}-{}.diff",
                            stage.name, step.technique, step.variant
                        ),
                        diff,
                    ));
                }
                text = after;
            }
            applied.push((id, step, stage.name.clone()));
        }
    }
    // Per-layer output error on the calibration (else evaluation) data.
    let data = plan.calibrate.as_ref().or(plan.evaluate.as_ref());
    let touched: Vec<String> = {
        let mut v: Vec<String> = applied
            .iter()
            .flat_map(|(_, st, _)| st.nodes.iter().cloned())
            .chain(merges.iter().map(|m| m.into.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut acc: HashMap<String, Acc> = HashMap::new();
    if let Some(set) = data {
        let input = original.value(original.inputs()[0]);
        let x = tensor_io::read_input(&set.inputs, &input.name, &input.ty)?;
        let chunks = tensor_io::split_batch(&x, 32);
        let pb = bar(chunks.len() as u64, "comparing layers");
        // Compare each changed layer's output with what the original computed at that point:
        // its own output, or, for a layer that absorbed a norm, the norm's output.
        let out_name = |g: &Graph, n: &str| {
            g.find_node(n)
                .and_then(|id| g.node(id))
                .and_then(|node| node.outputs.first().map(|&o| g.value(o).name.clone()))
        };
        let watch: Vec<(String, String, String)> = touched
            .iter()
            .filter_map(|n| {
                // The last merge into a layer says which original output it now computes.
                let reference_at = merges
                    .iter()
                    .rfind(|m| &m.into == n)
                    .map_or(n.as_str(), |m| m.stands_for.as_str());
                Some((
                    n.clone(),
                    out_name(original, reference_at)?,
                    out_name(&graph, n)?,
                ))
            })
            .collect();
        for chunk in chunks {
            let mut reference: HashMap<String, Tensor> = HashMap::new();
            mcc_ir::run_observed(original, std::slice::from_ref(&chunk), &mut |v, t| {
                let name = &original.value(v).name;
                if watch.iter().any(|(_, o, _)| o == name) {
                    reference.insert(name.clone(), t.clone());
                }
            })?;
            mcc_ir::run_observed(&graph, &[chunk], &mut |v, t| {
                let name = &graph.value(v).name;
                let hit = watch.iter().find(|(_, _, c)| c == name);
                if let Some((layer, r)) = hit.and_then(|(l, o, _)| reference.get(o).map(|r| (l, r)))
                {
                    let a = acc.entry(layer.clone()).or_default();
                    for (x, y) in t.to_f64_vec().iter().zip(r.to_f64_vec()) {
                        a.dot += x * y;
                        a.ref_sq += y * y;
                        a.out_sq += x * x;
                        a.diff_sq += (x - y) * (x - y);
                    }
                }
            })?;
            pb.inc(1);
        }
        pb.finish_and_clear();
    }
    // Accuracy before and after on labelled evaluation data.
    let mut acc_before = None;
    let mut acc_after = None;
    if let Some(set) = plan.evaluate.as_ref().filter(|e| e.labels.is_some()) {
        let input = original.value(original.inputs()[0]);
        let x = tensor_io::read_input(&set.inputs, &input.name, &input.ty)?;
        let labels =
            tensor_io::read_npy(set.labels.as_deref().unwrap_or(Path::new("")))?.to_i64_vec();
        let n = x.shape()[0] as u64;
        let b = bar(n, "accuracy (original)");
        acc_before = Some(accuracy(original, &x, &labels, &b)?);
        b.finish_and_clear();
        let b = bar(n, "accuracy (compressed)");
        acc_after = Some(accuracy(&graph, &x, &labels, &b)?);
        b.finish_and_clear();
    }
    // Per-layer rows.
    let before_table = crate::inspect::table(original);
    let after_table = crate::inspect::table(&graph);
    let mut layers = vec![];
    for name in &touched {
        let Some(nb) = original.find_node(name) else {
            continue;
        };
        let Some(na) = graph.find_node(name) else {
            // Removed by a merge.
            let into: Vec<&str> = merges
                .iter()
                .filter(|m| &m.removed == name)
                .map(|m| m.into.as_str())
                .collect();
            let into = (!into.is_empty()).then(|| into.join(", "));
            let (pb_, _) = weight_stats(original, nb);
            layers.push(serde_json::json!({
                "name": name, "op": original.node(nb).map_or("", |n| n.op.name()),
                "removed": true, "merged_into": into,
                "params": {"before": pb_, "after": 0}, "bytes": {"before": pb_ * 4, "after": 0},
            }));
            continue;
        };
        let (pb_, nzb) = weight_stats(original, nb);
        let (pa, nza) = weight_stats(&graph, na);
        let macs_b = before_table
            .rows
            .iter()
            .find(|r| &r.name == name)
            .map_or(0, |r| r.macs);
        let macs_a = after_table
            .rows
            .iter()
            .find(|r| &r.name == name)
            .map_or(0, |r| r.macs);
        let techniques: Vec<serde_json::Value> = applied
            .iter()
            .filter(|(_, st, _)| st.nodes.contains(name))
            .map(|(id, st, stage)| {
                serde_json::json!({
                    "step": id.0, "stage": stage, "technique": st.technique, "variant": st.variant,
                    "params": st.params.iter().map(|(k, v)| (k.to_string(), match v { ParamValue::Num(x) => serde_json::json!(x), other => serde_json::json!(other.to_string()) })).collect::<serde_json::Map<_, _>>(),
                    "recipe_line": st.origin.line,
                    "recipe_file": s.checked.files[st.origin.file].name,
                })
            })
            .collect();
        let error = acc.get(name).map(|a| {
            serde_json::json!({
                "relative_l2": if a.ref_sq > 0.0 { (a.diff_sq / a.ref_sq).sqrt() } else { a.diff_sq.sqrt() },
                "cosine": if a.ref_sq > 0.0 && a.out_sq > 0.0 { a.dot / (a.ref_sq.sqrt() * a.out_sq.sqrt()) } else { 1.0 },
            })
        });
        let op = original.node(nb).map_or("", |n| n.op.name());
        layers.push(serde_json::json!({
            "name": name, "op": op, "techniques": techniques,
            "params": {"before": pb_, "after": pa},
            "nonzero_params": {"before": nzb, "after": nza},
            "bytes": {"before": pb_ * 4, "after": pa * 4},
            "macs": {"before": macs_b, "after": macs_a},
            "nonzero_macs": {"before": macs_b, "after": if pa > 0 { (macs_a as f64 * nza as f64 / pa as f64).round() as u64 } else { 0 }},
            "output_error": error,
        }));
    }
    let (tp_b, nz_b) = totals(original);
    let (tp_a, nz_a) = totals(&graph);
    // Budgets.
    let mut violations = vec![];
    let mut budget = vec![];
    for b in &plan.budget {
        let measured = match b.metric {
            Metric::AccuracyDrop => match (acc_before, acc_after) {
                (Some(x), Some(y)) => Some(x - y),
                _ => None,
            },
            Metric::Size => Some((tp_a * 4) as f64),
            Metric::Flops => Some(after_table.macs as f64),
        };
        let ok = measured.is_some_and(|m| b.cmp.holds(m, b.bound));
        let shown = match (b.metric, measured) {
            (_, None) => "not measured".to_string(),
            (Metric::AccuracyDrop, Some(m)) => format!("{:.2}%", m * 100.0),
            (Metric::Size, Some(m)) => format!("{m} bytes"),
            (Metric::Flops, Some(m)) => format!("{m} MACs"),
        };
        if !ok {
            violations.push((b.text.clone(), b.line, shown.clone()));
        }
        budget.push(
            serde_json::json!({"constraint": b.text, "line": b.line, "measured": shown, "ok": ok}),
        );
    }
    let report = serde_json::json!({
        "mcc_version": env!("CARGO_PKG_VERSION"),
        "recipe": {"file": s.recipe.display().to_string(), "fnv1a64": fnv1a64(&s.source)},
        "model": {"file": s.model.path.display().to_string(), "nodes": graph.node_count()},
        "note": "bytes count dense f32 storage; pruned weights save bytes once sparse encoding lands. nonzero_macs is the work a sparse kernel would do.",
        "layers": layers,
        "model_totals": {
            "params": {"before": tp_b, "after": tp_a},
            "nonzero_params": {"before": nz_b, "after": nz_a},
            "bytes": {"before": tp_b * 4, "after": tp_a * 4},
            "macs": {"before": before_table.macs, "after": after_table.macs},
            "accuracy": {"before": acc_before, "after": acc_after, "samples": plan.evaluate.as_ref().map(|e| e.inputs.display().to_string())},
        },
        "budget": budget,
        "merged": merged_rows,
        "left_alone": left_alone,
    });
    Ok(BuildResult {
        report,
        violations,
        graph,
        ir_diffs,
    })
}

/// Writes `model.mcir`, `model.onnx` and `report.json` (and, with `ir_diffs`, one diff per
/// step under `ir-diffs/`) into `dir`, atomically: everything goes to a sibling temporary
/// folder that is renamed into place at the end.
pub fn write_outputs(
    dir: &Path,
    result: &BuildResult,
    ir_diffs: bool,
    native: Option<&crate::native::NativeBuild>,
) -> Result<Option<crate::native::Written>, Error> {
    if dir.exists()
        && !dir.join("report.json").exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::Usage(format!(
            "`{}` exists and is not an mcc output folder; refusing to replace it",
            dir.display()
        )));
    }
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|cause| Error::Io {
        path: parent.to_path_buf(),
        cause,
    })?;
    let tmp = parent.join(format!(
        ".{}.partial-{}",
        dir.file_name()
            .map_or("out".into(), |n| n.to_string_lossy().to_string()),
        std::process::id()
    ));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| Error::Io { path, cause }
    };
    let res = (|| -> Result<Option<crate::native::Written>, Error> {
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        std::fs::write(tmp.join("model.mcir"), mcc_ir::text::print(&result.graph))
            .map_err(io(&tmp.join("model.mcir")))?;
        mcc_onnx::export_file(&result.graph, &tmp.join("model.onnx"))?;
        let mut report = result.report.clone();
        let mut written = None;
        if let Some(n) = native {
            let w = crate::native::write(&tmp, n)?;
            let p = &n.program;
            report["native"] = serde_json::json!({
                "name": n.name,
                "object": format!("{}.o", n.name),
                "header": format!("{}.h", n.name),
                "runtime_library": "libmcc_runtime.a",
                "executable": w.executable,
                "no_executable": w.no_executable,
                "steps": p.steps.len(),
                "inline_steps": p.steps.iter().filter(|s| mcc_codegen::clif::is_inline(s)).count(),
                "arena_bytes_per_sample": p.arena * 4,
                "scratch_bytes": p.scratch * 4,
                "weight_bytes": p.weights.len() * 4,
                "fixed_batch": p.fixed_batch,
                "compile_ms": (n.compile_time.as_secs_f64() * 1e4).round() / 10.0,
            });
            written = Some(w);
        }
        let json =
            serde_json::to_string_pretty(&report).map_err(|e| Error::Usage(e.to_string()))?;
        std::fs::write(tmp.join("report.json"), json + "\n")
            .map_err(io(&tmp.join("report.json")))?;
        if ir_diffs {
            let d = tmp.join("ir-diffs");
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            for (name, diff) in &result.ir_diffs {
                std::fs::write(d.join(name), diff).map_err(io(&d.join(name)))?;
            }
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
        Ok(written)
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}
