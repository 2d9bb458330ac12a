//! `quantize int`: weights as signed integers of 2 to 8 bits with one scale per group (the
//! layer, each output channel, or each run of `group` consecutive inputs of an output, as
//! GPTQ and AWQ store int4 weights); weight-only, so the layer still computes in f32 on the
//! decoded weights. Symmetric: zero point 0, codes in `[−2^(b−1), 2^(b−1) − 1]`, the scale
//! the one of `max|w| · {1, 0.95, …, 0.55} / (2^(b−1) − 1)` (clipping the largest weights)
//! that gives the group the least squared rounding error.
//!
//! `rounding: nearest` rounds each weight to its nearest code. `rounding: gptq` is GPTQ
//! (Frantar et al. 2023): each row's weights are quantized column by column, and the error
//! each leaves is spread over the columns not yet quantized through the Cholesky factor of
//! the inverse calibration Hessian `(XᵀX/n + λI)⁻¹` — OBS's compensation, so the layer's
//! outputs on the calibration data move as little as it can manage. Scales are fixed before
//! the columns are visited (GPTQ's static groups).
//!
//! Keeps: the graph's structure and every shape; a weight that was zero (pruned) stays zero
//! and costs no code; every other weight becomes its code times its group's scale.
//!
//! Leaves alone (reported): layers without f32 constant weights, layers merged away; with
//! `rounding: gptq` or `per: group`, layers without a row-wise input (grouped Conv, Gemm with
//! transA); with `per: group`, layers whose weights are laid out inputs-first (Gemm without
//! transB, MatMul) or whose rows do not divide into groups.
//!
//! Stores: `int<bits> per tensor`, `per channel(axis)` or `per group(g)`, dense (exported to
//! ONNX as `DequantizeLinear` at 4 and 8 bits) or in the smallest sparse layout after pruning.

use mcc_ir::stored::{Coding, Granularity, Parts, Values};
use mcc_ir::{Graph, StepId};
use mcc_plan::plan::{ParamValue, Step};
use mcc_plan::registry::{
    Applies, Default, ParamType, Status, Sweep, VariantSchema, no_param_check, num, p,
};
use mcc_plan::{LeftAlone, Outcome, Reason, StatRequest, Stats, Technique, TechniqueError};

use crate::layers;
use crate::linalg::{cholesky, inverse_spd};
use crate::quantize::{self, Settings};
use crate::reconstruct::{self, Rows, View};

/// `quantize int`: the registry entry.
pub const VARIANT: VariantSchema = VariantSchema {
    name: "int",
    summary: "weight-only integers of 2 to 8 bits, a scale per tensor, channel or group (GPTQ rounding optional)",
    params: &[
        p(
            "bits",
            ParamType::Bits(&[2, 3, 4, 5, 6, 7, 8]),
            Default::Num(4.0),
            "code width",
        ),
        p(
            "per",
            ParamType::Choice(&["tensor", "channel", "group"]),
            Default::Word("channel"),
            "one scale for the layer, per output channel, or per `group` inputs of an output",
        ),
        p(
            "group",
            ParamType::Int {
                min: 2,
                max: 1 << 16,
            },
            Default::Num(128.0),
            "inputs per scale with `per: group`",
        ),
        p(
            "rounding",
            ParamType::Choice(&["nearest", "gptq"]),
            Default::Word("nearest"),
            "round each weight to its nearest code, or GPTQ: column by column, compensating on calibration data",
        ),
    ],
    applies: Applies::Weighted,
    status: Status::Ready(&QuantizeInt),
    check_params: no_param_check,
    // `bits: auto`: mixed precision, each layer's width chosen under the budget.
    sweep: Some(Sweep {
        param: "bits",
        values: &[8.0, 6.0, 5.0, 4.0, 3.0, 2.0],
    }),
};

/// Integer weights as a technique.
pub struct QuantizeInt;

/// A step's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Setup {
    bits: u8,
    per: Per,
    gptq: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Per {
    Tensor,
    Channel,
    Group(usize),
}

impl Setup {
    fn of(step: &Step) -> Setup {
        let word = |name: &str| match step.param(name) {
            Some(ParamValue::Word(w)) => w.clone(),
            _ => String::new(),
        };
        let per = match word("per").as_str() {
            "tensor" => Per::Tensor,
            "group" => Per::Group(num(&step.params, "group").unwrap_or(128.0).max(2.0) as usize),
            _ => Per::Channel,
        };
        Setup {
            bits: num(&step.params, "bits").unwrap_or(4.0).clamp(2.0, 8.0) as u8,
            per,
            gptq: word("rounding") == "gptq",
        }
    }

    /// Whether the layer is needed as rows × k.
    fn needs_view(self) -> bool {
        self.gptq || matches!(self.per, Per::Group(_))
    }

    fn settings(self) -> Settings {
        Settings {
            per_channel: false,
            refit: self.needs_view(),
        }
    }
}

impl Technique for QuantizeInt {
    fn needs(&self, _graph: &Graph, step: &Step) -> Vec<StatRequest> {
        if Setup::of(step).gptq {
            layers::first_gram(step)
        } else {
            Vec::new()
        }
    }

    fn collects_upfront(&self) -> bool {
        false
    }

    fn check(&self, graph: &Graph, step: &Step) -> Result<Vec<LeftAlone>, TechniqueError> {
        let setup = Setup::of(step);
        Ok(step
            .nodes
            .iter()
            .filter_map(|name| {
                let l = match quantize::layer(graph, name, setup.settings()) {
                    Ok(l) => l,
                    Err(left) => return Some(left),
                };
                group_fit(name, &l, setup).err()
            })
            .collect())
    }

    fn rewrite(
        &self,
        graph: &mut Graph,
        step: &Step,
        id: StepId,
        stats: &mut dyn Stats,
    ) -> Result<Outcome, TechniqueError> {
        let setup = Setup::of(step);
        let mut out = Outcome::default();
        for name in &step.nodes {
            let fail = |message: String| TechniqueError {
                node: name.clone(),
                message,
            };
            let l = match quantize::layer(graph, name, setup.settings()) {
                Ok(l) => l,
                Err(left) => {
                    out.left_alone.push(left);
                    continue;
                }
            };
            if let Err(left) = group_fit(name, &l, setup) {
                out.left_alone.push(left);
                continue;
            }
            let n = l.flat.len();
            // −0.0 is a pruned weight too: it stays zero, uncoded.
            let keep: Vec<bool> = l.flat.iter().map(|x| *x != 0.0).collect();
            let (count, group_of) = match setup.per {
                Per::Tensor => quantize::groups(&l.shape, None),
                Per::Channel => quantize::groups(&l.shape, Some(l.axis)),
                Per::Group(g) => (n.div_ceil(g), Box::new(move |i: usize| i / g) as _),
            };
            let qmax = (1i32 << (setup.bits - 1)) - 1;
            let qmin = -(1i32 << (setup.bits - 1));
            // Scales from the weights as they are.
            let mut members: Vec<Vec<f64>> = vec![vec![]; count];
            for i in (0..n).filter(|&i| keep[i]) {
                members[group_of(i)].push(f64::from(l.flat[i]));
            }
            let scales: Vec<f32> = members.iter().map(|m| scale(m, qmin, qmax)).collect();
            let quant = |i: usize, v: f64| -> i32 {
                let s = f64::from(scales[group_of(i)]);
                if s > 0.0 {
                    ((v / s).round() as i64).clamp(i64::from(qmin), i64::from(qmax)) as i32
                } else {
                    0
                }
            };
            let codes: Vec<i32> = if setup.gptq {
                let view = l.view.unwrap_or(View::Direct);
                let t = mcc_ir::Tensor::from_vec(&l.shape, l.flat.clone())
                    .map_err(|e| fail(e.to_string()))?;
                let w = reconstruct::to_rows(&t, view)
                    .ok_or_else(|| fail("its weights are not an f32 constant".into()))?;
                let h = layers::hessian(graph, stats, name, w.k).map_err(fail)?;
                gptq(w, &h, view, &keep, &quant, &|i| scales[group_of(i)]).map_err(fail)?
            } else {
                (0..n)
                    .map(|i| {
                        if keep[i] {
                            quant(i, f64::from(l.flat[i]))
                        } else {
                            0
                        }
                    })
                    .collect()
            };
            let parts = Parts {
                keep: keep.clone(),
                codes: (0..n).filter(|&i| keep[i]).map(|i| codes[i]).collect(),
                scales: scales.clone(),
                zero_points: vec![0; count],
                ..Parts::default()
            };
            let per = match setup.per {
                Per::Tensor => Granularity::Tensor,
                Per::Channel => Granularity::Channel(l.axis as u8),
                Per::Group(g) => Granularity::Group(g as u32),
            };
            let stored = quantize::smallest(
                Values::Int {
                    bits: setup.bits,
                    per,
                },
                Coding::None,
                &l.shape,
                &parts,
            )
            .map_err(|e| fail(e.to_string()))?;
            if let Some(v) = stored
                .decoded()
                .as_f32()
                .and_then(|a| a.iter().find(|v| !v.is_finite()).copied())
            {
                return Err(fail(format!("quantized, a weight would be {v}")));
            }
            if let Some(left) = quantize::not_smaller(graph, name, l.weights, &stored) {
                out.left_alone.push(left);
                continue;
            }
            quantize::store(graph, l.node, l.weights, stored, &step.nodes, id)
                .map_err(|e| fail(e.to_string()))?;
            out.changed.push(name.clone());
            if setup.gptq {
                stats.invalidate();
            }
        }
        Ok(out)
    }
}

/// With `per: group`, the layer must be laid out outputs-first with rows that divide into
/// groups.
fn group_fit(name: &str, l: &quantize::Layer, setup: Setup) -> Result<(), LeftAlone> {
    let Per::Group(g) = setup.per else {
        return Ok(());
    };
    let k: usize = l.shape.iter().skip(1).product();
    if l.view != Some(View::Direct) {
        return Err(layers::leave(
            name,
            Reason::UnsupportedAttribute,
            "`per: group` groups the inputs of each output, and this layer stores its weights inputs-first (a Gemm without transB or a MatMul)",
        ));
    }
    if !k.is_multiple_of(g) {
        return Err(layers::leave(
            name,
            Reason::ShapeMismatch,
            format!("its outputs have {k} inputs each, which do not divide into groups of {g}"),
        ));
    }
    Ok(())
}

/// The scale (f32, as stored) of the candidates `max|w| · c / qmax`, c = 1, 0.95 … 0.55, that
/// gives `values` the least squared rounding error; 0 for an empty or all-zero group.
fn scale(values: &[f64], qmin: i32, qmax: i32) -> f32 {
    let top = values.iter().fold(0f64, |m, v| m.max(v.abs()));
    if top == 0.0 || !top.is_finite() {
        return 0.0;
    }
    let mut best = (f64::INFINITY, 0f32);
    for step in 0..10 {
        let s = (top * (1.0 - 0.05 * step as f64) / f64::from(qmax)) as f32;
        // Every code times the scale must be a finite f32 (weights near f32::MAX).
        if s <= 0.0 || !(qmin as f32 * s).is_finite() || !(qmax as f32 * s).is_finite() {
            continue;
        }
        let sf = f64::from(s);
        let err: f64 = values
            .iter()
            .map(|&v| {
                let q = (v / sf).round().clamp(f64::from(qmin), f64::from(qmax));
                (v - q * sf).powi(2)
            })
            .sum();
        if err < best.0 {
            best = (err, s);
        }
    }
    best.1
}

/// GPTQ over the rows of `w` (the layer as rows × k, tensor index by `view`): per row, column
/// by column, the weight is replaced by its code (zero where `keep` is false) and the error
/// `(w − ŵ) / U_cc` is subtracted, times `U_c,·`, from the columns after it, with `U` the
/// upper Cholesky factor of `H⁻¹`. Returns the codes, row-major over the tensor.
fn gptq(
    mut w: Rows,
    h: &[f64],
    view: View,
    keep: &[bool],
    quant: &dyn Fn(usize, f64) -> i32,
    scale_of: &dyn Fn(usize) -> f32,
) -> Result<Vec<i32>, String> {
    let (rows, k) = (w.rows, w.k);
    let inv = inverse_spd(h, k).map_err(|e| {
        format!(
            "the calibration XᵀX is not positive definite (at {})",
            e.row
        )
    })?;
    let mut l = inv;
    cholesky(&mut l, k).map_err(|e| format!("H⁻¹ is not positive definite (at {})", e.row))?;
    // U = Lᵀ: U[c][j] = L[j][c].
    let u = |c: usize, j: usize| l[j * k + c];
    let index = |r: usize, c: usize| match view {
        View::Direct => r * k + c,
        View::Transposed => c * rows + r,
    };
    let mut codes = vec![0i32; rows * k];
    for r in 0..rows {
        let row = &mut w.data[r * k..(r + 1) * k];
        for c in 0..k {
            let i = index(r, c);
            let q = if keep[i] { quant(i, row[c]) } else { 0 };
            codes[i] = q;
            // What the stored form decodes to: the code times its f32 scale, in f32.
            let decoded = f64::from(q as f32 * scale_of(i));
            let err = (row[c] - decoded) / u(c, c);
            row[c] = decoded;
            for (j, x) in row.iter_mut().enumerate().skip(c + 1) {
                *x -= err * u(c, j);
            }
        }
        if let Some(v) = row.iter().find(|v| !v.is_finite()) {
            return Err(format!("GPTQ gave the weight {v} in row {r}"));
        }
    }
    Ok(codes)
}
