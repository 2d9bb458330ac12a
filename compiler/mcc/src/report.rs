//! `report.json`, typed: what a build did and measured, serialized from these types (field by
//! field in `docs/report.md`; the JSON Schema `docs/report.schema.json` is generated from them
//! and checked in the tests) and read back by `mcc bench --report`, which renders the page
//! again; and the terminal summary rendered from the same data.
//!
//! **Invariant:** the report holds only what the inputs determine — the same model, recipe,
//! data, mcc version and instruction set give the same bytes, whatever the thread count or
//! the machine's load. Wall times and the thread count go to `timings.json` ([`Timings`]).

use std::path::Path;

use mcc_plan::Reason;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The report's format version: bumped when a field changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// How to get a folder whose report this mcc reads.
const REBUILD: &str = "give a folder `mcc build -o DIR` wrote (with its report: an --emit list without `report` leaves report.json and timings.json out), or rebuild it with this mcc";

impl Report {
    /// Reads a `report.json` back (`mcc bench --report`): one of this [`SCHEMA_VERSION`],
    /// else a [`Error::NotABuild`] naming the file and the versions.
    pub fn read(path: &Path) -> Result<Report, Error> {
        let text = read_text(path)?;
        let bad = |message: String| Error::NotABuild {
            path: path.to_path_buf(),
            message,
            help: REBUILD.into(),
        };
        let head: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("is not JSON: {e}")))?;
        let version = head
            .get("schema_version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(SCHEMA_VERSION)) {
            let written = version.map_or("no schema version".to_string(), |v| {
                format!("report schema version {v}")
            });
            let by = head
                .get("mcc_version")
                .and_then(serde_json::Value::as_str)
                .map_or(String::new(), |v| format!(" (written by mcc {v})"));
            return Err(bad(format!(
                "has {written}{by}; this mcc ({}) reads version {SCHEMA_VERSION}",
                env!("CARGO_PKG_VERSION")
            )));
        }
        serde_json::from_value(head)
            .map_err(|e| bad(format!("is not a report this mcc reads: {e}")))
    }
}

impl Timings {
    /// Reads a `timings.json` back (`mcc bench --report` adds to it), with its text (to put
    /// back if a later write fails).
    pub fn read(path: &Path) -> Result<(Timings, String), Error> {
        let text = read_text(path)?;
        let timings = serde_json::from_str(&text).map_err(|e| Error::NotABuild {
            path: path.to_path_buf(),
            message: format!("is not a timings.json this mcc reads: {e}"),
            help: REBUILD.into(),
        })?;
        Ok((timings, text))
    }
}

/// A file of a build's folder: an [`Error::NotABuild`] when it is not there.
fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|cause| match cause.kind() {
        std::io::ErrorKind::NotFound => Error::NotABuild {
            path: path.to_path_buf(),
            message: "does not exist: not a folder `mcc build` wrote".into(),
            help: REBUILD.into(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            cause,
        },
    })
}

/// `report.json`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The mcc that built it.
    pub mcc_version: String,
    /// The files the build read, with their hashes.
    pub inputs: Inputs,
    /// How numbers were measured.
    pub measurement: Measurement,
    /// One row per layer a step changed or removed.
    pub layers: Vec<Layer>,
    /// Whole-model numbers.
    pub model_totals: Totals,
    /// One row per budget constraint.
    pub budget: Vec<BudgetRow>,
    /// Layers merged into others.
    pub merged: Vec<MergedRow>,
    /// Selected layers a step did not change, and why.
    pub left_alone: Vec<LeftAloneRow>,
    /// The native outputs, when they were built.
    pub native: Option<Native>,
    /// How the `auto` parameters were chosen, when the recipe has any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Allocation>,
    /// Per-class accuracy and the samples whose prediction changed, when the evaluation set
    /// has labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<Predictions>,
    /// The metric after each stage, for a recipe of several stages measured on data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Stages>,
    /// What each compressed layer costs (`mcc build --attribution`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution: Option<Attribution>,
}

/// The model after each stage of the recipe: what it stores against what it computes.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Stages {
    /// What `metric` is: top-1 accuracy on the labelled evaluation set, else the relative L2
    /// error of the outputs against the original's.
    pub metric: crate::sensitivity::Metric,
    /// The original model, then the model after each stage, in order.
    pub points: Vec<StagePoint>,
}

/// The model at one point of the recipe.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct StagePoint {
    /// The stage just run (`original` before any).
    pub stage: String,
    /// Stored weight bytes.
    pub bytes: u64,
    /// MACs per sample.
    pub macs: u64,
    /// The metric, on the same samples as the report's accuracy; null after a stage of exact
    /// rewrites only (the merges), which is not measured again.
    pub metric: Option<f64>,
}

/// Per-layer attribution of the loss (`attribution.rs`): for every layer a lossy step
/// changed, the model with only that layer compressed and with only that layer restored,
/// each built and measured.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Attribution {
    /// What the numbers are (see [`Stages::metric`]).
    pub metric: crate::sensitivity::Metric,
    /// Samples each measurement used.
    pub samples: usize,
    /// The original model's metric.
    pub original: f64,
    /// The compressed model's (the recipe as written).
    pub compressed: f64,
    /// One row per compressed layer, the largest regain first.
    pub layers: Vec<AttributedLayer>,
    /// The fewest layers (of those that regain most, at most five) whose restoring regains
    /// half the loss, else as many as were tried (`enough` false); absent when nothing was
    /// lost or no layer regains anything.
    pub restore: Option<Restore>,
}

/// One compressed layer's share of the loss.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AttributedLayer {
    /// The layer.
    pub layer: String,
    /// The rules that selected and changed it.
    pub rules: Vec<RuleRef>,
    /// The metric with only this layer compressed.
    pub alone: Option<f64>,
    /// The metric with every layer compressed but this one.
    pub restored: Option<f64>,
    /// The model's stored weight bytes with every layer compressed but this one.
    pub restored_bytes: Option<u64>,
    /// What qualifies the numbers: a rule that also changes layers it does not select (the
    /// layers coupled to this one, as filter pruning's channel groups), or why a number is
    /// missing (the edited plan could not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A recipe rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RuleRef {
    /// `technique variant`.
    pub technique: String,
    /// The recipe file it is written in (a standard-library module's name for `use`d rules).
    pub file: String,
    /// Its line there.
    pub line: usize,
}

/// Layers to restore, measured together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Restore {
    /// The layers, the largest single regain first.
    pub layers: Vec<String>,
    /// The metric with them restored.
    pub metric: f64,
    /// The model's stored weight bytes with them restored.
    pub bytes: u64,
    /// Whether it reaches what was aimed at (half the loss; for a missed budget, the bound).
    pub enough: bool,
}

/// The samples whose top-1 prediction changed are listed up to this many (by index);
/// [`Predictions::changed_total`] counts them all.
pub const CHANGED_LISTED: usize = 1000;

/// Both models' top-1 predictions on the labelled evaluation set (argmax of the first output;
/// a row holding NaN predicts nothing, which counts as wrong).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Predictions {
    /// One row per class the labels name, by class.
    pub per_class: Vec<ClassAccuracy>,
    /// The samples whose prediction changed, by index: the first [`CHANGED_LISTED`].
    pub changed: Vec<ChangedPrediction>,
    /// How many samples' prediction changed, listed or not.
    pub changed_total: usize,
}

/// One class of the evaluation labels.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ClassAccuracy {
    /// The label.
    pub class: i64,
    /// Evaluation samples with this label.
    pub samples: usize,
    /// Top-1 accuracy on them (fractions).
    pub accuracy: BeforeAfter<f64>,
}

/// A sample whose top-1 prediction differs between the original and the compressed model.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ChangedPrediction {
    /// 0-based index in the evaluation data.
    pub sample: usize,
    /// Its label.
    pub label: i64,
    /// The class each model predicted (null: its scores held NaN).
    pub prediction: BeforeAfter<Option<usize>>,
}

/// How `auto` parameters were chosen (`allocate.rs`): each layer's curve measured alone on the
/// calibration set, the greedy choice under the budget, and the uniform alternative.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Allocation {
    /// The budget constraint allocated under, as written.
    pub budget: String,
    /// What the curves measure, and on what.
    pub metric: String,
    /// That metric with every `auto` rule applied to nothing.
    pub baseline: f64,
    /// That metric for the model as allocated (calibration set).
    pub chosen_metric: f64,
    /// The budget's quantity (bytes or MACs) the choice estimated.
    pub estimated_total: f64,
    /// One row per layer an `auto` rule selects.
    pub layers: Vec<AllocatedLayer>,
    /// The one value for every layer that removes as many weights, for `amount`.
    pub uniform: Option<Uniform>,
    /// Wall time of the measurements, in seconds: for the printed summary only, not written
    /// to `report.json` (which holds no timing, so a rebuild gives the same bytes;
    /// `timings.json` has it as the phase "allocate auto parameters").
    #[serde(skip)]
    #[schemars(skip)]
    pub seconds: f64,
}

/// One layer of an `auto` rule.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct AllocatedLayer {
    /// The layer.
    pub layer: String,
    /// `technique variant`.
    pub technique: String,
    /// The rule's recipe line.
    pub recipe_line: usize,
    /// The parameter chosen.
    pub param: String,
    /// Its value (null: the layer is left as it is).
    pub value: Option<f64>,
    /// The uniform alternative's value.
    pub uniform: Option<f64>,
    /// The layer alone at each value of the sweep.
    pub curve: Vec<CurvePoint>,
}

/// The model with one layer at one setting.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CurvePoint {
    /// The setting.
    pub value: f64,
    /// Top-1 accuracy on the calibration set, when it has labels.
    pub accuracy: Option<f64>,
    /// Relative L2 error of the outputs against the original's, on the calibration set.
    pub error: f64,
    /// Stored bytes of the model's weights.
    pub bytes: u64,
    /// MACs per sample.
    pub macs: u64,
}

/// Every `auto` layer at one value removing as many weights as the allocation.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Uniform {
    /// The value.
    pub value: f64,
    /// The allocation's metric (calibration set) for this model.
    pub calibration_metric: f64,
    /// Top-1 accuracy on the evaluation set, when it has labels.
    pub evaluation_accuracy: Option<f64>,
    /// Stored bytes of its weights.
    pub bytes: u64,
    /// MACs per sample.
    pub macs: u64,
}

/// The files a build read.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Inputs {
    /// The recipe.
    pub recipe: FileRef,
    /// The model.
    pub model: FileRef,
    /// Calibration inputs, if the recipe names them.
    pub calibration: Option<FileRef>,
    /// Evaluation inputs, if the recipe names them.
    pub evaluation: Option<FileRef>,
    /// Evaluation labels, if the recipe names them.
    pub labels: Option<FileRef>,
}

/// A file and the SHA-256 of its bytes.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct FileRef {
    /// The path as given (the model) or as resolved against the recipe's folder (data).
    pub file: String,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
}

/// What ran the measurements.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Measurement {
    /// `compiled`: the natively compiled kernels the executable runs; `evaluator`: the
    /// reference evaluator (when the model has an operator without a kernel).
    pub engine: Engine,
    /// Why the evaluator measured, when it did.
    pub engine_note: Option<String>,
    /// The kernels' instruction set (`scalar`, `avx2`, `avx512f`): results can differ in the
    /// last bits between instruction sets, never between thread counts.
    pub isa: String,
    /// Calibration samples the per-layer errors and statistics used.
    pub calibration_samples: usize,
    /// Evaluation samples accuracy and output fidelity used.
    pub evaluation_samples: usize,
}

/// What ran the measurements.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// The compiled kernels.
    Compiled,
    /// The reference evaluator.
    Evaluator,
}

/// A number before and after the build.
#[derive(Copy, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BeforeAfter<T> {
    /// In the original model.
    pub before: T,
    /// In the compressed model.
    pub after: T,
}

/// One changed or removed layer.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Layer {
    /// Node name.
    pub name: String,
    /// ONNX operator.
    pub op: String,
    /// Whether a merge removed it.
    pub removed: bool,
    /// The layers it was merged into, when removed.
    pub merged_into: Vec<String>,
    /// The steps that changed it, in order.
    pub techniques: Vec<Applied>,
    /// Weight count (float constants it reads).
    pub params: BeforeAfter<u64>,
    /// Nonzero weights.
    pub nonzero_params: BeforeAfter<u64>,
    /// Stored bytes of its weights: the sum of their stored forms' parts.
    pub bytes: BeforeAfter<u64>,
    /// How its weights (operand 1) are stored, exported and run, after the build.
    pub storage: Option<Storage>,
    /// Multiply-accumulates per sample.
    pub macs: BeforeAfter<u64>,
    /// MACs with a nonzero weight (the work a sparse kernel does).
    pub nonzero_macs: BeforeAfter<u64>,
    /// Its output against the original's at the same point, on calibration data.
    pub output_error: Option<OutputError>,
}

/// How a layer's weights are stored, exported and run.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Storage {
    /// The stored form: values × layout × coding (`f32 bitmask`, `int4 per group(128) dense`).
    pub encoding: String,
    /// How `model.onnx` holds them.
    pub onnx: OnnxForm,
    /// How the native code runs them.
    pub kernel: KernelForm,
    /// Why that kernel, when the weights' sparsity decided it (the density against the
    /// sparse kernel's measured crossover).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_why: Option<String>,
}

/// How `model.onnx` holds a layer's weights.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnnxForm {
    /// A dense f32 initializer (dense weights, or a stored form ONNX cannot say, decoded).
    Dense,
    /// Integer codes, scales and zero points through a `DequantizeLinear` node (int8 and int4
    /// values in a dense layout).
    DequantizeLinear,
}

/// How the native code runs a layer's weights.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KernelForm {
    /// Dense weights, dense kernel.
    Dense,
    /// Only the nonzero weights, stored and run by the sparse kernel.
    Sparse,
    /// Only the blocks of outputs × inputs that hold a nonzero, stored and run by the
    /// block-sparse kernel (`kernel_why` names the block shape).
    BlockSparse,
    /// Stored without their zeros in the object file, run by the dense kernel: at this
    /// density the sparse kernel would not be faster ("size only, no speedup at this
    /// sparsity").
    SizeOnly,
    /// Stored compressed in the object file, expanded to dense when the model is loaded (no
    /// kernel for the stored form yet).
    ExpandedAtLoad,
}

/// One step applied to a layer.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Applied {
    /// Step number (1-based, plan order).
    pub step: u32,
    /// Stage name.
    pub stage: String,
    /// Technique keyword.
    pub technique: String,
    /// Variant.
    pub variant: String,
    /// Every parameter, defaults filled in (ratios as fractions).
    pub params: std::collections::BTreeMap<String, ParamValue>,
    /// Recipe file the rule is in.
    pub recipe_file: String,
    /// 1-based line of the rule.
    pub recipe_line: usize,
}

/// A parameter value.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ParamValue {
    /// A number.
    Num(f64),
    /// A word or path.
    Text(String),
}

/// A tensor compared with its original. A NaN or infinite value (a model that computes NaN)
/// is written as the string `"NaN"`, `"inf"` or `"-inf"`, never as `null`.
#[derive(Copy, Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct OutputError {
    /// ‖y − y₀‖ / ‖y₀‖ over all samples (‖y − y₀‖ when y₀ = 0).
    #[serde(serialize_with = "number", deserialize_with = "de_number")]
    #[schemars(with = "Number")]
    pub relative_l2: f64,
    /// Cosine similarity of y and y₀ over all samples (1 when both are 0, 0 when one is).
    #[serde(serialize_with = "number", deserialize_with = "de_number")]
    #[schemars(with = "Number")]
    pub cosine: f64,
}

/// A number, or the name of a non-finite one (JSON has none).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Number {
    /// A finite number.
    Finite(f64),
    /// `NaN`, `inf` or `-inf`.
    NonFinite(NonFinite),
}

/// The non-finite numbers.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum NonFinite {
    /// Not a number.
    #[serde(rename = "NaN")]
    NaN,
    /// +∞.
    #[serde(rename = "inf")]
    Inf,
    /// −∞.
    #[serde(rename = "-inf")]
    NegInf,
}

fn opt_number<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => number(v, s),
        None => s.serialize_none(),
    }
}

fn number<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else if v.is_nan() {
        s.serialize_str("NaN")
    } else if *v > 0.0 {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

/// Reads what [`number`] writes: a number, or `"NaN"`, `"inf"`, `"-inf"`.
fn de_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Finite(f64),
        Named(String),
    }
    match Written::deserialize(d)? {
        Written::Finite(v) => Ok(v),
        Written::Named(name) => match name.as_str() {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(serde::de::Error::custom(format!(
                "`{name}` is not a number (nor `NaN`, `inf`, `-inf`)"
            ))),
        },
    }
}

/// Reads what [`opt_number`] writes.
fn de_opt_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "de_number")] f64);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(v)| v))
}

/// Whole-model numbers.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Totals {
    /// Weights.
    pub params: BeforeAfter<u64>,
    /// Nonzero weights.
    pub nonzero_params: BeforeAfter<u64>,
    /// Stored weight bytes.
    pub bytes: BeforeAfter<u64>,
    /// MACs per sample.
    pub macs: BeforeAfter<u64>,
    /// Top-1 accuracy on the evaluation set (fractions), when it has labels.
    pub accuracy: Option<BeforeAfter<f64>>,
    /// The model's outputs against the original's on the evaluation (else calibration) data.
    pub output_fidelity: Option<OutputError>,
}

/// One budget constraint.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct BudgetRow {
    /// As written.
    pub constraint: String,
    /// 1-based recipe line.
    pub line: usize,
    /// The measured value in the constraint's base unit (fraction, bytes, MACs), when measured
    /// (`"NaN"` when the model computed NaN).
    #[serde(serialize_with = "opt_number", deserialize_with = "de_opt_number")]
    #[schemars(with = "Option<Number>")]
    pub value: Option<f64>,
    /// The measured value as shown to people.
    pub measured: String,
    /// Whether it holds.
    pub ok: bool,
}

/// A layer merged into another.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct MergedRow {
    /// The removed layer.
    pub removed: String,
    /// The layer that absorbed it.
    pub into: String,
    /// Step number.
    pub step: u32,
    /// `merge <variant>`.
    pub technique: String,
    /// 1-based recipe line.
    pub recipe_line: usize,
}

/// A selected layer a step did not change.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct LeftAloneRow {
    /// The layer.
    pub node: String,
    /// Step number.
    pub step: u32,
    /// `technique variant`.
    pub technique: String,
    /// Why, as a kind: one of a closed set of codes (`docs/report.md`).
    #[serde(serialize_with = "reason_code", deserialize_with = "de_reason_code")]
    #[schemars(with = "ReasonCode")]
    pub reason: Reason,
    /// Why, for people: what exactly stood in the way.
    pub why: String,
    /// 1-based recipe line.
    pub recipe_line: usize,
}

/// A [`Reason`] is written as its code.
fn reason_code<S: serde::Serializer>(reason: &Reason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(reason.code())
}

/// Reads a [`Reason`] from its code.
fn de_reason_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Reason, D::Error> {
    let code = String::deserialize(d)?;
    Reason::ALL
        .iter()
        .copied()
        .find(|r| r.code() == code)
        .ok_or_else(|| serde::de::Error::custom(format!("`{code}` is not a reason's code")))
}

/// The schema of a [`Reason`] as written: one of the codes, each with its description.
struct ReasonCode;

impl JsonSchema for ReasonCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Reason".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let codes: Vec<serde_json::Value> = Reason::ALL
            .iter()
            .map(|r| {
                serde_json::json!({
                    "const": r.code(),
                    "description": r.description(),
                    "type": "string",
                })
            })
            .collect();
        schemars::json_schema!({
            "description": "Why a step left a layer alone, as a kind.",
            "oneOf": codes,
        })
    }
}

/// The native outputs.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Native {
    /// The C identifier (file and symbol names).
    pub name: String,
    /// The object file.
    pub object: String,
    /// The C header.
    pub header: String,
    /// The runtime library to link with.
    pub runtime_library: String,
    /// The executable, when one was linked.
    pub executable: Option<String>,
    /// Why there is no executable.
    pub no_executable: Option<String>,
    /// Kernel steps in the schedule (of the first compiled size).
    pub steps: usize,
    /// Steps compiled inline (of the first compiled size).
    pub inline_steps: usize,
    /// Activation arena per sample (of the first compiled size).
    pub arena_bytes_per_sample: u64,
    /// Scratch memory (of the first compiled size).
    pub scratch_bytes: u64,
    /// Weight data in the object file (every compiled size's).
    pub weight_bytes: u64,
    /// Whether the object file holds the weights compressed (expanded when the model is
    /// loaded), else dense.
    pub weights_stored: bool,
    /// The batch size, when the model fixes it.
    pub fixed_batch: Option<usize>,
    /// The sizes the code was compiled for: for each compiled size, each input's shape
    /// without the batch (`[[[1, 28, 28]]]` for one size of a one-input model). The
    /// executable runs inputs of these sizes only.
    pub input_sizes: Vec<Vec<Vec<usize>>>,
}

/// `timings.json`: what varies from run to run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Timings {
    /// Threads the measurements ran on.
    pub threads: usize,
    /// Wall time of each phase, in order.
    pub phases: Vec<Phase>,
    /// The whole build, in milliseconds.
    pub total_ms: f64,
    /// Latency measured for a `latency` budget, or by `mcc bench --report` (which replaces
    /// the budget's); absent without either.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// A measured latency: a batch through compiled code (the executable's) on this machine, the
/// median of timed runs after warm-up — for a `latency` budget by `mcc build` (one sample),
/// or by `mcc bench --report`. In `timings.json` only: it varies from run to run, and the
/// build's outputs never depend on it (the budget passes or fails the build).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Latency {
    /// The CPU (`/proc/cpuinfo`'s model name, where the system says).
    pub cpu: String,
    /// Kernel threads.
    pub threads: usize,
    /// Timed runs (after 5 warm-up runs).
    pub runs: usize,
    /// Samples per run.
    #[serde(default = "one")]
    pub batch: usize,
    /// The original model, milliseconds (absent when it does not compile).
    pub before_ms: Option<f64>,
    /// The compressed model, milliseconds.
    pub after_ms: f64,
}

/// A latency of an older `timings.json`, which has no `batch`, was timed at batch 1.
fn one() -> usize {
    1
}

impl Timings {
    /// Records a phase that started at `since`.
    pub fn phase(&mut self, name: &str, since: std::time::Instant) {
        let ms = since.elapsed().as_secs_f64() * 1e3;
        self.phases.push(Phase {
            phase: name.to_string(),
            ms: (ms * 10.0).round() / 10.0,
        });
    }
}

/// One phase of a build.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Phase {
    /// What it did.
    pub phase: String,
    /// Wall time in milliseconds.
    pub ms: f64,
}

/// The JSON Schema of `report.json`, generated from [`Report`].
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Report)).unwrap_or_default()
}

/// The terminal summary of a build.
pub fn summary(r: &Report) -> Vec<String> {
    let t = &r.model_totals;
    let mut out = vec![format!(
        "  weights: {} nonzero of {} (before: {} of {}); stored {} → {} bytes",
        t.nonzero_params.after,
        t.params.after,
        t.nonzero_params.before,
        t.params.before,
        t.bytes.before,
        t.bytes.after
    )];
    if let Some(a) = t.accuracy {
        out.push(format!(
            "  accuracy: {:.2}% → {:.2}% ({} samples, {})",
            a.before * 100.0,
            a.after * 100.0,
            r.measurement.evaluation_samples,
            match r.measurement.engine {
                Engine::Compiled => "compiled code",
                Engine::Evaluator => "reference evaluator",
            }
        ));
    }
    if let Some(f) = t.output_fidelity {
        out.push(format!(
            "  outputs vs original: relative L2 {:.2e}, cosine {:.6}",
            f.relative_l2, f.cosine
        ));
    }
    out.extend(stages_summary(r));
    out.extend(attribution_summary(r));
    out.extend(allocation_summary(r));
    out.extend(left_alone_summary(r));
    out
}

/// The model after each stage, for the terminal: one line.
pub fn stages_summary(r: &Report) -> Vec<String> {
    let Some(st) = &r.stages else {
        return vec![];
    };
    let points: Vec<String> = st
        .points
        .iter()
        .map(|p| {
            let m = p.metric.map_or("(exact)".into(), |v| st.metric.show(v));
            format!("{} {} bytes {m}", p.stage, p.bytes)
        })
        .collect();
    vec![format!("  stages: {}", points.join(" → "))]
}

/// A rule as people find it: `prune unstructured at r.mcr:12`.
pub fn rule_text(r: &RuleRef) -> String {
    format!("{} at {}:{}", r.technique, r.file, r.line)
}

/// What each compressed layer costs, for the terminal: the layers that regain most and the
/// suggestion.
pub fn attribution_summary(r: &Report) -> Vec<String> {
    const SHOWN: usize = 8;
    let Some(a) = &r.attribution else {
        return vec![];
    };
    let m = a.metric;
    let change = |v: Option<f64>, from: f64| v.map_or("not measured".into(), |v| m.change(from, v));
    let mut out = vec![format!(
        "  attribution ({} samples; original {}, compressed {}):",
        a.samples,
        m.show(a.original),
        m.show(a.compressed)
    )];
    // A note several rows share (a rule's channel groups) is printed once, after them.
    let mut notes: Vec<&str> = vec![];
    for l in a.layers.iter().take(SHOWN) {
        let rules: Vec<String> = l.rules.iter().map(rule_text).collect();
        let mark = l.note.as_deref().map_or(String::new(), |n| {
            let k = notes.iter().position(|x| *x == n).unwrap_or_else(|| {
                notes.push(n);
                notes.len() - 1
            });
            format!(" [{}]", k + 1)
        });
        out.push(format!(
            "    {}: alone {} from the original; restored {} ({}){mark}",
            l.layer,
            change(l.alone, a.original),
            change(l.restored, a.compressed),
            rules.join(", "),
        ));
    }
    if a.layers.len() > SHOWN {
        out.push(format!(
            "    … and {} more (report.json's `attribution` lists them all)",
            a.layers.len() - SHOWN
        ));
    }
    for (k, n) in notes.iter().enumerate() {
        out.push(format!("    [{}] {n}", k + 1));
    }
    if let Some(x) = &a.restore {
        let names: Vec<String> = x.layers.iter().map(|l| format!("`{l}`")).collect();
        out.push(format!(
            "  restore {} to regain {} ({} → {}, {} stored weight bytes){}",
            names.join(", "),
            m.change(a.compressed, x.metric),
            m.show(a.compressed),
            m.show(x.metric),
            x.bytes,
            if x.enough {
                ""
            } else {
                "; less than half the loss"
            }
        ));
    }
    out
}

/// The layers a step selected but did not change, for the terminal: the first few with
/// their reasons (the report lists all).
pub fn left_alone_summary(r: &Report) -> Vec<String> {
    const SHOWN: usize = 8;
    if r.left_alone.is_empty() {
        return vec![];
    }
    let mut out = vec![format!(
        "  left alone: {} selected layer{} unchanged",
        r.left_alone.len(),
        if r.left_alone.len() == 1 { "" } else { "s" }
    )];
    for l in r.left_alone.iter().take(SHOWN) {
        out.push(format!(
            "    {} (`{}`, line {}): {}",
            l.node, l.technique, l.recipe_line, l.why
        ));
    }
    if r.left_alone.len() > SHOWN {
        out.push(format!(
            "    … and {} more (report.json's `left_alone` lists them all)",
            r.left_alone.len() - SHOWN
        ));
    }
    out
}

/// What `auto` chose, for the terminal: each layer's value and the uniform alternative.
pub fn allocation_summary(r: &Report) -> Vec<String> {
    let Some(a) = &r.allocation else {
        return vec![];
    };
    let show = |v: Option<f64>| {
        v.map_or("left as is".to_string(), |v| {
            format!("{}", (v * 1000.0).round() / 1000.0)
        })
    };
    let mut out = vec![format!(
        "  auto, under `{}` (chosen in {:.1} s on calibration data; metric there {:.4} → {:.4}):",
        a.budget, a.seconds, a.baseline, a.chosen_metric
    )];
    for l in &a.layers {
        out.push(format!("    {} {}: {}", l.layer, l.param, show(l.value)));
    }
    if let Some(u) = &a.uniform {
        let acc = u.evaluation_accuracy.map_or(String::new(), |acc| {
            format!(", accuracy {:.2}%", acc * 100.0)
        });
        out.push(format!(
            "    uniform alternative: {} on every layer ({} bytes{acc})",
            show(Some(u.value)),
            u.bytes
        ));
    }
    out
}

/// Up to `k` layers whose outputs moved most from the original's (relative L2 on the
/// calibration data), largest first: where a missed budget's cost most likely comes from.
pub fn costliest_layers(report: &Report, k: usize) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = report
        .layers
        .iter()
        .filter_map(|l| {
            l.output_error
                .as_ref()
                .filter(|e| e.relative_l2.is_finite())
                .map(|e| (l.name.clone(), e.relative_l2))
        })
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(k);
    v
}
