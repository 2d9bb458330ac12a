//! `quantize int8`: static int8 quantization of weights *and* activations, so the layers run
//! on integer kernels. Weights are symmetric i8 (codes −127..127, zero point 0) with one
//! scale per output channel or per layer; activations are asymmetric u8 with one scale and
//! zero point per tensor, chosen from calibration data by `minmax`, `percentile`, `entropy`
//! (TensorRT's KL-divergence threshold) or `mse` (the clipping that minimizes the expected
//! squared rounding error over the calibration histogram). The bias becomes i32 at scale
//! `x_scale · w_scale`. With `bias_correction: on`, each layer's bias first loses the mean
//! output shift quantization causes on the calibration data (`rounding_bias`).
//!
//! Each selected Conv becomes a `QLinearConv`, each Gemm (`transA = 0`, `alpha = beta = 1`,
//! a bias over the outputs) or MatMul with constant 2-D weights a `QLinearMatMul`; a Relu or
//! Clip epilogue becomes a clamp of the output codes. A layer's input is quantized by a
//! `QuantizeLinear` unless it already is one: the output of a layer quantized in this step,
//! possibly through MaxPool, Flatten or Reshape, which then run on the codes (max commutes
//! with the monotone dequantization; the others move bytes). Every other reader of a
//! quantized layer's output reads it through a `DequantizeLinear`, so integer regions are
//! bounded by Q/DQ pairs. A residual `Add` that reads a tensor some layer's input quantizes
//! reads its dequantized codes instead (a quantized skip connection, as int8 deployments
//! have it), so both operands of the join are codes; nothing else in the graph changes.
//!
//! With `mode: dynamic`, each selected Gemm or MatMul becomes a `DynamicQuantMatMul` instead:
//! the same i8 weights, its input quantized at run time row by row (each row's own u8 scale
//! and zero point from its range, so a sample's result never depends on the others in its
//! batch), the exact integer product made f32 again with the bias and clamp. Nothing is
//! calibrated; Convs are left alone (static quantization covers them).
//!
//! Keeps: the graph's inputs and outputs (names, types, shapes) and every value outside the
//! step's layers; the arithmetic inside a region is `mcc_runtime::quant`'s, identical in the
//! evaluator and the kernels.
//!
//! Leaves alone (reported): layers without f32 constant weights, with an activation other
//! than Relu or Clip, Gemms with `transA`, `alpha`/`beta` ≠ 1 or a bias that is not one value
//! per output, MatMuls with more than 2-D weights, and layers merged away.
//!
//! Stores: i8 weights (1 byte each), i32 biases, and one f32 scale per channel.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use mcc_ir::op::{DynamicQuantMatMul, QLinearConv, QLinearMatMul};
use mcc_ir::{DType, Graph, NodeId, Op, Origin, StepId, Tensor, TensorType, ValueId};
use mcc_plan::plan::{ParamValue, Severity, Step};
use mcc_plan::registry::{
    Applies, Default, ParamIssue, ParamType, Params, Status, VariantSchema, num, p,
};
use mcc_plan::{LeftAlone, Outcome, Reason, Stat, StatRequest, Stats, Technique, TechniqueError};
use mcc_runtime::quant::{self, QAct};

use crate::layers::{self, leave};

/// `quantize int8`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "int8",
    summary: "8-bit integer weights and activations on integer kernels, calibrated (static)",
    params: &[
        p(
            "mode",
            ParamType::Choice(&["static", "dynamic"]),
            Default::Word("static"),
            "activation scales from calibration (static: integer regions, u8 in and out) or from each input row at run time (dynamic: MatMul and Gemm, f32 in and out)",
        ),
        p(
            "per",
            ParamType::Choice(&["tensor", "channel"]),
            Default::Word("channel"),
            "one weight scale per layer or per output channel",
        ),
        p(
            "calibration",
            ParamType::Choice(&["minmax", "percentile", "entropy", "mse"]),
            Default::Word("minmax"),
            "how each activation's range is chosen from the calibration data",
        ),
        p(
            "percentile",
            ParamType::Ratio,
            Default::Num(0.9999),
            "with `calibration: percentile`, the share of values the range keeps",
        ),
        p(
            "bias_correction",
            ParamType::Choice(&["off", "on"]),
            Default::Word("off"),
            "subtract the mean output error the weight rounding causes on the calibration data from each bias",
        ),
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&QuantizeInt8),
    check_params,
    sweep: None,
};

fn check_params(params: &Params) -> Vec<ParamIssue> {
    let mut out = vec![];
    let given = |name: &str, word: Option<&str>| {
        params.iter().any(|(k, v)| {
            *k == name && word.is_none_or(|w| matches!(v, ParamValue::Word(x) if x == w))
        })
    };
    if given("mode", Some("dynamic")) {
        if given("bias_correction", Some("on")) {
            out.push(ParamIssue {
                severity: Severity::Error,
                param: "bias_correction",
                message: "bias correction is measured on calibrated (static) activations; dynamic quantization has none".into(),
                label: "needs `mode: static`".into(),
                help: Some("drop `bias_correction`, or use `mode: static`".into()),
            });
        }
        // (`params` holds the defaults too: a value other than its default was written.)
        let set = |name: &str| match name {
            "calibration" => !given(name, Some("minmax")),
            _ => num(params, name).is_some_and(|x| x != 0.9999),
        };
        for name in ["calibration", "percentile"] {
            if set(name) {
                out.push(ParamIssue {
                    severity: Severity::Warning,
                    param: if name == "calibration" { "calibration" } else { "percentile" },
                    message: format!(
                        "`{name}` has no effect with `mode: dynamic`: each row's range is its own, at run time"
                    ),
                    label: "ignored".into(),
                    help: Some("remove it, or use `mode: static`".into()),
                });
            }
        }
    }
    if let Some(x) = num(params, "percentile")
        && !(0.5..1.0).contains(&x)
    {
        out.push(ParamIssue {
            severity: Severity::Error,
            param: "percentile",
            message: format!(
                "a percentile range must keep at least half of the values and fewer than all ({x})"
            ),
            label: "must be in [50%, 100%)".into(),
            help: Some("99.99% is usual; `calibration: minmax` keeps every value".into()),
        });
    }
    out
}

/// Static int8 quantization as a technique.
pub struct QuantizeInt8;

/// How activation ranges are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Calibrator {
    MinMax,
    Percentile(f64),
    Entropy,
    Mse,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Setup {
    /// Activations quantized at run time, row by row (`DynamicQuantMatMul`).
    dynamic: bool,
    per_channel: bool,
    calibrator: Calibrator,
    bias_correction: bool,
}

impl Setup {
    fn of(step: &Step) -> Setup {
        let word = |name: &str| match step.param(name) {
            Some(ParamValue::Word(w)) => w.clone(),
            _ => String::new(),
        };
        let calibrator = match word("calibration").as_str() {
            "percentile" => {
                Calibrator::Percentile(num(&step.params, "percentile").unwrap_or(0.9999))
            }
            "entropy" => Calibrator::Entropy,
            "mse" => Calibrator::Mse,
            _ => Calibrator::MinMax,
        };
        Setup {
            dynamic: word("mode") == "dynamic",
            per_channel: word("per") != "tensor",
            calibrator,
            bias_correction: word("bias_correction") == "on",
        }
    }
}

/// The deepest product quantized: `2^31 / (255 · 128)`, so no i32 accumulator of u8 × i8
/// products can overflow.
const DEPTH_LIMIT: usize = 65_793;

/// Histogram bins for the calibrators that read one.
const BINS: usize = 2048;

/// A layer the step can quantize.
struct Layer {
    id: NodeId,
    name: String,
    x: ValueId,
    y: ValueId,
    /// The integer op (attributes and clamp set).
    op: Op,
    /// Weights as `[rows, …]` with the output channel on `w_axis`, f32.
    weights: Tensor,
    w_axis: usize,
    /// One bias per output channel.
    bias: Option<Vec<f32>>,
}

fn layer(graph: &Graph, name: &str, setup: Setup) -> Result<Layer, LeftAlone> {
    let w = layers::weighted(graph, name)?;
    let node = w.node;
    let x = node.inputs[0].ok_or_else(|| leave(name, Reason::MissingOperand, "it has no input"))?;
    let y = *node
        .outputs
        .first()
        .ok_or_else(|| leave(name, Reason::MissingOperand, "it has no output"))?;
    if graph.value(x).ty.dtype != DType::F32 {
        return Err(leave(name, Reason::UnsupportedOp, "its input is not f32"));
    }
    let act = match node.op.epilogue() {
        Ok(None) => QAct::None,
        Ok(Some(mcc_ir::op::Activation::Relu)) => QAct::Relu,
        Ok(Some(mcc_ir::op::Activation::Clip { min, max })) if min <= max => {
            QAct::Clip { min, max }
        }
        Ok(Some(a)) => {
            return Err(leave(
                name,
                Reason::HasActivation,
                format!("its activation {a} has no integer form (Relu and Clip do)"),
            ));
        }
        Err(e) => return Err(leave(name, Reason::UnsupportedAttribute, e)),
    };
    let shape = w.tensor.shape().to_vec();
    // The i32 accumulator holds any sum of `DEPTH_LIMIT` products of a u8 and an i8 code.
    let depth: usize = match &node.op {
        Op::Conv(_) => shape[1..].iter().product(),
        Op::Gemm(g) if g.transB != 0 => shape.get(1).copied().unwrap_or(0),
        _ => shape.first().copied().unwrap_or(0),
    };
    if depth > DEPTH_LIMIT {
        return Err(leave(
            name,
            Reason::UnsupportedAttribute,
            format!(
                "its depth {depth} is past {DEPTH_LIMIT}, where an i32 sum of u8 × i8 products can overflow"
            ),
        ));
    }
    if matches!(node.op, Op::MatMul(_) | Op::Gemm(_))
        && graph.value(x).ty.rank().is_some_and(|r| r < 2)
    {
        return Err(leave(
            name,
            Reason::ShapeMismatch,
            "its input has one dimension: an integer product takes rows (…, M, K)",
        ));
    }
    let bias_of = |slot: usize, n: usize| -> Result<Option<Vec<f32>>, LeftAlone> {
        let Some(b) = node.inputs.get(slot).copied().flatten() else {
            return Ok(None);
        };
        match graph.const_data(b).and_then(|t| t.as_f32()) {
            Some(a) if a.len() == n && a.shape().iter().rev().skip(1).all(|&d| d == 1) => {
                Ok(Some(a.iter().copied().collect()))
            }
            _ => Err(leave(
                name,
                Reason::NotConstant,
                "its bias is not a constant with one value per output",
            )),
        }
    };
    let mut op = match &node.op {
        Op::Conv(_) if setup.dynamic => {
            return Err(leave(
                name,
                Reason::UnsupportedOp,
                "dynamic quantization covers MatMul and Gemm; a Conv needs `mode: static`",
            ));
        }
        Op::Conv(c) => {
            let bias = bias_of(2, shape[0])?;
            return Ok(Layer {
                id: w.id,
                name: name.to_string(),
                x,
                y,
                op: {
                    let mut op = Op::QLinearConv(QLinearConv {
                        auto_pad: c.auto_pad,
                        dilations: c.dilations.clone(),
                        group: c.group,
                        kernel_shape: c.kernel_shape.clone(),
                        pads: c.pads.clone(),
                        strides: c.strides.clone(),
                        ..QLinearConv::default()
                    });
                    op.set_q_activation(act);
                    op
                },
                weights: w.tensor.clone(),
                w_axis: 0,
                bias,
            });
        }
        Op::Gemm(g) => {
            if g.transA != 0 || g.alpha != 1.0 || g.beta != 1.0 || shape.len() != 2 {
                return Err(leave(
                    name,
                    Reason::UnsupportedAttribute,
                    "only a Gemm without transA and with alpha = beta = 1 has an integer form",
                ));
            }
            linear(setup)
        }
        Op::MatMul(_) if shape.len() == 2 => linear(setup),
        Op::MatMul(_) => {
            return Err(leave(
                name,
                Reason::UnsupportedAttribute,
                "a MatMul's weights must be 2-D for its integer form",
            ));
        }
        other => {
            return Err(leave(
                name,
                Reason::UnsupportedOp,
                format!("{} has no integer form", other.name()),
            ));
        }
    };
    op.set_q_activation(act);
    // Weights as [K, N] (outputs on axis 1).
    let transposed = matches!(&node.op, Op::Gemm(g) if g.transB != 0);
    let weights = if transposed {
        let a = w
            .tensor
            .as_f32()
            .map(|a| a.t().as_standard_layout().into_owned());
        match a {
            Some(a) => Tensor::F32(a.into_dyn()),
            None => return Err(leave(name, Reason::NotConstant, "its weights are not f32")),
        }
    } else {
        w.tensor.clone()
    };
    let n = weights.shape()[1];
    let bias = if matches!(node.op, Op::Gemm(_)) {
        bias_of(2, n)?
    } else {
        None
    };
    Ok(Layer {
        id: w.id,
        name: name.to_string(),
        x,
        y,
        op,
        weights,
        w_axis: 1,
        bias,
    })
}

/// The integer form of a Gemm or MatMul.
fn linear(setup: Setup) -> Op {
    if setup.dynamic {
        Op::DynamicQuantMatMul(DynamicQuantMatMul::default())
    } else {
        Op::QLinearMatMul(QLinearMatMul::default())
    }
}

/// The layers of a step in graph order, and those left alone.
fn layers_of(graph: &Graph, step: &Step) -> Result<(Vec<Layer>, Vec<LeftAlone>), TechniqueError> {
    let order = graph.topo_order().map_err(|e| TechniqueError {
        node: String::new(),
        message: e.to_string(),
    })?;
    let rank: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let (mut ok, mut left) = (vec![], vec![]);
    for name in &step.nodes {
        match layer(graph, name, Setup::of(step)) {
            Ok(l) => ok.push(l),
            Err(l) => left.push(l),
        }
    }
    ok.sort_by_key(|l| rank.get(&l.id).copied().unwrap_or(usize::MAX));
    Ok((ok, left))
}

fn requests(graph: &Graph, layers: &[Layer], setup: Setup) -> Vec<StatRequest> {
    if setup.dynamic {
        return vec![];
    }
    let mut values = BTreeSet::new();
    for l in layers {
        values.insert(graph.value(l.x).name.clone());
        values.insert(graph.value(l.y).name.clone());
    }
    let mut out = vec![];
    for v in values {
        out.push(StatRequest::Ranges { value: v.clone() });
        if setup.calibrator != Calibrator::MinMax {
            out.push(StatRequest::Histogram {
                value: v,
                bins: BINS,
            });
        }
    }
    if setup.bias_correction {
        for l in layers {
            out.push(StatRequest::Mean {
                layer: l.name.clone(),
            });
        }
    }
    out
}

impl Technique for QuantizeInt8 {
    fn needs(&self, graph: &Graph, step: &Step) -> Vec<StatRequest> {
        match layers_of(graph, step) {
            Ok((layers, _)) => requests(graph, &layers, Setup::of(step)),
            Err(_) => vec![],
        }
    }

    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        Ok(layers_of(graph, step)?.1)
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let setup = Setup::of(step);
        let (layers, left_alone) = layers_of(graph, step)?;
        let mut out = Outcome {
            left_alone,
            ..Outcome::default()
        };
        if setup.dynamic {
            for l in layers {
                dynamic(graph, id, &l, setup).map_err(|message| TechniqueError {
                    node: l.name.clone(),
                    message,
                })?;
                out.changed.push(l.name);
            }
            (crate::remove_dead_nodes::INFO.run)(graph).map_err(|e| TechniqueError {
                node: String::new(),
                message: e.to_string(),
            })?;
            return Ok(out);
        }
        // Every activation's (scale, zero point), read before the graph changes.
        let mut params: HashMap<ValueId, (f32, i32)> = HashMap::new();
        let mut collected: HashMap<StatRequest, Arc<Stat>> = HashMap::new();
        for r in requests(graph, &layers, setup) {
            let s = stats.get(graph, &r)?;
            collected.insert(r, s);
        }
        for l in &layers {
            for v in [l.x, l.y] {
                let name = graph.value(v).name.clone();
                let ranges = collected.get(&StatRequest::Ranges {
                    value: name.clone(),
                });
                let hist = collected.get(&StatRequest::Histogram {
                    value: name.clone(),
                    bins: BINS,
                });
                let (lo, hi) = match ranges.map(|s| s.as_ref()) {
                    Some(Stat::Ranges { min, max }) => (
                        min.iter().copied().fold(f64::INFINITY, f64::min),
                        max.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    ),
                    _ => {
                        return Err(TechniqueError {
                            node: l.name.clone(),
                            message: format!("no calibration range for `{name}`"),
                        });
                    }
                };
                let (lo, hi) = match (setup.calibrator, hist.map(|s| s.as_ref())) {
                    (Calibrator::MinMax, _) => (lo, hi),
                    (c, Some(Stat::Histogram { bound, counts })) => {
                        calibrate(c, lo, hi, *bound, counts)
                    }
                    _ => (lo, hi),
                };
                params.insert(v, affine(lo, hi));
            }
        }
        let mut means = HashMap::new();
        for l in &layers {
            let r = StatRequest::Mean {
                layer: l.name.clone(),
            };
            if let Some(Stat::Mean { mean, .. }) = collected.get(&r).map(|s| s.as_ref()) {
                means.insert(l.id, mean.clone());
            }
        }
        let mut q = Quantizer {
            graph,
            id,
            codes: HashMap::new(),
            params,
            means,
        };
        for l in layers {
            // With bias correction, the mean of what the layer reads now that the layers
            // before it are quantized.
            let now = match q.means.contains_key(&l.id) {
                true => {
                    stats.invalidate();
                    let r = StatRequest::Mean {
                        layer: l.name.clone(),
                    };
                    match stats.get(q.graph, &r)?.as_ref() {
                        Stat::Mean { mean, .. } => Some(mean.clone()),
                        _ => None,
                    }
                }
                false => None,
            };
            q.layer(&l, setup, now.as_deref())
                .map_err(|message| TechniqueError {
                    node: l.name.clone(),
                    message,
                })?;
            out.changed.push(l.name);
        }
        if setup.bias_correction {
            stats.invalidate();
        }
        (crate::remove_dead_nodes::INFO.run)(q.graph).map_err(|e| TechniqueError {
            node: String::new(),
            message: e.to_string(),
        })?;
        Ok(out)
    }
}

/// The u8 scale and zero point of the range `[lo, hi]` (widened to hold 0, so 0 is exact).
fn affine(lo: f64, hi: f64) -> (f32, i32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let (lo, hi) = (
        if lo.is_finite() { lo } else { 0.0 },
        if hi.is_finite() { hi } else { 0.0 },
    );
    let scale = ((hi - lo) / 255.0).max(1e-8) as f32;
    let zp = (-lo / f64::from(scale)).round().clamp(0.0, 255.0) as i32;
    (scale, zp)
}

/// A calibrator's range from the exact range `[lo, hi]` and the symmetric histogram over
/// `[−bound, bound]`.
fn calibrate(c: Calibrator, lo: f64, hi: f64, bound: f64, counts: &[u64]) -> (f64, f64) {
    let nb = counts.len();
    let total: u64 = counts.iter().sum();
    if nb == 0 || total == 0 || bound.is_nan() || bound <= 0.0 {
        return (lo, hi);
    }
    let width = 2.0 * bound / nb as f64;
    let edge = |i: usize| -bound + i as f64 * width;
    match c {
        Calibrator::MinMax => (lo, hi),
        Calibrator::Percentile(p) => {
            let tail = ((1.0 - p) * total as f64).floor() as u64;
            // Lowest bin edge with more than `tail` values below, highest with more above.
            let (mut acc, mut a) = (0u64, 0usize);
            while a < nb && acc + counts[a] <= tail {
                acc += counts[a];
                a += 1;
            }
            let (mut acc, mut b) = (0u64, nb);
            while b > 0 && acc + counts[b - 1] <= tail {
                acc += counts[b - 1];
                b -= 1;
            }
            (lo.max(edge(a)), hi.min(edge(b)))
        }
        Calibrator::Entropy => {
            // |x| folded onto [0, bound]: TensorRT's search for the threshold whose clipped,
            // re-quantized distribution is closest (KL) to the original.
            let half = nb / 2;
            let folded: Vec<f64> = (0..half)
                .map(|i| (counts[half + i] + counts[half - 1 - i]) as f64)
                .collect();
            let levels = if lo >= 0.0 { 256 } else { 128 };
            let t = kl_threshold(&folded, levels) as f64 * width;
            (lo.max(-t), hi.min(t))
        }
        Calibrator::Mse => {
            let centres: Vec<(f64, f64)> = (0..nb)
                .filter(|&i| counts[i] > 0)
                .map(|i| (edge(i) + width / 2.0, counts[i] as f64))
                .collect();
            let mut best = (f64::INFINITY, lo, hi);
            for k in 0..=35 {
                let a = 1.0 - 0.02 * f64::from(k);
                let (l, h) = (lo * a, hi * a);
                let (s, z) = affine(l, h);
                let err: f64 = centres
                    .iter()
                    .map(|&(x, n)| {
                        let d = f64::from(quant::dequantize(
                            quant::quantize(x as f32, s, z, 0, 255),
                            s,
                            z,
                        ));
                        n * (x - d) * (x - d)
                    })
                    .sum();
                if err < best.0 {
                    best = (err, l, h);
                }
            }
            (best.1, best.2)
        }
    }
}

/// The bin count (the threshold, in bins) minimizing KL(P‖Q) with Q the distribution
/// clipped at it and merged into `levels` levels.
fn kl_threshold(hist: &[f64], levels: usize) -> usize {
    let n = hist.len();
    if n <= levels {
        return n;
    }
    let mut best = (f64::INFINITY, n);
    let step = (n / 256).max(1);
    let mut i = levels;
    while i <= n {
        let mut p: Vec<f64> = hist[..i].to_vec();
        p[i - 1] += hist[i..].iter().sum::<f64>();
        let total: f64 = p.iter().sum();
        if total <= 0.0 {
            i += step;
            continue;
        }
        // Q: each of `levels` runs of bins shares its mass evenly among its non-empty bins.
        let mut qd = vec![0.0; i];
        for l in 0..levels {
            let (a, b) = (
                l * i / levels,
                ((l + 1) * i / levels).max(l * i / levels + 1),
            );
            let mass: f64 = hist[a..b.min(i)].iter().sum();
            let nz = hist[a..b.min(i)].iter().filter(|&&h| h > 0.0).count();
            if nz > 0 {
                for j in a..b.min(i) {
                    if hist[j] > 0.0 {
                        qd[j] = mass / nz as f64;
                    }
                }
            }
        }
        let qt: f64 = qd.iter().sum();
        let mut kl = 0.0;
        for j in 0..i {
            if p[j] > 0.0 {
                let pj = p[j] / total;
                let qj = if qd[j] > 0.0 { qd[j] / qt } else { 1e-12 };
                kl += pj * (pj / qj).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
        i += step;
    }
    best.1
}

/// Quantizes a weight tensor symmetrically to i8 (−127..127) with a scale per index of
/// `axis` (or one): codes, scales.
fn weights_i8(w: &Tensor, axis: usize, per_channel: bool) -> (Vec<i8>, Vec<f32>) {
    let data: Vec<f32> = w
        .as_f32()
        .map(|a| a.iter().copied().collect())
        .unwrap_or_default();
    let shape = w.shape();
    let channels = if per_channel { shape[axis] } else { 1 };
    let inner: usize = shape[axis + 1..].iter().product();
    let chan = |i: usize| if per_channel { i / inner % channels } else { 0 };
    let mut max = vec![0f32; channels];
    for (i, &v) in data.iter().enumerate() {
        let c = chan(i);
        if v.abs() > max[c] {
            max[c] = v.abs();
        }
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| {
            if m > 0.0 && m.is_finite() {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    let codes = data
        .iter()
        .enumerate()
        .map(|(i, &v)| quant::quantize(v, scales[chan(i)], 0, -127, 127) as i8)
        .collect();
    (codes, scales)
}

/// The mean error quantization adds to each output, `ŵ · E[x̂] − w · E[x]`, with `ŵ` the
/// rounded weights, `E[x]` the mean row of X on the float model (`mean`; a Conv's patches over
/// all of its input channels) and `E[x̂]` on the model with the earlier layers quantized
/// (`now`): empirical bias correction (Nagel et al. 2019) subtracts it from the bias.
fn rounding_bias(
    l: &Layer,
    codes: &[i8],
    scales: &[f32],
    mean: &[f64],
    now: &[f64],
) -> Result<Vec<f64>, String> {
    let w: Vec<f32> = l
        .weights
        .as_f32()
        .map(|a| a.iter().copied().collect())
        .ok_or("the weights are not f32")?;
    let shape = l.weights.shape();
    let scale = |c: usize| f64::from(scales[if scales.len() == 1 { 0 } else { c }]);
    let err = |i: usize, c: usize, j: usize| {
        f64::from(codes[i]) * scale(c) * now[j] - f64::from(w[i]) * mean[j]
    };
    let wrong = |want: usize| {
        format!(
            "the calibration mean has {} entries where the layer reads {want}",
            mean.len()
        )
    };
    match (&l.op, shape) {
        // [outputs, inputs per group, kh, kw]; output o reads its group's channels.
        (Op::QLinearConv(c), &[outputs, per_group, kh, kw]) => {
            let group = usize::try_from(c.group).unwrap_or(1).max(1);
            let inner = per_group * kh * kw;
            if mean.len() != inner * group || now.len() != mean.len() || outputs % group != 0 {
                return Err(wrong(inner * group));
            }
            Ok((0..outputs)
                .map(|o| {
                    let first = o / (outputs / group) * inner;
                    (0..inner).map(|j| err(o * inner + j, o, first + j)).sum()
                })
                .collect())
        }
        // [inputs, outputs].
        (Op::QLinearMatMul(_), &[inputs, outputs]) => {
            if mean.len() != inputs || now.len() != inputs {
                return Err(wrong(inputs));
            }
            Ok((0..outputs)
                .map(|n| (0..inputs).map(|k| err(k * outputs + n, n, k)).sum())
                .collect())
        }
        _ => Err(format!("no bias correction for weights of shape {shape:?}")),
    }
}

/// Makes a Gemm or MatMul a `DynamicQuantMatMul`: i8 weights `(K, N)` with their scales,
/// the f32 bias, the activation as its clamp; its input and output stay f32.
fn dynamic(graph: &mut Graph, id: StepId, l: &Layer, setup: Setup) -> Result<(), String> {
    let (codes, scales) = weights_i8(&l.weights, l.w_axis, setup.per_channel);
    let shape = l.weights.shape().to_vec();
    let x = graph
        .node(l.id)
        .and_then(|m| m.inputs.first().copied().flatten())
        .ok_or("the layer lost its input")?;
    let n = &l.name;
    let mut konst = |base: String, t: Tensor| {
        let name = graph.fresh_value_name(&base);
        graph.add_const(name, t)
    };
    let scales = if scales.len() == 1 {
        Tensor::scalar(scales[0])
    } else {
        Tensor::from_vec(&[scales.len()], scales).map_err(|e| e.to_string())?
    };
    let bias = match &l.bias {
        Some(b) => Some(konst(
            format!("{n}.bias"),
            Tensor::from_vec(&[b.len()], b.clone()).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let inputs = vec![
        Some(x),
        Some(konst(
            format!("{n}.weight_i8"),
            Tensor::from_vec(&shape, codes).map_err(|e| e.to_string())?,
        )),
        Some(konst(format!("{n}.w_scale"), scales)),
        bias,
    ];
    graph.set_inputs(l.id, inputs).map_err(|e| e.to_string())?;
    if let Some(m) = graph.node_mut(l.id) {
        m.op = l.op.clone();
        m.origin = Origin::Step(id);
    }
    Ok(())
}

/// The rewrite's state: the graph, and the code form of every value that has one.
struct Quantizer<'g> {
    graph: &'g mut Graph,
    id: StepId,
    /// For a float value: the u8 value holding its codes, with its scale and zero point.
    codes: HashMap<ValueId, (ValueId, f32, i32)>,
    /// Calibrated (scale, zero point) per activation.
    params: HashMap<ValueId, (f32, i32)>,
    /// With bias correction, each layer's mean input row ([`StatRequest::Mean`]).
    means: HashMap<NodeId, Vec<f64>>,
}

impl Quantizer<'_> {
    fn konst(&mut self, base: &str, t: Tensor) -> ValueId {
        let name = self.graph.fresh_value_name(base);
        self.graph.add_const(name, t)
    }

    fn node(
        &mut self,
        base: &str,
        op: Op,
        inputs: Vec<Option<ValueId>>,
        out: TensorType,
    ) -> Result<ValueId, String> {
        let name = (0..)
            .map(|i| {
                if i == 0 {
                    base.to_string()
                } else {
                    format!("{base}.{i}")
                }
            })
            .find(|c| self.graph.find_node(c).is_none())
            .unwrap_or_else(|| base.to_string());
        let vname = self.graph.fresh_value_name(&name);
        let n = self.graph.add_node(name, op, inputs, vec![(vname, out)]);
        if let Some(m) = self.graph.node_mut(n) {
            m.origin = Origin::Step(self.id);
        }
        self.graph
            .node(n)
            .and_then(|m| m.outputs.first().copied())
            .ok_or_else(|| "the new node has no output".to_string())
    }

    /// The codes of `v` if they exist already, directly or through code-preserving ops.
    fn existing(&mut self, v: ValueId) -> Result<Option<(ValueId, f32, i32)>, String> {
        if let Some(&c) = self.codes.get(&v) {
            return Ok(Some(c));
        }
        let Some(p) = self.graph.producer(v) else {
            return Ok(None);
        };
        let Some(node) = self.graph.node(p).cloned() else {
            return Ok(None);
        };
        let passes = match &node.op {
            Op::MaxPool(_) => node.outputs.len() == 1,
            Op::Flatten(_) => true,
            Op::Reshape(_) => node
                .inputs
                .get(1)
                .copied()
                .flatten()
                .is_some_and(|s| self.graph.const_data(s).is_some()),
            _ => false,
        };
        if !passes {
            return Ok(None);
        }
        let Some(u) = node.inputs.first().copied().flatten() else {
            return Ok(None);
        };
        let Some((cu, s, z)) = self.existing(u)? else {
            return Ok(None);
        };
        let mut inputs = node.inputs.clone();
        inputs[0] = Some(cu);
        let ty = TensorType {
            dtype: DType::U8,
            shape: self.graph.value(v).ty.shape.clone(),
        };
        let c = self.node(&format!("{}.codes", node.name), node.op.clone(), inputs, ty)?;
        self.codes.insert(v, (c, s, z));
        Ok(Some((c, s, z)))
    }

    /// The codes of `v`: existing ones, or a new `QuantizeLinear` with `v`'s calibrated range.
    fn codes_of(&mut self, v: ValueId) -> Result<(ValueId, f32, i32), String> {
        if let Some(c) = self.existing(v)? {
            return Ok(c);
        }
        let (s, z) = *self
            .params
            .get(&v)
            .ok_or_else(|| format!("no calibrated range for `{}`", self.graph.value(v).name))?;
        let name = self.graph.value(v).name.clone();
        let sv = self.konst(&format!("{name}.scale"), Tensor::scalar(s));
        let zv = self.konst(&format!("{name}.zero_point"), Tensor::scalar(z as u8));
        let ty = TensorType {
            dtype: DType::U8,
            shape: self.graph.value(v).ty.shape.clone(),
        };
        let q = self.node(
            &format!("{name}.quantize"),
            Op::QuantizeLinear(mcc_ir::op::QuantizeLinear::default()),
            vec![Some(v), Some(sv), Some(zv)],
            ty,
        )?;
        self.codes.insert(v, (q, s, z));
        // A residual Add that reads `v` too reads it through its codes: both of its operands
        // then come out of integer regions, and the compiled code joins them on the codes
        // (as an int8 deployment quantizes a skip connection).
        let adds: Vec<(NodeId, usize)> = self
            .graph
            .users(v)
            .into_iter()
            .filter(|&(n, _)| {
                self.graph
                    .node(n)
                    .is_some_and(|x| matches!(x.op, Op::Add(_)))
            })
            .collect();
        if !adds.is_empty() {
            let ty = self.graph.value(v).ty.clone();
            let f = self.node(
                &format!("{name}.dequantize"),
                Op::DequantizeLinear(mcc_ir::op::DequantizeLinear::default()),
                vec![Some(q), Some(sv), Some(zv)],
                ty,
            )?;
            for (n, slot) in adds {
                self.graph
                    .set_input(n, slot, Some(f))
                    .map_err(|e| e.to_string())?;
            }
            self.codes.insert(f, (q, s, z));
        }
        Ok((q, s, z))
    }

    /// Quantizes one layer; `now`: with bias correction, the mean of its input rows on the
    /// model as the earlier layers of the step left it.
    fn layer(&mut self, l: &Layer, setup: Setup, now: Option<&[f64]>) -> Result<(), String> {
        // The input as it is now: an earlier layer of the step may have put a
        // DequantizeLinear in front of it.
        let x = self
            .graph
            .node(l.id)
            .and_then(|m| m.inputs.first().copied().flatten())
            .ok_or("the layer lost its input")?;
        let (xq, sx, zx) = match self.codes_of(x) {
            Ok(c) => c,
            Err(_) => self.codes_of(l.x)?,
        };
        let (sy, zy) = *self.params.get(&l.y).ok_or("no calibrated output range")?;
        let (wcodes, sw) = weights_i8(&l.weights, l.w_axis, setup.per_channel);
        let wshape = l.weights.shape().to_vec();
        let n = &l.name;
        let channel_scales = |v: Vec<f32>| -> Result<Tensor, String> {
            if v.len() == 1 {
                Ok(Tensor::scalar(v[0]))
            } else {
                Tensor::from_vec(&[v.len()], v).map_err(|e| e.to_string())
            }
        };
        let zw = if sw.len() == 1 {
            Tensor::scalar(0i8)
        } else {
            Tensor::from_vec(&[sw.len()], vec![0i8; sw.len()]).map_err(|e| e.to_string())?
        };
        let bias = match (&l.bias, self.means.get(&l.id)) {
            (None, None) => None,
            (bias, mean) => {
                let outputs = wshape[l.w_axis];
                let mut b: Vec<f32> = bias.clone().unwrap_or_else(|| vec![0.0; outputs]);
                if let (Some(mean), Some(now)) = (mean, now) {
                    let shift = rounding_bias(l, &wcodes, &sw, mean, now)?;
                    for (b, d) in b.iter_mut().zip(shift) {
                        *b = (f64::from(*b) - d) as f32;
                    }
                }
                let v: Vec<i32> = b
                    .iter()
                    .enumerate()
                    .map(|(c, &b)| {
                        let s = f64::from(sx) * f64::from(sw[if sw.len() == 1 { 0 } else { c }]);
                        (f64::from(b) / s)
                            .round()
                            .clamp(-2147483647.0, 2147483647.0) as i32
                    })
                    .collect();
                let t = Tensor::from_vec(&[v.len()], v).map_err(|e| e.to_string())?;
                Some(self.konst(&format!("{n}.bias_i32"), t))
            }
        };
        // The codes move into their tensor once bias correction has read them.
        let wt = Tensor::from_vec(&wshape, wcodes).map_err(|e| e.to_string())?;
        let ys = self.konst(&format!("{n}.y_scale"), Tensor::scalar(sy));
        let yz = self.konst(&format!("{n}.y_zero_point"), Tensor::scalar(zy as u8));
        let inputs = vec![
            Some(xq),
            Some(self.konst(&format!("{n}.x_scale"), Tensor::scalar(sx))),
            Some(self.konst(&format!("{n}.x_zero_point"), Tensor::scalar(zx as u8))),
            Some(self.konst(&format!("{n}.weight_i8"), wt)),
            Some(self.konst(&format!("{n}.w_scale"), channel_scales(sw)?)),
            Some(self.konst(&format!("{n}.w_zero_point"), zw)),
            Some(ys),
            Some(yz),
            bias,
        ];
        let g = &mut *self.graph;
        g.set_inputs(l.id, inputs).map_err(|e| e.to_string())?;
        if let Some(m) = g.node_mut(l.id) {
            m.op = l.op.clone();
            m.origin = Origin::Step(self.id);
        }
        // Its readers read the dequantized output.
        let float_ty = g.value(l.y).ty.clone();
        g.value_mut(l.y).ty.dtype = DType::U8;
        let name = self.graph.value(l.y).name.clone();
        let f = self.node(
            &format!("{name}.dequantize"),
            Op::DequantizeLinear(mcc_ir::op::DequantizeLinear::default()),
            vec![Some(l.y), Some(ys), Some(yz)],
            float_ty,
        )?;
        let g = &mut *self.graph;
        let dq = g.producer(f).ok_or("the dequantization vanished")?;
        g.replace_all_uses(l.y, f);
        g.set_input(dq, 0, Some(l.y)).map_err(|e| e.to_string())?;
        self.codes.insert(f, (l.y, sy, zy));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_ranges_hold_zero_exactly() {
        let (s, z) = affine(-1.0, 3.0);
        assert!((s - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(z, 64);
        assert_eq!(quant::quantize(0.0, s, z, 0, 255), z);
        let (s, z) = affine(0.5, 2.0);
        assert_eq!(z, 0);
        assert!((s - 2.0 / 255.0).abs() < 1e-7);
        assert_eq!(affine(0.0, 0.0).1, 0);
        assert!(affine(f64::NAN, f64::INFINITY).0 > 0.0);
    }

    #[test]
    fn percentile_clips_outliers_and_no_calibrator_widens_the_range() {
        // 10,000 values in [0, 1) and one at 63.
        let bound = 64.0;
        let mut counts = vec![0u64; BINS];
        let width = 2.0 * bound / BINS as f64;
        for i in 0..10_000 {
            let x = i as f64 / 10_000.0;
            counts[((x + bound) / width) as usize] += 1;
        }
        counts[((63.0 + bound) / width) as usize] += 1;
        let (lo, hi) = calibrate(Calibrator::Percentile(0.999), 0.0, 63.0, bound, &counts);
        assert!(
            lo == 0.0 && (0.9..10.0).contains(&hi),
            "percentile: [{lo}, {hi}]"
        );
        // MSE and KL keep this flat bulk's whole range (clipping the one outlier costs more
        // than coarser levels lose); neither widens the range.
        for c in [Calibrator::Entropy, Calibrator::Mse] {
            let (lo, hi) = calibrate(c, 0.0, 63.0, bound, &counts);
            assert!(
                lo == 0.0 && (0.9..=63.0).contains(&hi),
                "{c:?}: [{lo}, {hi}]"
            );
        }
        assert_eq!(
            calibrate(Calibrator::MinMax, 0.0, 63.0, bound, &counts),
            (0.0, 63.0)
        );
    }

    #[test]
    fn weights_take_symmetric_codes_per_channel() {
        let w = Tensor::from_vec(&[2, 3], vec![1.0f32, -0.5, 0.25, 0.0, 0.0, 0.0]).unwrap();
        let (codes, scales) = weights_i8(&w, 0, true);
        assert_eq!(codes, vec![127, -64, 32, 0, 0, 0]);
        assert_eq!(scales, vec![1.0 / 127.0, 1.0]);
        let (codes, scales) = weights_i8(&w, 0, false);
        assert_eq!(scales.len(), 1);
        assert_eq!(codes[0], 127);
    }
}
