//! Driving a recipe: `check` (recipe + model + data shapes), `explain` (the per-layer plan)
//! and `build` (run the plan, measure, write outputs atomically).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mcc_ir::{Dim, Graph, StepId};
use mcc_plan::Registry;
use mcc_plan::plan::{self, Checked, DataSet, Diag, ParamValue, Severity};
use mcc_recipe::ast::Span;

use crate::build::BuildResult;
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
    /// The techniques the recipe was checked against, and that run its steps.
    pub registry: Registry,
}

impl Session {
    /// Every file a build of this session reads, each once, in this order: the recipe, the
    /// model and its external data files, the calibration inputs and labels, the evaluation
    /// inputs and labels (the standard recipes are part of mcc, not files it reads).
    pub fn inputs(&self) -> Vec<PathBuf> {
        let mut out = vec![self.recipe.clone()];
        out.extend(self.model.files.iter().cloned());
        let plan = &self.checked.plan;
        for set in [&plan.calibrate, &plan.evaluate].into_iter().flatten() {
            out.push(set.inputs.clone());
            out.extend(set.labels.clone());
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }
}

/// A Make rule (`targets: inputs`, the form compilers write with `-MD`) saying that each of
/// `targets` depends on each of `inputs`, spaces, `#` and `$` escaped; one path a line.
pub fn depfile(targets: &[PathBuf], inputs: &[PathBuf]) -> String {
    let esc = |p: &PathBuf| {
        let mut out = String::new();
        for c in p.display().to_string().chars() {
            match c {
                ' ' => out.push_str("\\ "),
                '#' => out.push_str("\\#"),
                '$' => out.push_str("$$"),
                c => out.push(c),
            }
        }
        out
    };
    let mut s = targets.iter().map(esc).collect::<Vec<_>>().join(" \\\n");
    s.push(':');
    for i in inputs {
        s.push_str(" \\\n  ");
        s.push_str(&esc(i));
    }
    s.push('\n');
    s
}

/// Reads and checks a recipe against a model and mcc's standard techniques, including its
/// data files' shapes.
pub fn check(recipe: &Path, model: &Path) -> Result<Session, Error> {
    check_with(recipe, model, mcc_passes::registry())
}

/// Like [`check`], against the techniques of `registry`.
pub fn check_with(recipe: &Path, model: &Path, registry: Registry) -> Result<Session, Error> {
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
    let mut checked = plan::check(&source, &name, base, &model.graph, &model_name, &registry);
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
        registry,
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
    // Headers only: `check` reads no data (the data is read, fallibly, when a build uses it).
    let n = match tensor_io::check_input(&set.inputs, &input.name, &input.ty) {
        Ok(shape) if shape.first() == Some(&0) => {
            out.push(data_diag(
                set.inputs_span,
                "empty",
                format!(
                    "`{}` holds no samples: nothing can be calibrated or measured on it",
                    set.inputs.display()
                ),
                "an empty data set",
                Some("give it at least one sample (the batch axis is its first)".into()),
            ));
            Some(0)
        }
        Ok(shape) => shape.first().copied(),
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
        if let Some(d) = unbatched_output(graph, span) {
            out.push(d);
        }
        match tensor_io::read_header(path) {
            Err(e) => out.push(data_diag(
                span,
                "bad_labels",
                e.to_string(),
                "cannot read the labels",
                None,
            )),
            Ok((dtype, shape)) if dtype.is_float() || shape.len() != 1 => out.push(data_diag(
                span,
                "bad_labels",
                format!(
                    "labels must be a 1-D integer array, `{}` holds {dtype}{shape:?}",
                    path.display(),
                ),
                "not class labels",
                None,
            )),
            Ok((_, shape)) if n.is_some_and(|n| n != shape[0]) => out.push(data_diag(
                span,
                "bad_labels",
                format!("{} labels for {} samples", shape[0], n.unwrap_or(0)),
                "one label per sample",
                None,
            )),
            Ok(_) => {}
        }
    }
    out
}

/// Labels are matched with the model's first output one row per sample, so that output
/// must lead with the input's batch axis: a diagnostic when it provably does not (an
/// unknown first dimension gets the benefit of the doubt).
fn unbatched_output(graph: &Graph, span: Span) -> Option<Diag> {
    let input = graph.value(*graph.inputs().first()?);
    let output = graph.value(*graph.outputs().first()?);
    let batch = input.ty.shape.as_ref()?.first()?;
    let leads = match output.ty.shape.as_ref()?.first() {
        Some(Dim::Unknown) => true,
        Some(d) => d == batch,
        None => false,
    };
    (!leads).then(|| {
        data_diag(
            span,
            "unbatched_output",
            format!(
                "labels need one row of scores per sample, but the model's output `{}` is {}: its first axis is not the batch axis of input `{}` ({})",
                output.name, output.ty, input.name, input.ty
            ),
            "labels for an output without a batch axis",
            Some(
                "evaluate a classifier whose first output is [batch, classes], or drop `labels` to compare outputs only".into(),
            ),
        )
    })
}

/// Dry-runs the plan on a copy of the model, in order, and returns what each step would say
/// of a layer — that it leaves it alone, and why, or the technique's note on it (the group
/// filter pruning takes it with) — keyed by (step number, layer): a data-free step is run on
/// the copy (so later steps see its result, as in the build), the others are only checked.
fn dry_run(s: &Session) -> BTreeMap<(usize, String), String> {
    let mut graph = s.model.graph.clone();
    let mut out: BTreeMap<(usize, String), String> = BTreeMap::new();
    let mut index = 0;
    for stage in &s.checked.plan.stages {
        for step in &stage.steps {
            index += 1;
            let Some(technique) = s.registry.implementation(step.technique, step.variant) else {
                continue;
            };
            for (layer, note) in technique.notes(&graph, step) {
                out.insert((index, layer), note);
            }
            let left = if technique.needs(&graph, step).is_empty() {
                let r = technique.rewrite(
                    &mut graph,
                    step,
                    StepId(index as u32),
                    &mut mcc_plan::technique::NoStats,
                );
                let _ = mcc_ir::infer_all(&mut graph);
                r.map(|o| o.left_alone)
            } else {
                technique.check(&graph, step)
            };
            for l in left.unwrap_or_default() {
                out.insert((index, l.node), format!("left alone: {}", l.detail));
            }
        }
    }
    out
}

/// The per-layer plan: for every node, the techniques it gets and the recipe lines that set them.
pub fn explain(s: &Session) -> String {
    let files = &s.checked.files;
    let mut rows: BTreeMap<&str, Vec<(String, String, String)>> = BTreeMap::new();
    let refused = dry_run(s);
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
                // Steps that will leave a layer alone say so now, with the reason; others
                // may say more (the group filter pruning takes the layer with).
                if let Some(note) = refused.get(&(step_index, n.clone())) {
                    what = format!("{what} — {note}");
                }
                rows.entry(n.as_str())
                    .or_default()
                    .push((stage.name.clone(), what, from));
            }
        }
    }
    let facts = mcc_plan::select::facts(&s.model.graph);
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

/// Writes `model.mcir` (the review form), `model.full.mcir` (the compressed model, weights in
/// stored form), `model.onnx`, `report.json`,
/// `report.html` and `timings.json` (and, with `ir_diffs`,
/// one diff per step under `ir-diffs/`; with `native`, the native outputs) into `dir`, atomically: everything goes to a sibling temporary
/// folder that is renamed into place at the end.
pub fn write_outputs(
    dir: &Path,
    result: &BuildResult,
    ir_diffs: bool,
    native: Option<&crate::native::NativeBuild>,
) -> Result<Option<crate::native::Written>, Error> {
    let emit = Emitted {
        ir_diffs,
        ..Emitted::default()
    };
    let name = native.map_or("", |n| n.name.as_str());
    write_selected(dir, result, &emit, native.map(|n| (n, None)), name)
}

/// Which outputs a build writes (`mcc build --emit`): by default all but the IR diffs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emitted {
    /// `model.mcir` and `model.full.mcir`.
    pub ir: bool,
    /// `model.onnx`.
    pub onnx: bool,
    /// `report.json` and `timings.json`.
    pub report: bool,
    /// `report.html`.
    pub html: bool,
    /// The executable (with native code).
    pub exe: bool,
    /// The object file, its header and the runtime library (with native code).
    pub obj: bool,
    /// `ir-diffs/`.
    pub ir_diffs: bool,
}

impl Default for Emitted {
    fn default() -> Emitted {
        Emitted {
            ir: true,
            onnx: true,
            report: true,
            html: true,
            exe: true,
            obj: true,
            ir_diffs: false,
        }
    }
}

/// [`write_outputs`] of the outputs `emit` selects; the folder then holds those (and files a
/// user put there), nothing from an older build. `name` is the native code's name (the
/// model's stem), also when no native code is written: an older build's may be there. The
/// native outputs come staged already ([`crate::native::stage`], linked while the build
/// measured) or are written here.
pub fn write_selected(
    dir: &Path,
    result: &BuildResult,
    emit: &Emitted,
    native: Option<(&crate::native::NativeBuild, Option<crate::native::Staged>)>,
    name: &str,
) -> Result<Option<crate::native::Written>, Error> {
    let ir_diffs = emit.ir_diffs;
    // A folder is mcc's to replace when it is empty or holds an output of a build.
    let ours = |dir: &Path| {
        std::fs::read_dir(dir).is_ok_and(|d| {
            let mut names = d.filter_map(|e| e.ok()).map(|e| e.file_name()).peekable();
            names.peek().is_none()
                || names.any(|n| is_build_output(&n.to_string_lossy(), Some(name)))
        })
    };
    if dir.exists() && !ours(dir) {
        return Err(Error::Usage(format!(
            "`{}` exists and is not an mcc output folder; refusing to replace it",
            dir.display()
        )));
    }
    let parent = crate::cleanup::parent_of(dir);
    std::fs::create_dir_all(parent).map_err(|cause| Error::Io {
        path: parent.to_path_buf(),
        cause,
    })?;
    // Temporary folders of builds that were killed (an interrupt removes its own).
    crate::cleanup::remove_stale(dir);
    let pending = crate::cleanup::Pending::new(crate::cleanup::partial_name(dir));
    let tmp = pending.path().to_path_buf();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| Error::Io { path, cause }
    };
    let res = (|| -> Result<Option<crate::native::Written>, Error> {
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        if emit.ir {
            std::fs::write(tmp.join("model.mcir"), mcc_ir::text::print(&result.graph))
                .map_err(io(&tmp.join("model.mcir")))?;
        }
        // The compressed model itself, exactly as the native code compiles it: weights in
        // their stored form, integer layers and fused activations as they are (model.onnx,
        // standard ONNX, says some of it otherwise: QDQ pairs, a fused activation as an
        // operator of its own). `mcc` reads it back (`mcc run`, `mcc bench --report`).
        if emit.ir {
            let full = mcc_ir::text::print_with(
                &result.graph,
                mcc_ir::text::PrintOptions { weights: true },
            );
            std::fs::write(tmp.join("model.full.mcir"), full)
                .map_err(io(&tmp.join("model.full.mcir")))?;
        }
        if emit.onnx {
            mcc_onnx::export_file(&result.graph, &tmp.join("model.onnx"))?;
        }
        let mut report = result.report.clone();
        let mut timings = result.timings.clone();
        let mut written = None;
        if let Some((n, staged)) = native {
            let w = match staged {
                Some(s) => s.move_into(&tmp)?,
                None => crate::native::write(&tmp, n, emit.exe, emit.obj)?,
            };
            let p = &n.programs[0];
            let weight_bytes = mcc_codegen::aot::weight_data_bytes(&n.programs, &n.weights);
            report.native = Some(crate::report::Native {
                name: n.name.clone(),
                object: format!("{}.o", n.name),
                header: format!("{}.h", n.name),
                runtime_library: "libmcc_runtime.a".into(),
                executable: w.executable.clone(),
                no_executable: w.no_executable.clone(),
                steps: p.steps.len(),
                inline_steps: p
                    .steps
                    .iter()
                    .filter(|s| mcc_codegen::clif::is_inline(s))
                    .count(),
                arena_bytes_per_sample: p.arena as u64 * 4,
                scratch_bytes: p.scratch as u64 * 4,
                weight_bytes: weight_bytes as u64,
                weights_stored: n
                    .weights
                    .first()
                    .is_some_and(mcc_codegen::aot::WeightData::is_stored),
                fixed_batch: p.fixed_batch,
                input_sizes: n
                    .programs
                    .iter()
                    .map(|p| p.inputs.iter().map(|io| io.dims.clone()).collect())
                    .collect(),
            });
            timings.phases.push(crate::report::Phase {
                phase: "compile native code".into(),
                ms: (n.compile_time.as_secs_f64() * 1e4).round() / 10.0,
            });
            written = Some(w);
        }
        if emit.report {
            std::fs::write(tmp.join("report.json"), to_json(&report)? + "\n")
                .map_err(io(&tmp.join("report.json")))?;
            std::fs::write(tmp.join("timings.json"), to_json(&timings)? + "\n")
                .map_err(io(&tmp.join("timings.json")))?;
        }
        if emit.html {
            // The native files the report names, as written (`mcc bench --report` renders
            // the page again from the same two).
            let files = crate::html::Files::in_folder(&tmp, &report);
            std::fs::write(
                tmp.join("report.html"),
                crate::html::render(&report, &files),
            )
            .map_err(io(&tmp.join("report.html")))?;
        }
        if ir_diffs {
            let d = tmp.join("ir-diffs");
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            for (name, diff) in &result.ir_diffs {
                std::fs::write(d.join(name), diff).map_err(io(&d.join(name)))?;
            }
        }
        swap_in(&tmp, dir, name)?;
        Ok(written)
    })();
    if res.is_ok() {
        pending.keep();
    }
    res
}

/// Names a build writes into its folder (`native`: the native code's name, when known):
/// everything else there is the user's.
pub fn is_build_output(name: &str, native: Option<&str>) -> bool {
    const FIXED: &[&str] = &[
        "model.mcir",
        "model.full.mcir",
        "model.onnx",
        "report.json",
        "report.html",
        "timings.json",
        "ir-diffs",
        "libmcc_runtime.a",
    ];
    FIXED.contains(&name)
        || native.is_some_and(|n| {
            name == n
                || name == format!("{n}.o")
                || name == format!("{n}.h")
                || name == format!(".{n}.main.o")
        })
}

/// Puts the finished folder `tmp` in place of `dir`. Files the user added to an older `dir`
/// move into the new one (a rebuild never deletes them); the old folder is renamed aside
/// first and restored if the new one cannot be moved in, so a failure at any point leaves a
/// whole folder — the old or the new — at `dir`. `current`: this build's native name.
fn swap_in(tmp: &Path, dir: &Path, current: &str) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| Error::Io { path, cause }
    };
    if !dir.exists() {
        return std::fs::rename(tmp, dir).map_err(io(dir));
    }
    let old_native: Option<String> = std::fs::read_to_string(dir.join("report.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("native")?.get("name")?.as_str().map(str::to_string));
    for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        // The older build's native name is in its report, when it wrote one; this build's
        // (the same model's stem) counts too.
        let built =
            is_build_output(&name, old_native.as_deref()) || is_build_output(&name, Some(current));
        if !built && !tmp.join(&name).exists() {
            std::fs::rename(e.path(), tmp.join(&name)).map_err(io(&e.path()))?;
        }
    }
    let name = dir
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().to_string());
    let aside = crate::cleanup::parent_of(dir).join(format!(".{name}.old-{}", std::process::id()));
    std::fs::rename(dir, &aside).map_err(io(dir))?;
    if let Err(cause) = std::fs::rename(tmp, dir) {
        let _ = std::fs::rename(&aside, dir);
        return Err(Error::Io {
            path: dir.to_path_buf(),
            cause,
        });
    }
    // The new outputs are in place; a leftover old folder is removed by the next build.
    let _ = std::fs::remove_dir_all(&aside);
    Ok(())
}

/// `v` as pretty JSON, as `report.json` and `timings.json` are written (then a newline).
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_json::to_string_pretty(v).map_err(|e| Error::Usage(e.to_string()))
}
